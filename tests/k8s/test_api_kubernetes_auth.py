"""`AUTH_MODE=kubernetes` against the suite's real API server: the api runs as the ServiceAccount
the manifests give it (which may only create TokenReviews), callers bring ServiceAccount tokens
from the TokenRequest API, and Kubernetes RBAC — not the api — decides who may read or create
which batch."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from imagebatch.core.settings import CommonSettings
from tests.support.api import api_settings, image_bytes, query, running_api
from tests.support.k8s import REPO, KubeCluster

pytestmark = pytest.mark.k8s

API_MANIFEST = REPO / "manifests" / "base" / "api.yaml"


def batch(name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"metadata": metadata, "spec": {"source": {"urls": ["https://a.test/x.jpg"]}}}


def token_for(cluster: KubeCluster, namespace: str, account: str) -> str:
    """A fresh token of `namespace/account` from the TokenRequest API."""
    return cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def token_kubeconfig(cluster: KubeCluster, token: str, path: Path) -> Path:
    """The cluster's kubeconfig with `token` as its only credential."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "envtest", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}
        ],
        "current-context": "envtest",
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def api_account(kube_cluster: KubeCluster, namespace: str) -> Iterator[str]:
    """The api's ServiceAccount, ClusterRole and binding exactly as manifests/base/api.yaml has them
    (names suffixed for this test, the account in the test's namespace); yields its user name."""
    suffix = uuid.uuid4().hex[:8]
    documents = [d for d in yaml.safe_load_all(API_MANIFEST.read_text()) if d]
    account = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]["name"]
    renamed: list[dict[str, Any]] = []
    for doc in documents:
        if doc["kind"] == "ServiceAccount":
            renamed.append({**doc, "metadata": {"name": account, "namespace": namespace}})
        elif doc["kind"] == "ClusterRoleBinding":
            renamed.append(
                {
                    **doc,
                    "metadata": {"name": f"{doc['metadata']['name']}-{suffix}"},
                    "roleRef": {**doc["roleRef"], "name": f"{doc['roleRef']['name']}-{suffix}"},
                    "subjects": [{**s, "namespace": namespace} for s in doc["subjects"]],
                }
            )
        elif doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == account:
            renamed.append({**doc, "metadata": {"name": f"{account}-{suffix}"}})
    manifest = {"apiVersion": "v1", "kind": "List", "items": renamed}
    path = Path(kube_cluster.kubeconfig).with_name(f"api-rbac-{suffix}.json")
    path.write_text(json.dumps(manifest))
    kube_cluster.kubectl("apply", "-f", str(path))
    try:
        yield f"system:serviceaccount:{namespace}:{account}"
    finally:
        kube_cluster.kubectl("delete", "-f", str(path), "--wait=false", check=False)
        path.unlink(missing_ok=True)


@pytest.fixture
def other_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def caller_token(kube_cluster: KubeCluster, namespace: str) -> str:
    """A ServiceAccount of namespace A that may edit ImageBatches there (the manifests'
    `imagebatch-editor`, bound with a RoleBinding) and nowhere else."""
    kube_cluster.kubectl("create", "serviceaccount", "caller", "-n", namespace)
    editor = next(
        d
        for d in yaml.safe_load_all(API_MANIFEST.read_text())
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "imagebatch-editor"
    )
    rules = ",".join(editor["rules"][0]["verbs"])
    kube_cluster.kubectl(
        "create", "role", "batches", "-n", namespace, f"--verb={rules}",
        "--resource=imagebatches.imagejobs.io",
    )  # fmt: skip
    kube_cluster.kubectl(
        "create", "rolebinding", "caller-batches", "-n", namespace, "--role=batches",
        f"--serviceaccount={namespace}:caller",
    )  # fmt: skip
    return token_for(kube_cluster, namespace, "caller")


