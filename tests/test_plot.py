import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.figures import (PALETTE, ablate_figure_data, iou_figure_data, kernels_memory_data,
                                   kernels_speedup_data, kernels_time_data, mqar_compare_data, mqar_figure_data,
                                   plan_compare, plan_figures, plot_results, style)
from rebased_bench.kinds.kernel_providers import PROVIDERS
from rebased_bench.models.registry import MIXERS


def mqar_rows(kind="mqar", **extra):
    """Hand-made rows: one (mixer, d_model, seq_len) point with two lrs x two seeds, plus error rows."""
    rows = []
    for lr, accs in ((1e-3, [0.9, 0.5]), (1e-2, [0.8, 0.8])):  # means 0.7 and 0.8: 1e-2 wins
        rows += [dict(mixer="rebased", d_model=64, seq_len=256, lr=lr, seed=s, accuracy=a) for s, a in enumerate(accs)]
    rows += [dict(mixer="based", d_model=64, seq_len=256, lr=1e-3, seed=s, accuracy=a) for s, a in enumerate([1.0, 0.8])]
    rows += [dict(mixer="based", d_model=128, seq_len=256, lr=1e-3, seed=s, accuracy=a) for s, a in enumerate([0.0, 0.2])]
    rows += [dict(mixer="rebased", d_model=128, seq_len=512, lr=1e-3, seed=0, accuracy=0.6)]
    frame = pd.DataFrame(rows).assign(kind=kind, suite="tiny", status="ok", error=None, **extra)
    errors = pd.DataFrame([dict(kind=kind, suite="tiny", status="error", error="boom", mixer="rebased", d_model=64,
                                seq_len=256, lr=3e-3, seed=0, accuracy=1.0, **extra),  # would win were it counted
                           dict(kind=kind, suite="tiny", status="error", error="oom", mixer="mamba", d_model=64,
                                seq_len=256, lr=1e-3, seed=0, accuracy=math.nan, **extra)])
    return pd.concat([frame, errors], ignore_index=True)


def kernels_rows():
    """sdpa (head dim 64) and two shapes of `parallel`/`chunk` on a fixed-tokens sweep, plus error/skipped rows."""
    rows = []
    for seq_len in (1024, 2048):
        batch = 32768 // seq_len
        for provider, d, ms in (("sdpa", 64, 2.0), ("parallel", 16, 1.0), ("parallel", 32, 1.6),
                                ("chunk", 16, 0.5), ("chunk", 32, 0.8)):
            rows.append(dict(provider=provider, mode="fwd", batch=batch, seq_len=seq_len, heads=16, d=d, dv=64,
                             dtype="bf16", median_ms=ms * seq_len / 1024, p20_ms=ms * 0.9, p80_ms=ms * 1.1,
                             tflops=100.0, peak_mem_bytes=2**20 * seq_len, status="ok"))
        rows.append(dict(provider="fla_parallel_rebased", mode="fwd", batch=batch, seq_len=seq_len, heads=16, d=16,
                         dv=64, dtype="bf16", median_ms=None, status="skipped"))
        rows.append(dict(provider="chunk", mode="fwd", batch=batch, seq_len=seq_len, heads=16, d=16, dv=64,
                         dtype="bf16", median_ms=0.01, status="error"))
    return pd.DataFrame(rows).assign(kind="kernels", suite="kern")


def iou_rows():
    rows = [dict(mixer=m, seq_len=256, d_model=64, top_k=1, mass=None, seed=s, iou_softmax=v, iou_oracle=v / 2)
            for m, values in (("based", [0.4, 0.6]), ("rebased", [0.7, 0.9])) for s, v in enumerate(values)]
    return pd.DataFrame(rows).assign(kind="iou", suite="iou-tiny", status="ok")


def test_mqar_data_picks_the_best_lr_by_mean_and_ignores_error_rows():
    points = mqar_figure_data(mqar_rows()).set_index(["mixer", "d_model", "seq_len"])
    best = points.loc[("rebased", 64, 256)]
    assert best["lr"] == 1e-2 and best["mean"] == pytest.approx(0.8) and best["std"] == 0 and best["seeds"] == 2
    assert best["runs"] == 4  # two lrs x two seeds behind the point
    assert "mamba" not in points.index.get_level_values("mixer")
    one_seed = points.loc[("rebased", 128, 512)]
    assert one_seed["seeds"] == 1 and one_seed[["std", "low", "high"]].isna().all()  # no interval from one seed


def test_mqar_error_bars_are_the_t_interval_clipped_to_0_1():
    points = mqar_figure_data(mqar_rows()).set_index(["mixer", "d_model", "seq_len"])
    high = points.loc[("based", 64, 256)]  # 1.0 and 0.8: 0.9 ± 12.706 * 0.1414 / sqrt(2)
    assert high["std"] == pytest.approx(0.1414, abs=1e-4) and (high["low"], high["high"]) == (0.0, 1.0)
    low = points.loc[("based", 128, 256)]  # 0.0 and 0.2
    assert (low["low"], low["high"]) == (0.0, 1.0)


