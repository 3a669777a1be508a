"""The HTTP contract as data: every error code, and the OpenAPI 3.1 document served at
``GET /openapi.json``.

One source of truth: ``ERRORS`` is the table docs/api.md shows (``falconproc contract
--errors-markdown`` prints it; tests/web/test_contract.py checks the copy in docs/api.md,
checks that every code the code raises is declared, and that every route and method of
``create_app`` is described here and nothing else is); the OpenAPI responses of each
operation are built from the same table. schemathesis checks the live service against
the document.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from falconproc import __version__
from falconproc.queue import JOB_STATES


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    when: str
    client: str  # what the client should do


ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode(400, "missing_header", "`x-filename`, `x-drive-id` or `x-user-id` is missing or blank "
              "(`header` names it)", "fix the request; do not retry as is"),
    ErrorCode(400, "invalid_header", "a header is malformed: undecodable file name, bad identifier, "
              "`x-content-sha256` not 64 hex characters (`header` names it)", "fix the request"),
    ErrorCode(400, "empty_body", "the upload body is empty", "send the file's bytes"),
    ErrorCode(400, "incomplete_body", "the body ended before its Content-Length", "retry the upload"),
    ErrorCode(400, "hash_mismatch", "the bytes do not hash to `x-content-sha256` (`expected`, `actual`); "
              "nothing is kept", "re-read the file and retry; a repeat means corruption on the way"),
    ErrorCode(400, "invalid_hash", "`{contentHash}` is not 64 lowercase hex characters", "fix the hash"),
    ErrorCode(400, "invalid_json", "POST /optimize-for-ai: the body is not a JSON object", "fix the body"),
    ErrorCode(400, "invalid_input", "POST /optimize-for-ai: `contentHash` missing, `maxSize` outside "
              "16..8192 or `quality` outside 1..100", "fix the body"),
    ErrorCode(400, "invalid_form", "POST /upload as multipart/form-data: no boundary, no file part, a part "
              "without a file name (and no `x-filename`), or a malformed or truncated form",
              "fix the form; one file part, with a filename"),
    ErrorCode(400, "invalid_content_type", "POST /optimize-for-ai: the Content-Type is not application/json "
              "(`contentType`)", "send the body as application/json"),
    ErrorCode(400, "invalid_format", "GET|HEAD /cache/{contentHash}/{preset}: `format` is not a known image "
              "format (`formats` lists them)", "use a listed format, or leave it out and send Accept"),
    ErrorCode(400, "invalid_metadata", "tus POST /uploads: Upload-Metadata is malformed (not base64 of UTF-8) "
              "or lacks `filename`, `driveId` or `userId` (`key` names it)", "fix the metadata"),
    ErrorCode(400, "unsupported_checksum", "tus: Upload-Checksum names an algorithm other than sha256",
              "send `Upload-Checksum: sha256 <base64>` or none"),
    ErrorCode(401, "unauthorized", "PROCESSOR_AUTH_TOKEN is set and the bearer token is missing or wrong",
              "send `Authorization: Bearer <token>`"),
    ErrorCode(403, "quarantined", "SCAN_MODE is on and clamd found this content infected (`signature`); every "
              "route of it but /metadata answers this", "do not retry; show the user the file was quarantined"),
    ErrorCode(409, "scan_pending", "SCAN_MODE=required and the content is not scanned yet",
              "wait `Retry-After` seconds, then retry"),
    ErrorCode(422, "scan_failed", "SCAN_MODE=required and the scan ended in error (e.g. the file is over "
              "clamd's stream limit; `reason`): the content is never served unscanned", "do not retry"),
    ErrorCode(404, "not_found", "no content under this hash, no job with this id, or no such route",
              "upload the content first (or check the id)"),
    ErrorCode(404, "unknown_preset", "no preset of this name (`presets` lists them)", "use a listed preset"),
    ErrorCode(404, "no_text", "the content's type has no text to extract", "do not poll for text"),
    ErrorCode(404, "not_available", "a preset whose renderer is not installed on the server: a video's "
              "without ffmpeg/ffprobe, a DOCX/ODT/PPTX/ODP's thumbnail or preview without LibreOffice "
              "(`falconproc doctor` says which); the file itself is stored",
              "show a generic icon; do not retry"),
    ErrorCode(404, "upload_not_found", "tus: no resumable upload with this id (never created, terminated "
              "or expired)", "create a new upload with POST /uploads"),
    ErrorCode(405, "method_not_allowed", "the route exists, the method does not", "fix the method"),
    ErrorCode(409, "offset_mismatch", "tus PATCH: Upload-Offset is not the upload's offset (`offset` is the "
              "real one)", "HEAD the upload and resume from its Upload-Offset"),
    ErrorCode(412, "unsupported_tus_version", "a request under /uploads (but OPTIONS) without "
              "`Tus-Resumable: 1.0.0` (Tus-Version lists what the server speaks)", "send Tus-Resumable: 1.0.0"),
    ErrorCode(413, "payload_too_large", "the body is larger than MAX_UPLOAD_BYTES (`limit`)",
              "do not retry; the file is too large for this service"),
    ErrorCode(415, "unsupported_type", "the bytes are of a type not accepted (`mimeType`, `supportedTypes`)",
              "do not retry"),
    ErrorCode(415, "not_an_image", "a preset or optimize-for-ai of content that is not a renderable image "
              "(documents have only the thumbnail and preview presets)", "use the original"),
    ErrorCode(415, "unsupported_media_type", "tus PATCH without `Content-Type: application/offset+octet-stream`",
              "send the chunk as application/offset+octet-stream"),
    ErrorCode(416, "range_not_satisfiable", "the Range lies outside the file (`size`)", "fix the range"),
    ErrorCode(422, "image_too_large", "the image has more pixels or a longer side than the service decodes",
              "use the original"),
    ErrorCode(422, "image_unreadable", "the image is corrupt or truncated", "use the original"),
    ErrorCode(422, "video_unreadable", "a preset of a video that ffprobe/ffmpeg cannot read: `reason` is "
              "`corrupt` (truncated, garbage), `no_video_stream`, `too_large` (frames over MAX_IMAGE_PIXELS "
              "or MAX_IMAGE_SIDE), `timeout` (VIDEO_TIMEOUT), `memory` (VIDEO_MEMORY_BYTES) or `killed` (the "
              "video job was killed)", "do not retry; use the original"),
    ErrorCode(422, "document_unrenderable", "a document's page 1 cannot be rendered, for good (`reason`: "
              "encrypted, corrupt, refused (a zip bomb or DTD), empty, conversion_failed, timed_out or failed)",
              "show a generic document icon; do not retry"),
    ErrorCode(422, "<text error>", "GET /text of a document whose extraction failed for good (encrypted, "
              "corrupt; the code is the job's, `state` has details)", "do not retry"),
    ErrorCode(423, "upload_locked", "tus: another request is writing to this upload right now",
              "wait for it to end (or drop it), HEAD the upload, then resume"),
    ErrorCode(429, "rate_limited", "the user passed UPLOAD_RATE_LIMIT (`limit`, `retryAfter`)",
              "wait `Retry-After` seconds, then retry"),
    ErrorCode(460, "checksum_mismatch", "tus: the chunk does not hash to its Upload-Checksum; it was "
              "discarded (the offset is unchanged)", "HEAD the upload and send the chunk again"),
    ErrorCode(500, "internal_error", "a bug; logged with the request id", "retry later; report the X-Request-ID"),
    ErrorCode(503, "overloaded", "memory pressure, a full job queue or a preset that took too long",
              "wait `Retry-After` seconds, then retry"),
    ErrorCode(503, "queue_unavailable", "the job queue (Redis) does not answer and the request needs it (GET "
              "/jobs/{id}, the text of content not extracted yet); uploads are still stored then, and answer "
              "`jobsDeferred: true`", "wait `Retry-After` seconds, then retry"),
    ErrorCode(507, "insufficient_storage", "storing the upload would leave less than STORAGE_RESERVE_BYTES free",
              "retry later; operators must free space"),
)


def errors_markdown() -> str:
    rows = ["| status | `error` | when | what the client should do |", "| --- | --- | --- | --- |"]
    rows += [f"| {e.status} | `{e.code}` | {e.when} | {e.client} |" for e in ERRORS]
    return "\n".join(rows)


def api_markdown() -> str:
    """docs/api.md as this installed version ships it (package data: web/api.md)."""
    from importlib.resources import files

    return files("falconproc.web").joinpath("api.md").read_text(encoding="utf-8")


# -- OpenAPI -----------------------------------------------------------------------

_REF_ERROR = {"$ref": "#/components/schemas/Error"}
_HASH = {"name": "contentHash", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
               "description": "echoed back; an invalid one (over 128 characters or outside "
                              "`[A-Za-z0-9._:@/+=-]`) is replaced by a generated one",
               "schema": {"type": "string"}}
_RESPONSE_HEADERS = {"X-Request-ID": {"description": "the request's id (the caller's or generated)",
                                      "schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}
# With SCAN_MODE on, every content route but metadata: 403 quarantined, 409 scan_pending
# (required mode, Retry-After), 422 scan_failed (required mode).
_SCAN_ERRORS = (403, 409, 422)
_IMAGE_TYPES = ("image/avif", "image/webp", "image/jpeg", "image/png")
_FILE_HEADERS = {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}}


def _error_response(status: int, *, retry: bool = False) -> dict[str, Any]:
    codes = sorted({e.code for e in ERRORS if e.status == status} - {"<text error>"})
    description = ", ".join(codes) or "error"
    return {"description": description, "headers": {**_RESPONSE_HEADERS, **(_RETRY_AFTER if retry else {})},
            "content": {"application/json": {"schema": _REF_ERROR}}}


def _json(schema: dict[str, Any], description: str, headers: dict | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**_RESPONSE_HEADERS, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


def _bytes(types: tuple[str, ...], description: str, headers: dict | None = None, body: bool = True):
    response: dict[str, Any] = {"description": description, "headers": {**_RESPONSE_HEADERS, **(headers or {})}}
    if body:
        response["content"] = {t: {"schema": {"type": "string", "format": "binary"}} for t in types}
    return response


def _op(summary: str, responses: dict[int, Any], *, errors: tuple[int, ...] = (), params=(),
        body: dict | None = None, public: bool = False, retry: tuple[int, ...] = (409, 429, 503)) -> dict[str, Any]:
    all_responses = {str(status): r for status, r in responses.items()}
    for status in (*errors, *(() if public else (401,))):
        all_responses[str(status)] = _error_response(status, retry=status in retry)
    op: dict[str, Any] = {"summary": summary, "parameters": [*params, _REQUEST_ID], "responses": all_responses}
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _file_ops(summary: str, types: tuple[str, ...], extra_errors: tuple[int, ...], params,
              headers: dict | None = None, pending: dict[str, Any] | None = None) -> dict[str, Any]:
    def make(head: bool) -> dict[str, Any]:
        file_headers = {**_FILE_HEADERS, **(headers or {})}
        responses = {
            200: _bytes(types, "the bytes", file_headers, body=not head),
            206: _bytes(types, "the requested range", {**file_headers, "Content-Range": {"schema": {"type": "string"}}},
                        body=not head),
            304: {"description": "If-None-Match matched", "headers": _RESPONSE_HEADERS},
        }
        if pending is not None:
            responses[202] = pending
        return _op(("HEAD: " if head else "") + summary, responses, errors=(400, 404, 416, *extra_errors),
                   params=params)

    return {"get": make(False), "head": make(True)}


def _schemas() -> dict[str, Any]:
    job_summary = {"type": "object", "required": ["id", "type", "status"],
                   "properties": {"id": {"type": "string"}, "type": {"type": "string"},
                                  "status": {"$ref": "#/components/schemas/JobStatus"}}}
    return {
        "Error": {"type": "object", "required": ["error", "message"],
                  "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
        "JobStatus": {"type": "string", "enum": list(JOB_STATES),
                      "description": "retrying: back in the queue after a failed attempt, waiting for its "
                                     "retry; dead: dead-lettered, no attempt left (/metrics' state label and "
                                     "/health's queue counts use the same names)"},
        "JobSummary": job_summary,
        "Job": {"type": "object",
                "required": ["id", "type", "contentHash", "status", "attempts", "maxAttempts", "createdAt",
                             "updatedAt"],
                "properties": {"id": {"type": "string"}, "type": {"type": "string"},
                               "contentHash": {"type": "string"}, "variant": {"type": "string"},
                               "status": {"$ref": "#/components/schemas/JobStatus"},
                               "attempts": {"type": "integer"}, "maxAttempts": {"type": "integer"},
                               "lastError": {"type": ["string", "null"]},
                               "createdAt": {"type": "string"}, "updatedAt": {"type": "string"},
                               "result": {"type": ["object", "null"]},
                               "requestId": {"type": ["string", "null"],
                                             "description": "X-Request-ID of the upload that caused it"}}},
        "UploadResult": {"type": "object",
                         "required": ["contentHash", "originalName", "size", "mimeType", "isNew", "metadata", "jobs"],
                         "properties": {"contentHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                        "originalName": {"type": "string"}, "size": {"type": "integer"},
                                        "mimeType": {"type": "string"}, "isNew": {"type": "boolean"},
                                        "metadata": {"type": "object"},
                                        "jobs": {"type": "array", "items": job_summary},
                                        "jobsDeferred": {"type": "boolean", "const": True,
                                                         "description": "only present when the job queue "
                                                         "did not answer: the content is stored and `jobs` "
                                                         "is empty; its jobs are queued once the queue "
                                                         "answers again"}}},
        "Optimized": {"type": "object", "required": ["data", "mimeType", "size", "width", "height"],
                      "properties": {"data": {"type": "string", "contentEncoding": "base64"},
                                     "mimeType": {"type": "string"}, "size": {"type": "integer"},
                                     "width": {"type": "integer"}, "height": {"type": "integer"}}},
        "Metadata": {"type": "object",
                     "properties": {"variants": {"type": "object",
                                                 "description": "the presets and formats made so far"},
                                    "image": {"type": "object",
                                              "properties": {"blurhash": {"type": "string"}},
                                              "description": "for images: width, height, frames and, once "
                                                             "known, a blurhash placeholder (videos: of the "
                                                             "poster; documents: of their page-1 thumbnail)"},
                                    "video": {"type": "object",
                                              "properties": {"duration": {"type": ["number", "null"]},
                                                             "width": {"type": "integer"},
                                                             "height": {"type": "integer"},
                                                             "codec": {"type": ["string", "null"]},
                                                             "fps": {"type": ["number", "null"]},
                                                             "hasAudio": {"type": "boolean"}},
                                              "description": "for videos, once the video job (or a preset "
                                                             "request) read it; width and height as displayed "
                                                             "(rotation and pixel aspect applied)"},
                                    "videoError": {"type": "object",
                                                   "description": "a video that cannot be read: error, reason, "
                                                                  "message, at"},
                                    "pageImage": {"type": "object",
                                                  "properties": {"status": {"enum": ["done", "failed",
                                                                                     "not_available"]},
                                                                 "reason": {"type": "string"}},
                                                  "description": "documents: the state of page 1's render"}}},
        "UploadProgress": {"type": "object", "required": ["status", "offset", "length"],
                           "properties": {"status": {"type": "string", "enum": ["uploading", "ingesting"]},
                                          "offset": {"type": "integer", "minimum": 0},
                                          "length": {"type": "integer", "minimum": 1}}},
        "Health": {"type": "object", "required": ["status", "uptime", "memory", "storage", "queue"],
                   "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]},
                                  "uptime": {"type": "number"}, "memory": {"type": "object"},
                                  "storage": {"type": "object"}, "queue": {"oneOf": [
                                      {"$ref": "#/components/schemas/QueueCounts"},
                                      {"type": "object", "required": ["error"],
                                       "properties": {"error": {"type": "string"}},
                                       "description": "the queue does not answer (reason queue_unavailable)"}]},
                                  "supervisor": {"type": "object", "required": ["lastTurnSecondsAgo"],
                                                 "properties": {"lastTurnSecondsAgo": {"type": "number",
                                                                                       "minimum": 0}},
                                                 "description": "under `falconproc serve` with RUN_SUPERVISOR: "
                                                                "when the job supervisor last turned its loop "
                                                                "(over 30 s, or half SUPERVISOR_STALL_TIMEOUT: "
                                                                "reason "
                                                                "supervisor_stalled)"}}},
        "QueueCounts": {"type": "object", "required": ["pending", "processing", "retrying", "dead", "failed"],
                        "properties": {"pending": {"type": "integer", "description": "queued + retrying"},
                                       "processing": {"type": "integer", "description": "running"},
                                       "retrying": {"type": "integer"}, "dead": {"type": "integer"},
                                       "failed": {"type": "integer", "deprecated": True,
                                                  "description": "v1's name of dead (dead-lettered); read "
                                                                 "dead instead"}}},
    }


def _tus_paths(id_headers: list[dict[str, Any]]) -> dict[str, Any]:
    """tus 1.0.0 at /uploads: core, creation, creation-with-upload, termination, expiration, checksum."""
    string = {"type": "string"}
    tus_resumable = {"name": "Tus-Resumable", "in": "header", "required": True,
                     "schema": {"type": "string", "enum": ["1.0.0"]},
                     "description": "every request but OPTIONS; another value or none is 412"}
    checksum = {"name": "Upload-Checksum", "in": "header", "required": False, "schema": string,
                "description": "`sha256 <base64 of the chunk's digest>`; a mismatch is 460 and the chunk is dropped"}
    upload_id = {"name": "upload_id", "in": "path", "required": True, "schema": string}
    answer = {"Tus-Resumable": {"description": "on every answer under /uploads, errors too",
                                "schema": {"const": "1.0.0"}}}
    offset = {"Upload-Offset": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
              "Upload-Expires": {"required": True, "description": "an HTTP date", "schema": string}}
    chunk = {"required": False, "content": {"application/offset+octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}

    def tus(summary: str, responses: dict[int, Any], errors: tuple[int, ...], params=(), **kw) -> dict[str, Any]:
        op = _op(summary, responses, errors=(*errors, 412), params=params, **kw)
        for response in op["responses"].values():
            response["headers"] = {**response["headers"], **answer}
        return op

    def empty(description: str, headers: dict) -> dict[str, Any]:
        return {"description": description, "headers": {**_RESPONSE_HEADERS, **headers}}

    creation = [tus_resumable,
                {"name": "Upload-Length", "in": "header", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "the file's size, at least 1"},
                {"name": "Upload-Metadata", "in": "header", "required": True, "schema": string,
                 "description": "`key base64,...`: filename (required), driveId and userId (or the "
                                "x-drive-id/x-user-id headers); filetype is ignored"},
                *[{**h, "required": False} for h in id_headers], checksum]
    options = _op("tus discovery: version, extensions, maximum size", {204: empty("the server's tus", {
        "Tus-Version": {"required": True, "schema": {"const": "1.0.0"}},
        "Tus-Extension": {"required": True, "schema": string},
        "Tus-Max-Size": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        "Tus-Checksum-Algorithm": {"required": True, "schema": {"const": "sha256"}}, **answer})})
    return {
        "/uploads": {
            "options": options,
            "post": tus("tus creation (with the first chunk if the body is application/offset+octet-stream)",
                        {201: empty("created; Location is the upload's URL", {
                            "Location": {"required": True, "schema": string}, **offset})},
                        (400, 413, 415, 422, 429, 460, 503, 507), creation, body=chunk),
        },
        "/uploads/{upload_id}": {
            "head": tus("tus: where the upload stands", {200: empty("the offset", {
                "Upload-Length": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                "Upload-Metadata": {"schema": string}, "Cache-Control": {"schema": string}, **offset})},
                        (404,), [upload_id, tus_resumable]),
            "patch": tus("tus: a chunk at Upload-Offset; the last one runs the ingest of POST /upload",
                         {204: empty("the chunk is stored", offset)},
                         (400, 404, 409, 413, 415, 422, 423, 429, 460, 503, 507),
                         [upload_id, tus_resumable,
                          {"name": "Upload-Offset", "in": "header", "required": True,
                           "schema": {"type": "string", "pattern": "^[0-9]+$"}}, checksum],
                         body={"required": True, "content": chunk["content"]}),
            "delete": tus("tus termination: the upload and its bytes are removed",
                          {204: empty("terminated", {})}, (404, 423), [upload_id, tus_resumable]),
            "get": tus("the upload's result: POST /upload's answer once ingested, 202 before",
                       {200: _json({"$ref": "#/components/schemas/UploadResult"}, "ingested",
                                   {"Cache-Control": {"schema": string}}),
                        202: _json({"$ref": "#/components/schemas/UploadProgress"}, "not finished",
                                   {"Retry-After": {"required": True, "schema": string},
                                    "Cache-Control": {"schema": string}})},
                       (404,), [upload_id, tus_resumable]),
        },
    }


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w and w != "cache"]
    return method + "".join(w[:1].upper() + w[1:] for w in words)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route, header, body, response and error."""
    ident = {"type": "string", "minLength": 1}
    upload_headers = [
        {"name": "x-filename", "in": "header", "required": False, "schema": ident,
         "description": "the original name; UTF-8 may be percent-encoded. Required for a raw body; "
                        "optional for multipart/form-data (then the file part's filename)"},
        {"name": "x-drive-id", "in": "header", "required": True, "schema": ident},
        {"name": "x-user-id", "in": "header", "required": True, "schema": ident},
        {"name": "x-content-sha256", "in": "header", "required": False,
         "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}},
    ]
    preset = {"name": "preset", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/upload": {"post": _op(
            "store a file (content-addressed) and start its jobs",
            {200: _json({"$ref": "#/components/schemas/UploadResult"}, "already stored"),
             201: _json({"$ref": "#/components/schemas/UploadResult"}, "stored now")},
            errors=(400, 413, 415, 429, 503, 507), params=upload_headers,
            body={"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                   "properties": {"file": {"type": "string", "format": "binary"}}},
                                        "description": "one file part (its filename names the file unless "
                                                       "x-filename is sent)"}}})},
        **_tus_paths(upload_headers[1:3]),
        "/cache/{contentHash}/original": _file_ops("the stored bytes", ("*/*",), _SCAN_ERRORS, [_HASH]),
        "/cache/{contentHash}/metadata": {"get": _op(
            "the original's metadata and processing state", {200: _json({"$ref": "#/components/schemas/Metadata"},
                                                                            "metadata")},
            errors=(400, 404), params=[_HASH])},
        "/cache/{contentHash}/text": {"get": _op(
            "the extracted text (202 while pending)",
            {200: {"description": "the text", "headers": _RESPONSE_HEADERS,
                   "content": {"text/plain": {"schema": {"type": "string"}},
                               "application/json": {"schema": {"type": "object"}}}},
             202: _json({"type": "object", "required": ["status", "job"],
                         "properties": {"status": {"const": "pending"},
                                        "job": {"$ref": "#/components/schemas/Job"}}}, "pending",
                        {"Retry-After": {"required": True, "description": "seconds until polling again is worth it",
                                         "schema": {"type": "string"}}})},
            errors=(400, 404, 422, 503, *_SCAN_ERRORS),
            params=[_HASH, {"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["json"]}}])},
        "/cache/{contentHash}/{preset}": _file_ops(
            "a preset, made now if not cached (a video's from its poster frame), in the format `format` names "
            "or else Accept negotiates (AVIF, WebP, then the preset's own format); answers carry Vary: Accept. "
            "Documents (PDF, DOCX, ODT, PPTX, ODP) have thumbnail and preview of page 1: 202 until the document "
            "job rendered it; a video's presets: 202 when its video job has not made the poster within "
            "IMAGE_SYNC_TIMEOUT",
            _IMAGE_TYPES, (415, 422, 503, *_SCAN_ERRORS),
            [_HASH, preset,
             {"name": "format", "in": "query", "required": False,
              "schema": {"type": "string", "enum": ["avif", "webp", "jpeg", "png"]},
              "description": "overrides Accept; an unknown one is 400 invalid_format"},
             {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "image/avif and image/webp are served when named; */* or image/* means "
                             "the preset's own format"}],
            {"Vary": {"required": True, "schema": {"type": "string", "pattern": "[Aa]ccept"}}},
            pending=_json({"type": "object", "required": ["status", "job"],
                           "properties": {"status": {"const": "pending"},
                                          "job": {"$ref": "#/components/schemas/Job"}}},
                          "a document whose page 1, or a video whose poster frame, is not made yet",
                          {"Retry-After": {"required": True, "schema": {"type": "string"}},
                           "Vary": {"required": True, "schema": {"type": "string", "pattern": "[Aa]ccept"}}})),
        "/optimize-for-ai": {"post": _op(
            "a resized, re-encoded image as base64",
            {200: _json({"$ref": "#/components/schemas/Optimized"}, "the image")},
            errors=(400, 404, 415, 422, 503, *_SCAN_ERRORS),
            body={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["contentHash"],
                "properties": {"contentHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                               "maxSize": {"type": "integer", "minimum": 16, "maximum": 8192},
                               "quality": {"type": "integer", "minimum": 1, "maximum": 100}}}}}})},
        "/jobs/{job_id}": {"get": _op(
            "a job's state", {200: _json({"$ref": "#/components/schemas/Job"}, "the job")}, errors=(404, 503),
            params=[{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/health": {"get": _op("liveness and the numbers monitoring wants",
                               {200: _json({"$ref": "#/components/schemas/Health"}, "health")}, public=True)},
        "/metrics": {"get": _op("Prometheus text format, over all processes",
                                {200: {"description": "metrics", "headers": _RESPONSE_HEADERS,
                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}, public=True)},
        "/openapi.json": {"get": _op("this document", {200: _json({"type": "object"}, "OpenAPI 3.1")},
                                     public=True)},
    }
    for path, ops in paths.items():
        for method, op in ops.items():
            op["operationId"] = _operation_id(method, path)
    # Links from an upload to the reads of what it stored: schemathesis's stateful phase
    # (and generated clients) follow them with a real content hash.
    links = {_operation_id(method, path): {"operationId": _operation_id(method, path),
                                           "parameters": {"contentHash": "$response.body#/contentHash"}}
             for path in ("/cache/{contentHash}/original", "/cache/{contentHash}/metadata",
                          "/cache/{contentHash}/text") for method in paths[path]}
    links["getJob"] = {"operationId": _operation_id("get", "/jobs/{job_id}"),
                       "parameters": {"job_id": "$response.body#/jobs/0/id"}}
    for status in ("200", "201"):
        paths["/upload"]["post"]["responses"][status]["links"] = links
    return {
        "openapi": "3.1.0",
        "info": {"title": "falconproc", "version": __version__,
                 "description": "Content-addressed file processing: uploads, presets, text, OCR. "
                                "Every error body is {error, message, ...}; see docs/api.md."},
        "paths": paths,
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "only when PROCESSOR_AUTH_TOKEN is set"}}},
        "security": [{"bearer": []}],
    }
