"""Writes from many jobs share their fsyncs: grouped while the previous group is on disk,
each job told exactly what happened to its own files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
from prometheus_client import CollectorRegistry, Histogram

from imagebatch.core.errors import TransientError
from imagebatch.worker.group_writer import GroupWriter
from imagebatch.worker.storage import Storage


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def histogram() -> Histogram:
    return Histogram("groups", "files per group", registry=CollectorRegistry())


async def test_jobs_arriving_together_share_groups_and_every_file_lands(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    groups = histogram()
    jobs = [
        [(PurePosixPath(f"b/{n}_a.jpg"), b"a"), (PurePosixPath(f"b/{n}_b.jpg"), b"b")]
        for n in range(30)
    ]
    with ThreadPoolExecutor(4) as fsyncs:
        writer = GroupWriter(Storage(tmp_path), executor, fsync_executor=fsyncs, group_files=groups)
        written = await asyncio.gather(*(writer.write(files) for files in jobs))
    assert written == [2] * 30
    assert len(await asyncio.to_thread(os.listdir, tmp_path / "b")) == 60
    group_count = next(
        s.value for metric in groups.collect() for s in metric.samples if s.name == "groups_count"
    )
    assert 1 <= group_count < 30  # grouped, not one fsync round per job


async def test_a_job_sees_its_own_failure_and_only_its_own(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    (tmp_path / "blocked").write_bytes(b"not a folder")
    writer = GroupWriter(Storage(tmp_path), executor)
    good, bad, existing = await asyncio.gather(
        writer.write([(PurePosixPath("ok/1.jpg"), b"1")]),
        writer.write([(PurePosixPath("blocked/2.jpg"), b"2")]),
        writer.write([(PurePosixPath("ok/1.jpg"), b"again")]),
        return_exceptions=True,
    )
    assert good == 1
    assert isinstance(bad, TransientError)
    assert existing in (0, 1)  # same group as the first write, or after it: never an error
    assert (tmp_path / "ok/1.jpg").read_bytes() in (b"1", b"again")


async def test_a_cancelled_job_does_not_stop_the_writes_queued_behind_it(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    writer = GroupWriter(Storage(tmp_path), executor, max_files=1)
    first = asyncio.ensure_future(writer.write([(PurePosixPath("1.jpg"), b"1")]))
    cancelled = asyncio.ensure_future(writer.write([(PurePosixPath("2.jpg"), b"2")]))
    last = asyncio.ensure_future(writer.write([(PurePosixPath("3.jpg"), b"3")]))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await first == 1
    assert await last == 1
    names = sorted(await asyncio.to_thread(os.listdir, tmp_path))
    assert names[-1] == "3.jpg"
    assert not any(name.startswith(".ibtmp-") for name in names)
