"""Per-user upload rate limiting (429), on the `limits` library.

Counts live in a `limits` storage: ``memory://`` keeps them in each web worker (no
extra process; a user spread over N workers may reach up to N times the limit),
``redis://`` keeps one exact count for every worker and container. If the storage
cannot be reached the upload is let through: the limiter protects fairness, and
must not turn a Redis outage into an upload outage (memory and queue pressure still
answer 503).
"""
from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from falconproc.errors import RateLimited

log = logging.getLogger(__name__)

NAMESPACE = "falconproc-upload"


class UploadRateLimiter:
    def __init__(self, spec: str | None, storage_uri: str = "memory://"):
        self.items: list[RateLimitItem] = parse_many(spec) if spec else []
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri)) if self.items else None
        self._warned_at = 0.0

    def check(self, user_id: str) -> None:
        """Count one upload of ``user_id``, or raise RateLimited without counting it."""
        if self.limiter is None:
            return
        try:
            # Test every window first so that a refusal by the minute window does not
            # use up a slot of the second window.
            for item in self.items:
                if not self.limiter.test(item, NAMESPACE, user_id):
                    raise self._refusal(item, user_id)
            for item in self.items:
                if not self.limiter.hit(item, NAMESPACE, user_id):
                    raise self._refusal(item, user_id)  # another request took the last slot
        except RateLimited:
            raise
        except Exception as exc:  # the storage is down or misconfigured: fail open, say so
            now = time.monotonic()
            if now - self._warned_at > 60:  # once a minute per worker, not once per upload
                self._warned_at = now
                log.warning("rate limit storage unavailable, uploads are not rate limited: %s: %s",
                            type(exc).__name__, exc)

    def _refusal(self, item: RateLimitItem, user_id: str) -> RateLimited:
        reset_time, _ = self.limiter.get_window_stats(item, NAMESPACE, user_id)
        retry_after = max(1, math.ceil(reset_time - time.time()))
        return RateLimited(f"too many uploads for this user: at most {item}", limit=str(item),
                           retry_after=retry_after)
