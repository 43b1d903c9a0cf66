"""Schemathesis over the running api's `/openapi.json`: generated valid and invalid requests to
every operation produce no 5xx and no response that breaks the documented schema, status codes,
content types or headers.

The api runs as a real process on real PostgreSQL, RabbitMQ and the suite's Kubernetes API
server, so /batches answers from a cluster rather than with 503. It runs with `AUTH_MODE=token`:
schemathesis sends the test namespace's token, and its `ignored_auth` check verifies that every
operation documented as secured refuses a request without it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.service_process import api_process
from tests.support.k8s import KubeCluster

pytestmark = [pytest.mark.slow, pytest.mark.k8s]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 25
TOKEN = "schemathesis-token-0123456789"


async def test_generated_requests_get_no_5xx_and_documented_responses(
    messaging: CommonSettings, tmp_path: Path, kube_cluster: KubeCluster, namespace: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} {namespace}\n")
    async with api_process(
        messaging,
        tmp_path,
        KUBECONFIG=kube_cluster.kubeconfig,
        KUBE_NAMESPACE=namespace,
        MAX_UPLOAD_BYTES=256 * 1024,
        AUTH_MODE="token",
        AUTH_TOKENS_FILE=tokens,
    ) as (base, api):
        result = await asyncio.to_thread(
            subprocess.run,
            [
                str(SCHEMATHESIS),
                f"--config-file={CONFIG}",
                "run",
                f"{base}/openapi.json",
                "--checks=all",
                f"--header=Authorization: Bearer {TOKEN}",
                f"--max-examples={MAX_EXAMPLES}",
                # One worker: with threads, hypothesis' lambda naming races in CPython 3.11's
                # `ast` module ("AST constructor recursion depth mismatch"), a tool error.
                "--workers=1",
                "--seed=4",
                "--generation-database=none",
                "--request-timeout=15",
                "--no-color",
                "--report=junit",
                f"--report-dir={tmp_path / 'schemathesis'}",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            cwd=tmp_path,
        )
        api_log = api.output()

    report = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    print(report)  # the figures (operations, test cases, checks) show with -s
    assert result.returncode == 0, f"schemathesis found problems:\n{report}"
    assert re.search(r"Tested: 16\b", report), report  # every operation, the batch routes included
    assert " 500 " not in api_log, api_log
    assert "Traceback" not in api_log, api_log
