"""Run import-linter over the mirrored package tree (see hack/package_tree.py).

The editable install maps `imagebatch.*` through a meta-path finder that would hand import-linter
the real folders, where `imagebatch/operator` does not exist. Dropping that finder makes
`imagebatch` resolve to the mirrored tree on PYTHONPATH instead.

Usage (from inside the mirrored tree, since import-linter puts the working folder first on
sys.path): cd .cache/pkgtree && python ../../hack/lint_imports.py --config ../../pyproject.toml
"""

from __future__ import annotations

import sys

sys.meta_path[:] = [
    f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", "")).lower()
]
for name in [m for m in sys.modules if m == "imagebatch" or m.startswith("imagebatch.")]:
    del sys.modules[name]

from importlinter.cli import lint_imports_command  # noqa: E402

if __name__ == "__main__":
    lint_imports_command()
