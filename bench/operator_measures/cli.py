"""Operator benchmark: publish rate, memory, status lag, one refresh at 1,000,000 items.

The command line (`python bench/operator_bench.py --help`), the run of the parts asked for on
servers started for it, the JSON report and its printed summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import aio_pika

from bench.operator_measures.publish_rate import publish_part
from bench.operator_measures.servers import REPO, servers
from bench.operator_measures.status_lag import lag_part
from bench.operator_measures.status_refresh import refresh_part
from imagebatch.core.telemetry import setup_tracing

PARTS = ("publish", "untraced", "lag", "refresh")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aio_pika": aio_pika.__version__,
            "postgres_fsync": "off (imagebatch.devservers default)",
            "operator_env_overrides": args.env,
        },
    }
    parts = [p for p in PARTS if p not in args.skip]
    # Spans are real here as in the operator (which sets a tracer provider up at start): the
    # raw baseline's traceparent is a real span's, like the operator's. Nothing is exported.
    setup_tracing("imagebatch-bench")
    with_operator = "publish" in parts or "lag" in parts
    with tempfile.TemporaryDirectory(prefix="imagebatch-bench-operator-") as tmp:
        async with servers(
            args.rows, Path(tmp), with_operator=with_operator, env_overrides=args.env
        ) as server:
            report["startup_seconds"] = {
                "postgres": round(server.postgres.startup_seconds, 1),
                "rabbitmq": round(server.rabbit.startup_seconds, 1),
                "kube": round(server.kube.startup_seconds, 1) if server.kube else None,
            }
            if "publish" in parts:
                print("publish rate (operator, raw aio-pika) ...", file=sys.stderr)
                report["publish"] = await publish_part(
                    server,
                    args.rows,
                    args.runs,
                    untraced="untraced" in parts,
                    profile=args.profile,
                )
            if "lag" in parts:
                print("status lag ...", file=sys.stderr)
                report["lag"] = await lag_part(server, args.lag_items, args.lag_runs)
            if "refresh" in parts:
                print("status refresh at 1,000,000 items ...", file=sys.stderr)
                report["refresh"] = await refresh_part(
                    server, args.refreshes, args.naive, args.insert_pairs
                )
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def summary(report: dict[str, Any]) -> list[str]:
    lines = [f"load average at start: {report['load_average_at_start']}"]
    if "publish" in report:
        p = report["publish"]
        run = p["median_run"]
        op, raw = run["operator"], run["raw"]
        lines += [
            f"publish {p['rows']} items (median of {len(p['ratio_operator_vs_raw_every_run'])}"
            f" runs): operator {op['items_per_second']}/s (apply → all confirmed"
            f" {op['seconds_apply_to_all_published']} s), raw aio-pika"
            f" {raw['messages_per_second']}/s → ratio {run['ratio_operator_vs_raw']}"
            f" (target ≥ 0.8; every run {p['ratio_operator_vs_raw_every_run']})",
            f"  first chunk confirmed {op['seconds_apply_to_first_chunk_confirmed']} s after"
            f" apply; first → last chunk {op['items_per_second_first_to_last_chunk']}/s;"
            f" status showed it after {op['seconds_until_status_shows_it']} s",
            f"  operator CPU {op['cpu'].get('operator', {}).get('cores_busy')} cores,"
            f" postgres {op['cpu']['postgres']['cores_busy']},"
            f" rabbitmq {op['cpu'].get('rabbitmq', {}).get('cores_busy')};"
            f" raw: bench {raw['cpu']['bench_process']['cores_busy']},"
            f" rabbitmq {raw['cpu'].get('rabbitmq', {}).get('cores_busy')}",
            f"  raw with the traceparent header vs raw without: every run"
            f" {p['ratio_raw_vs_raw_untraced_every_run']}",
            f"  client CPU per message, raw vs operator: every run"
            f" {p['client_cpu_ratio_raw_vs_operator_every_run']}",
            f"operator RSS growth during a publish: at most"
            f" {max(p['operator_rss_growth_mib_every_run'])} MiB (target < 100; every run"
            f" {p['operator_rss_growth_mib_every_run']}, the first from"
            f" {p['operator_rss_mib_before_first_run']} MiB)",
        ]
        profiled = p.get("profiled_operator_run", {}).get("profile", {})
        if profiled.get("top_inclusive"):
            top = ", ".join(f"{f} {share}" for f, share in profiled["top_inclusive"][:12])
            lines.append(f"operator under py-spy (inclusive share of on-CPU samples): {top}")
    if "lag" in report:
        lag = report["lag"]
        lines.append(
            f"status lag ({lag['items']} items, interval {lag['status_interval_seconds']} s):"
            f" median {lag['median_lag_seconds']} s, max {lag['max_lag_seconds']} s"
            f" (target ≤ 2 s; every run {lag['lag_seconds_every_run']})"
        )
    if "refresh" in report:
        r = report["refresh"]
        lines += [
            f"status refresh at 1M items: median {r['refresh_total']['median_ms']} ms,"
            f" p95 {r['refresh_total']['p95_ms']} ms (target < 50 ms); naive GROUP BY"
            f" median {r['naive_group_by']['median_ms']} ms; per step"
            f" { {k: v['median_ms'] for k, v in r['refresh_per_step'].items()} } ms",
            f"1M-row insert: median {r['insert_seconds_with_triggers']} s with the"
            f" batch_counts triggers, {r['insert_seconds_triggers_disabled']} s without"
            f" (x{r['insert_slowdown_from_triggers']}; every pair"
            f" {r['insert_slowdown_every_pair']})",
        ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="items of the publish batch")
    parser.add_argument(
        "--runs", type=int, default=3, help="publish runs (contenders rotate in order); median"
    )
    parser.add_argument("--lag-items", type=int, default=5000, help="items of each lag batch")
    parser.add_argument("--lag-runs", type=int, default=5, help="status lag repetitions")
    parser.add_argument("--refreshes", type=int, default=200, help="status refresh repetitions")
    parser.add_argument("--naive", type=int, default=20, help="naive GROUP BY repetitions")
    parser.add_argument(
        "--insert-pairs",
        type=int,
        default=2,
        help="1M-row inserts with and without the triggers, each pair in alternating order",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PATH",
        help="record the operator with py-spy (on PATH or PY_SPY) during the first publish;"
        " collapsed stacks to PATH, the top frames into the JSON",
    )
    parser.add_argument(
        "--skip",
        default="",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help=f"comma-separated parts to leave out, of: {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="operator setting, e.g. --env PUBLISH_CHUNK_SIZE=2000 (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=REPO / ".cache" / "bench" / "operator.json")
    args = parser.parse_args()
    unknown = [p for p in args.skip if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; parts are {', '.join(PARTS)}")
    args.env = dict(item.split("=", 1) for item in args.env)
    report = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary(report)))
    print(f"(full figures in {args.output})")
    return 0
