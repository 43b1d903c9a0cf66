"""`imagebatch`: operator commands for the whole system, one subcommand group per concern.

Each group registers its own subparsers and imports its implementation only when run, so a
command never pays for (or depends on) the services it does not touch. Settings come from the
same environment variables the services read (`RABBIT_URL`, `DLQ`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _dlq_replay(args: argparse.Namespace) -> int:
    from imagebatch.core.settings import CommonSettings
    from imagebatch.worker.dlq import replay

    settings = CommonSettings()
    try:
        count = asyncio.run(replay(settings, limit=args.limit))
    except Exception as exc:  # a command line reports, it does not dump a traceback
        print(f"replay stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    noun = "message" if count == 1 else "messages"
    print(f"replayed {count} {noun} from {settings.dlq}")
    return 0


def _add_dlq(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser("dlq", help="the dead-letter queue")
    actions = dlq.add_subparsers(dest="action", required=True)
    replay = actions.add_parser(
        "replay", help="send dead letters back to the queue they failed in (attempts reset)"
    )
    replay.add_argument("--limit", type=_positive, default=None, help="replay at most N")
    replay.set_defaults(handler=_dlq_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagebatch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_dlq(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
