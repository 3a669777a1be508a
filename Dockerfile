# syntax=docker/dockerfile:1
#
# falconproc: multi-stage image.
#   builder  compiles the Cython hot path (links OpenSSL's libcrypto) and builds wheels
#            for the package and every dependency; a failed native build fails here.
#   runtime  slim Python + tesseract, installs those wheels offline, runs as the
#            non-root user "falconproc", and refuses to finish building unless the
#            compiled module loads (falconproc doctor --require-native).
#
#   docker build -t falconproc .
#   docker run --rm -p 3003:3003 -v falconproc-data:/data falconproc
# (docker-compose.yml has the full example with the 1280 MiB memory limit.)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libssl-dev libwebp-dev \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the build reads (README.md is the package's readme in pyproject.toml).
# .dockerignore keeps host build products (*.so, build/, _native/*.c) out of the context,
# so the extension is always compiled here, from the .pyx.
COPY pyproject.toml setup.py README.md ./
COPY _native/ _native/
COPY falconproc/ falconproc/
# The contract: falconproc/web/api.md links to it, and the wheel carries it as a file
# (`falconproc contract --markdown` prints it in the image).
COPY docs/api.md docs/api.md

# Build requirements (setuptools, wheel, Cython) come from pyproject.toml in pip's
# isolated build environment. FALCONPROC_REQUIRE_EXTENSIONS=1 turns a failed or skipped
# native build into an error instead of a silent pure-Python wheel.
# The redis extra lets RATE_LIMIT_STORAGE_URI point at a Redis shared by several containers.
RUN FALCONPROC_REQUIRE_EXTENSIONS=1 pip wheel --wheel-dir /wheels ".[redis]" \
 && ls -l /wheels

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# LibreOffice (Writer + Impress, no GUI) makes DOCX/ODT/PPTX/ODP thumbnails. It is in the
# image by default because a workspace's grid of files is mostly documents; it adds about
# 400 MB to the image. `--build-arg WITH_LIBREOFFICE=0` leaves it out (PDF thumbnails still
# work, pdfium is in the wheels; office documents answer 404 not_available).
ARG WITH_LIBREOFFICE=1

# tesseract for OCR, with German, French and Russian beside English (OCR_LANGUAGES=eng,deu,fra,rus;
# add tesseract-ocr-<lang> for others: start-up refuses a language it lacks) and script
# detection (tesseract-ocr-osd: with a non-Latin language allowed, it picks the model of
# each page); libssl3 provides libcrypto.so.3 and libwebp7
# libwebp.so.7, which the compiled modules link against. ffmpeg (with ffprobe) makes video
# posters and metadata; Debian's build decodes every container and codec the service accepts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
        tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-osd tesseract-ocr-rus libssl3 libwebp7 ffmpeg \
 && if [ "$WITH_LIBREOFFICE" = "1" ]; then \
        apt-get install -y --no-install-recommends libreoffice-writer-nogui libreoffice-impress-nogui \
            fonts-dejavu-core fonts-liberation2; \
    fi \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 falconproc \
 && useradd --system --uid 10001 --gid falconproc --home-dir /home/falconproc --create-home \
        --shell /usr/sbin/nologin falconproc

# Offline install from the builder's wheels only: nothing is compiled or fetched here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels "falconproc[redis]"

ENV HOST=0.0.0.0 \
    PORT=3003 \
    FILE_STORAGE_PATH=/data/files \
    CACHE_PATH=/data/cache \
    QUEUE_PATH=/data/queue \
    UPLOADS_PATH=/data/uploads \
    METRICS_DIR=/dev/shm \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The data directories exist and belong to the runtime user before VOLUME is declared:
# a new named volume is initialised from them (ownership included), and changes made
# under /data after the VOLUME line would be discarded.
RUN mkdir -p /data/files /data/cache /data/queue /data/uploads \
 && chown -R falconproc:falconproc /data \
 && chmod 0750 /data

USER falconproc
WORKDIR /home/falconproc

# Fails the build unless the compiled native module loaded (and the data dirs are
# writable by this user).
RUN falconproc doctor --require-native

VOLUME /data
EXPOSE 3003

# No curl in slim images: Python's urllib. /health answers 200 while the service is up
# (body "status": "ok" or "degraded"); anything else, or no answer in 4 s, is unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '3003'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# falconproc serve execs gunicorn (PID 1 in the container), which handles SIGTERM as a
# graceful shutdown (GRACEFUL_TIMEOUT, default 30 s: give `docker stop` longer, -t 40).
CMD ["falconproc", "serve"]
