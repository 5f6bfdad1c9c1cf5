import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.data.mqar import generate, query_index
from rebased_bench.kinds.iou import iou, key_sets, oracle_sets, query_rows
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.mixers import LinearAttention, SelfAttention

TINY = ["--seq-lens", "32", "--d-models", "16", "--epochs", "1", "--train-examples", "64",
        "--test-examples", "16", "--batch-size", "16", "--num-kv-pairs", "4", "--seeds", "0", "--device", "cpu"]


class NoMapMixer(nn.Module):
    """A causal mixer without attention_map()."""

    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):  # (batch, seq_len, d_model)
        return self.proj(x)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _sets(rows, **rule):
    maps = torch.tensor(rows, dtype=torch.float)
    return key_sets(maps, torch.ones_like(maps, dtype=torch.bool), **rule)


def test_identical_maps_give_1_and_disjoint_maps_give_0():
    a = _sets([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.8, 0.0]], top_k=1)
    b = _sets([[0.1, 0.2, 0.3, 0.4], [0.9, 0.05, 0.05, 0.0]], top_k=1)
    assert iou(a, a).tolist() == [1.0, 1.0]
    assert iou(a, b).tolist() == [0.0, 0.0]


def test_worked_cases_top_k_and_mass():
    # top-2: {0, 1} vs {1, 2} -> |{1}| / |{0, 1, 2}| = 1/3
    a, b = _sets([[0.5, 0.4, 0.1, 0.0]], top_k=2), _sets([[0.1, 0.5, 0.4, 0.0]], top_k=2)
    assert a.tolist() == [[True, True, False, False]] and iou(a, b).item() == pytest.approx(1 / 3)
    row = [[0.5, 0.3, 0.2, 0.0]]
    assert _sets(row, mass=0.5).tolist() == [[True, False, False, False]]  # 0.5 already holds half
    assert _sets(row, mass=0.75).tolist() == [[True, True, False, False]]
    assert _sets(row, mass=1.0).tolist() == [[True, True, True, False]]  # a zero weight is never needed


def test_key_sets_stay_on_the_causal_support():
    maps = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    support = torch.tensor([[True, False, False, False]])  # query at position 0: one causal key
    assert key_sets(maps, support, top_k=3).tolist() == [[True, False, False, False]]


def test_oracle_set_is_the_queried_key_and_its_value():
    inputs, labels = generate(8, 32, 4, vocab_size=64, seed=3)
    index = query_index(labels)  # (8, 4)
    oracle = oracle_sets(inputs, index)
    batch_index, query_position = torch.arange(8).repeat_interleave(4), index.flatten()
    assert oracle.sum(-1).tolist() == [2] * len(oracle)
    key, value = oracle.int().argmax(-1), oracle.int().argmax(-1) + 1
    assert (inputs[batch_index, key] == inputs[batch_index, query_position]).all()
    assert (inputs[batch_index, value] == labels[batch_index, query_position]).all()
    assert (value < query_position).all()


@pytest.mark.parametrize("feature_map", ["rebased", "based", "norm_x2"])
def test_linear_map_is_the_naive_formula_and_the_forward_weights(feature_map):
    torch.manual_seed(0)
    layer = LinearAttention(24, feature_map, num_heads=3, feature_dim=4)
    x = torch.randn(2, 9, 24)
    q, k, v = layer.features(x)
    s = torch.einsum("bthd,bshd->bhts", q, k) / 2  # scale 1 / sqrt(feature_dim 4)
    weights = (1 + s + s * s / 2 if feature_map == "based" else s * s).tril()
    expected = (weights / weights.sum(-1, keepdim=True)).mean(1)
    attention_map = layer.attention_map(x)
    torch.testing.assert_close(attention_map, expected)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    torch.testing.assert_close(attention_map.sum(-1), torch.ones(2, 9))
    assert (attention_map[:, ~causal] == 0).all()
    one_head = LinearAttention(24, feature_map, num_heads=1, feature_dim=4)  # map @ v is forward() itself
    o = torch.einsum("bts,bshd->bthd", one_head.attention_map(x), one_head.features(x)[2])
    torch.testing.assert_close(one_head.out_proj(o.flatten(2)), one_head(x))


