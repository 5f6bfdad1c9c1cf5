"""A sweep over several devices: one worker process per device on one results folder, watched from here.

Each worker is the same command with one device; claims (claims.py) split the cases between them, each case run
once. This process runs no case. It shows one progress display read from the folder (a case runs while a live
process holds its claim and is done once its row is written), hands SIGINT and SIGTERM on to the workers, and says
when a worker dies. A worker's stdout and stderr go to its log, `<out>/logs/<kind>/worker<i>.log`.
"""

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import console, interrupts
from .claims import live_claims
from .config import Config
from .files import HOST
from .progress import SweepProgress
from .runner import SuiteKind, SweepReport, outcome, pending
from .store import Store

POLL_SECONDS = 0.5
# The launcher's start, in its workers' environment: the `since` of their run_sweep, so that a row one worker wrote
# before another started counts as done by this sweep (--force reruns each case once, not once per worker).
SWEEP_START = "REBASED_BENCH_SWEEP_START"
LOG_TAIL_BYTES = 4096


@dataclass
class Worker:
    """One worker process of the sweep."""

    name: str  # `worker 1 (cuda:1)`: its log is worker1.log
    log: Path
    process: subprocess.Popen
    said: bool = False  # whether its end was reported


def run_workers(kind: SuiteKind, suite: str, cases: list[Config], store: Store, commands: list[tuple[str, list[str]]],
                force=False, retry_errors=False, expected: dict[str, float] | None = None) -> SweepReport:
    """Run the sweep as one worker per (device, command line) and watch it from here; returns what became of its
    cases (`force`, `retry_errors` and `expected` as in run_sweep, which each worker runs).

    A worker that ends by a signal, or with an exit code other than 0 and 1 (1: a case has an error row), is said at
    once; the cases it left without a row count as `lost`. The first SIGINT or SIGTERM goes on to every worker, and
    this process waits for them to keep their finished rows and end.
    """
    start = time.time()
    stored = store.statuses()
    todo = pending(cases, stored, force, retry_errors)
    report = SweepReport(total=len(cases), skipped=len(cases) - len(todo), case_ids=[case.case_id for case in cases])
    if not todo:  # no worker to start
        return report
    watch = _Watch(kind, store, todo, {case.case_id: start if case.case_id in stored else 0.0 for case in todo})
    logs = store.path.parent / "logs" / store.path.name
    logs.mkdir(parents=True, exist_ok=True)
    on_cpu = sum(device == "cpu" for device, _ in commands)
    # Each worker on the CPU gets its share of the cores: torch would give each all of them, and they would fight.
    threads = str(max(1, torch.get_num_threads() // max(on_cpu, 1)))
    workers: list[Worker] = []
    with SweepProgress(suite, todo, expected, workers=len(commands)) as display:
        try:
            with interrupts.handling():
                with interrupts.critical():  # a signal waits until every worker is started, then reaches each one
                    for index, (device, command) in enumerate(commands):
                        env = {**os.environ, SWEEP_START: repr(start)}
                        if device == "cpu":
                            env.setdefault("OMP_NUM_THREADS", threads)
                        workers.append(_start(f"worker {index} ({device})", command, logs / f"worker{index}.log", env))
                console.log(f"{len(workers)} workers share the sweep, one per device; their logs are in {logs}")
                while any(worker.process.poll() is None for worker in workers):
                    watch.look(display, workers, report)
                    _say_deaths(workers)
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt as exc:
            report.interrupted_by = getattr(exc, "signum", signal.SIGINT)
        finally:  # nothing this command started outlives it
            _stop(workers, report.interrupted_by or signal.SIGTERM)
        watch.look(display, workers, report)  # the rows written as the workers ended
        if not report.interrupted:
            _say_deaths(workers)
    elsewhere = live_claims(store.claims_folder)
    report.elsewhere = sum(case_id in elsewhere for case_id in watch.waiting)
    if not report.interrupted:
        report.lost = len(watch.waiting) - report.elsewhere
    return report


class _Watch:
    """What the workers have done with the cases, as the results folder shows it, told to the display."""

    def __init__(self, kind: SuiteKind, store: Store, todo: list[Config], since: dict[str, float]):
        self.kind, self.store, self.since = kind, store, since  # case id -> rows newer than this are this sweep's
        self.waiting = {case.case_id: case for case in todo}  # cases without a row of this sweep yet
        self.running: set[str] = set()

    def look(self, display: SweepProgress, workers: list[Worker], report: SweepReport):
        """Tell the display of the cases started, finished or stopped since the last look."""
        owners = live_claims(self.store.claims_folder)
        names = {(HOST, worker.process.pid): worker.name for worker in workers}
        for case_id in list(self.waiting):
            if self.store.has_row(case_id, self.since[case_id]):
                row = self.store.row(case_id)
                del self.waiting[case_id]
                self.running.discard(case_id)
                report.ok += row["status"] == "ok"
                report.errors += row["status"] == "error"
                display.case_finished(case_id, f"{outcome(row, self.kind.progress_metric)} on {row['device']}",
                                      failed=row["status"] == "error")
            elif case_id in owners and case_id not in self.running:
                self.running.add(case_id)
                display.case_started(self.waiting[case_id], where=names.get(owners[case_id], "another process"))
            elif case_id not in owners and case_id in self.running:
                self.running.discard(case_id)
                display.case_stopped(case_id)


def _start(name: str, command: list[str], log: Path, env: dict) -> Worker:
    """Start a worker, its output appended to `log` (a rerun's output follows the last run's)."""
    with open(log, "ab") as file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=file, stderr=subprocess.STDOUT, env=env)
    return Worker(name, log, process)


def _say_deaths(workers: list[Worker]):
    """Report each worker that ended by a signal or with an exit code other than 0 and 1, once."""
    for worker in workers:
        code = worker.process.poll()
        if code is None or worker.said:
            continue
        worker.said = True
        if code in (0, 1):
            continue
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        last = _last_line(worker.log)
        console.error(f"{worker.name} {how}; its log: {worker.log}" + (f", ending: {last}" if last else ""))


def _last_line(log: Path) -> str:
    with open(log, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
        lines = file.read().decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _stop(workers: list[Worker], signum: int):
    """Send `signum` to the workers still running and wait for every one to end."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signum)
    for worker in workers:
        worker.process.wait()
