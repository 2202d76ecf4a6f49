"""isoflow.progress: progress lines of long steps, driven by a fake clock."""

from __future__ import annotations

import logging

import pytest

from isoflow import progress as progress_module
from isoflow.progress import Progress, format_seconds


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_line_every_thirty_seconds_with_rate_and_eta(caplog):
    clock = FakeClock()
    step = Progress("targets: GCT", 1000, "rows", clock=clock)
    assert step.every_s == 30
    with caplog.at_level(logging.INFO, logger="isoflow.progress"):
        for _ in range(10):  # 10 rows every 10 s: a line at 30 s, 60 s, 90 s
            clock.now += 10
            step.update(10)
        clock.now += 5
        step.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "targets: GCT: 30 / 1,000 rows (3.0%), 1 rows/s, ETA 16 min 10 s",
        "targets: GCT: 60 / 1,000 rows (6.0%), 1 rows/s, ETA 15 min 40 s",
        "targets: GCT: 90 / 1,000 rows (9.0%), 1 rows/s, ETA 15 min 10 s",
        "targets: GCT: 100 rows done in 1 min 45 s, 1 rows/s",
    ]
    assert step.lines == 3


def test_no_line_before_the_interval_and_none_without_updates(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="isoflow.progress"):
        step = Progress("sequences", 50, "transcripts", clock=clock)
        clock.now += 29.9
        step.update(49)
        clock.now += 100  # a long gap without an update logs nothing by itself
    assert caplog.records == []
    step.update(1)
    assert step.lines == 1


def test_unknown_total_has_no_share_or_eta():
    clock = FakeClock()
    step = Progress("dataset: protein", None, "records", clock=clock)
    clock.now += 40
    step.update(4000)
    assert step.line(clock.now) == "dataset: protein: 4,000 records, 100 records/s"


def test_every_s_is_read_when_the_step_starts(monkeypatch):
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_S", 0.0)
    assert Progress("x").every_s == 0.0
    assert Progress("x", every_s=5).every_s == 5


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.2, "4 s"), (75.2, "1 min 15 s"), (3725, "1 h 2 min"), (-3, "0 s")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
