"""Drawing: each function takes the frame of one figure (see data.py) and returns a matplotlib Figure."""

import numpy as np
import pandas as pd

from .style import ABLATION_ORDER, legend_below, log2_axis, new_figure, order, plain_log_y, style

MODE_ORDER = ("fwd", "fwd+bwd", "fwd_bwd", "bwd")


def _modes(frame: pd.DataFrame) -> list:
    modes = list(frame["mode"].unique())
    return sorted(modes, key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER), str(m)))


def _errorbar(ax, x, frame, name, **extra):
    """Points with asymmetric error bars from the frame's clipped band (low/high)."""
    s = style(name)
    yerr = np.vstack([frame["mean"] - frame["low"], frame["high"] - frame["mean"]])
    ax.errorbar(x, frame["mean"], yerr=yerr, color=s.color, marker=s.marker, label=s.label, capsize=4,
                markersize=7, linewidth=1.8, **extra)


def draw_mqar(points: pd.DataFrame, suite: str):
    """The paper's Figure 1: one panel per seq_len, accuracy vs d_model (log2) per mixer, error bars = std clipped."""
    seq_lens = sorted(points["seq_len"].unique())
    fig, axes = new_figure(len(seq_lens))
    for ax, seq_len in zip(axes, seq_lens):
        panel = points[points["seq_len"] == seq_len]
        for mixer in order(panel["mixer"]):
            line = panel[panel["mixer"] == mixer].sort_values("d_model")
            _errorbar(ax, line["d_model"], line, mixer)
        log2_axis(ax, points["d_model"])
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"Sequence Length: {seq_len}")
    axes[0].set_ylabel("Accuracy")
    axes[len(axes) // 2].set_xlabel("Model Dim")  # under the middle panel, as in the paper (clear of the legend)
    fig.suptitle(f"MQAR, {suite}: best lr per point, mean ± std over seeds", fontsize="medium")
    legend_below(fig, axes)
    return fig


def _kernel_label(line_key, shapes_of_provider: int) -> str:
    provider, heads, d, dv = line_key
    label = style(provider).label
    return label if shapes_of_provider == 1 else f"{label} (H={heads:g}, d={d:g}, dv={dv:g})"


def _kernel_lines(ax, frame: pd.DataFrame, value: str, band=None):
    """One line per (provider, shape) against seq_len; a provider's extra shapes get dashed/dotted lines."""
    styles = ["-", "--", ":", "-."]
    for provider in order(frame["provider"]):
        mine = frame[frame["provider"] == provider]
        shapes = mine.groupby(["heads", "d", "dv"], dropna=False, sort=True)
        for i, ((heads, d, dv), line) in enumerate(shapes):
            line = line.sort_values("seq_len")
            s = style(provider)
            yerr = None
            if band and line[band[0]].notna().all() and line[band[1]].notna().all():
                yerr = np.vstack([line[value] - line[band[0]], line[band[1]] - line[value]]).clip(0)
            ax.errorbar(line["seq_len"], line[value], yerr=yerr, color=s.color, marker=s.marker, capsize=3,
                        linestyle=styles[i % len(styles)], label=_kernel_label((provider, heads, d, dv), len(shapes)))


def draw_kernels(frame: pd.DataFrame, value: str, ylabel: str, title: str, band=None, log_y=True, baseline=None):
    """Kernel metric vs seq_len (log2), one panel per mode, one line per provider (and shape)."""
    modes = _modes(frame)
    fig, axes = new_figure(len(modes), width=4.2, height=3.4, sharey=False)
    for ax, mode in zip(axes, modes):
        _kernel_lines(ax, frame[frame["mode"] == mode], value, band)
        log2_axis(ax, frame["seq_len"])
        if log_y:
            plain_log_y(ax)
        if baseline:
            ax.axhline(1.0, color="0.4", linewidth=1, linestyle="--")
        ax.set_title(f"mode: {mode}")
        ax.set_xlabel("Sequence Length")
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize="medium")
    legend_below(fig, axes)
    return fig


def _group_label(key: dict) -> str:
    short = {"seq_len": "L", "d_model": "d", "top_k": "top-k", "mass": "mass"}
    return ", ".join(f"{short.get(c, c)}={v:g}" if isinstance(v, (int, float, np.number)) else f"{c}={v}"
                     for c, v in key.items() if not pd.isna(v))


def grouped_bars(ax, frame: pd.DataFrame, groups: list[str], bar: str, first=None):
    """Bars of `bar` values side by side within each group (a combination of `groups` columns), clipped error bars."""
    # Only the group columns that vary name a group: a constant d_model would just repeat on every tick.
    shown = [c for c in groups if frame[c].nunique(dropna=True) > 1] or groups[:1]
    keys = frame[shown].drop_duplicates().sort_values(shown).reset_index(drop=True)
    names = order(frame[bar], first) if first else order(frame[bar])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        mine = keys.merge(frame[frame[bar] == name], on=shown, how="left")
        x = np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width
        s = style(name)
        yerr = np.vstack([mine["mean"] - mine["low"], mine["high"] - mine["mean"]])
        ax.bar(x, mine["mean"], width, yerr=yerr, color=s.color, label=s.label, capsize=2, edgecolor="white",
               linewidth=0.5, error_kw={"elinewidth": 1})
    ax.set_xticks(np.arange(len(keys)), [_group_label(row) for row in keys.to_dict("records")])
    ax.grid(False, axis="x")  # a vertical grid line would run through the middle bar
    ax.set_ylim(0, 1.05)


def draw_ablate(bars: pd.DataFrame, suite: str):
    """Feature-map ablation: best-lr accuracy per variant (bars) in groups of seq_len, one panel per d_model."""
    d_models = sorted(bars["d_model"].unique())
    fig, axes = new_figure(len(d_models), width=max(4.0, 1.2 * bars["seq_len"].nunique() + 2), height=3.4)
    for ax, d_model in zip(axes, d_models):
        grouped_bars(ax, bars[bars["d_model"] == d_model], ["seq_len"], "variant", ABLATION_ORDER)
        ax.set_title(f"Model Dim: {d_model}")
        ax.set_xlabel("Sequence Length")
    axes[0].set_ylabel("Accuracy")
    fig.suptitle(f"Feature-map ablation, {suite}: best lr, mean ± std over seeds", fontsize="medium")
    legend_below(fig, axes)
    return fig


def draw_iou(bars: pd.DataFrame, suite: str, config: list[str]):
    """IoU per model (bars) grouped by config (seq_len, d_model, top-k / mass), one panel per IoU metric."""
    metrics = sorted(bars["metric"].unique())
    groups = bars[config].drop_duplicates()
    fig, axes = new_figure(len(metrics), width=max(4.0, 1.5 * len(groups) + 2), height=3.4)
    for ax, metric in zip(axes, metrics):
        grouped_bars(ax, bars[bars["metric"] == metric], config, "mixer")
        ax.set_title(metric.replace("iou_", "IoU vs ").replace("_", " ").replace("iou", "IoU"))
    axes[0].set_ylabel("IoU (mean ± std over seeds)")
    fig.suptitle(f"Attention-map IoU, {suite}", fontsize="medium")
    legend_below(fig, axes)
    return fig
