"""Presets and optimize-for-ai: what the resources and the image job call."""
from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

from PIL import Image

from falconproc.clock import iso_utc
from falconproc.config import Settings
from falconproc.errors import ContentNotFound
from falconproc.store.memo import SmallFileMemo
from falconproc.images.exif import read_exif
from falconproc.images.pipeline import (
    Decoded,
    ImageTooLarge,
    ImageUnreadable,
    NotRenderable,
    Target,
    check_dimensions,
    decode_for,
    encode,
    open_checked,
    render,
    shared_pool,
)
from falconproc.images.placeholder import blurhash_of
from falconproc.images.presets import Preset, PresetCatalog
from falconproc.locks import SlotSemaphore
from falconproc.mediatypes import is_renderable_image
from falconproc.native import resample
from falconproc.native.resize import fit_box
from falconproc.osutil import available_cpus
from falconproc.store import ContentStore, DerivedCache

log = logging.getLogger(__name__)


# optimize-for-ai resamples a stored preset instead of the original when the preset is
# DERIVE_MIN_RATIO to DERIVE_MAX_RATIO times the output in both dimensions and was encoded
# at least this well (lossy) -- see ImageService.derivation_source. Measured on the corpus
# (tests/images/test_optimize_derived.py): 40.7-48.5 dB PSNR of the from-original answer
# in that window; past 2.5x the preset's JPEG loss shows (39.8 dB at 3.1x).
DERIVE_MIN_RATIO = 1.5
DERIVE_MAX_RATIO = 2.5
DERIVE_MIN_QUALITY = 85


class UnknownPreset(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"no preset named {name!r}")
        self.known = known


class StandInSource(Protocol):
    """Where the presets of content that is not an image come from: an image that stands
    for it -- a video's poster frame (falconproc/video), a document's page 1
    (falconproc/documents) -- kept in the cache and handed to this pipeline, so that its
    presets are the same formats, sizes and variants as a photo's. Given by the
    composition root: the image pipeline knows no video or document code."""

    preset_names: tuple[str, ...] | None  # the presets such content has (None: every preset)

    def handles(self, mime_type: str | None) -> bool: ...

    def check(self, content_hash: str) -> None:
        """Raise (pending, unreadable, renderer not available) when the stand-in image
        cannot be had; may do nothing when open_image finds out itself."""

    def open_image(self, content_hash: str) -> AbstractContextManager[BinaryIO]:
        """The stand-in image, made first if it is missing."""


class Source(NamedTuple):
    open: Callable[[], AbstractContextManager[Path | BinaryIO]]
    is_original: bool  # False: a poster frame or page image (no EXIF of its own)
    meta: dict[str, Any]  # the original's metadata
    derived: dict[str, Any] | None = None  # the cache's metadata of an original image (read for the check)


def _target(preset: Preset) -> Target:
    return Target(preset.name, preset.max_width, preset.max_height, preset.pil_format, preset.quality)


