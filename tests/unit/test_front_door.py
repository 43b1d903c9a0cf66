"""README.md is the front door: its commands exist, and CI runs the test command it names."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def test_every_make_command_in_the_readme_is_a_makefile_target() -> None:
    readme = (REPO / "README.md").read_text()
    mentioned = set(re.findall(r"`make ([a-z][a-z0-9-]*)", readme)) - {
        "demo"
    }  # demo: with the operator
    assert mentioned, "README.md names no make command"
    assert mentioned <= makefile_targets()


def test_ci_runs_exactly_the_test_command_the_readme_gives() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test " in readme or "make test`" in readme
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert commands[-1] == "make test"


def test_envtest_versions_are_pinned_in_one_place() -> None:
    pins = dict(
        line.split("=", 1)
        for line in (REPO / "hack/envtest/versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    kube_mod = (REPO / "hack/envtest/kube/go.mod").read_text()
    etcd_mod = (REPO / "hack/envtest/etcd/go.mod").read_text()
    assert f"k8s.io/kubernetes v{pins['KUBERNETES_VERSION']}" in kube_mod
    minor = pins["KUBERNETES_VERSION"].split(".", 1)[1]
    staging = re.findall(r"=> (k8s\.io/\S+) (v\S+)", kube_mod)
    assert staging, "no staging replacements"
    assert {version for _, version in staging} == {f"v0.{minor}"}
    assert f"go.etcd.io/etcd/server/v3 v{pins['ETCD_VERSION']}" in etcd_mod
