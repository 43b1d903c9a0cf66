"""Worker Deployments made real as local processes, for a cluster that has no nodes.

Under envtest the API server and controller-manager run, but pods never start. The operator still
creates one worker Deployment per ImageBatch (label `imagejobs.io/batch`); `WorkerSupervisor`
plays kubelet for those: it polls them and keeps `spec.replicas` processes of
`python -m imagebatch.worker` running, each with the environment its pod would get (see
`local_pod`), its output in a log file, its health server on a free loopback port.

Like a Deployment it replaces a process that exits (after a short CrashLoopBackOff), rolls the
processes when the pod template changes, stops the newest ones first when scaled down (SIGTERM,
then SIGKILL after `terminationGracePeriodSeconds`), stops everything when the Deployment goes,
and starts nothing while a referenced Secret is missing (the reason is kept for `reason()`).
It never imports the worker: the processes are what is under test.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import json
import logging
import signal
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self

import kubernetes
from kubernetes.client.exceptions import ApiException

from imagebatch.devservers.local_pod import (
    ContainerConfigError,
    PodProcess,
    SourceKind,
    WorkerInfo,
    container_env,
    localise_paths,
    spawn,
)
from imagebatch.devservers.process import free_port

__all__ = ["BATCH_LABEL", "WorkerInfo", "WorkerSupervisor"]

log = logging.getLogger(__name__)

BATCH_LABEL = "imagejobs.io/batch"
CONTAINER = "worker"
DATA_MOUNT = PurePosixPath("/data")
DEFAULT_GRACE_SECONDS = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 10.0
BACKOFF_RESET_AFTER = 60.0
"""A process that ran this long before exiting starts the backoff from the beginning again."""
REQUEST_TIMEOUT = 10.0
HISTORY = 50
"""Exited processes remembered per Deployment (their exit codes and logs, for tests)."""


@dataclass
class _Deployment:
    namespace: str
    name: str
    revision: str = ""
    desired: int = 0
    template: dict[str, Any] = field(default_factory=dict)
    gone: bool = False
    reason: str | None = None
    live: list[PodProcess] = field(default_factory=list)
    history: deque[PodProcess] = field(default_factory=lambda: deque(maxlen=HISTORY))
    backoff: float = BACKOFF_FIRST
    not_before: float = 0.0

    def observe(self, deployment: Mapping[str, Any]) -> None:
        spec = deployment.get("spec") or {}
        replicas = spec.get("replicas")
        self.desired = 1 if replicas is None else int(replicas)
        self.template = spec.get("template") or {}
        self.gone = False
        uid = (deployment.get("metadata") or {}).get("uid", "")
        fingerprint = json.dumps({"uid": uid, "template": self.template}, sort_keys=True)
        self.revision = hashlib.sha256(fingerprint.encode()).hexdigest()[:10]

    def vanish(self) -> None:
        self.gone, self.desired, self.reason = True, 0, None

    def grace(self) -> float:
        value = (self.template.get("spec") or {}).get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE_SECONDS if value is None else float(value)

    def container(self) -> Mapping[str, Any]:
        for container in (self.template.get("spec") or {}).get("containers") or []:
            if container.get("name") == CONTAINER:
                return dict(container)
        raise ContainerConfigError(f"the pod template has no container named {CONTAINER!r}")


class _Cluster:
    """The few reads the supervisor makes, on the official (synchronous) client: call in a thread.

    Answers are decoded from the raw JSON (`_preload_content=False`), so they have the same
    camelCase keys as the manifests and `kubectl get -o json`.
    """

    def __init__(self, kubeconfig: Path) -> None:
        self.client: Any = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        self._apps = kubernetes.client.AppsV1Api(self.client)
        self._core = kubernetes.client.CoreV1Api(self.client)

    def deployments(self, namespace: str) -> list[dict[str, Any]]:
        # Without preloading, the call answers with the HTTP response, whatever its annotation.
        response: Any = self._apps.list_namespaced_deployment(
            namespace, label_selector=BATCH_LABEL, _request_timeout=REQUEST_TIMEOUT,
            _preload_content=False,
        )  # fmt: skip
        items = json.loads(response.data).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def data(self, namespace: str, kind: SourceKind, name: str) -> dict[str, str] | None:
        read = (
            self._core.read_namespaced_secret
            if kind == "Secret"
            else self._core.read_namespaced_config_map
        )
        try:
            response: Any = read(
                name, namespace, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ContainerConfigError(f"cannot read {kind} {name}: {exc.reason}") from exc
        data = json.loads(response.data).get("data") or {}
        if kind == "Secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return {str(k): str(v) for k, v in data.items()}

    def close(self) -> None:
        self.client.close()


class WorkerSupervisor:
    """Runs the worker Deployments of `namespaces` as local processes while in `async with`."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: Sequence[str],
        data_dir: Path,
        log_dir: Path,
        *,
        env_overrides: Mapping[str, str] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.data_dir = data_dir.absolute()  # the processes run in another folder
        self.log_dir = log_dir.absolute()
        self.env_overrides = dict(env_overrides or {})
        self.poll_interval = poll_interval
        self._deployments: dict[tuple[str, str], _Deployment] = {}
        self._cluster: _Cluster | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._list_errors: dict[str, str] = {}
        self._launches: set[asyncio.Task[None]] = set()

    # -- introspection ---------------------------------------------------------------------

    def workers(self, namespace: str, name: str) -> list[WorkerInfo]:
        """Every process of the Deployment this supervisor remembers, oldest first."""
        state = self._deployments.get((namespace, name))
        if state is None:
            return []
        return [w.info() for w in sorted([*state.history, *state.live], key=lambda w: w.started)]

    def running(self, namespace: str, name: str) -> int:
        """Processes of the Deployment that run and are not being stopped."""
        return sum(1 for w in self.workers(namespace, name) if w.state == "running")

    def reason(self, namespace: str, name: str) -> str | None:
        """Why the Deployment has fewer processes than it asks for (e.g. a missing Secret)."""
        state = self._deployments.get((namespace, name))
        return state.reason if state else None

    def logs(self, namespace: str, name: str) -> list[Path]:
        return [w.log for w in self.workers(namespace, name)]

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._cluster = await asyncio.to_thread(_Cluster, self.kubeconfig)
        atexit.register(self._kill_all)
        self._loop_task = asyncio.create_task(self._run(), name="worker-supervisor")
        return self

    async def stop(self) -> None:
        """SIGTERM every process, wait for each up to its grace period, SIGKILL stragglers."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        await asyncio.gather(*self._launches, return_exceptions=True)
        live = [w for state in self._deployments.values() for w in state.live]
        try:
            for worker in live:
                worker.terminate()
            await asyncio.gather(*(w.process.wait() for w in live))
        finally:
            self._kill_all()  # only does something if the wait above was cancelled
            atexit.unregister(self._kill_all)
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _kill_all(self) -> None:
        """Last resort (a cancelled stop, an interpreter exit): no process outlives us."""
        for state in self._deployments.values():
            for worker in state.live:
                worker.signal(signal.SIGKILL)

    # -- the control loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._reconcile()
            except Exception:
                log.exception("worker supervisor: reconcile failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def _reconcile(self) -> None:
        for namespace in self.namespaces:
            listed = await self._list(namespace)
            if listed is None:
                continue  # the API is unreachable: keep what runs, as a kubelet would
            seen = {item["metadata"]["name"]: item for item in listed}
            for (ns, name), state in self._deployments.items():
                if ns == namespace and name not in seen:
                    state.vanish()
            for name, item in seen.items():
                key = (namespace, name)
                self._deployments.setdefault(key, _Deployment(namespace, name)).observe(item)
        for state in self._deployments.values():
            await self._converge(state)

    async def _list(self, namespace: str) -> list[dict[str, Any]] | None:
        assert self._cluster is not None
        try:
            listed = await asyncio.to_thread(self._cluster.deployments, namespace)
        except Exception as exc:  # the client raises ApiException, urllib3 and OS errors
            message = f"{type(exc).__name__}: {exc}"
            if self._list_errors.get(namespace) != message:
                log.warning("cannot list Deployments in %s: %s", namespace, message)
            self._list_errors[namespace] = message
            return None
        self._list_errors.pop(namespace, None)
        return listed

    async def _converge(self, state: _Deployment) -> None:
        self._reap(state)
        current = [w for w in state.live if not w.terminating]
        for worker in current:
            if worker.revision != state.revision:
                worker.terminate()  # rolled: the template (say its env) changed
        current = [w for w in current if w.revision == state.revision]
        extra = len(current) - state.desired
        for worker in sorted(current, key=lambda w: w.started, reverse=True)[: max(extra, 0)]:
            worker.terminate()
        for _ in range(-extra):
            if time.monotonic() < state.not_before or not await self._start_one(state):
                break

    def _reap(self, state: _Deployment) -> None:
        """Move exited processes to the history; one that exited unasked delays the next start."""
        for worker in [w for w in state.live if w.process.returncode is not None]:
            state.live.remove(worker)
            state.history.append(worker)
            worker.ended = worker.ended or time.monotonic()
            if worker.terminating:
                log.info("%s stopped (exit code %s)", worker.name, worker.process.returncode)
                continue
            if worker.ended - worker.started >= BACKOFF_RESET_AFTER:
                state.backoff = BACKOFF_FIRST
            state.not_before = time.monotonic() + state.backoff
            log.warning(
                "%s exited with %s; replacing it in %.0fs (log: %s)",
                worker.name, worker.process.returncode, state.backoff, worker.log,
            )  # fmt: skip
            state.backoff = min(state.backoff * 2, BACKOFF_MAX)

    def _set_reason(self, state: _Deployment, reason: str | None) -> None:
        if reason != state.reason:
            where = f"{state.namespace}/{state.name}"
            if reason:
                log.warning("not starting workers of %s: %s", where, reason)
            else:
                log.info("workers of %s can start now", where)
        state.reason = reason

    async def _start_one(self, state: _Deployment) -> bool:
        """Start one process of the current revision; False (and the reason) if it cannot."""
        assert self._cluster is not None
        cluster, namespace = self._cluster, state.namespace
        pod = f"{state.name}-{state.revision}-{uuid.uuid4().hex[:5]}"
        fields = {
            "metadata.name": pod,
            "metadata.namespace": namespace,
            "spec.nodeName": "localhost",
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        try:
            env = await asyncio.to_thread(
                container_env,
                state.container(),
                lambda kind, name: cluster.data(namespace, kind, name),
                fields,
            )
        except ContainerConfigError as exc:
            self._set_reason(state, f"CreateContainerConfigError: {exc}")
            return False
        except Exception as exc:  # the API went away between the list and the reads
            self._set_reason(state, f"cannot read the pod's configuration: {exc}")
            return False
        self._set_reason(state, None)
        folder = self.log_dir / namespace
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env |= localise_paths(
            env, mount=DATA_MOUNT, data_dir=self.data_dir, ephemeral=folder / f"{pod}.rootfs"
        )
        env |= {"HOSTNAME": pod, "METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(port)}
        env |= self.env_overrides
        # Shielded: a stop() that cancels the loop mid-spawn still finds the process in `live`.
        launch = asyncio.create_task(self._launch(state, pod, env))
        self._launches.add(launch)
        launch.add_done_callback(self._launches.discard)
        await asyncio.shield(launch)
        return True

    async def _launch(self, state: _Deployment, pod: str, env: dict[str, str]) -> None:
        folder = self.log_dir / state.namespace
        worker = await spawn(
            pod, state.revision, env, log_path=folder / f"{pod}.log", cwd=self.log_dir,
            grace=state.grace(),
        )  # fmt: skip
        log.info("started %s (pid %s, metrics :%s)", pod, worker.process.pid, worker.metrics_port)
        worker.keep(self._notice_exit(worker))
        state.live.append(worker)

    async def _notice_exit(self, worker: PodProcess) -> None:
        await worker.process.wait()
        worker.ended = time.monotonic()
        self._wake.set()
