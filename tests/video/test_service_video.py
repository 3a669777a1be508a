"""Videos through the real service (gunicorn, the job supervisor, real ffmpeg/ffprobe):
every container the sniffer names, metadata.video, posters that skip a black opening and
follow the display rotation, thumbnail/preview/blurhash from the poster, and the clear
422 of truncated, garbage and audio-only files, with the service healthy throughout."""
from __future__ import annotations

import io
import time

import psutil
import pytest
import requests
from PIL import Image, ImageStat

from tests.support.content import sha256
from tests.support.http import assert_error, cache_metadata, health, upload, wait_job
from tests.support.wait import wait_for
from tests.video._videos import giant_frames, slow_video

# name -> (sniffed type, codec, hasAudio, displayed width, height)
PLAYABLE = {
    "black-first.mp4": ("video/mp4", "h264", False, 320, 240),
    "plain.mp4": ("video/mp4", "h264", False, 320, 240),
    "audio.webm": ("video/webm", "vp9", True, 320, 240),
    "audio.mkv": ("video/x-matroska", "h264", True, 320, 240),
    "plain.avi": ("video/x-msvideo", "mpeg4", False, 320, 240),
    "audio.3gp": ("video/3gpp", "h264", True, 320, 240),
    "plain.mov": ("video/quicktime", "h264", False, 320, 240),
    "rotated.mp4": ("video/mp4", "h264", False, 240, 320),
}
UNREADABLE = {"truncated.mp4": "corrupt", "garbage.mp4": "corrupt", "audio-only.mp4": "no_video_stream"}


def _upload(svc, path, name=None) -> dict:
    resp = upload(svc, path.read_bytes(), name=name or path.name, headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def _video_job(body: dict) -> dict:
    jobs = [j for j in body["jobs"] if j["type"] == "video"]
    assert len(jobs) == 1, body["jobs"]
    return jobs[0]


def _preset(svc, content_hash: str, name: str) -> requests.Response:
    return requests.get(f"{svc.url}/cache/{content_hash}/{name}", timeout=60)


def _image(resp: requests.Response) -> Image.Image:
    assert resp.status_code == 200, resp.text[:300]
    im = Image.open(io.BytesIO(resp.content))
    im.load()
    return im


def _luma(im: Image.Image) -> tuple[float, float]:
    stat = ImageStat.Stat(im.convert("L"))
    return stat.mean[0], stat.stddev[0]


@pytest.fixture(scope="module")
def uploaded(module_service, videos):
    """Every generated video uploaded once, its video job finished: name -> upload body."""
    bodies = {name: _upload(module_service, path) for name, path in videos.items()}
    for name, body in bodies.items():
        wait_job(module_service, _video_job(body)["id"], timeout=120)
    return bodies


@pytest.mark.parametrize("name", sorted(PLAYABLE))
def test_video_gets_metadata_poster_presets_and_blurhash(module_service, videos, uploaded, name):
    mime, codec, has_audio, width, height = PLAYABLE[name]
    body = uploaded[name]
    assert body["mimeType"] == mime
    assert body["contentHash"] == sha256(videos[name].read_bytes())
    job = wait_job(module_service, _video_job(body)["id"])
    assert job["status"] == "done", job
    meta = cache_metadata(module_service, body["contentHash"])
    video = meta["video"]
    assert {k: video[k] for k in ("codec", "hasAudio", "width", "height")} == {
        "codec": codec, "hasAudio": has_audio, "width": width, "height": height}
    expected_seconds = 3.0 if name == "black-first.mp4" else 2.0
    assert video["duration"] == pytest.approx(expected_seconds, abs=0.1)
    assert video["fps"] == pytest.approx(25, abs=0.01)
    assert isinstance(meta["image"]["blurhash"], str) and len(meta["image"]["blurhash"]) >= 6
    assert set(meta["presets"]) >= {"thumbnail", "preview"}

    thumbnail = _image(_preset(module_service, body["contentHash"], "thumbnail"))
    preview = _image(_preset(module_service, body["contentHash"], "preview"))
    assert thumbnail.format == "WEBP" and preview.format == "JPEG"
    assert max(thumbnail.size) == 200
    assert preview.size == (width, height)  # presets never upscale: the poster's displayed size
    assert (thumbnail.width > thumbnail.height) == (width > height)
    mean, spread = _luma(preview)
    assert mean > 40 and spread > 20, f"the poster looks blank: mean {mean:.1f}, spread {spread:.1f}"


def test_black_opening_is_skipped_for_the_poster(module_service, uploaded):
    # The first second is black and its first key frame is black: the poster comes
    # from after it.
    body = uploaded["black-first.mp4"]
    preview = _image(_preset(module_service, body["contentHash"], "preview"))
    mean, spread = _luma(preview)
    assert mean > 40 and spread > 20
    assert cache_metadata(module_service, body["contentHash"])["video"]["poster"]["method"] in (
        "key_frames", "all_frames")


def test_rotated_video_has_a_portrait_poster(module_service, videos, uploaded):
    body = uploaded["rotated.mp4"]
    plain = uploaded["plain.mp4"]
    rotated = _image(_preset(module_service, body["contentHash"], "preview"))
    upright = _image(_preset(module_service, plain["contentHash"], "preview"))
    assert rotated.size == (240, 320) and upright.size == (320, 240)
    # The same frames, turned a quarter: the rotated poster is the upright one turned
    # (either way round, as the matrix says), not a squeezed copy.
    turned = [upright.transpose(t) for t in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)]
    errors = [sum(abs(a - b) for a, b in zip(rotated.convert("L").tobytes(), t.convert("L").tobytes()))
              / (240 * 320) for t in turned]
    assert min(errors) < 12, errors


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_video_ends_in_a_clear_422(module_service, uploaded, name):
    body = uploaded[name]
    assert body["mimeType"] == "video/mp4"
    job = wait_job(module_service, _video_job(body)["id"])
    assert job["status"] == "dead", job
    for preset in ("thumbnail", "preview"):
        start = time.monotonic()
        error = assert_error(_preset(module_service, body["contentHash"], preset), 422, "video_unreadable")
        assert time.monotonic() - start < 2, "a recorded error is answered without running ffmpeg again"
        assert error["reason"] == UNREADABLE[name]
        assert "/" not in error["message"], "the store's paths stay private"
    meta = cache_metadata(module_service, body["contentHash"])
    assert meta["videoError"]["reason"] == UNREADABLE[name]
    assert "video" not in meta and "presets" not in meta
    # The original is still served as stored.
    original = requests.get(f"{module_service.url}/cache/{body['contentHash']}/original", timeout=30)
    assert original.status_code == 200 and original.headers["Content-Type"].startswith("video/mp4")
    assert health(module_service)["status"] == "ok"


