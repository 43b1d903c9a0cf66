"""The servers one benchmark run starts — PostgreSQL seeded with `images` rows, RabbitMQ, and
(for the publish and lag parts) a Kubernetes control plane with the bench namespace, its
connections Secret and the operator as a process — and what is read off them: each process's
CPU (through bench/cpu_accounting.py) and the operator's own /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes
from aio_pika.abc import AbstractRobustConnection

from bench.cpu_accounting import thread_cpu_seconds, tree_cpu_seconds
from imagebatch.core.broker import connect
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.kube import KubeControlPlane
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.postgres import PostgresServer
from imagebatch.devservers.rabbitmq import RabbitMQServer

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "bench"
SECRET = "imagebatch-connections"
CRDS = REPO / "crds"


@dataclass
class Servers:
    """What one invocation started, and the clients on it."""

    postgres: PostgresServer
    rabbit: RabbitMQServer
    messaging: CommonSettings
    pool: asyncpg.Pool
    broker: AbstractRobustConnection
    workdir: Path
    kube: KubeControlPlane | None = None
    objects: Any = None
    """kubernetes.client.CustomObjectsApi"""
    core: Any = None
    """kubernetes.client.CoreV1Api"""
    operator: OperatorProcess | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None
        assert self.operator.process is not None
        return self.operator.process.pid

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each process that takes part in a publish."""
        postgres_pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        snapshot = {
            "postgres": tree_cpu_seconds(postgres_pid),
            "bench_process": time.process_time(),
        }
        rabbit_pid_file = self.rabbit.base / "rabbitmq.pid"
        with contextlib.suppress(OSError, ValueError):
            snapshot["rabbitmq"] = tree_cpu_seconds(int(rabbit_pid_file.read_text().strip()))
        if self.operator is not None and self.operator.process is not None:
            snapshot["operator"] = tree_cpu_seconds(self.operator_pid)
            snapshot["operator_event_loop_thread"] = thread_cpu_seconds(self.operator_pid)
        return snapshot


def cpu_used(
    before: dict[str, float], after: dict[str, float], items_count: int, wall: float
) -> Any:
    return {
        name: {
            "cpu_seconds": round(after[name] - before[name], 2),
            "cores_busy": round((after[name] - before[name]) / wall, 2),
            "cpu_ms_per_1000_items": round((after[name] - before[name]) * 1e6 / items_count, 1),
        }
        for name in before
        if name in after
    }


async def operator_metrics(server: Servers) -> dict[str, float]:
    assert server.operator is not None
    url = server.operator.metrics_url

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    values: dict[str, float] = {}
    for line in (await asyncio.to_thread(scrape)).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def histogram_mean(
    before: dict[str, float], after: dict[str, float], name: str
) -> tuple[int, float]:
    """(observations, mean seconds) of histogram `name` between two scrapes."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return int(count), (total / count if count else 0.0)


@contextlib.asynccontextmanager
async def servers(
    rows: int, workdir: Path, *, with_operator: bool, env_overrides: dict[str, str]
) -> AsyncIterator[Servers]:
    async with contextlib.AsyncExitStack() as stack:
        postgres = stack.enter_context(PostgresServer())
        rabbit = stack.enter_context(RabbitMQServer(management=False))
        messaging = CommonSettings(rabbit_url=rabbit.url, database_url=postgres.url)
        await migrate(postgres.url)
        pool = await create_pool(postgres.url, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)
        broker = await connect(rabbit.url)
        stack.push_async_callback(broker.close)
        await pool.execute(
            "INSERT INTO images (url) SELECT 'http://127.0.0.1:9/x/' || g || '.jpg'"
            " FROM generate_series(1, $1::int) g",
            rows,
        )
        await pool.execute("VACUUM (ANALYZE) images")
        server = Servers(
            postgres, rabbit, messaging, pool, broker, workdir, env_overrides=env_overrides
        )
        if with_operator:
            kube = KubeControlPlane()
            stack.enter_context(contextlib.closing(kube))
            kube.start(CRDS)
            server.kube = kube
            client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))  # type: ignore[no-untyped-call]
            stack.callback(client.close)
            server.objects = kubernetes.client.CustomObjectsApi(client)
            server.core = kubernetes.client.CoreV1Api(client)
            server.core.create_namespace({"metadata": {"name": NAMESPACE}})
            server.core.create_namespaced_secret(
                NAMESPACE,
                {
                    "metadata": {"name": SECRET},
                    "stringData": {
                        "RABBIT_URL": rabbit.url,
                        "DATABASE_URL": postgres.url,
                        "SOURCE_DATABASE_URL": postgres.url,  # batches read `images` here
                    },
                },
            )
            env = {
                "DATABASE_URL": postgres.url,
                "RABBIT_URL": rabbit.url,
                "KUBECONFIG": str(kube.kubeconfig),
                "WATCH_NAMESPACE": NAMESPACE,
                **env_overrides,
            }
            operator = OperatorProcess(env, workdir / "operator.log")
            server.operator = operator
            stack.push_async_callback(operator.stop)
            await operator.start()
        try:
            yield server
        except BaseException:
            log = workdir / "operator.log"
            if log.exists():
                tail = log.read_text(errors="replace")[-3000:]
                print(f"--- operator log (tail) ---\n{tail}", file=sys.stderr)
            raise
