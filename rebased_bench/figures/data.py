"""The data behind each figure: one function per figure, rows in, a tidy DataFrame out (what gets drawn).

Rows are read as their kind wrote them (`analysis.kind_rows`: each case once, old rows at the new fields'
defaults). A point pooled over seeds carries `mean`, `seeds` (n), the 95% t-interval `low`/`high` (NaN for one
seed) and `runs`, the ok rows behind it (every lr of a best-lr point), so each drawn row can be counted.
"""

import pandas as pd

from ..analysis import best_lr, kind_rows, seed_stats
from ..errors import BenchError
from ..kinds import ablate, iou, kernels, mqar
from ..tables import value_text

# Kernel shape columns: one line per (provider, shape); the seq_len axis runs inside one line.
KERNEL_SHAPE = ("heads", "d", "dv")


def mqar_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Figure 1 points: per (suite, mixer, d_model, seq_len) and differing setting, the best-lr accuracy over seeds."""
    best = best_lr(kind_rows(rows, mqar.KIND), ("suite", *mqar.POINT), mqar.SETTINGS)
    return best.sort_values(["suite", "mixer", "seq_len", "d_model"], ignore_index=True)


def mqar_compare_data(rows: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Figure 1 points of `rows` and, flagged by the column `reference`, those of the reference rows run at the same
    protocol (every setting in mqar.SETTINGS equal) at a (seq_len, d_model) cell `rows` have."""
    settings = list(mqar.SETTINGS)
    mine, theirs = (kind_rows(frame, mqar.KIND).query("status == 'ok'") for frame in (rows, reference))
    for frame, where in ((mine, ""), (theirs, "--reference: ")):
        if frame.empty:
            raise BenchError(f"{where}no ok mqar rows to compare")
    # A setting column that rows lack (rows made by hand) reads as unset.
    mine, theirs = (frame.reindex(columns=frame.columns.union(settings, sort=False)) for frame in (mine, theirs))
    # num_kv_pairs follows seq_len, so a protocol is matched cell by cell. A matched reference row takes the suite
    # and the setting values of the user's rows it matches: it is drawn in their figure and split as they are.
    keys = ["seq_len", "d_model", *settings]
    protocols = mine[["suite", *settings]].assign(_key=_values(mine, keys)).drop_duplicates(["suite", "_key"])
    matched = (theirs.drop(columns=["suite", *settings]).assign(_key=_values(theirs, keys))
               .merge(protocols, on="_key").drop(columns="_key"))
    if matched.empty:
        raise BenchError(_no_match(mine, theirs))
    both = pd.concat([mine.assign(reference=False), matched.assign(reference=True)], ignore_index=True)
    best = best_lr(both, ("suite", "reference", *mqar.POINT), mqar.SETTINGS)
    return best.sort_values(["suite", "reference", "mixer", "seq_len", "d_model"], ignore_index=True)


