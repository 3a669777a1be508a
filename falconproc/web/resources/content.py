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
        mime_type = meta["mimeType"]
        markup = is_markup(mime_type)
        disposition = content_disposition(meta.get("originalName", "file"), attachment=markup)
        # Markup is always served here: only this response can carry the CSP sandbox.
        url = None if markup else self.store.redirect_url(content_hash, content_type=mime_type,
                                                          disposition=disposition)
        if url is not None:
            etag = f'"{content_hash}"'
            if etag in (req.get_header("If-None-Match") or ""):
                resp.status = falcon.HTTP_304  # the client has it: no redirect needed
                resp.set_header("ETag", etag)
                return
            resp.status = falcon.HTTP_307
            resp.location = url
            resp.set_header("Cache-Control", "no-store")  # the URL expires
            return
        fileobj = self.store.open(content_hash)
        serve_file(
            req, resp, fileobj,
            size=meta["size"],
            etag=f'"{content_hash}"',
            content_type=mime_type,
            disposition=disposition,
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
