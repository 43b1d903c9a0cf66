"""The output write path: files written without a name until whole (O_TMPFILE + linkat) against
a temp name renamed over the final one, in one run.

Both variants write the same files through `Storage.write_group` — in groups of `--group` with
the group's fsyncs side by side on a thread pool, as the worker's group writer does under load,
and one file at a time, as an idle worker writes — taking turns round by round so that both see
the same machine and disk. The figure is files/s (whole, fsynced, named, folder fsynced); the
ratio nameless ÷ temp name is the cost (or gain) of leaving no debris after a crash.

    .venv/bin/python bench/storage_write.py [--files 5000] [--bytes 15000] [--rounds 3]
    → .cache/bench/storage_write.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from imagebatch.worker.storage import Storage

VARIANTS = {"nameless": True, "temp_name": False}


def write_all(root: Path, *, anonymous: bool, files: int, data: bytes, group: int) -> float:
    """Files/s writing `files` copies of `data` under `root` in groups of `group`."""
    storage = Storage(root, anonymous=anonymous)
    names = [PurePosixPath(f"b/{n:06d}_256x256.jpg") for n in range(files)]
    with ThreadPoolExecutor(max_workers=max(group, 1)) as fsyncs:
        started = time.perf_counter()
        for first in range(0, files, group):
            results = storage.write_group(
                [(name, data) for name in names[first : first + group]], fsync_executor=fsyncs
            )
            assert all(result is True for result in results), results
        elapsed = time.perf_counter() - started
    if anonymous:
        assert storage.anonymous, f"{root} has no O_TMPFILE: nothing to compare"
    return files / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--bytes", type=int, default=15000)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(".cache/bench/storage"))
    parser.add_argument("--out", type=Path, default=Path(".cache/bench/storage_write.json"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    data = os.urandom(args.bytes)
    rates: dict[str, dict[str, list[float]]] = {
        shape: {variant: [] for variant in VARIANTS} for shape in ("grouped", "one_by_one")
    }
    for _round in range(args.rounds):
        for shape, group in (("grouped", args.group), ("one_by_one", 1)):
            count = args.files if shape == "grouped" else max(args.files // 5, 1)
            for variant, anonymous in VARIANTS.items():
                root = Path(tempfile.mkdtemp(dir=args.dir))
                try:
                    rate = write_all(root, anonymous=anonymous, files=count, data=data, group=group)
                finally:
                    shutil.rmtree(root)
                rates[shape][variant].append(rate)
    report: dict[str, Any] = {
        "load_at_start": os.getloadavg(),
        "files": args.files,
        "bytes_per_file": args.bytes,
        "group": args.group,
        "rounds": args.rounds,
        "filesystem_dir": str(args.dir.resolve()),
    }
    for shape, by_variant in rates.items():
        medians = {v: statistics.median(r) for v, r in by_variant.items()}
        report[shape] = {
            "files_per_s_median": {v: round(m, 1) for v, m in medians.items()},
            "files_per_s_rounds": {v: [round(x, 1) for x in r] for v, r in by_variant.items()},
            "ratio_nameless_to_temp_name": round(medians["nameless"] / medians["temp_name"], 3),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
