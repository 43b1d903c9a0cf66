"""Thumbnail writes from many jobs gathered into groups, so their fsyncs are shared.

With fsync on, writing a thumbnail costs two fsyncs (the file, then its folder after the rename),
and when several threads fsync at once they also queue on the filesystem journal: about 1 ms of
CPU per image on the benchmark machine, more than the event loop spends on the whole message.
Here one flusher writes whatever queued up while the previous group was on disk — group commit,
as databases do with their logs — so a busy worker fsyncs each folder once per group instead of
once per file, and an idle one writes a lone job at once, without waiting for company.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import PurePosixPath

from prometheus_client import Histogram

from imagebatch.core.errors import TransientError
from imagebatch.worker import batching
from imagebatch.worker.storage import Storage

File = tuple[PurePosixPath, bytes]
MAX_GROUP_FILES = 64
"""Enough to share the fsyncs under any load one worker sees; small enough that a group's
latency stays a few milliseconds."""


class GroupWriter:
    """Writes files atomically through `Storage.write_group`, one group at a time, on
    `executor`, the group's fsyncs side by side on `fsync_executor` (the flusher runs as a task
    of the event loop that awaits the first write)."""

    def __init__(
        self,
        storage: Storage,
        executor: Executor,
        *,
        fsync_executor: Executor | None = None,
        group_files: Histogram | None = None,
        max_files: int = MAX_GROUP_FILES,
    ) -> None:
        self.storage = storage
        self.executor = executor
        self.fsync_executor = fsync_executor
        self.max_files = max_files
        self._group_files = group_files
        self._queue: collections.deque[tuple[Sequence[File], asyncio.Future[int]]] = (
            collections.deque()
        )
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, files: Sequence[File]) -> int:
        """Write `files` (one job's outputs) in the next group; how many were written (files
        that already existed are left alone). Raises the error of a file that failed:
        TransientError, or DependencyDown when the disk is full."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((files, future))
        flushing = self._flusher is not None and not self._flusher.done()
        if batching.take(batching.BatchState(queued=1, flushing=flushing)):
            self._flusher = asyncio.create_task(self._flush(), name="group-writer")
        return await future

    def _take_group(self) -> list[tuple[Sequence[File], asyncio.Future[int]]]:
        group: list[tuple[Sequence[File], asyncio.Future[int]]] = []
        count = 0
        while self._queue and (not group or count + len(self._queue[0][0]) <= self.max_files):
            files, future = self._queue.popleft()
            if future.done():  # its job was cancelled while it waited
                continue
            group.append((files, future))
            count += len(files)
        return group

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group = self._take_group()
            if not group:
                continue
            files = [file for job_files, _future in group for file in job_files]
            if self._group_files is not None:
                self._group_files.observe(len(files))
            try:
                results = await loop.run_in_executor(
                    self.executor,
                    functools.partial(
                        self.storage.write_group, files, fsync_executor=self.fsync_executor
                    ),
                )
            except BaseException as exc:
                for _files, future in group:
                    if not future.done():
                        error = TransientError(f"cannot write thumbnails: {exc!r}")
                        error.__cause__ = exc
                        future.set_exception(error)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                continue
            offset = 0
            for job_files, future in group:
                mine = results[offset : offset + len(job_files)]
                offset += len(job_files)
                if future.done():
                    continue
                failure = next((r for r in mine if not isinstance(r, bool)), None)
                if failure is not None:
                    future.set_exception(failure)
                else:
                    future.set_result(sum(1 for r in mine if r is True))
