"""Nobody gets in without a caller: with `AUTH_MODE=token` every route of the app — walked from
the app itself, so a route added later is covered too — answers 401 with `WWW-Authenticate:
Bearer` to a request without a token or with a wrong one, except the probes and the metrics; a
token's holder may use batches of its own namespace only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from imagebatch.api.app import create_app
from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from tests.support.api import (
    api_settings,
    complete_like_a_worker,
    image_bytes,
    query,
    running_api,
)

TOKEN_A = "team-a-token-0123456789abcdef"
TOKEN_B = "team-b-token-fedcba9876543210"
OPEN = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture
def token_settings(messaging: CommonSettings, tmp_path: Path) -> ApiSettings:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who may call\n{TOKEN_A} team-a\n\n{TOKEN_B} team-b\n")
    return api_settings(messaging, tmp_path, auth_mode="token", auth_tokens_file=tokens)


@pytest.fixture
async def api(token_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(token_settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def flatten(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Every route with its path prefix, through routers FastAPI includes lazily."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flatten(inner.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        else:
            yield prefix, route


def every_route(settings: ApiSettings) -> Iterator[tuple[str, str]]:
    """(method, path) of each route the app has, path parameters filled in."""
    for prefix, route in flatten(create_app(settings).routes):
        if isinstance(route, Mount):
            yield "GET", f"{prefix}{route.path}/app.js"
        elif isinstance(route, Route):
            path = prefix + re.sub(r"\{[^}]+\}", "x1", route.path)
            for method in sorted(route.methods or {"GET"}):
                yield method, path


async def test_without_a_token_every_route_but_probes_and_metrics_is_401(
    api: httpx.AsyncClient, token_settings: ApiSettings
) -> None:
    routes = list(every_route(token_settings))
    assert ("POST", "/batches") in routes
    assert ("GET", "/openapi.json") in routes

    for method, path in routes:
        response = await api.request(method, path)
        if path in OPEN or path.startswith("/static/"):
            assert response.status_code != 401, (method, path)
        else:
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == 'Bearer realm="imagebatch"'


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token-0123456789", f"Bearer {TOKEN_A}x", f"Basic {TOKEN_A}", "Bearer"],
)
async def test_a_wrong_token_is_401_on_every_route(
    api: httpx.AsyncClient, token_settings: ApiSettings, authorization: str
) -> None:
    for method, path in every_route(token_settings):
        if path in OPEN or path.startswith("/static/"):
            continue
        response = await api.request(method, path, headers={"Authorization": authorization})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith('Bearer realm="imagebatch", error=')


async def test_unknown_paths_are_401_too_so_they_tell_nothing(api: httpx.AsyncClient) -> None:
    assert (await api.get("/admin")).status_code == 401
    assert (await api.get("/admin", headers=bearer(TOKEN_A))).status_code == 404


async def test_a_valid_token_gets_through(api: httpx.AsyncClient) -> None:
    task = await api.post(
        "/tasks", json={"url": "https://example.test/a.jpg"}, headers=bearer(TOKEN_A)
    )
    upload = await api.post(
        "/uploads", files={"file": ("a.jpg", image_bytes())}, headers=bearer(TOKEN_B)
    )

    assert task.status_code == 202
    assert upload.status_code == 202
    read = await api.get(task.headers["location"], headers=bearer(TOKEN_A))
    assert read.status_code == 200


async def test_the_page_without_a_token_is_401_with_the_page_that_asks_for_one(
    api: httpx.AsyncClient,
) -> None:
    page = await api.get("/")
    script = await api.get("/static/app.js")

    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="token"' in page.text
    assert script.status_code == 200
    assert "Authorization" in script.text
    assert (await api.get("/", headers=bearer(TOKEN_A))).status_code == 200


async def test_a_token_may_use_batches_of_its_own_namespace_only(api: httpx.AsyncClient) -> None:
    manifest = {
        "metadata": {"name": "holiday", "namespace": "team-b"},
        "spec": {"source": {"urls": ["https://a.test/x.jpg"]}},
    }
    refused = [
        await api.get("/batches?namespace=team-b", headers=bearer(TOKEN_A)),
        await api.get("/batches/holiday?namespace=team-b", headers=bearer(TOKEN_A)),
        await api.post("/batches", json=manifest, headers=bearer(TOKEN_A)),
    ]
    # Its own namespace passes the api's check, and reaches the cluster (none here: 503).
    own = await api.get("/batches", headers=bearer(TOKEN_B))

    for response in refused:
        assert response.status_code == 403
        assert response.json()["detail"] == (
            "this token may only use namespace 'team-a', not 'team-b'"
        )
    assert own.status_code == 503


async def test_a_rotated_tokens_file_takes_effect_without_a_restart(
    api: httpx.AsyncClient, token_settings: ApiSettings
) -> None:
    assert token_settings.auth_tokens_file is not None
    new = "rotated-token-00000000000000"
    token_settings.auth_tokens_file.write_text(f"{new} team-a\n")

    assert (await api.get("/tasks/x1", headers=bearer(TOKEN_A))).status_code == 401
    assert (await api.get("/tasks/x1", headers=bearer(new))).status_code == 404


async def test_a_caller_sees_only_its_own_jobs(
    api: httpx.AsyncClient, token_settings: ApiSettings
) -> None:
    a_task = await api.post("/tasks", json={"url": "https://a.test/a.jpg"}, headers=bearer(TOKEN_A))
    a_upload = await api.post(
        "/uploads", files={"file": ("a.jpg", image_bytes())}, headers=bearer(TOKEN_A)
    )
    b_task = await api.post("/tasks", json={"url": "https://a.test/b.jpg"}, headers=bearer(TOKEN_B))
    mine, theirs = a_task.json()["id"], b_task.json()["id"]
    await complete_like_a_worker(token_settings.database_url, token_settings.output_dir, mine)
    await query(
        token_settings.database_url,
        "INSERT INTO jobs (id, kind, url, batch, status) VALUES ('item-1', 'batch',"
        " 'https://a.test/i.jpg', 'team-a/b', 'pending')",
    )

    listed = (await api.get("/images", headers=bearer(TOKEN_A))).json()
    assert {job["id"] for job in listed["items"]} == {mine, a_upload.json()["id"]}
    assert listed["counts"]["completed"] == 1
    assert listed["counts"]["pending"] == 1
    assert [
        j["id"] for j in (await api.get("/images", headers=bearer(TOKEN_B))).json()["items"]
    ] == [theirs]
    for path in (f"/images/{mine}", f"/images/{mine}/thumbnail", f"/tasks/{mine}"):
        assert (await api.get(path, headers=bearer(TOKEN_A))).status_code == 200, path
        assert (await api.get(path, headers=bearer(TOKEN_B))).status_code == 404, path
    assert (await api.get("/images/item-1", headers=bearer(TOKEN_A))).status_code == 404
