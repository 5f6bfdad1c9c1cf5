"""The chunked quadratic-form Triton kernels vs the naive reference (fp64): outputs and all gradients.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) with chunks of 16 and state slices of 32 columns, so
the lengths below cross several chunks and end inside one, and d * BV crosses several slices. Every buffer the
wrappers allocate is NaN-filled first (POISON), so an element or state a kernel never writes fails.
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DTYPES, POLY_ABS_TOL as ABS_TOL, POLY_REL_TOL as REL_TOL, SCORES

from rebased_bench.kernels import launch
from rebased_bench.kernels.polynomial import quadform_chunk
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def make_inputs(B, T, H, D, DV, dtype_qk, dtype_v, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, D, generator=g).to(DEVICE, DTYPES[dtype_qk]) for _ in range(2))
    v, do = (torch.randn(B, T, H, DV, generator=g).to(DEVICE, DTYPES[dtype_v]) for _ in range(2))
    return q, k, v, do


def grads(fn, q, k, v, do, coeffs):
    """(o, dq, dk, dv) of fn at fresh leaves of q, k, v."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    o = fn(*leaves, coeffs)
    o.backward(do)
    return [o] + [x.grad for x in leaves]


def check(score, B, T, H, D, DV, dtype_qk, dtype_v, seed=0):
    q, k, v, do = make_inputs(B, T, H, D, DV, dtype_qk, dtype_v, seed)
    out = grads(quadform_chunk.quadform_chunk_polynomial, q, k, v, do, SCORES[score])
    ref = grads(naive_parallel_polynomial, *(x.cpu().double() for x in (q, k, v, do)), SCORES[score])
    assert out[0].dtype == v.dtype and [x.dtype for x in out[1:]] == [q.dtype, k.dtype, v.dtype]
    tol = "bf16" if "bf16" in (dtype_qk, dtype_v) else "fp16" if "fp16" in (dtype_qk, dtype_v) else "fp32"
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} ({tol})", a, r, REL_TOL[tol], ABS_TOL[tol])


# the MQAR value heads (5, 10, 21: one, two and four state slices here); 37 ends inside the third chunk
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("T,DV", [(37, 5), (70, 10), (33, 21)])
def test_outputs_and_gradients_match_the_reference(score, dtype, T, DV):
    check(score, 2, T, 3, 16, DV, dtype, dtype, seed=T + DV)


@pytest.mark.parametrize("dtype_qk,dtype_v", [("fp16", "fp16"), ("fp32", "bf16"), ("fp32", "fp16")])
def test_mixed_dtypes(dtype_qk, dtype_v):
    """fp16, and the autocast mix (fp32 q, k from a LayerNorm; 16-bit values)."""
    check("based", 1, 33, 2, 16, 5, dtype_qk, dtype_v, seed=3)


@pytest.mark.parametrize("D,DV", [(8, 3), (32, 7)])
def test_other_feature_dims(D, DV):
    """d padded to 16 (8), and d = 32 (twice the state rows)."""
    check("rebased", 1, 40, 2, D, DV, "fp32", "fp32", seed=D)


@pytest.mark.parametrize("T", [1, 16])
def test_one_chunk(T):
    """A single key (the score cancels: dq = dk = 0) and exactly one full chunk (every state read is zero)."""
    check("rebased", 2, T, 2, 16, 5, "fp32", "fp32")


def test_strided_inputs():
    """q, k, v as slices of one fused projection (batch, T, 3, H, 16): read through strides, no copies."""
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 21, 3, 2, 16, generator=g).to(DEVICE, torch.float16)
    q, k, v = qkv.unbind(2)
    do = torch.randn(2, 21, 2, 16, generator=g).to(DEVICE, torch.float16)
    assert not q.is_contiguous()
    out = grads(quadform_chunk.quadform_chunk_polynomial, q, k, v, do, REBASED_COEFFS)
    ref = grads(naive_parallel_polynomial, *(x.cpu().double() for x in (q, k, v, do)), REBASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} (fp16)", a, r, REL_TOL["fp16"], ABS_TOL["fp16"])


def test_compiles_as_opaque_ops():
    """torch.compile (fullgraph) traces the custom ops through their fake kernels: same outputs and gradients."""
    q, k, v, do = make_inputs(1, 20, 2, 16, 5, "fp32", "fp32", seed=7)

    def loss(q, k, v, coeffs):
        return quadform_chunk.quadform_chunk_polynomial(q * 1.5, k, v, coeffs)

    eager = grads(loss, q, k, v, do, BASED_COEFFS)
    compiled = grads(torch.compile(loss, backend="aot_eager", fullgraph=True), q, k, v, do, BASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), compiled, eager):
        assert torch.equal(a, r), name


@pytest.mark.parametrize("d,dv", [(64, 5), (16, 64)])
def test_unsupported_shapes_are_refused(d, dv):
    q = torch.zeros(1, 4, 1, d, device=DEVICE)
    with pytest.raises(ValueError, match="quadform_chunk needs"):
        quadform_chunk.quadform_chunk_polynomial(q, q, torch.zeros(1, 4, 1, dv, device=DEVICE), REBASED_COEFFS)
