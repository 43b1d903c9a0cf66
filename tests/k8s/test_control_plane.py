"""The Kubernetes API server of the suite is real: objects created through the Python client are
what kubectl reads back, the CRD's schema rejects bad ImageBatches at admission, and owned objects
are garbage-collected with their owner."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.k8s import KubeCluster, api_client

GROUP, VERSION, PLURAL = "imagejobs.io", "v1alpha1", "imagebatches"


def image_batch(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ImageBatch",
        "metadata": {"name": name},
        "spec": {"source": {"urls": ["https://example.test/a.jpg"]}, **spec},
    }


def wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_objects_created_by_the_client_are_what_kubectl_reads(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    with api_client(kube_cluster) as api:
        apps = client.AppsV1Api(api)
        labels = {"app": "worker"}
        apps.create_namespaced_deployment(
            namespace,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name="worker"),
                spec=client.V1DeploymentSpec(
                    replicas=2,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(
                            containers=[
                                client.V1Container(name="worker", image="imagebatch/worker:dev")
                            ]
                        ),
                    ),
                ),
            ),
        )
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, image_batch("holiday-photos")
        )

    deployment = json.loads(
        kube_cluster.kubectl("get", "deployment", "worker", "-n", namespace, "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 2
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "imagebatch/worker:dev"
    )

    listing = kube_cluster.kubectl("get", "ib", "-n", namespace).stdout
    header = listing.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "SUCCEEDED", "FAILED", "WORKERS", "AGE"]
    assert listing.splitlines()[1].startswith("holiday-photos")

    batch = json.loads(
        kube_cluster.kubectl(
            "get", "imagebatch", "holiday-photos", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert batch["spec"]["maxFailed"] == "10%", "schema defaults are applied at admission"
    assert batch["spec"]["operations"][0]["thumbnail"]["width"] == 256

    # The deployment controller runs: the Deployment gets its ReplicaSet (pods never start here).
    assert wait_for(
        lambda: (
            kube_cluster.kubectl("get", "replicasets", "-n", namespace, "-o", "name").stdout.strip()
            != ""
        )
    ), "kube-controller-manager created no ReplicaSet"


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"source": {}}, "exactly one of postgres or urls"),
        (
            {"source": {"urls": ["https://a.test/x.jpg"], "postgres": {"table": "images"}}},
            "exactly one of",
        ),
        ({"source": {"urls": ["ftp://a.test/x.jpg"]}}, "source.urls"),
        ({"maxFailed": "ten"}, "maxFailed"),
        ({"workers": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed"),
        ({"operations": [{"thumbnail": {"format": "gif"}}]}, "format"),
        ({"output": {"prefix": "../etc"}}, "output.prefix"),
        ({"source": {"postgres": {"table": "images; DROP TABLE jobs"}}}, "source.postgres.table"),
        ({"source": {"postgres": {"limit": 10_000_001}}}, "source.postgres.limit"),
        ({"source": {"urls": [f"https://a.test/{n}.jpg" for n in range(1001)]}}, "source.urls"),
        ({"retry": {"maxAttempts": 0}}, "retry.maxAttempts"),
        ({"retry": {"backoffSeconds": -1}}, "retry.backoffSeconds"),
        ({"workers": {"concurrency": 0}}, "workers.concurrency"),
        ({"activeDeadlineSeconds": 0}, "activeDeadlineSeconds"),
        ({"maxFailed": "150%"}, "maxFailed"),
    ],
)
def test_the_schema_rejects_bad_specs_at_admission(
    kube_cluster: KubeCluster, namespace: str, spec: dict[str, Any], complaint: str
) -> None:
    body = image_batch("bad")
    body["spec"].update(spec)
    with api_client(kube_cluster) as api, pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
    assert caught.value.status == 422
    assert complaint in str(caught.value.body)


@pytest.mark.parametrize("name", ["holiday.photos", "a" * 64])
def test_a_batch_name_must_be_a_dns_label(
    kube_cluster: KubeCluster, namespace: str, name: str
) -> None:
    """It names the batch's queue, worker Deployment and labels (at most 63 characters)."""
    with api_client(kube_cluster) as api, pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, image_batch(name)
        )
    assert caught.value.status == 422
    assert "DNS label" in str(caught.value.body)


def test_an_owned_object_is_garbage_collected_with_its_owner(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    with api_client(kube_cluster) as api:
        created = client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, image_batch("owner")
        )
        owner = cast(dict[str, Any], created)
        core = client.CoreV1Api(api)
        reference = client.V1OwnerReference(
            api_version=f"{GROUP}/{VERSION}",
            kind="ImageBatch",
            name="owner",
            uid=owner["metadata"]["uid"],
            controller=True,
            block_owner_deletion=True,
        )
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="owned", owner_references=[reference]),
                data={"k": "v"},
            ),
        )
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "owner"
        )

        def gone() -> bool:
            try:
                core.read_namespaced_config_map("owned", namespace)
            except ApiException as exc:
                return bool(exc.status == 404)
            return False

        assert wait_for(gone, timeout=60), (
            "the garbage collector did not remove the owned ConfigMap"
        )
    assert (
        kube_cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode
        != 0
    )
