"""docker-compose.s3.yml's one-shot `s3-buckets` job (deploy/s3/create_buckets.py) against a real
S3 server: it creates the bucket the override's OUTPUT_URL and UPLOADS_URL name, a second `up`
finds it there and still succeeds, and credentials the server refuses fail the job with the
server's reason, so the api and the workers (which wait for its success) do not start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagebatch.devservers.s3 import S3Server

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy/s3/create_buckets.py"


@pytest.fixture(scope="module")
def job_env() -> dict[str, str]:
    """The job's environment as docker-compose.s3.yml gives it."""
    override: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.s3.yml").read_text())
    return {k: str(v) for k, v in override["services"]["s3-buckets"]["environment"].items()}


def run_job(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def on(server: S3Server, job_env: dict[str, str]) -> dict[str, str]:
    """The job's environment with this server's address and root account."""
    return {**job_env, **server.aws_env()}


def test_the_job_creates_the_bucket_the_override_names_and_may_run_again(
    s3_server: S3Server, job_env: dict[str, str]
) -> None:
    bucket = job_env["OUTPUT_URL"].removeprefix("s3://").partition("/")[0]

    first = run_job(on(s3_server, job_env))
    again = run_job(on(s3_server, job_env))

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert first.stdout.splitlines() in (
        [f"bucket {bucket}: created"],
        [f"bucket {bucket}: already there"],
    )
    assert again.stdout.splitlines() == [f"bucket {bucket}: already there"]
    assert s3_server.request("GET", f"/{bucket}", query={"list-type": "2"}).status == 200


def test_refused_credentials_fail_the_job_with_the_server_s_reason(
    s3_server: S3Server, job_env: dict[str, str]
) -> None:
    environment = {**on(s3_server, job_env), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}

    result = run_job(environment)

    assert result.returncode == 1
    assert "403 SignatureDoesNotMatch" in result.stderr
