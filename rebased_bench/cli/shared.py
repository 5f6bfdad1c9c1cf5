"""What the commands share: their options (Annotated aliases, str Enums) and the run step of a suite command."""

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import pandas as pd
import torch
import typer
from rich.table import Table

from .. import console
from ..config import Config, flat_fields, value_type
from ..env import named_device, resolve_devices, several_devices
from ..errors import BenchError
from ..estimate import DRY_RUN_PROBE_S, RUN_PROBE_S, describe, estimate
from ..files import DiskFull
from ..kinds.mqar import PRECISIONS
from ..launcher import SWEEP_START, run_workers
from ..models.registry import MIXERS
from ..ranges import parse_floats, parse_ints, parse_names
from ..runner import SuiteKind, SweepReport, local_executor, pending, run_sweep
from ..store import Store, read_rows
from ..suite import load_suite
from ..training import kept_epoch


class Format(str, Enum):
    table = "table"
    json = "json"


class Executor(str, Enum):
    local = "local"
    ray = "ray"


Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)

SuiteOpt = Annotated[str, typer.Option("--suite", help="Built-in suite name (see `ls`) or a .toml path.")]
MixersOpt = Annotated[Optional[str], typer.Option(
    "--mixers", help=f"Comma list of mixers ({', '.join(MIXERS)}) or module:Class.")]
SeqLensOpt = Annotated[Optional[str], typer.Option("--seq-lens", help="e.g. 64..256 (doubling), 128..512:+128, 64,128.")]
DModelsOpt = Annotated[Optional[str], typer.Option("--d-models", help="Model widths, e.g. 64,128.")]
LrsOpt = Annotated[Optional[str], typer.Option("--lrs", help="Learning rates, e.g. 3e-4,1e-3.")]
SeedsOpt = Annotated[Optional[str], typer.Option("--seeds", help="Training seeds, e.g. 0..3:+1.")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.")]
ScheduleOpt = Annotated[Optional[int], typer.Option("--schedule-epochs", help=(
    "Cosine lr period in epochs (default: --epochs, lr 0 at the end; the paper: 64, so shorter runs keep ~full lr)."))]
TrainOpt = Annotated[Optional[int], typer.Option("--train-examples", help="Training examples (data seed 42).")]
TestOpt = Annotated[Optional[int], typer.Option("--test-examples", help="Test examples (data seed 52).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Effective batch size.")]
KvOpt = Annotated[Optional[int], typer.Option("--num-kv-pairs", help="Key-value pairs (default: the paper's rule).")]
PrecisionOpt = Annotated[Optional[Precision], typer.Option(
    "--precision", help="fp32 (the paper's protocol) or bf16 autocast; default bf16 on CUDA, fp32 on CPU.")]
DeviceOpt = Annotated[str, typer.Option("--device", help=(
    "auto, cpu, cuda or cuda:N; several devices run a worker process each on one --out: cuda:all (every GPU here) "
    "or a comma list (cuda:0,cuda:2; cpu,cpu: two on the CPU)."))]
# The user's own runs: git-ignored, apart from results/, which holds what the project publishes (named to write).
DEFAULT_OUT = Path("runs")
OutOpt = Annotated[Path, typer.Option("--out", help=(
    "Results folder; rows go to OUT/<kind>/. Default runs/ (yours); results/ holds the project's published rows."))]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help=(
    "Print the expanded grid and its estimate, run nothing; needs no device (--device cuda plans a GPU sweep)."))]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun cases already in the store.")]
RetryErrorsOpt = Annotated[bool, typer.Option(
    "--retry-errors", help="Rerun the cases whose stored row is an error (otherwise they count as done).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output on stdout: a table or JSON rows.")]
