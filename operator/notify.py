"""spec.notify: one CloudEvents 1.0 event (structured mode, JSON) per ending of a batch.

The event and the retry schedule are pure functions (table-tested); `Notifier.send` is the one
effect, an HTTP POST through the same SSRF guard as the workers' downloads: loopback, private
and link-local addresses are refused unless ALLOW_PRIVATE_WEBHOOKS=true (an in-cluster
receiver), judged on the address actually connected, redirects not followed.

Delivery is at least once with a stable id: the ending's id is the event's `id` on every attempt
(CloudEvents receivers deduplicate on `source` + `id`), and an accepted event is recorded before
anything else happens, so it is not sent again, also after an operator restart.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from imagebatch.core.address_guard import AddressGuard, GuardedResolver, watch_blocks
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
EVENT_TYPES = {"Succeeded": "io.imagejobs.batch.succeeded", "Failed": "io.imagejobs.batch.failed"}
GIVE_UP_AFTER_SECONDS = 600.0
"""Retries stop this long after the ending (the contract's 10 minutes)."""
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0


def source(namespace: str, name: str) -> str:
    """The event's `source`: the batch's path in the Kubernetes API."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def cloud_event(
    namespace: str,
    name: str,
    ending_id: str,
    phase: str,
    status: Mapping[str, Any],
    time: dt.datetime,
) -> dict[str, Any]:
    """The structured-mode event of one ending; `status` becomes its `data`."""
    return {
        "specversion": "1.0",
        "type": EVENT_TYPES[phase],
        "source": source(namespace, name),
        "id": ending_id,
        "time": time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "subject": name,
        "datacontenttype": "application/json",
        "data": {k: v for k, v in status.items() if k != "kopf"},
    }


def retry_delay(attempts: int, since_ending: float) -> float | None:
    """Seconds to wait after `attempts` failed attempts, `since_ending` seconds after the
    ending; None when the next attempt would start past GIVE_UP_AFTER_SECONDS."""
    delay = min(FIRST_DELAY_SECONDS * 2.0 ** max(attempts - 1, 0), MAX_DELAY_SECONDS)
    if since_ending + delay > GIVE_UP_AFTER_SECONDS:
        return None
    return delay


class NotifyFailed(Exception):
    """An attempt that did not deliver; the message says why (for the Notified condition)."""


class Notifier:
    """Sends events; one aiohttp session per operator, guarded like the workers' downloads."""

    def __init__(self, allow_private: bool) -> None:
        self.guard = AddressGuard(allow_private=allow_private)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.guard), socket_factory=self.guard.socket_factory
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def send(self, url: str, event: Mapping[str, Any]) -> int:
        """POST `event` to `url`; the status of a 2xx answer, else `NotifyFailed`."""
        body = json.dumps(event, separators=(",", ":")).encode()
        blocks = watch_blocks()
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": CONTENT_TYPE},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            ) as response:
                if 200 <= response.status < 300:
                    return response.status
                raise NotifyFailed(f"{url} answered {response.status} {response.reason or ''}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if blocks.refused:
                raise NotifyFailed(
                    f"cannot POST to {url}: {blocks.refused[0]} (ALLOW_PRIVATE_WEBHOOKS=true "
                    "lets the operator reach an in-cluster receiver)"
                ) from exc
            raise NotifyFailed(f"cannot POST to {url}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
