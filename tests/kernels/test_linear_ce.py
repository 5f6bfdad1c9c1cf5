"""The fused linear cross-entropy op vs the naive reference (fp64): loss and both gradients.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) with tiles of 16 to 64 rows or vocab entries, so
the shapes below cross several tiles and end inside one; there tl.dot on fp32 is exact, so fp32 is held to 1e-4
(on a GPU fp32 products are tf32). Every buffer the launchers allocate is NaN-filled first (POISON).
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DTYPES

from rebased_bench import kernels
from rebased_bench.kernels import launch
from rebased_bench.kernels.linear_ce import linear_ce
from rebased_bench.kernels.linear_ce.naive import naive_linear_cross_entropy

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# relative error bound by operand dtype: the loss sums in fp32; the gradients' dots take p - onehot in the operand
# dtype (bf16 rounds it to 8 bits); an rms bound where the reference is ~0
REL_TOL = {"fp32": 3e-3 if CUDA else 1e-4, "fp16": 3e-3, "bf16": 1e-2}
ABS_TOL = 1e-7


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def make_inputs(N, V, D, dtype, seed, scale=1.0):
    """hidden (N, D), weight (V, D) in dtype, targets (N,) and an upstream gradient for the loss, on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    hidden = (scale * torch.randn(N, D, generator=g)).to(DEVICE, DTYPES[dtype])
    weight = (torch.randn(V, D, generator=g) / D ** 0.25).to(DEVICE, DTYPES[dtype])
    targets = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    dloss = 0.5 + torch.rand((), generator=g)
    return hidden, weight, targets, dloss.to(DEVICE)


def grads(fn, hidden, weight, targets, dloss):
    """(loss, dhidden, dweight) of fn at fresh leaves of hidden and weight."""
    leaves = [x.detach().clone().requires_grad_() for x in (hidden, weight)]
    loss = fn(*leaves, targets)
    (loss * dloss).backward()
    return [loss] + [x.grad for x in leaves]


def reference(hidden, weight, targets, dloss):
    return grads(naive_linear_cross_entropy, *(x.cpu().double() for x in (hidden, weight)), targets.cpu(),
                 dloss.cpu().double())


def check(out, ref, tol, dtypes):
    assert out[0].dtype == torch.float32 and out[0].shape == ()
    assert [x.dtype for x in out[1:]] == dtypes
    for name, a, r in zip(("loss", "dhidden", "dweight"), out, ref):
        kernel_checks.assert_rel_close(f"{name} ({tol})", a, r, REL_TOL[tol], ABS_TOL)


# N ends inside a row tile of 16 and of 32; V = 300 and 129 end inside the vocab tiles, 64 fills them
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("N,V,D", [(37, 300, 40), (50, 129, 16), (21, 64, 64)])
def test_loss_and_gradients_match_the_reference(dtype, N, V, D):
    inputs = make_inputs(N, V, D, dtype, seed=N + V + D)
    out = grads(linear_ce.linear_cross_entropy, *inputs)
    check(out, reference(*inputs), dtype, [DTYPES[dtype]] * 2)


def test_fp16_and_large_logits():
    """fp16 operands, logits ~ +-100: the online max keeps exp in range (exp(100) overflows fp32 sums without it)."""
    inputs = make_inputs(33, 200, 32, "fp16", seed=3, scale=15.0)
    out = grads(linear_ce.linear_cross_entropy, *inputs)
    check(out, reference(*inputs), "fp16", [torch.float16] * 2)


def test_all_logits_far_below_zero():
    """Every logit below -90 (lse too): padded vocab columns must not add exp(0 - lse) = inf to the gradients."""
    hidden, weight, targets, dloss = make_inputs(20, 70, 32, "fp32", seed=7)
    u = weight.mean(0)
    weight = u + 0.1 * (weight - u)
    hidden = -200 * u / u.dot(u) + 0.01 * hidden
    out = grads(linear_ce.linear_cross_entropy, hidden, weight, targets, dloss)
    assert out[0] > 0
    check(out, reference(hidden, weight, targets, dloss), "fp32", [torch.float32] * 2)


def test_strided_hidden():
    """hidden as a column slice of a wider tensor: its row stride is passed through, nothing copied."""
    hidden, weight, targets, dloss = make_inputs(20, 70, 24, "fp32", seed=4)
    hidden = torch.cat([hidden, torch.ones_like(hidden)], 1)[:, :24]
    assert not hidden.is_contiguous()
    out = grads(linear_ce.linear_cross_entropy, hidden, weight, targets, dloss)
    check(out, reference(hidden, weight, targets, dloss), "fp32", [torch.float32] * 2)


def test_autocast_rounds_the_operands_only():
    """Under bf16 autocast the operands are rounded as `h @ W.T` would round them, the sums stay fp32, and the
    gradients come back in the leaves' dtype (fp32). The dispatch point's CPU path (the naive reference) agrees."""
    hidden, weight, targets, dloss = make_inputs(29, 150, 40, "fp32", seed=5)
    rounded = [x.to(torch.bfloat16) for x in (hidden, weight)]
    for fn in (linear_ce.linear_cross_entropy, kernels.linear_cross_entropy):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = grads(fn, hidden, weight, targets, dloss)
        check(out, reference(*rounded, targets, dloss), "bf16", [torch.float32] * 2)
        kernel_checks.assert_rel_close("autocast loss (fp32 sums)", out[0], reference(*rounded, targets, dloss)[0],
                                       1e-6, ABS_TOL)


def test_compiles_as_one_opaque_op():
    """torch.compile (fullgraph) traces the custom ops through their fake kernels: the same loss and gradients."""
    inputs = make_inputs(24, 90, 16, "fp32", seed=6)

    def loss(hidden, weight, targets):
        return linear_ce.linear_cross_entropy(hidden * 1.5, weight, targets)

    eager = grads(loss, *inputs)
    compiled = grads(torch.compile(loss, backend="aot_eager", fullgraph=True), *inputs)
    for name, a, r in zip(("loss", "dhidden", "dweight"), compiled, eager):
        assert torch.equal(a, r), name


@pytest.mark.parametrize("hidden_shape,weight_shape,n_targets", [
    ((4, 2, 16), (10, 16), 4),  # hidden not 2-d
    ((4, 16), (10, 32), 4),  # feature dims differ
    ((4, 16), (10, 16), 5),  # one target per row
    ((4, 300), (10, 300), 4),  # D > 256
    ((0, 16), (10, 16), 0),  # no rows
])
def test_bad_shapes_are_refused(hidden_shape, weight_shape, n_targets):
    hidden, weight = torch.zeros(hidden_shape, device=DEVICE), torch.zeros(weight_shape, device=DEVICE)
    with pytest.raises(ValueError, match="linear_cross_entropy needs"):
        linear_ce.linear_cross_entropy(hidden, weight, torch.zeros(n_targets, dtype=torch.long, device=DEVICE))
