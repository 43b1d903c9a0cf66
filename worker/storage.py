"""Where thumbnails go on disk, and writing them so no reader ever sees half a file.

Names come from the job's id and output prefix (validated by the message schema), never from the
URL. A file is written without a name in its final folder (Linux's `O_TMPFILE`), fsynced, given its
final name (`linkat` through `/proc/self/fd`, which also refuses to replace an existing file) and
the folder fsynced, so a crash at any moment leaves either no file or the whole file, and nothing
else: a nameless file of a killed writer is freed by the kernel. Where the filesystem has no
`O_TMPFILE` (EOPNOTSUPP, EISDIR, EINVAL) a file is written to a temp name instead and renamed over
the final name (atomic on POSIX); a crash then may leave a stale temp file, which the start-up
sweep removes.

A full disk (ENOSPC, or EDQUOT: the quota is used up) is not the image's fault: that write fails
with `DependencyDown("disk", …)`, which spends no attempt; any other OS error is a
`TransientError` of the job.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagebatch.core.errors import DependencyDown, PermanentError, TransientError
from imagebatch.core.messages import ImageJob, Thumbnail

TEMP_PREFIX = ".ibtmp-"
TEMP_SUFFIX = ".part"
DEFAULT_PREFIX = "tasks"
"""Folder of thumbnails whose job names neither an output prefix nor a batch."""
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

WriteError = TransientError | DependencyDown
"""Why one file of a group was not written."""


def write_error(what: str, exc: OSError) -> WriteError:
    """A failed write's error: the disk is down for us when it is full, else the job's."""
    if exc.errno in DISK_FULL:
        return DependencyDown("disk", f"{what}: {exc}")
    return TransientError(f"{what}: {exc}")


@dataclass(frozen=True)
class Planned:
    """One output the job will produce: its spec and its path relative to OUTPUT_DIR."""

    spec: Thumbnail
    relative: PurePosixPath


def _checked(relative: PurePosixPath) -> PurePosixPath:
    if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts):
        raise PermanentError(f"unsafe output path {relative}", code="unsafe_path")
    return relative


def plan_outputs(job: ImageJob) -> list[Planned]:
    """The outputs of `job`: `<id>.jpg` for the seed's short form, otherwise
    `<prefix>/<id>_<w>x<h>.<ext>`; two ops naming the same file produce it once."""
    if job.short_form:
        return [Planned(job.ops[0].thumbnail, _checked(PurePosixPath(f"{job.id}.jpg")))]
    prefix = job.output or job.batch or DEFAULT_PREFIX
    planned: dict[PurePosixPath, Planned] = {}
    for op in job.ops:
        spec = op.thumbnail
        name = f"{job.id}_{spec.width}x{spec.height}.{spec.extension}"
        relative = _checked(PurePosixPath(prefix) / name)
        planned.setdefault(relative, Planned(spec, relative))
    return list(planned.values())


NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
"""What `open(folder, O_TMPFILE)` fails with where the filesystem (or kernel) has no O_TMPFILE."""


@dataclass
class _Staged:
    """A file written for `final`: nameless (`temp` None, open until linked) or at a temp name
    (open until fsynced)."""

    index: int
    temp: Path | None
    final: Path
    fd: int

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Close (if still open: a nameless file is gone then) and remove the temp file (if
        not renamed)."""
        with contextlib.suppress(OSError):
            self.close()
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink()