@pytest.fixture
async def api(
    messaging: CommonSettings,
    tmp_path: Path,
    kube_cluster: KubeCluster,
    namespace: str,
    api_account: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """The api in kubernetes mode, with the api ServiceAccount's own token as its credentials."""
    account = api_account.rsplit(":", 1)[1]
    kubeconfig = token_kubeconfig(
        kube_cluster, token_for(kube_cluster, namespace, account), tmp_path / "api-kubeconfig"
    )
    settings = api_settings(
        messaging,
        tmp_path,
        auth_mode="kubernetes",
        kubeconfig=kubeconfig,
        kube_namespace="default",
    )
    async with running_api(settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_service_account_works_with_batches_where_rbac_lets_it(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str, caller_token: str
) -> None:
    mine = bearer(caller_token)
    created = await api.post("/batches", json=batch("mine", namespace), headers=mine)
    listed = await api.get("/batches", headers=bearer(caller_token))
    one = await api.get("/batches/mine", headers=bearer(caller_token))

    assert created.status_code == 201, created.text
    assert listed.status_code == 200
    assert listed.json()["namespace"] == namespace  # a ServiceAccount's own namespace by default
    assert [b["name"] for b in listed.json()["items"]] == ["mine"]
    assert one.status_code == 200
    seen = kube_cluster.kubectl("get", "ib", "mine", "-n", namespace, "-o", "name").stdout
    assert seen.strip() == "imagebatch.imagejobs.io/mine"


async def test_without_rbac_in_another_namespace_the_caller_gets_403_with_the_reason(
    api: httpx.AsyncClient,
    kube_cluster: KubeCluster,
    namespace: str,
    other_namespace: str,
    caller_token: str,
) -> None:
    create = await api.post(
        "/batches", json=batch("theirs", other_namespace), headers=bearer(caller_token)
    )
    listing = await api.get(f"/batches?namespace={other_namespace}", headers=bearer(caller_token))
    reading = await api.get(
        f"/batches/theirs?namespace={other_namespace}", headers=bearer(caller_token)
    )

    user = f"system:serviceaccount:{namespace}:caller"
    for response, verb in ((create, "create"), (listing, "list"), (reading, "get")):
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert f'User "{user}" cannot {verb} resource "imagebatches"' in detail
        assert f'in the namespace "{other_namespace}"' in detail
    nothing = kube_cluster.kubectl("get", "ib", "-n", other_namespace, "-o", "name").stdout
    assert nothing.strip() == ""


async def test_no_token_or_a_wrong_one_is_401(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "someone", "-n", namespace)
    header, payload, _ = token_for(kube_cluster, namespace, "someone").split(".")
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(b'not-the-signature').decode()}"
    kube_cluster.kubectl("create", "serviceaccount", "gone", "-n", namespace)
    revoked = token_for(kube_cluster, namespace, "gone")
    kube_cluster.kubectl("delete", "serviceaccount", "gone", "-n", namespace)

    for headers in ({}, bearer("not-a-token"), bearer(forged), bearer(revoked)):
        for method, path in (("GET", "/batches"), ("POST", "/tasks"), ("GET", "/")):
            response = await api.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, method, path)
            assert response.headers["www-authenticate"].startswith('Bearer realm="imagebatch"')


async def test_the_api_s_own_account_cannot_create_batches_anywhere(
    kube_cluster: KubeCluster, api_account: str, other_namespace: str
) -> None:
    answer = kube_cluster.kubectl(
        "auth", "can-i", "create", "imagebatches.imagejobs.io", f"--as={api_account}",
        "-n", other_namespace, check=False,
    )  # fmt: skip
    reviews = kube_cluster.kubectl(
        "auth", "can-i", "create", "tokenreviews.authentication.k8s.io", f"--as={api_account}",
        check=False,
    )  # fmt: skip

    assert answer.stdout.strip() == "no"
    assert reviews.stdout.strip() == "yes"


