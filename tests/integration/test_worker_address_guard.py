"""The address guard end to end: loopback in every spelling is refused, directly and behind a
redirect, and a canary listener on those addresses proves no connection was made.

Every address here is on this machine (127.0.0.0/8 and ::1), so even a broken guard would send
nothing anywhere else. Private, link-local and CGNAT ranges are covered at the classification
level (tests/unit/test_worker_address_guard.py), never with packets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from imagebatch.core.errors import PermanentError, TransientError
from imagebatch.core.locations import FileLocation
from imagebatch.core.stores import FileStore
from imagebatch.worker.address_guard import AddressGuard
from imagebatch.worker.download import Downloader, Limits
from tests.support.canary import Canary
from tests.support.image_server import ImageServer

LIMITS = Limits(
    max_bytes=1024 * 1024, connect_timeout=2.0, read_timeout=1.0, deadline=3.0, max_redirects=5
)
REDIRECTOR_HOST = "127.0.0.3"
"""The one loopback address the guard is told to allow, so that a redirect can be tested."""

SPELLINGS = [
    "127.0.0.1",
    "127.0.0.2",
    "[::1]",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "127.1",
    "localhost",
]


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    async with Canary() as listener:
        yield listener


@pytest.fixture
async def redirector() -> AsyncIterator[ImageServer]:
    async with ImageServer(host=REDIRECTOR_HOST) as server:
        yield server


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Downloader]:
    guard = AddressGuard.from_settings(False, [f"{REDIRECTOR_HOST}/32"])
    client = Downloader(LIMITS, guard, uploads=FileStore(FileLocation(tmp_path)), user_agent="test")
    yield client
    await client.aclose()


@pytest.mark.parametrize("host", SPELLINGS)
async def test_loopback_spellings_are_refused_without_a_connection(
    guarded: Downloader, canary: Canary, host: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        await guarded.fetch(f"http://{host}:{canary.port}/photo.jpg")
    assert caught.value.code in {"blocked_address", "invalid_url"}
    assert canary.connections == []


@pytest.mark.parametrize("host", SPELLINGS)
async def test_a_redirect_to_loopback_is_refused_at_the_hop(
    guarded: Downloader, canary: Canary, redirector: ImageServer, host: str
) -> None:
    target = quote(f"http://{host}:{canary.port}/photo.jpg", safe="")
    with pytest.raises(PermanentError) as caught:
        await guarded.fetch(redirector.url(f"/redirect?to={target}"))
    assert caught.value.code in {"blocked_address", "invalid_url"}
    assert redirector.hits["/redirect"] == 1, "the allowed first hop was made"
    assert canary.connections == []


async def test_the_refusal_says_what_kind_of_address_it_was(
    guarded: Downloader, canary: Canary
) -> None:
    with pytest.raises(PermanentError, match=r"blocked address: ::1 is loopback"):
        await guarded.fetch(f"http://[::1]:{canary.port}/")
    with pytest.raises(PermanentError, match=r"IPv4-embedded IPv6 \(loopback\)|loopback"):
        await guarded.fetch(f"http://[::ffff:127.0.0.1]:{canary.port}/")


async def test_an_allowed_network_is_reachable(
    guarded: Downloader, redirector: ImageServer
) -> None:
    source = await guarded.fetch(redirector.url("/photo/1.jpg"))
    assert source.data == redirector.photo(1)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "[::1]"])
async def test_the_canary_would_notice_a_connection(
    canary: Canary, tmp_path: Path, host: str
) -> None:
    """Control: with private sources allowed the same request reaches the canary, so its
    silence above means the guard stopped the connection."""
    client = Downloader(
        LIMITS,
        AddressGuard(allow_private=True),
        uploads=FileStore(FileLocation(tmp_path)),
        user_agent="test",
    )
    try:
        with pytest.raises(TransientError):  # the canary hangs up without an answer
            await client.fetch(f"http://{host}:{canary.port}/photo.jpg")
    finally:
        await client.aclose()
    assert len(canary.connections) >= 1
