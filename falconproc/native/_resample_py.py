"""Lanczos resampling: the pure-Python twin of ``_native/_resample_c.pyx`` is Pillow's
own ``Image.resize`` (the compiled twin gives the same bytes, faster)."""
from __future__ import annotations

from PIL import Image


def lanczos(im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """``im.resize(size, Image.Resampling.LANCZOS, box=box)``."""
    return im.resize(size, Image.Resampling.LANCZOS, box=box)
