"""POST /upload."""
from __future__ import annotations

import re

import falcon

from falconproc.web.resources.errors import ApiError
from falconproc.web.filenames import InvalidFilename, decode_header_filename, sanitize_filename
from falconproc.ingest.service import IngestService, UploadRequest

_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_ID_LENGTH = 256


def _required_header(req: falcon.Request, name: str) -> str:
    value = req.get_header(name)
    if value is None or not value.strip():
        raise ApiError(falcon.HTTP_400, "missing_header", f"the {name} header is required", header=name)
    return value.strip()


def _identifier(req: falcon.Request, name: str) -> str:
    value = _required_header(req, name)
    if len(value) > MAX_ID_LENGTH or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ApiError(falcon.HTTP_400, "invalid_header", f"the {name} header is not a valid identifier",
                       header=name)
    return value


class UploadResource:
    def __init__(self, ingest: IngestService):
        self.ingest = ingest

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            filename = sanitize_filename(decode_header_filename(_required_header(req, "x-filename")))
        except InvalidFilename as exc:
            raise ApiError(falcon.HTTP_400, "invalid_header", str(exc), header="x-filename") from None
        expected = req.get_header("x-content-sha256")
        if expected is not None:
            expected = expected.strip()
            if not _SHA256_RE.fullmatch(expected):
                raise ApiError(falcon.HTTP_400, "invalid_header",
                               "x-content-sha256 must be 64 hexadecimal characters", header="x-content-sha256")
            expected = expected.lower()
        upload = UploadRequest(
            filename=filename,
            drive_id=_identifier(req, "x-drive-id"),
            user_id=_identifier(req, "x-user-id"),
            expected_sha256=expected,
            content_length=req.content_length,
        )
        if upload.content_length == 0:
            raise ApiError(falcon.HTTP_400, "empty_body", "the request body is empty")
        # With a Content-Length the service reads exactly that many bytes; without one
        # (chunked transfer) the server's input stream ends at the last chunk.
        outcome = self.ingest.ingest(upload, req.stream)
        meta = outcome.metadata
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = {
            "contentHash": outcome.content_hash,
            "originalName": upload.filename,
            "size": meta["size"],
            "mimeType": meta["mimeType"],
            "isNew": outcome.is_new,
            "metadata": meta,
            "jobs": outcome.jobs,
        }
