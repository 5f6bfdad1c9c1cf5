"""`rebased-bench show`: the table of stored results."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BenchError
from ..kinds import KINDS
from ..store import read_rows
from .shared import Format, FormatOpt, render_rows


def show(path: Annotated[Path, typer.Argument(help="A results folder (e.g. results/mqar) or a Parquet file.")],
         format: FormatOpt = Format.table):
    """Re-render the table of stored results."""
    rows = read_rows(path)
    if rows.empty or "kind" not in rows:
        raise BenchError(f"{path}: no result rows")
    for name, subset in rows.groupby("kind"):
        if name in KINDS:
            render_rows(KINDS[name], subset, format)
