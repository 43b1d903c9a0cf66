"""Fetching originals: one shared httpx client on aiohttp's transport, with every limit enforced.

httpx's API stays (the design asks for it; its instrumentation traces each request), but its
default transport tops out near 500 requests/s on loopback, well under what the thumbnail stage
does; `httpx-aiohttp` routes the same calls through aiohttp's much faster client. The aiohttp
connector is built with the address guard's resolver and socket factory, so every connection,
redirect hops included, is checked on the address actually connected.

Limits: connect and read timeouts per request, a total deadline per image (redirects included),
a maximum size enforced while streaming (whatever Content-Length says), at most `max_redirects`
hops, and the type taken from the first bytes (not Content-Type). `upload:<name>` URLs read the
original the api stored at UPLOADS_URL instead, and `s3://bucket/key` URLs an object through the
same S3 connection as the outputs, under the same size limit and deadline.

The client keeps no cookies: each job's download is a stranger's request, so a cookie one
origin set must not ride along on the next job's request to it (and parsing every Set-Cookie
into a jar nobody reads took a few per cent of the event loop).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from imagebatch.core.errors import DependencyDown, PermanentError, Throttled, TransientError
from imagebatch.core.imagetypes import SNIFF_BYTES, describe, sniff
from imagebatch.core.locations import OBJECT_SCHEME, BucketLocation, LocationError, parse_object_url
from imagebatch.core.messages import UPLOAD_SCHEME
from imagebatch.core.objectstore import Buckets, S3Settings, StoreUnavailable
from imagebatch.core.stores import ObjectStore, Store
from imagebatch.worker.address_guard import (
    AddressGuard,
    BlockedAddressError,
    GuardedResolver,
    watch_blocks,
)
from imagebatch.worker.settings import WorkerSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
THROTTLING_STATUSES = frozenset({429, 503})
"""Answers whose Retry-After means "come back then" (waited for without spending an attempt)."""
OK_STATUSES = frozenset({200, 203})


class IgnoredCookies(httpx.Cookies):
    """A cookie jar that stays empty: Set-Cookie is never parsed, Cookie never sent."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """httpx's client with `IgnoredCookies` for a jar (httpx has no switch for it)."""

    _ignored = IgnoredCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._ignored

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("the download client keeps no cookies")


@dataclass(frozen=True)
class Limits:
    """What one download may cost."""

    max_bytes: int
    connect_timeout: float
    read_timeout: float
    deadline: float
    max_redirects: int

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Limits:
        return cls(
            max_bytes=settings.max_download_bytes,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.read_timeout_seconds,
            deadline=settings.download_deadline_seconds,
            max_redirects=settings.max_redirects,
        )


@dataclass(frozen=True)
class Source:
    """An original's bytes, its sniffed format and where they finally came from."""

    data: bytes
    format: str
    url: str
    redirects: int


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _blocked_in_chain(exc: BaseException) -> BlockedAddressError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BlockedAddressError):
            return current
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, BlockedAddressError):
            return os_error
        current = current.__cause__ or current.__context__
    return None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _classify(
    exc: BaseException, url: str, refused: BlockedAddressError | None
) -> PermanentError | TransientError:
    """What a failed request means. httpx-aiohttp maps every aiohttp connection error to
    httpx.ConnectTimeout, so the aiohttp cause decides, not the httpx type."""
    if refused is not None:
        return PermanentError(
            f"blocked address: {refused.address} is {refused.why}", code="blocked_address"
        )
    if isinstance(exc, httpx.RemoteProtocolError) and "location header" in str(exc):
        # httpx parses a redirect's Location even when it is not following redirects itself.
        return PermanentError(f"invalid redirect from {url}: {_short(exc)}", code="invalid_url")
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ else exc
    if isinstance(exc, httpx.UnsupportedProtocol) or isinstance(cause, aiohttp.InvalidURL):
        return PermanentError(f"invalid url {url}: {_short(cause)}", code="invalid_url")
    if isinstance(cause, aiohttp.ClientResponseError):
        return PermanentError(
            f"malformed HTTP response from {url}: {_short(cause)}", code="bad_response"
        )
    if isinstance(cause, TimeoutError | aiohttp.ServerTimeoutError | httpx.TimeoutException):
        return TransientError(f"timeout downloading {url}: {type(cause).__name__}")
    return TransientError(f"cannot download {url}: {type(cause).__name__}: {_short(cause)}")