def test_giant_frames_are_refused_from_the_header(module_service, tmp_path_factory):
    body = _upload(module_service, giant_frames(tmp_path_factory.getbasetemp()))
    start = time.monotonic()
    job = wait_job(module_service, _video_job(body)["id"], timeout=60)
    assert job["status"] == "dead", job
    error = assert_error(_preset(module_service, body["contentHash"], "thumbnail"), 422, "video_unreadable")
    assert error["reason"] == "too_large" and "8192x8192" in error["message"]
    assert time.monotonic() - start < 20
    assert health(module_service)["status"] == "ok"


def test_optimize_for_ai_refuses_a_video(module_service, uploaded):
    body = uploaded["plain.mp4"]
    resp = requests.post(f"{module_service.url}/optimize-for-ai", json={"contentHash": body["contentHash"]},
                         timeout=30)
    assert "poster" in assert_error(resp, 415, "not_an_image")["message"]


def test_other_presets_render_from_the_poster_in_any_format(module_service, uploaded):
    body = uploaded["audio.webm"]
    resp = requests.get(f"{module_service.url}/cache/{body['contentHash']}/ai-chat", timeout=60,
                        headers={"Accept": "image/webp"})
    im = _image(resp)
    assert im.format == "WEBP" and im.size == (320, 240)
    assert resp.headers["Vary"] == "Accept"


def test_video_posters_are_counted(module_service, uploaded):
    text = requests.get(f"{module_service.url}/metrics", timeout=30).text
    made = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("falconproc_video_posters_total{") and "error_" not in line)
    failed = {line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("falconproc_video_posters_total{") and "error_" in line}
    assert made >= len(PLAYABLE)
    assert failed.get("error_corrupt", 0) >= 2 and failed.get("error_no_video_stream", 0) >= 1
    assert 'falconproc_jobs_total{outcome="done",type="video"}' in text


