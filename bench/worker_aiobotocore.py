"""The worker, with aiobotocore instead of obstore as its object client (bench only).

    python bench/worker_aiobotocore.py        # settings from the environment, as the worker

`bench/worker.py --s3-client aiobotocore` starts this in place of `python -m imagebatch.worker`,
so issue 19's choice between the two clients is measured in the worker's own setting (its
loop, its CONCURRENCY/PREFETCH, its other work) rather than standalone (bench/s3_clients.py).
Nothing in the production code changes: before the worker's normal `main` runs, the methods of
`imagebatch.core.stores.ObjectStore` that the worker calls (`put_new` for thumbnails; `read` and
`size` for an earlier attempt's outputs and s3:// sources) are replaced by aiobotocore versions
with the same promises:

- `put_new`: one PutObject with `IfNoneMatch="*"` and the ContentType, never multipart; a 412
  (PreconditionFailed) means the key exists: False, nothing written;
- a missing key is None; the store being unusable is `StoreUnavailable`, sorted the same way
  (missing bucket, refused credentials, throttling, unreachable, failing);
- the same AWS variables (S3Settings), path-style addressing whenever an endpoint is set, and
  timeouts and retries like obstore's (`objectstore.Timeouts`: 3 s connect, 30 s per request,
  2 retries).

One client per process, made on the worker's own event loop (aiohttp sessions belong to a
loop): as the worker starts when its output is a bucket, else on first use, so that botocore's
service model is loaded before the first claim, outside the CPU window bench/worker.py measures
(as obstore's client is built at start-up); closed after the worker stops.

`BENCH_AIOBOTOCORE_CHECKSUM` picks botocore's `request_checksum_calculation`: `when_supported`
(botocore's default since 1.36: a CRC32 of every PUT body) or `when_required` (none, as obstore
sends).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from imagebatch.core.locations import BucketLocation
from imagebatch.core.objectstore import S3Settings, StoreProblem, StoreUnavailable, Timeouts
from imagebatch.core.stores import ObjectStore
from imagebatch.worker import __main__ as worker_main
from imagebatch.worker.service import WorkerService

CHECKSUM_VARIABLE = "BENCH_AIOBOTOCORE_CHECKSUM"
MAX_POOL_CONNECTIONS = 64
"""botocore's default is 10: fewer than the PUTs a worker at 16 in flight makes at once (obstore's
pool has no limit)."""
MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
EXISTS = frozenset({"PreconditionFailed", "412"})
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


class Client:
    """The process's one aiobotocore S3 client, opened lazily on the running loop."""

    def __init__(self) -> None:
        self._context: Any = None
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Any:
        if self._client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    self._context = _create_client(S3Settings())
                    self._client = await self._context.__aenter__()
        return self._client

    async def close(self) -> None:
        if self._context is not None:
            context, self._context, self._client = self._context, None, None
            await context.__aexit__(None, None, None)


def _create_client(settings: S3Settings) -> Any:
    limits = Timeouts()
    config = AioConfig(
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=limits.connect,
        read_timeout=limits.request,
        retries={"mode": "standard", "max_attempts": limits.retries + 1},
        s3={"addressing_style": "path"} if settings.endpoint else {},
        request_checksum_calculation=os.environ.get(CHECKSUM_VARIABLE, "when_supported"),
    )
    return get_session().create_client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        aws_session_token=settings.aws_session_token,
        region_name=settings.aws_region,
        config=config,
    )


CLIENT = Client()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _missing(error: BaseException) -> bool:
    """A 404 for the key (HEAD has no body, so no code but the status); not a missing bucket."""
    if not isinstance(error, ClientError) or _code(error) == "NoSuchBucket":
        return False
    return _code(error) in MISSING_KEY or _status(error) == 404


def _down(store: ObjectStore, error: BaseException) -> StoreUnavailable:
    """What `imagebatch.core.objectstore.store_down` says of an obstore failure, for botocore's."""
    bucket = store.location.bucket
    problem: StoreProblem
    if isinstance(error, ClientError):
        code, status = _code(error), _status(error)
        if code == "NoSuchBucket":
            problem, reason = "bucket_missing", f"bucket {bucket!r} does not exist"
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status in (
            401,
            403,
        ):
            problem, reason = "access_denied", f"credentials refused for bucket {bucket!r}: {code}"
        elif code == "SlowDown" or status == 503:
            problem, reason = "throttled", f"bucket {bucket!r} is throttling requests: {code}"
        else:
            problem, reason = "failing", f"bucket {bucket!r}: {code or status}"
    else:
        problem = "unreachable"
        reason = f"cannot reach the object store for bucket {bucket!r}: {error}"
    down = StoreUnavailable(store.what, reason, problem)
    down.__cause__ = error
    return down


async def put_new(self: ObjectStore, key: str, data: bytes, content_type: str) -> bool:
    client = await CLIENT.get()
    try:
        await client.put_object(
            Bucket=self.location.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            IfNoneMatch="*",
        )
    except ClientError as error:
        if _code(error) in EXISTS or _status(error) == 412:
            return False
        raise _down(self, error) from error
    except NETWORK_ERRORS as error:
        raise _down(self, error) from error
    return True


async def read(self: ObjectStore, key: str, max_bytes: int) -> bytes | None:
    client = await CLIENT.get()
    try:
        response = await client.get_object(Bucket=self.location.bucket, Key=self._key(key))
        size = int(response["ContentLength"])
        async with response["Body"] as body:
            if size > max_bytes:
                raise ValueError(f"{key} has {size:,} bytes, more than {max_bytes:,}")
            data: bytes = await body.read()
    except ClientError as error:
        if _missing(error):
            return None
        raise _down(self, error) from error
    except NETWORK_ERRORS as error:
        raise _down(self, error) from error
    return data


async def size(self: ObjectStore, key: str) -> int | None:
    client = await CLIENT.get()
    try:
        response = await client.head_object(Bucket=self.location.bucket, Key=self._key(key))
    except ClientError as error:
        if _missing(error):
            return None
        raise _down(self, error) from error
    except NETWORK_ERRORS as error:
        raise _down(self, error) from error
    return int(response["ContentLength"])


_worker_start = WorkerService.start
_worker_stop = WorkerService.stop


async def start(self: WorkerService) -> None:
    if isinstance(self.output_location, BucketLocation):
        await CLIENT.get()
    await _worker_start(self)


async def stop(self: WorkerService) -> None:
    """The worker's own stop, then the client's session (in-flight PUTs use it until then)."""
    try:
        await _worker_stop(self)
    finally:
        await CLIENT.close()


def install() -> None:
    """Route the worker's object calls through aiobotocore."""
    ObjectStore.put_new = put_new  # type: ignore[method-assign]
    ObjectStore.read = read  # type: ignore[method-assign]
    ObjectStore.size = size  # type: ignore[method-assign]
    WorkerService.start = start  # type: ignore[method-assign]
    WorkerService.stop = stop  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    checksum = os.environ.get(CHECKSUM_VARIABLE, "when_supported")
    client = "aiobotocore" if checksum == "when_supported" else f"aiobotocore_{checksum}"
    print(f"bench: object client: {client}", file=sys.stderr, flush=True)
    sys.exit(worker_main.main())
