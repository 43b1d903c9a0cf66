"""JPEG encoding through a memory file: the same bytes as encoding into memory, thread by thread."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imagebatch.worker.encode_sink import encode_releasing_gil
from tests.support.photos import photo_images


def via_bytesio(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def via_sink(image: Image.Image, quality: int = 85) -> bytes:
    return encode_releasing_gil(lambda fp: image.save(fp, "JPEG", quality=quality))


def test_the_bytes_are_exactly_what_pillow_writes_into_memory() -> None:
    for image in photo_images((320, 240)):
        assert via_sink(image) == via_bytesio(image)


def test_a_small_image_after_a_large_one_comes_back_without_the_large_ones_tail() -> None:
    large, small = photo_images((1024, 768))[0], photo_images((64, 48))[1]
    assert len(via_sink(large, 95)) > len(via_sink(small))
    data = via_sink(small)
    assert data == via_bytesio(small)
    assert Image.open(io.BytesIO(data)).size == (64, 48)


def test_threads_encoding_at_once_each_get_their_own_image() -> None:
    images = list(photo_images((320, 240)))
    expected = [via_bytesio(image) for image in images]
    start = threading.Barrier(4)

    def encode_all(_: int) -> list[bytes]:
        start.wait()
        return [via_sink(image) for image in images * 5]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(encode_all, range(4)))
    assert all(result == expected * 5 for result in results)


def test_a_save_that_fails_leaves_the_next_encode_intact() -> None:
    image = photo_images((320, 240))[2]

    def broken(fp: object) -> None:
        image.save(fp, "JPEG", quality=85)  # type: ignore[arg-type]
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        encode_releasing_gil(broken)
    assert via_sink(image) == via_bytesio(image)


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {"compress_level": 6}), ("WEBP", {})])
def test_formats_that_write_through_python_come_out_the_same_too(
    fmt: str, options: dict[str, object]
) -> None:
    image = photo_images((320, 240))[4]
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    assert encode_releasing_gil(lambda fp: image.save(fp, fmt, **options)) == buffer.getvalue()
