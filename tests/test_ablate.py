import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from rebased_bench.kinds.ablate import affine_summary
from rebased_bench.checkpoints import load_checkpoint
from rebased_bench.cli import app
from rebased_bench.kernels.polynomial.naive import naive_parallel_polynomial
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.mixers import FEATURE_MAPS, SCORE_COEFFS, LinearAttention
from rebased_bench.models.registry import VARIANTS
from rebased_bench.training import query_loss

TINY = ["--seq-lens", "32", "--d-models", "16", "--epochs", "1", "--train-examples", "64",
        "--test-examples", "16", "--batch-size", "16", "--num-kv-pairs", "4", "--seeds", "0", "--device", "cpu"]
HEADS, FEATURE_DIM = 3, 4


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _randomize_affine(layer):
    """γ, β away from their init (1, 0), so a formula that ignores them would fail."""
    with torch.no_grad():
        for name, param in layer.norm.named_parameters():
            param.copy_(torch.randn_like(param) * 0.5 + (1.0 if "gamma" in name or "weight" in name else 0.0))


def _expected_qk(layer, variant, x):
    """q, k (batch, seq_len, heads, feature_dim) from each variant's formula, written out independently."""
    q, k = layer.q_proj(x), layer.k_proj(x)  # (batch, seq_len, heads * feature_dim)
    norm = layer.norm
    if variant in ("x2", "based"):
        pass
    elif variant == "gamma_x2":
        q, k = q * norm.gamma["q"], k * norm.gamma["k"]
    elif variant == "affine_x2":
        q, k = q * norm.gamma["q"] + norm.beta["q"], k * norm.gamma["k"] + norm.beta["k"]
    elif variant == "norm_x2":
        q, k = ((t - t.mean(-1, keepdim=True)) / (t.var(-1, correction=0, keepdim=True) + 1e-5).sqrt() for t in (q, k))
    elif variant == "rebased":
        q = F.layer_norm(q, q.shape[-1:], norm.q_norm.weight, norm.q_norm.bias)
        k = F.layer_norm(k, k.shape[-1:], norm.k_norm.weight, norm.k_norm.bias)
    elif variant == "rebased_shared":  # per head over feature_dim, one γ/β for q and k
        gamma, beta = norm.gamma["qk"], norm.beta["qk"]
        q = F.layer_norm(q.view(*q.shape[:2], HEADS, FEATURE_DIM), (FEATURE_DIM,), gamma, beta)
        k = F.layer_norm(k.view(*k.shape[:2], HEADS, FEATURE_DIM), (FEATURE_DIM,), gamma, beta)
    shape = (*x.shape[:2], HEADS, FEATURE_DIM)
    return q.reshape(shape), k.reshape(shape)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_output_matches_its_formula(variant):
    torch.manual_seed(0)
    layer = LinearAttention(24, variant, num_heads=HEADS, feature_dim=FEATURE_DIM)
    _randomize_affine(layer)
    x = torch.randn(2, 9, 24)
    q, k = _expected_qk(layer, variant, x)
    v = layer.v_proj(x).view(2, 9, HEADS, -1)
    coeffs = (1.0, 1.0, 0.5) if variant == "based" else (0.0, 0.0, 1.0)
    assert SCORE_COEFFS[layer.score] == coeffs
    expected = layer.out_proj(naive_parallel_polynomial(q, k, v, coeffs).flatten(2))
    torch.testing.assert_close(layer(x), expected)


