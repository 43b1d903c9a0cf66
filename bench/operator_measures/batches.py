"""ImageBatch objects of the bench namespace through the Kubernetes client: apply one with a
PostgreSQL source, read its status, wait on it, delete it and check its queue went with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from kubernetes.client.exceptions import ApiException

from bench.operator_measures.servers import (
    NAMESPACE,
    Servers,
)
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION


def batch_body(name: str, limit: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ImageBatch",
        "metadata": {"name": name},
        "spec": {"source": {"postgres": {"table": "images", "limit": limit}}},
    }


async def create_batch(server: Servers, name: str, limit: int) -> None:
    await asyncio.to_thread(
        server.objects.create_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        batch_body(name, limit),
    )


async def batch_status(server: Servers, name: str) -> dict[str, Any] | None:
    """The batch's status ({} before the first report), None once the batch is gone."""
    try:
        obj = await asyncio.to_thread(
            server.objects.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(obj.get("status") or {})


async def wait_for(
    probe: Callable[[], Awaitable[Any]],
    check: Callable[[Any], bool],
    *,
    interval: float,
    within: float,
    what: str,
) -> tuple[Any, float]:
    """Poll until `check(probe())`; (the value, perf_counter when it was seen)."""
    deadline = time.perf_counter() + within
    while True:
        value = await probe()
        seen = time.perf_counter()
        if check(value):
            return value, seen
        if seen > deadline:
            raise RuntimeError(f"no {what} within {within:.0f}s; last seen: {value!r}")
        await asyncio.sleep(interval)


async def delete_batch(server: Servers, name: str) -> None:
    """Delete the batch and wait until its finalizer (queues, items) has run."""
    await asyncio.to_thread(
        server.objects.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
    )
    await wait_for(
        lambda: batch_status(server, name),
        lambda s: s is None,
        interval=0.2,
        within=300,
        what=f"deletion of {name}",
    )
    await server.pool.execute("VACUUM (ANALYZE) jobs")


async def queue_absent(server: Servers, queue: str) -> bool:
    channel = await server.broker.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return True
    finally:
        if not channel.is_closed:
            await channel.close()
    return False
