"""The ImageBatch api, for what only it knows: a batch's items and its manifest's lines.

`--api URL` names it (the cluster does not say where it runs), `--token` or `IMAGEBATCH_TOKEN`
the caller's token (a Kubernetes token where the api runs with `AUTH_MODE=kubernetes`). The
token is sent only to that URL, never taken from the kubeconfig on the plugin's own initiative.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from imagebatch.kubectl.errors import PluginError

PAGE_SIZE = 500
TIMEOUT_SECONDS = 30.0


class ImageBatchApi:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        namespace: str,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._namespace = namespace
        self._base = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self._base, headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        )

    def failed_items(self, name: str) -> Iterator[dict[str, Any]]:
        """Every failed item of the batch, page after page by the `after` cursor."""
        after: Any = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {
                "status": "failed",
                "limit": PAGE_SIZE,
                "namespace": self._namespace,
            }
            if after is not None:
                params["after"] = after
            page = self._json(f"/batches/{name}/items", params)
            items = page.get("items")
            if not isinstance(items, list):
                raise PluginError(f"{self._base}/batches/{name}/items answered without `items`")
            yield from (i for i in items if isinstance(i, dict))
            after = page.get("after")
            if after is None or not items:
                return
            if str(after) in seen:
                raise PluginError(f"{self._base} gave the cursor {after!r} twice; stopping")
            seen.add(str(after))

    def manifest_lines(self, name: str) -> Iterator[str]:
        """The lines of the batch's manifest, as the api streams them."""
        url = f"/batches/{name}/manifest"
        try:
            with self._http.stream("GET", url, params={"namespace": self._namespace}) as answer:
                self._check(answer, url)
                yield from (line for line in answer.iter_lines() if line)
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the api at {self._base}: {exc}") from exc

    def _json(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._http.get(url, params=params, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the api at {self._base}: {exc}") from exc
        self._check(answer, url)
        try:
            body = answer.json()
        except ValueError as exc:
            raise PluginError(f"{self._base}{url} did not answer JSON") from exc
        if not isinstance(body, dict):
            raise PluginError(f"{self._base}{url} did not answer a JSON object")
        return body

    def _check(self, answer: httpx.Response, url: str) -> None:
        if answer.status_code < 400:
            return
        answer.read()
        try:
            detail = answer.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        raise PluginError(
            f"the api answered {answer.status_code} for {url}: {detail or answer.reason_phrase}"
        )

    def close(self) -> None:
        self._http.close()
