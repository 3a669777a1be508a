"""Presets benchmark: the four default presets of each image, ours vs libvips vs naive Pillow.

Side by side in one run, on one machine (see docs/performance.md and issue 4, section 5).
For every image of ``--images`` (default tests/data/images, the project's copy of the
shared corpus) each variant makes ai-chat (max width 1920, JPEG q85), ai-vision
(2048, JPEG q90), thumbnail (fit 200x200, WebP q80) and preview (800, JPEG q85), from the
encoded bytes, upright (EXIF orientation applied), metadata-free, alpha flattened on white
for JPEG:

* ours     ``ImageService.generate(hash, presets)``: header check, one decode (JPEG draft at
           the planned scale), the native plan's cascade (reduce + LANCZOS on the valid
           box; large ones in 2 stripes on the IMAGE_THREADS pool, default 2), each output
           encoded on the pool straight into the cache's temp files while the next is
           resampled, atomic publish, metadata.json. The store and cache live in a temp dir
           with FSYNC off (``--fsync`` turns it on: the service's default, which adds the
           disk's flush latency to every file).
* libvips  four ``pyvips.Image.thumbnail_buffer(data, W, height=H, size="down")`` calls
           (shrink-on-load, auto-rotate, lanczos3) + ``write_to_buffer(".jpg"/".webp", Q=..,
           keep="none")``, flattened on white before JPEG when the image has alpha; the
           operation cache is off (``cache_set_max(0)``) so repeated runs really run; libvips
           uses its default thread pool (one thread per core).
* naive    Pillow per preset: open, load, ``exif_transpose``, convert, ``resize(LANCZOS)``
           of the full image, save to a buffer with the same format and quality.

Each file/variant is timed ``--runs`` times (default 3) after a warm-up round, the order
of the variants rotating per round; the table shows medians, totals are sums of medians.
Quality: every output of every variant is compared (PSNR, after flattening on white) with
a direct LANCZOS resize of the full-resolution upright image to the same size.

Profile (``--no-profile`` skips it): where ours spends its time per file (header, decode,
each resample step and each encode, timed one by one in one thread), and two more rows
timed like the main ones, to show what the threads buy on each side:

* ``ours, 1 thread``: the same service with IMAGE_THREADS=1 (the same stripes, run one
  after the other in the calling thread, encodes after each output: the same bytes);
* ``libvips 1 thread`` (``concurrency_set(1)``);

and the WebP decode alone (Pillow full size vs libvips ``scale=0.5``, libwebp's scaled
decode). (The prototypes of earlier runs -- reduce gap 1, cascade ratio 1, stripes, steps
in threads -- are now the pipeline itself; see results/presets-20261128T145825Z.json.)

Timings are wall clock (the goal is about latency); the JSON also holds each run's CPU
seconds of this process (``rawCpu``), which is robust to other load on a shared machine for
the single-threaded variants.

    python benchmarks/bench_presets.py [--runs 3] [--images DIR] [--fsync] [--no-profile] [--no-chart]

Prints Markdown tables; writes benchmarks/results/presets-<timestamp>.json and .png.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from falconproc.config import Settings  # noqa: E402
from falconproc.native.resize import fit_box  # noqa: E402
from falconproc.images.service import ImageService  # noqa: E402
from falconproc.images.pipeline import Target, decode_for, encode, open_checked, render  # noqa: E402
from falconproc.ingest.service import IngestService, UploadRequest  # noqa: E402
from falconproc.images.presets import DEFAULT_PRESETS  # noqa: E402
from falconproc.wiring import Components  # noqa: E402
from tests.support.corpus import IMAGES_DIR  # noqa: E402

TARGET_VS_LIBVIPS = 0.67  # ours total <= 0.67 x libvips total (1.5x faster)
PRESETS = list(DEFAULT_PRESETS)
TARGETS = [Target(p.name, p.max_width, p.max_height, p.pil_format, p.quality) for p in PRESETS]
UNBOUNDED = 10_000_000  # libvips thumbnail: height defaults to width, so "no limit" is a huge box
MAIN = ("ours", "libvips", "naive")
COLORS = {"ours": "#2e9d57", "libvips": "#4a7fc1", "naive": "#ef8a3c"}


# --------------------------------------------------------------------------- variants


@dataclass
class Source:
    path: Path
    data: bytes
    content_hash: str


class Ours:
    """The service's own code path, in-process, against a temp store and cache."""

    def __init__(self, work: Path, fsync: bool):
        settings = Settings(file_storage_path=work / "files", cache_path=work / "cache", queue_path=work / "queue",
                            storage_reserve_bytes=0, fsync=fsync)
        self.settings = settings
        components = Components(settings)
        self.store = components.store
        self.cache = components.cache
        self.ingest = IngestService(settings, self.store)
        self.images = ImageService(settings, self.store, self.cache)

    def put(self, path: Path) -> Source:
        data = path.read_bytes()
        outcome = self.ingest.ingest(UploadRequest(path.name, "bench", "bench", None, len(data)), io.BytesIO(data))
        return Source(path, data, outcome.content_hash)

    def run(self, src: Source) -> None:
        self.images.generate(src.content_hash, PRESETS)

    def single_threaded(self) -> "Ours":
        """The same store and cache, IMAGE_THREADS=1."""
        other = object.__new__(Ours)
        other.__dict__.update(self.__dict__)
        other.settings = self.settings.replace(image_threads=1)
        other.images = ImageService(other.settings, self.store, self.cache)
        return other

    def outputs(self, src: Source) -> list[bytes]:
        self.run(src)
        return [self.cache.path(src.content_hash, p.filename).read_bytes() for p in PRESETS]


