"""`imagebatch-api` as the process a pod runs: configured by environment variables only, it
serves until SIGTERM and exits 0; wrong settings or a database that never answers stop it at
start-up with a message naming the problem."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.process import free_port
from imagebatch.devservers.service_process import service_env, start, wait_until

pytestmark = pytest.mark.slow

CONSOLE_SCRIPT = Path(sys.executable).with_name("imagebatch-api")


async def test_the_console_script_serves_until_sigterm_and_exits_0(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(messaging, HOST="127.0.0.1", PORT=port, OUTPUT_DIR=tmp_path, AUTH_MODE="none")
    api = start("api", "", env, tmp_path, argv=[str(CONSOLE_SCRIPT)])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            async def healthy() -> bool:
                try:
                    body: object = (await client.get("/healthz")).json()
                    return body == {"ok": True}
                except httpx.TransportError:
                    return False

            await wait_until(healthy, within=30, what="/healthz", service=api)
            ready = (await client.get("/readyz")).json()
    finally:
        code = api.stop()

    assert ready == {"ok": True, "checks": {"postgresql": "ok", "rabbitmq": "ok"}}
    assert code == 0, api.output()
    assert "WARNING imagebatch.api.authenticators: AUTH_MODE=none: the api accepts every" in (
        api.output()
    )


async def test_without_auth_mode_or_a_cluster_start_up_asks_for_tokens_instead_of_opening(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    env = service_env(messaging, HOST="127.0.0.1", PORT=free_port(), OUTPUT_DIR=tmp_path)
    api = start("api", "imagebatch.api", env, tmp_path)

    code = api.process.wait(30)

    assert code != 0
    output = api.output()
    assert (
        "imagebatch-api: AUTH_MODE=token (AUTH_MODE is unset and no cluster is configured) "
        "needs AUTH_TOKENS_FILE" in output
    )
    assert "Traceback" not in output


async def test_a_setting_that_does_not_parse_stops_start_up_naming_it(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    env = service_env(messaging, PORT="eighty", MAX_UPLOAD_BYTES="0")
    api = start("api", "imagebatch.api", env, tmp_path)

    code = api.process.wait(30)

    assert code != 0
    output = api.output()
    assert "imagebatch-api: invalid settings: PORT: Input should be a valid integer" in output
    assert "MAX_UPLOAD_BYTES: Input should be greater than or equal to 1" in output
    assert "Traceback" not in output


async def test_a_database_that_never_answers_stops_start_up_with_the_reason(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    env = service_env(
        messaging,
        HOST="127.0.0.1",
        PORT=free_port(),
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/none",
        STARTUP_TIMEOUT_SECONDS="1",
        AUTH_MODE="none",
    )
    api = start("api", "imagebatch.api", env, tmp_path)

    code = api.process.wait(30)

    assert code != 0
    assert "PostgreSQL did not answer within 1s" in api.output()
