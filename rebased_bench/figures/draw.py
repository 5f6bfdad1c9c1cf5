"""Drawing: each function takes the frame of one figure (see data.py) and returns a matplotlib Figure."""

import numpy as np
import pandas as pd

from ..analysis import INTERVAL
from ..tables import value_text
from .style import ABLATION_ORDER, figure_title, legend_below, log2_axis, new_figure, order, plain_log_y, style

# What the error bars of a figure pooled over seeds are.
BARS = f"bars: {INTERVAL}, none for one seed"

MODE_ORDER = ("fwd", "fwd+bwd", "fwd_bwd", "bwd")
# Line styles, cycled: the lr of an MQAR curve, a provider's extra shapes in a kernel figure.
LINE_STYLES = ["-", "--", ":", "-."]


def _modes(frame: pd.DataFrame) -> list:
    modes = list(frame["mode"].unique())
    return sorted(modes, key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER), str(m)))


def seed_labels(frame: pd.DataFrame, name: str, tag: str = "") -> dict:
    """Legend label of each `name` value (mixer, variant) with its seeds: "ReBased (n=2)", "Based (n=1-3)"; `tag`
    goes after the name ("ReBased (reference) (n=3)")."""
    labels = {}
    for value, mine in frame.groupby(name):
        low, high = mine["seeds"].min(), mine["seeds"].max()
        labels[value] = f"{style(value).label}{tag} (n={low}{'' if low == high else f'-{high}'})"
    return labels


def _interval(frame: pd.DataFrame):
    """Error bar lengths below and above the mean from the interval low/high; NaN (no bar) for one seed."""
    return np.vstack([frame["mean"] - frame["low"], frame["high"] - frame["mean"]]).astype(float)


