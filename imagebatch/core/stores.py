"""One storage interface for the worker, the api and the operator: a folder or a bucket.

Keys are relative paths (`<prefix>/<id>_<w>x<h>.<ext>`, `uploads/<name>`), the same on disk and
in a bucket, so switching OUTPUT_URL between `file://` and `s3://` changes where bytes go, never
what they are called. Both implementations keep the same promises:

- `put_new` writes a whole object or none (no reader sees a partial one) and never overwrites:
  a duplicate delivery writes nothing. On disk that is a temp file linked to its name (link
  fails when the name exists); in a bucket a single PUT with `If-None-Match: *` (the store
  answers 412 for an existing key), never a multipart upload, so a writer killed at any moment
  leaves nothing behind.
- Our own storage being unusable (unreachable, 5xx, throttling, credentials refused, bucket
  missing, a full disk) raises `DependencyDown`; a missing key is `None`, not an error.

The worker's hot file path keeps its own group-committing writer (worker/storage.py): these
classes serve everything else (uploads, thumbnails served by the api, object outputs, the
manifest), where one call per object is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Protocol

import obstore

from imagebatch.core.errors import Dependency, DependencyDown
from imagebatch.core.locations import BucketLocation, FileLocation, Location
from imagebatch.core.objectstore import (
    OBSTORE_ERRORS,
    Buckets,
    S3Settings,
    StoreUnavailable,
    attributes,
    is_missing_key,
    store_down,
)

CHUNK_BYTES = 256 * 1024
REPLACE_PART_BYTES = 5 * 1024 * 1024
"""Parts of a streamed upload (S3's smallest but the last): memory holds about two."""
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class Opened:
    """An object being read: its size and its bytes, in chunks (never held whole)."""

    size: int
    chunks: AsyncIterator[bytes]


class Store(Protocol):
    """Where one kind of thing is kept (outputs, uploads)."""

    @property
    def location(self) -> Location:
        """The folder or bucket (and key prefix) everything is under."""
        ...

    def describe(self, key: str) -> str:
        """What a row records for `key`: a relative path for files, `s3://…` for objects."""
        ...

    async def put_new(self, key: str, data: bytes, content_type: str) -> bool:
        """Store `data` at `key` whole; False (nothing written) when `key` already exists."""
        ...

    async def replace(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        """Store the concatenated `chunks` at `key`, replacing what is there, and return the
        bytes written. Readers see the old object or the whole new one, never a part; the
        chunks are never held together in memory (for objects: a multipart upload, aborted on
        error)."""
        ...

    async def read(self, key: str, max_bytes: int) -> bytes | None:
        """The bytes at `key` (None when missing); ValueError when larger than `max_bytes`."""
        ...

    async def open(self, key: str) -> Opened | None:
        """A streaming read of `key`, or None when it is missing."""
        ...

    async def size(self, key: str) -> int | None:
        """The size of `key`, or None when it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (nothing happens when it is missing)."""
        ...

    async def probe(self) -> None:
        """Raise DependencyDown unless the store can be used right now."""
        ...


def _checked_key(key: str) -> PurePosixPath:
    relative = PurePosixPath(key)
    if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts):
        raise ValueError(f"unsafe key {key!r}")
    return relative


class FileStore:
    """A folder; `what` names it in DependencyDown ("output store", "uploads")."""

    def __init__(self, location: FileLocation, *, what: Dependency = "output store") -> None:
        self._location = location
        self.what = what

    @property
    def location(self) -> FileLocation:
        return self._location

    def describe(self, key: str) -> str:
        return self.location.describe(key)

    def path(self, key: str) -> Path:
        return self.location.root.joinpath(*_checked_key(key).parts)

    def _down(self, exc: OSError) -> DependencyDown:
        dependency = "disk" if exc.errno in FULL_DISK else self.what
        down = DependencyDown(dependency, f"{self.location.root}: {exc.strerror or exc}")
        down.__cause__ = exc
        return down

    def _put_new(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.parent / f".ibtmp-{final.name}.{secrets.token_hex(6)}.part"
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, final)  # atomic, and fails when the name exists: no overwrite
            except FileExistsError:
                return False
            folder = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            return True
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()

    async def put_new(self, key: str, data: bytes, content_type: str) -> bool:
        try:
            return await asyncio.to_thread(self._put_new, key, data)
        except OSError as exc:
            raise self._down(exc) from exc

    async def replace(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        final = self.path(key)
        temp = final.parent / f".ibtmp-{final.name}.{secrets.token_hex(6)}.part"
        written = 0
        try:
            try:
                await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
                handle = await asyncio.to_thread(open, temp, "xb")
            except OSError as exc:
                raise self._down(exc) from exc
            with handle:
                async for chunk in chunks:  # the source's own errors pass through unchanged
                    try:
                        written += await asyncio.to_thread(handle.write, chunk)
                    except OSError as exc:
                        raise self._down(exc) from exc
                try:
                    await asyncio.to_thread(handle.flush)
                    await asyncio.to_thread(os.fsync, handle.fileno())
                except OSError as exc:
                    raise self._down(exc) from exc
            try:
                await asyncio.to_thread(self._rename_durably, temp, final)
            except OSError as exc:
                raise self._down(exc) from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        return written

    @staticmethod
    def _rename_durably(temp: Path, final: Path) -> None:
        os.replace(temp, final)
        folder = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _read(self, key: str, max_bytes: int) -> bytes | None:
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > max_bytes:
                    raise ValueError(f"{key} has {size:,} bytes, more than {max_bytes:,}")
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def read(self, key: str, max_bytes: int) -> bytes | None:
        try:
            return await asyncio.to_thread(self._read, key, max_bytes)
        except OSError as exc:
            raise self._down(exc) from exc

    async def open(self, key: str) -> Opened | None:
        size = await self.size(key)
        if size is None:
            return None
        return Opened(size=size, chunks=self._chunks(self.path(key)))

    @staticmethod
    async def _chunks(path: Path) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def size(self, key: str) -> int | None:
        path = self.path(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._down(exc) from exc
        return stat.st_size if S_ISREG(stat.st_mode) else None

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path(key).unlink, missing_ok=True)
        except OSError as exc:
            raise self._down(exc) from exc

    async def probe(self) -> None:
        root = self.location.root
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._down(exc) from exc


class ObjectStore:
    """A bucket (under a key prefix) of an S3-compatible store."""

    def __init__(
        self, location: BucketLocation, buckets: Buckets, *, what: Dependency = "output store"
    ) -> None:
        self._location = location
        self.what = what
        self.client = buckets(location.bucket)

    @property
    def location(self) -> BucketLocation:
        return self._location

    def describe(self, key: str) -> str:
        return self.location.describe(str(_checked_key(key)))

    def _key(self, key: str) -> str:
        return self.location.key(str(_checked_key(key)))

    def _down(self, exc: BaseException) -> StoreUnavailable:
        return store_down(exc, what=self.what, bucket=self.location.bucket)

    async def put_new(self, key: str, data: bytes, content_type: str) -> bool:
        try:
            await obstore.put_async(
                self.client,
                self._key(key),
                data,
                mode="create",
                use_multipart=False,
                attributes=attributes(content_type),
            )
        except obstore.exceptions.AlreadyExistsError:
            return False
        except obstore.exceptions.PreconditionError:
            return False
        except OBSTORE_ERRORS as exc:
            raise self._down(exc) from exc
        return True

    async def replace(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> int:
        written = 0
        failed: list[BaseException] = []

        async def counted() -> AsyncIterator[bytes]:
            nonlocal written
            try:
                async for chunk in chunks:
                    written += len(chunk)
                    yield chunk
            except BaseException as exc:
                failed.append(exc)
                raise

        try:  # the object appears when the upload completes; obstore aborts it on error
            await obstore.put_async(
                self.client,
                self._key(key),
                counted(),
                use_multipart=True,
                chunk_size=REPLACE_PART_BYTES,
                max_concurrency=2,
                attributes=attributes(content_type),
            )
        except OBSTORE_ERRORS as exc:
            if failed:  # the source's own error, not the store's
                raise failed[0] from None
            raise self._down(exc) from exc
        if failed:
            raise failed[0]
        return written

    async def read(self, key: str, max_bytes: int) -> bytes | None:
        opened = await self.open(key)
        if opened is None:
            return None
        if opened.size > max_bytes:
            await opened.chunks.aclose()  # type: ignore[attr-defined]
            raise ValueError(f"{key} has {opened.size:,} bytes, more than {max_bytes:,}")
        body = bytearray()
        async for chunk in opened.chunks:
            body += chunk
        return bytes(body)

    async def open(self, key: str) -> Opened | None:
        try:
            result = await obstore.get_async(self.client, self._key(key))
        except OBSTORE_ERRORS as exc:
            if is_missing_key(exc):
                return None
            raise self._down(exc) from exc
        return Opened(size=result.meta["size"], chunks=self._chunks(result))

    async def _chunks(self, result: obstore.GetResult) -> AsyncIterator[bytes]:
        try:
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)
        except OBSTORE_ERRORS as exc:
            raise self._down(exc) from exc

    async def size(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self.client, self._key(key))
        except OBSTORE_ERRORS as exc:
            if is_missing_key(exc):
                return None
            raise self._down(exc) from exc
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.client, self._key(key))
        except OBSTORE_ERRORS as exc:
            if not is_missing_key(exc):
                raise self._down(exc) from exc

    async def probe(self) -> None:
        """One small LIST under the prefix: it fails for a missing bucket, refused credentials
        and an unreachable store alike, and needs no object to exist."""
        try:
            stream = obstore.list(self.client, prefix=self.location.prefix or None, chunk_size=1)
            await anext(aiter(stream), None)
        except OBSTORE_ERRORS as exc:
            raise self._down(exc) from exc


def open_store(
    location: Location, s3: S3Settings | Buckets | None = None, *, what: Dependency = "output store"
) -> Store:
    """The Store for `location` (`s3` is needed for a bucket)."""
    if isinstance(location, FileLocation):
        return FileStore(location, what=what)
    if s3 is None:
        s3 = S3Settings()
    buckets = s3 if isinstance(s3, Buckets) else Buckets(s3)
    return ObjectStore(location, buckets, what=what)
