"""X-Request-ID: taken from the caller (bounded, sanitised) or generated, echoed on
every response, and set as the context of every log line (and job) the request causes."""
from __future__ import annotations

import falcon

from falconproc.observability.logs import (
    REQUEST_ID_HEADER,
    reset_request_id,
    sanitize_request_id,
    set_request_id,
)

# The WSGI environ key gunicorn's access line reads the route template from.
ROUTE_ENVIRON_KEY = "falconproc.route"


class RequestIdMiddleware:
    """First in the chain, so that even a 401 carries the id."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = sanitize_request_id(req.get_header(REQUEST_ID_HEADER))
        req.context.request_id = request_id
        req.context.request_id_token = set_request_id(request_id)
        resp.set_header(REQUEST_ID_HEADER, request_id)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        req.env[ROUTE_ENVIRON_KEY] = req.uri_template or "unmatched"
        token = getattr(req.context, "request_id_token", None)
        if token is not None:  # a gthread thread serves the next request with a clean context
            reset_request_id(token)
            req.context.request_id_token = None
