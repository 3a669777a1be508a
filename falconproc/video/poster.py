"""A video's metadata (ffprobe) and poster frame (ffmpeg), run side by side.

The poster: ffmpeg decodes only the key frames of the first VIDEO_MAX_SECONDS
(``-skip_frame nokey``: no P/B frame is decoded, so a 1080p minute costs a few frame
decodes) and its ``thumbnail`` filter keeps the one closest to their average
histogram, a frame like the others rather than a fade or a flash. When that frame is
blank (dark or one flat colour: a black opening with few key frames), a second run
decodes every frame of the window, two per second are measured (``signalstats``),
the dark ones dropped and ``thumbnail`` picks among the rest; when every frame is dark
the first run's frame stays (a night video has a dark poster). ffmpeg applies the
display rotation while decoding (a phone's portrait video gives a portrait poster)
and the sample aspect ratio is applied to the poster, so it has the shape a player
shows. benchmarks/bench_video.py measures the cost against the plain CLI.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from falconproc.config import Settings
from falconproc.video.tools import Deadline, Tools, VideoUnreadable, finish, run

# The poster is at most this long a side: the largest built-in preset (ai-vision).
POSTER_MAX_SIDE = 2048
# Key frames the thumbnail filter compares (it holds them all: 5 frames of 4K are ~60 MB).
# Each is a full decode: at 1080p H.264, 5 cost ~100 ms beyond ffmpeg's start, 16 ~300 ms
# (benchmarks/bench_video.py); with a key frame a second (phones) 5 span the first 5 s.
KEY_FRAMES_COMPARED = 5
# signalstats' average luma (0-255) at or below which a frame counts as dark.
DARK_LUMA = 24
# A poster whose luma varies less than this (standard deviation) is one flat colour.
FLAT_SPREAD = 6.0

_SHAPE = (f"scale='iw*sar':'ih',setsar=1,scale='min({POSTER_MAX_SIDE},iw)':'min({POSTER_MAX_SIDE},ih)'"
          f":force_original_aspect_ratio=decrease")
KEY_FRAME_FILTER = f"thumbnail={KEY_FRAMES_COMPARED},{_SHAPE}"
ALL_FRAMES_FILTER = (f"fps=2,signalstats,metadata=mode=select:key=lavfi.signalstats.YAVG:value={DARK_LUMA}"
                     f":function=greater,thumbnail=8,{_SHAPE}")


@dataclass
class VideoRead:
    info: dict[str, Any]  # metadata.video
    poster: Image.Image
    method: str  # key_frames | all_frames | dark (for the metrics)


def _ratio(text: str | None) -> float | None:
    """``30000/1001`` (rates), ``16:11`` (aspect ratios) or a plain number; None for 0 or N/A."""
    num, _, den = (text or "").replace(":", "/").partition("/")
    try:
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _rotation(stream: dict[str, Any]) -> int:
    """The display rotation in degrees, from the display matrix (or the older tag)."""
    for side in stream.get("side_data_list") or ():
        if "rotation" in side:
            return int(round(float(side["rotation"])))
    try:
        return int((stream.get("tags") or {}).get("rotate", 0))
    except ValueError:
        return 0


def parse_probe(output: bytes) -> dict[str, Any]:
    """metadata.video from ffprobe's JSON: the first video stream that is not cover art,
    its size as displayed (sample aspect ratio and rotation applied)."""
    try:
        probe = json.loads(output)
    except ValueError:
        raise VideoUnreadable("corrupt", "ffprobe gave no readable description of the file") from None
    streams = probe.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    if video is None or not video.get("width") or not video.get("height"):
        raise VideoUnreadable("no_video_stream", "the file has no video stream")
    width, height = int(video["width"]), int(video["height"])
    sar = _ratio(video.get("sample_aspect_ratio"))
    if sar and abs(sar - 1) > 1e-3:
        width = int(round(width * sar))
    if _rotation(video) % 180:
        width, height = height, width
    duration = _ratio((probe.get("format") or {}).get("duration")) or _ratio(video.get("duration"))
    fps = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    return {"duration": round(duration, 3) if duration else None, "width": width, "height": height,
            "codec": video.get("codec_name"), "fps": round(fps, 3) if fps else None,
            "hasAudio": any(s.get("codec_type") == "audio" for s in streams)}


def check_frame_size(info: dict[str, Any], settings: Settings) -> None:
    """A frame is decoded like an image: the image limits apply (MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE), so a giant frame is refused from the header, not found out of memory."""
    width, height = info["width"], info["height"]
    if width * height > settings.max_image_pixels or max(width, height) > settings.max_image_side:
        raise VideoUnreadable("too_large", f"the video's frames are {width}x{height}; the limits are "
                                           f"{settings.max_image_pixels} pixels and {settings.max_image_side} "
                                           "pixels per side (MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE)")


def _probe_args(tools: Tools, source: Path, settings: Settings) -> list[str]:
    window = str(int(settings.video_max_seconds * 1_000_000))
    return [tools.ffprobe, "-v", "error", "-analyzeduration", window, "-show_format", "-show_streams",
            "-of", "json", "--", str(source)]


def _poster_args(tools: Tools, source: Path, settings: Settings, threads: int, key_frames: bool) -> list[str]:
    # 0:V:0 is the first video stream that is not an attached picture (cover art).
    return [tools.ffmpeg, "-nostdin", "-v", "error", "-threads", str(threads),
            *(["-skip_frame", "nokey"] if key_frames else []), "-t", f"{settings.video_max_seconds:g}",
            "-i", str(source), "-map", "0:V:0", "-an", "-sn", "-dn", "-threads", str(threads),
            "-filter_threads", "1", "-vf", KEY_FRAME_FILTER if key_frames else ALL_FRAMES_FILTER,
            "-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-"]


def _image(data: bytes) -> Image.Image | None:
    if not data:
        return None
    try:
        im = Image.open(io.BytesIO(data), formats=["PPM"])
        im.load()
    except (OSError, SyntaxError, ValueError):
        raise VideoUnreadable("corrupt", "ffmpeg's poster frame cannot be read") from None
    return im


def is_blank(im: Image.Image) -> bool:
    """Dark, or one flat colour (measured on a small copy: the decision needs no detail)."""
    small = im.convert("L").reduce(max(1, min(im.size) // 64))
    stat = ImageStat.Stat(small)
    return stat.mean[0] <= DARK_LUMA or stat.stddev[0] < FLAT_SPREAD


def read_video(tools: Tools, source: Path, settings: Settings, threads: int = 2) -> VideoRead:
    """Metadata and poster, bounded by VIDEO_TIMEOUT / VIDEO_MEMORY_BYTES / VIDEO_MAX_SECONDS."""
    deadline = Deadline(settings.video_timeout)
    memory = settings.video_memory_bytes
    probe = run(tools, _probe_args(tools, source, settings), deadline, memory)
    try:
        poster = run(tools, _poster_args(tools, source, settings, threads, key_frames=True), deadline, memory)
    except BaseException:
        probe.kill()
        probe.communicate()
        raise
    try:
        info = parse_probe(finish(probe, deadline, "ffprobe", str(source)))
        check_frame_size(info, settings)  # before ffmpeg gets far into a giant frame
        first = _image(finish(poster, deadline, "ffmpeg", str(source)))
    finally:
        for proc in (probe, poster):
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
    if first is not None and not is_blank(first):
        return VideoRead(info, first, "key_frames")
    every_frame = run(tools, _poster_args(tools, source, settings, threads, key_frames=False), deadline, memory)
    second = _image(finish(every_frame, deadline, "ffmpeg", str(source)))
    if second is not None:
        return VideoRead(info, second, "all_frames")
    if first is not None:
        return VideoRead(info, first, "dark")
    raise VideoUnreadable("corrupt", f"no frame could be decoded in the first {settings.video_max_seconds:g} s")
