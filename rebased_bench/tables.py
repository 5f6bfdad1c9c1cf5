"""Rich tables of result rows (what the kinds' summaries print on stdout)."""

import pandas as pd
from rich.table import Table


def pivot_table(cells: pd.DataFrame, rows: list[str], column: str, value: str, std: str | None = None,
                title: str = "") -> Table:
    """A Rich table: one line per `rows` combination, one column per `column` value, cells `value` [± std]."""
    table = Table(title=title)
    columns = sorted(cells[column].unique())
    for name in rows:
        table.add_column(name)
    for col in columns:
        table.add_column(f"{column}={col}", justify="right")
    for key, group in cells.groupby(rows, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        by_col = group.set_index(column)
        line = [str(k) for k in key]
        for col in columns:
            if col not in by_col.index:
                line.append("-")
                continue
            cell = by_col.loc[col]
            text = f"{cell[value]:.3f}"
            if std and cell.get("seeds", 1) > 1:
                text += f" ± {cell[std]:.3f}"
            line.append(text)
        table.add_row(*line)
    return table
