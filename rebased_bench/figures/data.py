"""The data behind each figure: one function per figure, rows in, a tidy DataFrame out (what gets drawn)."""

import pandas as pd

from ..kinds.mqar import best_lr

# Config columns that tell two IoU measurements apart besides the mixer and the seed.
IOU_CONFIG = ("seq_len", "d_model", "top_k", "mass")
# Kernel shape columns: one line per (provider, shape); the seq_len axis runs inside one line.
KERNEL_SHAPE = ("heads", "d", "dv")


def ok_rows(rows: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows of one kind with status ok: error and skipped rows carry no metric worth drawing."""
    if "kind" in rows:
        rows = rows[rows["kind"] == kind]
    return rows[rows["status"] == "ok"] if "status" in rows else rows


def clipped_band(frame: pd.DataFrame, mean="mean", std="std") -> pd.DataFrame:
    """Add `low`/`high`: mean -/+ std clipped to [0, 1], since an accuracy or IoU outside it is meaningless."""
    return frame.assign(low=(frame[mean] - frame[std]).clip(0, 1), high=(frame[mean] + frame[std]).clip(0, 1))


def _best_lr_points(rows: pd.DataFrame, kind: str, keys: tuple, order: list) -> pd.DataFrame:
    """Per `keys`, the best-lr mean accuracy over seeds, std and clipped band of the kind's ok rows, sorted by `order`."""
    best = best_lr(ok_rows(rows, kind).dropna(subset=["accuracy"]), keys=keys)
    return best if best.empty else clipped_band(best).sort_values(order, ignore_index=True)


def mqar_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Figure 1 points: per (suite, mixer, d_model, seq_len) the best-lr mean accuracy over seeds, std, clipped band."""
    return _best_lr_points(rows, "mqar", ("suite", "mixer", "d_model", "seq_len"),
                           ["suite", "mixer", "seq_len", "d_model"])


def ablate_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Grouped bars: per (suite, d_model, seq_len, variant) the best-lr mean accuracy over seeds, std, clipped band."""
    return _best_lr_points(rows, "ablate", ("suite", "d_model", "seq_len", "variant"),
                           ["suite", "d_model", "seq_len", "variant"])


def iou_metric_columns(rows: pd.DataFrame) -> list[str]:
    """The IoU metric columns of iou rows (e.g. iou_softmax, iou_oracle): numeric, named iou*."""
    return [c for c in rows.columns if c.startswith("iou") and pd.api.types.is_numeric_dtype(rows[c])]


def iou_figure_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Bars: per (suite, config, mixer, metric) the mean IoU over seeds and std; one row per metric column."""
    rows = ok_rows(rows, "iou")
    metrics = iou_metric_columns(rows)
    keys = ["suite", "mixer"] + [c for c in IOU_CONFIG if c in rows]
    if not metrics or rows.empty:
        return pd.DataFrame(columns=keys + ["metric", "mean", "std", "seeds"])
    long = rows.melt(id_vars=keys, value_vars=metrics, var_name="metric", value_name="iou").dropna(subset=["iou"])
    # top_k or mass is null by design (one selection rule per row): keep those groups.
    stats = long.groupby(keys + ["metric"], dropna=False)["iou"].agg(mean="mean", std="std", seeds="count")
    stats = stats.reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return clipped_band(stats).sort_values(keys + ["metric"], ignore_index=True)


def kernels_time_data(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, dtype, tokens per call, mode, provider, shape, seq_len): median time, p20/p80, peak memory, TFLOP/s."""
    rows = ok_rows(rows, "kernels").dropna(subset=["median_ms"])
    # Rows of one sweep share tokens per call (batch * seq_len): a line across seq_len compares like with like.
    rows = rows.assign(tokens=rows["batch"] * rows["seq_len"])
    keys = ["suite", "dtype", "tokens", "mode", "provider", *KERNEL_SHAPE, "seq_len"]
    values = {c: c for c in ("median_ms", "p20_ms", "p80_ms", "tflops", "peak_mem_bytes") if c in rows}
    # Repeated runs of one case (several result folders): the median of their medians.
    stats = rows.groupby(keys, dropna=False)[list(values)].median().reset_index()
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
    point = ["suite", "dtype", "tokens", "mode", "heads", "seq_len"]
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
    return frame.sort_values(["suite", "dtype", "tokens", "mode", "provider", *KERNEL_SHAPE, "seq_len"],
                             ignore_index=True)
