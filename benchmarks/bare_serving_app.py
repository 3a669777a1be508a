"""The bare baseline for bench_cached_serving.py: one Falcon route that serves one file.

``GET /file`` opens ``BARE_FILE`` and hands it to ``resp.stream`` with its length and
``BARE_CONTENT_TYPE``; Falcon passes a stream with ``read()`` to the server's
``wsgi.file_wrapper``, so gunicorn sends it with sendfile(2), as falconproc does.
No middleware, no lookups, no caching headers: what anyone would write first. Served by
the same gunicorn settings as falconproc (gthread, same workers and threads):

    BARE_FILE=/some/file.webp BARE_CONTENT_TYPE=image/webp python -m gunicorn -k gthread \\
        -w 4 --threads 4 --chdir benchmarks bare_serving_app:app
"""
from __future__ import annotations

import os

import falcon

FILE = os.environ["BARE_FILE"]
CONTENT_TYPE = os.environ.get("BARE_CONTENT_TYPE", "application/octet-stream")


class File:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fileobj = open(FILE, "rb")
        resp.content_length = os.fstat(fileobj.fileno()).st_size
        resp.content_type = CONTENT_TYPE
        resp.stream = fileobj


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "implementation": "bare"}


app = falcon.App()
app.add_route("/file", File())
app.add_route("/health", Health())
