"""GET /health: liveness plus the numbers monitoring wants."""
from __future__ import annotations

import falcon

from falconproc.observability.health import HealthService


class HealthResource:
    def __init__(self, health: HealthService):
        self.health = health

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "no-store")
        resp.media = self.health.report()
