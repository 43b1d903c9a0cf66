"""Thumbnails from image bytes with Pillow: pure functions, run in a thread pool.

Speed comes from decoding less, not resizing faster: a JPEG is decoded at the smallest DCT scale
(1/2, 1/4, 1/8) whose result still covers the largest thumbnail asked for, then resized once — or
not at all when the scaled decode is already the exact size. Plain JPEGs are decoded and encoded
through libjpeg-turbo's own API (`jpeg_turbo`), everything else through Pillow (`Image.draft` for
the scaled decode). Both release the GIL while decoding, resizing and encoding (Pillow when it
encodes into a file descriptor: `encode_sink`), so a few threads use every core without copying
images between processes.

Everything a source can carry beyond pixels (EXIF with GPS, XMP, JPEG comments) is dropped; the
orientation EXIF asks for is applied to the pixels first, so the thumbnail is upright without it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from imagebatch.core.errors import PermanentError
from imagebatch.core.imagetypes import SNIFF_BYTES, describe, sniff
from imagebatch.core.messages import Thumbnail
from imagebatch.worker import jpeg_turbo
from imagebatch.worker.encode_sink import encode_releasing_gil

ORIENTATION_TAG = 0x0112
UPRIGHTING = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""What turns a stored image upright, per EXIF orientation (1 needs nothing)."""
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0
"""Large reductions first shrink by an integer factor (`Image.reduce`), then resample; at 3.0 the
result cannot be told from a full LANCZOS pass (Pillow's documentation)."""
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)
"""What Pillow's decoders raise on broken input."""


@dataclass(frozen=True)
class SourceInfo:
    """The original as decoded: its format and upright size."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class Decoded:
    """A source decoded just large enough, upright, in a working mode."""

    image: Image.Image
    info: SourceInfo
    icc_profile: bytes | None
    """Kept only for RGB sources: a CMYK or grey profile would not describe RGB output."""


@dataclass(frozen=True)
class Rendered:
    """One encoded thumbnail."""

    spec: Thumbnail
    data: bytes
    width: int
    height: int


def target_size(width: int, height: int, spec: Thumbnail) -> tuple[int, int]:
    """Size the source is scaled to before a `cover` crop; never larger than the source."""
    sx, sy = spec.width / width, spec.height / height
    scale = min(1.0, max(sx, sy) if spec.fit == "cover" else min(sx, sy))
    return max(1, round(width * scale)), max(1, round(height * scale))


def output_size(width: int, height: int, spec: Thumbnail) -> tuple[int, int]:
    """Final thumbnail size for an upright source of `width` x `height`."""
    w, h = target_size(width, height, spec)
    if spec.fit == "cover":
        return min(w, spec.width), min(h, spec.height)
    return w, h


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    kind = sniff(data[:SNIFF_BYTES])
    if kind is None:
        raise PermanentError(f"not an image: {describe(data[:SNIFF_BYTES])}", code="not_an_image")
    fmt = kind.format
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentError(f"too many pixels: {exc}", code="too_many_pixels") from exc
    except UnidentifiedImageError as exc:
        raise PermanentError(f"not a decodable {fmt} image", code="not_an_image") from exc
    except DECODE_ERRORS as exc:
        raise PermanentError(f"corrupt {fmt} image: {exc}", code="corrupt_image") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise PermanentError(
            f"too many pixels: {width}x{height} exceeds {max_pixels:,}", code="too_many_pixels"
        )
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_working_mode(image: Image.Image) -> Image.Image:
    """One of L, LA, RGB, RGBA: the modes resizing and every output format handle well."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode.startswith("I;16"):
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode in ("I", "F"):
        low_raw, high_raw = image.getextrema()
        low = float(low_raw) if isinstance(low_raw, int | float) else 0.0
        high = float(high_raw) if isinstance(high_raw, int | float) else 255.0
        span = high - low or 1.0
        return image.point(lambda v: (v - low) * (255.0 / span)).convert("L")
    return image.convert("RGB")


