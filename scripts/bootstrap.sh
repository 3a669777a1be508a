#!/usr/bin/env bash
# Install everything falconproc needs on a fresh Debian machine into ./.venv.
#   scripts/bootstrap.sh          the service
#   scripts/bootstrap.sh --test   the service + test tools
# System packages: a C toolchain and OpenSSL headers (the Cython hot path links
# libcrypto), tesseract for OCR (English, German, French, Russian, script detection), ffmpeg (video posters and
# metadata: ffmpeg + ffprobe); with --test also redis-server,
# clamav-daemon, Ceph RGW (the S3 server the store tests start through scripts/s3_server.sh),
# curl, LibreOffice (Writer and Impress without GUI: the document-thumbnail tests convert
# DOCX/ODT/PPTX; optional for the service, see README "Document thumbnails"), poppler-utils
# (benchmarks/bench_doc_thumbnails.py compares pdftoppm), and node/npm (the resumable-upload
# tests run tus-js-client) when missing. Uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--test" ] && extra="[test,bench]"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
packages="build-essential libssl-dev libwebp-dev python3-dev python3-venv tesseract-ocr tesseract-ocr-eng"
# German and French models as examples of OCR_LANGUAGES (eng,deu,fra); the tests use them.
# Script detection (OSD) picks the model of a page in a non-Latin script; Russian is the
# example of such a model (OCR_LANGUAGES=eng,rus; the OSD tests need both, and
# fonts-dejavu-core below to render their Cyrillic page).
packages="$packages tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-osd tesseract-ocr-rus"
# Video posters and metadata (a run-time feature: without it videos are stored, their
# presets answer 404 not_available); the video tests generate their clips with it too.
packages="$packages ffmpeg"
# The tests run the Redis rate-limit storage against a real redis-server, and virus
# scanning against a real clamd they start themselves (the service only talks to one).
[ -n "$extra" ] && packages="$packages redis-server clamav-daemon curl"
# Document thumbnails of office files: LibreOffice converts them to PDF (the tests need it;
# the service answers 404 not_available without it). Fonts so that pages render text.
[ -n "$extra" ] && packages="$packages libreoffice-writer-nogui libreoffice-impress-nogui fonts-dejavu-core poppler-utils"
# tus-js-client (installed from npm by the tests into a temp dir) needs node and npm; a
# node already on the PATH (nvm, nodesource) is used as it is.
if [ -n "$extra" ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
  packages="$packages nodejs npm"
fi
if command -v apt-get >/dev/null; then
  missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Editable install builds the Cython extension next to its pure twin; a failed
# native build is an error here, not a silent fallback.
FALCONPROC_REQUIRE_EXTENSIONS=1 .venv/bin/python -m pip install -q -e ".${extra}"
.venv/bin/falconproc doctor --require-native >/dev/null
if [ -n "$extra" ]; then
  # Ceph's monitor, OSD and RGW from Debian's packages; boto3 is already in .venv.
  $SUDO env VENV="$PWD/.venv" ./scripts/s3_server.sh install
fi
echo "falconproc installed in .venv ($(.venv/bin/python -c 'import falconproc.native.ingest as n; print(n.IMPLEMENTATION)') hot path)"
