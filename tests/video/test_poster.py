"""The video reader in process, with the real ffprobe/ffmpeg: ffprobe's JSON read into
metadata.video (rotation, pixel aspect, cover art), the blank-frame test, and the
memory and time bounds of the child processes."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest
from PIL import Image

from falconproc.config import Settings
from falconproc.video.poster import is_blank, parse_probe, read_video
from falconproc.video.tools import Deadline, VideoUnreadable, find_tools, require_tools


def _probe(*streams: dict, duration: str = "4.5") -> bytes:
    return json.dumps({"streams": list(streams), "format": {"duration": duration}}).encode()


VIDEO = {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080, "avg_frame_rate": "30000/1001",
         "sample_aspect_ratio": "1:1", "disposition": {"attached_pic": 0}}


def test_probe_reads_the_first_real_video_stream():
    cover = {**VIDEO, "codec_name": "mjpeg", "width": 600, "height": 600, "disposition": {"attached_pic": 1}}
    info = parse_probe(_probe(cover, VIDEO, {"codec_type": "audio", "codec_name": "aac"}))
    assert info == {"duration": 4.5, "width": 1920, "height": 1080, "codec": "h264", "fps": 29.97,
                    "hasAudio": True}


@pytest.mark.parametrize("rotation", [90, -90, 270])
def test_probe_swaps_sides_for_a_quarter_turn(rotation):
    stream = {**VIDEO, "side_data_list": [{"side_data_type": "Display Matrix", "rotation": rotation}]}
    info = parse_probe(_probe(stream))
    assert (info["width"], info["height"]) == (1080, 1920)
    assert parse_probe(_probe({**VIDEO, "side_data_list": [{"rotation": 180}]}))["width"] == 1920


def test_probe_applies_the_pixel_aspect_ratio():
    anamorphic = {**VIDEO, "width": 720, "height": 576, "sample_aspect_ratio": "16:11"}
    assert (parse_probe(_probe(anamorphic))["width"], parse_probe(_probe(anamorphic))["height"]) == (1047, 576)


def test_probe_without_a_video_stream_or_json_is_unreadable():
    with pytest.raises(VideoUnreadable) as caught:
        parse_probe(_probe({"codec_type": "audio", "codec_name": "aac"}))
    assert caught.value.reason == "no_video_stream"
    with pytest.raises(VideoUnreadable) as caught:
        parse_probe(b"not json")
    assert caught.value.reason == "corrupt"


def test_probe_of_unknown_rates_and_duration_gives_nulls():
    info = parse_probe(_probe({**VIDEO, "avg_frame_rate": "0/0", "r_frame_rate": "0/0"}, duration="N/A"))
    assert info["fps"] is None and info["duration"] is None


def test_blank_frames():
    assert is_blank(Image.new("RGB", (640, 360), (0, 0, 0)))
    assert is_blank(Image.new("RGB", (640, 360), (20, 120, 200)))  # one flat colour
    assert not is_blank(Image.effect_noise((640, 360), 60).convert("RGB"))
    gradient = Image.linear_gradient("L").resize((640, 360)).convert("RGB")
    assert not is_blank(gradient)


@pytest.mark.parametrize("how", ["prlimit", "preexec_fn"])
def test_ffmpeg_runs_under_the_memory_limit(videos, how):
    # 64 MB of address space is less than ffprobe's shared libraries: the limit is really
    # applied to the child (RLIMIT_AS), by util-linux's prlimit or, without it, between
    # fork and exec; and the failure is named.
    settings = Settings().replace(video_memory_bytes=64 * 1024 * 1024)
    tools = require_tools(settings)
    assert tools.prlimit is not None, "prlimit (util-linux) is expected on PATH"
    if how == "preexec_fn":
        tools = dataclasses.replace(tools, prlimit=None)
    with pytest.raises(VideoUnreadable) as caught:
        read_video(tools, videos["plain.mp4"], settings)
    assert caught.value.reason == "memory"
    # The default limit reads the same video.
    assert read_video(require_tools(Settings()), videos["plain.mp4"], Settings()).info["width"] == 320


def test_deadline_is_shared_and_ends_in_timeout():
    deadline = Deadline(0.05)
    assert deadline.left() > 0
    time.sleep(0.06)
    with pytest.raises(VideoUnreadable) as caught:
        deadline.left()
    assert caught.value.reason == "timeout"


def test_missing_binaries_are_reported():
    settings = Settings().replace(ffprobe_binary="/nonexistent/ffprobe")
    assert find_tools(settings) is None
    assert find_tools(Settings()) is not None, "ffmpeg/ffprobe must be installed (scripts/bootstrap.sh)"
