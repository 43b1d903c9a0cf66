"""Where a job's thumbnails go: a folder (group-committed writes) or a bucket (one PUT each).

The pipeline sees one small interface: write a job's files, find the outputs an earlier attempt
already made, and say what a row records for an output. The file implementation keeps the
measured fast path untouched (GroupWriter → Storage.write_group); the object implementation
writes each thumbnail with one conditional PUT through the shared core store, so a duplicate
delivery writes nothing and a kill leaves no partial object or multipart upload behind.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from PIL import Image

from imagebatch.core.imagetypes import content_type_of
from imagebatch.core.stores import ObjectStore
from imagebatch.worker.group_writer import GroupWriter
from imagebatch.worker.records import OutputRecord
from imagebatch.worker.storage import Planned, Storage

FORMAT_NAMES = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
MAX_THUMBNAIL_BYTES = 64 * 1024 * 1024
"""What re-reading an existing output may cost (thumbnails are far smaller)."""


@dataclass(frozen=True)
class OutputFile:
    """One rendered thumbnail on its way out."""

    relative: PurePosixPath
    data: bytes
    format: str
    """jpeg, png or webp (the op's format)."""


class Outputs(Protocol):
    """What the pipeline needs of the place thumbnails go."""

    def describe(self, relative: PurePosixPath) -> str:
        """What `jobs.outputs[].path` records for this output."""
        ...

    async def write(self, files: Sequence[OutputFile]) -> int:
        """Write one job's files whole; how many were written (existing ones are left alone).
        Raises TransientError (a file that failed) or DependencyDown (the store itself)."""
        ...

    async def existing(self, planned: Sequence[Planned]) -> list[OutputRecord] | None:
        """Records for the planned outputs when all exist already (an earlier attempt made
        them but did not record them), else None."""
        ...


def _describe_image(data_or_path: bytes | str) -> tuple[int, int, str]:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with Image.open(source) as image:
        fmt = str(image.format)
        return image.width, image.height, FORMAT_NAMES.get(fmt, fmt.lower())


class FileOutputs:
    """Thumbnails in a folder, written in groups that share their fsyncs."""

    def __init__(self, storage: Storage, writer: GroupWriter, io_executor: Executor) -> None:
        self.storage = storage
        self.writer = writer
        self.io_executor = io_executor

    def describe(self, relative: PurePosixPath) -> str:
        return str(relative)

    async def write(self, files: Sequence[OutputFile]) -> int:
        return await self.writer.write([(f.relative, f.data) for f in files])

    def _existing(self, planned: Sequence[Planned]) -> list[OutputRecord] | None:
        if not all(self.storage.exists(p.relative) for p in planned):
            return None
        records = []
        for item in planned:
            path = self.storage.path(item.relative)
            size = path.stat().st_size
            width, height, fmt = _describe_image(str(path))
            records.append(OutputRecord(str(item.relative), width, height, size, fmt))
        return records

    async def existing(self, planned: Sequence[Planned]) -> list[OutputRecord] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io_executor, self._existing, planned)


class ObjectOutputs:
    """Thumbnails in a bucket: each one PUT with `If-None-Match: *`."""

    def __init__(self, store: ObjectStore, io_executor: Executor) -> None:
        self.store = store
        self.io_executor = io_executor

    def describe(self, relative: PurePosixPath) -> str:
        return self.store.describe(str(relative))

    async def write(self, files: Sequence[OutputFile]) -> int:
        results = await asyncio.gather(
            *(self.store.put_new(str(f.relative), f.data, content_type_of(f.format)) for f in files)
        )
        return sum(1 for written in results if written)

    async def existing(self, planned: Sequence[Planned]) -> list[OutputRecord] | None:
        loop = asyncio.get_running_loop()
        records = []
        for item in planned:
            data = await self.store.read(str(item.relative), MAX_THUMBNAIL_BYTES)
            if data is None:
                return None
            width, height, fmt = await loop.run_in_executor(self.io_executor, _describe_image, data)
            records.append(
                OutputRecord(self.describe(item.relative), width, height, len(data), fmt)
            )
        return records
