"""The TurboJPEG path gives the pixels Pillow would, and leaves every doubtful file to Pillow."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageCms, ImageStat

from imagebatch.core.messages import Thumbnail
from imagebatch.worker import jpeg_turbo
from imagebatch.worker.transform import render
from tests.support.photos import encoded, photo_images, photos

MAX_PIXELS = 50_000_000


def pillow_scaled_decode(data: bytes, needed: tuple[int, int]) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.draft(image.mode, needed)
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "needed", "scale"),
    [
        ((1024, 768), (256, 192), 4),
        ((1024, 768), (341, 256), 2),
        ((1024, 768), (1024, 768), 1),
        ((1024, 768), (100, 10), 8),
        ((4000, 10), (256, 1), 8),
        ((1000, 750), (256, 192), 2),
        ((20, 20), (0, 0), 8),
    ],
)
def test_the_reduction_is_the_largest_power_of_two_that_still_covers_the_need(
    size: tuple[int, int], needed: tuple[int, int], scale: int
) -> None:
    assert jpeg_turbo.reduction(size, needed) == scale


@pytest.mark.parametrize("needed", [(256, 192), (341, 256), (128, 96), (1024, 768)])
def test_a_colour_jpeg_decodes_to_exactly_the_pixels_of_pillows_scaled_decode(
    needed: tuple[int, int],
) -> None:
    for data in photos((1024, 768)):
        fast = jpeg_turbo.decode_reduced(data, "RGB", (1024, 768), needed)
        assert fast is not None
        reference = pillow_scaled_decode(data, needed)
        assert (fast.mode, fast.size) == (reference.mode, reference.size)
        assert ImageChops.difference(fast, reference).getbbox() is None


def test_a_grey_jpeg_stays_grey_both_ways() -> None:
    data = encoded(photo_images()[0].convert("L"), "JPEG", quality=90)
    fast = jpeg_turbo.decode_reduced(data, "L", (640, 480), (160, 120))
    assert fast is not None
    assert (fast.mode, fast.size) == ("L", (160, 120))
    assert ImageChops.difference(fast, pillow_scaled_decode(data, (160, 120))).getbbox() is None
    again = Image.open(io.BytesIO(jpeg_turbo.encode(fast, 90)))
    assert (again.format, again.mode, again.size) == ("JPEG", "L", (160, 120))


def mean_error(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def test_an_encode_is_as_faithful_and_as_small_as_pillows_at_the_same_quality() -> None:
    for source in photo_images():
        image = source.resize((256, 192))
        data = jpeg_turbo.encode(image, 85)
        pillows_data = encoded(image, "JPEG", quality=85)
        ours, pillows = (Image.open(io.BytesIO(d)) for d in (data, pillows_data))
        assert (ours.format, ours.mode, ours.size) == ("JPEG", "RGB", (256, 192))
        assert mean_error(ours, image) <= mean_error(pillows, image) + 0.1, "a tenth of a level"
        assert len(data) <= len(pillows_data) * 1.02


def test_an_encode_carries_no_metadata() -> None:
    data = jpeg_turbo.encode(photo_images()[0], 85)
    assert set(Image.open(io.BytesIO(data)).info) <= {
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "dpi",
    }


def test_a_file_turbojpeg_warns_about_is_left_to_pillow() -> None:
    data = photos()[1]
    assert (
        jpeg_turbo.decode_reduced(data[: len(data) * 6 // 10], "RGB", (640, 480), (256, 192))
        is None
    )


@pytest.mark.parametrize("mode", ["CMYK", "RGBA", "P", "I;16"])
def test_modes_outside_plain_grey_and_colour_are_not_taken(mode: str) -> None:
    assert not jpeg_turbo.handles(mode)


def test_a_jpeg_with_a_colour_profile_keeps_it_through_pillows_encoder() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(photo_images((1024, 768))[0], "JPEG", quality=90, icc_profile=profile)
    _info, [rendered] = render(data, [Thumbnail()], max_pixels=MAX_PIXELS)
    thumb = Image.open(io.BytesIO(rendered.data))
    assert thumb.size == (256, 192)
    assert thumb.info.get("icc_profile") == profile
