"""Rich tables of result rows (what the kinds' summaries print on stdout)."""

import numbers

import pandas as pd
from rich.console import Group
from rich.table import Table

from .analysis import INTERVAL, commits, mixed_settings, unresolved


def value_text(value) -> str:
    """A config value as a label: a number in its shortest form (64.0 from an int column beside nulls: "64"), a
    missing one "unset"."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "unset"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return f"{value:g}"
    return str(value)


def pivot_table(cells: pd.DataFrame, lines: list[str], column: str, text: str, title: str = "",
                caption: str = "") -> Table:
    """A Rich table: one line per `lines` combination, one column per `column` value, cells the `text` column.

    A label column after the first that holds one value in every line goes into the caption instead.
    """
    shared = [c for c in lines[1:] if cells[c].nunique(dropna=False) == 1]
    lines = [c for c in lines if c not in shared]
    notes = [", ".join(f"{c}={value_text(cells[c].iloc[0])}" for c in shared)] if shared else []
    table = Table(title=title, caption="\n".join(notes + ([caption] if caption else [])) or None)
    columns = sorted(cells[column].unique())
    for name in lines:
        table.add_column(name, no_wrap=True)  # labels stay whole; the value columns wrap instead
    for col in columns:
        table.add_column(f"{column} {value_text(col)}", justify="right")  # a space: a narrow terminal wraps it
    for key, group in cells.groupby(lines, sort=True, dropna=False):
        by_column = dict(zip(group[column], group[text]))
        table.add_row(*(value_text(k) for k in key), *(by_column.get(col, "-") for col in columns))
    return table


def interval_text(cell, with_n: bool = True) -> str:
    """"mean [low, high] n=seeds" of one seed_stats row (no interval for one seed; n left to the caption)."""
    interval = f" [{cell['low']:.2f}, {cell['high']:.2f}]" if cell["seeds"] > 1 else ""
    return f"{cell['mean']:.3f}{interval}" + (f" n={cell['seeds']}" if with_n else "")


def seed_tables(stats: pd.DataFrame, rows: pd.DataFrame, lines: list[str], column: str, settings, title: str):
    """Per suite, a table of `stats` (seed_stats or best_lr rows, with `suite`): a line per `lines` combination and
    setting that differs inside the suite, a column per `column` value, each cell "mean [95% interval] n=seeds",
    marked where the seeds do not resolve its difference from the best `lines[0]` (mixer, variant) of its column.
    `rows` are the rows behind `stats`: the caption names their commits when they are several."""
    among = lines[0]
    tables = []
    for suite, cells in stats.groupby("suite", sort=True):
        differ = mixed_settings(cells, [*lines, column], settings)
        marks = unresolved(cells, among, [*lines[1:], column, *differ])
        one_n = cells["seeds"].nunique() == 1  # then n is said once, in the caption
        cells = cells.assign(text=[f"{interval_text(cell, with_n=not one_n)} {mark}".rstrip()
                                   for (_, cell), mark in zip(cells.iterrows(), marks)])
        made_at = commits(rows[rows["suite"] == suite])
        n = int(cells["seeds"].iloc[0])
        caption = [f"mean [{INTERVAL}, clipped to 0..1], n={n} seed{'s' if n > 1 else ''} in every cell" if one_n else
                   f"mean [{INTERVAL}, clipped to 0..1] n=seeds"]
        if (cells["seeds"] == 1).any():
            caption[0] += "; no interval for n=1"
        if any(marks):
            caption.append(f"*: best {among} of its {', '.join([*lines[1:], column, *differ])}; "
                           "~: not resolved from it (95% intervals overlap, or n=1)")
        if len(made_at) > 1:
            caption.append(f"rows of {len(made_at)} commits: {', '.join(made_at)}")
        tables.append(pivot_table(cells, [*lines, *differ], column, "text", title=f"{title}, {suite}",
                                  caption="\n".join(caption)))
    return Group(*tables) if tables else None
