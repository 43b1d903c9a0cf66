"""S3 client benchmark: aiobotocore against obstore, on the local versitygw, in one run.

    .venv/bin/python bench/s3_clients.py [--objects 1000] [--runs 3] [--concurrency 16]
                                         [--output PATH]

Which client the worker and the api write thumbnails with (issue 19). Every operation a worker
makes on the store, at `--concurrency` requests in flight from one asyncio loop (as the worker
has), on 256x192 JPEG thumbnails of real photos (tests/support/photos.py, ~15 KB):

- `put`: a plain PUT of a new key (with its Content-Type);
- `put_if_none_match_new` / `head_then_put_new`: the two idempotent writes of a new key — one
  conditional PUT (`If-None-Match: *`), or a HEAD (404) and then a PUT;
- `put_if_none_match_existing` / `head_then_put_existing`: the same for a key that is already
  there (a duplicate delivery) — the conditional PUT sends the body and gets 412, the HEAD
  answers 200 and nothing is sent;
- `head`, `get`: of existing keys (GET reads the whole body).

Per operation: ops/s, the CLIENT process's CPU ms per op (getrusage: every thread, so obstore's
Rust runtime threads count too) and versitygw's CPU ms per op (/proc). The clients take turns
within each run (the order rotates run by run) so that all see the same machine; each figure is
the median of `--runs` runs, and every run's ops/s is listed too. `aiobotocore_when_required`
is aiobotocore without the CRC32 it adds to every PUT since botocore 1.36
(`request_checksum_calculation="when_required"`).

Prints the JSON and writes it to --output. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: the repo's `operator/` folder must not shadow stdlib

import aiobotocore  # noqa: E402
import botocore  # noqa: E402
import obstore  # noqa: E402
from aiobotocore.config import AioConfig  # noqa: E402
from aiobotocore.session import get_session  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from obstore.exceptions import AlreadyExistsError, NotFoundError  # noqa: E402
from obstore.store import S3Store  # noqa: E402

from bench.cpu_accounting import process_stat  # noqa: E402
from imagebatch.devservers.s3 import S3Server  # noqa: E402
from tests.support.photos import photos  # noqa: E402

THUMBNAIL = (256, 192)
CONTENT_TYPE = "image/jpeg"
WARM_UP = 32
PHASES = (
    "put",
    "put_if_none_match_new",
    "head_then_put_new",
    "put_if_none_match_existing",
    "head_then_put_existing",
    "head",
    "get",
)


class Client(Protocol):
    async def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        """Write `key`; False when `if_none_match` and the key was there already (412)."""

    async def exists(self, key: str) -> bool: ...

    async def get(self, key: str) -> bytes: ...

    async def close(self) -> None: ...


class Botocore:
    def __init__(self, server: S3Server, bucket: str, *, crc: bool) -> None:
        self.bucket = bucket
        self._context = get_session().create_client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name=server.region,
            config=AioConfig(
                max_pool_connections=64,
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_supported" if crc else "when_required",
            ),
        )
        self._client: Any = None

    async def open(self) -> Botocore:
        self._client = await self._context.__aenter__()
        return self

    async def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPE, **extra
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "PreconditionFailed":
                return False
            raise
        return True

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise
        return True

    async def get(self, key: str) -> bytes:
        response = await self._client.get_object(Bucket=self.bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


class Obstore:
    def __init__(self, server: S3Server, bucket: str) -> None:
        self.store = S3Store(
            bucket,
            endpoint=server.endpoint_url,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
            region=server.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    async def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        try:
            await obstore.put_async(
                self.store,
                key,
                data,
                mode="create" if if_none_match else "overwrite",
                attributes={"Content-Type": CONTENT_TYPE},
            )
        except AlreadyExistsError:
            return False
        return True

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except (FileNotFoundError, NotFoundError):  # obstore raises the builtin for a 404
            return False
        return True

    async def get(self, key: str) -> bytes:
        result = await obstore.get_async(self.store, key)
        return bytes(await result.bytes_async())

    async def close(self) -> None:
        pass


async def open_client(name: str, server: S3Server, bucket: str) -> Client:
    if name == "obstore":
        return Obstore(server, bucket)
    return await Botocore(server, bucket, crc=name == "aiobotocore").open()


CLIENTS = ("aiobotocore", "aiobotocore_when_required", "obstore")


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(server: S3Server) -> float:
    return process_stat(Path(f"/proc/{server.pid}/stat").read_text())[1]


async def measure(
    server: S3Server, operation: Callable[[int], Awaitable[object]], count: int, concurrency: int
) -> dict[str, float]:
    """`operation(0..count-1)` with `concurrency` in flight; ops/s and CPU ms per op."""
    indices = iter(range(count))

    async def lane() -> None:
        for index in indices:  # one shared iterator: each lane takes the next index
            await operation(index)

    cpu, server_cpu, began = client_cpu_seconds(), server_cpu_seconds(server), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    return {
        "ops_per_second": round(count / wall, 1),
        "client_cpu_ms_per_op": round((client_cpu_seconds() - cpu) * 1000 / count, 3),
        "server_cpu_ms_per_op": round((server_cpu_seconds(server) - server_cpu) * 1000 / count, 3),
    }


async def one_run(
    name: str, server: S3Server, payloads: tuple[bytes, ...], count: int, concurrency: int
) -> dict[str, dict[str, float]]:
    """Every phase once for one client, on a bucket of its own."""
    bucket = server.create_bucket(f"bench-{uuid.uuid4().hex[:12]}")
    client = await open_client(name, server, bucket)

    def key(phase: str, index: int) -> str:
        return f"{phase}/{index:05d}_{THUMBNAIL[0]}x{THUMBNAIL[1]}.jpg"

    def body(index: int) -> bytes:
        return payloads[index % len(payloads)]

    async def head_then_put(phase: str, index: int) -> None:
        if not await client.exists(key(phase, index)):
            await client.put(key(phase, index), body(index))

    async def expect(outcome: Awaitable[bool], wanted: bool) -> None:
        assert await outcome is wanted

    operations: dict[str, Callable[[int], Awaitable[object]]] = {
        "put": lambda i: client.put(key("put", i), body(i)),
        "put_if_none_match_new": lambda i: expect(
            client.put(key("cond", i), body(i), if_none_match=True), True
        ),
        "head_then_put_new": lambda i: head_then_put("headput", i),
        "put_if_none_match_existing": lambda i: expect(
            client.put(key("put", i), body(i), if_none_match=True), False
        ),
        "head_then_put_existing": lambda i: head_then_put("put", i),
        "head": lambda i: expect(client.exists(key("put", i)), True),
        "get": lambda i: client.get(key("put", i)),
    }
    try:
        for index in range(WARM_UP):  # connections open and code paths warm before timing
            await client.put(key("warm", index), body(index))
        return {
            phase: await measure(server, operations[phase], count, concurrency) for phase in PHASES
        }
    finally:
        await client.close()


def summarize(runs: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for phase in PHASES:
        figures: dict[str, Any] = {
            metric: round(statistics.median(run[phase][metric] for run in runs), 3)
            for metric in runs[0][phase]
        }
        figures["ops_per_second_every_run"] = [run[phase]["ops_per_second"] for run in runs]
        result[phase] = figures
    return result


def compare(clients: dict[str, Any]) -> dict[str, Any]:
    """obstore against aiobotocore, and each client's two idempotent writes against each other."""
    boto, obs = clients["aiobotocore"], clients["obstore"]
    ratios = {
        f"obstore_over_aiobotocore_{phase}_ops_per_second": round(
            obs[phase]["ops_per_second"] / boto[phase]["ops_per_second"], 3
        )
        for phase in PHASES
    }
    ratios["obstore_over_aiobotocore_put_client_cpu"] = round(
        obs["put"]["client_cpu_ms_per_op"] / boto["put"]["client_cpu_ms_per_op"], 3
    )
    idempotent = {
        name: {
            f"{case}_key_put_if_none_match_over_head_then_put_ops_per_second": round(
                figures[f"put_if_none_match_{case}"]["ops_per_second"]
                / figures[f"head_then_put_{case}"]["ops_per_second"],
                3,
            )
            for case in ("new", "existing")
        }
        for name, figures in clients.items()
    }
    return {**ratios, "idempotent_write": idempotent}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    payloads = photos(THUMBNAIL, quality=90)
    report: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiobotocore": aiobotocore.__version__,
            "botocore": botocore.__version__,
            "obstore": obstore.__version__,
        },
        "objects_per_phase": args.objects,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "payload_bytes_mean": round(statistics.mean(len(p) for p in payloads)),
    }
    runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in CLIENTS}
    with S3Server() as server:
        report["server"] = f"versitygw posix at {server.endpoint_url}"
        for turn in range(args.runs):  # the clients take turns; the order rotates
            for name in CLIENTS[turn % len(CLIENTS) :] + CLIENTS[: turn % len(CLIENTS)]:
                runs[name].append(
                    await one_run(name, server, payloads, args.objects, args.concurrency)
                )
    report["clients"] = {name: summarize(each) for name, each in runs.items()}
    report["comparison"] = compare(report["clients"])
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000, help="operations per phase")
    parser.add_argument("--runs", type=int, default=3, help="runs per client; medians reported")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument(
        "--output", type=Path, default=REPO / ".cache" / "bench" / "s3_clients.json"
    )
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
