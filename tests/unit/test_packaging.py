"""What `pip install imagebatch` gets can import: every module of the wheel imports only what the
project's dependencies install, and the test ground (`imagebatch.devservers`) only what
`imagebatch[devservers]` adds.

Read from pyproject.toml and the modules' source (no wheel is built): an import is accepted when a
distribution in the requirement closure provides it, as installed in this environment.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: Iterable[str], extras: Iterable[str] = ()) -> set[str]:
    """Every distribution these requirements install (following each one's own requirements)."""
    own = _normal(PROJECT["name"])
    wanted = [Requirement(r) for r in requirements]
    wanted += [Requirement(r) for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = _normal(requirement.name)
        if name == own:
            wanted += [
                Requirement(r)
                for extra in requirement.extras
                for r in PROJECT["optional-dependencies"][extra]
            ]
            continue
        if name in found:
            continue
        found.add(name)
        for line in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            active = needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in ["", *requirement.extras]
            )
            if active:
                wanted.append(needed)
    return found


def _package_files(package: str) -> list[Path]:
    """The .py files of one package of the wheel (not its subpackages: they are listed too)."""
    parent, _, _ = package.rpartition(".")
    folder = ROOT / PACKAGE_DIRS.get(
        package, PACKAGE_DIRS.get(parent, "") + "/" + package.split(".")[-1]
    )
    return sorted(folder.glob("*.py"))


def _third_party_imports(files: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level names imported by `files` that are neither the standard library nor ours."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"imagebatch", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(packages: Iterable[str], installed: set[str]) -> dict[str, set[str]]:
    providers = importlib.metadata.packages_distributions()
    files = [f for package in packages for f in _package_files(package)]
    return {
        name: where
        for name, where in _third_party_imports(files).items()
        if not {_normal(d) for d in providers.get(name, [])} & installed
    }


SERVICES = [p for p in PACKAGES if not p.startswith("imagebatch.devservers")]


def test_the_wheel_holds_the_services_the_kubectl_plugin_and_the_test_ground() -> None:
    assert set(PACKAGES) >= {
        "imagebatch.operator",
        "imagebatch.worker",
        "imagebatch.api",
        "imagebatch.kubectl",
        "imagebatch.devservers",
    }
    assert all(_package_files(p) for p in PACKAGES)


def test_a_plain_install_imports_every_service_module() -> None:
    assert _undeclared(SERVICES, _closure(PROJECT["dependencies"])) == {}


def test_the_devservers_extra_declares_what_the_test_ground_imports() -> None:
    installed = _closure(PROJECT["dependencies"], extras=["devservers"])

    assert _undeclared(["imagebatch.devservers"], installed) == {}


def test_the_test_ground_is_behind_its_extra_not_in_a_plain_install() -> None:
    """cryptography is what makes the extra necessary: a plain install lacks it."""
    plain = _closure(PROJECT["dependencies"])

    assert "cryptography" in _undeclared(["imagebatch.devservers"], plain)


def test_the_test_extra_includes_the_test_ground() -> None:
    assert "imagebatch[devservers]" in PROJECT["optional-dependencies"]["test"]
