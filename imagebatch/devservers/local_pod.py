"""One pod of a worker Deployment, run as a local process.

Two halves. *Its environment*: the kubelet builds a container's environment from its `envFrom`
sources (in order), then its `env` entries (`value`s with `$(VAR)` references expanded,
`valueFrom` resolved), and refuses to start the container (CreateContainerConfigError) when a
required Secret, ConfigMap or key is missing. `container_env` does the same from plain
dictionaries — the Deployment's JSON — so the supervisor runs what a pod would run, and the rules
can be tested without a cluster; `localise_paths` points the paths a pod sees on its volume at a
local folder. *Its process*: `spawn` starts the worker, `PodProcess` stops it the way a kubelet
stops a pod (SIGTERM, SIGKILL after the grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from imagebatch.devservers.process import spawn_module

log = logging.getLogger(__name__)

SourceKind = Literal["Secret", "ConfigMap"]
Reader = Callable[[SourceKind, str], Mapping[str, str] | None]
"""Reads a Secret's (decoded) or ConfigMap's data by name in the pod's namespace; None if absent."""

PATH_SETTINGS = {"OUTPUT_DIR": "/data", "UPLOADS_DIR": "/data/uploads"}
"""The worker's path settings and their defaults (README, "The worker"). Repeated here rather
than read from `WorkerSettings`: the supervisor only launches the worker and never imports it."""
URL_SETTINGS = ("OUTPUT_URL", "UPLOADS_URL")
"""The worker's location settings: a file:// value is a path like the ones above (and wins over
them); an s3:// one is left as it is."""
FILE_URL = "file://"

ENV_FROM_REFS: tuple[tuple[SourceKind, str], ...] = (
    ("Secret", "secretRef"),
    ("ConfigMap", "configMapRef"),
)
_REFERENCE = re.compile(r"\$\$|\$\(([^()]+)\)")
"""`$(NAME)` expands to a variable defined before; `$$` is a literal `$` (the kubelet's rules)."""


class ContainerConfigError(Exception):
    """The container cannot be configured: the kubelet would not start it until this is fixed.

    The message names the missing object or key the way the kubelet's event does.
    """


def _expand(value: str, defined: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, value)


def _valid_name(name: str) -> bool:
    """The kubelet skips `envFrom` keys that cannot be variable names; so do we."""
    return bool(name) and "=" not in name and "\0" not in name


