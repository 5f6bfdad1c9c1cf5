"""IoU heatmaps: one MQAR test example, query rows x key columns, one panel per model (the maps iou rows point to)."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import console
from ..analysis import kind_rows
from ..kinds import iou
from .style import figure_title, save

GROUP_KEYS = ["d_model", "seq_len", "num_kv_pairs", "lr", "seed", "reference_mixer", "reference_lr", "top_k",
              "mass"]


def draw_attention_heatmaps(panels, query_positions, oracle, title: str = "") -> Figure:
    """Side-by-side heatmaps; oracle cells (queried key and its value) outlined in red.

    panels: [(label, map rows (n_queries, seq_len))]; query_positions: (n_queries,) ints;
    oracle: (n_queries, seq_len) bool. Each panel has its own colour scale from 0 (linear maps are flatter).
    """
    fig = Figure(figsize=(3.0 * len(panels) + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    oracle_rows, oracle_keys = np.nonzero(oracle)
    for ax, (label, rows) in zip(axes, panels):
        image = ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
        ax.scatter(oracle_keys, oracle_rows, marker="s", s=12, facecolors="none", edgecolors="red", linewidths=0.7)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("key position")
        fig.colorbar(image, ax=ax, shrink=0.8)
    step = max(1, len(query_positions) // 8)  # at most ~8 tick labels
    axes[0].set_yticks(range(0, len(query_positions), step), labels=query_positions[::step])
    axes[0].set_ylabel("query position")
    if title:
        figure_title(fig, title)
    return fig


def plot_iou_heatmaps(rows: pd.DataFrame, folder: Path) -> list[Path]:
    """One figure per configuration (GROUP_KEYS) of ok iou rows, drawn from the example maps the rows point to.

    Rows whose map file is missing here (moved, or written on another machine) are left out, with a note.
    """
    rows = kind_rows(rows, iou.KIND)
    if "map_path" not in rows:
        return []
    ok = rows[(rows["status"] == "ok") & rows["map_path"].notna()]
    missing = ok["map_path"].map(lambda path: not Path(path).is_file())
    for path in ok["map_path"][missing]:
        console.log(f"plot: no heatmap from {path}: no such file")
    ok = ok[~missing]
    written = []
    if ok.empty:  # error rows alone may lack the config columns groupby needs
        return written
    for key, group in ok.groupby(GROUP_KEYS, dropna=False, sort=True):
        setting = dict(zip(GROUP_KEYS, key))
        group = group.sort_values("mixer")
        first = np.load(group["map_path"].iloc[0])
        reference = setting["reference_mixer"]
        reference_lr = f" at lr {setting['reference_lr']:g}" if pd.notna(setting["reference_lr"]) else ""
        panels = [(f"{reference} (reference{reference_lr})\noracle IoU {group['reference_iou_vs_oracle'].iloc[0]:.2f}, "
                   f"acc {group['reference_accuracy'].iloc[0]:.2f}", first["reference_map"])]
        for _, row in group[group["mixer"] != reference].iterrows():
            panels.append((f"{row['mixer']}\nIoU {row['iou_vs_reference']:.2f}, oracle {row['iou_vs_oracle']:.2f}, "
                           f"acc {row['accuracy']:.2f}", np.load(row["map_path"])["map"]))
        rule = f"top{int(setting['top_k'])}" if pd.notna(setting["top_k"]) else f"mass{setting['mass']:g}"
        name = f"iou-d{setting['d_model']}-L{setting['seq_len']}-lr{setting['lr']:g}-seed{setting['seed']}-{rule}"
        title = (f"MQAR test example 0: layer-1 maps at the query rows (d_model {setting['d_model']}, "
                 f"seq_len {setting['seq_len']}, lr {setting['lr']:g}, seed {setting['seed']}, {rule})")
        fig = draw_attention_heatmaps(panels, first["query_positions"], first["oracle"], title)
        written += save(fig, Path(folder), name)
    return written
