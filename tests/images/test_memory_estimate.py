"""The image job's memory estimate (what the governor admits it on) against reality.

The estimate is the resize plan's ``peak_memory`` (falconproc/native/_resize_py.py
spells out the memory model) plus, for a WebP that Pillow decodes at full size, the
decoder's canvases (falconproc/jobs/image.py). It must never be below what the job
really uses; a modest overestimate is fine.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from falconproc.images import memory as image_memory
from falconproc.jobs import registry
from falconproc.queue import Job
from falconproc.images.pipeline import Target, decode_for, open_checked
from falconproc.images.presets import PresetCatalog
from falconproc.native import resize as native_resize
from falconproc.native import webp as native_webp
from falconproc.wiring import load_job_types
from tests.support.corpus import IMAGES_DIR, ROOT
from tests.support.inprocess import build_imaging


# Run in a fresh interpreter, so that no other test's memory (freed but still mapped)
# hides or inflates the growth. Pillow allocates pixels outside Python's allocator:
# RSS, not tracemalloc. The growth is the peak RSS during generate() above the RSS just
# before it (warmed up first: plugins imported, pool threads started). The peak is the
# kernel's VmHWM, reset to the current RSS right before (clear_refs 5); not
# getrusage().ru_maxrss, which a child inherits from its parent across fork + exec (under
# pytest it read 305 MB before the child had done anything).
_MEASURE = r"""
import json, sys
from pathlib import Path
from falconproc.jobs import registry
from falconproc.queue import Job
from falconproc.wiring import load_job_types
from tests.images.conftest import build_imaging

imaging = build_imaging(Path(sys.argv[1]))
load_job_types(imaging.settings)
image_type = registry.get("image")
presets = list(imaging.images.catalog.eager)
path = Path(sys.argv[2])
content_hash = imaging.put(path.read_bytes(), path.name)
job = Job("00-1-image-x", "image", content_hash,
          payload=image_type.make_payload(imaging.store.metadata(content_hash)))
estimate = image_type.memory_estimate(job, imaging.settings)
warm = imaging.put((Path(sys.argv[3])).read_bytes(), "warm" + path.suffix)
imaging.images.generate(warm, presets)  # same formats and codecs, tiny image


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS (else it is the peak since exec: the small warm-up)
except OSError:
    pass
rss_before = status("VmRSS")
imaging.images.generate(content_hash, presets)
peak = status("VmHWM")
print(json.dumps({"estimate": estimate, "growth": peak - rss_before, "threads": imaging.settings.image_threads}))
"""


def _measure(tmp_path: Path, name: str) -> dict:
    source = IMAGES_DIR / name
    warm = tmp_path / ("warm" + source.suffix)
    with Image.open(source) as im:
        im.convert("RGB").resize((64, 40)).save(warm, im.format)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "svc"), str(source), str(warm)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS/VmHWM from /proc")
@pytest.mark.parametrize("name", ["garden-2560x1600.jpg", "wood-d.webp"])
def test_estimate_covers_measured_peak(tmp_path, name):
    """The default presets of a large real image, made by the real ImageService.generate
    (decode, the striped render on the image threads, the encodes on the pool) in a fresh
    process: the job's estimate is at least the peak RSS growth, and not absurdly more.
    (wood-d.webp is 4096x4096: scaled on load by the compiled libwebp module, or by its
    pure twin, which decodes at full size first.)"""
    m = _measure(tmp_path, name)
    print(f"{name}: estimate {m['estimate'] / 2**20:.1f} MiB, measured growth {m['growth'] / 2**20:.1f} MiB "
          f"({m['threads']} image threads, WebP decode: "
          f"{'libwebp' if native_webp.SCALED_DECODE else 'pure twin'})")
    assert m["estimate"] >= m["growth"]
    assert m["estimate"] <= 3 * m["growth"] + native_resize.pure.OVERHEAD_BYTES


def _webp(width: int, height: int, frames: int) -> bytes:
    images = [Image.new("RGB", (width, height), (40 * i, 90, 160)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "WEBP", quality=50, save_all=frames > 1, append_images=images[1:])
    return buf.getvalue()


def test_webp_estimate_still_vs_animated(tmp_path):
    """A still WebP is planned as shrunk on load, as the service decodes it: with the
    compiled libwebp module that is all; its pure twin decodes at full size first, so the
    estimate is at least that decode's copies. An animated one (the service decodes its
    first frame at full size through Pillow) or one whose frame count is unknown is
    planned as a full decode, plus the decoder's two RGBA canvases."""
    imaging = build_imaging(tmp_path, eager_presets=("thumbnail",))
    settings = imaging.settings
    load_job_types(settings)
    image_type = registry.get("image")
    boxes = [p.box for p in PresetCatalog(settings).eager]
    w, h = 1200, 800
    full = native_resize.plan_resize(w, h, boxes, is_jpeg=False, bands=4).peak_memory + 2 * w * h * 4
    scaled = native_resize.plan_resize(w, h, boxes, is_jpeg=True, bands=4)
    assert scaled.draft_scale == 4  # 300x200 still holds the 200x133 thumbnail

    estimates = {}
    for kind, frames in (("still", 1), ("animated", 3)):
        content_hash = imaging.put(_webp(w, h, frames), f"{kind}.webp")
        payload = image_type.make_payload(imaging.store.metadata(content_hash))
        assert (payload["webp"], payload["frames"]) == (True, frames)
        estimates[kind] = image_type.memory_estimate(Job(f"00-{frames}-image-x", "image", content_hash,
                                                         payload=payload), settings)
        # ... and the service's own decode agrees on whether it is scaled
        with imaging.store.local_file(content_hash) as source, open_checked(source, settings) as im:
            decoded = decode_for([Target(p.name, p.max_width, p.max_height, p.pil_format, p.quality)
                                  for p in PresetCatalog(settings).eager], im)
        assert decoded.plan.draft_scale == (4 if kind == "still" else 1)

    assert estimates["animated"] == full
    if native_webp.SCALED_DECODE:
        assert estimates["still"] == scaled.peak_memory < full
    else:  # the pure twin: Pillow decodes at full size (+ canvases, + RGB copy), then BOX
        pure = (2 + 3) * w * h * 4 + 3 * 300 * 200 * 4 + native_resize.pure.OVERHEAD_BYTES
        assert estimates["still"] == max(scaled.peak_memory, pure)
    # an old payload without the frame count: unsure, so a full decode
    old = Job("00-9-image-x", "image", "c" * 64, payload={"width": w, "height": h, "jpeg": False, "webp": True})
    assert image_type.memory_estimate(old, settings) == full
    assert image_memory.still_webp({"webp": True, "frames": 1})
    assert not image_memory.still_webp({"webp": True, "frames": 2})
