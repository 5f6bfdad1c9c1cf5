"""Figures from result rows: `plot_results(rows, out)` draws every figure the rows support, PNG and PDF.

File names depend only on the data: mqar_<suite>, ablate_<suite>, iou_<suite> and the IoU heatmaps
iou-d<d_model>-L<seq_len>-lr<lr>-seed<seed>-<rule>, kernels_<suite>_<tokens>tok_<dtype>_{time,speedup,memory}.
Built on matplotlib's object API (no pyplot, no global backend): headless, safe to import from any command.
"""

from pathlib import Path

import pandas as pd
import pyarrow as pa

from .. import console
from ..errors import BenchError
from ..kinds import KINDS, ablate, iou, kernels, mqar
from .data import (IOU_CONFIG, ablate_figure_data, iou_figure_data, kernels_memory_data, kernels_speedup_data,
                   kernels_time_data, mqar_figure_data)
from .draw import draw_ablate, draw_iou, draw_kernels, draw_mqar
from .heatmaps import draw_attention_heatmaps, plot_iou_heatmaps
from .style import PALETTE, safe_name, save, style

__all__ = ["PALETTE", "plot_results", "plot_iou_heatmaps", "draw_attention_heatmaps", "style", "mqar_figure_data",
           "ablate_figure_data", "iou_figure_data", "kernels_time_data", "kernels_speedup_data", "kernels_memory_data"]

DEFAULT_BASELINE = "sdpa"


def _note(text: str):
    console.log(f"plot: {text}")


def _per_suite(frame, out: Path, prefix: str, draw) -> list[Path]:
    """One figure per suite name in `frame`, saved as `<prefix>_<suite>`."""
    if frame.empty:
        return []
    return [path for suite, subset in frame.groupby("suite")
            for path in save(draw(subset, suite), out, f"{prefix}_{safe_name(suite)}")]


def plot_mqar(rows, out: Path, **_) -> list[Path]:
    """The paper's Figure 1 layout, one figure per suite name in the rows."""
    return _per_suite(mqar_figure_data(rows), out, "mqar", draw_mqar)


def plot_ablate(rows, out: Path, **_) -> list[Path]:
    """Grouped bars of accuracy per feature-map variant, one figure per suite."""
    return _per_suite(ablate_figure_data(rows), out, "ablate", draw_ablate)


def plot_iou(rows, out: Path, **_) -> list[Path]:
    """Bars of IoU per model, one figure per suite; heatmaps of the example maps the rows point to."""
    bars = iou_figure_data(rows)
    config = [c for c in IOU_CONFIG if c in bars]
    heatmaps = plot_iou_heatmaps(rows, out)
    return _per_suite(bars, out, "iou", lambda subset, suite: draw_iou(subset, suite, config)) + heatmaps


def plot_kernels(rows, out: Path, baseline: str | None = None) -> list[Path]:
    """Time, speed-up over the baseline and peak memory vs seq_len, one set per sweep (suite, dtype, tokens/call)."""
    time = kernels_time_data(rows)
    providers = set(time["provider"])
    if baseline and baseline not in providers:
        raise BenchError(f"--baseline: no ok kernels rows for provider {baseline!r} "
                         f"(providers: {', '.join(sorted(map(str, providers))) or 'none'})")
    baseline = baseline or (DEFAULT_BASELINE if DEFAULT_BASELINE in providers else None)
    if baseline is None and not time.empty:
        _note(f"no speed-up figure: no {DEFAULT_BASELINE!r} rows; pick a provider with --baseline")
    speedup = kernels_speedup_data(rows, baseline) if baseline else None
    memory = kernels_memory_data(rows)
    family = ["suite", "dtype", "tokens"]
    paths = []
    for key, sweep in time.groupby(family, dropna=False) if not time.empty else ():
        if sweep["seq_len"].nunique() < 2:  # a batch or feature-dim sweep at one seq_len: no line to draw
            continue
        suite, dtype, tokens = key
        stem = f"kernels_{safe_name(suite)}_{int(tokens)}tok_{safe_name(dtype)}"
        where = f"{suite}, {dtype}, {int(tokens)} tokens per call"
        fig = draw_kernels(sweep, "median_ms", "time (ms, median)", f"Kernel time (bars: p20-p80)\n{where}",
                           band=("p20_ms", "p80_ms"))
        paths += save(fig, out, f"{stem}_time")
        if speedup is not None:
            mine = _same_sweep(speedup, key, family)
            if not mine.empty and (mine["provider"] != baseline).any():
                fig = draw_kernels(mine, "speedup", "speed-up (x)", f"Speed-up over {style(baseline).label}\n{where}",
                                   log_y=False, baseline=baseline)
                paths += save(fig, out, f"{stem}_speedup")
        mine = _same_sweep(memory, key, family)
        if not mine.empty:
            mine = mine.assign(peak_mem_mib=mine["peak_mem_bytes"] / 2**20)
            fig = draw_kernels(mine, "peak_mem_mib", "peak memory (MiB)", f"Peak memory\n{where}")
            paths += save(fig, out, f"{stem}_memory")
    return paths


def _same_sweep(frame: pd.DataFrame, key: tuple, family: list[str]) -> pd.DataFrame:
    """Rows of `frame` in the sweep `key` (null-safe, since dtype may be missing)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(family, key):
        mask &= frame[column].isna() if pd.isna(value) else frame[column] == value
    return frame[mask]


def _own_columns(rows: pd.DataFrame, kind) -> pd.DataFrame:
    """One kind's rows as it wrote them: read together with other kinds, its integer columns came back as floats
    (another kind's rows have no seq_len, say, so NaN there), which would print as "Sequence Length: 256.0"."""
    rows = rows.dropna(axis=1, how="all")
    for column in (field.name for field in kind.schema if pa.types.is_integer(field.type)):
        if column in rows and rows[column].notna().all() and (rows[column] % 1 == 0).all():
            rows = rows.assign(**{column: rows[column].astype("int64")})
    return rows


# The figures of each kind, by kind name (the kinds' registry is the one list of names).
PLOTTERS = {mqar.KIND.name: plot_mqar, kernels.KIND.name: plot_kernels, ablate.KIND.name: plot_ablate,
            iou.KIND.name: plot_iou}


def plot_results(rows: pd.DataFrame, out: Path, kinds=None, baseline: str | None = None) -> list[Path]:
    """Draw every figure the rows support (of `kinds`, default all present); returns the files written."""
    present = set(rows["kind"].dropna()) if "kind" in rows else set()
    for unknown in sorted(present - set(PLOTTERS)):
        _note(f"no figure for rows of kind {unknown!r}")
    wanted = [k for k in (kinds or PLOTTERS) if k in present]
    if kinds and not wanted:
        raise BenchError(f"no {' or '.join(kinds)} rows to plot")
    paths = []
    for kind in wanted:
        written = PLOTTERS[kind](_own_columns(rows[rows["kind"] == kind], KINDS[kind]), Path(out), baseline=baseline)
        if not written:
            _note(f"{kind}: no figure (no ok rows with the columns it needs)")
        paths += written
    if not paths:
        raise BenchError(f"no figure to draw: no ok rows of a kind plot knows ({', '.join(PLOTTERS)})")
    return paths
