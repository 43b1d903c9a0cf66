"""The same ground in a kind cluster (pytest-kind), where Docker runs.

Machines without a Docker engine (CI here) skip this module with that reason; the envtest-based
tests beside it run everywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.support.k8s import CRDS


def docker_engine_reachable() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.kind,
    pytest.mark.skipif(
        not docker_engine_reachable(),
        reason="no Docker engine reachable: kind needs one (envtest-based tests cover this ground)",
    ),
]


def test_the_crd_installs_and_serves_imagebatches_in_kind(kind_cluster: Any) -> None:
    kind_cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    kind_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kind_cluster.kubectl("apply", "-n", "default", "-f", "examples/imagebatch.yaml")
    batch = json.loads(
        kind_cluster.kubectl("get", "ib", "holiday-photos", "-n", "default", "-o", "json")
    )
    assert batch["spec"]["retry"]["maxAttempts"] == 3
