"""ImageBatch resources through the official kubernetes client.

The client is synchronous, so each call runs in a worker thread with a timeout. It is configured
lazily from `KUBECONFIG` or, inside a pod, from the service account; with neither, or when the
API server cannot be reached, calls raise `DependencyUnavailable` (503) with the reason. API
server errors become the matching 4xx when the request was at fault.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from imagebatch.api.errors import ApiError, Conflict, DependencyUnavailable, NotFound, Unprocessable
from imagebatch.api.settings import ApiSettings
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION

NO_CLUSTER = (
    "no Kubernetes cluster is configured: set KUBECONFIG, or run the api in a pod "
    "with a service account"
)


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def translate(exc: ApiException, *, namespace: str, name: str | None = None) -> ApiError:
    """The api's answer to an error of the API server."""
    body = _status_body(exc)
    message = str(body.get("message") or exc.reason or "no reason given")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    assert isinstance(details, dict)
    status = exc.status or 0
    if status == 404:
        if details.get("kind") == "namespaces":
            return NotFound(f"namespace {namespace!r} does not exist")
        if details.get("kind") == PLURAL and name is not None:
            return NotFound(f"no ImageBatch {name!r} in namespace {namespace!r}")
        return DependencyUnavailable(
            f"the ImageBatch CRD ({PLURAL}.{GROUP}) is not installed in the cluster"
        )
    if status == 409:
        return Conflict(f"an ImageBatch named {name!r} already exists in namespace {namespace!r}")
    if status in (400, 422):
        return Unprocessable(f"the cluster rejected the ImageBatch: {message}")
    if status in (401, 403):
        return DependencyUnavailable(f"the cluster refused the api's credentials: {message}")
    return DependencyUnavailable(f"the Kubernetes API server answered {status}: {message}")


class BatchClient:
    """List, read and create ImageBatch objects."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._api_client: kubernetes.client.ApiClient | None = None

    def configured(self) -> str | None:
        """Where the cluster comes from ("kubeconfig PATH" / "in-cluster"), None without one."""
        if self._settings.kubeconfig is not None:
            return f"kubeconfig {self._settings.kubeconfig}"
        if self._settings.kubernetes_service_host:
            return "in-cluster service account"
        return None

    def _objects(self) -> kubernetes.client.CustomObjectsApi:
        with self._lock:
            if self._api_client is None:
                self._api_client = self._load()
            return kubernetes.client.CustomObjectsApi(self._api_client)

    def _load(self) -> kubernetes.client.ApiClient:
        path = self._settings.kubeconfig
        try:
            if path is not None:
                if not path.is_file():
                    raise DependencyUnavailable(f"KUBECONFIG {path} does not exist")
                client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(path)
                )
                return client
            if self._settings.kubernetes_service_host:
                configuration = kubernetes.client.Configuration()
                kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                return kubernetes.client.ApiClient(configuration)
        except ConfigException as exc:
            raise DependencyUnavailable(f"cannot load the Kubernetes configuration: {exc}") from exc
        raise DependencyUnavailable(NO_CLUSTER, retry_after=None)

    async def _call(
        self, what: Callable[..., object], args: dict[str, Any], *, name: str | None = None
    ) -> dict[str, Any]:
        """Run one client call in a thread; `args` go to the call, `name` only into errors.

        Custom-object calls answer with the decoded JSON object.
        """
        timeout = self._settings.kube_timeout_seconds
        namespace = str(args["namespace"])

        def run() -> dict[str, Any]:
            result = what(
                group=GROUP, version=VERSION, plural=PLURAL, _request_timeout=timeout, **args
            )
            return result if isinstance(result, dict) else {}

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            raise translate(exc, namespace=namespace, name=name) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(f"cannot reach the Kubernetes API server: {exc}") from exc

    async def list(self, namespace: str) -> list[dict[str, Any]]:
        objects = self._objects()
        result: dict[str, Any] = await self._call(
            objects.list_namespaced_custom_object, {"namespace": namespace}
        )
        items = result.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        objects = self._objects()
        result: dict[str, Any] = await self._call(
            objects.get_namespaced_custom_object, {"namespace": namespace, "name": name}, name=name
        )
        return result

    async def create(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        objects = self._objects()
        result: dict[str, Any] = await self._call(
            objects.create_namespaced_custom_object,
            {"namespace": namespace, "body": manifest},
            name=manifest["metadata"]["name"],
        )
        return result

    def close(self) -> None:
        with self._lock:
            if self._api_client is not None:
                self._api_client.close()  # type: ignore[no-untyped-call]
                self._api_client = None
