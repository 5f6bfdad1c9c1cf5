"""Tables from hand-made rows: each case once, seeds pooled only across seeds, old rows at new fields' defaults,
integers as integers, n and a 95% interval in every cell, the differences the seeds do not resolve marked."""

import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from rebased_bench.analysis import best_lr, seed_stats, t975, unresolved
from rebased_bench.figures import mqar_figure_data, plan_figures
from rebased_bench.kinds import KINDS, ablate, mqar
from rebased_bench.store import read_rows, to_table

T0 = pd.Timestamp("2026-01-01", tz="UTC")
SCHEMAS = {name: kind.schema for name, kind in KINDS.items()}


def mqar_row(case_id, seed=0, accuracy=0.5, minutes=0, commit="a", **fields) -> dict:
    """One ok MQAR row as the runner writes it (the fields a test does not name at fixed values)."""
    return {"kind": "mqar", "suite": "s", "case_id": case_id, "status": "ok", "git_commit": commit * 40,
            "started_at": T0 + pd.Timedelta(minutes=minutes), "mixer": "rebased", "d_model": 64, "seq_len": 64,
            "lr": 1e-3, "seed": seed, "epochs": 2, "train_examples": 100, "test_examples": 10, "batch_size": 8,
            "accuracy": accuracy, **fields}


def text(renderable) -> str:
    console = Console(width=250, record=True)
    console.print(renderable)
    return console.export_text()


def test_a_case_counts_once_its_newest_row_and_the_caption_names_the_commits():
    rows = pd.DataFrame([mqar_row("c0", seed=0, accuracy=0.9), mqar_row("c0", seed=0, accuracy=0.5, minutes=5, commit="b"),
                         mqar_row("c1", seed=1, accuracy=0.7)])
    point = mqar_figure_data(rows).iloc[0]
    assert (point["seeds"], point["runs"], point["mean"]) == (2, 2, pytest.approx(0.6))
    shown = text(mqar.summary(rows))
    # one n in every cell: said once, in the caption
    assert "0.600 [0.00, 1.00]" in shown and "n=2 seeds in every cell" in " ".join(shown.split())
    assert "rows of 2 commits: aaaaaaa, bbbbbbb" in " ".join(shown.split())  # the caption wraps to the table


def test_rows_of_one_seed_are_one_run_never_two_seeds():
    rows = pd.DataFrame([mqar_row("x", seed=0, accuracy=0.9), mqar_row("y", seed=0, accuracy=0.5, minutes=5)])
    point = mqar_figure_data(rows).iloc[0]
    assert (point["seeds"], point["mean"]) == (1, 0.5) and math.isnan(point["low"])
    shown = text(mqar.summary(rows))
    assert "0.500" in shown and "n=1 seed in every cell" in " ".join(shown.split()) and "n=2" not in shown


def write(folder, name, row: dict, without=()):
    """`row` as the store writes it (every schema column, typed), less the columns in `without` (an older row)."""
    table = to_table(row, mqar.KIND.schema)
    table = table.drop_columns([c for c in without if c in table.column_names])
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"{name}.parquet")


def test_an_older_row_without_a_newer_column_is_the_setting_of_its_default(tmp_path):
    write(tmp_path / "old" / "mqar", "old", mqar_row("old", seed=0, accuracy=0.2),
          without=("schedule_epochs", "micro_batch_size", "precision"))
    write(tmp_path / "new" / "mqar", "new", mqar_row("new", seed=1, accuracy=0.4, micro_batch_size=0))
    write(tmp_path / "new" / "mqar", "paper", mqar_row("paper", seed=0, accuracy=0.9, schedule_epochs=64))
    rows = read_rows(tmp_path, SCHEMAS)
    points = mqar_figure_data(rows).set_index("schedule_epochs", drop=False)
    assert len(points) == 2 and points["runs"].sum() == 3
    unset = points[points["schedule_epochs"].isna()].iloc[0]
    assert (unset["seeds"], unset["mean"]) == (2, pytest.approx(0.3))  # the old and the new row: one setting
    stems = sorted(plan.stem for plan in plan_figures(rows))
    assert stems == ["mqar_s_schedule_epochs64", "mqar_s_schedule_epochsunset"]
    shown = text(mqar.summary(rows))
    assert "schedule_epochs" in shown and "0.300 [0.00, 1.00] n=2" in shown and "0.900 n=1" in shown