ExecutorOpt = Annotated[Executor, typer.Option(
    "--executor", help="local: cases one after another here; ray: each case a Ray task (the ray extra).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="With --executor ray: auto or HOST:PORT joins a running cluster; default: a local Ray.")]
GpusPerCaseOpt = Annotated[Optional[float], typer.Option(
    "--gpus-per-case", help="With --executor ray: GPUs per case, 0.25 packs 4 cases on a GPU; default 1 on CUDA.")]
MAX_CASES = 10_000  # a grid larger than this is most likely a typo: --max-cases runs it anyway
MaxCasesOpt = Annotated[int, typer.Option(
    "--max-cases", min=1, help="Refuse a grid of more cases than this (a safeguard against a mistyped range).")]
SaveCheckpointsOpt = Annotated[bool, typer.Option(
    "--save-checkpoints", help="Keep each trained model as OUT/checkpoints/<kind>/<case_id>.pt (path in the row).")]

# List flags: the flag's parameter -> the field whose grid axis it sets (parsed as that field's type). Any other
# flag named like a field (epochs, batch_size, top_k, ...) sets that field in every case.
AXES = {"mixers": "mixer", "variants": "variant", "providers": "provider", "modes": "mode", "seq_lens": "seq_len",
        "d_models": "d_model", "lrs": "lr", "seeds": "seed", "batch": "batch"}


def flag_fields(options: dict, config: type[Config]) -> tuple[dict, dict]:
    """(grid axes, fixed fields) that a command's given flags (not None) set in cases of `config`."""
    fields = flat_fields(config)
    grid, fixed = {}, {}
    for option, value in options.items():
        if value is None:
            continue
        if option in AXES:
            parse = {int: parse_ints, float: parse_floats}.get(value_type(fields[AXES[option]][1]), parse_names)
            grid[AXES[option]] = parse(value, "--" + option.replace("_", "-"))
        elif option in fields:
            fixed[option] = value.value if isinstance(value, Enum) else value
    return grid, fixed


def run_suite(ctx: typer.Context, kind: SuiteKind, suite: str | None = None,
              after: Callable[[pd.DataFrame], None] | None = None, **fields) -> pd.DataFrame | None:
    """The run step of a suite command: suite + flags -> checked cases -> the grid (--dry-run) or sweep and table.

    The suite is --suite unless `suite` is given; `fields` are fields the command derives from its flags (where
    checkpoints go, say); `after` gets the sweep's rows once they are shown (iou draws its heatmaps). Every case is
    checked before anything runs. Several devices (--device cuda:all, a comma list) run the sweep as one worker
    process per device, this command with one of them (launcher.py). Exits 1 when a case of the sweep has an error
    row, saying how many in the last line. Returns the rows of the suite's cases, None for a dry run.
    """
    options = ctx.params
    out = Path(options["out"])  # ctx.params holds click's value: a str under some typer versions
    grid, fixed = flag_fields(options, kind.config)
    suite = load_suite(suite or options["suite"]).override(grid, {**fixed, **fields})
    if suite.kind is not kind:
        raise BenchError(f"suite {suite.name!r} is a {suite.kind.name!r} suite, not {kind.name!r}")
    if suite.size() > options["max_cases"]:
        raise BenchError(f"the grid has {suite.size()} cases, more than --max-cases {options['max_cases']}: "
                         "narrow it, or raise --max-cases to run it")
    cases = suite.configs()
    if options["executor"] is Executor.local and (options["ray_address"] is not None
                                                or options["gpus_per_case"] is not None):
        raise BenchError("--ray-address and --gpus-per-case apply to --executor ray")
    retry_errors = options.get("retry_errors", False)
    if options["dry_run"]:  # planned for the device named, which need not be here
        device = named_device(options["device"])
        cases = _for_device(cases, device)
        store = Store(out, kind.name, kind.schema, create=False)
        statuses = store.statuses()
        todo = pending(cases, statuses, options["force"], retry_errors)
        plans = _plans(cases, todo, statuses, store)
        planned = pd.DataFrame([{"case_id": case.case_id, "plan": plans[case.case_id], **case.flat()}
                                for case in cases])
        if options["format"] is Format.json:
            console.out_rows(planned)
        else:
            console.show(_grid_table(planned, suite.name))
        _estimate(todo, device, out, DRY_RUN_PROBE_S)
        return None
    devices, executor = _executor(options["executor"], options["ray_address"], options["gpus_per_case"],
                                  options["device"])
    cases = _for_device(cases, devices[0])
    store = Store(out, kind.name, kind.schema)
    todo = pending(cases, store.statuses(), options["force"], retry_errors)
    since = float(os.environ[SWEEP_START]) if SWEEP_START in os.environ else None  # set in a launcher's workers
    # A worker leaves the estimate to its launcher, which shows the sweep's ETA: it starts on its cases at once.
    expected = _estimate(todo, devices[0], out, RUN_PROBE_S) if since is None else None
    try:
        if len(devices) > 1:
            if devices[0].type == "cuda":  # the estimate's probe blocks would stay reserved beside the first worker
                torch.cuda.empty_cache()
            commands = [(str(device), _worker_command(ctx, str(device))) for device in devices]
            report = run_workers(kind, suite.name, cases, store, commands, force=options["force"],
                                 retry_errors=retry_errors, expected=expected)
        else:
            report = run_sweep(kind, suite.name, cases, store, devices[0], force=options["force"],
                               retry_errors=retry_errors, executor=executor, expected=expected, since=since)
    except DiskFull as exc:
        console.error(f"{exc}: rows so far are kept; free space and rerun to resume")
        raise typer.Exit(1) from None
    return _conclude(kind, store, report, options["format"], after)


def _conclude(kind: SuiteKind, store: Store, report: SweepReport, fmt: Format,
              after: Callable[[pd.DataFrame], None] | None) -> pd.DataFrame:
    """Say what the sweep did, show its cases' rows, and exit as the conventions say (robustness.md)."""
    if report.skipped:
        console.log(f"{report.skipped} of {report.total} cases already done in {store.path} (--force reruns them)")
    if report.elsewhere:
        console.log(f"{report.elsewhere} cases are being run by another process (claims in {store.claims_folder}); "
                    "their rows join the store when it finishes them")
    rows = read_rows(store.path)
    rows = rows[rows["case_id"].isin(report.case_ids)]
    render_rows(kind, rows, fmt)
    console.log(f"ran {report.ok + report.errors} ({report.errors} errors), rows in {store.path}")
    if report.interrupted:
        console.log("interrupted: finished rows are kept; rerun the same command to resume")
        raise typer.Exit(128 + report.interrupted_by)
    if report.lost:
        console.log(f"{report.lost} cases have no row: a worker ended before it finished them; rerun the same "
                    "command to run them")
        raise typer.Exit(1)
    if after is not None:
        after(rows)
    failed = int((rows["status"] == "error").sum()) if "status" in rows else 0
    if failed:
        console.log(f"{failed} of {report.total} cases failed (--retry-errors reruns them)")
        raise typer.Exit(1)
    return rows


def _plans(cases: list[Config], todo: list[Config], statuses: dict[str, str], store: Store) -> dict[str, str]:
    """What running the command would do with each case, by case id: run it, continue it after the epoch its kept
    state reached, or leave its row (done, or an error row that only --retry-errors reruns)."""
    runs = {case.case_id for case in todo}
    plans = {}
    for case in cases:
        if case.case_id not in runs:
            plans[case.case_id] = "error row" if statuses[case.case_id] == "error" else "done"
        elif (epoch := kept_epoch(store.state_path(case.case_id))) is not None:
            plans[case.case_id] = f"continues after epoch {epoch}"
        else:
            plans[case.case_id] = "runs"
    return plans


def _for_device(cases: list[Config], device) -> list[Config]:
    """The cases with their device defaults settled, each case id once."""
    return list({case.case_id: case for case in (c.for_device(device) for c in cases)}.values())


def _estimate(cases: list[Config], device, out: Path, probe_seconds: float) -> dict[str, float] | None:
    """Say how long the cases should take on `device` (estimate.py); returns the expected seconds per case id."""
    result = estimate(cases, device, out, probe_seconds)
    for line in describe(result):
        console.log(line)
    return result.seconds if result else None


def _executor(executor: Executor, ray_address, gpus_per_case, device: str):
    """([device], executor), or several devices for the local executor, one worker process each. With Ray, the device
    is resolved on the cluster, whose GPUs the driver may not have."""
    if executor is Executor.ray:
        if several_devices(device):
            raise BenchError(f"--device {device}: several devices run one worker each; --executor ray places the "
                             "cases on the GPUs itself (--device cuda)")
        from ..ray_executor import start_ray_executor  # ray is an optional extra
        device, run = start_ray_executor(ray_address, gpus_per_case, device)
        return [device], run
    return resolve_devices(device), local_executor


def _worker_command(ctx: typer.Context, device: str) -> list[str]:
    """This command line with one device: what each worker of a sweep over several devices runs."""
    command = [sys.executable, "-m", "rebased_bench", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "device" or value is None or value is False:
            continue
        value = value.value if isinstance(value, Enum) else value
        command += [param.opts[0]] if param.is_flag else [param.opts[0], str(value)]
    return [*command, "--device", device]


def render_rows(kind: SuiteKind, rows: pd.DataFrame, fmt: Format):
    """The kind's table of the rows (or the rows as JSON) on stdout; each error row's message on stderr."""
    if fmt is Format.json:
        console.out_rows(rows)
        return
    if rows.empty:  # a sweep stopped before its first row
        return
    table = kind.summary(rows) if kind.summary else None
    if table is not None:
        console.show(table)
    for _, row in rows[rows["status"] == "error"].iterrows():
        console.log(f"error row {row['case_id']}: {row['error']}")


def _grid_table(rows: pd.DataFrame, title: str) -> Table:
    """case_id and the columns that vary, one line per case; the shared values go in the caption."""
    varying = [c for c in rows.columns if c == "case_id" or rows[c].astype(str).nunique() > 1]
    shared = ", ".join(f"{c}={rows[c].iloc[0]}" for c in rows.columns if c not in varying)
    table = Table(title=f"{title}: {len(rows)} cases", caption=shared)
    for column in varying:
        table.add_column(column)
    for _, row in rows[varying].iterrows():
        table.add_row(*(str(v) for v in row))
    return table
