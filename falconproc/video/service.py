"""Videos: ``metadata.video``, the poster frame their presets are rendered from, and the
error state a video that cannot be read ends in.

The poster is kept in the cache as ``poster.jpg`` (quality 92, at most 2048 px a side):
every preset and format variant of a video is rendered from it by the image pipeline,
so a preset asked for later costs a JPEG decode, not another ffmpeg run. It is made by
the `video` job only, so ffmpeg runs where the job supervisor's memory governor admits
it and its limits (JOB_TIMEOUTS, JOB_MEMORY_MAX_BYTES) hold: a preset request that
comes before the poster queues that job if needed and waits for it (IMAGE_SYNC_TIMEOUT
at most, then 202 with the job), instead of running ffmpeg in a web worker.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.errors import PosterPending
from falconproc.mediatypes import is_video
from falconproc.observability import metrics
from falconproc.queue import Job, QueueFull, QueueUnavailable
from falconproc.store import ContentStore, DerivedCache
from falconproc.video.poster import read_video
from falconproc.video.tools import VideoToolsMissing, VideoUnreadable, require_tools

log = logging.getLogger(__name__)

POSTER = "poster.jpg"
POSTER_QUALITY = 92


# How often a request waiting for the video job looks for the poster (a stat, or a HEAD on S3).
POSTER_POLL_SECONDS = 0.1


class VideoService:
    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache, threads: int = 2,
                 request_poster: Callable[[str], Job] | None = None):
        self.settings = settings
        self.store = store
        self.cache = cache
        self.threads = threads
        # The web side's: queues the `video` job of a content hash (the queue returns the one
        # already there). None in the job, which makes the poster itself.
        self.request_poster = request_poster

    # -- the image pipeline's stand-in source (images.service.StandInSource) ----------

    preset_names = None  # every preset of a video is rendered from its poster

    def handles(self, mime_type: str | None) -> bool:
        return is_video(mime_type)

    def check(self, content_hash: str) -> None:
        """On the web side, wait until the video job has made the poster: VideoUnreadable
        (recorded error), VideoToolsMissing (no ffmpeg), PosterPending (not made within
        IMAGE_SYNC_TIMEOUT). In the job nothing: open_image makes the poster."""
        if self.request_poster is None or self.cache.exists(content_hash, POSTER):
            return
        self._raise_recorded(content_hash)
        require_tools(self.settings)
        try:
            job = self.request_poster(content_hash)
        except (QueueFull, QueueUnavailable) as exc:
            raise PosterPending(f"the poster frame is not made yet and its job cannot be queued now: {exc}") from None
        deadline = time.monotonic() + self.settings.image_sync_timeout
        while time.monotonic() < deadline:
            time.sleep(POSTER_POLL_SECONDS)
            if self.cache.exists(content_hash, POSTER):
                return
            self._raise_recorded(content_hash)
        raise PosterPending("the video job has not made the poster frame yet", job=job)

    @contextlib.contextmanager
    def open_image(self, content_hash: str) -> Iterator[BinaryIO]:
        if self.request_poster is None:
            name = self.ensure_poster(content_hash)
        else:  # the web side never runs ffmpeg: check() waited for the job's poster
            name = POSTER
        try:
            fileobj, _ = self.cache.open(content_hash, name)
        except FileNotFoundError:
            raise PosterPending("the poster frame is not made yet") from None
        with fileobj:
            yield fileobj

    def ensure_poster(self, content_hash: str) -> str:
        """The cache name of the video's poster, made now if missing (once across every
        process; called by the video job). VideoUnreadable when the video could not be
        read (now or before), VideoToolsMissing without ffmpeg/ffprobe."""
        if self.cache.exists(content_hash, POSTER):
            return POSTER
        self._raise_recorded(content_hash)
        tools = require_tools(self.settings)
        # Two jobs of one video (a retry racing a reaped one) make it once.
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
