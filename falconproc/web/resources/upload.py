"""POST /upload: the raw body, or a multipart/form-data form with one file part."""
from __future__ import annotations

import re

import falcon

from falconproc.web.resources.errors import ApiError
from falconproc.web.filenames import InvalidFilename, decode_header_filename, sanitize_filename
from falconproc.ingest.multipart import ENVELOPE_ALLOWANCE, FilePartReader, boundary_of, is_form_data
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
        form = is_form_data(req.content_type)
        raw_name = req.get_header("x-filename")
        if not form or (raw_name is not None and raw_name.strip()):
            try:
                filename = sanitize_filename(decode_header_filename(_required_header(req, "x-filename")))
            except InvalidFilename as exc:
                raise ApiError(falcon.HTTP_400, "invalid_header", str(exc), header="x-filename") from None
            except ApiError as exc:
                exc.message = ("the x-filename header is required (or send the file as "
                               "multipart/form-data with a filename)")
                raise
        else:
            filename = None
        expected = req.get_header("x-content-sha256")
        if expected is not None:
            expected = expected.strip()
            if not _SHA256_RE.fullmatch(expected):
                raise ApiError(falcon.HTTP_400, "invalid_header",
                               "x-content-sha256 must be 64 hexadecimal characters", header="x-content-sha256")
            expected = expected.lower()
        drive_id, user_id = _identifier(req, "x-drive-id"), _identifier(req, "x-user-id")
        if req.content_length == 0:
            raise ApiError(falcon.HTTP_400, "empty_body", "the request body is empty")
        if form:
            boundary = boundary_of(req.content_type)
            envelope = req.content_length
            body = FilePartReader(req.stream, boundary, envelope, self.ingest.settings.read_chunk_bytes)
            upload = UploadRequest(
                filename=filename or "", drive_id=drive_id, user_id=user_id, expected_sha256=expected,
                content_length=None,  # the file part's size is known at its closing boundary
                admission_length=None if envelope is None else max(0, envelope - ENVELOPE_ALLOWANCE),
            )

            named = [filename]

            def open_form() -> str | None:
                name = body.open()  # after admission: nothing is read from a refused upload
                if named[0] is None:
                    named[0] = sanitize_filename(name)
                    return named[0]
                return None

            outcome = self.ingest.ingest(upload, body, open_form)
            filename = named[0]
        else:
            upload = UploadRequest(filename=filename, drive_id=drive_id, user_id=user_id,
                                   expected_sha256=expected, content_length=req.content_length)
            # With a Content-Length the service reads exactly that many bytes; without one
            # (chunked transfer) the server's input stream ends at the last chunk.
            outcome = self.ingest.ingest(upload, req.stream)
        resp.status = falcon.HTTP_201 if outcome.is_new else falcon.HTTP_200
        resp.media = outcome.to_json(filename)
