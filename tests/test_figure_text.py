"""Figures read right: titles and legends inside the figure and clear of the panels, labels without "vs vs" or
"64.0", n in every legend, no error bar from one seed; `plot` draws every published row and never writes a
traceback for an --out it cannot write to."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from matplotlib.text import Text

from rebased_bench.analysis import kind_rows
from rebased_bench.figures import ablate_figure_data, iou_figure_data, mqar_figure_data, plan_figures
from rebased_bench.figures.draw import draw_ablate, draw_iou, draw_mqar
from rebased_bench.kinds import KINDS
from rebased_bench.models.registry import VARIANTS
from rebased_bench.store import read_rows, to_table

RESULTS = Path(__file__).resolve().parent.parent / "results"


def rows_of(kind: str, cells: dict, **fields) -> pd.DataFrame:
    """Ok rows of `kind`: one per (name, d_model, seq_len) key of `cells` and seed of its accuracies."""
    name = "variant" if kind == "ablate" else "mixer"
    rows = [{"kind": kind, "suite": "tiny", "status": "ok", name: key[0], "mixer": key[0], "d_model": key[1],
             "seq_len": key[2], "lr": 1e-3, "seed": seed, "accuracy": value, "case_id": f"{key}{seed}", **fields}
            for key, values in cells.items() for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def mqar_figure():
    cells = {(m, d, L): [0.3 + 0.1 * i, 0.5] for i, m in enumerate(("rebased", "based", "conv_attention"))
             for d in (64, 128) for L in (256, 512)}
    cells.update({("mamba", d, L): [0.05] for d in (64, 128) for L in (256, 512)})  # one seed
    return draw_mqar(mqar_figure_data(rows_of("mqar", cells)), "tiny")


def ablate_figure():
    return draw_ablate(ablate_figure_data(rows_of("ablate", {(v, 64, 32): [0.25, 0.9] for v in VARIANTS})),
                       "ablate-quick")


def iou_figure():
    rows = rows_of("iou", {(m, 64, 32): [0.3, 0.6] for m in ("conv_attention", "based", "rebased")},
                   reference_mixer="conv_attention", top_k=1)
    rows = rows.assign(iou_vs_reference=rows["accuracy"], iou_vs_oracle=rows["accuracy"] / 2)
    return draw_iou(iou_figure_data(rows), "iou-quick")


def kernels_figure():
    """A feature-dim sweep: three providers at three shapes, one panel, eight legend entries."""
    rows = pd.DataFrame([{"kind": "kernels", "suite": "kernels-dims", "status": "ok", "provider": p, "mode": "fwd_bwd",
                          "seq_len": L, "batch": 32768 // L, "heads": 16, "d": d, "dv": 64, "dtype": "bf16",
                          "median_ms": 1.0 + d / 32, "p20_ms": 0.9, "p80_ms": 5.0, "case_id": f"{p}{d}{L}"}
                         for p in ("parallel", "chunk", "fla_parallel_rebased") for d in (32, 64, 128)
                         for L in (2048, 8192) if (p, d) != ("chunk", 128)])
    (time,) = [plan for plan in plan_figures(rows) if plan.stem.endswith("_time")]
    return time.draw()


FIGURES = {"mqar": mqar_figure, "ablate": ablate_figure, "iou": iou_figure, "kernels": kernels_figure}


def texts(fig) -> dict[str, list[str]]:
    """The figure's words by where they are (after a draw, so tick labels are set)."""
    fig.canvas.draw()
    titles = [t.get_text() for t in fig.get_children() if isinstance(t, Text)]
    titles += [ax.get_title() for ax in fig.axes]
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    labels = [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    titles = [" ".join(t.split()) for t in titles if t]  # a long title wraps
    return {"titles": titles, "ticks": ticks, "legend": legend, "labels": labels}


@pytest.mark.parametrize("name", FIGURES)
def test_labels_read_right(name):
    fig = FIGURES[name]()
    words = texts(fig)
    every = [t for group in words.values() for t in group]
    assert not any("vs vs" in t for t in every)
    assert not any(re.search(r"\d\.0\b", t) for t in words["titles"] + words["ticks"] + words["legend"]), words
    if name != "kernels":  # one timed run per point: its title says so instead
        assert words["legend"] and all(re.search(r"\(n=\d+(-\d+)?\)$", t) for t in words["legend"]), words["legend"]
        assert any("95% t-interval" in t for t in words["titles"])
    else:
        assert any("one run per point" in t for t in words["titles"])


def test_iou_panels_name_what_they_compare():
    assert {"IoU vs oracle", "IoU vs reference (conv_attention)"} <= set(texts(iou_figure())["titles"])


def inside(box, bounds) -> bool:
    return bounds.x0 - 1 <= box.x0 and box.x1 <= bounds.x1 + 1 and bounds.y0 - 1 <= box.y0 and box.y1 <= bounds.y1 + 1


@pytest.mark.parametrize("name", FIGURES)
def test_titles_and_legend_stay_inside_and_clear_of_the_panels(name):
    fig = FIGURES[name]()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for text in [t for t in fig.get_children() if isinstance(t, Text) and t.get_text()] + [ax.title for ax in fig.axes]:
        assert inside(text.get_window_extent(renderer), fig.bbox), text.get_text()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert inside(box, fig.bbox)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer))
        assert ax.get_position().height * fig.get_figheight() > 1.5  # inches: not squashed by the legend


