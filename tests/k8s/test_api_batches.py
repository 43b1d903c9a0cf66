"""/batches against the real Kubernetes API server of the suite (envtest processes, CRD
installed): the api creates, lists and reads ImageBatch resources that kubectl sees too, and
answers 503 with the reason when it has no cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from tests.support.api import api_settings, running_api
from tests.support.k8s import REPO, KubeCluster

pytestmark = pytest.mark.k8s

EXAMPLE = REPO / "examples" / "imagebatch.yaml"


@pytest.fixture
def cluster_settings(
    messaging: CommonSettings, tmp_path: Path, kube_cluster: KubeCluster, namespace: str
) -> ApiSettings:
    return api_settings(
        messaging, tmp_path, kubeconfig=kube_cluster.kubeconfig, kube_namespace=namespace
    )


@pytest.fixture
async def api(cluster_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(cluster_settings) as client:
        yield client


def example() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return manifest


async def test_a_batch_created_through_the_api_is_the_resource_kubectl_sees(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str
) -> None:
    response = await api.post("/batches", json=example())

    assert response.status_code == 201
    created = response.json()
    assert (created["name"], created["namespace"]) == ("holiday-photos", namespace)
    assert response.headers["location"] == f"/batches/holiday-photos?namespace={namespace}"
    seen = json.loads(
        kube_cluster.kubectl("get", "ib", "holiday-photos", "-n", namespace, "-o", "json").stdout
    )
    assert seen["spec"]["source"] == example()["spec"]["source"]
    assert seen["spec"]["operations"][1]["thumbnail"]["format"] == "webp"
    assert seen["spec"]["maxFailed"] == "10%"
    assert created["spec"] == seen["spec"]


async def test_omitted_fields_get_the_crd_s_defaults(
    api: httpx.AsyncClient, namespace: str
) -> None:
    response = await api.post(
        "/batches",
        json={"metadata": {"name": "minimal"}, "spec": {"source": {"postgres": {}}}},
    )

    assert response.status_code == 201
    spec = response.json()["spec"]
    assert spec["source"]["postgres"] == {"table": "images", "limit": 200, "onlyUnprocessed": True}
    assert spec["operations"] == [
        {
            "thumbnail": {
                "width": 256,
                "height": 256,
                "fit": "contain",
                "format": "jpeg",
                "quality": 85,
            }
        }
    ]
    assert spec["maxFailed"] == "10%"


async def test_batches_are_listed_with_their_progress(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str
) -> None:
    await api.post("/batches", json=example())
    status = {
        "phase": "Running",
        "total": 6,
        "published": 6,
        "succeeded": 2,
        "failed": 1,
        "queued": 3,
        "workers": 2,
        "progress": "3/6",
        "conditions": [{"type": "Published", "status": "True", "reason": "AllPublished"}],
    }
    kube_cluster.kubectl(
        "patch", "ib", "holiday-photos", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip

    listed = (await api.get("/batches")).json()
    one = (await api.get("/batches/holiday-photos")).json()

    assert listed["namespace"] == namespace
    assert [b["name"] for b in listed["items"]] == ["holiday-photos"]
    assert listed["items"][0] == one
    assert (one["phase"], one["progress"], one["percent"]) == ("Running", "3/6", 50.0)
    assert (one["total"], one["succeeded"], one["failed"], one["queued"], one["workers"]) == (
        6,
        2,
        1,
        3,
        2,
    )
    assert one["conditions"][0]["type"] == "Published"


async def test_an_empty_namespace_lists_no_batches(api: httpx.AsyncClient) -> None:
    response = await api.get("/batches")

    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_a_name_that_is_taken_is_409(api: httpx.AsyncClient) -> None:
    await api.post("/batches", json=example())

    again = await api.post("/batches", json=example())

    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


async def test_an_unknown_batch_is_404(api: httpx.AsyncClient, namespace: str) -> None:
    response = await api.get("/batches/nope")

    assert response.status_code == 404
    assert response.json()["detail"] == f"no ImageBatch 'nope' in namespace '{namespace}'"


async def test_a_namespace_that_does_not_exist_is_404_on_create(api: httpx.AsyncClient) -> None:
    manifest = example()
    manifest["metadata"]["namespace"] = "no-such-namespace"

    response = await api.post("/batches", json=manifest)

    assert response.status_code == 404
    assert "no-such-namespace" in response.json()["detail"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": {"urls": ["https://a.test/x.jpg"], "postgres": {}}}, "exactly one"),
        ({"source": {}}, "exactly one"),
        ({"source": {"urls": ["ftp://a.test/x.jpg"]}}, "urls"),
        ({"source": {"postgres": {}}, "maxFailed": "110%"}, "maxFailed"),
        (
            {"source": {"postgres": {}}, "workers": {"minReplicas": 5, "maxReplicas": 2}},
            "minReplicas",
        ),
        ({"source": {"postgres": {}}, "operations": [{"thumbnail": {"fit": "stretch"}}]}, "fit"),
        ({"source": {"postgres": {}}, "colour": "blue"}, "colour"),
    ],
)
async def test_a_bad_spec_is_422_naming_the_field_and_nothing_is_created(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str, spec: Any, field: str
) -> None:
    response = await api.post("/batches", json={"metadata": {"name": "bad"}, "spec": spec})

    assert response.status_code == 422
    assert field in response.json()["detail"]
    listed = kube_cluster.kubectl("get", "ib", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


async def test_a_bad_name_is_422(api: httpx.AsyncClient) -> None:
    for name in ("Holiday", "a_b", "x" * 64, "-a"):
        manifest = example()
        manifest["metadata"]["name"] = name

        response = await api.post("/batches", json=manifest)

        assert response.status_code == 422, name


async def test_without_a_cluster_batches_are_503_with_the_reason(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = api_settings(messaging, tmp_path, kubeconfig=None, kubernetes_service_host=None)
    async with running_api(settings) as api:
        responses = [
            await api.get("/batches"),
            await api.get("/batches/holiday-photos"),
            await api.post("/batches", json=example()),
        ]

    for response in responses:
        assert response.status_code == 503
        assert response.json()["detail"].startswith("no Kubernetes cluster is configured")


async def test_an_unreachable_cluster_is_503_with_the_reason(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    settings = api_settings(messaging, tmp_path, kubeconfig=kubeconfig, kube_timeout_seconds=2.0)
    async with running_api(settings) as api:
        response = await api.get("/batches")
        missing_file = api_settings(messaging, tmp_path, kubeconfig=tmp_path / "nope")
    async with running_api(missing_file) as api:
        missing = await api.get("/batches")

    assert response.status_code == 503
    assert "cannot reach the Kubernetes API server" in response.json()["detail"]
    assert missing.status_code == 503
    assert "does not exist" in missing.json()["detail"]
