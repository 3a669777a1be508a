"""GET /cache/{contentHash}/text[?format=json]."""
from __future__ import annotations

import falcon

from falconproc.queue import JobQueue, QueueFull
from falconproc.web.resources.content import require_hash
from falconproc.web.resources.errors import ApiError
from falconproc.text.service import TextService, has_text, needs_ocr
from falconproc.store import ContentStore

PENDING_RETRY_AFTER = "2"  # seconds: most text and OCR jobs finish within a few


class TextResource:
    def __init__(self, store: ContentStore, text: TextService, queue: JobQueue):
        self.store = store
        self.text = text
        self.queue = queue

    def on_get(self, req: falcon.Request, resp: falcon.Response, content_hash: str) -> None:
        require_hash(content_hash)
        meta = self.store.metadata(content_hash)
        if not has_text(meta.get("mimeType")):
            raise ApiError(falcon.HTTP_404, "no_text", f"{meta.get('mimeType')} has no text to extract")
        state = self.text.state(content_hash) or {}
        resp.set_header("Cache-Control", "no-cache")
        if state.get("status") == "done":
            if req.get_param("format") == "json":
                resp.media = {**self.text.read_pages(content_hash), "state": state}
            else:
                resp.content_type = "text/plain; charset=utf-8"
                resp.stream, resp.content_length = self.text.open_text(content_hash)
            return
        if state.get("status") == "failed":
            raise ApiError(falcon.HTTP_422, state.get("error", "failed"), state.get("message", "extraction failed"),
                           state=state)
        job_type = "ocr" if needs_ocr(meta.get("mimeType")) else "text"
        job = self.queue.find(job_type, content_hash)
        if job is None:
            try:  # no job yet (uploaded while the queue was full, or before text existed)
                job = self.queue.enqueue(job_type, content_hash)
            except QueueFull:
                raise ApiError(falcon.HTTP_503, "overloaded", "the job queue is full; retry shortly",
                               headers={"Retry-After": "10"}) from None
        resp.status = falcon.HTTP_202
        resp.set_header("Retry-After", PENDING_RETRY_AFTER)  # when polling again is worth it
        resp.media = {"status": "pending", "job": job.public()}
