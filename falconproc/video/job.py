"""The `video` job: a new video's metadata and poster (ffprobe + ffmpeg, run in this
job's process group, so the supervisor's kill takes them too), then its `thumbnail`
and `preview` (and blurhash) from the poster through the image pipeline."""
from __future__ import annotations

from typing import Any

from falconproc.images.service import ImageService
from falconproc.jobs.registry import JobContext, JobType, PermanentJobError, register
from falconproc.mediatypes import is_video
from falconproc.queue import Job
from falconproc.video.service import VideoService
from falconproc.video.tools import VideoToolsMissing, VideoUnreadable, find_tools

# The presets a chat shows for a video; others are rendered from the poster when asked for.
EAGER_VIDEO_PRESETS = ("thumbnail", "preview")
# ffmpeg's own peak is bounded by VIDEO_MEMORY_BYTES (address space, mostly shared
# libraries); what it really touches for a 1080p poster, plus the poster in Pillow.
VIDEO_ESTIMATE = 256 * 1024 * 1024


def _applies(metadata: dict[str, Any]) -> bool:
    return is_video(metadata.get("mimeType"))


def _handle(job: Job, context: JobContext) -> dict[str, Any]:
    settings = context.settings
    threads = max(1, min(2, context.cpu_budget))
    videos = VideoService(settings, context.store, context.cache, threads)
    images = ImageService(settings.replace(image_threads=threads), context.store, context.cache, stand_ins=[videos])
    try:
        videos.ensure_poster(job.content_hash)
        with images.cache.exclusive(job.content_hash, "image", settings.image_sync_timeout):
            wanted = [p for p in images.missing_eager(job.content_hash) if p.name in EAGER_VIDEO_PRESETS]
            made = images.generate(job.content_hash, wanted)
    except VideoUnreadable as exc:  # recorded: GET .../thumbnail answers 422 with the reason
        raise PermanentJobError(f"video_unreadable ({exc.reason}): {exc}") from None
    except VideoToolsMissing as exc:
        # Not the video's fault and not worth retrying: nothing is recorded, so once ffmpeg
        # is installed the presets are made on the first request (doctor warns meanwhile).
        return {"presets": [], "skipped": str(exc)}
    return {"presets": sorted(made), "video": videos.metadata_state(job.content_hash).get("video")}


def _record_dead(job: Job, context: JobContext) -> None:
    """Killed (JOB_TIMEOUTS, JOB_MEMORY_MAX_BYTES) or out of attempts before a result: the
    video's presets answer 422 from now on instead of starting ffmpeg again."""
    service = VideoService(context.settings, context.store, context.cache)
    state = context.cache.metadata(job.content_hash)
    if "video" in state or "videoError" in state or find_tools(context.settings) is None:
        return
    service.record_error(job.content_hash, "killed", f"the video job did not finish: {job.last_error or 'killed'}")


def _preload() -> None:
    from PIL import Image

    Image.init()


register(JobType("video", _handle, applies_to=_applies, estimate_memory=lambda job, settings: VIDEO_ESTIMATE,
                 on_dead=_record_dead, preload=_preload))
