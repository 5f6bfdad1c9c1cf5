"""The Mamba and RWKV baselines: fast paths equal their sequential references, every mixer is causal, stability."""

import math

import pytest
import torch

from rebased_bench.kernels import selective_scan_chunked, selective_scan_fn, selective_scan_reference
from rebased_bench.kernels import wkv_chunked, wkv_fn, wkv_reference
from rebased_bench.models.lm import LanguageModel, MambaBlock, ModelConfig
from rebased_bench.models.mamba import Mamba
from rebased_bench.models.registry import MIXERS
from rebased_bench.models.rwkv import RWKVTimeMixer, decay_rate


def assert_matches(actual, expected, name, tol=1e-4):
    """Max absolute error, relative to max(|expected|, 1): one named check for values and gradients."""
    scale = max(expected.abs().max().item(), 1.0)
    error = (actual.double() - expected.double()).abs().max().item() / scale
    assert error < tol, f"{name}: relative error {error:.2e}"


def leaves(*tensors):
    return tuple(t.double().requires_grad_() for t in tensors)


def compare(fast, reference, inputs, names):
    """fast (fp32) and reference (fp64) agree in outputs and in gradients for one random output gradient."""
    y_ref, y_fast = reference(*inputs), fast(*inputs)
    assert y_fast.shape == y_ref.shape
    assert_matches(y_fast, y_ref, "output")
    grad = torch.randn_like(y_ref)
    grads_fast = torch.autograd.grad(y_fast, inputs, grad.to(y_fast.dtype), allow_unused=True)
    grads_ref = torch.autograd.grad(y_ref, inputs, grad, allow_unused=True)
    for name, x, g_fast, g_ref in zip(names, inputs, grads_fast, grads_ref):  # unused (seq_len 1): zero
        zero = torch.zeros_like(x)
        assert_matches(zero if g_fast is None else g_fast, zero if g_ref is None else g_ref, f"grad {name}")


@pytest.mark.parametrize("batch, seq_len, d_inner, d_state, chunk", [
    (2, 37, 5, 3, None), (2, 37, 5, 3, 4), (1, 64, 3, 2, 16), (2, 1, 3, 2, None), (1, 50, 4, 16, 7),
], ids=lambda v: str(v))
def test_selective_scan_matches_the_sequential_reference(batch, seq_len, d_inner, d_state, chunk):
    torch.manual_seed(0)
    inputs = leaves(torch.randn(batch, seq_len, d_inner),
                    torch.nn.functional.softplus(torch.randn(batch, seq_len, d_inner) * 2),  # delta up to ~8
                    -torch.exp(torch.randn(d_inner, d_state)),  # A < 0
                    torch.randn(batch, seq_len, d_state), torch.randn(batch, seq_len, d_state))
    compare(lambda *a: selective_scan_chunked(*a, chunk_size=chunk), selective_scan_reference, inputs,
            ["u", "delta", "A", "B", "C"])


@pytest.mark.parametrize("batch, seq_len, d, chunk", [
    (2, 37, 5, 8), (2, 37, 5, 3), (1, 64, 4, 16), (2, 1, 3, 8), (1, 100, 4, 2),
], ids=lambda v: str(v))
def test_wkv_chunked_matches_the_sequential_reference(batch, seq_len, d, chunk):
    torch.manual_seed(0)
    inputs = leaves(torch.randn(d) * 2, torch.randn(d), torch.randn(batch, seq_len, d) * 3,
                    torch.randn(batch, seq_len, d))
    compare(lambda td, u, k, v: wkv_chunked(decay_rate(td), u, k, v, chunk),
            lambda td, u, k, v: wkv_reference(-torch.exp(td), u, k, v), inputs, ["time_decay", "u", "k", "v"])


@pytest.mark.parametrize("make", [lambda **kw: Mamba(16, **kw), lambda **kw: RWKVTimeMixer(16, 1, **kw)],
                         ids=["mamba", "rwkv"])
def test_mixer_fast_path_matches_its_reference_mode(make):
    torch.manual_seed(0)
    fast = make()
    reference = make(reference=True)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 29, 16)
    y_fast, y_ref = fast(x), reference(x)
    assert_matches(y_fast, y_ref, "output")
    grad = torch.randn_like(y_ref)
    y_fast.backward(grad)
    y_ref.backward(grad)
    for (name, p_fast), p_ref in zip(fast.named_parameters(), reference.parameters()):
        assert_matches(p_fast.grad, p_ref.grad, f"grad {name}")


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_every_mixer_is_causal_at_every_split(mixer):
    """Changing the inputs after position t changes no output at positions <= t, in every layer of the recipe."""
    torch.manual_seed(0)
    batch, seq_len, d_model = 2, 37, 24
    x = torch.randn(batch, seq_len, d_model)
    for layer_idx in range(2):
        layer = MIXERS[mixer](d_model, layer_idx).eval()
        with torch.no_grad():
            y = layer(x)
            for t in (0, 7, 8, 16, 35):  # chunk boundaries of the fast paths (8, 16) and both ends
                changed = x.clone()
                changed[:, t + 1:] = torch.randn(batch, seq_len - t - 1, d_model)
                y_changed = layer(changed)
                torch.testing.assert_close(y_changed[:, :t + 1], y[:, :t + 1])
                assert not torch.allclose(y_changed[:, t + 1:], y[:, t + 1:])


