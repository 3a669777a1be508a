"""GET|HEAD /cache/{hash}/{preset} through the real service (gunicorn, 2 web workers).

``ondemand_service`` runs without the job supervisor, so every preset here is made by
the GET that asks for it; ``service`` (supervisor on) shows the eager image job."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from tests.images._http import get_preset, image_job, upload_ok
from tests.images._images import (
    CORPUS,
    MIN_PSNR,
    PRESETS,
    SNIFFED,
    assert_no_metadata,
    assert_timestamp,
    check_preset_output,
    encode,
    noise_rgb,
    open_output,
    private_jpeg,
    upright_source,
    with_trailer,
)
from tests.support.content import unique_text
from tests.support.corpus import DOCS
from tests.support.http import IMMUTABLE, assert_error, cache_metadata, wait_job
from tests.support.wait import wait_for

_uploaded: dict[tuple[str, str], str] = {}


def stored_hash(svc, path: Path) -> str:
    key = (svc.url, path.name)
    if key not in _uploaded:
        _uploaded[key] = upload_ok(svc, path.read_bytes(), path.name, new=None)["contentHash"]
    return _uploaded[key]


def cache_file(svc, content_hash: str, filename: str) -> Path:
    return Path(svc.env["CACHE_PATH"]) / content_hash / filename


@pytest.mark.parametrize("preset", list(PRESETS), ids=str)
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_preset_on_demand(ondemand_service, path, preset):
    svc = ondemand_service
    spec = PRESETS[preset]
    content_hash = stored_hash(svc, path)
    resp = get_preset(svc, content_hash, preset)
    assert resp.status_code == 200, resp.text[:300]
    out = check_preset_output(resp.content, spec, upright_source(path), min_psnr=MIN_PSNR[preset])
    sniffed = SNIFFED[out.image.format]
    assert resp.headers["Content-Type"] == sniffed[1] == spec.mime_type
    assert resp.headers["ETag"] == f'"{content_hash}-{preset}"'
    assert resp.headers["Cache-Control"] == IMMUTABLE
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    on_disk = cache_file(svc, content_hash, f"{preset}.{sniffed[2]}")
    assert on_disk.read_bytes() == resp.content
    entry = json.loads(cache_file(svc, content_hash, "metadata.json").read_text())["presets"][preset]
    assert entry["size"] == len(resp.content) and entry["format"] == sniffed[0]
    assert (entry["width"], entry["height"]) == out.image.size
    assert_timestamp(entry["processedAt"])
    assert cache_metadata(svc, content_hash)["presets"][preset] == entry
    again = get_preset(svc, content_hash, preset)
    assert again.status_code == 200 and again.content == resp.content


def test_gps_and_xmp_never_served_original_untouched(ondemand_service):
    """A phone photo's GPS EXIF and XMP: gone from every preset served, while the original
    is served (and stored) byte for byte, metadata included."""
    svc = ondemand_service
    data = private_jpeg()
    content_hash = upload_ok(svc, data, "IMG_0001.jpg")["contentHash"]
    for preset in PRESETS:
        resp = get_preset(svc, content_hash, preset)
        assert resp.status_code == 200
        out = open_output(resp.content)
        assert_no_metadata(out)
        assert b"SecretTownXMP" not in resp.content and b"TestCam" not in resp.content
    original = requests.get(f"{svc.url}/cache/{content_hash}/original", timeout=30)
    assert original.status_code == 200 and original.content == data
    assert (svc.files / content_hash).is_dir()
    stored = [p for p in (svc.files / content_hash).iterdir() if p.read_bytes() == data]
    assert stored, "the stored original differs from the upload"


def test_conditional_and_head(ondemand_service):
    svc = ondemand_service
    content_hash = stored_hash(svc, CORPUS[0])
    first = get_preset(svc, content_hash, "thumbnail")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert etag == f'"{content_hash}-thumbnail"'
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = get_preset(svc, content_hash, "thumbnail", headers={"If-None-Match": header})
        assert resp.status_code == 304, header
        assert resp.content == b"" and resp.headers["ETag"] == etag
        assert resp.headers["Cache-Control"] == IMMUTABLE
    miss = get_preset(svc, content_hash, "thumbnail", headers={"If-None-Match": f'"{content_hash}-preview"'})
    assert miss.status_code == 200 and miss.content == first.content
    head = get_preset(svc, content_hash, "thumbnail", "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(first.content))
    assert head.headers["Content-Type"] == "image/webp" and head.headers["ETag"] == etag
    assert head.headers["Cache-Control"] == IMMUTABLE


def test_head_renders_a_missing_preset(ondemand_service):
    svc = ondemand_service
    content_hash = upload_ok(svc, encode(noise_rgb(900, 700, seed=11), "PNG"), "head.png")["contentHash"]
    head = get_preset(svc, content_hash, "preview", "HEAD")
    assert head.status_code == 200 and head.content == b""
    file = cache_file(svc, content_hash, "preview.jpg")
    assert int(head.headers["Content-Length"]) == file.stat().st_size


def test_unknown_preset_lists_presets(ondemand_service):
    svc = ondemand_service
    content_hash = stored_hash(svc, CORPUS[0])
    body = assert_error(get_preset(svc, content_hash, "gigantic"), 404, "unknown_preset")
    assert body["presets"] == ["ai-chat", "ai-vision", "thumbnail", "preview"]
    body = assert_error(get_preset(svc, "0" * 64, "gigantic"), 404, "unknown_preset")
    assert body["presets"] == list(PRESETS)


def test_unknown_hash(ondemand_service):
    resp = get_preset(ondemand_service, "ab" * 32, "thumbnail")
    assert_error(resp, 404, "not_found")
    head = get_preset(ondemand_service, "ab" * 32, "thumbnail", "HEAD")
    assert head.status_code == 404


def test_malformed_hash(ondemand_service):
    assert_error(get_preset(ondemand_service, "AB" * 32, "thumbnail"), 400)
    assert_error(get_preset(ondemand_service, "abc", "thumbnail"), 400)


@pytest.mark.parametrize("kind", ["pdf", "text"])
def test_non_image_preset_is_415(ondemand_service, kind):
    svc = ondemand_service
    if kind == "pdf":
        data, name, mime = (DOCS / "hello-world.pdf").read_bytes(), "doc.pdf", "application/pdf"
    else:
        data, name, mime = unique_text(), "notes.txt", "text/plain"
    body = upload_ok(svc, data, name, new=None)
    assert body["mimeType"] == mime
    # A PDF has thumbnail and preview of its page 1 (tests/documents), no other preset.
    presets = ("ai-chat", "ai-vision") if kind == "pdf" else ("thumbnail", "preview")
    for preset in presets:
        assert_error(get_preset(svc, body["contentHash"], preset), 415, "not_an_image")
    assert get_preset(svc, body["contentHash"], presets[0], "HEAD").status_code == 415
    assert not (Path(svc.env["CACHE_PATH"]) / body["contentHash"] / f"{presets[0]}.jpg").exists()


def test_concurrent_requests_render_once_across_workers(ondemand_service):
    """10 simultaneous GETs of a missing preset (no job makes it): all 200 with the same
    bytes, and the file was published exactly once (its inode never changes while we
    watch, processedAt is never rewritten). The service caps each worker at 5 connections
    (conftest), so the burst reaches both workers: the watcher checks both held some."""
    svc = ondemand_service
    garden = next(p for p in CORPUS if p.name.startswith("garden"))
    content_hash = upload_ok(svc, with_trailer(garden.read_bytes()), "garden-once.jpg")["contentHash"]
    file = cache_file(svc, content_hash, "ai-vision.jpg")
    assert not file.exists()
    port = int(svc.env["PORT"])
    workers = {pid: psutil.Process(pid) for pid in svc.worker_pids()}
    assert len(workers) >= 2
    inodes: set[int] = set()
    serving: set[int] = set()
    stop = threading.Event()
    sweeps = [0]  # watch() loops done

    def watch():
        while not stop.is_set():
            try:
                inodes.add(file.stat().st_ino)
            except FileNotFoundError:
                pass
            for pid, proc in workers.items():
                try:
                    if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                           for c in proc.net_connections(kind="tcp")):
                        serving.add(pid)
                except psutil.Error:
                    pass
            sweeps[0] += 1
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    barrier = threading.Barrier(10)

    def one(_):
        with requests.Session() as session:
            barrier.wait()
            return get_preset(svc, content_hash, "ai-vision", session=session)

    try:
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(one, range(10)))
        first_processed = json.loads(cache_file(svc, content_hash, "metadata.json").read_text())
        # Every answer is in, so every publish is done: wait until the watcher has looked
        # at the file once more after that (a whole sweep begun now), rather than sleeping.
        seen = sweeps[0]
        wait_for(lambda: sweeps[0] >= seen + 2, 10, 0.002, "the watcher to look again after the answers")
    finally:
        stop.set()
        watcher.join()
    assert [r.status_code for r in answers] == [200] * 10, [r.text[:200] for r in answers if r.status_code != 200]
    assert len({r.content for r in answers}) == 1
    assert len(inodes) == 1 and inodes == {file.stat().st_ino}, f"published {len(inodes)} times"
    assert len(serving) >= 2, f"only workers {serving} of {list(workers)} held a connection"
    entry = first_processed["presets"]["ai-vision"]
    assert set(first_processed["presets"]) == {"ai-vision"}
    later = get_preset(svc, content_hash, "ai-vision")
    assert later.content == answers[0].content
    assert cache_metadata(svc, content_hash)["presets"]["ai-vision"]["processedAt"] == entry["processedAt"]
    assert open_output(answers[0].content).image.size == (2048, 1280)


def test_eager_job_makes_every_preset(service):
    """An image upload queues one image job; it ends done and leaves all four presets
    (and their metadata) in the cache without any GET."""
    jobs = []
    for path in CORPUS:
        body = upload_ok(service, with_trailer(path.read_bytes()) if path.suffix == ".jpg" else path.read_bytes(),
                         path.name)
        jobs.append((path, body["contentHash"], image_job(body)))
    for path, content_hash, job in jobs:
        done = wait_job(service, job["id"], timeout=90)
        assert done["status"] == "done", done
        assert done["contentHash"] == content_hash and done["attempts"] == 1
        assert sorted(done["result"]["presets"]) == sorted(PRESETS), done
        entries = json.loads(cache_file(service, content_hash, "metadata.json").read_text())["presets"]
        source = upright_source(path)
        for name, spec in PRESETS.items():
            file = cache_file(service, content_hash, spec.filename)
            assert file.exists(), f"{path.name}: {spec.filename} missing after the job"
            out = check_preset_output(file.read_bytes(), spec, source, min_psnr=MIN_PSNR[name])
            assert entries[name]["size"] == file.stat().st_size
            assert (entries[name]["width"], entries[name]["height"]) == out.image.size
        served = cache_metadata(service, content_hash)["presets"]
        assert set(served) == set(PRESETS)


def test_operator_presets_and_eager_subset(fresh_service):
    svc = fresh_service(PRESETS="square:512x512:webp:80", EAGER_PRESETS="square,thumbnail")
    garden = next(p for p in CORPUS if p.name.startswith("garden"))
    body = upload_ok(svc, garden.read_bytes(), garden.name)
    done = wait_job(svc, image_job(body)["id"])
    assert done["status"] == "done" and sorted(done["result"]["presets"]) == ["square", "thumbnail"], done
    content_hash = body["contentHash"]
    entry = Path(svc.env["CACHE_PATH"]) / content_hash
    assert sorted(p.name for p in entry.iterdir() if not p.name.startswith(".")) == \
        ["metadata.json", "square.webp", "thumbnail.webp"]
    resp = get_preset(svc, content_hash, "square")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/webp"
    assert resp.headers["ETag"] == f'"{content_hash}-square"'
    out = open_output(resp.content)
    assert out.image.format == "WEBP" and out.image.size == (512, 320)
    body404 = assert_error(get_preset(svc, content_hash, "nope"), 404, "unknown_preset")
    assert body404["presets"] == ["ai-chat", "ai-vision", "thumbnail", "preview", "square"]
    preview = get_preset(svc, content_hash, "preview")  # not eager: made on demand
    assert preview.status_code == 200 and open_output(preview.content).image.size == (800, 500)
    assert (entry / "preview.jpg").exists()
