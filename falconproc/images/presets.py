"""Image presets: the four defaults of the contract plus operator-defined ones, and the
format variants (AVIF, WebP) that content negotiation serves in their place."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from falconproc.config import Settings, SettingsError

FORMATS = {"jpeg": ("JPEG", "image/jpeg", "jpg"), "webp": ("WEBP", "image/webp", "webp"),
           "png": ("PNG", "image/png", "png"), "avif": ("AVIF", "image/avif", "avif")}
# Formats a preset may be configured in (PRESETS); any preset can be served in any of FORMATS.
PRESET_FORMATS = ("jpeg", "webp", "png")
# AVIF reaches a JPEG's PSNR at a lower quality setting: at speed 8 the median over the
# corpus photos was 70 for JPEG q85 (benchmarks/bench_avif.py), so an AVIF variant uses the
# preset's quality minus this.
AVIF_QUALITY_OFFSET = 15


@dataclass(frozen=True)
class Preset:
    name: str
    max_width: int  # 0: unbounded
    max_height: int  # 0: unbounded
    format: str  # jpeg | webp | png
    quality: int

    @property
    def pil_format(self) -> str:
        return FORMATS[self.format][0]

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][1]

    @property
    def extension(self) -> str:
        return FORMATS[self.format][2]

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.extension}"

    @property
    def box(self) -> tuple[int, int]:
        return self.max_width, self.max_height

    def variant(self, fmt: str) -> Preset:
        """This preset's box in another format (its own file, e.g. ``preview.avif``)."""
        if fmt == self.format:
            return self
        quality = max(1, self.quality - AVIF_QUALITY_OFFSET) if fmt == "avif" else self.quality
        return dataclasses.replace(self, format=fmt, quality=quality)


DEFAULT_PRESETS = (
    Preset("ai-chat", 1920, 0, "jpeg", 85),
    Preset("ai-vision", 2048, 0, "jpeg", 90),
    Preset("thumbnail", 200, 200, "webp", 80),
    Preset("preview", 800, 0, "jpeg", 85),
)
RESERVED_NAMES = {"original", "metadata", "text"}
_PRESET_RE = re.compile(r"([a-z0-9][a-z0-9_-]{0,31}):(\d{1,5})x(\d{1,5}):(jpeg|webp|png):(\d{1,3})")


def parse_presets(raw: str | None) -> tuple[Preset, ...]:
    presets: list[Preset] = []
    for item in filter(None, (part.strip() for part in (raw or "").split(";"))):
        match = _PRESET_RE.fullmatch(item)
        if not match:
            raise SettingsError(f"PRESETS: cannot read {item!r}; expected name:WIDTHxHEIGHT:format:quality")
        name, width, height, fmt, quality = match.groups()
        if name in RESERVED_NAMES:
            raise SettingsError(f"PRESETS: {name!r} is a reserved route name")
        if int(width) == 0 and int(height) == 0:
            raise SettingsError(f"PRESETS: {name!r} needs a width or a height")
        if not 1 <= int(quality) <= 100:
            raise SettingsError(f"PRESETS: {name!r} quality must be 1..100")
        presets.append(Preset(name, int(width), int(height), fmt, int(quality)))
    return tuple(presets)


class PresetCatalog:
    def __init__(self, settings: Settings):
        extra = parse_presets(settings.extra_presets)
        by_name = {p.name: p for p in DEFAULT_PRESETS}
        by_name.update({p.name: p for p in extra})  # an operator may redefine a default
        self.presets = by_name
        eager = settings.eager_presets
        unknown = set(eager or ()) - set(by_name)
        if unknown:
            raise SettingsError(f"EAGER_PRESETS: unknown presets {sorted(unknown)}")
        self.eager = tuple(by_name[n] for n in eager) if eager is not None else tuple(by_name.values())

    def get(self, name: str) -> Preset | None:
        return self.presets.get(name)

    def names(self) -> list[str]:
        return list(self.presets)