def test_rwkv_stays_finite_with_large_decays_and_inputs():
    torch.manual_seed(0)
    # decays from e^-8 (slow) to e^40 per step (clamped, instant); bonus +-50; keys ~ +-300 (e^300 overflows fp32)
    time_decay = torch.tensor([-8.0, 0.0, 5.0, 10.0, 40.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([-5.0, 0.0, 5.0, 50.0, -50.0], dtype=torch.float64, requires_grad=True)
    k = (torch.randn(2, 45, 5, dtype=torch.float64) * 100).requires_grad_()
    v = torch.randn(2, 45, 5, dtype=torch.float64, requires_grad=True)
    inputs = (time_decay, u, k, v)
    y_fast = wkv_chunked(decay_rate(time_decay), u, k, v, 8)
    y_ref = wkv_reference(decay_rate(time_decay).double(), u, k, v)
    assert torch.isfinite(y_fast).all() and torch.isfinite(y_ref).all()
    assert_matches(y_fast, y_ref, "output")
    grads = torch.autograd.grad(y_fast.sum(), inputs)
    assert all(torch.isfinite(g).all() for g in grads)
    layer = RWKVTimeMixer(8, 1)
    with torch.no_grad():
        layer.time_decay.copy_(torch.linspace(-10, 20, 8))
    out = layer(torch.randn(1, 40, 8) * 1e3)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_mamba_stays_finite_at_seq_len_4096():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig("mamba", 16, 4096, vocab_size=64))
    with torch.no_grad():
        model.blocks[1].mixer.dt_proj.bias.fill_(3.0)  # delta ~ 3: fast decays next to the slow layer 0
    tokens = torch.randint(0, 64, (1, 4096))
    hidden = model.hidden(tokens)
    hidden.square().mean().backward()
    assert torch.isfinite(hidden).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_baselines_keep_the_papers_setup_and_inits():
    mamba = LanguageModel(ModelConfig("mamba", 128, 32))
    assert all(isinstance(block, MambaBlock) and isinstance(block.norm, torch.nn.RMSNorm) for block in mamba.blocks)
    mixer = mamba.blocks[0].mixer
    assert (mixer.d_inner, mixer.d_state, mixer.dt_rank, mixer.conv1d.kernel_size) == (256, 16, 8, (4,))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)  # survived the model's init: log-uniform [1e-3, 0.1]
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    torch.testing.assert_close(mixer.A_log.exp()[0], torch.arange(1.0, 17.0))
    rwkv = LanguageModel(ModelConfig("rwkv", 64, 32))
    first, second = rwkv.blocks[0].mixer, rwkv.blocks[1].mixer
    assert isinstance(first, RWKVTimeMixer) and isinstance(second, RWKVTimeMixer)
    # RWKV-LM's time init for a 2-layer model, and PyTorch's default init of the projections (|w| <= 1/sqrt(d))
    assert first.time_decay[0].item() == -5.0 and first.time_decay[-1].item() == pytest.approx(3.0)
    torch.testing.assert_close(first.time_first[:3], math.log(0.3) + torch.tensor([0.0, 0.5, -0.5]))
    torch.testing.assert_close(second.time_mix_v, (torch.arange(64.0) / 64).sqrt().view(1, 1, -1) + 0.3)
    assert first.key.weight.abs().max() <= 64 ** -0.5 and first.key.weight.std() > 0.05


@pytest.mark.parametrize("mixer", ["mamba", "rwkv"])
def test_bf16_autocast_keeps_the_scans_in_fp32(mixer):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer, 32, 40, vocab_size=64)).to(device).eval()
    tokens = torch.randint(0, 64, (2, 40), device=device)
    expected = model.hidden(tokens)
    with torch.autocast(device, dtype=torch.bfloat16):
        hidden = model.hidden(tokens)
    hidden.float().sum().backward()
    assert torch.isfinite(hidden).all()
    assert_matches(hidden.float(), expected, "bf16 vs fp32 hidden", tol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("path", ["chunked", "dispatch"])
def test_fast_paths_match_the_references_on_the_gpu(path):
    """The chunked PyTorch paths, and what the mixers call on CUDA (the Triton kernels), on the GPU."""
    torch.manual_seed(0)
    scan, wkv = (selective_scan_chunked, wkv_chunked) if path == "chunked" else (selective_scan_fn, wkv_fn)
    b, n, d, s = 2, 300, 8, 16
    inputs = tuple(t.cuda().requires_grad_() for t in (
        torch.randn(b, n, d), torch.nn.functional.softplus(torch.randn(b, n, d)), -torch.exp(torch.randn(d, s)),
        torch.randn(b, n, s), torch.randn(b, n, s)))
    compare(scan, selective_scan_reference, inputs, ["u", "delta", "A", "B", "C"])
    inputs = tuple(t.cuda().requires_grad_() for t in (
        torch.randn(d), torch.randn(d), torch.randn(b, n, d) * 3, torch.randn(b, n, d)))
    compare(lambda td, u, k, v: wkv(decay_rate(td), u, k, v),
            lambda td, u, k, v: wkv_reference(decay_rate(td), u, k, v), inputs, ["time_decay", "u", "k", "v"])
