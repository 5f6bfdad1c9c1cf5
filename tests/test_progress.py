"""The sweep's ETA: it scales the estimate by the pace of the work done in this process."""

import pytest

from rebased_bench import progress as progress_module
from rebased_bench.progress import SweepProgress
from rebased_bench.training import Progress

from sweep_helpers import Toy


@pytest.fixture
def clock(monkeypatch):
    """A clock the test moves by hand: now[0] seconds."""
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    return now


def finish(display, case, clock, seconds, epochs_before=0, epochs=64):
    """Run `case` here for `seconds`, from epoch `epochs_before` to its last."""
    display.case_started(case)
    clock[0] += seconds
    for epoch in range(epochs_before + 1, epochs + 1):
        display.epoch(case, Progress(epoch, epochs, loss=1.0, accuracy=0.5, best_accuracy=0.5, seconds=seconds))
    display.case_finished(case.case_id, "ok")


def test_eta_counts_only_the_epochs_a_resumed_case_ran_here(clock):
    cases = [Toy(x=i) for i in range(3)]
    display = SweepProgress("toy", cases, {case.case_id: 600.0 for case in cases})
    finish(display, cases[0], clock, seconds=30.0, epochs_before=61)  # 3 of 64 epochs left: 28 s expected
    eta = display._eta()
    # 30 s for 28 s of expected work: the two cases left should take about 2 x 600 x 30/28 = 21 min, not 1 min
    assert eta == "ETA 21 min", eta


def test_eta_ignores_cases_another_process_ran(clock):
    cases = [Toy(x=i) for i in range(3)]
    display = SweepProgress("toy", cases, {case.case_id: 600.0 for case in cases})
    finish(display, cases[0], clock, seconds=600.0)
    display.case_finished(cases[1].case_id, "done by another process")
    assert display._eta() == "ETA 10 min"  # one case left at this process's pace (1.0)
