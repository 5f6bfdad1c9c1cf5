"""The fused chunked Triton kernel vs the naive reference (fp64) and the quadform path: outputs and all gradients.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) with 16-position chunks, so the lengths below
cross several chunks and end inside one; the interpreter's bf16 bugs are worked around as in parallel_kernels.py
(see test_parallel.py). Every buffer the wrappers allocate is NaN-filled first (POISON).
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DTYPES, POLY_ABS_TOL as ABS_TOL, POLY_REL_TOL as REL_TOL, SCORES

from rebased_bench.kernels import launch
from rebased_bench.kernels.polynomial import fused_chunk
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial
from rebased_bench.kernels.polynomial.quadform import quadform_polynomial

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def make_inputs(B, T, H, DV, dtype_qk, dtype_v, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, 16, generator=g).to(DEVICE, DTYPES[dtype_qk]) for _ in range(2))
    v, do = (torch.randn(B, T, H, DV, generator=g).to(DEVICE, DTYPES[dtype_v]) for _ in range(2))
    return q, k, v, do


def grads(fn, q, k, v, do, coeffs):
    """(o, dq, dk, dv) of fn at fresh leaves of q, k, v."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    o = fn(*leaves, coeffs)
    o.backward(do)
    return [o] + [x.grad for x in leaves]


def check(score, B, T, H, DV, dtype_qk, dtype_v, seed=0):
    q, k, v, do = make_inputs(B, T, H, DV, dtype_qk, dtype_v, seed)
    out = grads(fused_chunk.fused_chunk_polynomial, q, k, v, do, SCORES[score])
    ref = grads(naive_parallel_polynomial, *(x.cpu().double() for x in (q, k, v, do)), SCORES[score])
    assert out[0].dtype == v.dtype and [x.dtype for x in out[1:]] == [q.dtype, k.dtype, v.dtype]
    tol = "bf16" if "bf16" in (dtype_qk, dtype_v) else "fp16" if "fp16" in (dtype_qk, dtype_v) else "fp32"
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} ({tol})", a, r, REL_TOL[tol], ABS_TOL[tol])


# the MQAR value heads (5, 10); 37 ends inside the third chunk, 70 crosses five
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("T,DV", [(37, 5), (70, 10)])
def test_outputs_and_gradients_match_the_reference(score, dtype, T, DV):
    check(score, 2, T, 3, DV, dtype, dtype, seed=T + DV)


@pytest.mark.parametrize("dtype_qk,dtype_v", [("fp16", "fp16"), ("fp32", "bf16"), ("fp32", "fp16")])
def test_mixed_dtypes_and_wide_values(dtype_qk, dtype_v):
    """fp16, and the autocast mix (fp32 q, k from a LayerNorm; 16-bit values); dv = 63 fills a 64-wide block."""
    check("based", 1, 33, 2, 63 if dtype_qk == "fp16" else 16, dtype_qk, dtype_v)


@pytest.mark.parametrize("T", [1, 16])
def test_one_chunk(T):
    """A single key (the score cancels: dq = dk = 0) and exactly one full chunk (no state is read)."""
    check("rebased", 2, T, 2, 5, "fp32", "fp32")


def test_matches_quadform():
    """The same chunked math as quadform_polynomial (fp32), with another chunk length there."""
    q, k, v, do = make_inputs(2, 45, 3, 10, "fp32", "fp32", seed=5)
    out = grads(fused_chunk.fused_chunk_polynomial, q, k, v, do, BASED_COEFFS)
    ref = grads(lambda *x: quadform_polynomial(*x, chunk_size=8), *(x.cpu() for x in (q, k, v, do)), BASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} vs quadform", a, r.double(), REL_TOL["fp32"], ABS_TOL["fp32"])


def test_strided_inputs():
    """q, k, v as slices of one fused projection (batch, T, 3, H, 16): read through strides, no copies."""
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 21, 3, 2, 16, generator=g).to(DEVICE, torch.float16)
    q, k, v = qkv.unbind(2)
    do = torch.randn(2, 21, 2, 16, generator=g).to(DEVICE, torch.float16)
    assert not q.is_contiguous()
    out = grads(fused_chunk.fused_chunk_polynomial, q, k, v, do, REBASED_COEFFS)
    ref = grads(naive_parallel_polynomial, *(x.cpu().double() for x in (q, k, v, do)), REBASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} (fp16)", a, r, REL_TOL["fp16"], ABS_TOL["fp16"])


def test_compiles_as_opaque_ops():
    """torch.compile (fullgraph) traces the custom ops through their fake kernels: same outputs and gradients."""
    q, k, v, do = make_inputs(1, 20, 2, 5, "fp32", "fp32", seed=7)

    def loss(q, k, v, coeffs):
        return fused_chunk.fused_chunk_polynomial(q * 1.5, k, v, coeffs)

    eager = grads(loss, q, k, v, do, BASED_COEFFS)
    compiled = grads(torch.compile(loss, backend="aot_eager", fullgraph=True), q, k, v, do, BASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), compiled, eager):
        assert torch.equal(a, r), name


@pytest.mark.parametrize("d,dv", [(32, 5), (16, 64)])
def test_unsupported_shapes_are_refused(d, dv):
    q = torch.zeros(1, 4, 1, d, device=DEVICE)
    with pytest.raises(ValueError, match="fused_chunk needs"):
        fused_chunk.fused_chunk_polynomial(q, q, torch.zeros(1, 4, 1, dv, device=DEVICE), REBASED_COEFFS)
