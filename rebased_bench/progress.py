"""What a person watching a sweep sees on stderr: cases done of the total with an ETA, and the running case's
epoch, loss, accuracy, best accuracy, elapsed time and ETA.

On a terminal it is a live rich display; otherwise (a log file, a CI job) one plain line per epoch and one per
finished case, so progress shows while the sweep runs. Epochs are reported by cases running in this process:
a case run as a Ray task reports only its end, one run by a worker of a sweep over several devices its start
and end.
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
    estimate.py) makes the sweep's ETA before the first case ends and weighs long cases above short ones;
    `workers` is how many cases run at once, until the pace of finished ones says how fast the sweep goes."""

    def __init__(self, title: str, cases: list[Config], expected: dict[str, float] | None = None, workers: int = 1):
        self.total, self.expected, self.workers = len(cases), expected or {}, workers
        self.labels = case_labels(cases)
        self.done, self.failed, self.expected_done = 0, 0, 0.0
        self.left = set(self.labels)
        self.sweep_start, self.case_start = time.perf_counter(), {}
        self.share_run = {}  # case id -> the share of its epochs run here (a resumed case runs only the rest)
        self.live = console.stderr.is_terminal and bool(cases)
        self.rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
                             TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=console.stderr,
                             disable=not self.live)
        self.overall = self.rich.add_task(title, total=self.total, state=self._tally(), eta=self._eta())
        self.case_tasks = {}  # case id -> its line in the live display, while it runs

    def __enter__(self):
        self.rich.__enter__()
        return self

    def __exit__(self, *exc):
        return self.rich.__exit__(*exc)

    def case_started(self, case: Config, where: str = ""):
        """A case starts running: in this process, or `where` names the process that runs it."""
        self.case_start[case.case_id] = time.perf_counter()
        if self.live:
            self._drop_case_task(case.case_id)
            label = self.labels.get(case.case_id, case.case_id)
            self.case_tasks[case.case_id] = self.rich.add_task(label, total=None, eta="",
                                                               state=f"on {where}" if where else "starting")
            self.rich.update(self.overall, state=self._tally())

    def epoch(self, case: Config, progress: EpochProgress):
        """A case of this process finished an epoch."""
        state = (f"epoch {progress.epoch}/{progress.epochs} loss {progress.loss:.4f} acc {progress.accuracy:.3f} "
                 f"best {progress.best_accuracy:.3f}")
        eta = progress.seconds / progress.epoch * (progress.epochs - progress.epoch)
        self.share_run.setdefault(case.case_id, 1 - (progress.epoch - 1) / progress.epochs)
        if self.live and case.case_id in self.case_tasks:
            self.rich.update(self.case_tasks[case.case_id], total=progress.epochs, completed=progress.epoch,
                             state=state, eta=f"ETA {duration(eta)}", refresh=True)
        elif not self.live:
            left = f", ETA {duration(eta)}" if progress.epoch < progress.epochs else ""
            console.log(f"{self.labels.get(case.case_id, case.case_id)} {state} {duration(progress.seconds)}{left}")

    def case_finished(self, case_id: str, outcome: str, failed: bool = False):
        """A case of the sweep is settled: its row is written (`outcome`: its status and metric; `failed` for an
        error row), or another process has it."""
        self.done += 1
        self.failed += failed
        self.left.discard(case_id)
        started = self.case_start.pop(case_id, None)
        # the pace counts the work done here: a resumed case ran only its remaining epochs, another process's none
        share = self.share_run.pop(case_id, 1.0) if started is not None else 0.0
        self.expected_done += self.expected.get(case_id, 0.0) * share
        took = "" if started is None else f" in {duration(time.perf_counter() - started)}"
        eta = self._eta()
        if self.live:
            self._drop_case_task(case_id)
            self.rich.update(self.overall, advance=1, state=self._tally(), eta=eta)
        notes = ", ".join(self._counts() + ([f"sweep {eta}"] if eta else []))
        console.log(f"[{self.done}/{self.total}] {self.labels.get(case_id, case_id)} {outcome}{took}"
                    + (f"; {notes}" if notes else ""))  # on a terminal, printed above the live display

    def case_stopped(self, case_id: str):
        """A case stopped without a row (the process running it ended): it is left to do, not running."""
        self.case_start.pop(case_id, None)
        self.share_run.pop(case_id, None)
        if self.live:
            self._drop_case_task(case_id)
            self.rich.update(self.overall, state=self._tally())

    def _tally(self) -> str:
        """The overall line's state: cases done of the total, and how many run and failed (`3/8 cases, 2 running`)."""
        return ", ".join([f"{self.done}/{self.total} cases", *self._counts()])

    def _counts(self) -> list[str]:
        """How many cases run now and how many failed, each where there are any."""
        return [f"{count} {what}" for count, what in ((len(self.case_start), "running"), (self.failed, "failed"))
                if count]

    def _eta(self) -> str:
        """The time the cases left should take: their expected seconds scaled by how this sweep ran against its
        estimate so far, or else the mean time of a finished case."""
        if not self.left:
            return ""
        elapsed = time.perf_counter() - self.sweep_start
        if all(case_id in self.expected for case_id in self.left):
            pace = elapsed / self.expected_done if self.expected_done > 0 else 1 / self.workers
            return f"ETA {duration(pace * sum(self.expected[case_id] for case_id in self.left))}"
        if self.done:
            return f"ETA {duration(elapsed / self.done * len(self.left))}"
        return ""

    def _drop_case_task(self, case_id: str):
        if case_id in self.case_tasks:
            self.rich.remove_task(self.case_tasks.pop(case_id))