def test_integer_columns_stay_integers_beside_other_kinds(tmp_path):
    write(tmp_path / "mqar", "m", mqar_row("m"))
    kernel = {"kind": "kernels", "suite": "k", "case_id": "k0", "status": "ok", "provider": "parallel", "mode": "fwd",
              "seq_len": 128, "batch": 2, "tokens": 256, "heads": 2, "d": 16, "dv": 16, "dtype": "bf16", "median_ms": 1.0}
    pq.write_table(to_table(kernel, KINDS["kernels"].schema), tmp_path / "k0.parquet")
    rows = read_rows(tmp_path, SCHEMAS)
    assert rows["d_model"].isna().any()  # read together, the mqar columns are floats with NaN for the kernel row
    shown = text(mqar.summary(rows))
    assert "seq_len 64" in shown and "64.0" not in shown
    assert mqar_figure_data(rows)["d_model"].dtype == "int64"


def test_t_quantiles_and_the_interval_of_three_seeds():
    assert (t975(1), t975(2), t975(30)) == (12.706, 4.303, 2.042)
    assert t975(31) == pytest.approx(2.040, abs=1e-3) and t975(10 ** 6) == pytest.approx(1.960, abs=1e-3)
    rows = pd.DataFrame([mqar_row(f"c{s}", seed=s, accuracy=a) for s, a in enumerate([0.5, 0.6, 0.7])])
    stats = seed_stats(rows, ("mixer",), "accuracy").iloc[0]
    half = 4.303 * 0.1 / math.sqrt(3)
    assert stats["seeds"] == 3 and stats["std"] == pytest.approx(0.1)
    assert (stats["low"], stats["high"]) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))


def test_only_differences_the_seeds_resolve_go_unmarked():
    stats = pd.DataFrame({"mixer": ["a", "b", "c", "d", "e"], "seq_len": [64, 64, 64, 64, 128],
                          "mean": [0.9, 0.5, 0.85, 0.3, 0.1], "seeds": [3, 3, 3, 1, 3],
                          "low": [0.85, 0.45, 0.8, math.nan, 0.0], "high": [0.95, 0.55, 0.9, math.nan, 0.2]})
    # b: intervals apart; c: they overlap; d: one seed resolves nothing; e: alone at its seq_len
    assert list(unresolved(stats, "mixer", ["seq_len"])) == ["*", "", "~", "~", ""]


def test_tables_show_n_the_interval_and_the_marks_with_a_caption_that_says_what_they_are():
    accuracies = {"rebased": [0.9, 0.92, 0.94], "based": [0.5, 0.52, 0.54], "mamba": [0.6, 0.9, 0.95]}
    rows = pd.DataFrame([mqar_row(f"{m}{s}", seed=s, accuracy=a, mixer=m)
                         for m, values in accuracies.items() for s, a in enumerate(values)])
    shown = text(mqar.summary(rows))
    assert "0.920 [0.87, 0.97] *" in shown and "0.520 [0.47, 0.57] │" in shown
    assert "0.817 [0.35, 1.00] ~" in shown
    caption = " ".join(shown.split())  # the caption wraps at the table's width
    assert "95% t-interval of the mean over seeds" in caption and "~: not resolved from it" in caption
    assert "n=3 seeds in every cell" in caption  # every cell has the same n: said once
    assert "d_model=64" in caption  # a label with one value moves into the caption


def test_best_lr_never_pools_runs_of_different_settings():
    rows = pd.DataFrame({
        "status": ["ok"] * 5 + ["error"], "mixer": ["m"] * 6, "d_model": [64] * 6, "seq_len": [64] * 6,
        "lr": [1e-3, 1e-3, 3e-3, 1e-3, 1e-3, 1e-2], "seed": [0, 1, 0, 0, 1, 0], "epochs": [2, 2, 2, 8, 8, 2],
        "accuracy": [0.2, 0.4, 0.1, 0.9, 0.7, 1.0]})
    best = best_lr(rows, mqar.POINT, mqar.SETTINGS).set_index("epochs")
    assert best.loc[2, "lr"] == 1e-3 and best.loc[2, "mean"] == pytest.approx(0.3) and best.loc[2, "runs"] == 3
    assert best.loc[2, "std"] == pytest.approx(0.1414, abs=1e-3) and best.loc[2, "seeds"] == 2
    assert best.loc[8, "mean"] == pytest.approx(0.8)


def test_summaries_label_lines_with_the_settings_that_differ():
    rows = pd.DataFrame([mqar_row(f"c{i}", seed=i % 2, accuracy=a, epochs=e, variant="x2", kind=k)
                         for k in ("mqar", "ablate")
                         for i, (a, e) in enumerate(zip([0.2, 0.4, 0.9, 0.7], [2, 2, 8, 8]))])
    table = mqar.summary(rows[rows["kind"] == "mqar"]).renderables[0]
    assert [c.header for c in table.columns][:2] == ["mixer", "epochs"] and table.row_count == 2
    affine = {f"{t}_{p}_{s}": 1.0 for t in "qk" for p in ("gamma", "beta") for s in ("mean", "std")}
    accuracy = ablate.summary(rows[rows["kind"] == "ablate"].assign(mixer="x2", **affine)).renderables[0]
    assert accuracy.renderables[0].row_count == 2