class ImageService:
    def __init__(self, settings: Settings, store: ContentStore, cache: DerivedCache,
                 catalog: PresetCatalog | None = None, stand_ins: Sequence[StandInSource] = (),
                 served: SmallFileMemo | None = None):
        self.settings = settings
        self.store = store
        self.cache = cache
        self.catalog = catalog or PresetCatalog(settings)
        self.stand_ins = tuple(stand_ins)
        # The web side's memory of small files it served (a job process serves nothing).
        self.served = served
        # Renders in web workers share the image job concurrency across all processes.
        self.cpus = available_cpus()
        # Machine-wide, so kept on local disk (CACHE_PATH) whatever the cache backend.
        self.slots = SlotSemaphore(settings.cache_path / ".slots", "image", settings.job_concurrency.get("image", 2))

    # -- checks --------------------------------------------------------------------

    def _check_source(self, content_hash: str, presets: list[Preset] | None = None) -> Source:
        """What the presets are made from, once it is known to be there and renderable:
        the original image, or (for ``presets`` of a video or document) the image that
        stands for it. Without ``presets`` (optimize-for-ai, EXIF) only an image will do."""
        meta = self.store.metadata(content_hash)
        mime = meta.get("mimeType")
        stand_in = next((s for s in self.stand_ins if s.handles(mime)), None)
        if stand_in is not None:
            if not presets:
                # One frame or page would stand for the whole file to a vision model: not done.
                raise NotRenderable(f"{mime} is not an image: only its presets are made (from its poster "
                                    "frame or first page); GET one of them, e.g. preview")
            names = stand_in.preset_names
            others = sorted({p.name for p in presets} - set(names)) if names is not None else []
            if others:
                raise NotRenderable(f"{mime} has only the {' and '.join(names)} presets, "
                                    f"not {', '.join(others)}")
            stand_in.check(content_hash)
            return Source(lambda: stand_in.open_image(content_hash), False, meta)
        if not is_renderable_image(mime):
            raise NotRenderable(f"{meta.get('mimeType')} is not an image this service can render")
        image = meta.get("image") or {}
        check_dimensions(image.get("width"), image.get("height"), self.settings)
        derived = self.cache.metadata(content_hash)
        previous = derived.get("imageError")
        if previous:  # a broken image stays broken: answer without decoding it again
            raise ImageUnreadable(previous["message"])
        return Source(lambda: self.store.local_file(content_hash), True, meta, derived)

    def preset(self, name: str) -> Preset:
        preset = self.catalog.get(name)
        if preset is None:
            raise UnknownPreset(name, self.catalog.names())
        return preset

    # -- presets -------------------------------------------------------------------

    def ensure_preset(self, content_hash: str, preset: Preset) -> None:
        """Make the preset now if it is missing (once across all workers)."""
        if not self.store.exists(content_hash):
            raise ContentNotFound(content_hash)
        if self.cache.exists(content_hash, preset.filename):
            return
        self._check_source(content_hash, [preset])  # fail fast (415/422) before waiting for locks
        timeout = self.settings.image_sync_timeout
        with self.cache.exclusive(content_hash, "image", timeout):
            if not self.cache.exists(content_hash, preset.filename):  # another worker may have made it
                with self.slots.acquire(timeout) as busy:
                    self.generate(content_hash, [preset], self._threads(busy))

    def open_preset(self, content_hash: str, name: str, fmt: str | None = None) -> tuple[Preset, BinaryIO, int]:
        """The preset's file opened for serving, with its size, in ``fmt`` (default: the
        preset's own format). A cached preset is one open + fstat (the hot path of every
        chat thumbnail); a missing one, or a variant in another format, is made first."""
        preset = self.preset(name)
        if fmt is not None:
            preset = preset.variant(fmt)
        try:
            return (preset, *self._open_served(content_hash, preset.filename))
        except FileNotFoundError:
            self.ensure_preset(content_hash, preset)
        return (preset, *self._open_served(content_hash, preset.filename))

    def _open_served(self, content_hash: str, filename: str) -> tuple[BinaryIO, int]:
        if self.served is None:
            return self.cache.open(content_hash, filename)
        return self.served.open(self.cache, content_hash, filename)

    def missing_eager(self, content_hash: str) -> list[Preset]:
        return [p for p in self.catalog.eager if not self.cache.exists(content_hash, p.filename)]

    def _decode(self, source: Path | BinaryIO, targets: list[Target], exif: dict[str, Any] | None = None) -> Decoded:
        """Decode for ``targets``. The file's own image is dropped on return: when it was
        rotated or converted, holding it through the render would keep a second
        decoded-size buffer alive (50 MP: 200 MB) for nothing. ``exif``, when given, gets
        the header's EXIF (``metadata.exif``) from the same open, before the decode."""
        with open_checked(source, self.settings) as im:
            if exif is not None:
                exif["exif"] = read_exif(im, self.settings.expose_gps)
            return decode_for(targets, im)

    def record_exif(self, content_hash: str) -> None:
        """``metadata.exif`` from the header alone, for an image whose presets were all
        made before its job ran (no decode)."""
        self._check_source(content_hash)
        with self.store.local_file(content_hash) as source, open_checked(source, self.settings) as im:
            exif = read_exif(im, self.settings.expose_gps)
        self.cache.update_metadata(content_hash, lambda m: m.__setitem__("exif", exif))

    def _threads(self, busy_slots: int) -> int:
        """A request's share of the cores: both threads when alone, one when the other
        image slots are busy too (more threads than cores would only add hand-offs)."""
        return max(1, min(self.settings.image_threads, self.cpus // max(1, busy_slots)))

    def generate(self, content_hash: str, presets: list[Preset], threads: int | None = None) -> dict[str, Any]:
        """Decode once, render every preset, publish each file and its metadata."""
        if not presets:
            return {}
        source_file = self._check_source(content_hash, presets)
        header: dict[str, Any] | None = {} if source_file.is_original else None
        try:
            with source_file.open() as source:
                decoded = self._decode(source, [_target(p) for p in presets], header)
        except ImageUnreadable as exc:
            error = {"error": "image_unreadable", "message": str(exc), "at": iso_utc()}
            self.cache.update_metadata(content_hash, lambda m: m.update(imageError=error))
            raise
        threads = self.settings.image_threads if threads is None else threads
        pool = shared_pool(threads)
        writes: dict[int, Future | int] = {}
        handed_out: set[int] = set()

        def write(index: int, out: Any) -> int:
            p = presets[index]
            return self.cache.write_file(content_hash, p.filename,
                                         lambda fh: encode(out, p.pil_format, p.quality, fh))

        def publish(index: int, out: Any) -> None:
            # Encode while the next outputs are resampled. Image.save keeps per-call state
            # on the image object, so an output that is also another's (a copy) gets its own.
            if id(out) in handed_out:
                out = out.copy()
            handed_out.add(id(out))
            writes[index] = pool.submit(write, index, out) if pool is not None else write(index, out)

        try:
            outputs = render(decoded, [_target(p) for p in presets], threads, publish)
        finally:  # never leave an encode running into a file nobody waits for
            sizes = {i: w.result() if isinstance(w, Future) else w for i, w in writes.items()}
        entries: dict[str, Any] = {}
        variants: dict[str, dict[str, Any]] = {}
        for i, (preset, out) in enumerate(zip(presets, outputs)):
            entry = {"size": sizes[i], "format": preset.format, "mimeType": preset.mime_type,
                     "width": out.width, "height": out.height, "processedAt": iso_utc()}
            if self.catalog.get(preset.name) == preset:
                entries[preset.name] = entry
            else:  # a format variant: beside the preset's own entry, which stays as it was
                variants.setdefault(preset.name, {})[preset.format] = entry

        placeholder = None
        if "blurhash" not in self.cache.metadata(content_hash).get("image", {}):
            placeholder = blurhash_of(min(outputs, key=lambda o: o.width * o.height))

        def record(meta: dict[str, Any]) -> None:
            if placeholder is not None:
                meta.setdefault("image", {})["blurhash"] = placeholder
            meta.setdefault("presets", {}).update(entries)
            if entries and header is not None:  # the original's EXIF, read from the header this render opened
                meta["exif"] = header.get("exif")
            for name, by_format in variants.items():
                meta.setdefault("variants", {}).setdefault(name, {}).update(by_format)

        self.cache.update_metadata(content_hash, record)
        made = {**entries, **{f"{n}.{f}": e for n, v in variants.items() for f, e in v.items()}}
        log.info("rendered %s of %s", ", ".join(made), content_hash)
        return made

    # -- optimize-for-ai -----------------------------------------------------------

    def optimize(self, content_hash: str, max_size: int, quality: int) -> dict[str, Any]:
        source = self._check_source(content_hash)  # ContentNotFound when it is not stored
        target = Target("optimized", max_size, max_size, "JPEG", quality)
        with self.slots.acquire(self.settings.image_sync_timeout) as busy:
            out = self._render_from_preset(content_hash, source.meta, max_size, source.derived)
            if out is None:
                with self.store.local_file(content_hash) as source:
                    decoded = self._decode(source, [target])
                (out,) = render(decoded, [target], self._threads(busy))
            buffer = io.BytesIO()
            encode(out, "JPEG", quality, buffer)
        data = buffer.getvalue()
        return {"data": base64.b64encode(data).decode("ascii"), "mimeType": "image/jpeg", "size": len(data),
                "width": out.width, "height": out.height}

    def derivation_source(self, content_hash: str, meta: dict[str, Any], max_size: int,
                          derived: dict[str, Any] | None = None) -> tuple[Preset, tuple[int, int]] | None:
        """The stored preset to make a ``max_size`` fit from instead of the original, and the
        fit's size (the original's, so the answer is the same size either way), or None.

        A content-addressed store has presets thumbor has not: resampling the smallest
        one that is DERIVE_MIN_RATIO..DERIVE_MAX_RATIO times the output's size, from a
        lossy encode of at least DERIVE_MIN_QUALITY, stays above 40 dB PSNR of the
        from-original result (tests/images/test_optimize_derived.py measures it on the
        corpus) and skips the entropy decode of a large original, the bulk of the work."""
        image = meta.get("image") or {}
        width, height = image.get("width"), image.get("height")
        if not width or not height:
            return None
        if derived is None:
            derived = self.cache.metadata(content_hash)
        if ((derived.get("exif") or {}).get("orientation") or 1) in (5, 6, 7, 8):
            width, height = height, width  # the header's size is before the EXIF rotation
        wanted = fit_box(width, height, max_size, max_size)
        made = derived.get("presets") or {}
        best: tuple[int, Preset] | None = None
        for name, entry in made.items():
            preset = self.catalog.get(name)
            pw, ph = entry.get("width") or 0, entry.get("height") or 0
            if preset is None or entry.get("format") != preset.format or not (
                    preset.format == "png" or preset.quality >= DERIVE_MIN_QUALITY):
                continue
            if not (DERIVE_MIN_RATIO * wanted[0] <= pw <= DERIVE_MAX_RATIO * wanted[0]
                    and DERIVE_MIN_RATIO * wanted[1] <= ph <= DERIVE_MAX_RATIO * wanted[1]):
                continue
            if abs(pw * height - ph * width) > max(pw, ph, width, height):  # not this image's aspect
                continue
            if best is None or pw * ph < best[0]:
                best = (pw * ph, preset)
        return (best[1], wanted) if best else None

    def _render_from_preset(self, content_hash: str, meta: dict[str, Any], max_size: int,
                            derived: dict[str, Any] | None) -> Image.Image | None:
        found = self.derivation_source(content_hash, meta, max_size, derived)
        if found is None:
            return None
        preset, size = found
        try:
            fh, _ = self.cache.open(content_hash, preset.filename)
        except FileNotFoundError:  # evicted or being replaced: the original is still there
            return None
        with fh, open_checked(fh, self.settings) as im:
            # Decoded whole: a DCT-domain draft of an already lossy preset costs more
            # PSNR than the few milliseconds it saves at these ratios.
            im.load()
            return resample.lanczos(im, size, (0.0, 0.0, float(im.width), float(im.height)))

    # -- state ---------------------------------------------------------------------

    def processing_state(self, content_hash: str) -> dict[str, Any]:
        meta = self.cache.metadata(content_hash)
        return {key: meta[key] for key in ("presets", "variants", "image", "imageError", "text", "exif", "document",
                                           "pageImage")
                if meta.get(key) is not None}


__all__ = ["ImageService", "StandInSource", "UnknownPreset", "ImageTooLarge", "ImageUnreadable", "NotRenderable"]
