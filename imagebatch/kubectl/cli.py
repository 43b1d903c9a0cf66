"""`kubectl imagebatch` (console script `kubectl-imagebatch`): the command line.

    kubectl imagebatch watch NAME              a progress bar until the batch ends (exit 0/1)
    kubectl imagebatch retry NAME              send its failed items back to work
    kubectl imagebatch failures NAME [--api URL] [--token T]
    kubectl imagebatch manifest NAME [--api URL] [--token T]

Options as kubectl has them: `-n/--namespace`, `--context`, `--kubeconfig` (before or after the
command). Exit codes: 0 done, 1 the batch Failed (watch) or has no manifest yet, 2 an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imagebatch.kubectl.errors import PluginError

if TYPE_CHECKING:
    from imagebatch.kubectl.api_client import ImageBatchApi

ERROR = 2


def _cluster_options(parser: argparse.ArgumentParser, default: object) -> None:
    """kubectl's options; on a subcommand they default to SUPPRESS, so that one given before the
    subcommand is not overwritten by the subcommand's default."""
    parser.add_argument("-n", "--namespace", default=default, help="the batch's namespace")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")


def _interval(value: str) -> float:
    seconds = float(value)
    if not 0.1 <= seconds <= 60:
        raise argparse.ArgumentTypeError("must be between 0.1 and 60 seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl imagebatch",
        description="Watch, retry and inspect ImageBatch resources.",
    )
    _cluster_options(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _cluster_options(common, argparse.SUPPRESS)
    common.add_argument("name", help="the ImageBatch's name")
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--api", metavar="URL", help="the ImageBatch api's address")
    api.add_argument(
        "--token",
        default=None,
        help="the caller's token for the api (default: $IMAGEBATCH_TOKEN)",
    )
    actions = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = actions.add_parser(
        "watch", parents=[common], help="a progress bar until the batch is Succeeded or Failed"
    )
    watch.add_argument(
        "--interval", type=_interval, default=1.0, help="seconds between looks (default 1)"
    )
    actions.add_parser("retry", parents=[common], help="send the batch's failed items back to work")
    actions.add_parser(
        "failures",
        parents=[common, api],
        help="why items failed (reason counts); with --api the failed items too",
    )
    actions.add_parser(
        "manifest",
        parents=[common, api],
        help="where the batch's manifest is; with --api its lines",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed command. The kubernetes client (and httpx, for --api) are imported
    here, so `--help` and a mistyped command answer at once."""
    from imagebatch.kubectl import commands
    from imagebatch.kubectl.cluster import Cluster

    cluster = Cluster.connect(
        kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace
    )
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.close)
        api: ImageBatchApi | None = None
        if getattr(args, "api", None):
            from imagebatch.kubectl.api_client import ImageBatchApi

            token = args.token or os.environ.get("IMAGEBATCH_TOKEN") or None
            api = ImageBatchApi(args.api, token, cluster.namespace)
            stack.callback(api.close)
        if args.command == "watch":
            live = sys.stdout.isatty()
            return commands.watch(cluster, args.name, sys.stdout, interval=args.interval, live=live)
        if args.command == "retry":
            return commands.retry(cluster, args.name, sys.stdout)
        if args.command == "failures":
            return commands.failures(cluster, args.name, sys.stdout, api)
        return commands.manifest(cluster, args.name, sys.stdout, sys.stderr, api)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
