"""A writer killed with SIGKILL at any moment leaves no debris in the output folder: only whole
files under their final names (nameless O_TMPFILE files die with the process)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imagebatch.worker.storage import TEMP_PREFIX

pytestmark = pytest.mark.slow

DATA_BYTES = 1 << 20

WRITER = """
import sys
from pathlib import Path, PurePosixPath
from imagebatch.worker.storage import Storage

storage = Storage(Path(sys.argv[1]), anonymous=sys.argv[2] == "nameless")
data = bytes(range(256)) * (DATA_BYTES // 256)
group = 0
while True:
    storage.write_group([(PurePosixPath(f"g/{group}-{k}.jpg"), data) for k in range(4)])
    group += 1
    if group == 2:
        print("writing", flush=True)
""".replace("DATA_BYTES", str(DATA_BYTES))


def kill_a_writer_mid_write(folder: Path, mode: str) -> None:
    """Start a writer looping over groups of 1 MiB files, SIGKILL it once it is under way."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), mode], stdout=subprocess.PIPE
    )
    with writer:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n"
        writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL


def test_a_killed_writer_leaves_only_whole_files(tmp_path: Path) -> None:
    for _ in range(10):
        kill_a_writer_mid_write(tmp_path, "nameless")
    files = sorted((tmp_path / "g").iterdir())
    assert not [f.name for f in files if f.name.startswith(TEMP_PREFIX)], "no temp file"
    assert {f.stat().st_size for f in files} == {DATA_BYTES}, "every file whole"


def test_with_temp_names_a_killed_writer_may_leave_temp_files(tmp_path: Path) -> None:
    """Where the filesystem has no O_TMPFILE: what the start-up sweep is for."""
    for _ in range(10):
        kill_a_writer_mid_write(tmp_path, "named")
    files = sorted((tmp_path / "g").iterdir())
    finals = [f for f in files if not f.name.startswith(TEMP_PREFIX)]
    debris = len(files) - len(finals)
    print(f"\n10 kills with temp names left {debris} temp file(s)")
    assert {f.stat().st_size for f in finals} == {DATA_BYTES}, "every named file whole"