async def test_a_task_is_recorded_as_the_reviewed_user_s(
    api: httpx.AsyncClient, namespace: str, caller_token: str, messaging: CommonSettings
) -> None:
    response = await api.post(
        "/tasks", json={"url": "https://example.test/a.jpg"}, headers=bearer(caller_token)
    )

    assert response.status_code == 202
    [row] = await query(
        messaging.database_url, "SELECT caller FROM jobs WHERE id = $1", response.json()["id"]
    )
    assert row["caller"] == f"system:serviceaccount:{namespace}:caller"


async def test_only_a_caller_that_may_create_batches_may_ask_for_thumbnails(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str, caller_token: str
) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "stranger", "-n", namespace)
    stranger = bearer(token_for(kube_cluster, namespace, "stranger"))
    refused = [
        await api.post("/tasks", json={"url": "https://example.test/a.jpg"}, headers=stranger),
        await api.post("/uploads", files={"file": ("a.jpg", image_bytes())}, headers=stranger),
        await api.post("/enqueue", headers=stranger),
    ]
    allowed = await api.post(
        "/tasks", json={"url": "https://example.test/a.jpg"}, headers=bearer(caller_token)
    )

    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["detail"].startswith(
            f"system:serviceaccount:{namespace}:stranger may not create imagebatches in "
            f"namespace '{namespace}'"
        )
    assert allowed.status_code == 202, allowed.text


async def test_retry_sets_the_annotation_with_the_caller_s_rights(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str, caller_token: str
) -> None:
    await api.post("/batches", json=batch("mine", namespace), headers=bearer(caller_token))

    response = await api.post("/batches/mine/retry", headers=bearer(caller_token))
    again = await api.post("/batches/mine/retry", headers=bearer(caller_token))
    missing = await api.post("/batches/nope/retry", headers=bearer(caller_token))

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["name"], body["namespace"]) == ("mine", namespace)
    assert body["annotation"] == "imagejobs.io/retry-failed"
    assert again.json()["request"] != body["request"], "each request is a new value"
    seen = kube_cluster.kubectl(
        "get", "ib", "mine", "-n", namespace,
        "-o", r"jsonpath={.metadata.annotations.imagejobs\.io/retry-failed}",
    ).stdout  # fmt: skip
    assert seen == again.json()["request"]
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"no ImageBatch 'nope' in namespace '{namespace}'"


async def test_retry_without_patch_rights_is_403_and_changes_nothing(
    api: httpx.AsyncClient, kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kube_cluster.kubectl(
        "create", "role", "read-batches", "-n", namespace, "--verb=get,list,watch",
        "--resource=imagebatches.imagejobs.io",
    )  # fmt: skip
    kube_cluster.kubectl(
        "create", "rolebinding", "reader-batches", "-n", namespace, "--role=read-batches",
        f"--serviceaccount={namespace}:reader",
    )  # fmt: skip
    manifest = Path(kube_cluster.kubeconfig).with_name(f"batch-{namespace}.json")
    manifest.write_text(
        json.dumps({"apiVersion": "imagejobs.io/v1alpha1", "kind": "ImageBatch", **batch("theirs")})
    )
    kube_cluster.kubectl("create", "-n", namespace, "-f", str(manifest))
    reader = token_for(kube_cluster, namespace, "reader")

    readable = await api.get("/batches/theirs", headers=bearer(reader))
    response = await api.post("/batches/theirs/retry", headers=bearer(reader))

    assert readable.status_code == 200
    assert response.status_code == 403, response.text
    user = f"system:serviceaccount:{namespace}:reader"
    assert f'User "{user}" cannot patch resource "imagebatches"' in response.json()["detail"]
    annotations = json.loads(
        kube_cluster.kubectl("get", "ib", "theirs", "-n", namespace, "-o", "json").stdout
    )["metadata"].get("annotations", {})
    assert "imagejobs.io/retry-failed" not in annotations
