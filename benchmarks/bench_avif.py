"""AVIF for negotiated presets: which encoder speed and quality, measured.

For each corpus photo (tests/data/images, JPEG/PNG/WebP) and each preset width (2048 and
800, the ai-vision and preview boxes), the source is resized once with LANCZOS, then:

* JPEG at the preset's quality (85; Pillow, no metadata), the format a browser gets today;
* WebP at the same quality (method 4, what the service writes);
* AVIF (Pillow's libavif encoder, one thread: ``max_threads=1``) at each ``--speeds`` value,
  at the LOWEST quality whose PSNR against the resized source is at least the JPEG's
  (found by bisection over 1..100): the bytes an AVIF of the same fidelity needs.

Reported per speed: encode time of the 2048-px preset (median over photos and ``--runs``),
bytes relative to the JPEG (median), and the quality bisection found (its median is what the
service uses for AVIF variants: ``images.presets.AVIF_QUALITY_FOR``). Encode times are CPU
work on one core, so they are inflated by other load on the machine; bytes and PSNR are
deterministic.

    python benchmarks/bench_avif.py [--speeds 6,8,9,10] [--runs 3] [--images DIR]
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WIDTHS = (2048, 800)
JPEG_QUALITY = 85


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def encode(im: Image.Image, fmt: str, **options) -> tuple[bytes, float]:
    buf = io.BytesIO()
    started = time.perf_counter()
    im.save(buf, fmt, **options)
    return buf.getvalue(), time.perf_counter() - started


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def lowest_avif_quality(im: Image.Image, target_psnr: float, speed: int) -> tuple[int, bytes]:
    lo, hi, best = 1, 100, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data, _ = encode(im, "AVIF", quality=mid, speed=speed, max_threads=1)
        if psnr(decoded(data), im) >= target_psnr:
            best, hi = (mid, data), mid - 1
        else:
            lo = mid + 1
    return best if best is not None else (100, encode(im, "AVIF", quality=100, speed=speed, max_threads=1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=ROOT / "tests" / "data" / "images")
    parser.add_argument("--speeds", default="6,8,9,10")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    speeds = [int(s) for s in args.speeds.split(",")]
    photos = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    rows: list[dict] = []
    for path in photos:
        with Image.open(path) as original:
            source = ImageOps.exif_transpose(original).convert("RGB")
        for width in WIDTHS:
            if source.width < width:
                continue
            im = source.resize((width, round(source.height * width / source.width)), Image.Resampling.LANCZOS)
            jpeg, _ = encode(im, "JPEG", quality=JPEG_QUALITY)
            target = psnr(decoded(jpeg), im)
            webp, _ = encode(im, "WEBP", quality=JPEG_QUALITY, method=4)
            row = {"image": path.name, "width": width, "jpegBytes": len(jpeg), "jpegPsnr": round(target, 2),
                   "webpBytes": len(webp), "webpPsnr": round(psnr(decoded(webp), im), 2), "avif": {}}
            for speed in speeds:
                quality, data = lowest_avif_quality(im, target, speed)
                times = [encode(im, "AVIF", quality=quality, speed=speed, max_threads=1)[1] for _ in range(args.runs)]
                row["avif"][speed] = {"quality": quality, "bytes": len(data), "seconds": statistics.median(times)}
            rows.append(row)
            print(f"{path.name} {width}px: jpeg {len(jpeg)} B at {target:.1f} dB; "
                  + "; ".join(f"avif s{s} q{v['quality']} {v['bytes']} B {v['seconds'] * 1000:.0f} ms"
                              for s, v in row["avif"].items()), file=sys.stderr)
    print(f"\n## AVIF variants: the lowest quality with the JPEG q{JPEG_QUALITY}'s PSNR, {len(photos)} photos\n")
    print("| speed | 2048-px encode, 1 thread (median) | AVIF bytes / JPEG (median, min–max) | quality found (median) |")
    print("| --- | --- | --- | --- |")
    for speed in speeds:
        big = [r["avif"][speed]["seconds"] for r in rows if r["width"] == 2048]
        ratios = [r["avif"][speed]["bytes"] / r["jpegBytes"] for r in rows]
        qualities = [r["avif"][speed]["quality"] for r in rows]
        print(f"| {speed} | {statistics.median(big) * 1000:.0f} ms | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}–{max(ratios):.2f}) | {statistics.median(qualities):g} |")
    webp = [r["webpBytes"] / r["jpegBytes"] for r in rows]
    print(f"\nWebP q{JPEG_QUALITY} (method 4) / JPEG q{JPEG_QUALITY}: median {statistics.median(webp):.2f} bytes "
          f"(PSNR median {statistics.median(r['webpPsnr'] - r['jpegPsnr'] for r in rows):+.1f} dB vs the JPEG)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"avif-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"speeds": speeds, "runs": args.runs, "rows": rows}, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
