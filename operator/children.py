"""The objects a batch owns, as pure functions of its spec and the operator's settings.

- the worker Deployment: `imagebatch-worker` consuming the batch's queue, configured by env from
  the spec, connections (and a bucket's AWS variables) from the Secret (`envFrom`), thumbnails
  in a bucket or, for a file:// output, on the claim mounted at that folder;
- with KEDA: a ScaledObject (rabbitmq trigger, QueueLength) and its TriggerAuthentication.

Every child carries an owner reference to the batch (the garbage collector deletes it with the
batch) and the label `imagejobs.io/batch: <name>`. They are applied server-side, so what is not
named here (e.g. `spec.replicas` when KEDA owns it) is left to whoever owns it.
"""

from __future__ import annotations

from typing import Any

from imagebatch.core.imagebatch import GROUP, KIND, VERSION, RunSpec
from imagebatch.core.locations import FileLocation, parse_location
from imagebatch.core.shutdown import termination_grace_seconds
from imagebatch.core.telemetry import WORKER_SERVICE
from imagebatch.core.topology import batch_queue_name
from imagebatch.operator.settings import OperatorSettings

BATCH_LABEL = "imagejobs.io/batch"
WORKER_CONTAINER = "worker"
WORKER_METRICS_PORT = 9100
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
"""KEDA scales the target to this many replicas at once and stops scaling while it is there."""
KEDA_GROUP, KEDA_VERSION = "keda.sh", "v1alpha1"


def deployment_name(name: str) -> str:
    return f"{name}-worker"


def trigger_authentication_name(name: str) -> str:
    return f"{name}-rabbitmq"


def owner_reference(batch_name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": batch_name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, spec: RunSpec, uid: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": spec.namespace,
        "labels": {
            BATCH_LABEL: spec.name,
            "app.kubernetes.io/name": "imagebatch-worker",
            "app.kubernetes.io/part-of": "imagebatch",
            "app.kubernetes.io/managed-by": "imagebatch-operator",
        },
        "ownerReferences": [owner_reference(spec.name, uid)],
        **extra,
    }


def output_url(spec: RunSpec, settings: OperatorSettings) -> str:
    """The workers' OUTPUT_URL for this batch: its own bucket, else the operator's setting."""
    return spec.output_url or settings.worker_output_url


def output_folder(spec: RunSpec, settings: OperatorSettings) -> str | None:
    """Where the data claim is mounted: the output folder of a file:// output, else None (a
    bucket needs no volume, so workers may run on any node)."""
    location = parse_location(output_url(spec, settings))
    return str(location.root) if isinstance(location, FileLocation) else None


def worker_env(spec: RunSpec, settings: OperatorSettings) -> list[dict[str, str]]:
    """The worker's settings for this batch (RABBIT_URL/DATABASE_URL come from the Secret)."""
    queue = batch_queue_name(spec.namespace, spec.name)
    values = {
        "QUEUE": queue,
        "ROUTING_KEY": queue,
        "EXCHANGE": settings.exchange,
        "DLX": settings.dlx,
        "DLQ": settings.dlq,
        "QUEUE_TYPE": settings.queue_type,
        "CONCURRENCY": str(spec.concurrency),
        "PREFETCH": str(spec.prefetch),
        "MAX_ATTEMPTS": str(spec.max_attempts),
        "BACKOFF_SECONDS": str(spec.backoff_seconds),
        "OUTPUT_URL": output_url(spec, settings),
        "METRICS_PORT": str(WORKER_METRICS_PORT),
        "SHUTDOWN_TIMEOUT_SECONDS": str(settings.worker_shutdown_timeout_seconds),
        "OTEL_SERVICE_NAME": WORKER_SERVICE,
    }
    exporter = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otel_exporter_otlp_endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": settings.otel_exporter_otlp_traces_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": settings.otel_exporter_otlp_protocol,
    }
    values.update({name: value for name, value in exporter.items() if value})
    return [{"name": key, "value": value} for key, value in values.items()]


