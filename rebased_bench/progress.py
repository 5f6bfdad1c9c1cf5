"""What a person watching a sweep sees on stderr: cases done of the total with an ETA, and the running case's
epoch, loss, accuracy, best accuracy, elapsed time and ETA.

On a terminal it is a live rich display; otherwise (a log file, a CI job) one plain line per epoch and one per
finished case, so progress shows while the sweep runs. Epochs are reported by cases running in this process:
a case run as a Ray task reports only its end.
"""

import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import console
from .config import Config
from .training import Progress as EpochProgress

ALWAYS_NAMED = ("mixer", "provider")  # what a case runs, named in its label even when every case shares it


def duration(seconds: float) -> str:
    """A duration as a person reads it: 4.2 s, 45 s, 12 min, 2.5 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def case_labels(cases: list[Config]) -> dict[str, str]:
    """Per case id: the id and the fields that tell the sweep's cases apart (`3f2a1b9c0d12 mixer=based seq_len=256`)."""
    flats = {case.case_id: case.flat() for case in cases}
    fields = [name for name in next(iter(flats.values()), {})
              if name in ALWAYS_NAMED or len({repr(flat.get(name)) for flat in flats.values()}) > 1]
    return {case_id: " ".join([case_id, *(f"{name}={flat[name]}" for name in fields if name in flat)])
            for case_id, flat in flats.items()}


class SweepProgress:
    """The display of one sweep over `cases` (those it will run); `expected` (case id -> seconds, from
    estimate.py) makes the sweep's ETA before the first case ends and weighs long cases above short ones."""

    def __init__(self, title: str, cases: list[Config], expected: dict[str, float] | None = None):
        self.total, self.expected = len(cases), expected or {}
        self.labels = case_labels(cases)
        self.done, self.expected_done = 0, 0.0
        self.left = set(self.labels)
        self.sweep_start, self.case_start = time.perf_counter(), {}
        self.share_run = {}  # case id -> the share of its epochs run here (a resumed case runs only the rest)
        self.live = console.stderr.is_terminal and bool(cases)
        self.rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
                             TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=console.stderr,
                             disable=not self.live)
        self.overall = self.rich.add_task(title, total=self.total, state=f"0/{self.total} cases", eta=self._eta())
        self.case_task = None

    def __enter__(self):
        self.rich.__enter__()
        return self

    def __exit__(self, *exc):
        return self.rich.__exit__(*exc)

    def case_started(self, case: Config):
        """A case starts running in this process."""
        self.case_start[case.case_id] = time.perf_counter()
        if self.live:
            self._drop_case_task()
            self.case_task = self.rich.add_task(self.labels.get(case.case_id, case.case_id), total=None,
                                                state="starting", eta="")

    def epoch(self, case: Config, progress: EpochProgress):
        """A case of this process finished an epoch."""
        state = (f"epoch {progress.epoch}/{progress.epochs} loss {progress.loss:.4f} acc {progress.accuracy:.3f} "
                 f"best {progress.best_accuracy:.3f}")
        eta = progress.seconds / progress.epoch * (progress.epochs - progress.epoch)
        self.share_run.setdefault(case.case_id, 1 - (progress.epoch - 1) / progress.epochs)
        if self.live and self.case_task is not None:
            self.rich.update(self.case_task, total=progress.epochs, completed=progress.epoch, state=state,
                             eta=f"ETA {duration(eta)}", refresh=True)
        elif not self.live:
            left = f", ETA {duration(eta)}" if progress.epoch < progress.epochs else ""
            console.log(f"{self.labels.get(case.case_id, case.case_id)} {state} {duration(progress.seconds)}{left}")

    def case_finished(self, case_id: str, outcome: str):
        """A case of the sweep is settled: its row is written (`outcome`: its status and metric), or another process
        has it."""
        self.done += 1
        self.left.discard(case_id)
        started = self.case_start.pop(case_id, None)
        # the pace counts the work done here: a resumed case ran only its remaining epochs, another process's none
        share = self.share_run.pop(case_id, 1.0) if started is not None else 0.0
        self.expected_done += self.expected.get(case_id, 0.0) * share
        took = "" if started is None else f" in {duration(time.perf_counter() - started)}"
        eta = self._eta()
        if self.live:
            self._drop_case_task()
            self.rich.update(self.overall, advance=1, state=f"{self.done}/{self.total} cases", eta=eta)
        console.log(f"[{self.done}/{self.total}] {self.labels.get(case_id, case_id)} {outcome}{took}"
                    + (f"; sweep {eta}" if eta else ""))  # on a terminal, printed above the live display

    def _eta(self) -> str:
        """The time the cases left should take: their expected seconds scaled by how this sweep ran against its
        estimate so far, or else the mean time of a finished case."""
        if not self.left:
            return ""
        elapsed = time.perf_counter() - self.sweep_start
        if all(case_id in self.expected for case_id in self.left):
            pace = elapsed / self.expected_done if self.expected_done > 0 else 1.0
            return f"ETA {duration(pace * sum(self.expected[case_id] for case_id in self.left))}"
        if self.done:
            return f"ETA {duration(elapsed / self.done * len(self.left))}"
        return ""

    def _drop_case_task(self):
        if self.case_task is not None:
            self.rich.remove_task(self.case_task)
            self.case_task = None
