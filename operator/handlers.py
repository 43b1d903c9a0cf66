"""The kopf handlers: a table of contents. Each batch gets a daemon (`BatchRun`: validate →
ensure queue → materialize items → publish → ensure children → report) and a finalizer that
removes what owner references cannot: the batch's queues and its items."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from imagebatch.core.dependencies import BROKER_ERRORS, DB_ERRORS
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION, SpecInvalid, run_spec
from imagebatch.operator import items
from imagebatch.operator.batch import BatchRun
from imagebatch.operator.context import OperatorContext
from imagebatch.operator.queues import delete_queues

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)


def configure(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    """kopf's bookkeeping under the project's own domain, no peering CRD, no log-line Events."""
    settings.persistence.finalizer = "imagejobs.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="imagejobs.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="imagejobs.io", key="last-handled-configuration"
    )
    settings.peering.standalone = True
    settings.posting.enabled = True
    settings.posting.level = logging.CRITICAL  # Events are posted explicitly (BatchRun)
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    return settings


def connection_info(ctx: OperatorContext) -> kopf.ConnectionInfo:
    """kopf's credentials, taken from the same client configuration the operator uses."""
    config = ctx.kube.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(ctx)

    @kopf.on.cleanup(registry=registry)
    async def close_connections(**_: Any) -> None:
        await ctx.close()

    @kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=30.0)
    async def run_batch(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        def post_event(kind: str, reason: str, message: str) -> None:
            kopf.event(body, type=kind, reason=reason, message=message)

        stop = asyncio.Event()

        async def watch_stop() -> None:
            await stopped.wait()
            stop.set()

        watcher = asyncio.create_task(watch_stop())
        try:
            await BatchRun(ctx, body, post_event).run(stop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def forget_batch(body: kopf.Body, **_: Any) -> None:
        namespace, name = str(body.metadata.namespace), str(body.metadata.name)
        try:
            spec = run_spec(namespace, name, dict(body.get("spec") or {}))
        except SpecInvalid:
            spec = None
        try:
            if spec is not None:
                await delete_queues(ctx.broker, spec)
            removed = await items.forget(ctx.pool, f"{namespace}/{name}")
        except (*DB_ERRORS, *BROKER_ERRORS) as exc:
            raise kopf.TemporaryError(f"cannot clean up yet: {exc!r}", delay=5) from exc
        ctx.metrics.phase(f"{namespace}/{name}", None)
        log.info("%s/%s deleted: queues removed, %d items forgotten", namespace, name, removed)