def libvips_outputs(data: bytes) -> list[bytes]:
    import pyvips

    out = []
    for p in PRESETS:
        thumb = pyvips.Image.thumbnail_buffer(data, p.max_width or UNBOUNDED, height=p.max_height or UNBOUNDED,
                                              size="down")
        if p.format == "jpeg":
            if thumb.hasalpha():
                thumb = thumb.flatten(background=[255, 255, 255])
            out.append(thumb.write_to_buffer(".jpg", Q=p.quality, keep="none"))
        else:
            out.append(thumb.write_to_buffer(".webp", Q=p.quality, keep="none"))
    return out


def libvips_one_thread(data: bytes) -> list[bytes]:
    """libvips with its thread pool cut to one thread (how much of its speed is threads)."""
    import pyvips

    before = pyvips.concurrency_get()
    pyvips.concurrency_set(1)
    try:
        return libvips_outputs(data)
    finally:
        pyvips.concurrency_set(before)


def naive_outputs(data: bytes) -> list[bytes]:
    out = []
    for p in PRESETS:
        with Image.open(io.BytesIO(data)) as opened:
            im = ImageOps.exif_transpose(opened)
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            im = im.convert("RGBA" if alpha else "RGB")
            im = im.resize(fit_box(im.width, im.height, p.max_width, p.max_height), Image.Resampling.LANCZOS)
            if p.format == "jpeg" and im.mode == "RGBA":
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            buf = io.BytesIO()
            im.save(buf, p.pil_format, quality=p.quality)
            out.append(buf.getvalue())
    return out


# --------------------------------------------------------------------------- quality


def flatten(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        im = flat
    return np.asarray(im.convert("RGB"), dtype=np.float64)


class Reference:
    """Direct LANCZOS resizes of the full-resolution upright image (the quality yardstick)."""

    def __init__(self, data: bytes):
        with Image.open(io.BytesIO(data)) as opened:
            opened.seek(0)
            im = ImageOps.exif_transpose(opened)
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            self.image = im.convert("RGBA" if alpha else "RGB")
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def psnr(self, output: bytes) -> float:
        with Image.open(io.BytesIO(output)) as out:
            out.load()
            if out.size not in self.cache:
                self.cache[out.size] = flatten(self.image.resize(out.size, Image.Resampling.LANCZOS))
            a = flatten(out)
        mse = float(np.mean((a - self.cache[out.size]) ** 2))
        return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def sizes_of(outputs: list[bytes]) -> list[tuple[int, int]]:
    result = []
    for data in outputs:
        with Image.open(io.BytesIO(data)) as im:
            result.append(im.size)
    return result


# --------------------------------------------------------------------------- profile


def profile_ours(src: Source, settings: Settings, work: Path, runs: int) -> dict[str, Any]:
    """Stage times of ours (the same calls generate() makes, timed one by one)."""
    out_dir = work / "profile"
    out_dir.mkdir(exist_ok=True)
    samples: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    plan_info = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        with open_checked(src.path, settings) as im:
            t1 = time.perf_counter()
            decoded = decode_for(TARGETS, im)
        t2 = time.perf_counter()
        note("header", t1 - t0)
        note("decode", t2 - t1)
        last = [time.perf_counter()]

        def done(index: int, _image: Image.Image) -> None:  # steps finish in plan order
            now = time.perf_counter()
            note(f"resize {PRESETS[index].name}", now - last[0])
            last[0] = now

        outputs = render(decoded, TARGETS, 1, done)
        for i, p in enumerate(PRESETS):
            a = time.perf_counter()
            with open(out_dir / p.filename, "wb") as fh:
                encode(outputs[i], p.pil_format, p.quality, fh)
            note(f"encode {p.name}", time.perf_counter() - a)
        plan_info = {
            "draftScale": decoded.plan.draft_scale,
            "decoded": list(decoded.image.size),
            "steps": [{"preset": PRESETS[s.target_index].name, "size": [s.width, s.height],
                       "from": "decoded" if s.source < 0 else PRESETS[s.source].name, "reduce": s.reduce}
                      for s in decoded.plan.steps],
        }
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"stages": med, "plan": plan_info,
            "decode": med["header"] + med["decode"],
            "resize": sum(v for k, v in med.items() if k.startswith("resize")),
            "encode": sum(v for k, v in med.items() if k.startswith("encode"))}


