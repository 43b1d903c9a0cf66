"""A message's timeline: the phases add up to the time it was held, skipped ones included."""

from __future__ import annotations

from collections.abc import Iterator

from imagebatch.worker.timeline import Timeline


def clock(*ticks: float) -> Iterator[float]:
    return iter(ticks)


def test_phases_are_the_gaps_between_marks() -> None:
    ticks = clock(10.0, 10.001, 10.003, 10.006, 10.010, 10.015, 10.021, 10.028)
    timeline = Timeline(lambda: next(ticks))
    for phase in ("claim", "slot", "download", "transform", "write", "record", "ack"):
        timeline.mark(phase)
    phases = timeline.phases()
    assert list(phases) == ["claim", "slot", "download", "transform", "write", "record", "ack"]
    assert [round(s * 1000) for s in phases.values()] == [1, 2, 3, 4, 5, 6, 7]
    assert round(timeline.held() * 1000) == 28
    assert round(sum(phases.values()) * 1000) == 28


def test_a_skipped_phase_gives_its_time_to_the_next_one_reached() -> None:
    ticks = clock(0.0, 0.002, 0.005)
    timeline = Timeline(lambda: next(ticks))
    timeline.mark("claim")
    timeline.mark("ack")  # a duplicate: claimed, then acked without work
    assert timeline.phases() == {"claim": 0.002, "ack": 0.003}
