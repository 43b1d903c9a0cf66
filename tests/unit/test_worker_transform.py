"""Thumbnails from real photographs: size, orientation, modes, formats, metadata and limits."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops, ImageStat

from imagebatch.core.errors import PermanentError
from imagebatch.core.messages import Thumbnail
from imagebatch.worker.transform import decode, output_size, render
from tests.support.photos import (
    decompression_bomb_png,
    encoded,
    exif_rotated_jpeg,
    photo_images,
    photos,
)

MAX_PIXELS = 50_000_000


def only(data: bytes, spec: Thumbnail) -> Image.Image:
    _info, [rendered] = render(data, [spec], max_pixels=MAX_PIXELS)
    image = Image.open(io.BytesIO(rendered.data))
    assert image.size == (rendered.width, rendered.height)
    return image


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.mark.parametrize(
    ("source", "spec", "expected"),
    [
        ((1024, 768), Thumbnail(), (256, 192)),
        ((768, 1024), Thumbnail(), (192, 256)),
        ((1024, 768), Thumbnail(fit="cover"), (256, 256)),
        ((1024, 768), Thumbnail(width=100, height=300, fit="cover"), (100, 300)),
        ((200, 100), Thumbnail(), (200, 100)),
        ((200, 100), Thumbnail(fit="cover"), (200, 100)),
        ((4000, 10), Thumbnail(), (256, 1)),
    ],
)
def test_output_sizes_fit_the_box_and_never_upscale(
    source: tuple[int, int], spec: Thumbnail, expected: tuple[int, int]
) -> None:
    assert output_size(*source, spec) == expected


def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_that_covers_the_target() -> None:
    data = photos((1024, 768))[0]
    decoded = decode(data, [Thumbnail()], MAX_PIXELS)
    assert decoded.image.size == (256, 192), "1/4 scale is exactly the target"
    assert (decoded.info.width, decoded.info.height) == (1024, 768)
    cover = decode(data, [Thumbnail(fit="cover")], MAX_PIXELS)
    assert cover.image.size == (512, 384), "cover needs 341x256, so 1/2 scale"


def test_the_fast_path_looks_like_a_full_lanczos_resize() -> None:
    original = photo_images((1024, 768))[0]
    data = photos((1024, 768))[0]
    reference = original.resize((256, 192), Image.Resampling.LANCZOS)
    thumb = only(data, Thumbnail(quality=95))
    assert thumb.size == (256, 192)
    assert mean_difference(thumb, reference) < 4.0


def test_cover_crops_the_middle() -> None:
    original = photo_images((1024, 768))[2]
    thumb = only(photos((1024, 768))[2], Thumbnail(fit="cover", quality=95))
    reference = original.crop((128, 0, 896, 768)).resize((256, 256), Image.Resampling.LANCZOS)
    assert mean_difference(thumb, reference) < 4.0


def test_exif_rotated_input_comes_out_upright_and_without_metadata() -> None:
    data, upright = exif_rotated_jpeg(orientation=6)
    assert Image.open(io.BytesIO(data)).size == (480, 320), "stored landscape"
    thumb = only(data, Thumbnail(width=256, height=256, quality=95))
    assert thumb.size == (171, 256), "shown portrait"
    reference = upright.resize(thumb.size, Image.Resampling.LANCZOS)
    assert mean_difference(thumb, reference) < 5.0
    assert not thumb.getexif(), "no EXIF at all (so no GPS, no orientation)"
    assert "exif" not in thumb.info
    assert "comment" not in thumb.info
    assert "xmp" not in thumb.info


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_no_metadata_survives_in_any_format(fmt: str) -> None:
    data, _ = exif_rotated_jpeg()
    _info, [rendered] = render(
        data, [Thumbnail.model_validate({"format": fmt})], max_pixels=MAX_PIXELS
    )
    for marker in (b"secret", b"Exif\x00\x00", b"ImageBatch test camera", b"xmpmeta"):
        assert marker not in rendered.data


@pytest.mark.parametrize(
    ("fmt", "pillow_format", "magic"),
    [("jpeg", "JPEG", b"\xff\xd8\xff"), ("png", "PNG", b"\x89PNG"), ("webp", "WEBP", b"RIFF")],
)
def test_each_output_format_is_what_it_says(fmt: str, pillow_format: str, magic: bytes) -> None:
    thumb = only(photos()[0], Thumbnail.model_validate({"format": fmt}))
    assert thumb.format == pillow_format
    _info, [rendered] = render(
        photos()[0], [Thumbnail.model_validate({"format": fmt})], max_pixels=MAX_PIXELS
    )
    assert rendered.data.startswith(magic)


def test_quality_trades_size_for_fidelity() -> None:
    _i, [low] = render(photos()[1], [Thumbnail(quality=30)], max_pixels=MAX_PIXELS)
    _i, [high] = render(photos()[1], [Thumbnail(quality=95)], max_pixels=MAX_PIXELS)
    assert len(low.data) < len(high.data) * 0.6


def test_several_ops_come_from_one_decode() -> None:
    specs = [Thumbnail(width=64, height=64), Thumbnail(width=512, height=512, format="png")]
    info, rendered = render(photos((1024, 768))[0], specs, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == (1024, 768)
    assert [(r.width, r.height) for r in rendered] == [(64, 48), (512, 384)]


def test_a_palette_image_with_transparency_keeps_it_in_png_and_gets_white_in_jpeg() -> None:
    image = Image.new("P", (300, 200), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image.paste(1, (150, 0, 300, 200))
    data = encoded(image, "PNG", transparency=0)
    png = only(data, Thumbnail(format="png"))
    assert png.mode == "RGBA"
    assert pixel(png, (10, 10))[3] == 0
    assert pixel(png, (240, 100)) == (0, 0, 255, 255)
    jpeg = only(data, Thumbnail())
    assert jpeg.mode == "RGB"
    assert all(channel > 240 for channel in pixel(jpeg, (10, 10)))


def test_rgba_edges_have_no_dark_halo() -> None:
    image = Image.new("RGBA", (400, 400), (255, 255, 255, 0))
    image.paste((255, 255, 255, 255), (100, 100, 300, 300))
    thumb = only(encoded(image, "PNG"), Thumbnail(width=100, height=100, format="png"))
    r, g, b, _a = pixel(thumb, (25, 50))
    assert min(r, g, b) > 240, "premultiplied resize: transparent black does not bleed in"


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = photo_images()[0].convert("CMYK")
    thumb = only(encoded(cmyk, "JPEG", quality=95), Thumbnail(quality=95))
    assert thumb.mode == "RGB"
    reference = photo_images()[0].resize(thumb.size, Image.Resampling.LANCZOS)
    assert mean_difference(thumb, reference) < 8.0


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = photo_images()[0].convert("L")
    wide = Image.new("I;16", grey.size)
    wide.frombytes(bytes(b for v in grey.tobytes() for b in (v * 257).to_bytes(2, "little")))
    thumb = only(encoded(wide, "PNG"), Thumbnail(format="png"))
    assert thumb.mode == "L"
    reference = grey.resize(thumb.size, Image.Resampling.LANCZOS)
    assert mean_difference(thumb, reference) < 3.0


@pytest.mark.parametrize(
    ("mode", "container"),
    [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("I", "TIFF"), ("F", "TIFF"), ("RGB", "TIFF")],
)
def test_other_modes_make_valid_thumbnails_in_every_format(mode: str, container: str) -> None:
    data = encoded(photo_images()[3].convert(mode), container)
    for fmt in ("jpeg", "png", "webp"):
        thumb = only(data, Thumbnail.model_validate({"format": fmt}))
        assert thumb.size == (256, 192)
        assert ImageStat.Stat(thumb.convert("L")).stddev[0] > 10, "a picture, not a flat field"


def test_an_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (100, 100), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    thumb = only(buffer.getvalue(), Thumbnail(width=50, height=50))
    r, _g, b = pixel(thumb, (25, 25))
    assert r > 200 > b


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(PermanentError, match="too many pixels") as caught:
        render(decompression_bomb_png(), [Thumbnail()], max_pixels=MAX_PIXELS)
    assert caught.value.code == "too_many_pixels"


def test_the_pixel_limit_is_a_setting() -> None:
    with pytest.raises(PermanentError) as caught:
        render(photos()[0], [Thumbnail()], max_pixels=640 * 480 - 1)
    assert caught.value.code == "too_many_pixels"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<!DOCTYPE html><html>not a photo</html>", "not_an_image"),
        (b"", "not_an_image"),
        (b"GIF89a" + b"\x00" * 4, "not_an_image"),
    ],
)
def test_bytes_that_are_no_image_are_permanent_failures(data: bytes, code: str) -> None:
    with pytest.raises(PermanentError) as caught:
        render(data, [Thumbnail()], max_pixels=MAX_PIXELS)
    assert caught.value.code == code


def test_a_truncated_jpeg_is_a_permanent_failure() -> None:
    data = photos()[1]
    with pytest.raises(PermanentError) as caught:
        render(data[: len(data) * 6 // 10], [Thumbnail()], max_pixels=MAX_PIXELS)
    assert caught.value.code == "corrupt_image"
    assert isinstance(caught.value.__cause__, OSError), "the cause is chained"


def test_a_damaged_jpeg_becomes_a_thumbnail_or_a_permanent_failure_never_another_error() -> None:
    rng = random.Random(7)
    sources = photos((320, 240))
    outcomes: set[str] = set()
    for _ in range(300):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 8)):
            where = rng.randrange(2, len(data))
            if rng.random() < 0.7:
                data[where] = rng.randrange(256)
            else:
                del data[where : where + rng.randint(1, 64)]
        try:
            render(bytes(data), [Thumbnail(width=64, height=64)], max_pixels=MAX_PIXELS)
            outcomes.add("thumbnail")
        except PermanentError as exc:
            outcomes.add(exc.code)
    assert {"thumbnail", "corrupt_image"} <= outcomes
