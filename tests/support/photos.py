"""Real photographs for tests and benchmarks, and hand-made hostile images.

Synthetic noise compresses and decodes unlike photos, so the originals come from scikit-image's
sample data (shipped inside its wheel; a test extra). Each is cropped to the requested aspect
ratio and resized, then JPEG-encoded once per process.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import skimage
from PIL import Image

PHOTO_FILES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
    "color.png",
)
DATA_DIR = Path(skimage.__file__).parent / "data"


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Crop the middle to `size`'s aspect ratio, then resize to `size`."""
    width, height = image.size
    target = size[0] / size[1]
    if width / height > target:
        new_w = round(height * target)
        box = ((width - new_w) // 2, 0, (width - new_w) // 2 + new_w, height)
    else:
        new_h = round(width / target)
        box = (0, (height - new_h) // 2, width, (height - new_h) // 2 + new_h)
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS, box=box)


@functools.cache
def photo_images(size: tuple[int, int] = (640, 480)) -> tuple[Image.Image, ...]:
    return tuple(_fit(Image.open(DATA_DIR / name), size) for name in PHOTO_FILES)


@functools.cache
def photos(size: tuple[int, int] = (640, 480), quality: int = 90) -> tuple[bytes, ...]:
    """The sample photographs as JPEG bytes of exactly `size`."""
    encoded = []
    for image in photo_images(size):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return tuple(encoded)


EXIF_ORIENTATION = 0x0112
EXIF_GPS_IFD = 0x8825


def exif_rotated_jpeg(orientation: int = 6) -> tuple[bytes, Image.Image]:
    """A landscape JPEG whose EXIF says "rotate 90° clockwise" (6), carrying GPS, a comment and
    XMP that must not survive; also the upright image a viewer would show."""
    stored = photo_images((480, 320))[0]
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[0x010F] = "ImageBatch test camera"  # Make
    gps = exif.get_ifd(EXIF_GPS_IFD)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    buffer = io.BytesIO()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><secret>where</secret></x:xmpmeta>'
    stored.save(buffer, "JPEG", quality=92, exif=exif, comment=b"secret comment", xmp=xmp)
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue())))
    return buffer.getvalue(), upright


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def decompression_bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A few hundred bytes claiming `width` x `height` pixels: decoding it would need gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
