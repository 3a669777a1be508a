"""The scan gate: every route of a content hash but its metadata asks the scan state
first (403 quarantined, 409 scan_pending, 422 scan_failed). Installed only when
SCAN_MODE is not off, so the cached-preset hot path pays nothing otherwise."""
from __future__ import annotations

from typing import Any

import falcon

from falconproc.scan.service import ScanService
from falconproc.store.base import is_content_hash
from falconproc.web.resources.content import MetadataResource


class ScanGate:
    def __init__(self, scan: ScanService):
        self.scan = scan

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        content_hash = params.get("content_hash")
        if resource is None or isinstance(resource, MetadataResource) or not isinstance(content_hash, str):
            return
        if is_content_hash(content_hash):  # a malformed one gets the route's own 400
            self.scan.check(content_hash)