class _Sources:
    """Reads each Secret and ConfigMap once per container, and turns absence into the error."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._cache: dict[tuple[SourceKind, str], Mapping[str, str] | None] = {}

    def data(self, kind: SourceKind, name: str, *, optional: bool) -> Mapping[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = self._read(kind, name)
        found = self._cache[key]
        if found is None and not optional:
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        return found

    def key(self, kind: SourceKind, ref: Mapping[str, Any]) -> str | None:
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        optional = bool(ref.get("optional", False))
        data = self.data(kind, name, optional=optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            raise ContainerConfigError(f"couldn't find key {key} in {kind} {name}")
        return data[key]


def _value_from(
    source: Mapping[str, Any], sources: _Sources, fields: Mapping[str, str]
) -> str | None:
    if "secretKeyRef" in source:
        return sources.key("Secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return sources.key("ConfigMap", source["configMapKeyRef"])
    if "fieldRef" in source:
        path = str(source["fieldRef"].get("fieldPath", ""))
        if path in fields:
            return fields[path]
        raise ContainerConfigError(f"fieldRef {path!r} is not available to a local process")
    raise ContainerConfigError(f"valueFrom {sorted(source)} is not supported by the supervisor")


def container_env(
    container: Mapping[str, Any], read: Reader, fields: Mapping[str, str]
) -> dict[str, str]:
    """The environment the kubelet would give `container` (a pod template's container as JSON).

    `fields` answers `fieldRef`s (`metadata.name`, `metadata.namespace`, …). Raises
    `ContainerConfigError` where the kubelet would refuse to start the container.
    """
    sources = _Sources(read)
    env: dict[str, str] = {}
    for entry in container.get("envFrom") or []:
        prefix = str(entry.get("prefix") or "")
        for kind, ref_field in ENV_FROM_REFS:
            if ref_field not in entry:
                continue
            ref = entry[ref_field]
            optional = bool(ref.get("optional", False))
            data = sources.data(kind, str(ref.get("name", "")), optional=optional)
            for key, value in (data or {}).items():
                if _valid_name(prefix + key):
                    env[prefix + key] = value
    for entry in container.get("env") or []:
        name = str(entry["name"])
        if "valueFrom" not in entry:
            env[name] = _expand(str(entry.get("value") or ""), env)
        elif (resolved := _value_from(entry["valueFrom"], sources, fields)) is not None:
            env[name] = resolved
        # else: an optional reference to something absent leaves the variable unset
    return env


def localise_paths(
    env: Mapping[str, str], *, mount: PurePosixPath, data_dir: Path, ephemeral: Path
) -> dict[str, str]:
    """The worker's path settings (set or defaulted) as local paths.

    A path on the volume the pod mounts at `mount` maps to the same place under `data_dir`, so
    thumbnails land where the tests and the demo look. Any other path would be in the
    container's own, throwaway filesystem: it maps under `ephemeral`, never onto this machine's
    real `/data` or `/app`.
    """

    def localised(path: PurePosixPath) -> str:
        if path == mount or mount in path.parents:
            return str(data_dir / path.relative_to(mount))
        return str(ephemeral / str(path).lstrip("/"))

    local = {
        name: localised(PurePosixPath(env.get(name) or default))
        for name, default in PATH_SETTINGS.items()
    }
    for name in URL_SETTINGS:
        value = env.get(name, "")
        if value.startswith(FILE_URL):
            local[name] = FILE_URL + localised(PurePosixPath(value.removeprefix(FILE_URL)))
    return local


WorkerState = Literal["running", "terminating", "exited"]


@dataclass(frozen=True)
class WorkerInfo:
    """What a test or the demo sees of one process (a "pod")."""

    name: str
    pid: int
    revision: str
    log: Path
    metrics_port: int
    env: Mapping[str, str]
    """What the pod's container would see (Secret values included: this is a dev tool), with
    the local paths, metrics address and overrides; the process also inherits os.environ."""
    state: WorkerState
    """running, terminating (signalled, draining) or exited."""
    returncode: int | None


@dataclass
class PodProcess:
    """One process of a Deployment: started by `spawn`, stopped the way a pod is."""

    name: str
    revision: str
    log: Path
    metrics_port: int
    env: dict[str, str]
    grace: float
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    terminating: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def signal(self, signum: signal.Signals) -> None:
        """Signal the process group (its own session), as a container runtime would signal PID 1."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def terminate(self) -> None:
        """SIGTERM now, SIGKILL if still running after the pod's grace period."""
        if self.terminating or self.process.returncode is not None:
            return
        self.terminating = True
        self.signal(signal.SIGTERM)
        self.keep(self._kill_after_grace())

    async def _kill_after_grace(self) -> None:
        try:
            async with asyncio.timeout(self.grace):
                await self.process.wait()
        except TimeoutError:
            log.warning("%s still running %.0fs after SIGTERM: SIGKILL", self.name, self.grace)
            self.signal(signal.SIGKILL)

    def keep(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task that belongs to this process (kept referenced until it is done)."""
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def info(self) -> WorkerInfo:
        """A snapshot for callers outside the supervisor."""
        code = self.process.returncode
        state: WorkerState = (
            "exited" if code is not None else "terminating" if self.terminating else "running"
        )
        return WorkerInfo(
            self.name, self.process.pid, self.revision, self.log, self.metrics_port,
            dict(self.env), state, code,
        )  # fmt: skip


async def spawn(
    name: str, revision: str, env: dict[str, str], *, log_path: Path, cwd: Path, grace: float
) -> PodProcess:
    """Start `python -m imagebatch.worker` in its own session with os.environ + `env`.

    Its output goes to `log_path`, after a first line that names the pod.
    """
    with log_path.open("ab") as output:
        output.write(f"# supervisor: pod {name}, revision {revision}\n".encode())
        output.flush()
    process = await spawn_module(
        "imagebatch.worker", log=log_path, env=env, cwd=cwd, new_session=True
    )
    port = int(env["METRICS_PORT"])
    return PodProcess(name, revision, log_path, port, env, grace, process)