def _values(rows: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Each row's `columns` as one key: 64 and 64.0 alike, and every kind of missing value alike."""
    return [tuple(map(value_text, row)) for row in rows[columns].itertuples(index=False, name=None)]


def _no_match(mine: pd.DataFrame, theirs: pd.DataFrame) -> str:
    """Why no reference row matches: no shared cell, or the settings that differ at the shared cells."""
    cells = ["seq_len", "d_model"]
    shared = mine[cells].drop_duplicates().merge(theirs[cells].drop_duplicates())
    if shared.empty:
        return (f"--reference: no reference row at your (seq_len, d_model) cells: yours {_texts(mine, cells)}, "
                f"reference {_texts(theirs, cells)}")
    mine, theirs = mine.merge(shared), theirs.merge(shared)
    differ = [f"{c} {_texts(mine, [c])} vs {_texts(theirs, [c])}" for c in mqar.SETTINGS
              if set(_values(mine, [c])) != set(_values(theirs, [c]))]
    return (f"--reference: no reference row of your protocol at your cells (yours vs reference: "
            f"{', '.join(differ) or 'each of your settings is there, never all in one row'})")


def _texts(rows: pd.DataFrame, columns: list[str]) -> str:
    """The distinct values of `columns` in `rows`, in order: "16/64" for one column, "(256, 64)/(512, 64)" for two."""
    distinct = rows[columns].drop_duplicates().sort_values(columns)
    keys = dict.fromkeys(_values(distinct, columns))
    return "/".join(key[0] if len(key) == 1 else f"({', '.join(key)})" for key in keys)


def mqar_curves_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Training curves: one row per (ok case, epoch) with its test accuracy, from the rows' accuracy_history."""
    ok = kind_rows(rows, mqar.KIND).query("status == 'ok'")
    keys = ["suite", *mqar.POINT, "lr", "seed"]
    if ok.empty or "accuracy_history" not in ok:
        return pd.DataFrame(columns=[*keys, "epoch", "accuracy"])
    curves = ok[keys + ["accuracy_history"]].explode("accuracy_history").dropna(subset=["accuracy_history"])
    curves = curves.rename(columns={"accuracy_history": "accuracy"}).astype({"accuracy": float})
    curves["epoch"] = curves.groupby(level=0).cumcount() + 1
    return curves.sort_values([*keys, "epoch"], ignore_index=True)


def ablate_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Grouped bars: per (suite, d_model, seq_len, variant) and differing setting, the best-lr accuracy over seeds."""
    best = best_lr(kind_rows(rows, ablate.KIND), ("suite", *ablate.POINT), ablate.SETTINGS)
    return best.sort_values(["suite", "d_model", "seq_len", "variant"], ignore_index=True)


def iou_metric_columns(rows: pd.DataFrame) -> list[str]:
    """The IoU metric columns of iou rows (e.g. iou_vs_reference, iou_vs_oracle): numeric, named iou*."""
    return [c for c in rows.columns if c.startswith("iou") and pd.api.types.is_numeric_dtype(rows[c])]


def iou_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Bars: per (suite, mixer, d_model, seq_len, reference), differing setting and IoU column (`metric`), the mean
    over seeds."""
    rows = kind_rows(rows, iou.KIND)
    keys = ["suite", *iou.POINT, "reference_mixer"]
    bars = [seed_stats(rows, keys, metric, iou.SETTINGS).assign(metric=metric) for metric in iou_metric_columns(rows)]
    if not bars:
        return pd.DataFrame(columns=[*keys, "metric", "mean", "std", "seeds", "low", "high", "runs"])
    return pd.concat(bars, ignore_index=True).sort_values([*keys, "metric"], ignore_index=True)


def kernels_time_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, dtype, size per call, mode, provider, shape, seq_len, batch): median time, p20/p80, peak memory,
    TFLOP/s."""
    rows = kind_rows(rows, kernels.KIND)
    rows = rows[rows["status"] == "ok"].dropna(subset=["median_ms"]) if "median_ms" in rows else rows.iloc[0:0]
    # Rows of one sweep share tokens per call (batch * seq_len), or the batch: one line across seq_len per size.
    rows = rows.assign(tokens=rows["batch"] * rows["seq_len"], per_call=kernels.per_call(rows))
    keys = ["suite", "dtype", "per_call", "tokens", "mode", "provider", *KERNEL_SHAPE, "seq_len", "batch"]
    values = {c: c for c in ("median_ms", "p20_ms", "p80_ms", "tflops", "peak_mem_bytes") if c in rows}
    # Runs of one shape that differ in a seed or timing setting: the median of their medians, and how many.
    groups = rows.groupby(keys, dropna=False)
    stats = groups[list(values)].median().join(groups.size().rename("runs")).reset_index()
    return stats.sort_values(keys, ignore_index=True)


def kernels_memory_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Peak memory per (suite, dtype, tokens, mode, provider, shape, seq_len), rows without a measurement left out."""
    time = kernels_time_data(rows)
    if "peak_mem_bytes" not in time:
        return time.iloc[0:0]
    return time.dropna(subset=["peak_mem_bytes"]).reset_index(drop=True)


def kernels_speedup_data(rows: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Speed-up over `baseline` = its median time / the provider's, at the same suite, dtype, tokens, mode, seq_len.

    Matched on the shape too (heads, d, dv) where the baseline has that shape; otherwise on heads alone when the
    baseline has one shape there (SDPA runs at head dim 64 beside d=16 ReBased kernels, for example).
    """
    time = kernels_time_data(rows)
    base = time[time["provider"] == baseline]
    point = ["suite", "dtype", "per_call", "tokens", "mode", "heads", "seq_len"]
    full = point + ["d", "dv"]
    base_cols = {"median_ms": "baseline_ms"}
    exact = time.merge(base[full + ["median_ms"]].rename(columns=base_cols), on=full, how="inner")
    unique_base = base.groupby(point, dropna=False).filter(lambda g: len(g) == 1)
    rest = time.merge(exact[full + ["provider"]], on=full + ["provider"], how="left", indicator=True)
    rest = rest[rest["_merge"] == "left_only"].drop(columns="_merge")
    loose = rest.merge(unique_base[point + ["median_ms"]].rename(columns=base_cols), on=point, how="inner")
    frame = pd.concat([exact, loose], ignore_index=True)
    frame["speedup"] = frame["baseline_ms"] / frame["median_ms"]
    frame["baseline"] = baseline
    return frame.sort_values(["suite", "dtype", "per_call", "tokens", "mode", "provider", *KERNEL_SHAPE, "seq_len"],
                             ignore_index=True)
