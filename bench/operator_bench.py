"""Operator benchmark: publish rate against raw aio-pika, the operator's memory, status lag and
one status refresh at 1,000,000 items.

    .venv/bin/python bench/operator_bench.py [--rows 100000] [--runs 3] [--skip PART,...]
        [--env NAME=VALUE ...] [--profile .cache/bench/operator-profile.txt]

Starts its own PostgreSQL, RabbitMQ and Kubernetes control plane (envtest binaries from
KUBEBUILDER_ASSETS or the cache `make envtest` fills) on loopback, creates the namespace and its
connections Secret, and runs the operator as a process (`python -m imagebatch.operator`) with the
default settings (STATUS_INTERVAL_SECONDS=2, PUBLISH_CHUNK_SIZE=1000; `--env` overrides). No
workers run: nothing fetches the items' URLs. Parts (leave some out with --skip), each in its own
module of bench/operator_measures/: publish and untraced (`publish_rate`), lag (`status_lag`),
refresh (`status_refresh`).

Writes the JSON to --output (default .cache/bench/operator.json) and prints a short summary.
Not a test: numbers depend on the machine (on a shared 2-core VM, raw aio-pika alone moved
between 2,400 and 5,200 messages/s from one minute to the next).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Appended, not prepended: the repository's `operator/` folder must not shadow the standard
# library's `operator` module.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from bench.operator_measures.cli import main

if __name__ == "__main__":
    sys.exit(main())
