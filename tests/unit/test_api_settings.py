"""Where /batches puts a batch that names no namespace."""

from __future__ import annotations

from pathlib import Path

from imagebatch.api.settings import pod_namespace


def test_in_a_pod_batches_default_to_the_pods_own_namespace(tmp_path: Path) -> None:
    mounted = tmp_path / "namespace"
    mounted.write_text("imagebatch\n")
    assert pod_namespace(mounted) == "imagebatch"


def test_outside_a_pod_batches_default_to_the_default_namespace(tmp_path: Path) -> None:
    assert pod_namespace(tmp_path / "missing") == "default"
