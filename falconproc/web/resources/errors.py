"""The one JSON error shape: {"error": <machine code>, "message": <sentence>, ...extra}."""
from __future__ import annotations

from typing import Any

import falcon


class ApiError(falcon.HTTPError):
    """An HTTP error with a machine-readable code and extra JSON fields."""

    def __init__(self, status: str, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(status, title=code, description=message, headers=headers)
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self, obj_type=dict) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def error_body(exc: falcon.HTTPError) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return exc.to_dict()
    # Falcon's own errors (unknown route, bad method, ...): derive a code from the status.
    code = exc.status.split(" ", 1)[1].lower().replace(" ", "_").replace("-", "_") if " " in str(
        exc.status) else "error"
    return {"error": code, "message": exc.description or exc.title or code}
