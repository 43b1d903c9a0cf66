"""Encoding thumbnails without holding the GIL: Pillow's encoder into a memory file descriptor.

Pillow releases the GIL while it encodes into a file descriptor (`encode_to_file`), but holds it
for the whole encode into a Python buffer such as `io.BytesIO`. A 256 px JPEG takes ~0.17 ms to
encode; with the GIL held that is time the event loop cannot run, and two thumbnail threads
encoding at once run one after the other (measured here: 4,900/s on one thread and on two through
`BytesIO`, 4,900/s and 8,400/s through this sink). So each thumbnail thread encodes into a memory
file of its own (`memfd_create`, reused: no file is created per image) and reads the bytes back,
for ~3 µs more per image. Every Pillow encode goes through the sink, so there is one way to
encode: JPEGs that keep a colour profile gain from it; PNG and WebP savers write through `write`
rather than into the descriptor, so they gain nothing. (Plain JPEG thumbnails are encoded by
TurboJPEG instead, `jpeg_turbo`, which releases the GIL by itself.)
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import IO, cast

_HAS_MEMFD = hasattr(os, "memfd_create")


class _MemorySink:
    """The part of a binary file Pillow's savers use, over one reusable memory file."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd = os.memfd_create("imagebatch-encode", os.MFD_CLOEXEC)

    def fileno(self) -> int:
        return self.fd

    def flush(self) -> None:
        """Writes go straight to the descriptor; nothing is buffered."""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def encoded(self, save: Callable[[IO[bytes]], None]) -> bytes:
        """What `save` writes, from offset 0 (bytes an earlier, longer image left beyond the
        end are never read)."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        save(cast(IO[bytes], self))
        return os.pread(self.fd, self.tell(), 0)

    def __del__(self) -> None:  # the thread that owned it ended
        os.close(self.fd)


_local = threading.local()


def encode_releasing_gil(save: Callable[[IO[bytes]], None]) -> bytes:
    """The bytes `save(fp)` writes, encoded with the GIL released where Pillow allows it (into a
    file descriptor); through `io.BytesIO` where the system has no memory files."""
    if not _HAS_MEMFD:
        buffer = io.BytesIO()
        save(buffer)
        return buffer.getvalue()
    sink: _MemorySink | None = getattr(_local, "sink", None)
    if sink is None:
        sink = _local.sink = _MemorySink()
    return sink.encoded(save)
