"""Mirror the installed package layout into a plain folder tree for static tools.

The card's folders `operator/`, `worker/` and `api/` install as `imagebatch.operator`, … through
setuptools' package-dir mapping. Python follows that mapping at run time, but mypy and
import-linter only walk folders. This writes `<dest>/imagebatch/...` with real folders and
symlinked files (so the tools report edits immediately and nothing is copied).

Usage: python hack/package_tree.py DEST
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPING = {
    "imagebatch": REPO / "imagebatch",
    "imagebatch/operator": REPO / "operator",
    "imagebatch/worker": REPO / "worker",
    "imagebatch/api": REPO / "api",
}
SKIP = {"__pycache__"}


def mirror(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.name in SKIP or entry.name.startswith("."):
            continue
        if entry.is_dir():
            mirror(entry, target / entry.name)
        elif entry.suffix in {".py", ".pyi", ".typed"}:
            os.symlink(entry, target / entry.name)


def main() -> int:
    dest = Path(sys.argv[1]).resolve()
    shutil.rmtree(dest, ignore_errors=True)
    for package, source in MAPPING.items():
        if source.is_dir():
            mirror(source, dest / package)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
