"""Videos made with ffmpeg's lavfi sources for the video tests (never committed: a few
seconds at 320x240 each, made once per session in a temp dir)."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

SIZE = "320x240"
CONTENT = f"testsrc2=s={SIZE}:r=25"
BLACK = f"color=black:s={SIZE}:r=25"
TONE = "sine=f=440:sample_rate=48000"


def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:  # a missing tool fails the test, never skips it
        pytest.fail("ffmpeg is not installed (scripts/bootstrap.sh installs it)")
    return path


def run_ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True, timeout=300)


def make(out: Path, *, seconds: float = 2, audio: bool = False, video_codec=("-c:v", "libx264", "-pix_fmt", "yuv420p"),
         audio_codec=("-c:a", "aac"), fmt: str | None = None, black_first: float = 0.0) -> Path:
    """``black_first`` seconds of black, then ``seconds`` of the moving test pattern."""
    inputs = ["-f", "lavfi", "-i", f"{CONTENT}:d={seconds}"]
    video = "[0:v]"
    if black_first:
        inputs = ["-f", "lavfi", "-i", f"{BLACK}:d={black_first}", *inputs]
        video = "[0:v][1:v]concat=n=2:v=1:a=0"
    graph = f"{video}null[v]" if not black_first else f"{video}[v]"
    args = [*inputs]
    if audio:
        args += ["-f", "lavfi", "-i", f"{TONE}:d={seconds + black_first}"]
    args += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        args += ["-map", f"{2 if black_first else 1}:a", *audio_codec]
    args += [*video_codec, *(["-f", fmt] if fmt else []), str(out)]
    run_ffmpeg(*args)
    return out


def rotated(source: Path, out: Path, degrees: int = 90) -> Path:
    """``source`` with a display matrix of ``degrees`` (as a phone writes a portrait video)."""
    run_ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(out))
    return out


def truncated(source: Path, out: Path) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def garbage_mp4(out: Path) -> Path:
    """An MP4 ftyp box (so the sniffer says video/mp4), then random bytes."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    out.write_bytes(head + random.Random(13).randbytes(200_000))
    return out


def make_all(root: Path) -> dict[str, Path]:
    h264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
    videos = {
        "black-first.mp4": make(root / "black-first.mp4", black_first=1.0, seconds=2),
        "audio.webm": make(root / "audio.webm", audio=True,
                           video_codec=("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                                        "-b:v", "300k"), audio_codec=("-c:a", "libopus")),
        "audio.mkv": make(root / "audio.mkv", audio=True, audio_codec=("-c:a", "flac")),
        "plain.avi": make(root / "plain.avi", video_codec=("-c:v", "mpeg4", "-q:v", "5")),
        "audio.3gp": make(root / "audio.3gp", audio=True, video_codec=h264,
                          audio_codec=("-c:a", "aac", "-ar", "16000", "-ac", "1")),
        "plain.mov": make(root / "plain.mov", video_codec=h264),
        "plain.mp4": make(root / "plain.mp4"),
    }
    videos["rotated.mp4"] = rotated(videos["plain.mp4"], root / "rotated.mp4")
    videos["truncated.mp4"] = truncated(videos["plain.mp4"], root / "truncated.mp4")
    videos["garbage.mp4"] = garbage_mp4(root / "garbage.mp4")
    videos["audio-only.mp4"] = root / "audio-only.mp4"
    run_ffmpeg("-f", "lavfi", "-i", f"{TONE}:d=2", "-c:a", "aac", "-f", "mp4", str(videos["audio-only.mp4"]))
    return videos


def slow_video(root: Path) -> Path:
    """30 s of black 1080p: every key frame is blank, so the poster search decodes every
    frame of VIDEO_MAX_SECONDS (seconds of work; made fast by x264's ultrafast preset)."""
    out = root / "slow.mp4"
    if not out.exists():
        run_ffmpeg("-f", "lavfi", "-i", "color=black:s=1920x1080:r=30:d=30", "-c:v", "libx264", "-preset",
                   "ultrafast", "-pix_fmt", "yuv420p", "-g", "300", str(out))
    return out


def giant_frames(root: Path) -> Path:
    """One 8192x8192 frame (67 MP, over MAX_IMAGE_PIXELS' 50 MP): 200 KB on disk, 100 MB
    decoded, and more for every frame ffmpeg holds."""
    out = root / "giant.mp4"
    if not out.exists():
        run_ffmpeg("-f", "lavfi", "-i", "color=gray:s=8192x8192:r=5:d=0.2", "-c:v", "libx264", "-preset",
                   "ultrafast", "-pix_fmt", "yuv420p", str(out))
    return out


__all__ = ["make_all", "slow_video", "giant_frames"]
