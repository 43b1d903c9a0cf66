"""Publishing jobs to RabbitMQ with confirms, one producer span per message.

The api keeps one robust connection and one confirm channel. When the broker is down at start-up
the api still starts (reads keep working, /readyz says why) and a background task keeps trying;
a publish without a broker raises `BrokerUnavailable`, which the routes answer with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from imagebatch.api.errors import DependencyUnavailable
from imagebatch.core.broker import connect, publish_job
from imagebatch.core.messages import ImageJob
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import declare_topology

log = logging.getLogger(__name__)
tracer = trace.get_tracer("imagebatch.api")

PUBLISH_CONCURRENCY = 256
"""Confirms awaited at once: pipelining them is ~5x faster than one by one."""


class BrokerUnavailable(DependencyUnavailable):
    """No connection to RabbitMQ, or it did not confirm in time."""


class PublishFailed(DependencyUnavailable):
    """Some messages of a publish call did not reach the broker."""

    def __init__(self, detail: str, *, published: Sequence[str]) -> None:
        super().__init__(detail)
        self.published = list(published)


class Publisher:
    """The api's producer side of the broker."""

    def __init__(self, settings: CommonSettings, *, confirm_timeout: float, retry_every: float):
        self._settings = settings
        self._confirm_timeout = confirm_timeout
        self._retry_every = retry_every
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self.last_error = "not connected yet"

    async def start(self) -> None:
        """Connect now if the broker answers, else keep trying in the background."""
        if not await self._try_connect():
            self._reconnector = asyncio.create_task(self._keep_trying(), name="broker-connect")

    async def _try_connect(self) -> bool:
        try:
            connection = await connect(self._settings.rabbit_url)
        except Exception as exc:  # aio-pika raises several unrelated types for "cannot connect"
            self.last_error = f"cannot connect to RabbitMQ: {exc or type(exc).__name__}"
            log.warning("%s; retrying every %.0fs", self.last_error, self._retry_every)
            return False
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            topology = await declare_topology(channel, self._settings)
        except Exception as exc:
            self.last_error = f"cannot declare the topology on RabbitMQ: {exc}"
            await connection.close()
            return False
        self._connection, self._channel, self._exchange = connection, channel, topology.exchange
        self.last_error = ""
        log.info("connected to RabbitMQ; publishing to exchange %s", self._settings.exchange)
        return True

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(self._retry_every)
            if await self._try_connect():
                return

    async def close(self) -> None:
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
        if self._connection is not None:
            await self._connection.close()

    def problem(self) -> str | None:
        """Why publishing cannot work right now, or None when it can."""
        if self._connection is None or self._channel is None:
            return self.last_error or "not connected to RabbitMQ"
        if self._connection.is_closed or self._channel.is_closed:
            return "the connection to RabbitMQ is down; reconnecting"
        return None

    async def publish(self, jobs: Sequence[ImageJob]) -> list[str]:
        """Publish `jobs` with confirms; returns their ids once the broker has all of them.

        Raises `PublishFailed` (naming the ids that did get through) when any is not confirmed.
        """
        problem = self.problem()
        if problem is not None or self._exchange is None:
            raise PublishFailed(f"RabbitMQ is unavailable: {problem}", published=[])
        exchange = self._exchange
        limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def one(job: ImageJob) -> str:
            async with limit:
                await self._publish_one(exchange, job)
            return job.id

        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
        published = [r for r in results if isinstance(r, str)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            reason = failures[0]
            raise PublishFailed(
                f"RabbitMQ did not confirm {len(failures)} of {len(jobs)} message(s): "
                f"{reason or type(reason).__name__}",
                published=published,
            )
        return published

    async def _publish_one(self, exchange: AbstractExchange, job: ImageJob) -> None:
        """One producer span per message; the message's traceparent names this span."""
        routing_key = self._settings.routing_key
        with tracer.start_as_current_span(
            f"publish {exchange.name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": exchange.name,
                "messaging.rabbitmq.destination.routing_key": routing_key,
                "messaging.message.id": job.id,
            },
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                await asyncio.wait_for(
                    publish_job(exchange, job, routing_key), timeout=self._confirm_timeout
                )
            except TimeoutError as exc:
                span.set_status(Status(StatusCode.ERROR, "no confirm"))
                raise BrokerUnavailable(
                    f"RabbitMQ did not confirm within {self._confirm_timeout:g}s"
                ) from exc