def webp_decode_costs(data: bytes, runs: int) -> dict[str, float]:
    import pyvips

    def best_of(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def pillow_full():
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    result = {"pillowFull": best_of(pillow_full),
              "libvipsFull": best_of(lambda: pyvips.Image.webpload_buffer(data).copy_memory()),
              "libvipsHalf": best_of(lambda: pyvips.Image.webpload_buffer(data, scale=0.5).copy_memory())}
    return result


# --------------------------------------------------------------------------- running


def time_once(fn: Callable[[], Any]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def chart(stamp: str, files: list[str], medians: dict[str, dict[str, float]], totals: dict[str, float],
          extra: dict[str, float], title: str) -> Path | None:
    if not common.have_matplotlib():
        print("matplotlib is not installed: no chart written", file=sys.stderr)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 1.8 + 0.55 * max(len(files), 4)),
                                   gridspec_kw={"width_ratios": [3, 2]})
    height = 0.8 / len(MAIN)
    for i, variant in enumerate(MAIN):
        ys = [f + i * height for f in range(len(files))]
        vals = [medians[variant][name] for name in files]
        ax1.barh(ys, vals, height=height, color=COLORS[variant], label=variant)
        for y, v in zip(ys, vals):
            ax1.annotate(f"{v:.3f}", (v, y), xytext=(3, -3), textcoords="offset points", fontsize=7)
    ax1.set_xlim(0, max(medians[v][f] for v in MAIN for f in files) * 1.15)
    ax1.set_yticks([f + height for f in range(len(files))], files)
    ax1.invert_yaxis()
    ax1.set_xlabel("seconds for the four presets (median)")
    ax1.set_title("per file", fontsize=10)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.grid(axis="x", alpha=0.3)
    labels = list(MAIN) + list(extra)
    values = [totals[v] for v in MAIN] + list(extra.values())
    colors = [COLORS[v] for v in MAIN] + ["#9dbde6" if k.startswith("libvips") else "#8fd19e" for k in extra]
    ax2.barh(range(len(labels)), values, color=colors)
    ax2.axvline(totals["libvips"] * TARGET_VS_LIBVIPS, color="#c0392b", linestyle="--", linewidth=1,
                label=f"goal: {TARGET_VS_LIBVIPS} x libvips")
    for y, v in enumerate(values):
        ax2.annotate(f"{v:.2f}s ({v / totals['libvips']:.2f}x vips)", (v, y), xytext=(3, -3),
                     textcoords="offset points", fontsize=7)
    ax2.set_yticks(range(len(labels)), labels)
    ax2.invert_yaxis()
    ax2.set_xlim(0, max(values) * 1.45)
    ax2.set_xlabel("total seconds (sum of medians)")
    ax2.set_title("totals", fontsize=10)
    ax2.legend(loc="lower right", fontsize=8)
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = common.RESULTS_DIR / f"presets-{stamp}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=IMAGES_DIR)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fsync", action="store_true", help="ours with FSYNC=1 (the service default)")
    parser.add_argument("--no-profile", action="store_true", help="skip the stage profile and the 1-thread rows")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()

    import pyvips

    pyvips.cache_set_max(0)  # every run must really decode and resize
    paths = sorted(p for p in args.images.iterdir() if p.is_file() and p.suffix.lower() in
                   (".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"))
    if not paths:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    stamp = common.timestamp()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-presets-"))
    try:
        ours = Ours(work, args.fsync)
        sources = [ours.put(p) for p in paths]
        variants: dict[str, Callable[[Source], Any]] = {
            "ours": ours.run,
            "libvips": lambda s: libvips_outputs(s.data),
            "naive": lambda s: naive_outputs(s.data),
        }
        ours_one = ours.single_threaded()
        if not args.no_profile:
            variants["ours, 1 thread"] = ours_one.run
            variants["libvips 1 thread"] = lambda s: libvips_one_thread(s.data)
        names = list(variants)

        # Warm-up round (imports, page cache, libvips start-up), then measured rounds.
        for src in sources:
            for name in names:
                variants[name](src)
        raw: dict[str, dict[str, list[float]]] = {n: {s.path.name: [] for s in sources} for n in names}
        raw_cpu: dict[str, dict[str, list[float]]] = {n: {s.path.name: [] for s in sources} for n in names}
        for r in range(args.runs):
            for src in sources:
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    wall, cpu = time_once(lambda: variants[name](src))
                    raw[name][src.path.name].append(wall)
                    raw_cpu[name][src.path.name].append(cpu)
        medians = {n: {f: statistics.median(v) for f, v in per.items()} for n, per in raw.items()}
        totals = {n: sum(per.values()) for n, per in medians.items()}

        # Quality: PSNR of every output against a direct LANCZOS resize of the full image.
        quality: dict[str, dict[str, dict[str, Any]]] = {}
        output_fns: dict[str, Callable[[Source], list[bytes]]] = {
            "ours": ours.outputs, "libvips": lambda s: libvips_outputs(s.data), "naive": lambda s: naive_outputs(s.data)}
        if not args.no_profile:
            output_fns["ours, 1 thread"] = ours_one.outputs
            output_fns["libvips 1 thread"] = lambda s: libvips_one_thread(s.data)
        for src in sources:
            ref = Reference(src.data)
            quality[src.path.name] = {}
            ours_outs = None
            for name, fn in output_fns.items():
                outs = fn(src)
                ours_outs = outs if name == "ours" else ours_outs
                quality[src.path.name][name] = {
                    "psnr": {p.name: round(ref.psnr(o), 2) for p, o in zip(PRESETS, outs)},
                    "sizes": {p.name: list(s) for p, s in zip(PRESETS, sizes_of(outs))},
                    "bytes": {p.name: len(o) for p, o in zip(PRESETS, outs)},
                    "identicalToOurs": outs == ours_outs,
                }

        profile: dict[str, Any] = {}
        webp: dict[str, Any] = {}
        if not args.no_profile:
            for src in sources:
                profile[src.path.name] = profile_ours(src, ours.settings, work, args.runs)
                with Image.open(src.path) as im:
                    if im.format == "WEBP":
                        webp[src.path.name] = webp_decode_costs(src.data, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    files = [s.path.name for s in sources]
    vs_libvips = common.ratio(totals["ours"], totals["libvips"])
    slower_than_naive = [f for f in files if medians["ours"][f] > medians["naive"][f]]
    goals = {
        "oursVsLibvipsTotal": {"target": f"<= {TARGET_VS_LIBVIPS}", "value": vs_libvips,
                               "met": vs_libvips is not None and vs_libvips <= TARGET_VS_LIBVIPS},
        "neverSlowerThanNaive": {"target": "ours <= naive on every file", "slowerOn": slower_than_naive,
                                 "met": not slower_than_naive},
    }

    # ------------------------------------------------------------------ tables
    headers = ["file", "ours s", "libvips s", "naive s", "ours/libvips", "ours/naive", "min PSNR ours/vips/naive dB"]
    rows = []
    for f in files:
        q = quality[f]
        rows.append([f, f"{medians['ours'][f]:.3f}", f"{medians['libvips'][f]:.3f}", f"{medians['naive'][f]:.3f}",
                     f"{medians['ours'][f] / medians['libvips'][f]:.2f}",
                     f"{medians['ours'][f] / medians['naive'][f]:.2f}",
                     " / ".join(f"{min(q[v]['psnr'].values()):.1f}" for v in MAIN)])
    rows.append(["**total**", f"{totals['ours']:.3f}", f"{totals['libvips']:.3f}", f"{totals['naive']:.3f}",
                 f"{totals['ours'] / totals['libvips']:.2f}", f"{totals['ours'] / totals['naive']:.2f}", ""])
    print(f"\n## Presets: four default presets per image (median of {args.runs}), "
          f"{os.cpu_count()} cores, load {load_start[0]:.2f}\n")
    print(common.format_table(headers, rows))
    print(f"\nGoal ours <= {TARGET_VS_LIBVIPS} x libvips: {vs_libvips:.2f} -> "
          f"{'met' if goals['oursVsLibvipsTotal']['met'] else 'NOT met'}; never slower than naive: "
          f"{'met' if not slower_than_naive else 'NOT met on ' + ', '.join(slower_than_naive)}")

    if profile:
        headers = ["file", "plan", "header+decode", "resize", "encode", "ours total", "libvips"]
        rows = []
        for f in files:
            pr = profile[f]
            plan = pr["plan"]
            steps = "; ".join(f"{s['preset']}<-{s['from']}{'/r' + str(s['reduce']) if s['reduce'] > 1 else ''}"
                              for s in plan["steps"])
            rows.append([f, f"draft 1/{plan['draftScale']} {plan['decoded'][0]}x{plan['decoded'][1]}: {steps}",
                         f"{pr['decode']:.3f}", f"{pr['resize']:.3f}", f"{pr['encode']:.3f}",
                         f"{medians['ours'][f]:.3f}", f"{medians['libvips'][f]:.3f}"])
        print("\n## Where ours spends its time (median seconds per stage)\n")
        print(common.format_table(headers, rows))
        headers = ["variant", "total s", "x libvips", "x ours", "min PSNR dB", "mean dPSNR vs ours dB",
                   "worst file vs naive", "outputs = ours"]
        rows = []
        for name in names:
            worst = min(min(quality[f][name]["psnr"].values()) for f in files)
            deltas = [quality[f][name]["psnr"][p.name] - quality[f]["ours"]["psnr"][p.name] for f in files
                      for p in PRESETS if quality[f]["ours"]["psnr"][p.name] < 99]
            same = sum(quality[f][name]["identicalToOurs"] for f in files)
            rows.append([name, f"{totals[name]:.3f}", f"{totals[name] / totals['libvips']:.2f}",
                         f"{totals[name] / totals['ours']:.2f}", f"{worst:.1f}",
                         f"{statistics.fmean(deltas):+.2f}" if deltas else "n/a",
                         f"{max(medians[name][f] / medians['naive'][f] for f in files):.2f}",
                         f"{same}/{len(files)} files"])
        print("\n## Every variant (1-thread rows: what the threads buy)\n")
        print(common.format_table(headers, rows))
        for f, costs in webp.items():
            print(f"\nWebP decode of {f}: Pillow full size {costs['pillowFull']:.3f}s; libvips full "
                  f"{costs['libvipsFull']:.3f}s, at scale 0.5 (libwebp scaled decode) {costs['libvipsHalf']:.3f}s")

    import pyvips as _pv

    results = {
        "benchmark": "presets",
        "stamp": stamp,
        "config": {"images": str(args.images), "files": files, "runs": args.runs, "fsync": args.fsync,
                   "presets": [{"name": p.name, "box": [p.max_width, p.max_height], "format": p.format,
                                "quality": p.quality} for p in PRESETS],
                   "libvipsConcurrency": _pv.concurrency_get(),
                   "libvips": f"{_pv.version(0)}.{_pv.version(1)}.{_pv.version(2)}"},
        "machine": {**common.machine_info(), "loadavgAtStart": load_start,
                    "pillow": Image.__version__, "pyvips": getattr(_pv, "__version__", None)},
        "raw": raw,
        "rawCpu": raw_cpu,
        "medians": medians,
        "totals": totals,
        "ratios": {"oursVsLibvips": vs_libvips, "oursVsNaive": common.ratio(totals["ours"], totals["naive"]),
                   "perFile": {f: {"oursVsLibvips": medians["ours"][f] / medians["libvips"][f],
                                   "oursVsNaive": medians["ours"][f] / medians["naive"][f]} for f in files}},
        "goals": goals,
        "quality": quality,
        "profile": profile,
        "webpDecode": webp,
    }
    path = common.write_json("presets", stamp, results)
    print(f"\nresults: {path}")
    if not args.no_chart:
        extra_totals = {n: totals[n] for n in names if n not in MAIN}
        png = chart(stamp, files, medians, totals, extra_totals,
                    f"Presets: ours vs libvips {results['config']['libvips']} vs naive Pillow "
                    f"({stamp}, {os.cpu_count()} cores, median of {args.runs})")
        if png:
            print(f"chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
