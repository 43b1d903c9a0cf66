"""Where a benchmark run's CPU went: the whole machine, and each process that shares it.

In the end-to-end run the worker shares the cores with PostgreSQL, RabbitMQ, the loopback
origin (in the benchmark's own process) and, when it writes to a bucket, the local S3 server
(versitygw). The worker's images/s says little about the worker
alone unless one also knows how busy the machine was and what every image cost all of them
together: `cpu_bound_ceiling` is the rate the same per-image cost would allow were the cores
never idle, which bounds what any worker setting can reach on this machine.

Within the worker, the event loop's thread (the process's first thread) runs the Python of every
message — broker, database and HTTP protocols, the pipeline's own bookkeeping — and holds the GIL
while it does; the thumbnail and write threads spend most of their time in C without it. So
`event_loop_busy_fraction` near 1 says that one thread, not the cores, sets the pace.

This is the benchmarks' one home for reading /proc: a process tree's CPU, one thread's CPU, and a
process's resident memory (sampled, and its peak reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RABBITMQ_COMMANDS = frozenset({"beam.smp", "erl_child_setup", "epmd", "inet_gethost"})
S3_SERVER_COMMANDS = frozenset({"versitygw"})


def _group(
    pid: int,
    comm: str,
    *,
    worker: int,
    bench: int,
    servers: Mapping[int, str] | None = None,
    parents: Mapping[int, int] | None = None,
) -> str:
    if pid == worker:
        return "worker"
    if pid == bench:
        return "bench_and_origin"
    if servers is not None:
        return _server_of(pid, servers, parents or {})
    if comm == "postgres":
        return "postgres"
    if comm in RABBITMQ_COMMANDS:
        return "rabbitmq"
    if comm in S3_SERVER_COMMANDS:
        return "s3_server"
    return "other"


def _server_of(pid: int, servers: Mapping[int, str], parents: Mapping[int, int]) -> str:
    """The group of the server whose process tree holds `pid`, else "other"."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid in servers:
            return servers[pid]
        pid = parents.get(pid, 0)
        seen += 1
    return "other"


def process_stat(stat: str) -> tuple[str, float]:
    """(command, user + system seconds) from a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat
    line."""
    head, tail = stat.rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stat_fields(stat: str) -> list[str]:
    """The fields after the command of a /proc stat line (field 3 of proc(5) is index 0)."""
    return stat.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int(_stat_fields((entry / "stat").read_text())[1])
                tree.setdefault(parent, []).append(int(entry.name))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and every live descendant, with what their reaped children
    used (cutime/cstime): a whole server's CPU so far."""
    tree, todo, ticks = _children(), [root], 0
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
        todo += tree.get(pid, [])
    return ticks / CLOCK_TICKS


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU of one thread (by default the process's first, which runs an asyncio
    service's event loop)."""
    return process_stat(Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text())[1]


def vm_kib(pid: int, key: str) -> int:
    """One memory figure of /proc/<pid>/status in KiB, e.g. `VmRSS` or `VmHWM` (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (proc(5): `echo 5 > clear_refs`); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class RssSampler:
    """VmRSS of `pid` every `interval` seconds while in `with`; `peak_kib` the highest seen
    (VmHWM alone misses nothing, but cannot be reset where clear_refs is refused)."""

    pid: int
    interval: float = 0.2
    peak_kib: int = 0
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.peak_kib = max(self.peak_kib, vm_kib(self.pid, "VmRSS"))
                self.samples += 1
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _machine_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of all cores since boot; iowait counts as idle."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLOCK_TICKS, (idle + iowait) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far, per process group and for the whole machine."""

    groups: dict[str, float]
    busy: float
    idle: float
    event_loop: float = 0.0
    """CPU seconds of the worker's first thread, the one that runs its event loop."""

    @classmethod
    def take(cls, worker_pid: int, servers: Mapping[int, str] | None = None) -> CpuSnapshot:
        """`servers` maps the root pid of each server the run started to its group name: a
        process belongs to the group whose root it descends from. Without it, processes are
        grouped by command name, which also counts other PostgreSQL and RabbitMQ instances
        on the machine (other benchmarks', other tests') as this run's."""
        groups: dict[str, float] = {}
        bench = os.getpid()
        found: list[tuple[int, str, float]] = []
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
                comm, seconds = process_stat(text)
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            pid = int(entry.name)
            parents[pid] = int(_stat_fields(text)[1])
            found.append((pid, comm, seconds))
        for pid, comm, seconds in found:
            group = _group(
                pid, comm, worker=worker_pid, bench=bench, servers=servers, parents=parents
            )
            groups[group] = groups.get(group, 0.0) + seconds
        busy, idle = _machine_seconds()
        try:
            event_loop = thread_cpu_seconds(worker_pid)
        except (OSError, IndexError, ValueError):
            event_loop = 0.0
        return cls(groups, busy, idle, event_loop)


def cpu_report(before: CpuSnapshot, after: CpuSnapshot, images: int) -> dict[str, object]:
    """CPU between two snapshots: per image for each group and in all, how busy the cores
    were, and the images/s that cost would allow on fully busy cores.

    A process that started or ended between the snapshots counts only what the later one saw
    (PostgreSQL's backends and RabbitMQ live for the whole run, so this is small)."""
    busy = after.busy - before.busy
    total = busy + after.idle - before.idle
    per_image = {
        group: round((seconds - before.groups.get(group, 0.0)) * 1000 / images, 3)
        for group, seconds in sorted(after.groups.items())
    }
    machine_ms = busy * 1000 / images
    cores = os.cpu_count() or 1
    event_loop = after.event_loop - before.event_loop
    wall = total / cores
    return {
        "cores_busy_fraction": round(busy / total, 3) if total else 0.0,
        "event_loop_busy_fraction": round(event_loop / wall, 3) if wall else 0.0,
        "ms_per_image": {
            **per_image,
            "worker_event_loop_thread": round(event_loop * 1000 / images, 3),
            "machine_total": round(machine_ms, 3),
        },
        "cpu_bound_ceiling_images_per_second": round(cores * 1000 / machine_ms, 1)
        if machine_ms
        else 0.0,
    }