def draw_mqar(points: pd.DataFrame, about: str, reference: str | None = None):
    """The paper's Figure 1: one panel per seq_len, accuracy vs d_model (log2) per mixer, interval bars; points
    flagged `reference` (mqar_compare_data, read from the folder `reference`) dashed with hollow markers."""
    seq_lens = sorted(points["seq_len"].unique())
    fig, axes = new_figure(len(seq_lens))
    flagged = points.get("reference", pd.Series(False, index=points.index)).astype(bool)
    lines = [(points[~flagged], seed_labels(points[~flagged], "mixer"), "-"),
             (points[flagged], seed_labels(points[flagged], "mixer", " (reference)"), "--")]
    for ax, seq_len in zip(axes, seq_lens):
        for mine, labels, dashes in lines:
            panel = mine[mine["seq_len"] == seq_len]
            for mixer in order(panel["mixer"]):
                line = panel[panel["mixer"] == mixer].sort_values("d_model")
                s = style(mixer)
                ax.errorbar(line["d_model"], line["mean"], yerr=_interval(line), color=s.color, marker=s.marker,
                            markerfacecolor=s.color if dashes == "-" else "none", linestyle=dashes,
                            label=labels[mixer], capsize=4, markersize=7, linewidth=1.8)
        log2_axis(ax, points["d_model"])
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"Sequence Length: {seq_len}")
    axes[0].set_ylabel("Accuracy")
    axes[len(axes) // 2].set_xlabel("Model Dim")  # under the middle panel, as in the paper (clear of the legend)
    against = f"; dashed, hollow: {reference}, same protocol" if reference else ""
    figure_title(fig, f"MQAR, {about}: best lr per point{against}\n{BARS}")
    legend_below(fig, axes)
    return fig


# The first seed draws a bare line, later ones a marker every few epochs, so runs of one mixer and lr differ.
SEED_MARKERS = [None, "o", "s", "^", "v", "D"]


def draw_mqar_curves(curves: pd.DataFrame, about: str):
    """Test accuracy per epoch, one panel per (seq_len, d_model) cell, one line per case: colour the mixer, line
    style the lr, marker the seed (one seed per line: the curves show when each run left chance, not a mean)."""
    cells = curves[["seq_len", "d_model"]].drop_duplicates().sort_values(["seq_len", "d_model"])
    fig, axes = new_figure(len(cells), width=4.0, height=3.2)
    lrs = sorted(curves["lr"].unique())
    seeds = sorted(curves["seed"].unique())
    for ax, (seq_len, d_model) in zip(axes, cells.itertuples(index=False)):
        panel = curves[(curves["seq_len"] == seq_len) & (curves["d_model"] == d_model)]
        for (mixer, lr, seed), line in panel.groupby(["mixer", "lr", "seed"], sort=True):
            s = style(mixer)
            ax.plot(line["epoch"], line["accuracy"], color=s.color,
                    linestyle=LINE_STYLES[lrs.index(lr) % len(LINE_STYLES)],
                    marker=SEED_MARKERS[seeds.index(seed) % len(SEED_MARKERS)], markevery=8, markersize=4,
                    label=f"{s.label}, lr {value_text(lr)}, seed {seed}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"seq_len {seq_len}, d_model {d_model}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy")
    figure_title(fig, f"MQAR training curves, {about}: one line per run")
    legend_below(fig, axes)
    return fig


def _kernel_label(line_key, shapes_of_provider: int) -> str:
    provider, heads, d, dv = line_key
    label = style(provider).label
    return label if shapes_of_provider == 1 else f"{label} (H={heads:g}, d={d:g}, dv={dv:g})"


def _kernel_lines(ax, frame: pd.DataFrame, value: str, band=None, x="seq_len"):
    """One line per (provider, shape) against `x`; a provider's extra shapes get dashed/dotted lines."""
    for provider in order(frame["provider"]):
        mine = frame[frame["provider"] == provider]
        shapes = mine.groupby(["heads", "d", "dv"], dropna=False, sort=True)
        for i, ((heads, d, dv), line) in enumerate(shapes):
            line = line.sort_values(x)
            s = style(provider)
            yerr = None
            if band and line[band[0]].notna().all() and line[band[1]].notna().all():
                yerr = np.vstack([line[value] - line[band[0]], line[band[1]] - line[value]]).clip(0)
            ax.errorbar(line[x], line[value], yerr=yerr, color=s.color, marker=s.marker, capsize=3,
                        linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                        label=_kernel_label((provider, heads, d, dv), len(shapes)))


def draw_kernels(frame: pd.DataFrame, value: str, ylabel: str, title: str, band=None, log_y=True, baseline=None,
                 x="seq_len"):
    """Kernel metric vs `x` (seq_len or batch, log2), one panel per mode, one line per provider (and shape)."""
    modes = _modes(frame)
    fig, axes = new_figure(len(modes), width=4.2, height=3.4, sharey=False)
    for ax, mode in zip(axes, modes):
        _kernel_lines(ax, frame[frame["mode"] == mode], value, band, x)
        log2_axis(ax, frame[x])
        if log_y:
            plain_log_y(ax)
        if baseline:
            ax.axhline(1.0, color="0.4", linewidth=1, linestyle="--")
        ax.set_title(f"mode: {mode}")
        ax.set_xlabel("Batch" if x == "batch" else "Sequence Length")
    axes[0].set_ylabel(ylabel)
    figure_title(fig, title)
    legend_below(fig, axes)
    return fig


def _group_label(key: dict) -> str:
    short = {"seq_len": "L", "d_model": "d"}
    return ", ".join(f"{short.get(c, c)}={value_text(v)}" for c, v in key.items())


def grouped_bars(ax, frame: pd.DataFrame, groups: list[str], bar: str, first=None):
    """Bars of `bar` values side by side within each group (a combination of `groups` columns), interval bars."""
    # Only the group columns that vary name a group: a constant d_model would just repeat on every tick.
    shown = [c for c in groups if frame[c].nunique(dropna=False) > 1] or groups[:1]
    keys = frame[shown].drop_duplicates().sort_values(shown).reset_index(drop=True)
    names = order(frame[bar], first) if first else order(frame[bar])
    labels = seed_labels(frame, bar)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        mine = keys.merge(frame[frame[bar] == name], on=shown, how="left")
        x = np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, mine["mean"], width, yerr=_interval(mine), color=style(name).color, label=labels[name], capsize=2,
               edgecolor="white", linewidth=0.5, error_kw={"elinewidth": 1})
    ax.set_xticks(np.arange(len(keys)), [_group_label(row) for row in keys.to_dict("records")])
    ax.grid(False, axis="x")  # a vertical grid line would run through the middle bar
    ax.set_ylim(0, 1.05)


def draw_ablate(bars: pd.DataFrame, about: str):
    """Feature-map ablation: best-lr accuracy per variant (bars) in groups of seq_len, one panel per d_model."""
    d_models = sorted(bars["d_model"].unique())
    fig, axes = new_figure(len(d_models), width=max(4.0, 1.2 * bars["seq_len"].nunique() + 2), height=3.4)
    for ax, d_model in zip(axes, d_models):
        grouped_bars(ax, bars[bars["d_model"] == d_model], ["seq_len"], "variant", ABLATION_ORDER)
        ax.set_title(f"Model Dim: {d_model}")
        ax.set_xlabel("Sequence Length")
    axes[0].set_ylabel("Accuracy")
    figure_title(fig, f"Feature-map ablation, {about}: best lr\n{BARS}")
    legend_below(fig, axes)
    return fig


def metric_label(metric: str, references) -> str:
    """A panel title for an IoU column: iou_vs_oracle -> "IoU vs oracle", iou_vs_reference -> "IoU vs reference
    (conv_attention)"."""
    label = " ".join(["IoU", *metric.removeprefix("iou").strip("_").split("_")])
    return f"{label} ({', '.join(sorted(map(str, references)))})" if label.endswith("reference") else label


def draw_iou(bars: pd.DataFrame, about: str):
    """IoU per model (bars) grouped by (seq_len, d_model), one panel per IoU column."""
    metrics = sorted(bars["metric"].unique())
    groups = bars[["seq_len", "d_model"]].drop_duplicates()
    fig, axes = new_figure(len(metrics), width=max(4.0, 1.5 * len(groups) + 2), height=3.4)
    for ax, metric in zip(axes, metrics):
        grouped_bars(ax, bars[bars["metric"] == metric], ["seq_len", "d_model"], "mixer")
        ax.set_title(metric_label(metric, bars["reference_mixer"].unique()))
    axes[0].set_ylabel("IoU")
    figure_title(fig, f"Attention-map IoU, {about}\n{BARS}")
    legend_below(fig, axes)
    return fig
