"""Resumable uploads, tus 1.0.0 at /uploads/: core, creation, creation-with-upload,
termination, expiration and checksum (sha256). The protocol's headers in, the service's
answers out; the uploads themselves live in falconproc/ingest/resumable.py."""
from __future__ import annotations

import base64
import binascii
from email.utils import formatdate

import falcon

from falconproc.errors import IncompleteUpload
from falconproc.ingest.resumable import PartialUpload, ResumableUploads, decode_metadata
from falconproc.web.filenames import sanitize_filename
from falconproc.web.resources.errors import ApiError
from falconproc.web.resources.upload import MAX_ID_LENGTH

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
PREFIX = "/uploads"


class TusHeaders:
    """Middleware: every answer under /uploads says Tus-Resumable (errors too); a request
    speaking another version gets 412 (OPTIONS is the discovery request and needs none)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.path.startswith(PREFIX) or req.method == "OPTIONS":
            return
        if req.get_header("Tus-Resumable") != TUS_VERSION:
            raise ApiError(falcon.HTTP_412, "unsupported_tus_version",
                           f"send Tus-Resumable: {TUS_VERSION} (the version this server speaks)",
                           headers={"Tus-Version": TUS_VERSION})

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        if req.path.startswith(PREFIX):
            resp.set_header("Tus-Resumable", TUS_VERSION)


_MAX_DIGITS = 19  # more is beyond any size this service takes (and int() refuses 4300+)


def _int_header(req: falcon.Request, name: str) -> int:
    value = (req.get_header(name) or "").strip()
    # ASCII digits only: str.isdigit() also passes "²", which int() rejects.
    if not value or not all("0" <= ch <= "9" for ch in value):
        raise ApiError(falcon.HTTP_400, "invalid_header", f"{name} must be a non-negative integer", header=name)
    value = value.lstrip("0") or "0"
    return int(value) if len(value) <= _MAX_DIGITS else 10 ** _MAX_DIGITS


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _offset_headers(resp: falcon.Response, upload: PartialUpload) -> None:
    resp.set_header("Upload-Offset", str(upload.offset))
    resp.set_header("Upload-Expires", _http_date(upload.expires))


def _checksum(req: falcon.Request) -> bytes | None:
    value = req.get_header("Upload-Checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise ApiError(falcon.HTTP_400, "unsupported_checksum", "Upload-Checksum must use sha256",
                       headers={"Tus-Checksum-Algorithm": "sha256"})
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        digest = b""
    if len(digest) != 32:
        raise ApiError(falcon.HTTP_400, "invalid_header", "Upload-Checksum must be 'sha256 <base64 of 32 bytes>'",
                       header="Upload-Checksum")
    return digest


def _identifier(value: str | None, name: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > MAX_ID_LENGTH or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ApiError(falcon.HTTP_400, "invalid_metadata",
                       f"Upload-Metadata needs {name} (base64 of a non-empty identifier)", key=name)
    return value


def _is_chunk(req: falcon.Request) -> bool:
    return (req.content_type or "").partition(";")[0].strip().lower() == OFFSET_OCTET_STREAM


class UploadsResource:
    """/uploads: discovery (OPTIONS) and creation (POST)."""

    def __init__(self, uploads: ResumableUploads, max_size: int):
        self.uploads = uploads
        self.max_size = max_size

    def on_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_204
        resp.set_header("Tus-Version", TUS_VERSION)
        resp.set_header("Tus-Extension", EXTENSIONS)
        resp.set_header("Tus-Max-Size", str(self.max_size))
        resp.set_header("Tus-Checksum-Algorithm", "sha256")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.get_header("Upload-Defer-Length") is not None:
            raise ApiError(falcon.HTTP_400, "invalid_header", "Upload-Defer-Length is not supported: send "
                           "Upload-Length", header="Upload-Defer-Length")
        length = _int_header(req, "Upload-Length")
        if length == 0:
            raise ApiError(falcon.HTTP_400, "empty_body", "Upload-Length must be at least 1")
        raw_metadata = req.get_header("Upload-Metadata") or ""
        try:
            metadata = decode_metadata(raw_metadata)
        except ValueError as exc:
            raise ApiError(falcon.HTTP_400, "invalid_metadata", str(exc)) from None
        if not metadata.get("filename", "").strip():
            raise ApiError(falcon.HTTP_400, "invalid_metadata",
                           "Upload-Metadata needs filename (base64 of the file's UTF-8 name)", key="filename")
        upload = self.uploads.create(
            length, sanitize_filename(metadata["filename"]),
            drive_id=_identifier(metadata.get("driveId") or req.get_header("x-drive-id"), "driveId"),
            user_id=_identifier(metadata.get("userId") or req.get_header("x-user-id"), "userId"),
            metadata=raw_metadata)
        location = f"{PREFIX}/{upload.id}"
        if _is_chunk(req) and (req.content_length or 0) > 0:  # creation-with-upload
            try:
                upload = self.uploads.append(upload.id, 0, req.stream, req.content_length, _checksum(req))
            except IncompleteUpload:
                # The upload exists: answer where it is, with what was kept of the body.
                upload = self.uploads.get(upload.id)
        resp.status = falcon.HTTP_201
        resp.location = location
        _offset_headers(resp, upload)


class UploadResource:
    """/uploads/{id}: HEAD (offset), PATCH (a chunk), DELETE (termination), GET (the result)."""

    def __init__(self, uploads: ResumableUploads):
        self.uploads = uploads

    def on_head(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        upload = self.uploads.get(upload_id)
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Upload-Length", str(upload.length))
        if upload.metadata:
            resp.set_header("Upload-Metadata", upload.metadata)
        _offset_headers(resp, upload)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        if not _is_chunk(req):
            raise ApiError(falcon.HTTP_415, "unsupported_media_type",
                           f"a PATCH to an upload must have Content-Type: {OFFSET_OCTET_STREAM}")
        offset = _int_header(req, "Upload-Offset")
        upload = self.uploads.append(upload_id, offset, req.stream, req.content_length, _checksum(req))
        resp.status = falcon.HTTP_204
        _offset_headers(resp, upload)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        self.uploads.terminate(upload_id)
        resp.status = falcon.HTTP_204

    def on_get(self, req: falcon.Request, resp: falcon.Response, upload_id: str) -> None:
        upload = self.uploads.get(upload_id)
        resp.set_header("Cache-Control", "no-store")
        if upload.state == "done" and upload.result is not None:
            resp.media = upload.result
            return
        resp.status = falcon.HTTP_202
        resp.set_header("Retry-After", "1")
        resp.media = {"status": upload.state, "offset": upload.offset, "length": upload.length}
