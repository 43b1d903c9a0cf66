"""The `imagebatch` command line: its grammar (the replay itself is tested against RabbitMQ in
tests/integration/test_worker_failures.py)."""

from __future__ import annotations

import pytest

from imagebatch.cli import build_parser


def test_dlq_replay_takes_an_optional_limit() -> None:
    args = build_parser().parse_args(["dlq", "replay", "--limit", "5"])
    assert (args.command, args.action, args.limit) == ("dlq", "replay", 5)
    assert build_parser().parse_args(["dlq", "replay"]).limit is None


@pytest.mark.parametrize("argv", [["dlq", "replay", "--limit", "0"], ["dlq"], []])
def test_bad_command_lines_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    assert "usage: imagebatch" in capsys.readouterr().err
