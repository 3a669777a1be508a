"""Video poster + metadata: falconproc's video job work against the ffmpeg CLI doing the
same, on a generated 1-minute 1080p H.264 clip (30 fps, a key frame per second, AAC
audio; made once with libx264 -preset veryfast and kept in --work).

- ours: what the `video` job does, in process, without the queue: ffprobe and the
  key-frame poster ffmpeg side by side (tools.py limits: RLIMIT_AS, VIDEO_TIMEOUT), the
  poster kept as JPEG, then `thumbnail` (200 px WebP) and `preview` (800 px JPEG) and the
  blurhash through the image pipeline, every file written to a fresh cache.
- cli: `ffprobe -show_format -show_streams -of json`, then `ffmpeg -i clip -frames:v 1
  -vf scale=800:-2 out.jpg` (the first frame, no blank-frame check, one output), one
  after the other as a shell script would. This is the baseline of the ratios.
- cli, same poster choice: ffprobe, then ffmpeg with our key-frame filter (5 key frames,
  `thumbnail`) writing one 800-px JPEG: what the poster choice itself costs, apart from
  our Python and Pillow work.

Interleaved runs, median wall time and CPU (user+sys of this process and its children)
per video, and the ratios; the target (issue 13) is ours within 1.5x of the CLI.

    python benchmarks/bench_video.py [--runs 7] [--work /tmp/falconproc-bench-video]
"""
from __future__ import annotations

import argparse
import io
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    bar_chart,
    fmt,
    format_table,
    machine_info,
    parse_args,
    publish,
    ratio,
    timestamp,
)
from falconproc.images.service import ImageService  # noqa: E402
from falconproc.ingest.service import IngestService, UploadRequest  # noqa: E402
from falconproc.video.job import EAGER_VIDEO_PRESETS  # noqa: E402
from falconproc.video.poster import KEY_FRAMES_COMPARED  # noqa: E402
from falconproc.video.service import VideoService  # noqa: E402
from falconproc.wiring import Components  # noqa: E402
from tests.support.inprocess import unit_settings  # noqa: E402

TARGET = 1.5


def make_clip(work: Path) -> Path:
    clip = work / "clip-1080p-60s.mp4"
    if not clip.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=s=1920x1080:r=30:d=60", "-f", "lavfi", "-i", "sine=f=440:d=60",
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30",
                        "-c:a", "aac", "-shortest", str(clip.with_suffix(".tmp.mp4"))], check=True)
        clip.with_suffix(".tmp.mp4").rename(clip)
    return clip


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    run()
    return time.perf_counter() - wall, _cpu() - cpu


def measure(runs: int, work: Path) -> dict:
    clip = make_clip(work)
    base = work / "service"
    shutil.rmtree(base, ignore_errors=True)
    settings = unit_settings(base, fsync=False)
    components = Components(settings)
    data = clip.read_bytes()
    content_hash = IngestService(settings, components.store).ingest(
        UploadRequest(clip.name, "drive-1", "user-1", None, len(data)), io.BytesIO(data)).content_hash
    out = work / "cli-poster.jpg"

    def ours() -> None:
        shutil.rmtree(components.cache.entry(content_hash), ignore_errors=True)  # a new video each run
        videos = VideoService(settings, components.store, components.cache, threads=2)
        images = ImageService(settings, components.store, components.cache, stand_ins=[videos])
        videos.ensure_poster(content_hash)
        made = images.generate(content_hash, [images.preset(n) for n in EAGER_VIDEO_PRESETS])
        assert set(made) == set(EAGER_VIDEO_PRESETS), made

    def cli() -> None:
        subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(clip)],
                       check=True, capture_output=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip), "-frames:v", "1",
                        "-vf", "scale=800:-2", str(out)], check=True, capture_output=True)

    def cli_key_frames() -> None:
        subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(clip)],
                       check=True, capture_output=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-skip_frame", "nokey", "-t", "10",
                        "-i", str(clip), "-vf", f"thumbnail={KEY_FRAMES_COMPARED},scale=800:-2",
                        "-frames:v", "1", str(out)], check=True, capture_output=True)

    peers = {"falconproc video job": ours, "ffprobe + ffmpeg CLI": cli,
             "CLI, same poster choice": cli_key_frames}
    for run in peers.values():  # warm the page cache and the imports once
        run()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in peers}
    for _ in range(runs):
        for name, run in peers.items():
            samples[name].append(_timed(run))
    meta = components.cache.metadata(content_hash)
    rows = {name: {"seconds": statistics.median(s[0] for s in got), "cpu": statistics.median(s[1] for s in got),
                   "all_seconds": [round(s[0], 4) for s in got]} for name, got in samples.items()}
    shutil.rmtree(base, ignore_errors=True)
    return {"runs": runs, "clip": {"file": clip.name, "bytes": len(data), "video": meta.get("video")},
            "target": TARGET, "machine": machine_info({"ffmpeg": ["ffmpeg", "-version"]}), "rows": rows}


def print_table(report: dict) -> None:
    rows = report["rows"]
    cli = rows["ffprobe + ffmpeg CLI"]
    table = [[name, fmt(r["seconds"], ".3f", " s"), fmt(r["cpu"], ".3f", " s"),
              fmt(ratio(r["seconds"], cli["seconds"]), ".2f", "x"), fmt(ratio(r["cpu"], cli["cpu"]), ".2f", "x")]
             for name, r in rows.items()]
    print(f"1-minute 1080p H.264 ({report['clip']['bytes'] / 1e6:.1f} MB), median of {report['runs']} runs")
    print(format_table(["peer", "wall (median)", "CPU (median)", "wall vs CLI", "CPU vs CLI"], table))
    ours = ratio(rows["falconproc video job"]["seconds"], cli["seconds"])
    verdict = "met" if ours and ours <= report["target"] else "MISSED"
    print(f"target: within {report['target']}x of the CLI -> {verdict}")


def chart(report: dict):
    rows = report["rows"]
    labels = list(rows)
    return bar_chart("video", report.get("stamp", timestamp()), "Video poster + metadata, 1-minute 1080p", [
        {"title": "wall time per video", "xlabel": "seconds (median)", "labels": labels,
         "values": [rows[n]["seconds"] for n in labels],
         "low": [min(rows[n]["all_seconds"]) for n in labels], "high": [max(rows[n]["all_seconds"]) for n in labels]},
        {"title": "CPU per video", "xlabel": "CPU seconds (median)", "labels": labels,
         "values": [rows[n]["cpu"] for n in labels]},
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/falconproc-bench-video"),
                        help="where the clip is kept between runs of the benchmark")
    args = parse_args(parser, argv)
    args.stamp = timestamp()
    report = None if args.replot else {**measure(args.runs, args.work), "stamp": args.stamp}
    return publish("video", args, report, print_table, chart)


if __name__ == "__main__":
    raise SystemExit(main())
