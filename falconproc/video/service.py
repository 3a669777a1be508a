"""Videos: ``metadata.video``, the poster frame their presets are rendered from, and the
error state a video that cannot be read ends in.

The poster is kept in the cache as ``poster.jpg`` (quality 92, at most 2048 px a side):
every preset and format variant of a video is rendered from it by the image pipeline,
so a preset asked for later costs a JPEG decode, not another ffmpeg run. It is made by
the `video` job after upload, or by the first preset request that comes before the job
(under the same lock, so only once).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.mediatypes import is_video
from falconproc.observability import metrics
from falconproc.store import ContentStore, DerivedCache
from falconproc.video.poster import read_video
from falconproc.video.tools import VideoToolsMissing, VideoUnreadable, require_tools

log = logging.getLogger(__name__)

POSTER = "poster.jpg"
POSTER_QUALITY = 92


class VideoService:
    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache, threads: int = 2):
        self.settings = settings
        self.store = store
        self.cache = cache
        self.threads = threads

    # -- the image pipeline's stand-in source (images.service.StandInSource) ----------

    preset_names = None  # every preset of a video is rendered from its poster

    def handles(self, mime_type: str | None) -> bool:
        return is_video(mime_type)

    def check(self, content_hash: str) -> None:
        """Nothing before the poster is asked for: ensure_poster raises what stands in
        the way (a recorded error, missing ffmpeg) when open_image runs."""

    @contextlib.contextmanager
    def open_image(self, content_hash: str) -> Iterator[BinaryIO]:
        fileobj, _ = self.cache.open(content_hash, self.ensure_poster(content_hash))
        with fileobj:
            yield fileobj

    def ensure_poster(self, content_hash: str) -> str:
        """The cache name of the video's poster, made now if missing (once across every
        process). VideoUnreadable when the video could not be read (now or before),
        VideoToolsMissing without ffmpeg/ffprobe."""
        if self.cache.exists(content_hash, POSTER):
            return POSTER
        self._raise_recorded(content_hash)
        tools = require_tools(self.settings)
        # A request waits no longer than for an image render; the job (which may hold the
        # lock while ffmpeg runs) finishes within VIDEO_TIMEOUT.
        with self.cache.exclusive(content_hash, "video", self.settings.image_sync_timeout):
            if not self.cache.exists(content_hash, POSTER):
                self._raise_recorded(content_hash)
                self._make(content_hash, tools)
        return POSTER

    def _raise_recorded(self, content_hash: str) -> None:
        error = self.cache.metadata(content_hash).get("videoError")
        if error:  # a broken video stays broken: answer without running ffmpeg again
            raise VideoUnreadable(error["reason"], error["message"])

    def _make(self, content_hash: str, tools) -> None:  # noqa: ANN001 (tools.Tools)
        try:
            with self.store.local_file(content_hash) as source:
                read = read_video(tools, source, self.settings, self.threads)
        except VideoUnreadable as exc:
            metrics.VIDEO_POSTERS.labels(f"error_{exc.reason}").inc()
            self.record_error(content_hash, exc.reason, str(exc))
            raise
        poster = read.poster
        self.cache.write_file(content_hash, POSTER,
                              lambda fh: poster.save(fh, "JPEG", quality=POSTER_QUALITY, optimize=False))
        metrics.VIDEO_POSTERS.labels(read.method).inc()
        info = {**read.info, "poster": {"width": poster.width, "height": poster.height, "method": read.method}}
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__("video", info))

    def record_error(self, content_hash: str, reason: str, message: str) -> None:
        error = {"error": "video_unreadable", "reason": reason, "message": message, "at": iso_utc()}
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__("videoError", error))

    # -- state -----------------------------------------------------------------------

    def metadata_state(self, content_hash: str) -> dict[str, Any]:
        """``video`` (and ``videoError``) for the metadata route."""
        meta = self.cache.metadata(content_hash)
        return {key: meta[key] for key in ("video", "videoError") if meta.get(key) is not None}


__all__ = ["VideoService", "VideoUnreadable", "VideoToolsMissing", "POSTER"]
