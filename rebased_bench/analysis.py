"""What the tables and figures compute from stored rows, in one place.

- One kind's rows as its config wrote them (`kind_rows`): each case once (rows of one case id are one run, the
  newest counts), a config column an older row lacks at the field's default (so old and new rows of one protocol
  stay one setting), integer columns as integers.
- Seeds pooled (`seed_stats`, `best_lr`): only distinct seeds of one setting; the mean, n and a 95% Student-t
  interval on the mean over seeds (none for one seed), clipped to [0, 1], where accuracy and IoU live.
- Which differences between mixers the seeds do not resolve (`unresolved`): their 95% intervals overlap.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pyarrow as pa

from .config import IGNORED, flat_fields, value_type

INTERVAL = "95% t-interval of the mean over seeds"
# Two-sided 95% quantiles of Student's t for df = 1..30; beyond, the Cornish-Fisher expansion about the normal's.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (to 3 decimals)."""
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def setting_fields(config, axes) -> tuple[str, ...]:
    """The config's fields besides the sweep's `axes` that change a result: runs differing in one are never pooled."""
    return tuple(name for name, (field, _) in flat_fields(config).items()
                 if name not in axes and field.metadata != IGNORED)


def kind_rows(rows: pd.DataFrame, kind) -> pd.DataFrame:
    """One kind's rows as its config wrote them: each case once, missing config columns at their defaults, integer
    columns as integers, other kinds' columns left out."""
    if "kind" in rows:
        rows = rows[rows["kind"] == kind.name]
    rows = rows.drop(columns=[c for c in rows if c not in kind.schema.names and rows[c].isna().all()])
    return _integers(_with_defaults(_newest_per_case(rows), kind.config), kind.schema)


def _newest(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows ordered oldest first by `started_at` (rows without one count as the oldest)."""
    if "started_at" not in rows:
        return rows
    return rows.sort_values("started_at", kind="stable", na_position="first")


def _newest_per_case(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of one case id are one run (a rerun, or the same folder read twice): the newest counts."""
    if "case_id" not in rows:
        return rows
    ordered = _newest(rows)
    return ordered[~(ordered["case_id"].notna() & ordered.duplicated("case_id", keep="last"))].sort_index()


def _with_defaults(rows: pd.DataFrame, config) -> pd.DataFrame:
    """Every config column, null or absent ones at the field's default: a row written before a field existed ran
    with its default, and an unset field (None) reads the same whether its column was written or not."""
    filled = {}
    for name, (field, annotation) in flat_fields(config).items():
        default = None if field.default is dataclasses.MISSING else field.default
        if default is not None and not isinstance(default, value_type(annotation)):
            continue  # an alias the config settles from other fields ("paper" kv pairs): no value to fill in
        if name not in rows:
            filled[name] = default
        elif default is not None:
            filled[name] = rows[name].fillna(default)
    return rows.assign(**filled)


def _integers(rows: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Integer columns as integers (nullable where a value is missing): read beside other kinds they came back as
    floats, which would print as "seq_len=64.0"."""
    typed = {}
    for field in schema:
        column = rows.get(field.name)
        if (pa.types.is_integer(field.type) and column is not None and pd.api.types.is_float_dtype(column)
                and (column.dropna() % 1 == 0).all()):
            typed[field.name] = column.astype("int64" if column.notna().all() else "Int64")
    return rows.assign(**typed)


def mixed_settings(rows: pd.DataFrame, keys, settings) -> list[str]:
    """The `settings` columns that take several values inside one group of `keys` (e.g. a rerun with --epochs 8)."""
    present = [c for c in settings if c in rows and c not in keys]
    if rows.empty or not present:
        return []
    counts = rows.groupby(list(keys), dropna=False)[present].nunique(dropna=False).max()
    return [c for c in present if counts[c] > 1]


def seed_stats(rows: pd.DataFrame, keys, metric: str, settings=()) -> pd.DataFrame:
    """Per `keys` (and the settings that differ inside them) over the ok rows: mean of `metric` over distinct
    seeds, std, `seeds` (n), the 95% t-interval `low`/`high` (NaN for one seed) and `runs` (= n here)."""
    ok = _ok(rows, metric)
    return _pooled(ok, list(keys) + mixed_settings(ok, keys, settings), metric).assign(runs=lambda s: s["seeds"])


def best_lr(rows: pd.DataFrame, keys, settings, metric: str = "accuracy") -> pd.DataFrame:
    """Per `keys` (and the settings that differ inside them), the lr with the best mean over seeds: its
    `seed_stats`, and `runs`, the ok rows behind the point over every lr."""
    ok = _ok(rows, metric)
    keys = list(keys) + mixed_settings(ok, keys, settings)
    stats = _pooled(ok, keys + ["lr"], metric)
    if stats.empty:
        return stats.assign(runs=0)
    groups = stats.groupby(keys, dropna=False)
    stats = stats.assign(runs=groups["seeds"].transform("sum"))
    return stats.loc[groups["mean"].idxmax()].reset_index(drop=True)


def _ok(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The ok rows that measured `metric` (an error row's metric is no measurement)."""
    if metric not in rows:  # rows of another kind, or made by hand without it
        return rows.iloc[0:0]
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    return ok.dropna(subset=[metric])


def _pooled(ok: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Mean, std, n and the clipped 95% t-interval of `metric` per `keys`, over one row (the newest) per seed."""
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "seeds", "low", "high"])
    if "seed" in ok:  # two rows of one seed are one run measured twice, never two seeds
        ok = _newest(ok).drop_duplicates(keys + ["seed"], keep="last")
    stats = ok.groupby(keys, dropna=False)[metric].agg(mean="mean", std="std", seeds="count").reset_index()
    n = stats["seeds"]
    half = [t975(k - 1) * s / math.sqrt(k) if k > 1 else np.nan for k, s in zip(n, stats["std"])]
    return stats.assign(low=(stats["mean"] - half).clip(0, 1), high=(stats["mean"] + half).clip(0, 1))


def unresolved(stats: pd.DataFrame, among: str, by: list[str]) -> pd.Series:
    """Per row of `stats`: "*" for the best `among` value (mixer, variant) of its `by` group, "~" for one whose
    difference from the best the seeds do not resolve (their 95% intervals overlap, or either has one seed),
    "" otherwise or when the group holds one."""
    if stats.empty:
        return pd.Series("", index=stats.index, dtype=object)
    groups = stats.groupby(by, dropna=False)["mean"]
    lead = groups.transform("idxmax")
    best_low, best_n = stats.loc[lead, "low"].to_numpy(), stats.loc[lead, "seeds"].to_numpy()
    close = (stats["seeds"] < 2).to_numpy() | (best_n < 2) | (stats["high"].to_numpy() >= best_low)
    marks = np.where(stats.index == lead.to_numpy(), "*", np.where(close, "~", ""))
    marks[(groups.transform("size") == 1).to_numpy()] = ""
    return pd.Series(marks, index=stats.index, dtype=object)


def commits(rows: pd.DataFrame) -> list[str]:
    """The git commits (short) the rows were made at, sorted; empty without the column."""
    if "git_commit" not in rows:
        return []
    return sorted({str(c)[:7] for c in rows["git_commit"].dropna()})
