"""The objects a batch owns — the worker Deployment and, with KEDA, a ScaledObject and its
TriggerAuthentication — as the operator would apply them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from imagebatch.core.imagebatch import RunSpec, run_spec
from imagebatch.core.locations import FileLocation
from imagebatch.core.shutdown import longest_job_seconds, termination_grace_seconds
from imagebatch.operator.children import (
    PAUSED_REPLICAS,
    created_at_zero,
    deployment,
    scaled_object,
    trigger_authentication,
)
from imagebatch.operator.settings import OperatorSettings
from imagebatch.worker.settings import WorkerSettings

UID = "0b6f3c1e-2a4d-4a8e-9c51-7d1f0e2b3a45"
QUEUE = "images.batch.photos.holiday"


def make_settings(**overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {
        "rabbit_url": "amqp://guest:guest@rabbitmq:5672/",
        "database_url": "postgresql://postgres:postgres@postgres:5432/images",
        "exchange": "images",
        "dlx": "images.dlx",
        "dlq": "images.dlx.q",
        "worker_image": "registry.example/imagebatch:1.2.3",
        "worker_image_pull_policy": "IfNotPresent",
        "worker_connections_secret": "imagebatch-connections",
        "worker_data_claim": "imagebatch-data",
        "worker_shutdown_timeout_seconds": 25.0,
        "rabbit_management_url": None,
        "otel_exporter_otlp_endpoint": None,
        "keda_polling_interval_seconds": 5,
        "keda_cooldown_seconds": 30,
    }
    values.update(overrides)
    return OperatorSettings(**values)


def make_spec(**overrides: Any) -> RunSpec:
    base = run_spec("photos", "holiday", {"source": {"urls": ["https://example.com/a.jpg"]}})
    return dataclasses.replace(base, **overrides)


def worker_deployment(
    spec: RunSpec | None = None, settings: OperatorSettings | None = None, replicas: int | None = 2
) -> dict[str, Any]:
    return deployment(spec or make_spec(), UID, settings or make_settings(), replicas=replicas)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(obj)["containers"]
    assert isinstance(only, dict)
    return only


def env(obj: dict[str, Any]) -> dict[str, str]:
    pairs = container(obj)["env"]
    names = [item["name"] for item in pairs]
    assert len(names) == len(set(names)), "no variable is set twice"
    return {item["name"]: item["value"] for item in pairs}


def all_children(paused: bool = False) -> list[dict[str, Any]]:
    spec, settings = make_spec(), make_settings()
    return [
        deployment(spec, UID, settings, replicas=None),
        scaled_object(spec, UID, settings, paused=paused),
        trigger_authentication(spec, UID, settings),
    ]


@pytest.mark.parametrize("child", all_children(), ids=lambda c: c["kind"])
def test_every_child_is_owned_by_the_batch_so_deleting_the_batch_deletes_it(
    child: dict[str, Any],
) -> None:
    assert child["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "imagejobs.io/v1alpha1",
            "kind": "ImageBatch",
            "name": "holiday",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


@pytest.mark.parametrize("child", all_children(), ids=lambda c: c["kind"])
def test_every_child_lives_beside_the_batch_and_is_labelled_with_its_name(
    child: dict[str, Any],
) -> None:
    assert child["metadata"]["namespace"] == "photos"
    assert child["metadata"]["labels"]["imagejobs.io/batch"] == "holiday"


def test_the_workers_consume_the_batchs_own_queue_under_the_same_routing_key() -> None:
    values = env(worker_deployment())
    assert values["QUEUE"] == QUEUE
    assert values["ROUTING_KEY"] == QUEUE
    assert (values["EXCHANGE"], values["DLX"], values["DLQ"]) == (
        "images",
        "images.dlx",
        "images.dlx.q",
    )


def test_the_workers_are_configured_from_the_spec() -> None:
    spec = make_spec(concurrency=4, prefetch=12, max_attempts=5, backoff_seconds=0)
    values = env(worker_deployment(spec))
    assert {
        k: values[k] for k in ("CONCURRENCY", "PREFETCH", "MAX_ATTEMPTS", "BACKOFF_SECONDS")
    } == {
        "CONCURRENCY": "4",
        "PREFETCH": "12",
        "MAX_ATTEMPTS": "5",
        "BACKOFF_SECONDS": "0",
    }
    assert values["OUTPUT_URL"] == "file:///data"


def test_every_variable_the_deployment_sets_is_one_the_worker_reads_and_accepts() -> None:
    values = env(worker_deployment(settings=make_settings(otel_exporter_otlp_endpoint="http://c")))
    unknown = {name for name in values if name.lower() not in WorkerSettings.model_fields}
    assert unknown == set()
    worker = WorkerSettings.model_validate({name.lower(): value for name, value in values.items()})
    assert (worker.queue, worker.routing_key, worker.concurrency) == (QUEUE, QUEUE, 8)
    assert worker.shutdown_timeout_seconds == 25.0
    assert worker.output_location == FileLocation(Path("/data"))


@pytest.mark.parametrize(("endpoint", "present"), [(None, False), ("http://otel:4317", True)])
def test_traces_are_exported_only_where_the_operator_has_an_endpoint(
    endpoint: str | None, present: bool
) -> None:
    values = env(worker_deployment(settings=make_settings(otel_exporter_otlp_endpoint=endpoint)))
    assert ("OTEL_EXPORTER_OTLP_ENDPOINT" in values) is present
    if endpoint is not None:
        assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint


def test_the_workers_export_where_and_how_the_operator_does() -> None:
    settings = make_settings(
        otel_exporter_otlp_protocol="http/protobuf",
        otel_exporter_otlp_traces_endpoint="http://collector:4318/v1/traces",
    )
    values = env(worker_deployment(settings=settings))
    assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert values["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://collector:4318/v1/traces"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in values
    assert values["OTEL_SERVICE_NAME"] == "worker"
    worker = WorkerSettings.model_validate({name.lower(): value for name, value in values.items()})
    assert worker.otlp() == settings.otlp()


def test_connections_come_from_the_secret_never_from_plain_env() -> None:
    obj = worker_deployment(settings=make_settings(worker_connections_secret="conn"))
    assert container(obj)["envFrom"] == [{"secretRef": {"name": "conn"}}]
    assert "RABBIT_URL" not in env(obj)
    assert "DATABASE_URL" not in env(obj)


def test_the_worker_runs_the_operators_image_and_command() -> None:
    worker = container(worker_deployment())
    assert worker["image"] == "registry.example/imagebatch:1.2.3"
    assert worker["imagePullPolicy"] == "IfNotPresent"
    assert worker["command"] == ["imagebatch-worker"]


def test_the_data_claim_is_mounted_at_data() -> None:
    obj = worker_deployment(settings=make_settings(worker_data_claim="thumbs"))
    volume, scratch = pod_spec(obj)["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "thumbs"}
    assert container(obj)["volumeMounts"] == [
        {"name": volume["name"], "mountPath": "/data"},
        {"name": scratch["name"], "mountPath": "/tmp"},
    ]


def test_a_file_output_elsewhere_mounts_the_claim_there() -> None:
    obj = worker_deployment(settings=make_settings(worker_output_url="file:///thumbs"))
    assert env(obj)["OUTPUT_URL"] == "file:///thumbs"
    assert container(obj)["volumeMounts"][0]["mountPath"] == "/thumbs"


@pytest.mark.parametrize(
    ("spec_url", "setting", "expected"),
    [
        (None, "s3://fleet-thumbs/out", "s3://fleet-thumbs/out"),
        ("s3://team-bucket", "file:///data", "s3://team-bucket"),
        ("s3://team-bucket/a/b", "s3://fleet-thumbs", "s3://team-bucket/a/b"),
    ],
)
def test_a_bucket_output_mounts_no_volume_so_workers_can_run_on_any_node(
    spec_url: str | None, setting: str, expected: str
) -> None:
    obj = worker_deployment(
        make_spec(output_url=spec_url), make_settings(worker_output_url=setting)
    )
    assert env(obj)["OUTPUT_URL"] == expected
    assert pod_spec(obj)["volumes"] == [{"name": "tmp", "emptyDir": {}}], "scratch space only"
    assert container(obj)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container(obj)["envFrom"] == [{"secretRef": {"name": "imagebatch-connections"}}]


@pytest.mark.parametrize(
    ("spec_url", "setting", "prefix", "expected"),
    [
        (None, "file:///data", None, "file:///data/photos/holiday/"),
        (None, "s3://fleet/thumbs/", None, "s3://fleet/thumbs/photos/holiday/"),
        ("s3://team", "file:///data", "summer", "s3://team/summer/"),
    ],
)
def test_status_output_says_where_the_thumbnails_are(
    spec_url: str | None, setting: str, prefix: str | None, expected: str
) -> None:
    spec = make_spec(output_url=spec_url, **({"output_prefix": prefix} if prefix else {}))
    assert spec.output_location(setting) == expected


def test_both_probes_ask_the_workers_metrics_port() -> None:
    worker = container(worker_deployment())
    ports = {port["name"]: port["containerPort"] for port in worker["ports"]}
    assert ports["metrics"] == int(env(worker_deployment())["METRICS_PORT"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert worker[probe]["httpGet"] == {"path": path, "port": "metrics"}


@pytest.mark.parametrize("timeout", [0.0, 25.0, 25.5, 120.0])
def test_pods_are_given_time_to_drain_and_finish_the_longest_job(timeout: float) -> None:
    obj = worker_deployment(settings=make_settings(worker_shutdown_timeout_seconds=timeout))
    grace = pod_spec(obj)["terminationGracePeriodSeconds"]
    assert grace == termination_grace_seconds(timeout)
    assert grace >= timeout + longest_job_seconds()
    assert float(env(obj)["SHUTDOWN_TIMEOUT_SECONDS"]) == timeout


def test_the_worker_runs_as_non_root_without_privileges() -> None:
    obj = worker_deployment()
    assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True
    assert pod_spec(obj)["securityContext"]["runAsUser"] != 0
    assert container(obj)["securityContext"]["allowPrivilegeEscalation"] is False
    assert container(obj)["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(obj)["automountServiceAccountToken"] is False


def test_the_selector_picks_the_pods_of_this_batch_only() -> None:
    obj = worker_deployment()
    selector = obj["spec"]["selector"]["matchLabels"]
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert selector["imagejobs.io/batch"] == "holiday"
    assert selector.items() <= labels.items()


@pytest.mark.parametrize(("replicas", "present"), [(None, False), (0, True), (3, True)])
def test_replicas_are_named_only_when_the_operator_scales_without_keda(
    replicas: int | None, present: bool
) -> None:
    obj = worker_deployment(replicas=replicas)
    assert ("replicas" in obj["spec"]) is present
    if replicas is not None:
        assert obj["spec"]["replicas"] == replicas


def test_a_keda_scaled_deployment_is_first_created_at_0_replicas_and_otherwise_unchanged() -> None:
    applied = worker_deployment(replicas=None)
    created = created_at_zero(applied)
    assert created["spec"]["replicas"] == 0
    assert {k: v for k, v in created["spec"].items() if k != "replicas"} == applied["spec"]
    assert created["metadata"] == applied["metadata"]
    assert "replicas" not in applied["spec"], "the applied object still leaves them to KEDA"


def test_the_scaled_object_scales_the_worker_deployment_on_the_batchs_queue_length() -> None:
    spec = make_spec(min_replicas=1, max_replicas=6, messages_per_replica=25)
    obj = scaled_object(spec, UID, make_settings(), paused=False)
    assert (obj["apiVersion"], obj["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    body = obj["spec"]
    assert body["scaleTargetRef"] == {"name": worker_deployment(spec)["metadata"]["name"]}
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (1, 6)
    assert (body["pollingInterval"], body["cooldownPeriod"]) == (5, 30)
    (trigger,) = body["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {
        "protocol": "amqp",
        "queueName": QUEUE,
        "mode": "QueueLength",
        "value": "25",
    }
    auth = trigger_authentication(spec, UID, make_settings())
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}


@pytest.mark.parametrize(
    ("management_url", "protocol", "key"),
    [
        (None, "amqp", "RABBIT_URL"),
        ("http://guest:guest@rabbitmq:15672/%2F", "http", "RABBIT_MANAGEMENT_URL"),
    ],
)
def test_keda_counts_through_the_management_api_only_when_the_operator_has_its_url(
    management_url: str | None, protocol: str, key: str
) -> None:
    settings = make_settings(rabbit_management_url=management_url)
    obj = scaled_object(make_spec(), UID, settings, paused=False)
    assert obj["spec"]["triggers"][0]["metadata"]["protocol"] == protocol
    auth = trigger_authentication(make_spec(), UID, settings)
    assert (auth["apiVersion"], auth["kind"]) == ("keda.sh/v1alpha1", "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "imagebatch-connections", "key": key}
    ]


@pytest.mark.parametrize(("paused", "annotations"), [(True, {PAUSED_REPLICAS: "0"}), (False, {})])
def test_keda_holds_the_workers_at_0_only_while_the_batch_is_paused(
    paused: bool, annotations: dict[str, str]
) -> None:
    obj = scaled_object(make_spec(), UID, make_settings(), paused=paused)
    assert obj["metadata"].get("annotations", {}) == annotations
    assert PAUSED_REPLICAS == "autoscaling.keda.sh/paused-replicas"


def test_the_children_of_two_batches_do_not_collide() -> None:
    one, two = make_spec(), make_spec(name="other")
    assert worker_deployment(one)["metadata"]["name"] != worker_deployment(two)["metadata"]["name"]
    assert env(worker_deployment(two))["QUEUE"] == "images.batch.photos.other"
    other_ns = make_spec(namespace="team-b")
    assert env(worker_deployment(other_ns))["QUEUE"] == "images.batch.team-b.holiday"
    assert worker_deployment(other_ns)["metadata"]["namespace"] == "team-b"


def test_worker_pods_meet_the_restricted_pod_security_standard() -> None:
    pod = pod_spec(worker_deployment())
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(worker_deployment())["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
