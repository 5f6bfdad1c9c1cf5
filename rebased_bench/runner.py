"""The runner every suite shares: grid -> cases -> skip finished -> run each -> one row per case -> store."""

import datetime as dt
import hashlib
import json
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .env import environment
from .store import Store

stderr = Console(stderr=True)

# Columns the runner adds to every row, whatever the suite.
RUN_COLUMNS = pa.schema([
    ("kind", pa.string()), ("suite", pa.string()), ("case_id", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("device", pa.string()), ("gpu_name", pa.string()), ("git_commit", pa.string()), ("git_dirty", pa.bool_()),
    ("torch_version", pa.string()), ("triton_version", pa.string()), ("cuda_version", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class SuiteKind:
    """What makes a suite kind: its typed columns, how to check a case, and how to turn a case into metrics."""

    name: str
    columns: pa.Schema  # config and metric columns of its rows
    run_case: Callable[[dict, torch.device], dict]  # (config, device) -> metrics
    prepare: Callable[[dict, torch.device], dict] = lambda config, device: config  # validate/resolve, BenchError
    summary: Callable = None  # DataFrame -> rich Table
    identity_ignores: tuple = field(default_factory=tuple)  # config keys that do not change the result

    @property
    def schema(self) -> pa.Schema:
        return pa.unify_schemas([RUN_COLUMNS, self.columns])


KINDS: dict[str, SuiteKind] = {}


def register_kind(kind: SuiteKind) -> SuiteKind:
    KINDS[kind.name] = kind
    return kind


def case_id(config: dict, ignore=()) -> str:
    """A stable id: the hash of the canonical (sorted-key JSON) config."""
    canonical = json.dumps({k: v for k, v in config.items() if k not in ignore}, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def case_row(kind_name: str, suite: str, config: dict, device_name: str) -> dict:
    """The columns of a case's row known before it runs: identity, config, environment, start time."""
    kind = KINDS[kind_name]
    return {"kind": kind_name, "suite": suite, "case_id": case_id(config, kind.identity_ignores), **config,
            **environment(torch.device(device_name)), "started_at": dt.datetime.now(dt.timezone.utc)}


def error_row(row: dict, exc: BaseException) -> dict:
    """`row` marked as failed by `exc`: the one place error rows get their status and message."""
    return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}


def run_one(kind_name: str, suite: str, config: dict, device_name: str) -> dict:
    """Run one case into one row; an exception becomes an error row, never a crash."""
    row = case_row(kind_name, suite, config, device_name)
    try:
        # run_case may return status "skipped" with the reason in "error" (a peer that cannot run here)
        return {**row, "status": "ok", "error": None, **KINDS[kind_name].run_case(config, torch.device(device_name))}
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed case is data: its row says why
        traceback.print_exc(file=sys.stderr)
        return error_row(row, exc)


def local_executor(tasks: Iterable[tuple], run: Callable) -> Iterator[dict]:
    """Run cases one after another in this process."""
    for task in tasks:
        yield run(*task)


@dataclass
class SweepReport:
    total: int
    skipped: int = 0
    ok: int = 0
    errors: int = 0
    interrupted: bool = False
    case_ids: list = field(default_factory=list)


def run_sweep(kind: SuiteKind, suite: str, configs: list[dict], store: Store, device: torch.device,
              force=False, executor=local_executor) -> SweepReport:
    """Run every case not yet in the store; Ctrl-C keeps finished rows and the next run resumes."""
    ids = [case_id(c, kind.identity_ignores) for c in configs]
    done = set() if force else store.done_ids()
    pending = [(kind.name, suite, c, str(device)) for c, i in zip(configs, ids) if i not in done]
    report = SweepReport(total=len(configs), skipped=len(configs) - len(pending), case_ids=ids)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[last]}")]
    with Progress(*columns, console=stderr, transient=False, disable=not pending) as progress:
        bar = progress.add_task(f"{suite}", total=len(pending), last="")
        try:
            for row in executor(pending, run_one):
                store.write(row)
                report.ok += row["status"] == "ok"
                report.errors += row["status"] == "error"
                progress.update(bar, advance=1, last=_describe(row))
        except KeyboardInterrupt:
            report.interrupted = True
    return report


def _describe(row: dict) -> str:
    metric = row.get("accuracy", row.get("median_ms"))
    shown = f"{metric:.3f}" if isinstance(metric, float) else ""
    return f"{row['case_id']} {row['status']} {shown}"
