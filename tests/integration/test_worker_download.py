"""The downloader against a real loopback HTTP server that misbehaves in every way it can.

Each bad input ends as the issue says: a TransientError (retried later) for timeouts, connection
trouble, 5xx, 408 and 429; `Throttled` with the delay for a 429 or 503 that says when to come
back (Retry-After); a PermanentError with a code for everything retrying cannot fix.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from imagebatch.core.errors import PermanentError, Throttled, TransientError
from imagebatch.core.locations import FileLocation
from imagebatch.core.stores import FileStore
from imagebatch.worker.address_guard import AddressGuard
from imagebatch.worker.download import Downloader, Limits
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import image_server

__all__ = ["image_server"]

LIMITS = Limits(
    max_bytes=1024 * 1024, connect_timeout=2.0, read_timeout=0.5, deadline=2.0, max_redirects=5
)


@pytest.fixture
async def downloader(tmp_path: Path) -> AsyncIterator[Downloader]:
    client = Downloader(
        LIMITS,
        AddressGuard(allow_private=True),
        uploads=FileStore(FileLocation(tmp_path)),
        user_agent="test",
    )
    yield client
    await client.aclose()


async def test_a_photo_downloads_with_its_sniffed_format(
    downloader: Downloader, image_server: ImageServer
) -> None:
    source = await downloader.fetch(image_server.url("/photo/3.jpg"))
    assert source.data == image_server.photo(3)
    assert source.format == "JPEG"
    assert source.redirects == 0


async def test_a_cookie_one_origin_set_is_never_sent_with_a_later_download(
    downloader: Downloader, image_server: ImageServer
) -> None:
    first = await downloader.fetch(image_server.url("/cookie/1.jpg"))
    second = await downloader.fetch(image_server.url("/photo/2.jpg"))
    assert (first.data, second.data) == (image_server.photo(1), image_server.photo(2))
    assert image_server.cookies_sent == []


async def test_redirects_are_followed_up_to_five_hops(
    downloader: Downloader, image_server: ImageServer
) -> None:
    source = await downloader.fetch(image_server.url("/redirects/5"))
    assert source.redirects == 5
    assert source.url.endswith("/redirects/0")
    with pytest.raises(PermanentError) as caught:
        await downloader.fetch(image_server.url("/redirects/6"))
    assert caught.value.code == "too_many_redirects"


@pytest.mark.parametrize(
    ("status", "code"), [(404, "http_404"), (403, "http_403"), (410, "http_410")]
)
async def test_client_errors_are_permanent(
    downloader: Downloader, image_server: ImageServer, status: int, code: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        await downloader.fetch(image_server.url(f"/status/{status}"))
    assert caught.value.code == code


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_timeouts_and_throttling_are_transient(
    downloader: Downloader, image_server: ImageServer, status: int
) -> None:
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await downloader.fetch(image_server.url(f"/status/{status}"))


@pytest.mark.parametrize("status", [429, 503])
async def test_a_throttling_answer_with_retry_after_says_how_long_to_wait(
    downloader: Downloader, image_server: ImageServer, status: int
) -> None:
    with pytest.raises(Throttled, match=f"HTTP {status}") as caught:
        await downloader.fetch(image_server.url(f"/status/{status}?retry_after=2"))
    assert caught.value.delay == 2.0


async def test_retry_after_may_be_an_http_date(
    downloader: Downloader, image_server: ImageServer
) -> None:
    when = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2), usegmt=True
    )
    with pytest.raises(Throttled) as caught:
        await downloader.fetch(image_server.url(f"/status/429?retry_after={quote(when)}"))
    assert 60 < caught.value.delay <= 120


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, "2"), (429, "soon"), (429, ""), (502, "2")]
)
async def test_retry_after_only_throttles_on_429_and_503_when_readable(
    downloader: Downloader, image_server: ImageServer, status: int, retry_after: str
) -> None:
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await downloader.fetch(image_server.url(f"/status/{status}?retry_after={retry_after}"))


async def test_500_then_ok_succeeds_on_the_second_try(
    downloader: Downloader, image_server: ImageServer
) -> None:
    with pytest.raises(TransientError):
        await downloader.fetch(image_server.url("/flaky/k1.jpg"))
    source = await downloader.fetch(image_server.url("/flaky/k1.jpg"))
    assert source.format == "JPEG"


async def test_a_server_that_never_answers_times_out(
    downloader: Downloader, image_server: ImageServer
) -> None:
    began = time.monotonic()
    with pytest.raises(TransientError, match=r"timeout|deadline"):
        await downloader.fetch(image_server.url("/slow.jpg"))
    assert time.monotonic() - began < 1.5, "the read timeout (0.5 s) fired"


async def test_a_trickling_body_is_cut_by_the_total_deadline(
    downloader: Downloader, image_server: ImageServer
) -> None:
    began = time.monotonic()
    with pytest.raises(TransientError, match="deadline"):
        await downloader.fetch(image_server.url("/trickle.jpg"))
    assert 1.9 < time.monotonic() - began < 3.0


async def test_an_endless_body_is_cut_off_at_the_size_limit(
    downloader: Downloader, image_server: ImageServer
) -> None:
    with pytest.raises(PermanentError, match="cut off while streaming") as caught:
        await downloader.fetch(image_server.url("/endless.jpg"))
    assert caught.value.code == "too_large"


async def test_an_honest_oversize_length_is_refused_before_reading(
    downloader: Downloader, image_server: ImageServer
) -> None:
    with pytest.raises(PermanentError, match="Content-Length") as caught:
        await downloader.fetch(image_server.url("/oversize.jpg"))
    assert caught.value.code == "too_large"


async def test_a_lying_content_length_is_a_malformed_response(
    downloader: Downloader, image_server: ImageServer
) -> None:
    """The server says 1,000 bytes and sends 3 MiB: the client reads what was declared and
    refuses the data after it, without reading on."""
    with pytest.raises(PermanentError, match="malformed HTTP response") as caught:
        await downloader.fetch(image_server.raw_url("/lying-length.jpg"))
    assert caught.value.code == "bad_response"
    assert len(caught.value.reason) < 400, "the reason stays readable"


async def test_html_served_as_image_jpeg_is_not_an_image(
    downloader: Downloader, image_server: ImageServer
) -> None:
    with pytest.raises(PermanentError, match="markup") as caught:
        await downloader.fetch(image_server.url("/html.jpg"))
    assert caught.value.code == "not_an_image"


async def test_a_refused_connection_is_transient(downloader: Downloader) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="cannot download"):
        await downloader.fetch(f"http://127.0.0.1:{port}/x.jpg")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x.jpg", "http://[::1/x.jpg", "http://127.0.0.1:99999/"]
)
async def test_unusable_urls_are_permanent(downloader: Downloader, url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await downloader.fetch(url)
    assert caught.value.code == "invalid_url"


async def test_an_upload_is_read_from_the_uploads_folder(
    downloader: Downloader, image_server: ImageServer, tmp_path: Path
) -> None:
    (tmp_path / "abc.jpg").write_bytes(image_server.photo(4))
    source = await downloader.fetch("upload:abc.jpg")
    assert source.data == image_server.photo(4)
    with pytest.raises(PermanentError) as caught:
        await downloader.fetch("upload:missing.jpg")
    assert caught.value.code == "upload_missing"
