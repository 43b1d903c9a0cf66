"""One ImageBatch in the cluster kubectl would talk to.

The cluster comes from `--kubeconfig`, else `KUBECONFIG` (a `:`-separated list, merged as kubectl
merges it), else `~/.kube/config`, else the pod's service account; the namespace from `-n`, else
the context's, else `default` (inside a pod: the pod's own).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION
from imagebatch.kubectl.errors import PluginError

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TIMEOUT_SECONDS = 30.0


def kubeconfig_files(explicit: str | None) -> str | None:
    """The kubeconfig path(s) to load, as kubectl picks them; None when there is none."""
    if explicit:
        return explicit
    listed = os.environ.get("KUBECONFIG", "")
    if any(p for p in listed.split(os.pathsep) if p):
        return listed
    default = Path.home() / ".kube" / "config"
    return str(default) if default.is_file() else None


@dataclass
class Cluster:
    """Read and patch ImageBatches of one namespace."""

    namespace: str
    api_client: kubernetes.client.ApiClient
    source: str
    """Where the cluster came from, for error messages."""

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
    ) -> Cluster:
        files = kubeconfig_files(kubeconfig)
        try:
            if files is not None:
                client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=files, context=context
                )
                if namespace is None:
                    contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                        config_file=files
                    )
                    if context is not None:
                        active = next((c for c in contexts if c.get("name") == context), active)
                    namespace = ((active or {}).get("context") or {}).get("namespace")
                return cls(namespace or "default", client, f"kubeconfig {files}")
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                configuration = kubernetes.client.Configuration()
                kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                if namespace is None and SERVICE_ACCOUNT_NAMESPACE.is_file():
                    namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                client = kubernetes.client.ApiClient(configuration)
                return cls(namespace or "default", client, "the pod's service account")
        except (ConfigException, OSError, ValueError) as exc:
            raise PluginError(f"cannot load the Kubernetes configuration: {exc}") from exc
        raise PluginError(
            "no Kubernetes cluster is configured: set KUBECONFIG or pass --kubeconfig"
        )

    def _objects(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api_client)

    def get(self, name: str) -> dict[str, Any]:
        """The ImageBatch `name` as the API server has it."""
        return self._call(
            name,
            lambda: self._objects().get_namespaced_custom_object(
                group=GROUP,
                version=VERSION,
                namespace=self.namespace,
                plural=PLURAL,
                name=name,
                _request_timeout=TIMEOUT_SECONDS,
            ),
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (custom resources take no strategic merge patch, the
        client's choice for a dict body)."""
        return self._call(
            name,
            lambda: self._objects().patch_namespaced_custom_object(
                group=GROUP,
                version=VERSION,
                namespace=self.namespace,
                plural=PLURAL,
                name=name,
                body=patch,
                _content_type="application/merge-patch+json",
                _request_timeout=TIMEOUT_SECONDS,
            ),
        )

    def _call(self, name: str, call: Any) -> dict[str, Any]:
        try:
            result = call()
        except ApiException as exc:
            raise PluginError(self._explain(exc, name)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PluginError(
                f"cannot reach the Kubernetes API server ({self.source}): {exc}"
            ) from exc
        return result if isinstance(result, dict) else {}

    def _explain(self, exc: ApiException, name: str) -> str:
        try:
            body = json.loads(exc.body or "")
        except (TypeError, ValueError):
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        if exc.status == 404:
            kind = (body.get("details") or {}).get("kind") if isinstance(body, dict) else None
            if kind == PLURAL:
                return f'imagebatch "{name}" not found in namespace "{self.namespace}"'
            return f"{message or 'not found'} (is the ImageBatch CRD, {PLURAL}.{GROUP}, installed?)"
        return f"the Kubernetes API server answered {exc.status}: {message or exc.reason}"

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]
