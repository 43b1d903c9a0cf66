"""`kubectl imagebatch` as a person runs it: the real kubectl finds the installed
`kubectl-imagebatch` console script on the PATH and runs it against the suite's API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.k8s import KubeCluster

PLUGIN_DIR = Path(sys.executable).parent
"""Where the package's console scripts are installed, `kubectl-imagebatch` among them."""


def plugin_env(cluster: KubeCluster, kubeconfig: Path | None = None) -> dict[str, str]:
    """The environment kubectl runs in: the plugin on the PATH, the cluster's kubeconfig."""
    return {
        **os.environ,
        "PATH": f"{PLUGIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
    }


def kubectl_imagebatch(
    cluster: KubeCluster, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl imagebatch ARGS…`, its output captured (it fails the test only by its answer)."""
    return subprocess.run(
        [cluster.kubectl_binary, "imagebatch", *args],
        env=plugin_env(cluster, kubeconfig),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
