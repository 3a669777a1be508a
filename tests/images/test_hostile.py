"""Hostile images against the real service: bombs refused from the header at upload,
a many-frame GIF, a truncated JPEG, a text file named .jpg; the process tree's memory
(as /health reports it) sampled throughout and bounded. The service is this module's
own (``module_service``), so the bound is not shared with what other folders run."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.images._http import get_preset, image_job, optimize, upload_ok
from tests.images._images import CORPUS, PRESETS, gif_oversized_frame, jpeg_bomb, many_frame_gif, open_output, png_bomb
from tests.support.content import unique_text
from tests.support.http import assert_error, cache_metadata, health, upload, wait_job
from tests.support.store import assert_not_stored

MiB = 1024 * 1024
RSS_BOUND = 600 * MiB
peak: dict[str, int] = {"rss": 0, "samples": 0}


@pytest.fixture(scope="module", autouse=True)
def rss_watch(module_service):
    """Samples /health's memory.rss (the whole service tree) every 100 ms during the module."""
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                rss = requests.get(module_service.url + "/health", timeout=5).json()["memory"]["rss"]
                peak["rss"] = max(peak["rss"], rss)
                peak["samples"] += 1
            except (requests.RequestException, ValueError, KeyError):
                pass
            stop.wait(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield peak
    stop.set()
    thread.join()


@pytest.mark.parametrize("make,size", [(png_bomb, (50_000, 50_000)), (jpeg_bomb, (65_000, 65_000)),
                                       (lambda: png_bomb(40_000, 10), (40_000, 10))],
                         ids=["png-50000x50000", "jpeg-65000x65000", "png-side-40000"])
def test_bomb_refused_at_upload(module_service, make, size):
    data = make()
    start = time.monotonic()
    resp = upload(module_service, data, name="bomb.img")
    elapsed = time.monotonic() - start
    body = assert_error(resp, 422, "image_too_large")
    assert (body["width"], body["height"]) == size
    assert elapsed < 2.0, f"refusing a {len(data)}-byte bomb took {elapsed:.2f}s"
    assert_not_stored(module_service, data)
    assert health(module_service)["status"] in ("ok", "degraded")


@pytest.mark.parametrize("side", [8000, 60000])
def test_gif_frame_larger_than_its_screen(module_service, side):
    """A 1x1 logical screen holding a side x side first frame: Pillow decodes the frame's
    extent, so the upload check must use it too. Whatever the upload says, a preset never
    decodes it (422 from the header parse, fast) and nothing crashes."""
    data = gif_oversized_frame(side, side)
    resp = upload(module_service, data, name="screen.gif")
    if resp.status_code in (200, 201):
        content_hash = resp.json()["contentHash"]
        start = time.monotonic()
        assert_error(get_preset(module_service, content_hash, "thumbnail"), 422, "image_too_large")
        assert time.monotonic() - start < 2
        pytest.fail(f"a GIF that decodes as {side}x{side} was stored: the upload probe read only its 1x1 "
                    f"logical screen ({resp.json()['metadata'].get('image')})")
    body = assert_error(resp, 422, "image_too_large")
    assert (body["width"], body["height"]) == (side, side)
    assert_not_stored(module_service, data)


def test_many_frame_gif(module_service):
    """5000 frames of 1x1: stored, its presets are its first frame (1x1, never
    upscaled), rendered in bounded time; the job ends done."""
    data = many_frame_gif(5000)
    body = upload_ok(module_service, data, "frames.gif")
    assert body["mimeType"] == "image/gif"
    image = body["metadata"]["image"]
    assert (image["width"], image["height"]) == (1, 1) and image["frames"] == 5000
    start = time.monotonic()
    for name, spec in PRESETS.items():
        resp = get_preset(module_service, body["contentHash"], name)
        assert resp.status_code == 200, resp.text[:200]
        out = open_output(resp.content)
        assert out.image.size == (1, 1) and getattr(out.image, "n_frames", 1) == 1
        assert resp.headers["Content-Type"] == spec.mime_type
        r, g, b = out.image.convert("RGB").getpixel((0, 0))
        assert r > 200 and g < 60 and b < 60, (name, (r, g, b))  # frame 0 is red, frame 1 blue
    assert time.monotonic() - start < 10
    assert wait_job(module_service, image_job(body)["id"])["status"] == "done"


def test_truncated_jpeg(module_service):
    """60% of a real JPEG: stored as sent (it is what the user uploaded); presets answer
    422 image_unreadable, again (fast, from the recorded imageError); the image job is
    dead-lettered at once with the error; optimize-for-ai says 422 too; nothing crashes."""
    garden = next(p for p in CORPUS if p.name.startswith("garden")).read_bytes()
    data = garden[: int(len(garden) * 0.6)]
    body = upload_ok(module_service, data, "cut.jpg")
    assert body["mimeType"] == "image/jpeg"
    content_hash = body["contentHash"]
    original = requests.get(f"{module_service.url}/cache/{content_hash}/original", timeout=30)
    assert original.status_code == 200 and original.content == data
    first = assert_error(get_preset(module_service, content_hash, "preview"), 422, "image_unreadable")
    assert first["message"]
    start = time.monotonic()
    job = wait_job(module_service, image_job(body)["id"])
    # A permanent error is dead-lettered on its first run (the supervisor then reports
    # attempts = maxAttempts): no retries with backoff in between.
    assert job["status"] == "dead" and job["attempts"] == job["maxAttempts"], job
    assert time.monotonic() - start < 5
    assert job["lastError"] and ("truncated" in job["lastError"] or "decode" in job["lastError"]), job
    for name in PRESETS:
        start = time.monotonic()
        assert_error(get_preset(module_service, content_hash, name), 422, "image_unreadable")
        assert time.monotonic() - start < 0.5
    assert_error(optimize(module_service, {"contentHash": content_hash, "maxSize": 512}), 422, "image_unreadable")
    state = cache_metadata(module_service, content_hash)
    assert state["imageError"]["error"] == "image_unreadable"
    assert "presets" not in state
    assert health(module_service)["status"] in ("ok", "degraded")


def test_text_named_jpg(module_service):
    data = unique_text()
    body = upload_ok(module_service, data, "holiday.jpg")
    assert body["mimeType"] == "text/plain"
    assert not [j for j in body["jobs"] if j["type"] == "image"]
    assert_error(get_preset(module_service, body["contentHash"], "thumbnail"), 415, "not_an_image")
    assert_error(optimize(module_service, {"contentHash": body["contentHash"]}), 415, "not_an_image")


def test_memory_stayed_bounded(module_service, rss_watch):
    """Runs last in this module: the tree RSS seen through every test above."""
    rss = health(module_service)["memory"]["rss"]
    assert rss_watch["samples"] > 0
    assert max(rss_watch["rss"], rss) < RSS_BOUND, f"peak tree RSS {rss_watch['rss'] / MiB:.0f} MiB"