def test_parameter_shapes_follow_the_paper_code_and_fla():
    paper = LinearAttention(24, "affine_x2", num_heads=HEADS, feature_dim=FEATURE_DIM).norm
    assert paper.gamma["q"].shape == paper.beta["k"].shape == (HEADS * FEATURE_DIM,)
    assert paper.gamma["q"] is not paper.gamma["k"]
    shared = LinearAttention(24, "rebased_shared", num_heads=HEADS, feature_dim=FEATURE_DIM).norm
    assert [p.shape for p in shared.parameters()] == [(FEATURE_DIM,), (FEATURE_DIM,)]
    assert not list(LinearAttention(24, "norm_x2").norm.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_a_step(variant):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(variant, 16, 16, vocab_size=32))
    x = torch.randint(1, 32, (4, 16))
    labels = torch.full((4, 16), -100)
    labels[:, 10:] = torch.randint(16, 32, (4, 6))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = query_loss(model, x, labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # every parameter learns


def test_norm_x2_is_finite_on_degenerate_inputs():
    """norm(x)^2 crashes in the paper's code; here constant, zero and huge inputs stay finite, gradients too."""
    layer = LinearAttention(24, "norm_x2", num_heads=HEADS, feature_dim=FEATURE_DIM)
    for x in (torch.zeros(2, 7, 24), torch.full((2, 7, 24), 3.0), torch.randn(2, 7, 24) * 1e4):
        x.requires_grad_(True)
        y = layer(x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_affine_summary_is_nan_where_the_variant_has_no_parameter():
    plain = affine_summary(LanguageModel(ModelConfig("x2", 24, 16, vocab_size=32)))
    assert all(math.isnan(value) for value in plain.values())
    gamma_only = affine_summary(LanguageModel(ModelConfig("gamma_x2", 24, 16, vocab_size=32)))
    assert gamma_only["q_gamma_mean"] == 1.0 and gamma_only["k_gamma_std"] == 0.0
    assert math.isnan(gamma_only["q_beta_mean"])
    shared = affine_summary(LanguageModel(ModelConfig("rebased_shared", 24, 16, vocab_size=32)))
    assert shared["q_beta_mean"] == shared["k_beta_mean"] == 0.0


def test_ablate_command_rows_table_and_checkpoints(tmp_path):
    result = invoke("ablate", "--variants", "x2,rebased", *TINY, "--out", tmp_path, "--save-checkpoints")
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "ablate").set_index("variant")
    assert sorted(rows.index) == ["rebased", "x2"] and set(rows["status"]) == {"ok"}
    assert (rows["mixer"] == rows.index).all()
    assert math.isnan(rows.loc["x2", "q_gamma_mean"]) and not math.isnan(rows.loc["rebased", "k_beta_std"])
    assert "Feature-map ablation" in result.stdout and "Learned γ / β" in result.stdout
    path = rows.loc["rebased", "checkpoint_path"]
    assert path == str(tmp_path / "checkpoints" / "ablate" / f"{rows.loc['rebased', 'case_id']}.pt")
    model, payload = load_checkpoint(path, torch.device("cpu"))
    assert payload["config"]["variant"] == "rebased" and isinstance(model.blocks[1].mixer, LinearAttention)


def test_mqar_save_checkpoints_keeps_the_case_id(tmp_path):
    plain = invoke("mqar", "--mixers", "based", *TINY, "--out", tmp_path / "a")
    kept = invoke("mqar", "--mixers", "based", *TINY, "--out", tmp_path / "b", "--save-checkpoints")
    assert plain.exit_code == 0 and kept.exit_code == 0, kept.output
    a, b = pd.read_parquet(tmp_path / "a" / "mqar"), pd.read_parquet(tmp_path / "b" / "mqar")
    assert a["case_id"].tolist() == b["case_id"].tolist() and a["checkpoint_path"].isna().all()
    model, payload = load_checkpoint(b["checkpoint_path"].iloc[0], torch.device("cpu"))
    assert payload["metrics"]["accuracy"] == b["accuracy"].iloc[0]


def test_variants_are_every_feature_map():
    assert sorted(VARIANTS) == sorted(FEATURE_MAPS)


@pytest.mark.parametrize("args, message", [
    (["--variants", "x3"], "command line: variant: expected one of 'x2', 'gamma_x2'"),
    (["--variants", "x2", "--mixers", "rebased"], "No such option: --mixers"),
])
def test_bad_ablate_input_is_exit_code_2(args, message, tmp_path):
    result = invoke("ablate", *args, "--dry-run", "--out", tmp_path)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
