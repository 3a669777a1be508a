"""GET|HEAD /cache/{contentHash}/{preset} and POST /optimize-for-ai."""
from __future__ import annotations

from collections.abc import Callable

import falcon

from falconproc.web.resources.content import require_hash
from falconproc.web.resources.errors import ApiError
from falconproc.web.resources.serving import serve_file
from falconproc.images.service import ImageService


class PresetResource:
    def __init__(self, images: ImageService):
        self.images = images

    def on_get(self, req: falcon.Request, resp: falcon.Response, content_hash: str, preset: str) -> None:
        require_hash(content_hash)
        spec, fileobj, size = self.images.open_preset(content_hash, preset)
        serve_file(req, resp, fileobj, size=size, etag=f'"{content_hash}-{spec.name}"',
                   content_type=spec.mime_type)

    on_head = on_get


class OptimizeResource:
    def __init__(self, images: ImageService, gate: Callable[[str], None] | None = None):
        self.images = images
        self.gate = gate  # the scan gate (the hash is in the body, not the path)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = req.get_media()
        except falcon.MediaNotFoundError:
            body = None
        except falcon.HTTPError:
            raise ApiError(falcon.HTTP_400, "invalid_json", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(falcon.HTTP_400, "invalid_json", "the body must be a JSON object")
        content_hash = body.get("contentHash")
        if not isinstance(content_hash, str):
            raise ApiError(falcon.HTTP_400, "invalid_input", "contentHash is required")
        require_hash(content_hash)
        if self.gate is not None:
            self.gate(content_hash)
        max_size = body.get("maxSize", 2048)
        quality = body.get("quality", 85)
        if isinstance(max_size, bool) or not isinstance(max_size, int) or not 16 <= max_size <= 8192:
            raise ApiError(falcon.HTTP_400, "invalid_input", "maxSize must be an integer from 16 to 8192")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ApiError(falcon.HTTP_400, "invalid_input", "quality must be an integer from 1 to 100")
        resp.media = self.images.optimize(content_hash, max_size, quality)