def test_ablate_data_is_best_lr_per_variant():
    rows = mqar_rows(kind="ablate").assign(variant=lambda r: r["mixer"].map({"rebased": "norm_x2"}).fillna("x2"))
    bars = ablate_figure_data(rows).set_index(["variant", "d_model", "seq_len"])
    assert bars.loc[("norm_x2", 64, 256), "lr"] == 1e-2 and bars.loc[("norm_x2", 64, 256), "mean"] == pytest.approx(0.8)


def test_iou_data_is_mean_and_std_per_model_and_metric():
    bars = iou_figure_data(iou_rows()).set_index(["mixer", "metric"])
    assert bars.loc[("rebased", "iou_softmax"), "mean"] == pytest.approx(0.8)
    assert bars.loc[("based", "iou_oracle"), "mean"] == pytest.approx(0.25)
    assert bars.loc[("based", "iou_softmax"), "std"] == pytest.approx(0.1414, abs=1e-4)


def test_kernels_time_keeps_ok_rows_only():
    time = kernels_time_data(kernels_rows())
    assert set(time["provider"]) == {"sdpa", "parallel", "chunk"} and (time["tokens"] == 32768).all()
    chunk = time[(time["provider"] == "chunk") & (time["d"] == 16)].set_index("seq_len")
    assert chunk.loc[1024, "median_ms"] == 0.5  # the 0.01 ms error row is not a measurement
    assert len(kernels_memory_data(kernels_rows())) == len(time)


def test_a_sweep_at_a_fixed_batch_draws_one_line_across_its_seq_lens(tmp_path):
    """kernels-mqar keeps the batch (512) while tokens grow with seq_len: one line per provider, not one per length."""
    rows = kernels_rows()
    rows = rows.assign(suite="fixed-batch", batch=512)
    time = kernels_time_data(rows)
    assert set(time["per_call"]) == {"batch 512"} and set(time["tokens"]) == {512 * 1024, 512 * 2048}
    assert time.groupby(["provider", "d"]).size().eq(2).all()  # both seq_lens on each line
    names = {path.name for path in plot_results(rows, tmp_path)}
    assert "kernels_fixed-batch_512batch_bf16_time.png" in names and not any("tok_" in name for name in names)


def test_a_batch_sweep_at_one_seq_len_draws_its_lines_across_batch(tmp_path):
    """kernels-batch keeps seq_len (8192) and varies the batch: one figure with batch on x, not one point per batch."""
    rows = pd.concat([kernels_rows().query("seq_len == 1024").assign(batch=batch, seq_len=8192) for batch in (1, 4, 16)],
                     ignore_index=True).assign(suite="batch-sweep")
    names = {path.name for path in plot_results(rows, tmp_path)}
    assert {"kernels_batch-sweep_8192seqlen_bf16_time.png", "kernels_batch-sweep_8192seqlen_bf16_memory.png"} <= names
    assert not any("tok_" in name for name in names)  # before: kernels_batch-sweep_8192tok_..., 65536tok_, ...
    time = next(p for p in plan_figures(rows) if p.stem == "kernels_batch-sweep_8192seqlen_bf16_time")
    axis = time.draw().axes[0]
    assert axis.get_xlabel() == "Batch" and [t.get_text() for t in axis.get_xticklabels()] == ["1", "4", "16"]


def test_kernels_speedup_over_a_baseline_matches_shapes_where_it_can():
    speed = kernels_speedup_data(kernels_rows(), "parallel").set_index(["provider", "d", "seq_len"])["speedup"]
    assert speed[("chunk", 16, 1024)] == pytest.approx(2.0)  # 1.0 / 0.5: same shape
    assert speed[("chunk", 32, 2048)] == pytest.approx(2.0)  # 3.2 / 1.6: the d=32 baseline, not d=16
    assert speed[("parallel", 16, 1024)] == pytest.approx(1.0)
    assert ("sdpa", 64, 1024) not in speed  # the baseline has two shapes there: no fair match
    over_sdpa = kernels_speedup_data(kernels_rows(), "sdpa").set_index(["provider", "d", "seq_len"])["speedup"]
    assert over_sdpa[("parallel", 16, 2048)] == pytest.approx(2.0)  # sdpa at d=64 is the one baseline at this point


def test_palette_is_fixed_and_unknown_names_are_stable():
    assert style("rebased").label == "ReBased" and style("rebased") == style("rebased")
    assert style("my_pkg.mod:Mixer") == style("my_pkg.mod:Mixer")


def test_every_built_in_mixer_and_provider_has_its_own_style():
    assert set(MIXERS) | set(PROVIDERS) <= set(PALETTE)


def write_results(folder):
    """All four kinds as Parquet files in the layout the runner writes (<out>/<kind>/<file>)."""
    for kind, rows in (("mqar", mqar_rows()), ("kernels", kernels_rows()), ("iou", iou_rows()),
                       ("ablate", mqar_rows(kind="ablate").assign(variant=lambda r: r["mixer"]))):
        (folder / kind).mkdir(parents=True)
        rows.to_parquet(folder / kind / "rows.parquet")


