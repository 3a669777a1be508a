"""GET /openapi.json: the contract (falconproc/web/contract.py), built once per process."""
from __future__ import annotations

import json

import falcon

from falconproc.web.contract import openapi_document


class OpenApiResource:
    def __init__(self) -> None:
        self.body = json.dumps(openapi_document(), separators=(",", ":")).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("Cache-Control", "no-cache")
        resp.data = self.body
