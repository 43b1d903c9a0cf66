"""The operator's calls to the Kubernetes API, beyond kopf's own watching.

The official client is synchronous, so each call runs in a thread. Children are applied
server-side under one field manager: the operator states what it owns and nothing else (with
KEDA, `spec.replicas` is KEDA's), and a repeated apply of the same object is a no-op.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION

FIELD_MANAGER = "imagebatch-operator"
CREATE_MANAGER = "imagebatch-operator-create"
"""Owns what only the first creation of a child sets: a KEDA-scaled Deployment's `replicas: 0`.
It never writes again, so that field stays as created until KEDA scales the Deployment."""
APPLY = "application/apply-patch+yaml"
TIMEOUT_SECONDS = 15
T = TypeVar("T")


def load_client(kubeconfig: Path | None) -> kubernetes.client.ApiClient:
    """A client from `kubeconfig`, else from the pod's service account."""
    if kubeconfig is not None:
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        return client
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Children, Secrets, status and deletion of ImageBatch objects."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self._client = client
        self._apps = kubernetes.client.AppsV1Api(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._objects = kubernetes.client.CustomObjectsApi(client)
        self._extensions = kubernetes.client.ApiextensionsV1Api(client)

    @property
    def configuration(self) -> kubernetes.client.Configuration:
        config: kubernetes.client.Configuration = self._client.configuration
        return config

    @staticmethod
    async def _run(call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)

    async def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply of a Deployment or a custom object (KEDA's)."""
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY,
            "_request_timeout": TIMEOUT_SECONDS,
        }
        if obj["kind"] == "Deployment":
            await self._run(
                lambda: self._apps.patch_namespaced_deployment(name, namespace, obj, **options)
            )
            return
        group, version = obj["apiVersion"].split("/")
        plural = {
            "ScaledObject": "scaledobjects",
            "TriggerAuthentication": "triggerauthentications",
        }[obj["kind"]]
        await self._run(
            lambda: self._objects.patch_namespaced_custom_object(
                group, version, namespace, plural, name, obj, **options
            )
        )

    async def create_deployment(self, obj: dict[str, Any]) -> None:
        """Create the Deployment unless it exists (then it is left as it is)."""
        meta = obj["metadata"]
        try:
            await self._run(
                lambda: self._apps.create_namespaced_deployment(
                    meta["namespace"],
                    obj,  # type: ignore[arg-type]  # the client sends a dict body as it is
                    field_manager=CREATE_MANAGER,
                    _request_timeout=TIMEOUT_SECONDS,
                )
            )
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def secret_exists(self, namespace: str, name: str) -> bool:
        try:
            await self._run(
                lambda: self._core.read_namespaced_secret(
                    name, namespace, _request_timeout=TIMEOUT_SECONDS
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's values, decoded; None when it does not exist."""
        try:
            secret = await self._run(
                lambda: self._core.read_namespaced_secret(
                    name, namespace, _request_timeout=TIMEOUT_SECONDS
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = secret.data or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    async def crd_installed(self, name: str) -> bool:
        try:
            await self._run(
                lambda: self._extensions.read_custom_resource_definition(
                    name, _request_timeout=TIMEOUT_SECONDS
                )
            )
        except ApiException as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the batch's status (None values remove a field)."""
        await self._run(
            lambda: self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                _request_timeout=TIMEOUT_SECONDS,
            )
        )

    async def delete_batch(self, namespace: str, name: str, uid: str) -> None:
        """Delete the batch (ttlSecondsAfterFinished), only if it is still the same object."""
        body = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid),
            propagation_policy="Background",
        )
        try:
            await self._run(
                lambda: self._objects.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body=body,
                    _request_timeout=TIMEOUT_SECONDS,
                )
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
