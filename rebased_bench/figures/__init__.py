"""Figures from result rows: `plot_results(rows, out)` draws every figure the rows support, PNG and PDF.

File names depend only on the data: mqar_<suite>, mqar-curves_<suite> (accuracy per epoch of every run),
mqar-compare_<suite> (`plot_compare`: the rows beside reference rows of the same protocol),
ablate_<suite>, iou_<suite> (each with _<field><value> for a setting that differs inside the suite: one figure
per protocol, never two protocols pooled), the IoU heatmaps iou-d<d_model>-L<seq_len>-lr<lr>-seed<seed>-<rule>,
kernels_<suite>_<tokens>tok_<dtype>_{time,speedup,memory} (<batch>batch for a suite at a fixed batch, seqlen<n>
for one that varies the batch at one seq_len: its lines run across batch).
Built on matplotlib's object API (no pyplot, no global backend): headless, safe to import from any command.
"""

from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd

from .. import console
from ..analysis import kind_rows, mixed_settings
from ..errors import BenchError
from ..kinds import KINDS, ablate, iou, kernels, mqar
from ..tables import value_text
from .data import (ablate_figure_data, iou_figure_data, kernels_memory_data, kernels_speedup_data, kernels_time_data,
                   mqar_compare_data, mqar_curves_data, mqar_figure_data)
from .draw import draw_ablate, draw_iou, draw_kernels, draw_mqar, draw_mqar_curves
from .heatmaps import draw_attention_heatmaps, plot_iou_heatmaps
from .style import PALETTE, safe_name, save, style

__all__ = ["PALETTE", "plot_results", "plot_compare", "plan_figures", "plan_compare", "plot_iou_heatmaps",
           "draw_attention_heatmaps", "style", "mqar_figure_data", "mqar_compare_data", "mqar_curves_data",
           "ablate_figure_data", "iou_figure_data", "kernels_time_data", "kernels_speedup_data", "kernels_memory_data"]

DEFAULT_BASELINE = "sdpa"


class Planned(NamedTuple):
    """A figure to write: its file stem, the data drawn (a figure_data frame) and how to draw it."""

    stem: str
    data: pd.DataFrame
    draw: Callable


def _note(text: str):
    console.log(f"plot: {text}")


def _per_setting(frame: pd.DataFrame, prefix: str, point: tuple, settings, draw) -> list[Planned]:
    """One figure per suite, and per value of a setting that differs inside one of its points (a suite run with
    two protocols, or rows of an older protocol beside newer ones): `draw(data, about)` draws it."""
    planned = []
    for suite, subset in frame.groupby("suite", sort=True) if not frame.empty else ():
        split = mixed_settings(subset, point, [c for c in settings if c in subset])
        for values, data in subset.groupby(split, dropna=False, sort=True) if split else [((), subset)]:
            setting = dict(zip(split, values))
            stem = "_".join([prefix, safe_name(suite), *(safe_name(f"{c}{value_text(v)}") for c, v in setting.items())])
            about = ", ".join([str(suite), *(f"{c}={value_text(v)}" for c, v in setting.items())])
            planned.append(Planned(stem, data, partial(draw, data, about)))
    return planned


def plan_mqar(rows, **_) -> list[Planned]:
    """The paper's Figure 1 layout, one figure per suite (and protocol); and each suite's training curves."""
    curves = mqar_curves_data(rows)
    return _per_setting(mqar_figure_data(rows), "mqar", mqar.POINT, mqar.SETTINGS, draw_mqar) + [
        Planned(f"mqar-curves_{safe_name(suite)}", data, partial(draw_mqar_curves, data, str(suite)))
        for suite, data in curves.groupby("suite", sort=True)]


def plan_compare(rows, reference, name: str) -> list[Planned]:
    """The Figure 1 layout of `rows` with the `reference` rows (read from `name`) of the same protocol beside them,
    one figure per suite (and protocol) of `rows`."""
    return _per_setting(mqar_compare_data(rows, reference), "mqar-compare", (*mqar.POINT, "reference"),
                        mqar.SETTINGS, partial(draw_mqar, reference=name))


def plan_ablate(rows, **_) -> list[Planned]:
    """Grouped bars of accuracy per feature-map variant, one figure per suite (and protocol)."""
    return _per_setting(ablate_figure_data(rows), "ablate", ablate.POINT, ablate.SETTINGS, draw_ablate)


def plan_iou(rows, **_) -> list[Planned]:
    """Bars of IoU per model, one figure per suite (and protocol); the heatmaps are plot_iou_heatmaps'."""
    return _per_setting(iou_figure_data(rows), "iou", (*iou.POINT, "metric"), iou.SETTINGS, draw_iou)


def _runs(frame: pd.DataFrame) -> str:
    most = frame["runs"].max()
    return "one run per point" if most == 1 else f"the median of up to {most} runs per point"


