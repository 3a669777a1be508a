"""GET|HEAD /cache/{contentHash}/original and GET /cache/{contentHash}/metadata."""
from __future__ import annotations

import falcon

from falconproc.web.resources.errors import ApiError
from falconproc.web.resources.serving import serve_file
from falconproc.mediatypes import is_markup
from falconproc.web.filenames import content_disposition
from falconproc.store import ContentStore, is_content_hash


def require_hash(content_hash: str) -> str:
    """Validate before anything touches the filesystem."""
    if not is_content_hash(content_hash):
        raise ApiError(falcon.HTTP_400, "invalid_hash", "contentHash must be 64 lowercase hex characters")
    return content_hash


class OriginalResource:
    def __init__(self, store: ContentStore):
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, content_hash: str) -> None:
        require_hash(content_hash)
        meta = self.store.metadata(content_hash)
        fileobj = self.store.open(content_hash)
        mime_type = meta["mimeType"]
        markup = is_markup(mime_type)
        serve_file(
            req, resp, fileobj,
            size=meta["size"],
            etag=f'"{content_hash}"',
            content_type=mime_type,
            disposition=content_disposition(meta.get("originalName", "file"), attachment=markup),
            # A stored page or SVG must never run script in the app's origin.
            extra_headers={"Content-Security-Policy": "sandbox"} if markup else None,
        )

    on_head = on_get


class MetadataResource:
    def __init__(self, store: ContentStore, processing_state=None):
        self.store = store
        # Presets/text state joins the answer once those issues land (cache metadata.json).
        self.processing_state = processing_state

    def on_get(self, req: falcon.Request, resp: falcon.Response, content_hash: str) -> None:
        require_hash(content_hash)
        meta = self.store.metadata(content_hash)
        if self.processing_state is not None:
            for key, value in self.processing_state(content_hash).items():
                # e.g. image: the header's {width, height, frames} plus the derived blurhash
                both_dicts = isinstance(value, dict) and isinstance(meta.get(key), dict)
                meta[key] = {**meta[key], **value} if both_dicts else value
        resp.set_header("Cache-Control", "no-cache")
        resp.media = meta
