"""The progress line `kubectl imagebatch watch` and `make demo` print, and the rate it shows:
images per second from the first completion on, never the workers' start-up. Pure."""

from __future__ import annotations

import pytest

from imagebatch.core.progressbar import ProgressCounts, RateMeter, progress_line


@pytest.mark.parametrize(
    ("counts", "rate", "width", "line"),
    [
        (
            ProgressCounts(),
            None,
            10,
            "[..........] 0/0 (0 ok, 0 failed, 0 queued, 0 workers)  Pending",
        ),
        (
            ProgressCounts(total=300, succeeded=140, failed=10, queued=150, workers=2,
                           phase="Running"),
            48.25,
            10,
            "[#####.....] 150/300 (140 ok, 10 failed, 150 queued, 2 workers)"
            " 48.2 images/s  Running",
        ),
        (
            ProgressCounts(total=6, succeeded=6, phase="Succeeded"),
            None,
            30,
            "[##############################] 6/6 (6 ok, 0 failed, 0 queued, 0 workers)  Succeeded",
        ),
        (  # a bar never overflows, whatever the counts say
            ProgressCounts(total=4, succeeded=5, phase="Running"),
            1.0,
            4,
            "[####] 5/4 (5 ok, 0 failed, 0 queued, 0 workers) 1.0 images/s  Running",
        ),
    ],
)  # fmt: skip
def test_the_line_shows_the_bar_the_counts_the_rate_and_the_phase(
    counts: ProgressCounts, rate: float | None, width: int, line: str
) -> None:
    assert progress_line(counts, rate, width) == line


def test_counts_come_from_the_status_and_junk_counts_as_zero() -> None:
    status = {"phase": "Running", "total": 6, "succeeded": 2, "failed": True, "queued": -1}

    counts = ProgressCounts.from_status(status)

    assert counts == ProgressCounts(total=6, succeeded=2, phase="Running")
    assert ProgressCounts.from_status(None) == ProgressCounts()


def test_the_rate_starts_at_the_first_completion_not_at_the_batch_s_creation() -> None:
    meter = RateMeter()

    # ten seconds of workers starting: nothing done, no rate
    assert [meter.observe(0, t) for t in (0.0, 5.0, 10.0)] == [None, None, None]
    assert meter.observe(20, 11.0) is None  # one observation measures nothing
    assert meter.observe(120, 13.0) == 50.0  # 100 more images in 2 s
    assert meter.observe(300, 14.0) == pytest.approx(280 / 3)


def test_a_finished_batch_keeps_its_rate_while_it_is_watched() -> None:
    meter = RateMeter()
    meter.observe(10, 1.0)
    meter.observe(60, 2.0)

    assert meter.observe(60, 30.0) == 50.0


def test_all_done_in_one_observation_has_no_rate_rather_than_a_wrong_one() -> None:
    meter = RateMeter()

    assert meter.observe(6, 4.0) is None
    assert meter.observe(6, 5.0) is None


def test_a_retry_that_lowers_the_count_starts_the_measurement_again() -> None:
    meter = RateMeter()
    meter.observe(10, 1.0)
    meter.observe(100, 2.0)

    assert meter.observe(70, 50.0) is None  # 30 failed items went back to work
    assert meter.observe(100, 53.0) == 10.0