def test_attention_map_is_the_softmax_probabilities():
    torch.manual_seed(0)
    layer = SelfAttention(24, num_heads=2).eval()
    x = torch.randn(2, 9, 24)
    q, k, _ = layer.qkv(x).view(2, 9, 3, 2, 12).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2) / 12 ** 0.5).masked_fill(~torch.ones(9, 9, dtype=torch.bool).tril(), -1e9)
    torch.testing.assert_close(layer.attention_map(x), scores.softmax(-1).mean(1))
    one_head = SelfAttention(24, num_heads=1).eval()
    v = one_head.qkv(x)[..., 48:]
    torch.testing.assert_close(one_head.out_proj(one_head.attention_map(x) @ v), one_head(x))


def test_query_rows_cover_every_labelled_position():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig("rebased", 16, 32, vocab_size=64)).eval()
    inputs, labels = generate(3, 32, 4, vocab_size=64, seed=1)
    maps, support, correct = query_rows(model, inputs, labels, query_index(labels))
    assert maps.shape == (12, 32) and support.shape == (12, 32) and correct.shape == (12,)
    torch.testing.assert_close(maps.sum(-1), torch.ones(12))
    assert (maps[~support] == 0).all()


def test_iou_command_rows_figures_and_reused_checkpoints(tmp_path):
    result = invoke("iou", "--mixers", "conv_attention,rebased", *TINY, "--top-k", "2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "iou").set_index("mixer")
    assert set(rows["status"]) == {"ok"} and (rows["top_k"] == 2).all() and rows["mass"].isna().all()
    assert rows.loc["conv_attention", "iou_vs_reference"] == 1.0
    assert rows["query_rows"].tolist() == [16 * 4] * 2
    for column in ("iou_vs_reference", "iou_vs_oracle", "reference_iou_vs_oracle", "accuracy", "set_size"):
        assert rows[column].between(0, 2).all()
    assert "Attention-map IoU vs conv_attention (top-2)" in " ".join(result.stdout.split())  # titles wrap
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["iou-d16-L32-lr0.003-seed0-top2.pdf", "iou-d16-L32-lr0.003-seed0-top2.png"]
    plotted = invoke("plot", tmp_path, "--suite", "iou", "--out", tmp_path / "plotted")  # heatmaps from map_path
    assert plotted.exit_code == 0, plotted.output
    assert {p.name for p in (tmp_path / "plotted").iterdir()} >= set(figures)
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints" / "mqar").iterdir()}
    assert len(checkpoints) == 2
    again = invoke("iou", "--mixers", "rebased", *TINY, "--mass", "0.9", "--out", tmp_path)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints" / "mqar").iterdir()} == checkpoints
    assert pd.read_parquet(tmp_path / "iou")["mass"].max() == 0.9


@pytest.mark.parametrize("args, message", [
    (["--top-k", "1", "--mass", "0.9"], "mutually exclusive"),
    (["--mass", "1.5"], "mass: expected a finite number in (0, 1], got 1.5"),
    (["--top-k", "0"], "top_k: expected a 64-bit integer >= 1, got 0"),
    (["--mixers", "test_iou:NoMapMixer"], "no attention_map"),
])
def test_bad_iou_input_is_exit_code_2(args, message, tmp_path):
    result = invoke("iou", *args, "--dry-run", "--out", tmp_path)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_heatmaps_of_error_rows_alone_are_none(tmp_path):
    import pandas as pd
    from rebased_bench.figures import plot_iou_heatmaps
    rows = pd.DataFrame([{"kind": "iou", "suite": "x", "status": "error", "case_id": "a", "map_path": None}])
    assert plot_iou_heatmaps(rows, tmp_path) == [] and not any(tmp_path.iterdir())
