"""Output names and atomic writes: names from ids only, no partial files, stale temps swept."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path, PurePosixPath

import pytest

from imagebatch.core.errors import DependencyDown
from imagebatch.core.messages import decode_job
from imagebatch.worker.storage import TEMP_PREFIX, TEMP_SUFFIX, Storage, plan_outputs


def test_the_seed_short_form_writes_id_dot_jpg_at_the_root() -> None:
    job = decode_job(b'{"url": "https://example.test/a.jpg", "ops": ["thumbnail"], "id": 42}')
    [planned] = plan_outputs(job)
    assert planned.relative == PurePosixPath("42.jpg")
    assert (planned.spec.width, planned.spec.height, planned.spec.format) == (256, 256, "jpeg")


def test_full_ops_write_prefix_id_size_and_extension() -> None:
    job = decode_job(
        b'{"url": "https://example.test/../../etc/passwd.jpg", "id": "abc", "output": "holiday",'
        b' "ops": [{"thumbnail": {"width": 128, "height": 96, "format": "webp"}},'
        b' {"thumbnail": {"width": 640, "height": 480}}]}'
    )
    assert [str(p.relative) for p in plan_outputs(job)] == [
        "holiday/abc_128x96.webp",
        "holiday/abc_640x480.jpg",
    ]


def test_a_batch_job_without_output_uses_the_batch_folder() -> None:
    job = decode_job(b'{"url": "https://example.test/a.jpg", "id": "i1", "batch": "ns/b"}')
    assert [str(p.relative) for p in plan_outputs(job)] == ["ns/b/i1_256x256.jpg"]


def test_two_ops_naming_the_same_file_make_it_once() -> None:
    job = decode_job(
        b'{"url": "https://example.test/a.jpg", "id": "d", "ops": [{"thumbnail": {}},'
        b' {"thumbnail": {"fit": "cover"}}]}'
    )
    assert len(plan_outputs(job)) == 1


def test_a_write_is_complete_and_leaves_no_temp_file(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert storage.write(PurePosixPath("a/b/c.jpg"), b"data") is True
    assert (tmp_path / "a/b/c.jpg").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "a/b").iterdir()] == ["c.jpg"]


def test_an_existing_output_is_not_written_again(tmp_path: Path) -> None:
    storage = Storage(tmp_path, fsync=False)
    storage.write(PurePosixPath("x.jpg"), b"first")
    assert storage.write(PurePosixPath("x.jpg"), b"second") is False
    assert (tmp_path / "x.jpg").read_bytes() == b"first"


@pytest.mark.parametrize(
    ("anonymous", "naming"), [(True, "link"), (False, "replace")], ids=["nameless", "temp name"]
)
def test_a_failed_write_removes_its_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool, naming: str
) -> None:
    storage = Storage(tmp_path, anonymous=anonymous)

    def broken_naming(src: object, dst: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, naming, broken_naming)
    from imagebatch.core.errors import TransientError

    with pytest.raises(TransientError, match="disk full"):
        storage.write(PurePosixPath("y.jpg"), b"data")
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    old = tmp_path / "sub" / f"{TEMP_PREFIX}a.jpg.123{TEMP_SUFFIX}"
    fresh = tmp_path / f"{TEMP_PREFIX}b.jpg.456{TEMP_SUFFIX}"
    keep = tmp_path / "sub" / "a.jpg"
    for path in (old, fresh, keep):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert Storage(tmp_path).sweep(older_than=600) == 1
    assert not old.exists()
    assert fresh.exists()
    assert keep.exists()


def test_a_group_write_writes_every_file_and_skips_existing_ones(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.jpg").write_bytes(b"old")
    results = storage.write_group(
        [
            (PurePosixPath("a/1.jpg"), b"one"),
            (PurePosixPath("b/old.jpg"), b"new"),
            (PurePosixPath("b/2.jpg"), b"two"),
        ]
    )
    assert results == [True, False, True]
    assert (tmp_path / "a/1.jpg").read_bytes() == b"one"
    assert (tmp_path / "b/old.jpg").read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["2.jpg", "old.jpg"]


def test_one_failed_file_in_a_group_does_not_stop_the_others(tmp_path: Path) -> None:
    from imagebatch.core.errors import TransientError

    (tmp_path / "blocked").write_bytes(b"a file where a folder should be")
    results = Storage(tmp_path).write_group(
        [(PurePosixPath("blocked/x.jpg"), b"x"), (PurePosixPath("ok/y.jpg"), b"y")]
    )
    assert isinstance(results[0], TransientError)
    assert "blocked/x.jpg" in str(results[0])
    assert results[1] is True
    assert (tmp_path / "ok/y.jpg").read_bytes() == b"y"
    assert [p.name for p in (tmp_path / "ok").iterdir()] == ["y.jpg"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_an_outage_of_ours_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A full disk is not the image's fault: DependencyDown("disk") spends no attempt, where
    any other write error is the job's TransientError."""
    real_write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[:10]))  # part of it got out before the disk filled
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DependencyDown) as caught:
        Storage(tmp_path).write(PurePosixPath("full/z.jpg"), b"0123456789" * 100)
    assert caught.value.dependency == "disk"
    assert "full/z.jpg" in caught.value.reason
    assert files_under(tmp_path) == [], "no temp file, no partial output"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_files_are_written_without_a_name_until_whole_where_the_filesystem_can(
    tmp_path: Path,
) -> None:
    """Linux's O_TMPFILE (tmpfs, ext4, xfs, btrfs): nothing to sweep after a crash."""
    storage = Storage(tmp_path)
    assert storage.write(PurePosixPath("n/1.jpg"), b"one") is True
    assert storage.anonymous, "this machine's temp folder supports O_TMPFILE"
    assert (tmp_path / "n/1.jpg").read_bytes() == b"one"
    assert oct((tmp_path / "n/1.jpg").stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL])
def test_without_o_tmpfile_files_get_a_temp_name_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    real_open = os.open

    def no_tmpfile(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    renamed: list[object] = []
    real_replace = os.replace

    def noted_replace(src: str, dst: str) -> None:
        renamed.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", noted_replace)
    storage = Storage(tmp_path)
    assert storage.write_group([(PurePosixPath("f/1.jpg"), b"1"), (PurePosixPath("f/2.jpg"), b"2")])
    assert not storage.anonymous, "tried once, then not again"
    assert [str(p).rsplit("/", 1)[1].startswith(TEMP_PREFIX) for p in renamed] == [True, True]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["1.jpg", "2.jpg"]


def test_a_nameless_file_never_replaces_one_that_appeared_meanwhile(tmp_path: Path) -> None:
    """A duplicate delivery that named the file first wins; the other writes nothing."""
    storage = Storage(tmp_path)
    real_link = os.link

    def someone_was_first(src: str, dst: Path, *, src_dir_fd: int) -> None:
        Path(dst).write_bytes(b"the other delivery's")
        real_link(src, dst, src_dir_fd=src_dir_fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", someone_was_first)
        assert storage.write(PurePosixPath("d.jpg"), b"mine") is False
    assert (tmp_path / "d.jpg").read_bytes() == b"the other delivery's"
    assert [p.name for p in tmp_path.iterdir()] == ["d.jpg"]
