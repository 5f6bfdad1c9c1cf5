"""`rebased-bench show`: the table of stored results."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from .. import console
from ..errors import BenchError
from ..kinds import KINDS
from ..store import read_rows
from .shared import Format, FormatOpt, render_rows


def read_results(path: Path) -> pd.DataFrame:
    """Every row of ours under `path` (files that are not ours are reported and skipped); none is a BenchError."""
    rows = read_rows(path, {name: kind.schema for name, kind in KINDS.items()})
    if rows.empty or "kind" not in rows:
        raise BenchError(f"{path}: no result rows")
    repeated = rows["case_id"].dropna().duplicated().sum() if "case_id" in rows else 0
    if repeated:
        console.log(f"{repeated} rows repeat the case id of another (a rerun, or a folder read twice): "
                    "each case counts once, its newest row")
    return rows


def show(path: Annotated[Path, typer.Argument(help="A results folder (e.g. results/mqar) or a Parquet file.")],
         format: FormatOpt = Format.table):
    """Re-render the table of stored results: per cell the mean over seeds, its 95% interval and n."""
    rows = read_results(path)
    for name, subset in rows.groupby("kind"):
        render_rows(KINDS[name], subset, format)