class Storage:
    """Atomic writes under one root folder. `anonymous`: write files without a name until
    whole where the filesystem can (`O_TMPFILE`); False always uses temp names."""

    def __init__(self, root: Path, *, fsync: bool = True, anonymous: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.anonymous = anonymous and hasattr(os, "O_TMPFILE") and Path("/proc/self/fd").is_dir()
        """Still trying O_TMPFILE: False once the filesystem refused it."""
        self._folders: set[Path] = set()
        """Folders known to exist: one mkdir per folder, not one per file."""

    def path(self, relative: PurePosixPath) -> Path:
        return self.root.joinpath(*relative.parts)

    def exists(self, relative: PurePosixPath) -> bool:
        return self.path(relative).is_file()

    def size(self, relative: PurePosixPath) -> int:
        return self.path(relative).stat().st_size

    def write(self, relative: PurePosixPath, data: bytes) -> bool:
        """Write `data` atomically; False (nothing written) when the file already exists."""
        [result] = self.write_group([(relative, data)])
        if isinstance(result, TransientError | DependencyDown):
            raise result
        return result

    def write_group(
        self,
        files: Sequence[tuple[PurePosixPath, bytes]],
        *,
        fsync_executor: Executor | None = None,
    ) -> list[bool | WriteError]:
        """Write several files atomically, sharing the waits on the disk; per file: True when
        written, False when it already existed, or the error that stopped it.

        Every file is staged (written without a name, or to a temp name), then all are
        fsynced — at once, on `fsync_executor`, when one is given: the filesystem then commits
        them together instead of one after another, which measured ~3 ms per file here when the
        machine was busy — then named (linked, or renamed), and each folder is fsynced once. A
        concurrent writer of the same file (a redelivered duplicate) is harmless: both write
        complete files, the first link wins (the other finds the file there: False) or the last
        rename does, and the contents are equivalent.
        """
        results: list[bool | WriteError] = [False] * len(files)
        staged: list[_Staged] = []
        renamed: dict[Path, list[int]] = {}
        try:
            for index, (relative, data) in enumerate(files):
                final = self.path(relative)
                if final.is_file():
                    continue
                try:
                    staged.append(self._stage(index, final, data))
                except OSError as exc:
                    results[index] = write_error(f"cannot write {relative}", exc)
            synced = self._sync(staged, fsync_executor)
            for item, error in zip(staged, synced, strict=True):
                if error is not None:
                    results[item.index] = write_error(f"cannot write {files[item.index][0]}", error)
            self._name(
                files,
                [i for i, e in zip(staged, synced, strict=True) if e is None],
                results,
                renamed,
            )
        except BaseException:  # interrupted: leave no temp file or open file behind
            for item in staged:
                item.discard()
            raise
        for item in staged:
            if results[item.index] is not True:
                item.discard()
        if self.fsync:
            for folder, indexes in renamed.items():
                try:
                    self._fsync_dir(folder)
                except OSError as exc:
                    for index in indexes:
                        results[index] = write_error(f"cannot make {files[index][0]} durable", exc)
        return results

    def _stage(self, index: int, final: Path, data: bytes) -> _Staged:
        """A nameless file in `final`'s folder (or a temp file next to it) holding `data`,
        still open (for the fsync, and the link)."""
        if final.parent not in self._folders:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(final.parent)
        try:
            item = self._open(index, final)
        except FileNotFoundError:  # the folder was removed since we made it
            final.parent.mkdir(parents=True, exist_ok=True)
            item = self._open(index, final)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(item.fd, view) :]
        except BaseException:
            item.discard()
            raise
        return item

    def _open(self, index: int, final: Path) -> _Staged:
        if self.anonymous:
            try:
                fd = os.open(final.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
            except OSError as exc:
                if exc.errno not in NO_TMPFILE:
                    raise
                self.anonymous = False
            else:
                return _Staged(index, None, final, fd)
        temp = final.parent / f"{TEMP_PREFIX}{final.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        return _Staged(index, temp, final, fd)

    def _sync(self, staged: list[_Staged], executor: Executor | None) -> list[OSError | None]:
        """fsync (when enabled) and close every staged file; the error of each, if any."""
        if executor is not None and self.fsync and len(staged) > 1:
            return list(executor.map(self._finish, staged))
        return [self._finish(item) for item in staged]

    def _finish(self, item: _Staged) -> OSError | None:
        """fsync; a named temp file is closed too (a nameless one stays open to be linked)."""
        error: OSError | None = None
        try:
            if self.fsync:
                os.fsync(item.fd)
        except OSError as exc:
            error = exc
        if item.temp is not None:
            try:
                item.close()
            except OSError as exc:
                error = error or exc
        return error

    @staticmethod
    def _name(
        files: Sequence[tuple[PurePosixPath, bytes]],
        staged: list[_Staged],
        results: list[bool | WriteError],
        renamed: dict[Path, list[int]],
    ) -> None:
        """Give staged files their final names — link a nameless one (refused, False, when the
        name exists), rename a temp one; `renamed` gets each folder's files."""
        for item in staged:
            try:
                if item.temp is None:
                    try:
                        # With a dir fd CPython calls linkat(AT_SYMLINK_FOLLOW), which follows
                        # the /proc link to the file; its plain link() would not (EXDEV). The
                        # kernel ignores the dir fd for an absolute path.
                        os.link(f"/proc/self/fd/{item.fd}", item.final, src_dir_fd=item.fd)
                    finally:
                        item.close()
                else:
                    os.replace(item.temp, item.final)
            except FileExistsError:
                continue  # a duplicate delivery named it first: the file is whole
            except OSError as exc:
                results[item.index] = write_error(f"cannot write {files[item.index][0]}", exc)
                continue
            results[item.index] = True
            renamed.setdefault(item.final.parent, []).append(item.index)

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sweep(self, *, older_than: float) -> int:
        """Delete temp files left by a crashed writer, older than `older_than` seconds (other
        workers sharing the volume may be writing right now); returns how many were removed."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
                    continue
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime <= cutoff:
                        path.unlink()
                        removed += 1
        return removed
