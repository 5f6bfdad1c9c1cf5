"""`rebased-bench plot`: every figure the stored rows support."""

import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import console
from ..errors import BenchError
from ..kinds import KINDS
from .shared import DEFAULT_OUT
from .show import read_results

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench plot                                   [dim]# every figure runs/ supports -> runs/figures/[/dim]\n
  rebased-bench plot results/mqar-gpu --suite mqar --out runs/figures\n
  rebased-bench plot results --suite kernels --baseline fla_parallel_rebased\n
  rebased-bench plot runs --reference results/mqar-paper   [dim]# your mqar rows beside the published ones[/dim]"""

KindName = Enum("KindName", {name: name for name in KINDS}, type=str)


def plot(results: Annotated[Path, typer.Argument(help=(
             "A results folder (read recursively) or a Parquet file; default runs/, where the commands write."))]
         = DEFAULT_OUT,
         suite: Annotated[Optional[KindName], typer.Option("--suite", help="Only this kind of rows (default: all).")]
         = None,
         out: Annotated[Optional[Path], typer.Option(
             "--out", help="Figure folder (default: RESULTS/figures, beside a kind folder).")] = None,
         baseline: Annotated[Optional[str], typer.Option(
             "--baseline", help="Kernel provider the speed-up is measured against (default: sdpa).")] = None,
         reference: Annotated[Optional[Path], typer.Option("--reference", help=(
             "Reference mqar rows (a folder or Parquet file): draw only mqar-compare_<suite>, the rows' Figure 1 with "
             "the reference rows of the same protocol at their cells, dashed."))] = None):
    """Draw every figure the stored rows support (PNG and PDF); prints the path of each file written."""
    from ..figures import plot_compare, plot_results  # matplotlib only loads for this command
    if reference and ((suite and suite.value != "mqar") or baseline):
        raise BenchError("--reference compares mqar rows: it takes no --baseline and no --suite but mqar")
    rows = read_results(results)
    against = read_results(reference) if reference else None
    folder = results if results.is_dir() else results.parent
    if folder.name in KINDS:  # a figure inside a kind's folder would break pandas.read_parquet on it
        folder = folder.parent
    out = out or folder / "figures"
    _check_writable(out)
    paths = (plot_compare(rows, against, out, str(reference)) if reference
             else plot_results(rows, out, [suite.value] if suite else None, baseline))
    for path in paths:
        console.out(str(path))


def _check_writable(out: Path):
    """A BenchError unless figures can be written in `out` (made if missing): found before anything is drawn."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise BenchError(f"--out: cannot write figures to {out}: {exc.strerror or exc}") from None