def plan_kernels(rows, baseline: str | None = None) -> list[Planned]:
    """Time, speed-up over the baseline and peak memory vs seq_len (or batch), one set per sweep (suite, dtype, size
    per call)."""
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
    time, memory = _batch_sweeps(time), _batch_sweeps(memory)
    speedup = _batch_sweeps(speedup) if speedup is not None else None
    family = ["suite", "dtype", "per_call"]
    units = {"tokens": "tok", "batch": "batch", "seq_len": "seqlen"}
    planned = []
    for key, sweep in time.groupby(family, dropna=False) if not time.empty else ():
        suite, dtype, size = key
        unit = next(unit for word, unit in units.items() if word in size)
        stem = f"kernels_{safe_name(suite)}_{''.join(filter(str.isdigit, size))}{unit}_{safe_name(dtype)}"
        where = f"{suite}, {dtype}, {size} per call; {_runs(sweep)}"
        x = "batch" if size.startswith("seq_len") else "seq_len"
        planned.append(Planned(f"{stem}_time", sweep, partial(
            draw_kernels, sweep, "median_ms", "time (ms, median)", f"Kernel time (bars: p20-p80)\n{where}",
            band=("p20_ms", "p80_ms"), x=x)))
        mine = _same_sweep(speedup, key, family) if speedup is not None else time.iloc[0:0]
        if not mine.empty and (mine["provider"] != baseline).any():
            planned.append(Planned(f"{stem}_speedup", mine, partial(
                draw_kernels, mine, "speedup", "speed-up (x)", f"Speed-up over {style(baseline).label}\n{where}",
                log_y=False, baseline=baseline, x=x)))
        mine = _same_sweep(memory, key, family)
        if not mine.empty:
            mine = mine.assign(peak_mem_mib=mine["peak_mem_bytes"].astype(float) / 2**20)
            planned.append(Planned(f"{stem}_memory", mine, partial(
                draw_kernels, mine, "peak_mem_mib", "peak memory (MiB)", f"Peak memory\n{where}", x=x)))
    return planned


def _batch_sweeps(frame: pd.DataFrame) -> pd.DataFrame:
    """A suite that varies the batch at one seq_len draws its lines across batch: its rows' size per call becomes
    "seq_len <n>" (one figure per seq_len, not one single-point figure per batch)."""
    if frame.empty:
        return frame
    suites = frame.groupby("suite", dropna=False)
    across_batch = (suites["seq_len"].transform("nunique") == 1) & (suites["batch"].transform("nunique") > 1)
    return frame.assign(per_call=frame["per_call"].where(~across_batch, "seq_len " + frame["seq_len"].astype(str)))


def _same_sweep(frame: pd.DataFrame, key: tuple, family: list[str]) -> pd.DataFrame:
    """Rows of `frame` in the sweep `key` (null-safe, since dtype may be missing)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(family, key):
        mask &= frame[column].isna() if pd.isna(value) else frame[column] == value
    return frame[mask]


# The figures of each kind, by kind name (the kinds' registry is the one list of names).
PLANNERS = {mqar.KIND.name: plan_mqar, kernels.KIND.name: plan_kernels, ablate.KIND.name: plan_ablate,
            iou.KIND.name: plan_iou}


def _wanted(rows: pd.DataFrame, kinds) -> list[str]:
    present = set(rows["kind"].dropna()) if "kind" in rows else set()
    for unknown in sorted(present - set(PLANNERS)):
        _note(f"no figure for rows of kind {unknown!r}")
    wanted = [k for k in (kinds or PLANNERS) if k in present]
    if kinds and not wanted:
        raise BenchError(f"no {' or '.join(kinds)} rows to plot")
    return wanted


def _plans(rows: pd.DataFrame, kinds: list[str], baseline: str | None) -> list[Planned]:
    planned = []
    for kind in kinds:
        mine = PLANNERS[kind](kind_rows(rows, KINDS[kind]), baseline=baseline)
        if not mine:
            _note(f"{kind}: no figure (no ok rows with the columns it needs)")
        planned += mine
    return planned


def plan_figures(rows: pd.DataFrame, kinds=None, baseline: str | None = None) -> list[Planned]:
    """Every figure the rows support (of `kinds`, default all present) but the heatmaps, not drawn yet."""
    return _plans(rows, _wanted(rows, kinds), baseline)


def plot_results(rows: pd.DataFrame, out: Path, kinds=None, baseline: str | None = None) -> list[Path]:
    """Draw every figure the rows support (of `kinds`, default all present); returns the files written."""
    wanted = _wanted(rows, kinds)
    paths = [path for plan in _plans(rows, wanted, baseline) for path in save(plan.draw(), Path(out), plan.stem)]
    if iou.KIND.name in wanted:
        paths += plot_iou_heatmaps(rows, Path(out))
    if not paths:
        raise BenchError(f"no figure to draw: no ok rows of a kind plot knows ({', '.join(PLANNERS)})")
    return paths


def plot_compare(rows: pd.DataFrame, reference: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """Draw `plan_compare`'s figures; returns the files written."""
    return [path for plan in plan_compare(rows, reference, name) for path in save(plan.draw(), Path(out), plan.stem)]
