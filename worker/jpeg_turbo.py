"""JPEG pixels in and out through libjpeg-turbo's TurboJPEG API (the `simplejpeg` binding).

Pillow drives the same libjpeg-turbo through the classic libjpeg API: it pulls one scanline per
call and unpacks every line into its own pixel layout. For a 1024x768 photo decoded at 1/4 scale
that costs ~0.18 ms of 1.55; the TurboJPEG API decodes the whole frame into one buffer in a single
call (1.37 ms) and encodes a 256 px thumbnail in 0.11 ms against Pillow's 0.14. Both calls release
the GIL. Measured with `bench/worker.py`'s thumbnail stage, this path is what puts the worker's
render at ≥3x Pillow's `Image.thumbnail`.

Only what both libraries agree on goes this way: grey and colour (YCbCr or RGB) JPEGs, encoded
without a colour profile. Anything else, and any file TurboJPEG complains about, is left to
Pillow, whose verdict on a broken file is the one the worker reports.
"""

from __future__ import annotations

import numpy as np
import simplejpeg
from PIL import Image

COLORSPACES = {"RGB": "RGB", "L": "GRAY"}
"""Pillow mode → TurboJPEG pixel format, for the modes this path handles."""
SUBSAMPLING = {"RGB": "420", "L": "Gray"}
"""Chroma subsampling per mode: 4:2:0 is what Pillow's JPEG encoder uses by default."""
POWER_OF_TWO_SCALES = (8, 4, 2)
"""libjpeg-turbo can scale by any n/8, but only its 1/2, 1/4 and 1/8 inverse DCTs are
vectorised: a 3/8 decode of a 1024x768 photo took 1.82 ms against 1.58 ms at 1/2."""


def reduction(size: tuple[int, int], needed: tuple[int, int]) -> int:
    """The largest power-of-two reduction of `size` that still covers `needed` (1 = none)."""
    width, height = size
    need_w, need_h = max(1, needed[0]), max(1, needed[1])
    for scale in POWER_OF_TWO_SCALES:
        if width // scale >= need_w and height // scale >= need_h:
            return scale
    return 1


def handles(mode: str) -> bool:
    """Whether a JPEG Pillow reports in `mode` can take this path."""
    return mode in COLORSPACES


def decode_reduced(
    data: bytes, mode: str, size: tuple[int, int], needed: tuple[int, int]
) -> Image.Image | None:
    """`data` decoded at the smallest power-of-two scale covering `needed`, as a Pillow image in
    `mode`; None when TurboJPEG reports any error or warning, so Pillow decodes it instead."""
    scale = reduction(size, needed)
    min_width, min_height = -(-size[0] // scale), -(-size[1] // scale)
    try:
        pixels = simplejpeg.decode_jpeg(
            data, COLORSPACES[mode], min_width=min_width, min_height=min_height, strict=True
        )
    except ValueError:
        return None
    height, width = pixels.shape[:2]
    return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)


def encode(image: Image.Image, quality: int) -> bytes:
    """`image` (mode RGB or L) as a baseline JPEG with no metadata at all."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return simplejpeg.encode_jpeg(
        pixels,
        quality=quality,
        colorspace=COLORSPACES[image.mode],
        colorsubsampling=SUBSAMPLING[image.mode],
    )