def _decode_pixels(
    source: ImageFile.ImageFile, data: bytes, needed: tuple[int, int]
) -> Image.Image:
    """The pixels of `source` (opened from `data`), JPEGs reduced as far as `needed` allows."""
    if source.format == "JPEG":
        if jpeg_turbo.handles(source.mode):
            fast = jpeg_turbo.decode_reduced(data, source.mode, source.size, needed)
            if fast is not None:
                return fast
        source.draft(source.mode, needed)
    # The source is already in memory: hand the decoder all of it at once. Pillow's default feeds
    # 64 KB at a time, and each call gives up the GIL and must win it back from the event loop.
    source.decodermaxblock = max(len(data), source.decodermaxblock)
    source.load()
    return source


def decode(data: bytes, specs: Sequence[Thumbnail], max_pixels: int) -> Decoded:
    """Decode `data` just large enough for every spec, upright and in a working mode."""
    source = _open(data, max_pixels)
    fmt = str(source.format)
    icc = source.info.get("icc_profile") if source.mode in ("RGB", "RGBA", "P") else None
    orientation = _orientation(source)
    swap = orientation in SWAPPING_ORIENTATIONS
    width, height = source.size
    upright = (height, width) if swap else (width, height)
    need_w = max(target_size(*upright, spec)[0] for spec in specs)
    need_h = max(target_size(*upright, spec)[1] for spec in specs)
    needed = (need_h, need_w) if swap else (need_w, need_h)
    try:
        image = _decode_pixels(source, data, needed)
        if orientation != 1:
            image = image.transpose(UPRIGHTING[orientation])
        image = _to_working_mode(image)
    except DECODE_ERRORS as exc:
        raise PermanentError(f"corrupt {fmt} image: {exc}", code="corrupt_image") from exc
    return Decoded(
        image=image,
        info=SourceInfo(format=fmt, width=upright[0], height=upright[1]),
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
    )


def _resize(image: Image.Image, spec: Thumbnail) -> Image.Image:
    width, height = image.size
    scaled = target_size(width, height, spec)
    final = output_size(width, height, spec)
    if final == (width, height):
        return image
    box: tuple[float, float, float, float] | None = None
    if final != scaled:  # cover: crop the middle of the source, in source coordinates
        fx, fy = width / scaled[0], height / scaled[1]
        crop_w, crop_h = final[0] * fx, final[1] * fy
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
    alpha = image.mode in ("LA", "RGBA")
    work = image.convert(image.mode[:-1] + "a") if alpha else image  # premultiplied: no halos
    out = work.resize(final, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    return out.convert(image.mode) if alpha else out


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    if fmt == "jpeg" and image.mode in ("LA", "RGBA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    if fmt == "webp" and image.mode in ("L", "LA"):
        return image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def encode(image: Image.Image, spec: Thumbnail, icc_profile: bytes | None) -> bytes:
    """Encode with no metadata but the colour profile (when it still describes the pixels)."""
    out = _for_format(image, spec.format)
    out.info = {}
    options: dict[str, object] = {}
    if icc_profile and out.mode in ("RGB", "RGBA"):
        options["icc_profile"] = icc_profile
    if spec.format == "jpeg":
        if not options and jpeg_turbo.handles(out.mode):  # no profile to embed: TurboJPEG
            return jpeg_turbo.encode(out, spec.quality)
        pillow_format, options = "JPEG", {**options, "quality": spec.quality}
    elif spec.format == "png":
        pillow_format, options = "PNG", {**options, "compress_level": 6}
    else:
        pillow_format, options = "WEBP", {**options, "quality": spec.quality, "method": 4}
    return encode_releasing_gil(lambda fp: out.save(fp, pillow_format, **options))


def render(
    data: bytes, specs: Sequence[Thumbnail], *, max_pixels: int
) -> tuple[SourceInfo, list[Rendered]]:
    """Every thumbnail `specs` ask for, from one decode of `data`."""
    decoded = decode(data, specs, max_pixels)
    rendered: list[Rendered] = []
    for spec in specs:
        thumb = _resize(decoded.image, spec)
        try:
            payload = encode(thumb, spec, decoded.icc_profile)
        except DECODE_ERRORS as exc:
            raise PermanentError(f"cannot encode {spec.format}: {exc}", code="encode") from exc
        rendered.append(Rendered(spec=spec, data=payload, width=thumb.width, height=thumb.height))
    return decoded.info, rendered
