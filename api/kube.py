"""ImageBatch resources and TokenReviews through the official kubernetes client.

The client is synchronous, so each call runs in a worker thread with a timeout. It is configured
lazily from `KUBECONFIG` or, inside a pod, from the service account; with neither, or when the
API server cannot be reached, calls raise `DependencyUnavailable` (503) with the reason. API
server errors become the matching 4xx when the request was at fault.

A caller with a Kubernetes token (`AUTH_MODE=kubernetes`) is served with that token alone: the
calls go over a connection that carries none of the api's own credentials (no client
certificate, no token of its own), so the API server's RBAC decides what the caller may do, and
its 401/403 are passed on. Other callers are served with the api's own credentials.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from imagebatch.api.auth import Caller
from imagebatch.api.errors import (
    ApiError,
    Conflict,
    DependencyUnavailable,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from imagebatch.api.settings import ApiSettings
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
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


def translate(
    exc: ApiException, *, namespace: str, name: str | None = None, as_caller: bool = False
) -> ApiError:
    """The api's answer to an error of the API server.

    `as_caller`: the call carried the caller's own token, so a 401 or 403 is the caller's
    answer (passed on with the server's reason), not a fault of the api's configuration.
    """
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
    if as_caller and status == 401:
        return Unauthorized(f"the Kubernetes API server refused the token: {message}")
    if as_caller and status == 403:
        return Forbidden(message)
    if status in (401, 403):
        return DependencyUnavailable(f"the cluster refused the api's credentials: {message}")
    return DependencyUnavailable(f"the Kubernetes API server answered {status}: {message}")


def without_credentials(configuration: kubernetes.client.Configuration) -> Any:
    """A copy of `configuration` that reaches the same server but authenticates as nobody."""
    bare = copy.deepcopy(configuration)
    bare.cert_file = None
    bare.key_file = None
    bare.api_key = {}
    bare.api_key_prefix = {}
    bare.refresh_api_key_hook = None
    bare.username = None
    bare.password = None
    return bare


def bearer(token: str) -> dict[str, str]:
    """A per-request credential for the generated client (`_request_auth`)."""
    return {"in": "header", "type": "api_key", "key": "authorization", "value": f"Bearer {token}"}


class BatchClient:
    """List, read, create and patch ImageBatch objects; review tokens."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._api_client: kubernetes.client.ApiClient | None = None
        self._caller_client: kubernetes.client.ApiClient | None = None

    def configured(self) -> str | None:
        """Where the cluster comes from ("kubeconfig PATH" / "in-cluster"), None without one."""
        if self._settings.kubeconfig is not None:
            return f"kubeconfig {self._settings.kubeconfig}"
        if self._settings.kubernetes_service_host:
            return "in-cluster service account"
        return None

    def _client(self) -> kubernetes.client.ApiClient:
        with self._lock:
            if self._api_client is None:
                self._api_client = self._load()
            return self._api_client

    def _objects(self, caller: Caller | None) -> kubernetes.client.CustomObjectsApi:
        """The api's own client, or for a caller with a token one that carries no credentials
        of the api (the caller's token is added per request)."""
        if caller is None or caller.kube_token is None:
            return kubernetes.client.CustomObjectsApi(self._client())
        return kubernetes.client.CustomObjectsApi(self._bare_client())

    def _bare_client(self) -> kubernetes.client.ApiClient:
        """A client without the api's credentials, for calls that carry a caller's token."""
        own = self._client()
        with self._lock:
            if self._caller_client is None:
                bare = without_credentials(own.configuration)
                self._caller_client = kubernetes.client.ApiClient(bare)
            return self._caller_client

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
        self,
        what: Callable[..., object],
        args: dict[str, Any],
        *,
        caller: Caller | None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Run one client call in a thread; `args` go to the call, `name` only into errors.

        Custom-object calls answer with the decoded JSON object.
        """
        timeout = self._settings.kube_timeout_seconds
        namespace = str(args["namespace"])
        token = caller.kube_token if caller is not None else None
        auth = {"_request_auth": bearer(token)} if token is not None else {}

        def run() -> dict[str, Any]:
            result = what(
                group=GROUP,
                version=VERSION,
                plural=PLURAL,
                _request_timeout=timeout,
                **auth,
                **args,
            )
            return result if isinstance(result, dict) else {}

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            raise translate(
                exc, namespace=namespace, name=name, as_caller=token is not None
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(f"cannot reach the Kubernetes API server: {exc}") from exc

    async def list(self, namespace: str, *, caller: Caller | None = None) -> list[dict[str, Any]]:
        objects = self._objects(caller)
        result: dict[str, Any] = await self._call(
            objects.list_namespaced_custom_object, {"namespace": namespace}, caller=caller
        )
        items = result.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    async def get(
        self, namespace: str, name: str, *, caller: Caller | None = None
    ) -> dict[str, Any]:
        objects = self._objects(caller)
        result: dict[str, Any] = await self._call(
            objects.get_namespaced_custom_object,
            {"namespace": namespace, "name": name},
            caller=caller,
            name=name,
        )
        return result

    async def create(
        self, namespace: str, manifest: dict[str, Any], *, caller: Caller | None = None
    ) -> dict[str, Any]:
        objects = self._objects(caller)
        result: dict[str, Any] = await self._call(
            objects.create_namespaced_custom_object,
            {"namespace": namespace, "body": manifest},
            caller=caller,
            name=manifest["metadata"]["name"],
        )
        return result

    async def patch(
        self,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to one ImageBatch (custom resources take no strategic merge
        patch, the client's choice for a dict body)."""
        objects = self._objects(caller)
        result: dict[str, Any] = await self._call(
            objects.patch_namespaced_custom_object,
            {
                "namespace": namespace,
                "name": name,
                "body": patch,
                "_content_type": MERGE_PATCH,
            },
            caller=caller,
            name=name,
        )
        return result

    async def review_token(self, token: str) -> dict[str, Any]:
        """The `status` of a TokenReview of `token`, asked with the api's own credentials."""
        authn = kubernetes.client.AuthenticationV1Api(self._client())
        body = kubernetes.client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=kubernetes.client.V1TokenReviewSpec(token=token),
        )
        timeout = self._settings.kube_timeout_seconds

        def run() -> dict[str, Any]:
            review = authn.create_token_review(body, _request_timeout=timeout)
            status = review.status.to_dict() if review.status is not None else {}
            return status if isinstance(status, dict) else {}

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            message = _status_body(exc).get("message") or exc.reason
            raise DependencyUnavailable(
                f"the Kubernetes API server refused the api's TokenReview ({exc.status}): "
                f"{message}; the api's ServiceAccount needs `create tokenreviews`"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(f"cannot reach the Kubernetes API server: {exc}") from exc

    async def may_create_batches(self, token: str, namespace: str) -> tuple[bool, str]:
        """Whether the holder of `token` may create ImageBatches in `namespace`, and the
        authorizer's reason: a SelfSubjectAccessReview sent with that token alone (every
        authenticated user may make one), so the api needs no right of its own for it."""
        authz = kubernetes.client.AuthorizationV1Api(self._bare_client())
        body = kubernetes.client.V1SelfSubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SelfSubjectAccessReview",
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    group=GROUP, resource=PLURAL, verb="create", namespace=namespace
                )
            ),
        )
        timeout = self._settings.kube_timeout_seconds

        def run() -> tuple[bool, str]:
            review = authz.create_self_subject_access_review(
                body, _request_timeout=timeout, _request_auth=bearer(token)
            )
            status = review.status
            if status is None:
                return False, ""
            return bool(status.allowed) and not status.denied, status.reason or ""

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            raise translate(exc, namespace=namespace, name=None, as_caller=True) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(f"cannot reach the Kubernetes API server: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for client in (self._api_client, self._caller_client):
                if client is not None:
                    client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
            self._caller_client = None
