"""Which format a preset is served in: ``?format=`` if given, else the request's Accept.

AVIF, then WebP, then the preset's own format, by the q-values the client gave them; a
wildcard (``image/*``, ``*/*``) stands for the preset's own format only, since a client
that does not name AVIF or WebP may not decode them. Ties go to the smaller format.
"""
from __future__ import annotations

import functools

from falconproc.images.presets import FORMATS

# Offered in this order of preference (smallest bytes for the same PSNR first).
NEGOTIATED = ("avif", "webp")
_BY_MIME = {mime: fmt for fmt, (_, mime, _ext) in FORMATS.items()}


class UnknownFormat(ValueError):
    def __init__(self, value: str):
        super().__init__(f"format must be one of {', '.join(FORMATS)}, not {value!r}")
        self.known = list(FORMATS)


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def parse_accept(header: str) -> dict[str, float]:
    """Media range -> q. A range listed twice keeps its highest q."""
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        if media:
            ranges[media] = max(ranges.get(media, 0.0), _quality(params))
    return ranges


# Browsers send a handful of distinct Accept strings: parse each once. Bounded, so a
# client sending a new one on every request only costs the parse.
@functools.lru_cache(maxsize=256)
def choose_format(own: str, accept: str | None, requested: str | None = None) -> str:
    """The format to serve a preset whose own format is ``own`` in."""
    if requested is not None:
        requested = requested.strip().lower()
        requested = {"jpg": "jpeg"}.get(requested, requested)
        if requested not in FORMATS:
            raise UnknownFormat(requested)
        return requested
    if not accept:
        return own
    ranges = parse_accept(accept)
    own_mime = FORMATS[own][1]
    own_q = ranges.get(own_mime, max(ranges.get("image/*", 0.0), ranges.get("*/*", 0.0)))
    best, best_q = own, own_q
    for fmt in reversed(NEGOTIATED):  # so that on a tie the more preferred one wins
        q = ranges.get(FORMATS[fmt][1], 0.0)
        if fmt != own and q > 0 and q >= best_q:
            best, best_q = fmt, q
    return best
