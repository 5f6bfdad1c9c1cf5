"""The `rebased-bench` command line: suites in, Parquet rows and tables out."""

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__, kernels_suite, mqar  # noqa: F401  (importing a suite module registers its kind)
from .env import resolve_device
from .errors import BenchError
from .ranges import parse_floats, parse_ints, parse_names
from .render import print_json, stdout
from .runner import KINDS, case_id, local_executor, run_sweep
from .store import Store, read_rows
from .suite import load_suite, suite_files

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", add_completion=False,
                  help="Benchmarks for linear attention with learnable kernel functions (ReBased).")


# Typer vendors click from 0.2x on and re-exports click's errors before that: reach the base class either way.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Format(str, Enum):
    table = "table"
    json = "json"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class Executor(str, Enum):
    local = "local"
    ray = "ray"


SuiteOpt = Annotated[str, typer.Option("--suite", help="Built-in suite name (see `ls`) or a .toml path.")]
MixersOpt = Annotated[Optional[str], typer.Option(
    "--mixers", help="Comma list of mixers: attention, conv_attention, based, rebased, or module:Class.")]
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
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Results folder; rows go to OUT/<kind>/.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the expanded grid and run nothing.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun cases already in the store.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output on stdout: a table or JSON rows.")]
# Every suite command takes these three and passes them on to run_suite_command.
ExecutorOpt = Annotated[Executor, typer.Option(
    "--executor", help="local: cases one after another here; ray: each case a Ray task (the ray extra).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="With --executor ray: auto or HOST:PORT joins a running cluster; default: a local Ray.")]
GpusPerCaseOpt = Annotated[Optional[float], typer.Option(
    "--gpus-per-case", help="With --executor ray: GPUs per case, 0.25 packs 4 cases on a GPU; default 1 on CUDA.")]
SaveCheckpointsOpt = Annotated[bool, typer.Option(
    "--save-checkpoints", help="Keep each trained model as OUT/checkpoints/<kind>/<case_id>.pt (path in the row).")]


def one_line_errors(command):
    """Bad input: one line on stderr and exit code 2, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BenchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    return wrapper


def _version(value: bool):
    if value:
        typer.echo(f"rebased-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None):
    """Benchmarks for linear attention with learnable kernel functions (ReBased)."""


def run_suite_command(suite_name: str, grid: dict, fixed: dict, device: str, out: Path, dry_run: bool,
                      force: bool, fmt: Format, kind_name: str | None = None, executor: Executor = Executor.local,
                      ray_address: str | None = None, gpus_per_case: float | None = None):
    """Load a suite, apply CLI overrides, validate every case, then run (or print) the grid and render it.

    Returns the rows of the suite's cases (None for a dry run).
    """
    suite = load_suite(suite_name).override(grid, fixed)
    if kind_name and suite.kind != kind_name:
        raise BenchError(f"suite {suite.name!r} is a {suite.kind!r} suite, not {kind_name!r}")
    kind = KINDS[suite.kind]
    torch_device, run_cases = _executor(executor, ray_address, gpus_per_case, device)
    configs = [kind.prepare(c, torch_device) for c in suite.cases()]
    if not configs:
        raise BenchError(f"suite {suite.name!r}: the grid is empty")
    if dry_run:
        import pandas as pd
        grid_rows = pd.DataFrame([{"case_id": case_id(c, kind.identity_ignores), **c} for c in configs])
        print_json(grid_rows) if fmt is Format.json else stdout.print(_grid_table(grid_rows, suite.name))
        return
    store = Store(out, kind.name, kind.schema)
    report = run_sweep(kind, suite.name, configs, store, torch_device, force=force, executor=run_cases)
    if report.skipped:
        typer.echo(f"{report.skipped} of {report.total} cases already done in {store.path} (--force reruns them)",
                   err=True)
    rows = read_rows(store.path)
    rows = rows[rows["case_id"].isin(report.case_ids)]
    _render(kind, rows, fmt)
    typer.echo(f"ran {report.ok + report.errors} ({report.errors} errors), rows in {store.path}", err=True)
    if report.interrupted:
        typer.echo("interrupted: finished rows are kept; rerun the same command to resume", err=True)
        raise typer.Exit(130)
    return rows


def _executor(executor: Executor, ray_address, gpus_per_case, device: str):
    """(device, executor): with Ray, the device is resolved on the cluster, whose GPUs the driver may not have."""
    if executor is Executor.ray:
        from .ray_executor import start_ray_executor  # ray is an optional extra
        return start_ray_executor(ray_address, gpus_per_case, device)
    if ray_address is not None or gpus_per_case is not None:
        raise BenchError("--ray-address and --gpus-per-case apply to --executor ray")
    return resolve_device(device), local_executor


def _render(kind, rows, fmt: Format):
    if fmt is Format.json:
        print_json(rows)
        return
    table = kind.summary(rows) if kind.summary else None
    if table is not None:
        stdout.print(table)
    errors = rows[rows["status"] == "error"]
    for _, row in errors.iterrows():
        typer.echo(f"error row {row['case_id']}: {row['error']}", err=True)


def _grid_table(rows, title):
    """case_id and the columns that vary, one line per case; the shared values go in the caption."""
    from rich.table import Table
    varying = [c for c in rows.columns if c == "case_id" or rows[c].astype(str).nunique() > 1]
    shared = ", ".join(f"{c}={rows[c].iloc[0]}" for c in rows.columns if c not in varying)
    table = Table(title=f"{title}: {len(rows)} cases", caption=shared)
    for column in varying:
        table.add_column(column)
    for _, row in rows[varying].iterrows():
        table.add_row(*(str(v) for v in row))
    return table


def _opt(parse, text, name):
    return None if text is None else parse(text, name)


def _mqar_axes(seq_lens, d_models, lrs, seeds) -> dict:
    """The grid axes every MQAR-trained suite (mqar, ablate, iou) takes from its flags."""
    return dict(seq_len=_opt(parse_ints, seq_lens, "--seq-lens"), d_model=_opt(parse_ints, d_models, "--d-models"),
                lr=_opt(parse_floats, lrs, "--lrs"), seed=_opt(parse_ints, seeds, "--seeds"))


def _mqar_fixed(epochs, schedule_epochs, train_examples, test_examples, batch_size, num_kv_pairs, precision) -> dict:
    """The fixed training fields every MQAR-trained suite takes from its flags."""
    return dict(epochs=epochs, schedule_epochs=schedule_epochs, train_examples=train_examples,
                test_examples=test_examples, batch_size=batch_size,
                num_kv_pairs=num_kv_pairs, precision=precision and precision.value)


@app.command(epilog="""[b]Examples[/b]\n
  rebased-bench mqar                                   [dim]# the CPU default suite mqar-quick[/dim]\n
  rebased-bench mqar --mixers attention,rebased --seq-lens 64..256 --d-models 64 --epochs 2\n
  rebased-bench mqar --suite mqar-fig1-lite --device cuda --out results\n
  rebased-bench mqar --mixers my_pkg.my_module:MyMixer --seq-lens 64\n
  rebased-bench mqar --suite mqar-paper --dry-run\n
  rebased-bench mqar --suite mqar-fig1-lite --executor ray --gpus-per-case 0.25  [dim]# 4 cases per GPU[/dim]""")
@one_line_errors
def mqar(suite: SuiteOpt = "mqar-quick", mixers: MixersOpt = None, seq_lens: SeqLensOpt = None,
         d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
         schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
         batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
         device: DeviceOpt = "auto",
         out: OutOpt = Path("results"), dry_run: DryRunOpt = False, force: ForceOpt = False,
         format: FormatOpt = Format.table, executor: ExecutorOpt = Executor.local, ray_address: RayAddressOpt = None,
         gpus_per_case: GpusPerCaseOpt = None, save_checkpoints: SaveCheckpointsOpt = False):
    """MQAR accuracy sweeps: seq_len x d_model x mixer x lr x seed; one Parquet row per case."""
    grid = dict(mixer=_opt(parse_names, mixers, "--mixers"), **_mqar_axes(seq_lens, d_models, lrs, seeds))
    fixed = dict(**_mqar_fixed(epochs, schedule_epochs, train_examples, test_examples, batch_size, num_kv_pairs,
                               precision),
                 checkpoint_dir=str(out / "checkpoints") if save_checkpoints else None)
    run_suite_command(suite, grid, fixed, device, out, dry_run, force, format, kind_name="mqar", executor=executor,
                      ray_address=ray_address, gpus_per_case=gpus_per_case)


@app.command(epilog="""[b]Examples[/b]\n
  rebased-bench kernels                                [dim]# kernels-h100 on a GPU, kernels-quick (CPU) otherwise[/dim]\n
  rebased-bench kernels --seq-lens 1024..16384 --providers chunk,parallel,dispatch --modes fwd_bwd\n
  rebased-bench kernels --suite kernels-batch --batch 1..64\n
  rebased-bench kernels --providers chunk --seq-lens 16384 --profile --force  [dim]# traces in OUT/traces/kernels[/dim]\n
  rebased-bench kernels --suite kernels-h100 --dry-run""")
@one_line_errors
def kernels(suite: Annotated[Optional[str], typer.Option(
                "--suite", help="Built-in suite or .toml path; default kernels-h100 on CUDA, kernels-quick on CPU.")] = None,
            seq_lens: SeqLensOpt = None,
            batch: Annotated[Optional[str], typer.Option(
                "--batch", help="Batch sizes, e.g. 1..64; default: tokens per call / seq_len.")] = None,
            providers: Annotated[Optional[str], typer.Option("--providers", help=(
                "Comma list: dispatch, chunk, parallel, naive, sdpa, fla_parallel_rebased, fla_chunk_linear_attn, "
                "fla_parallel_based, fla_fused_chunk_based."))] = None,
            modes: Annotated[Optional[str], typer.Option("--modes", help="fwd, fwd_bwd or both.")] = None,
            profile: Annotated[bool, typer.Option(
                "--profile", help="Also write a torch.profiler trace per case and print its top GPU kernels.")] = False,
            device: DeviceOpt = "auto", out: OutOpt = Path("results"), dry_run: DryRunOpt = False,
            force: ForceOpt = False, format: FormatOpt = Format.table, executor: ExecutorOpt = Executor.local,
            ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None):
    """Attention kernel speed: provider x shape x mode; median/p20/p80 ms, TFLOP/s, peak memory, rel_err."""
    if suite is None:
        suite = "kernels-h100" if resolve_device(device).type == "cuda" else "kernels-quick"
    grid = dict(provider=_opt(parse_names, providers, "--providers"), mode=_opt(parse_names, modes, "--modes"),
                seq_len=_opt(parse_ints, seq_lens, "--seq-lens"), batch=_opt(parse_ints, batch, "--batch"))
    fixed = dict(profile_dir=str(out / "traces" / "kernels") if profile else None)
    run_suite_command(suite, grid, fixed, device, out, dry_run, force, format, kind_name="kernels",
                      executor=executor, ray_address=ray_address, gpus_per_case=gpus_per_case)


@app.command("ls")
@one_line_errors
def list_suites():
    """List the built-in suites and their grids."""
    from rich.table import Table
    table = Table(title="Built-in suites")
    for column in ("suite", "kind", "cases", "grid", "description"):
        table.add_column(column)
    for name in sorted(suite_files()):
        suite = load_suite(name)
        grid = " | ".join("; ".join(f"{axis}={','.join(map(str, values))}" for axis, values in grid.items())
                          for grid in suite.grids)
        table.add_row(name, suite.kind, str(len(suite.cases())), grid, suite.description)
    stdout.print(table)


@app.command()
@one_line_errors
def show(path: Annotated[Path, typer.Argument(help="A results folder (e.g. results/mqar) or a Parquet file.")],
         format: FormatOpt = Format.table):
    """Re-render the table of stored results."""
    rows = read_rows(path)
    if rows.empty or "kind" not in rows:
        raise BenchError(f"{path}: no result rows")
    for name, subset in rows.groupby("kind"):
        if name in KINDS:
            _render(KINDS[name], subset, format)


class PlotKind(str, Enum):
    mqar = "mqar"
    kernels = "kernels"
    ablate = "ablate"
    iou = "iou"


@app.command(epilog="""[b]Examples[/b]\n
  rebased-bench plot                                   [dim]# every figure results/ supports -> results/figures/[/dim]\n
  rebased-bench plot results/mqar-fig1-lite --suite mqar --out figures\n
  rebased-bench plot results --suite kernels --baseline fla_parallel_rebased""")
@one_line_errors
def plot(results: Annotated[Path, typer.Argument(help="A results folder (read recursively) or a Parquet file.")]
         = Path("results"),
         suite: Annotated[Optional[PlotKind], typer.Option("--suite", help="Only this kind of rows (default: all).")]
         = None,
         out: Annotated[Optional[Path], typer.Option(
             "--out", help="Figure folder (default: RESULTS/figures, beside a kind folder).")] = None,
         baseline: Annotated[Optional[str], typer.Option(
             "--baseline", help="Kernel provider the speed-up is measured against (default: sdpa).")] = None):
    """Draw every figure the stored rows support (PNG and PDF); prints the path of each file written."""
    from .figures import plot_results  # matplotlib only loads for this command
    rows = read_rows(results)
    if rows.empty or "kind" not in rows:
        raise BenchError(f"{results}: no result rows")
    folder = results if results.is_dir() else results.parent
    if folder.name in KINDS:  # a figure inside a kind's folder would break pandas.read_parquet on it
        folder = folder.parent
    paths = plot_results(rows, out or folder / "figures", [suite.value] if suite else None, baseline)
    for path in paths:
        typer.echo(str(path))


from . import cli_science  # noqa: E402,F401  (registers the ablate and iou commands; it imports this module)


def main():
    """Console entry point: click's usage errors become one line with exit code 2 as well."""
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code or 0)
