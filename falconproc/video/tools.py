"""ffprobe and ffmpeg as bounded child processes.

Each run is bounded three ways: wall clock (what is left of VIDEO_TIMEOUT; the child is
killed at the deadline), address space (RLIMIT_AS = VIDEO_MEMORY_BYTES) and input (only
the first VIDEO_MAX_SECONDS are read). The child stays in its parent's process group: a
job's ffmpeg dies with the job when the supervisor kills the group.

The limit is set by util-linux's ``prlimit`` exec'ing the tool (one more exec, ~1 ms):
a ``preexec_fn`` would do it too, but it makes Python fork the whole job process instead
of vfork-ing (measured: 25 ms per child at the job's size, a tenth of a 1080p poster's
Python-side time) and runs Python code between fork and exec in a threaded process.
Without prlimit on PATH the preexec_fn is the fallback.
"""
from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass

from falconproc.config import Settings
from falconproc.errors import FalconprocError

# glibc gives each decoding thread its own 64 MB malloc arena; under an address-space
# limit that, not the frames, is what fails first (measured: 1080p H.264 decodes in
# 384 MB with two arenas, and fails at random between 384 and 512 MB without).
_CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "LC_ALL": "C"}


class VideoUnreadable(FalconprocError, ValueError):
    """The video cannot be probed or decoded: ``reason`` is one of ``corrupt``,
    ``no_video_stream``, ``too_large``, ``timeout``, ``memory`` (``killed`` is recorded
    for a job the supervisor killed)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class VideoToolsMissing(FalconprocError, LookupError):
    """ffmpeg or ffprobe is not installed: videos are stored, but get no poster or metadata."""


@dataclass(frozen=True)
class Tools:
    ffmpeg: str
    ffprobe: str
    prlimit: str | None = None


def _which(program: str) -> str | None:
    # Not cached: ffmpeg installed while the service runs is found by the next request.
    return shutil.which(program)


def find_tools(settings: Settings) -> Tools | None:
    """The two programs' paths, or None when either is missing."""
    ffmpeg, ffprobe = _which(settings.ffmpeg_binary), _which(settings.ffprobe_binary)
    if ffmpeg is None or ffprobe is None:
        return None
    return Tools(ffmpeg, ffprobe, _which("prlimit"))


def require_tools(settings: Settings) -> Tools:
    tools = find_tools(settings)
    if tools is None:
        raise VideoToolsMissing(f"video posters and metadata are not available: {settings.ffmpeg_binary} and "
                                f"{settings.ffprobe_binary} must both be installed")
    return tools


class Deadline:
    """What is left of one video's VIDEO_TIMEOUT, shared by its ffprobe and ffmpeg runs."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise VideoUnreadable("timeout", f"the video was not read within VIDEO_TIMEOUT ({self.seconds:g} s)")
        return left


def _limit_memory(limit: int) -> None:
    # Runs in the child between fork and exec: one system call, nothing that takes a lock.
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(tools: Tools, args: list[str], deadline: Deadline, memory_bytes: int) -> subprocess.Popen:
    """Start ``args`` (output on pipes), bounded as the module says; ``finish`` waits."""
    deadline.left()
    preexec = None
    if tools.prlimit is not None:
        args = [tools.prlimit, f"--as={memory_bytes}", "--core=0", "--", *args]
    else:
        preexec = functools.partial(_limit_memory, memory_bytes)
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **_CHILD_ENV}, preexec_fn=preexec)


def finish(proc: subprocess.Popen, deadline: Deadline, what: str, source: str = "") -> bytes:
    """The child's stdout once it exits 0; VideoUnreadable (timeout, memory or corrupt,
    with ffmpeg's last error line, the file's path left out) otherwise. The child is
    killed at the deadline."""
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline.ends - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise VideoUnreadable("timeout", f"{what} did not finish within VIDEO_TIMEOUT "
                                         f"({deadline.seconds:g} s)") from None
    if proc.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        if source:  # the client gets ffmpeg's words, not the store's layout
            last = last.replace(source + ": ", "").replace(source, "the file")
        if any(word in last.lower() for word in ("cannot allocate", "out of memory", "failed to map segment")):
            raise VideoUnreadable("memory", f"{what} ran out of its memory limit (VIDEO_MEMORY_BYTES): {last}")
        if proc.returncode < 0:
            raise VideoUnreadable("corrupt", f"{what} was stopped by signal {-proc.returncode} (a corrupt file, "
                                             f"or VIDEO_MEMORY_BYTES too low)")
        raise VideoUnreadable("corrupt", f"{what} cannot read the video: {last[:300]}")
    return out
