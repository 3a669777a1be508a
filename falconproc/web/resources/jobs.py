"""GET /jobs/{id}."""
from __future__ import annotations

import falcon

from falconproc.queue import JobNotFound, JobQueue
from falconproc.web.resources.errors import ApiError


class JobResource:
    def __init__(self, queue: JobQueue):
        self.queue = queue

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        try:
            job = self.queue.get(job_id)  # validates the id before touching the filesystem
        except JobNotFound:
            raise ApiError(falcon.HTTP_404, "not_found", "no job with this id") from None
        resp.set_header("Cache-Control", "no-cache")
        resp.media = job.public()