def invoke(*args):
    return CliRunner().invoke(app, ["plot", *map(str, args)])


def test_plot_writes_every_figure_as_png_and_pdf(tmp_path):
    write_results(tmp_path / "results")
    result = invoke(tmp_path / "results", "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    paths = result.stdout.split()
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    stems = ["ablate_tiny", "iou_iou-tiny", "kernels_kern_32768tok_bf16_memory", "kernels_kern_32768tok_bf16_speedup",
             "kernels_kern_32768tok_bf16_time", "mqar_tiny"]
    assert names == sorted(f"{s}.{ext}" for s in stems for ext in ("pdf", "png"))
    for path in map(tmp_path.joinpath, paths):
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF")


def test_plot_one_kind_default_out_and_same_bytes_twice(tmp_path):
    write_results(tmp_path)
    first = invoke(tmp_path, "--suite", "mqar")
    assert first.exit_code == 0, first.output
    assert first.stdout.split() == [str(tmp_path / "figures" / "mqar_tiny.png"), str(tmp_path / "figures" / "mqar_tiny.pdf")]
    pdf = (tmp_path / "figures" / "mqar_tiny.pdf").read_bytes()
    plot_results(mqar_rows(), tmp_path / "again")
    assert (tmp_path / "again" / "mqar_tiny.pdf").read_bytes() == pdf


@pytest.mark.parametrize("args, message", [
    ([], "no result rows"),
    (["--suite", "kernels"], "no kernels rows"),
    (["--suite", "kernels", "--baseline", "nope"], "no kernels rows"),
])
def test_plot_without_rows_is_one_line_and_exit_code_2(tmp_path, args, message):
    if args:
        (tmp_path / "mqar").mkdir()
        mqar_rows().to_parquet(tmp_path / "mqar" / "rows.parquet")
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_plot_unknown_baseline_is_exit_code_2(tmp_path):
    write_results(tmp_path)
    result = invoke(tmp_path, "--suite", "kernels", "--baseline", "nope")
    assert result.exit_code == 2 and "--baseline" in result.stderr and "sdpa" in result.stderr


def compare_rows(epochs=16):
    """A user's mixer at (256, 64) (two seeds), and reference rows: rebased at that cell and at (512, 64), which the
    user lacks, at `epochs`, plus a rebased row at the shared cell from another protocol (epochs 64)."""
    mine = [dict(mixer="my_pkg.mod:Mine", d_model=64, seq_len=256, lr=1e-3, seed=s, accuracy=a, epochs=16)
            for s, a in enumerate([0.5, 0.7])]
    theirs = [dict(mixer="rebased", d_model=64, seq_len=256, lr=1e-3, seed=s, accuracy=a, epochs=epochs)
              for s, a in enumerate([0.8, 0.9])]
    theirs += [dict(mixer="rebased", d_model=64, seq_len=512, lr=1e-3, seed=0, accuracy=0.4, epochs=epochs),
               dict(mixer="rebased", d_model=64, seq_len=256, lr=3e-3, seed=0, accuracy=1.0, epochs=64)]
    frames = [pd.DataFrame(r).assign(kind="mqar", suite=suite, status="ok", num_kv_pairs=16,
                                     case_id=[f"{suite}{i}" for i in range(len(r))])
              for r, suite in ((mine, "tiny"), (theirs, "published"))]
    return frames[0], frames[1]


def test_compare_data_has_the_reference_points_of_the_same_protocol_at_the_users_cells_only():
    mine, theirs = compare_rows()
    points = mqar_compare_data(mine, theirs).set_index(["reference", "mixer", "seq_len", "d_model"])
    assert sorted(points.index) == [(False, "my_pkg.mod:Mine", 256, 64), (True, "rebased", 256, 64)]
    reference = points.loc[(True, "rebased", 256, 64)]
    # the epochs-64 row at lr 3e-3 (accuracy 1.0) would win the best lr were it pooled
    assert reference["lr"] == 1e-3 and reference["mean"] == pytest.approx(0.85) and reference["seeds"] == 2
    assert set(points["suite"]) == {"tiny"}  # drawn in the user's suite's figure
    (plan,) = plan_compare(mine, theirs, "published")
    labels = [t.get_text() for t in plan.draw().legends[0].get_texts()]
    assert plan.stem == "mqar-compare_tiny" and "ReBased (reference) (n=2)" in labels


def test_plot_reference_writes_the_compare_figure_and_a_different_protocol_is_one_line(tmp_path):
    mine, theirs = compare_rows()
    mine.to_parquet(tmp_path / "mine.parquet")
    theirs.to_parquet(tmp_path / "same.parquet")
    compare_rows(epochs=64)[1].to_parquet(tmp_path / "other.parquet")
    result = invoke(tmp_path / "mine.parquet", "--reference", tmp_path / "same.parquet", "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "figs" / f"mqar-compare_tiny.{ext}") for ext in ("png", "pdf")]
    result = invoke(tmp_path / "mine.parquet", "--reference", tmp_path / "other.parquet", "--out", tmp_path / "figs")
    assert result.exit_code == 2 and "epochs 16 vs 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
