"""The runner every suite kind shares: cases -> skip finished -> run each -> one row per case -> store.

A kind is a `SuiteKind`: its typed case config (a `config.Config`: the config columns, defaults, checks and case
id come from it), the metric columns its case function adds, and that function, (case, device) -> metrics.
Progress goes to a `progress.SweepProgress`, which the cases running in this process tell of their epochs.
"""

import contextlib
import datetime as dt
import functools
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import torch

from . import console, interrupts
from .claims import Claims
from .config import Config
from .env import environment
from .files import DiskFull
from .progress import SweepProgress
from .store import Store

# Columns the runner adds to every row, whatever the kind.
RUN_COLUMNS = pa.schema([
    ("kind", pa.string()), ("suite", pa.string()), ("case_id", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("device", pa.string()), ("gpu_name", pa.string()), ("git_commit", pa.string()), ("git_dirty", pa.bool_()),
    ("torch_version", pa.string()), ("triton_version", pa.string()), ("cuda_version", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class SuiteKind:
    """A kind of suite: its typed case config, the metric columns of its rows, how one case runs."""

    name: str
    config: type[Config]  # typed, frozen; from_flat(fields) checks a suite case
    metrics: pa.Schema  # metric columns its case function returns (typed, so error rows keep the types)
    # (case, device, state_path) -> metrics; may return status "skipped". A kind whose cases train keeps its
    # training state at state_path after each epoch and continues from it (an interrupted sweep loses no epoch),
    # and takes on_epoch= when reports_epochs is set.
    run_case: Callable[..., dict]
    summary: Callable | None = None  # rows (DataFrame) -> a Rich renderable, or None when there is nothing to show
    progress_metric: str | None = None  # the metric the progress display shows for each finished case
    # Whether run_case takes on_epoch=, a callable it calls with a training.Progress after each epoch it trains.
    reports_epochs: bool = False
    preflight: Callable | None = None  # (cases, device) -> lines said before the sweep starts (what cannot run here)

    @property
    def schema(self) -> pa.Schema:
        """Every typed column of its rows: the runner's, the config's, the metrics."""
        return pa.unify_schemas([RUN_COLUMNS, self.config.columns(), self.metrics])


def case_row(kind: SuiteKind, suite: str, case: Config, device_name: str) -> dict:
    """The columns of a case's row known before it runs: identity, config, environment, start time."""
    return {"kind": kind.name, "suite": suite, "case_id": case.case_id, **case.flat(),
            **environment(torch.device(device_name)), "started_at": dt.datetime.now(dt.timezone.utc)}


def error_row(row: dict, exc: BaseException) -> dict:
    """`row` marked as failed by `exc`: the one place error rows get their status and message."""
    return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}


def run_one(kind: SuiteKind, suite: str, case: Config, device_name: str, state_path: Path,
            display: SweepProgress | None = None) -> dict:
    """Run one case into one row; an exception becomes an error row, never a crash (a full disk stops the sweep).

    `display`, in the sweep's own process only, is told when the case starts and after each epoch it trains."""
    row = case_row(kind, suite, case, device_name)
    options = {}
    if display is not None:
        display.case_started(case)
        if kind.reports_epochs:
            options["on_epoch"] = functools.partial(display.epoch, case)
    try:
        device = torch.device(device_name)
        # The case's device is the current one: CUDA events, synchronize and Triton launch on the current device.
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            metrics = kind.run_case(case, device, state_path, **options)
        return {**row, "status": "ok", "error": None, **metrics}
    except DiskFull:  # every later case would fail alike: the sweep stops, with one line
        raise
    except Exception as exc:  # a failed case is data: its row says why
        console.log(traceback.format_exc().rstrip())
        return error_row(row, exc)


def local_executor(tasks: Iterable[tuple], run: Callable, display: SweepProgress | None = None) -> Iterator[dict]:
    """Run cases one after another in this process, each telling `display` of its epochs."""
    for task in tasks:
        yield run(*task, display=display)


@dataclass
class SweepReport:
    total: int
    skipped: int = 0  # done before, by an earlier sweep or by another process during this one
    ok: int = 0
    errors: int = 0
    elsewhere: int = 0  # claimed by another live process when this sweep reached them
    lost: int = 0  # left without a row by a worker process that died (a sweep over several devices)
    interrupted_by: int | None = None  # the signal that stopped the sweep
    case_ids: list = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return self.interrupted_by is not None


def pending(cases: list[Config], statuses: dict[str, str], force=False, retry_errors=False) -> list[Config]:
    """The cases a sweep runs, given the status of each row already stored: those without a row; with
    retry_errors also those whose row is an error; with force every case."""
    return [case for case in cases if force or case.case_id not in statuses
            or (retry_errors and statuses[case.case_id] == "error")]


def run_sweep(kind: SuiteKind, suite: str, cases: list[Config], store: Store, device: torch.device,
              force=False, retry_errors=False, executor=local_executor,
              expected: dict[str, float] | None = None, since: float | None = None) -> SweepReport:
    """Run every case `pending` gives that no other process has claimed (claims.py).

    A case is one unit: whatever fails in it, running or writing its row, is its error row and the sweep goes on.
    SIGINT or SIGTERM keep every finished row (a write in progress completes) and the next run resumes; a full
    disk raises DiskFull, the rows written so far kept. `expected` (case id -> seconds) feeds the display's ETA.
    `since` (a time.time()) is when the sweep began, where it began before this call: a worker of a sweep over
    several devices gets its launcher's start, so a row another worker wrote before this one started counts.
    """
    start = since or time.time()  # a case rerun here (--force, --retry-errors) is done elsewhere only by a newer row
    stored = store.statuses()
    todo = pending(cases, stored, force, retry_errors)
    tasks = [(kind, suite, case, str(device), store.state_path(case.case_id)) for case in todo]
    report = SweepReport(total=len(cases), skipped=len(cases) - len(todo), case_ids=[case.case_id for case in cases])
    for line in kind.preflight(todo, device) if kind.preflight else ():
        console.log(line)
    try:
        with interrupts.handling(), Claims(store.claims_folder) as claims, \
                SweepProgress(suite, todo, expected) as display:

            def claimed(tasks):  # lazily, as the executor takes them: two sweeps on one folder split the cases
                for task in tasks:
                    case_id = task[2].case_id
                    if not claims.take(case_id):
                        report.elsewhere += 1
                        display.case_finished(case_id, "claimed by another process")
                    elif store.has_row(case_id, start if case_id in stored else 0.0):  # done elsewhere meanwhile
                        claims.release(case_id)
                        report.skipped += 1
                        display.case_finished(case_id, "done by another process")
                    else:
                        yield task

            for row in executor(claimed(tasks), run_one, display):
                with interrupts.critical():  # a signal waits until the row, its state and its claim are settled
                    row = keep_row(kind, store, row)
                    if row["status"] == "ok":  # kept otherwise: a retried case continues from its last epoch
                        store.state_path(row["case_id"]).unlink(missing_ok=True)
                    claims.release(row["case_id"])
                report.ok += row["status"] == "ok"
                report.errors += row["status"] == "error"
                display.case_finished(row["case_id"], outcome(row, kind.progress_metric),
                                      failed=row["status"] == "error")
    except KeyboardInterrupt as exc:
        report.interrupted_by = getattr(exc, "signum", signal.SIGINT)
    return report


def keep_row(kind: SuiteKind, store: Store, row: dict) -> dict:
    """Write a case's row; returns the row as kept. A row that cannot be written (a value its schema cannot hold)
    becomes the case's error row; when even that fails, one line on stderr names the case and the cause."""
    try:
        store.write(row)
        return row
    except DiskFull:
        raise
    except Exception as exc:
        known = set(RUN_COLUMNS.names) | set(kind.config.columns().names)  # what the case was, not what it gave
        failed = error_row({name: value for name, value in row.items() if name in known}, exc)
        failed["error"] = f"its row cannot be written: {failed['error']}"
    try:
        store.write(failed)
    except DiskFull:
        raise
    except Exception as exc:
        console.error(f"case {row['case_id']}: {failed['error']}; nor its error row: {type(exc).__name__}: {exc}")
    return failed


def outcome(row: dict, metric: str | None) -> str:
    """A finished case's outcome: its status and metric (`ok accuracy 0.987`)."""
    value = row.get(metric) if metric else None
    return f"{row['status']} {metric} {value:.3f}" if isinstance(value, float) else row["status"]
