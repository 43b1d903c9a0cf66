"""GET /batches/{name}/items and /manifest with AUTH_MODE=kubernetes against the suite's real API
server: a caller pages through a big batch's failed items (rows written straight into
PostgreSQL, as workers would have left them) in JSON and CSV, and only where RBAC lets it read
the ImageBatch."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import asyncpg
import httpx
import pytest

from imagebatch.core.settings import CommonSettings
from tests.k8s import test_api_kubernetes_auth as kubernetes_auth
from tests.support.batch_rows import insert_items
from tests.support.k8s import KubeCluster

pytestmark = pytest.mark.k8s

# The api in AUTH_MODE=kubernetes and a caller allowed in the test's namespace alone.
api, api_account = kubernetes_auth.api, kubernetes_auth.api_account
caller_token, other_namespace = kubernetes_auth.caller_token, kubernetes_auth.other_namespace
batch, bearer = kubernetes_auth.batch, kubernetes_auth.bearer


async def create_batch_with_items(
    api: httpx.AsyncClient, token: str, namespace: str, count: int, database_url: str
) -> None:
    created = await api.post("/batches", json=batch("big", namespace), headers=bearer(token))
    assert created.status_code == 201, created.text
    conn = await asyncpg.connect(database_url)
    try:
        await insert_items(conn, f"{namespace}/big", count, failed_every=100)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_caller_pages_through_1000_failed_items_of_100000_without_repeats_or_gaps(
    api: httpx.AsyncClient, namespace: str, caller_token: str, messaging: CommonSettings
) -> None:
    await create_batch_with_items(api, caller_token, namespace, 100_000, messaging.database_url)

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"status": "failed", "limit": "64"} | ({"after": after} if after else {})
        response = await api.get("/batches/big/items", params=params, headers=bearer(caller_token))
        assert response.status_code == 200, response.text
        page = response.json()
        assert all(
            i["status"] == "failed" and i["error"].startswith("http_404") for i in page["items"]
        )
        seen += [i["id"] for i in page["items"]]
        pages += 1
        after = page["after"]
        if after is None:
            break
        assert 'rel="next"' in response.headers["link"]

    expected = [f"0123456789ab-{n:09d}" for n in range(100, 100_001, 100)]
    assert seen == expected  # every failed item once, in id order
    assert pages == 16  # 15 full pages of 64 and the last with 40


async def test_a_page_comes_as_csv_when_asked_and_parses(
    api: httpx.AsyncClient, namespace: str, caller_token: str, messaging: CommonSettings
) -> None:
    await create_batch_with_items(api, caller_token, namespace, 300, messaging.database_url)

    response = await api.get(
        "/batches/big/items",
        params={"limit": "200"},
        headers=bearer(caller_token) | {"Accept": "text/csv"},
    )
    last = await api.get(
        "/batches/big/items",
        params={"limit": "200", "after": "0123456789ab-000000200"},
        headers=bearer(caller_token) | {"Accept": "text/csv"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 200
    assert list(rows[0]) == ["id", "url", "status", "attempts", "error", "outputs"]
    completed, failed = rows[0], rows[99]
    assert completed["status"] == "completed"
    assert completed["error"] == ""
    [output] = json.loads(completed["outputs"])
    assert output["path"] == "0123456789ab-000000001_256x256.jpg"
    assert (output["width"], output["height"], output["format"]) == (256, 192, "jpeg")
    assert (failed["status"], failed["attempts"]) == ("failed", "3")
    assert "after=0123456789ab-000000200" in response.headers["link"]
    assert len(list(csv.DictReader(io.StringIO(last.text)))) == 100
    assert "link" not in last.headers


async def test_the_manifest_route_streams_one_parsable_line_per_item(
    api: httpx.AsyncClient, namespace: str, caller_token: str, messaging: CommonSettings
) -> None:
    await create_batch_with_items(api, caller_token, namespace, 300, messaging.database_url)

    response = await api.get("/batches/big/manifest", headers=bearer(caller_token))

    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 300
    assert {k for line in lines for k in line} == {
        "id", "url", "status", "attempts", "error", "outputs",
    }  # fmt: skip
    assert sum(line["status"] == "failed" for line in lines) == 3


async def test_items_need_a_caller_who_may_read_the_batch_and_a_batch_that_exists(
    api: httpx.AsyncClient,
    kube_cluster: KubeCluster,
    namespace: str,
    other_namespace: str,
    caller_token: str,
    messaging: CommonSettings,
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "theirs.json"
    theirs.write_text(
        json.dumps({"apiVersion": "imagejobs.io/v1alpha1", "kind": "ImageBatch"} | batch("theirs"))
    )
    kube_cluster.kubectl("create", "-n", other_namespace, "-f", str(theirs))
    conn = await asyncpg.connect(messaging.database_url)
    try:
        await insert_items(conn, f"{other_namespace}/theirs", 10)
        await insert_items(conn, f"{namespace}/gone", 10, id_prefix="00000000dead")
    finally:
        await conn.close()
    mine = bearer(caller_token)

    for path in ("/batches/theirs/items", "/batches/theirs/manifest"):
        nobody = await api.get(path, params={"namespace": other_namespace})
        forbidden = await api.get(path, params={"namespace": other_namespace}, headers=mine)
        missing = await api.get(path.replace("theirs", "gone"), headers=mine)

        assert nobody.status_code == 401
        assert forbidden.status_code == 403
        assert 'cannot get resource "imagebatches"' in forbidden.json()["detail"]
        assert missing.status_code == 404  # rows of a deleted batch are not shown
        assert missing.json()["detail"] == f"no ImageBatch 'gone' in namespace {namespace!r}"