def test_one_seed_is_a_point_without_an_error_bar():
    fig = mqar_figure()
    for ax in fig.axes:
        bars = {c.get_label(): c.lines[2][0].get_segments() for c in ax.containers}
        assert not any(np.isfinite(s).all() and len(s) for s in bars["Mamba (n=1)"])
        assert all(len(s) for s in bars["ReBased (n=2)"])


def test_plot_draws_every_published_row():
    """Each ok row of results/ is behind a point of a figure `plot results` draws (counted per figure)."""
    rows = read_rows(RESULTS, {name: kind.schema for name, kind in KINDS.items()})
    planned = plan_figures(rows)
    for name, kind in KINDS.items():
        ok = kind_rows(rows, kind).query("status == 'ok'")
        mine = [plan for plan in planned if plan.stem.startswith(f"{name}_")]
        if name == "kernels":  # every row is a point of one time figure
            assert sum(p.data["runs"].sum() for p in mine if p.stem.endswith("_time")) == len(ok)
        elif name == "iou":  # every row is a bar of each IoU panel
            for metric in ("iou_vs_reference", "iou_vs_oracle"):
                assert sum(p.data.loc[p.data["metric"] == metric, "runs"].sum() for p in mine) == len(ok)
        else:
            assert sum(p.data["runs"].sum() for p in mine) == len(ok)
        assert len(ok) and all(p.data["runs"].sum() for p in mine)
    mqar = kind_rows(rows, KINDS["mqar"]).query("status == 'ok'")
    gpu = {p.stem: p.data["runs"].sum() for p in planned if p.stem.startswith(("mqar_mqar-gpu", "mqar_mqar-paper"))}
    assert gpu == {f"mqar_{suite}": (mqar["suite"] == suite).sum() for suite in ("mqar-gpu", "mqar-paper")}


def test_plot_draws_one_suite_in_two_protocols_as_two_figures_dropping_no_row(tmp_path):
    """Rows of one suite with and without schedule_epochs (the older file lacks the column) are two protocols."""
    schema = KINDS["mqar"].schema
    row = {"kind": "mqar", "suite": "s", "status": "ok", "git_commit": "a" * 40, "d_model": 64, "lr": 1e-3,
           "epochs": 2, "train_examples": 100, "test_examples": 10, "batch_size": 8}
    folder = tmp_path / "mqar"
    folder.mkdir()
    cells = [(m, L, seed) for m in ("rebased", "based") for L in (256, 512) for seed in (0, 1)]
    for i, (mixer, seq_len, seed) in enumerate(cells):
        cell = {**row, "mixer": mixer, "seq_len": seq_len, "seed": seed, "accuracy": 0.1 * (i % 5)}
        old = to_table({**cell, "case_id": f"old{i}"}, schema).drop_columns(["schedule_epochs"])
        pq.write_table(old, folder / f"old{i}.parquet")
        if seed == 0:
            pq.write_table(to_table({**cell, "case_id": f"new{i}", "schedule_epochs": 64}, schema),
                           folder / f"new{i}.parquet")
    runs = {p.stem: p.data["runs"].sum() for p in plan_figures(read_rows(tmp_path))
            if p.stem.startswith("mqar_")}
    assert runs == {"mqar_s_schedule_epochsunset": 8, "mqar_s_schedule_epochs64": 4}


def test_the_published_ablation_figure_keeps_its_title_inside():
    (plan,) = [p for p in plan_figures(read_rows(RESULTS / "ablate-quick")) if p.stem.startswith("ablate_")]
    fig = plan.draw()
    fig.canvas.draw()
    title = next(t for t in fig.get_children() if isinstance(t, Text) and "ablation" in t.get_text())
    assert inside(title.get_window_extent(fig.canvas.get_renderer()), fig.bbox)


def test_training_curves_have_one_point_per_epoch_of_every_run():
    from rebased_bench.figures import mqar_curves_data
    from rebased_bench.figures.draw import draw_mqar_curves
    rows = rows_of("mqar", {("rebased", 64, 256): [0.5, 0.9], ("based", 128, 512): [0.2]})
    histories = [[0.0, 0.1, 0.5], [0.0, 0.9], [0.0, 0.0, 0.1, 0.2]]
    rows = rows.assign(accuracy_history=histories)
    curves = mqar_curves_data(rows)
    assert len(curves) == 9 and curves.groupby(["mixer", "seed"])["epoch"].max().to_dict() == {
        ("based", 0): 4, ("rebased", 0): 3, ("rebased", 1): 2}
    fig = draw_mqar_curves(curves, "tiny")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 3 and inside(legend.get_window_extent(renderer), fig.bbox)
    assert [ax.get_title() for ax in fig.axes] == ["seq_len 256, d_model 64", "seq_len 512, d_model 128"]
    (seed_0, seed_1) = (line for line in fig.axes[0].get_lines() if line.get_label().startswith("ReBased"))
    assert (seed_0.get_linestyle(), seed_0.get_color()) == (seed_1.get_linestyle(), seed_1.get_color())
    assert seed_0.get_marker() != seed_1.get_marker()
