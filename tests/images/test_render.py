"""The image pipeline in-process (ImageService + falconproc.images.pipeline, no HTTP):
presets of the corpus, orientation, privacy, colour, modes, animation, formats, the
cache layout and the decode-time guards."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image, ImageCms

from falconproc.config import SettingsError
from falconproc.images import service as image_service_module
from falconproc.images.service import UnknownPreset
from falconproc.images.pipeline import ImageTooLarge, ImageUnreadable, NotRenderable, open_checked
from falconproc.images.presets import PresetCatalog, parse_presets
from falconproc.native import resize as native_resize
from falconproc.wiring import load_job_types
from falconproc.wiring import Components
from tests.images._images import (
    CORPUS,
    FRAME_COLOURS,
    MIN_PSNR,
    ORIENTATION_TAG,
    PRESETS,
    SNIFFED,
    animated_gif,
    animated_webp,
    as_rgb_array,
    assert_no_metadata,
    assert_timestamp,
    bilevel_png,
    check_preset_output,
    encode,
    gray_png,
    gray_trns_png,
    i16_png,
    jpeg_bomb,
    la_png,
    noise_rgb,
    open_output,
    palette_transparent_png,
    png_bomb,
    private_jpeg,
    psnr,
    reference_render,
    rgb_matrix_icc,
    rgb_trns_png,
    rgba_image,
    srgb_reference,
    swatches,
    upright_source,
)

ALL = list(PRESETS.values())
WHITE = (255, 255, 255)


def render_all(imaging, data: bytes, presets=ALL) -> tuple[str, dict]:
    content_hash = imaging.put(data)
    entries = imaging.images.generate(content_hash, list(presets))
    return content_hash, entries


def output(imaging, content_hash: str, preset_name: str):
    preset = imaging.images.catalog.get(preset_name)
    return open_output(imaging.cached(content_hash, preset.filename).read_bytes())


def close(pixel, expected, tol: int) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def centre(im: Image.Image, fx: float, fy: float):
    return im.getpixel((int(im.width * fx), int(im.height * fy)))


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_presets(module_imaging, path):
    """Every default preset of every corpus image, from one decode: real format = extension,
    never upscaled, aspect kept, fits its box, upright, no metadata, close to a direct
    LANCZOS resize of the full image; metadata.json per preset; the original untouched."""
    data = path.read_bytes()
    content_hash = module_imaging.put(data, path.name)
    entries = module_imaging.images.generate(content_hash, ALL)
    source = upright_source(path)
    cache_meta = json.loads(module_imaging.cached(content_hash, "metadata.json").read_text())
    for preset in ALL:
        file = module_imaging.cached(content_hash, preset.filename)
        assert file.name == f"{preset.name}.{preset.extension}"
        out = check_preset_output(file.read_bytes(), preset, source, min_psnr=MIN_PSNR[preset.name])
        assert file.suffix == "." + SNIFFED[out.image.format][2]
        entry = cache_meta["presets"][preset.name]
        assert entry == entries[preset.name]
        assert {"size", "format", "width", "height", "processedAt"} <= set(entry)
        assert entry["size"] == file.stat().st_size == len(out.data)
        assert entry["format"] == SNIFFED[out.image.format][0]
        assert (entry["width"], entry["height"]) == out.image.size
        assert_timestamp(entry["processedAt"])
    assert module_imaging.original_bytes(content_hash) == data
    assert sorted(p.name for p in module_imaging.cache.entry(content_hash).iterdir()
                  if not p.name.startswith(".")) == sorted([p.filename for p in ALL] + ["metadata.json"])


def test_exif_orientation_8_is_applied(module_imaging):
    """storm-exif-orientation8.jpg is stored 1920x1280 with Orientation=8: every output is
    portrait, matches the exif_transpose reference and not the other rotation."""
    path = next(p for p in CORPUS if p.name == "storm-exif-orientation8.jpg")
    with Image.open(path) as im:
        assert im.size == (1920, 1280) and im.getexif().get(ORIENTATION_TAG) == 8
    content_hash, _ = render_all(module_imaging, path.read_bytes())
    upright = upright_source(path)
    assert upright.size == (1280, 1920)
    wrong = Image.open(path).transpose(Image.Transpose.ROTATE_270)
    for preset in ALL:
        out = output(module_imaging, content_hash, preset.name)
        w, h = out.image.size
        assert h > w, f"{preset.name} is not portrait: {out.image.size}"
        assert ORIENTATION_TAG not in out.image.getexif()
        good = psnr(as_rgb_array(out.image), as_rgb_array(reference_render(upright, out.image.size)))
        bad = psnr(as_rgb_array(out.image), as_rgb_array(reference_render(wrong, out.image.size)))
        assert good >= MIN_PSNR[preset.name] and bad < 20, (preset.name, good, bad)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7])
def test_every_exif_orientation(imaging, orientation):
    """All eight EXIF orientations land upright (checked on a 2x-draftable odd-sized JPEG)."""
    from tests.images._images import gps_exif

    data = encode(noise_rgb(1001, 601, seed=orientation), "JPEG", quality=92, exif=gps_exif(orientation))
    content_hash, _ = render_all(imaging, data, [PRESETS["preview"], PRESETS["thumbnail"]])
    upright = upright_source(data)
    for name in ("preview", "thumbnail"):
        out = output(imaging, content_hash, name)
        assert_no_metadata(out)
        assert psnr(as_rgb_array(out.image), as_rgb_array(reference_render(upright, out.image.size))) >= 30


# --------------------------------------------------------------------------- privacy


def test_gps_exif_and_xmp_are_stripped_original_kept(imaging):
    data = private_jpeg()
    with Image.open(io.BytesIO(data)) as im:  # the fixture really carries them
        assert im.getexif().get_ifd(0x8825) and "xmp" in im.info
    content_hash, _ = render_all(imaging, data)
    for preset in ALL:
        out = output(imaging, content_hash, preset.name)
        assert_no_metadata(out)
        assert b"SecretTownXMP" not in out.data and b"TestCam" not in out.data
    assert imaging.original_bytes(content_hash) == data


def test_jpeg_comment_is_stripped(imaging):
    """A COM segment is metadata too (cameras and editors put names, places, software in
    it): it must not be copied into the presets."""
    data = private_jpeg(comment=True)
    content_hash, _ = render_all(imaging, data)
    leaked = [p.name for p in ALL if b"SecretCOMcomment" in output(imaging, content_hash, p.name).data]
    assert not leaked, f"the original's JPEG comment was copied into {leaked}"


# --------------------------------------------------------------------------- colour


def quadrant_pixels(im: Image.Image):
    return [centre(im, fx, fy) for fx, fy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))]


def test_icc_profiled_rgb_is_converted_to_srgb(imaging):
    """A JPEG tagged with a wide-gamut (Adobe RGB 1998) profile: outputs hold the sRGB
    values littlecms computes, not the raw numbers, and carry no foreign profile."""
    icc = rgb_matrix_icc()
    source = swatches(800, 600)
    data = encode(source, "JPEG", quality=95, icc_profile=icc)
    expected = quadrant_pixels(srgb_reference(source, icc))
    raw = quadrant_pixels(source)
    assert any(not close(e, r, 12) for e, r in zip(expected, raw))  # the conversion matters
    content_hash, _ = render_all(imaging, data)
    for preset in ALL:
        out = output(imaging, content_hash, preset.name)
        assert out.image.mode == "RGB"
        got = quadrant_pixels(out.image)
        assert all(close(g, e, 6) for g, e in zip(got, expected)), (preset.name, got, expected, raw)
        icc_out = out.image.info.get("icc_profile")
        if icc_out:
            desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc_out)))
            assert "srgb" in desc.lower(), desc


def test_icc_profiled_rgba_png_keeps_alpha(imaging):
    icc = rgb_matrix_icc()
    rgba = rgba_image(600, 400)
    data = encode(rgba, "PNG", icc_profile=icc)
    expected = srgb_reference(rgba.convert("RGB"), icc).getpixel((100, 200))
    content_hash, _ = render_all(imaging, data)
    thumb = output(imaging, content_hash, "thumbnail").image
    assert thumb.mode == "RGBA"
    assert close(centre(thumb, 0.25, 0.5), expected + (255,), 6)
    assert centre(thumb, 0.75, 0.5)[3] == 0
    preview = output(imaging, content_hash, "preview").image
    assert close(centre(preview, 0.25, 0.5), expected, 6) and close(centre(preview, 0.75, 0.5), WHITE, 3)


def test_cmyk_jpeg_becomes_rgb(imaging):
    source = swatches(640, 480).convert("CMYK")
    data = encode(source, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
        expected = quadrant_pixels(im.convert("RGB"))
    content_hash, _ = render_all(imaging, data)
    for preset in ALL:
        out = output(imaging, content_hash, preset.name)
        assert out.image.mode == "RGB", (preset.name, out.image.mode)
        assert all(close(g, e, 8) for g, e in zip(quadrant_pixels(out.image), expected)), preset.name


# --------------------------------------------------------------------------- modes


def assert_flattened_and_alpha(imaging, content_hash: str, opaque_rgb, *, tol: int = 6) -> None:
    """Left half opaque ``opaque_rgb``, right half transparent: JPEG presets white on the
    right, the WebP thumbnail keeps alpha 0 there."""
    for name in ("ai-chat", "preview"):
        im = output(imaging, content_hash, name).image
        assert im.mode == "RGB"
        assert close(centre(im, 0.25, 0.5), opaque_rgb, tol), (name, centre(im, 0.25, 0.5))
        assert close(centre(im, 0.75, 0.5), WHITE, 3), (name, centre(im, 0.75, 0.5))
    thumb = output(imaging, content_hash, "thumbnail").image
    assert thumb.mode == "RGBA", thumb.mode
    assert centre(thumb, 0.75, 0.5)[3] == 0 and centre(thumb, 0.25, 0.5)[3] == 255
    assert close(centre(thumb, 0.25, 0.5)[:3], opaque_rgb, tol)


def test_rgba_png_flattened_on_white_for_jpeg_alpha_kept_for_webp(imaging):
    content_hash, _ = render_all(imaging, encode(rgba_image(), "PNG"))
    assert_flattened_and_alpha(imaging, content_hash, (220, 30, 30))


def test_palette_png_with_transparency(imaging):
    content_hash, _ = render_all(imaging, palette_transparent_png())
    assert_flattened_and_alpha(imaging, content_hash, (30, 120, 220))


def test_la_png(imaging):
    content_hash, _ = render_all(imaging, la_png())
    assert_flattened_and_alpha(imaging, content_hash, (90, 90, 90))


@pytest.mark.parametrize("make,opaque", [(rgb_trns_png, (255, 0, 0)), (gray_trns_png, (40, 40, 40))],
                         ids=["rgb-trns", "l-trns"])
def test_colour_key_transparency(imaging, make, opaque):
    """PNG tRNS on RGB/L images (one transparent colour; optipng writes this for
    1-bit alpha): the keyed colour is transparent, so white in JPEG, alpha 0 in WebP."""
    content_hash, _ = render_all(imaging, make())
    assert_flattened_and_alpha(imaging, content_hash, opaque)


def test_greyscale_png(imaging):
    data = gray_png(640, 480)
    content_hash, _ = render_all(imaging, data)
    source = upright_source(data)
    for preset in ALL:
        check_preset_output(output(imaging, content_hash, preset.name).data, preset, source,
                            min_psnr=MIN_PSNR[preset.name])


def test_16bit_greyscale_png(imaging):
    data, ramp = i16_png(640, 480)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode.startswith("I")
    content_hash, _ = render_all(imaging, data)
    for preset in ALL:
        im = output(imaging, content_hash, preset.name).image
        assert im.mode == "RGB"
        arr = np.asarray(im.convert("L"), dtype=np.float64)
        # The 16-bit ramp maps to 8 bits (v / 256) across the width, not clipped at 255.
        expected = np.asarray(Image.fromarray((ramp >> 8).astype(np.uint8)).resize(im.size, Image.Resampling.LANCZOS),
                              dtype=np.float64)
        assert psnr(arr, expected) >= 35, preset.name
        assert arr[:, : im.width // 10].mean() < 30 and arr[:, -im.width // 10:].mean() > 225


def test_bilevel_png(imaging):
    content_hash, _ = render_all(imaging, bilevel_png(640, 480))
    for preset in ALL:
        im = output(imaging, content_hash, preset.name).image
        assert im.mode in ("RGB", "L")
        assert close(centre(im.convert("RGB"), 0.25, 0.5), WHITE, 4)
        assert close(centre(im.convert("RGB"), 0.75, 0.5), (0, 0, 0), 4)


@pytest.mark.parametrize("make", [animated_gif, animated_webp], ids=["gif", "webp"])
def test_animation_gives_its_first_frame(imaging, make):
    data = make(480, 320)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == len(FRAME_COLOURS)
    content_hash, _ = render_all(imaging, data)
    for preset in ALL:
        out = output(imaging, content_hash, preset.name)
        assert getattr(out.image, "n_frames", 1) == 1
        assert close(centre(out.image.convert("RGB"), 0.5, 0.5), FRAME_COLOURS[0], 6), preset.name


@pytest.mark.parametrize("fmt,kwargs", [("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
                                        ("GIF", {}), ("WEBP", {"quality": 90})],
                         ids=["bmp", "tiff", "tiff-lzw", "gif", "webp"])
def test_other_formats_render(imaging, fmt, kwargs):
    source = noise_rgb(900, 600, seed=7)
    data = encode(source, fmt, **kwargs)
    content_hash, _ = render_all(imaging, data)
    upright = upright_source(data)
    for preset in ALL:
        check_preset_output(output(imaging, content_hash, preset.name).data, preset, upright,
                            min_psnr=MIN_PSNR[preset.name] - 6)  # GIF/WebP sources are lossy already


# --------------------------------------------------------------------------- presets and settings


def test_operator_presets_and_eager_subset(tmp_path):
    from tests.support.inprocess import build_imaging

    imaging = build_imaging(tmp_path, extra_presets="square:512x512:webp:80; wide:1000x0:png:100",
                            eager_presets=("square", "thumbnail"))
    catalog = imaging.images.catalog
    assert catalog.names() == ["ai-chat", "ai-vision", "thumbnail", "preview", "square", "wide"]
    assert [p.name for p in catalog.eager] == ["square", "thumbnail"]
    data = encode(noise_rgb(2000, 1500, seed=3), "JPEG", quality=90)
    content_hash = imaging.put(data)
    assert [p.name for p in imaging.images.missing_eager(content_hash)] == ["square", "thumbnail"]
    made = imaging.images.generate(content_hash, imaging.images.missing_eager(content_hash))
    assert sorted(made) == ["square", "thumbnail"] and imaging.images.missing_eager(content_hash) == []
    square = open_output(imaging.cached(content_hash, "square.webp").read_bytes())
    assert square.image.format == "WEBP" and square.image.size == (512, 384)
    preset, path = imaging.preset_path(content_hash, "wide")  # on demand
    assert path.name == "wide.png"
    wide = open_output(path.read_bytes())
    assert wide.image.format == "PNG" and wide.image.size == (1000, 750)
    assert_no_metadata(wide)
    assert not imaging.cached(content_hash, "ai-chat.jpg").exists()


@pytest.mark.parametrize("raw", ["square", "square:512x512:gif:80", "original:10x10:png:1", "x:0x0:png:50",
                                 "x:10x10:jpeg:0", "x:10x10:jpeg:101", "Upper:10x10:png:5"])
def test_bad_preset_settings_refused(raw):
    with pytest.raises(SettingsError):
        parse_presets(raw)


def test_unknown_eager_preset_refused(tmp_path):
    from tests.support.inprocess import build_imaging

    with pytest.raises(SettingsError):
        build_imaging(tmp_path, eager_presets=("nope",))


def test_unknown_preset_lists_presets(imaging):
    content_hash = imaging.put(encode(noise_rgb(64, 64, seed=1), "PNG"))
    with pytest.raises(UnknownPreset) as info:
        imaging.preset_path(content_hash, "huge")
    assert info.value.known == ["ai-chat", "ai-vision", "thumbnail", "preview"]


def test_not_renderable(imaging):
    content_hash = imaging.put(b"just some text renamed photo.jpg\n" * 20, "photo.jpg")
    assert imaging.store.metadata(content_hash)["mimeType"] == "text/plain"
    with pytest.raises(NotRenderable):
        imaging.preset_path(content_hash, "thumbnail")
    with pytest.raises(NotRenderable):
        imaging.images.optimize(content_hash, 512, 85)


# --------------------------------------------------------------------------- guards


def test_every_decode_is_guarded_by_the_limits(imaging):
    """An image stored under a larger limit is refused before decoding once the limit
    is lowered (the check runs on every decode, not only at upload)."""
    data = encode(noise_rgb(1200, 900, seed=5), "JPEG")
    content_hash = imaging.put(data)
    strict = imaging.with_settings(max_image_pixels=1_000_000)
    with pytest.raises(ImageTooLarge):
        strict.preset_path(content_hash, "thumbnail")
    with pytest.raises(ImageTooLarge):
        strict.images.optimize(content_hash, 256, 80)
    narrow = imaging.with_settings(max_image_side=1000)
    with pytest.raises(ImageTooLarge):
        narrow.images.generate(content_hash, ALL)
    assert not imaging.cached(content_hash, "thumbnail.webp").exists()


@pytest.mark.parametrize("make", [png_bomb, jpeg_bomb], ids=["png-50000", "jpeg-65000"])
def test_open_checked_refuses_bombs_from_the_header(imaging, make):
    start = time.monotonic()
    with pytest.raises((ImageTooLarge, Image.DecompressionBombError)):
        open_checked(io.BytesIO(make()), imaging.settings)
    assert time.monotonic() - start < 1.0


def test_truncated_jpeg_unreadable_once_then_cached(imaging, monkeypatch):
    """The first render fails with ImageUnreadable and records imageError; later
    requests answer from that record without decoding again."""
    garden = next(p for p in CORPUS if p.name.startswith("garden")).read_bytes()
    data = garden[: int(len(garden) * 0.6)]
    content_hash = imaging.put(data)
    assert imaging.original_bytes(content_hash) == data  # stored as sent
    with pytest.raises(ImageUnreadable):
        imaging.preset_path(content_hash, "preview")
    state = imaging.images.processing_state(content_hash)
    assert state["imageError"]["error"] == "image_unreadable" and state["imageError"]["message"]
    calls = []
    real = image_service_module.decode_for
    monkeypatch.setattr(image_service_module, "decode_for", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in ("preview", "thumbnail", "ai-chat"):
        with pytest.raises(ImageUnreadable):
            imaging.preset_path(content_hash, name)
    with pytest.raises(ImageUnreadable):
        imaging.images.optimize(content_hash, 512, 85)
    assert calls == [], "a known-broken image was decoded again"
    assert not any(imaging.cached(content_hash, p.filename).exists() for p in ALL)


def test_optimize_in_process(imaging):
    path = next(p for p in CORPUS if p.name == "storm-exif-orientation8.jpg")
    content_hash = imaging.put(path.read_bytes())
    result = imaging.images.optimize(content_hash, 600, 80)
    import base64

    out = open_output(base64.b64decode(result["data"]))
    assert out.image.format == "JPEG" and out.image.size == (400, 600) == (result["width"], result["height"])
    assert result["size"] == len(out.data) and result["mimeType"] == "image/jpeg"
    assert_no_metadata(out)


# --------------------------------------------------------------------------- the image job's estimate


def test_image_job_estimate_is_the_plan_of_the_eager_presets(tmp_path):
    """The governor admits the image job on the native plan's peak for the eager presets
    (an operator's large eager preset raises it: no JPEG draft is possible any more)."""
    from falconproc.jobs import registry
    from falconproc.queue import Job
    from tests.support.inprocess import build_imaging

    settings = build_imaging(tmp_path).settings
    load_job_types(settings)
    image_type = registry.get("image")
    payload = {"width": 8000, "height": 6000, "jpeg": True}
    job = Job("00-1-image-x", "image", "a" * 64, payload=payload)
    boxes = [p.box for p in PresetCatalog(settings).eager]
    default = image_type.memory_estimate(job, settings)
    assert default == native_resize.plan_resize(8000, 6000, boxes, is_jpeg=True, bands=4).peak_memory
    big = settings.replace(extra_presets="poster:6000x6000:jpeg:90")
    assert image_type.memory_estimate(job, big) > default + 8000 * 6000 * 3
    only_thumb = settings.replace(eager_presets=("thumbnail",))
    assert image_type.memory_estimate(job, only_thumb) < default
    unknown = Job("00-2-image-y", "image", "b" * 64, payload={"width": None, "height": None, "jpeg": False})
    assert image_type.memory_estimate(unknown, settings) > 0


@pytest.mark.parametrize("case", ["limits-lowered", "pillow-bomb"])
def test_image_job_dead_letters_images_it_can_never_render(tmp_path, case):
    """A job whose image is over the limits (or a Pillow decompression bomb) can never
    succeed: it must fail permanently (dead-letter at once), not be retried with backoff."""
    from falconproc.jobs import registry
    from falconproc.jobs.registry import PermanentJobError
    from falconproc.queue import Job
    from tests.images._images import gif_oversized_frame
    from tests.support.inprocess import build_imaging

    if case == "limits-lowered":
        imaging = build_imaging(tmp_path)
        content_hash = imaging.put(encode(noise_rgb(1200, 900, seed=9), "JPEG"))
        settings = imaging.settings.replace(max_image_pixels=100_000)
    else:  # limits raised past Pillow's own bomb limit: Pillow refuses 60000x60000 at open
        imaging = build_imaging(tmp_path, max_image_pixels=4_000_000_000, max_image_side=65_535)
        content_hash = imaging.put(gif_oversized_frame(60000, 60000), "screen.gif")
        settings = imaging.settings
    load_job_types(settings)
    job = Job("00-1-image-z", "image", content_hash, payload={"width": 1200, "height": 900, "jpeg": True})
    with pytest.raises(PermanentJobError):
        registry.get("image").handler(job, Components(settings).job_context())


def test_a_get_during_the_eager_job_waits_for_it(tmp_path, monkeypatch):
    """While the image job renders the eager presets, a GET of one of them must wait for
    the job (one decode) rather than decode the same image again beside it (twice the CPU
    and twice the memory of the largest image the job was admitted for)."""
    import threading

    from falconproc.jobs import registry
    from falconproc.queue import Job
    from tests.support.inprocess import build_imaging

    imaging = build_imaging(tmp_path)
    load_job_types(imaging.settings)
    wood = next(p for p in CORPUS if p.name == "wood-d.webp")  # 4096x4096: a long decode
    content_hash = imaging.put(wood.read_bytes())
    decodes = []
    real = image_service_module.decode_for
    monkeypatch.setattr(image_service_module, "decode_for",
                        lambda *a, **k: decodes.append(threading.current_thread().name) or real(*a, **k))
    job = Job("00-1-image-w", "image", content_hash, payload={"width": 4096, "height": 4096, "jpeg": False})
    runner = threading.Thread(target=registry.get("image").handler, args=(job, imaging.components.job_context()),
                              name="image-job")
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not decodes and time.monotonic() < deadline:  # the job is decoding now
            time.sleep(0.005)
        _, path = imaging.preset_path(content_hash, "thumbnail")
    finally:
        runner.join()
    assert path.exists()
    assert decodes == ["image-job"], f"decoded {len(decodes)} times: {decodes}"


@pytest.mark.parametrize("budget, expected", [(1, 1), (2, 2), (8, 2)])
def test_the_image_job_uses_no_more_threads_than_its_cpu_budget(tmp_path, monkeypatch, budget, expected):
    """Beside an OCR job the supervisor gives the image job one core: its stripes must not
    take the OCR's core too (IMAGE_THREADS=2 is the most it ever uses)."""
    from falconproc.jobs import registry
    from falconproc.queue import Job
    from falconproc.images import service as image_service
    from tests.support.inprocess import build_imaging

    imaging = build_imaging(tmp_path, image_threads=2)
    content_hash = imaging.put(encode(noise_rgb(1200, 900, seed=3), "JPEG"))
    load_job_types(imaging.settings)
    asked: list[int] = []
    real_pool = image_service.shared_pool
    monkeypatch.setattr(image_service, "shared_pool", lambda threads: asked.append(threads) or real_pool(threads))
    job = Job("00-1-image-b", "image", content_hash, payload={"width": 1200, "height": 900, "jpeg": True})
    result = registry.get("image").handler(job, imaging.components.job_context(budget))
    assert result["presets"] and asked == [expected]


def test_on_demand_renders_use_both_cores_only_when_the_other_slot_is_idle(tmp_path, monkeypatch):
    from falconproc.images import service as image_service
    from tests.support.inprocess import build_imaging

    imaging = build_imaging(tmp_path, image_threads=2)
    imaging.images.cpus = 2
    content_hash = imaging.put(encode(noise_rgb(1600, 1200, seed=5), "JPEG"))
    asked: list[int] = []
    real_render = image_service.render
    monkeypatch.setattr(image_service, "render", lambda d, t, threads=1, *a: asked.append(threads) or real_render(
        d, t, threads, *a))
    imaging.images.optimize(content_hash, 512, 85)
    assert asked == [2]  # alone: both cores
    with imaging.images.slots.acquire(1):  # another request renders meanwhile
        imaging.images.optimize(content_hash, 500, 85)
        imaging.preset_path(content_hash, "preview")
    assert asked == [2, 1, 1]
