"""A placeholder to show while an image loads: its BlurHash (4x3 components).

Computed from the smallest output the image job just rendered (the thumbnail), shrunk to
at most 32 px a side first, so it costs no decode of the original and a few milliseconds
(the blurhash library is pure Python: ~0.3 s on a whole 200-px thumbnail, ~8 ms at 32 px).
"""
from __future__ import annotations

import blurhash
import numpy as np
from PIL import Image

COMPONENTS = (4, 3)
SAMPLE_SIDE = 32


def blurhash_of(im: Image.Image) -> str:
    """The BlurHash of an RGB(A) image (alpha flattened on white, as the JPEG presets are)."""
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        im = background
    small = im.convert("RGB")
    small.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.BOX)
    return blurhash.encode(np.asarray(small).tolist(), *COMPONENTS)