def _probe(path: str, *, period: int, initial_delay: int = 0) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
    }


def deployment(
    spec: RunSpec, uid: str, settings: OperatorSettings, *, replicas: int | None
) -> dict[str, Any]:
    """The worker Deployment; `replicas` None leaves the count to KEDA."""
    name = deployment_name(spec.name)
    selector = {BATCH_LABEL: spec.name, "app.kubernetes.io/name": "imagebatch-worker"}
    # Covers the drain and the longest job: a pod killed at the end of its grace period cuts
    # jobs off mid-way, which costs them an attempt (core/shutdown.py).
    grace = termination_grace_seconds(settings.worker_shutdown_timeout_seconds)
    container = {
        "name": WORKER_CONTAINER,
        "image": settings.worker_image,
        "imagePullPolicy": settings.worker_image_pull_policy,
        "command": ["imagebatch-worker"],
        "envFrom": [{"secretRef": {"name": settings.worker_connections_secret}}],
        "env": worker_env(spec, settings),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}],
        "livenessProbe": _probe("/healthz", period=15, initial_delay=10),
        "readinessProbe": _probe("/readyz", period=5),
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    folder = output_folder(spec, settings)
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if folder is not None:
        mounts = [{"name": "data", "mountPath": folder}]
        volumes = [
            {"name": "data", "persistentVolumeClaim": {"claimName": settings.worker_data_claim}}
        ]
    # The root filesystem is read-only: temporary files go to a scratch volume.
    container["volumeMounts"] = [*mounts, {"name": "tmp", "mountPath": "/tmp"}]
    volumes.append({"name": "tmp", "emptyDir": {}})
    body_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": _metadata(name, spec, uid)["labels"]},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": grace,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if replicas is not None:
        body_spec = {"replicas": replicas, **body_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, spec, uid),
        "spec": body_spec,
    }


def created_at_zero(deployment: dict[str, Any]) -> dict[str, Any]:
    """The KEDA-scaled Deployment as first created: at 0 replicas, so that KEDA, not the API's
    default of 1, starts its first worker (a suspended or empty batch never starts one)."""
    return {**deployment, "spec": {"replicas": 0, **deployment["spec"]}}


def scaled_object(
    spec: RunSpec, uid: str, settings: OperatorSettings, *, paused: bool
) -> dict[str, Any]:
    """KEDA's ScaledObject for the worker Deployment; `paused` holds it at 0 replicas at once
    (suspended or finished), without waiting for the cooldown."""
    http = settings.rabbit_management_url is not None
    annotations = {PAUSED_REPLICAS: "0"} if paused else {}
    return {
        "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}",
        "kind": "ScaledObject",
        "metadata": _metadata(deployment_name(spec.name), spec, uid, annotations=annotations),
        "spec": {
            "scaleTargetRef": {"name": deployment_name(spec.name)},
            "pollingInterval": settings.keda_polling_interval_seconds,
            "cooldownPeriod": settings.keda_cooldown_seconds,
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "triggers": [
                {
                    "type": "rabbitmq",
                    "metadata": {
                        "protocol": "http" if http else "amqp",
                        "queueName": batch_queue_name(spec.namespace, spec.name),
                        "mode": "QueueLength",
                        "value": str(spec.messages_per_replica),
                    },
                    "authenticationRef": {"name": trigger_authentication_name(spec.name)},
                }
            ],
        },
    }


def trigger_authentication(spec: RunSpec, uid: str, settings: OperatorSettings) -> dict[str, Any]:
    """Where KEDA finds the broker: `host` from the connections Secret (the management URL for
    the http protocol)."""
    key = "RABBIT_MANAGEMENT_URL" if settings.rabbit_management_url is not None else "RABBIT_URL"
    return {
        "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}",
        "kind": "TriggerAuthentication",
        "metadata": _metadata(trigger_authentication_name(spec.name), spec, uid),
        "spec": {
            "secretTargetRef": [
                {"parameter": "host", "name": settings.worker_connections_secret, "key": key}
            ]
        },
    }
