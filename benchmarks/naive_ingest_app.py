"""The naive baseline for bench_ingest.py: the simplest correct Falcon upload handler.

Reads ``req.bounded_stream`` in 1 MiB blocks, hashes with hashlib.sha256, writes each
block to a temp file in the store directory, fsyncs it and renames it to its hash.
No sniffing, no metadata, no limits: what anyone would write first. Served by the same
gunicorn (gthread, 1 worker) as falconproc:

    NAIVE_STORE=/some/dir python -m gunicorn -k gthread -w 1 --threads 4 \\
        --chdir benchmarks naive_ingest_app:app
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import falcon

STORE = os.environ.get("NAIVE_STORE", os.path.abspath("naive-store"))
BLOCK = 1024 * 1024


class Upload:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=STORE, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                stream = req.bounded_stream
                while block := stream.read(BLOCK):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            content_hash = digest.hexdigest()
            final = os.path.join(STORE, content_hash)
            is_new = not os.path.exists(final)
            os.rename(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        resp.status = falcon.HTTP_201 if is_new else falcon.HTTP_200
        resp.media = {"contentHash": content_hash, "size": size, "isNew": is_new}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "implementation": "naive"}


os.makedirs(STORE, exist_ok=True)
app = falcon.App()
app.add_route("/upload", Upload())
app.add_route("/health", Health())
