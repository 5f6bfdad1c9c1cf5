"""The data behind each figure: one function per figure, rows in, a tidy DataFrame out (what gets drawn).

Rows are read as their kind wrote them (`analysis.kind_rows`: each case once, old rows at the new fields'
defaults). A point pooled over seeds carries `mean`, `seeds` (n), the 95% t-interval `low`/`high` (NaN for one
seed) and `runs`, the ok rows behind it (every lr of a best-lr point), so each drawn row can be counted.
"""

import pandas as pd

from ..analysis import best_lr, kind_rows, seed_stats
from ..kinds import ablate, iou, kernels, mqar

# Kernel shape columns: one line per (provider, shape); the seq_len axis runs inside one line.
KERNEL_SHAPE = ("heads", "d", "dv")


def mqar_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Figure 1 points: per (suite, mixer, d_model, seq_len) and differing setting, the best-lr accuracy over seeds."""
    best = best_lr(kind_rows(rows, mqar.KIND), ("suite", *mqar.POINT), mqar.SETTINGS)
    return best.sort_values(["suite", "mixer", "seq_len", "d_model"], ignore_index=True)


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