class Downloader:
    """Owns the shared HTTP client; `fetch` turns every failure into a Transient- or
    PermanentError (or `Throttled`, when the origin said when to come back) with the cause
    chained."""

    def __init__(
        self,
        limits: Limits,
        guard: AddressGuard,
        *,
        uploads: Store,
        buckets: Buckets | None = None,
        user_agent: str,
    ) -> None:
        self.limits = limits
        self.guard = guard
        self.uploads = uploads
        self.buckets = buckets if buckets is not None else Buckets(S3Settings())
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(guard),
            socket_factory=guard.socket_factory,
            limit=256,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.client = CookielessClient(
            transport=AiohttpTransport(client=self._session),
            timeout=httpx.Timeout(
                connect=limits.connect_timeout,
                read=limits.read_timeout,
                write=limits.read_timeout,
                pool=limits.deadline,
            ),
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": user_agent,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
            },
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._session.close()

    async def fetch(self, url: str) -> Source:
        """The original behind `url` (http(s), `s3://` or `upload:`)."""
        if url.startswith(UPLOAD_SCHEME):
            return await self._read_upload(url.removeprefix(UPLOAD_SCHEME))
        if url.startswith(OBJECT_SCHEME):
            return await self._read_object(url)
        blocks = watch_blocks()
        try:
            async with asyncio.timeout(self.limits.deadline):
                return await self._follow(url)
        except TimeoutError as exc:
            raise TransientError(
                f"download deadline of {self.limits.deadline:g}s exceeded for {url}"
            ) from exc
        except (httpx.HTTPError, aiohttp.ClientError, OSError) as exc:
            refused = _blocked_in_chain(exc) or (blocks.refused[0] if blocks.refused else None)
            raise _classify(exc, url, refused) from exc
        except (httpx.InvalidURL, ValueError) as exc:
            raise PermanentError(f"invalid url {url}: {_short(exc)}", code="invalid_url") from exc

    async def _follow(self, url: str) -> Source:
        current = httpx.URL(url)
        for hop in range(self.limits.max_redirects + 1):
            async with self.client.stream("GET", current) as response:
                status = response.status_code
                if status in REDIRECT_STATUSES and "location" in response.headers:
                    target = current.join(response.headers["location"])
                    if target.scheme not in ("http", "https"):
                        raise PermanentError(
                            f"redirect to unsupported scheme {target.scheme!r}", code="invalid_url"
                        )
                    current = target
                    continue
                self._check_status(response)
                data, fmt = await self._read_body(response)
                return Source(data=data, format=fmt, url=str(current), redirects=hop)
        raise PermanentError(
            f"more than {self.limits.max_redirects} redirects from {url}", code="too_many_redirects"
        )

    @staticmethod
    def _check_status(response: httpx.Response) -> None:
        status = response.status_code
        if status in OK_STATUSES:
            return
        where = f"HTTP {status} from {response.url}"
        delay = retry_after(response.headers.get("retry-after"))
        if status in THROTTLING_STATUSES and delay is not None:
            raise Throttled(f"{where}, Retry-After {delay:.0f}s", delay=delay)
        if status in RETRYABLE_STATUSES:
            raise TransientError(where, delay=delay)
        raise PermanentError(where, code=f"http_{status}")

    async def _read_body(self, response: httpx.Response) -> tuple[bytes, str]:
        limit = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PermanentError(
                f"too large: Content-Length {int(declared):,} exceeds {limit:,} bytes",
                code="too_large",
            )
        body = bytearray()
        fmt: str | None = None
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise PermanentError(
                    f"too large: body exceeds {limit:,} bytes (cut off while streaming)",
                    code="too_large",
                )
            if fmt is None and len(body) >= SNIFF_BYTES:
                fmt = self._sniffed(bytes(body[:SNIFF_BYTES]))
        if fmt is None:
            fmt = self._sniffed(bytes(body[:SNIFF_BYTES]))
        return bytes(body), fmt

    @staticmethod
    def _sniffed(head: bytes) -> str:
        kind = sniff(head)
        if kind is None:
            raise PermanentError(f"not an image: {describe(head)}", code="not_an_image")
        return kind.format

    async def _read_upload(self, name: str) -> Source:
        try:
            async with asyncio.timeout(self.limits.deadline):
                data = await self.uploads.read(name, self.limits.max_bytes)
        except ValueError as exc:
            raise PermanentError(f"too large: upload {name}: {exc}", code="too_large") from exc
        except TimeoutError as exc:
            raise DependencyDown("uploads", f"reading upload {name} timed out") from exc
        if data is None:
            raise PermanentError(f"upload {name} not found", code="upload_missing")
        return Source(data=data, format=self._sniffed(data[:SNIFF_BYTES]), url=name, redirects=0)

    async def _read_object(self, url: str) -> Source:
        """An original in a bucket. The object missing, its bucket missing or access to it
        refused are the item's problem (its URL names something we cannot have); the store
        unreachable or failing is ours (DependencyDown: no attempt spent)."""
        try:
            ref = parse_object_url(url)
        except LocationError as exc:
            raise PermanentError(f"invalid url {url}: {exc}", code="invalid_url") from exc
        store = ObjectStore(BucketLocation(ref.bucket), self.buckets, what="source store")
        try:
            async with asyncio.timeout(self.limits.deadline):
                data = await store.read(ref.key, self.limits.max_bytes)
        except ValueError as exc:
            raise PermanentError(f"too large: {url}: {exc}", code="too_large") from exc
        except TimeoutError as exc:
            raise TransientError(
                f"download deadline of {self.limits.deadline:g}s exceeded for {url}"
            ) from exc
        except StoreUnavailable as exc:
            if exc.problem in ("bucket_missing", "access_denied"):
                raise PermanentError(exc.reason, code=exc.problem) from exc
            raise
        if data is None:
            raise PermanentError(f"{url} not found", code="object_missing")
        return Source(data=data, format=self._sniffed(data[:SNIFF_BYTES]), url=url, redirects=0)