def test_a_preset_asked_before_the_poster_waits_for_the_governed_video_job(fresh_service, videos):
    """ffmpeg runs only in the video job, which the memory governor admits: a preset asked
    for before the poster waits for that job and never runs ffmpeg in a web worker."""
    # A headroom as large as the limit: the governor admits no job at all.
    svc = fresh_service(MEMORY_LIMIT_BYTES="2G", MEMORY_HEADROOM_BYTES="2G", IMAGE_SYNC_TIMEOUT="2")
    body = _upload(svc, videos["audio.mkv"])
    h = body["contentHash"]
    start = time.monotonic()
    resp = _preset(svc, h, "preview")
    assert resp.status_code == 202, resp.text[:300]
    assert time.monotonic() - start < 15
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["status"] == "pending"
    job = resp.json()["job"]
    assert (job["id"], job["type"], job["status"]) == (_video_job(body)["id"], "video", "queued")
    meta = cache_metadata(svc, h)
    assert "video" not in meta and "videoError" not in meta, "nothing read the video"
    assert not _ffmpeg_children_of(svc)
    assert 'falconproc_video_posters_total{' not in requests.get(f"{svc.url}/metrics", timeout=30).text

    # The same store with room for jobs: the queued job makes the poster, the GET serves it.
    svc.stop()
    svc.env.pop("MEMORY_HEADROOM_BYTES")
    svc.start()
    preview = wait_for(lambda: (r := _preset(svc, h, "preview")).status_code == 200 and r, 60,
                       message="the preview once the video job ran")
    assert _image(preview).size == (320, 240)
    video = cache_metadata(svc, h)["video"]
    assert video["codec"] == "h264" and video["hasAudio"] is True
    assert wait_job(svc, job["id"])["status"] == "done"


def _ffmpeg_children_of(svc) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if proc.info["name"] in ("ffmpeg", "ffprobe") and str(svc.files) in cmdline:
            found.append(proc)
    return found


def test_video_timeout_kills_ffmpeg_and_ends_in_error(fresh_service, tmp_path_factory):
    # Every key frame of the slow video is black, so the poster search decodes 30 s of
    # 1080p: far more than VIDEO_TIMEOUT allows.
    path = slow_video(tmp_path_factory.getbasetemp())
    svc = fresh_service(VIDEO_TIMEOUT="1", VIDEO_MAX_SECONDS="30")
    start = time.monotonic()
    body = _upload(svc, path)
    job = wait_job(svc, _video_job(body)["id"], timeout=60)
    elapsed = time.monotonic() - start
    assert job["status"] == "dead", job
    assert elapsed < 20, f"the video job took {elapsed:.1f}s with VIDEO_TIMEOUT=1"
    error = assert_error(_preset(svc, body["contentHash"], "thumbnail"), 422, "video_unreadable")
    assert error["reason"] == "timeout" and "VIDEO_TIMEOUT" in error["message"]
    assert wait_for(lambda: not _ffmpeg_children_of(svc), 10, message="ffmpeg/ffprobe gone")
    assert health(svc)["status"] == "ok"


def test_a_killed_video_job_takes_ffmpeg_with_it_and_records_the_error(fresh_service, tmp_path_factory):
    # The supervisor's kill (JOB_TIMEOUTS) comes before VIDEO_TIMEOUT: ffmpeg, in the job's
    # process group, dies with the job, and the dead job's bookkeeping records why.
    path = slow_video(tmp_path_factory.getbasetemp())
    svc = fresh_service(JOB_TIMEOUTS="video=1", VIDEO_TIMEOUT="60", VIDEO_MAX_SECONDS="30", JOB_MAX_ATTEMPTS="1")
    body = _upload(svc, path)
    assert wait_for(lambda: _ffmpeg_children_of(svc), 10, interval=0.02, message="ffmpeg started by the job")
    job = wait_job(svc, _video_job(body)["id"], timeout=60)
    assert job["status"] == "dead", job
    assert wait_for(lambda: not _ffmpeg_children_of(svc), 10, message="ffmpeg/ffprobe gone")
    error = assert_error(_preset(svc, body["contentHash"], "preview"), 422, "video_unreadable")
    assert error["reason"] == "killed"
    assert health(svc)["status"] == "ok"


def test_without_ffmpeg_videos_are_stored_and_presets_not_available(fresh_service, videos):
    svc = fresh_service(FFMPEG_BINARY="/nonexistent/ffmpeg")
    body = _upload(svc, videos["plain.mp4"])
    assert body["isNew"] is True and body["mimeType"] == "video/mp4"
    job = wait_job(svc, _video_job(body)["id"])
    assert job["status"] == "done", job  # nothing to retry: not the video's fault
    error = assert_error(_preset(svc, body["contentHash"], "thumbnail"), 404, "not_available")
    assert "ffmpeg" in error["message"]
    assert "videoError" not in cache_metadata(svc, body["contentHash"])
    original = requests.get(f"{svc.url}/cache/{body['contentHash']}/original", timeout=30)
    assert original.content == videos["plain.mp4"].read_bytes()
    assert health(svc)["status"] == "ok"
