"""Triton parallel kernels vs the naive PyTorch reference: outputs and all three gradients.

On CPU the real kernels run through TRITON_INTERPRET=1 (tests/kernels/conftest.py) with small tiles. Triton's
interpreter (3.9) mishandles bf16 in two places, and parallel_kernels.py works around both under its INTERPRET
flag, so bf16 is tested on CPU too: tl.dot multiplies the raw uint16 storage of bf16 operands (garbage; operands
are upcast to fp32 first, which is exact) and fp32 -> bf16 casts truncate instead of rounding to nearest even
(done by hand). fp32 operands of the value products are rounded to tf32 on both (see _like_dot).
Every buffer the wrappers allocate is NaN-filled first (POISON), so an element a kernel never writes fails.
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DTYPES, POLY_ABS_TOL as ABS_TOL, POLY_REL_TOL as REL_TOL, SCORES

from rebased_bench.kernels import launch
from rebased_bench.kernels.polynomial import parallel
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def make_inputs(B, T, H, D, DV, dtype_qk, dtype_v, qk_std=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, T, H, D, generator=g) * qk_std).to(DEVICE, dtype_qk)
    k = (torch.randn(B, T, H, D, generator=g) * qk_std).to(DEVICE, dtype_qk)
    v = torch.randn(B, T, H, DV, generator=g).to(DEVICE, dtype_v)
    do = torch.randn(B, T, H, DV, generator=g).to(DEVICE, dtype_v)
    return q, k, v, do


def kernel_and_reference(score, q, k, v, do):
    """(o, dq, dk, dv) from the kernel and from the naive reference in fp64 on the same (rounded) inputs."""
    qk = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    o = parallel.parallel_polynomial(*qk, SCORES[score])
    o.backward(do)
    ref = [x.detach().cpu().double().requires_grad_() for x in (q, k, v)]
    o_ref = naive_parallel_polynomial(*ref, SCORES[score])
    o_ref.backward(do.cpu().double())
    return [o] + [x.grad for x in qk], [o_ref] + [x.grad for x in ref]


def assert_rel_close(name, actual, ref, dtype_name):
    kernel_checks.assert_rel_close(f"{name} ({dtype_name})", actual, ref, REL_TOL[dtype_name], ABS_TOL[dtype_name])


def check(score, B, T, H, D, DV, dtype_qk, dtype_v, **kw):
    q, k, v, do = make_inputs(B, T, H, D, DV, DTYPES[dtype_qk], DTYPES[dtype_v], **kw)
    out, ref = kernel_and_reference(score, q, k, v, do)
    assert out[0].dtype == v.dtype and [g.dtype for g in out[1:]] == [q.dtype, k.dtype, v.dtype]
    tol_name = "bf16" if "bf16" in (dtype_qk, dtype_v) else "fp16" if "fp16" in (dtype_qk, dtype_v) else "fp32"
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        assert_rel_close(name, a, r, tol_name)


# every T x d x dv: odd lengths on purpose (1, 17, 63 and 130 cross the tiles unevenly), the MQAR dv quirk (5)
SHAPES = [(2, T, 2, D, DV) for T in (1, 17, 63, 130) for D in (5, 16, 32) for DV in (5, 16, 64)]


@pytest.mark.parametrize("B,T,H,D,DV", SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}-DV{dv}-bf16" for b, t, h, d, dv in SHAPES])
def test_rebased_shapes_bf16(B, T, H, D, DV):
    check("rebased", B, T, H, D, DV, "bf16", "bf16")


DTYPE_CASES = [("fp32", "fp32"), ("fp16", "fp16"), ("bf16", "bf16"), ("fp32", "bf16"), ("fp32", "fp16")]


@pytest.mark.parametrize("score", ["rebased", "based"])
@pytest.mark.parametrize("dtype_qk,dtype_v", DTYPE_CASES, ids=[f"qk_{a}-v_{b}" for a, b in DTYPE_CASES])
def test_dtypes(score, dtype_qk, dtype_v):
    """Every dtype and the autocast mix (fp32 LayerNorm output for q, k; bf16 / fp16 values)."""
    check(score, 2, 63, 2, 16, 21, dtype_qk, dtype_v)


@pytest.mark.parametrize("dtype_qk,dtype_v", [("fp32", "fp32"), ("fp16", "fp16"), ("fp32", "bf16")],
                         ids=["qk_fp32-v_fp32", "qk_fp16-v_fp16", "qk_fp32-v_bf16"])
def test_z_prefix_dtypes(dtype_qk, dtype_v, monkeypatch):
    """ReBased's denominator from prefix sums of k k^T (Z_PREFIX) before the diagonal tile, at a length that
    crosses 3 (GPU) or 5 (interpreter) query tiles: the threshold is lowered so the reference stays small."""
    monkeypatch.setitem(parallel.TILES, "z_prefix_min_t", 64)
    check("rebased", 1, 300 if DEVICE == "cuda" else 130, 2, 16, 24, dtype_qk, dtype_v)


BASED_SHAPES = [(1, 1, 1, 16, 16), (2, 17, 2, 5, 10), (1, 130, 2, 32, 42), (2, 63, 1, 16, 64)]


@pytest.mark.parametrize(
    "B,T,H,D,DV", BASED_SHAPES, ids=[f"B{b}-T{t}-H{h}-D{d}-DV{dv}-bf16" for b, t, h, d, dv in BASED_SHAPES])
def test_based_shapes_bf16(B, T, H, D, DV):
    check("based", B, T, H, D, DV, "bf16", "bf16")


def test_wide_values_and_head_dim_128():
    """dv wider than the value block splits over programs (dq and dk add partial sums); d = 128 is the limit."""
    check("rebased", 1, 40, 1, 128, 192 if DEVICE == "cuda" else 72, "fp16", "fp16")


def test_strided_inputs():
    """q, k, v as slices of one fused projection (batch, T, 3, H, d): read through strides, no copies."""
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 33, 3, 2, 16, generator=g).to(DEVICE, torch.float16)
    q, k, v = qkv.unbind(2)
    do = torch.randn(2, 33, 2, 16, generator=g).to(DEVICE, torch.float16)
    assert not q.is_contiguous()
    out, ref = kernel_and_reference("based", q, k, v, do)
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        assert_rel_close(name, a, r, "fp16")


def test_large_norm_bf16_is_finite():
    """|q.k| ~ 100 (scores ~ 1e4, row sums ~ 1e6): bf16 keeps fp32's range, the denominator stays fp32."""
    B, T, H, D, DV = 1, 130, 2, 16, 16
    q, k, v, do = make_inputs(B, T, H, D, DV, torch.bfloat16, torch.bfloat16, qk_std=2.5, seed=3)
    assert (q.float() * k.float()).sum(-1).abs().max() > 50
    for score in SCORES:
        out, ref = kernel_and_reference(score, q, k, v, do)
        for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
            assert_rel_close(f"{score} {name}", a, r, "bf16")


def test_poison_detects_unwritten_output():
    """The check above fails when a kernel skips outputs: launch the forward over all but its last query tile."""
    q, k, v, _ = make_inputs(1, 70, 1, 16, 16, torch.float16, torch.float16)
    o, z = parallel.parallel_poly_fwd(q, k, v, REBASED_COEFFS)
    assert torch.isfinite(o).all() and torch.isfinite(z).all()
    tiles = parallel.TILES["fwd"]
    short = launch.empty(o.shape, dtype=o.dtype, device=o.device)
    zs = launch.empty(z.shape, dtype=z.dtype, device=z.device)
    square, a0, a1, a2, BK, BV = parallel._prepare(q, k, v, REBASED_COEFFS, None)
    n_tiles = -(-70 // tiles.BT)
    grid = (1, 1, n_tiles - 1)  # tiles are numbered from the grid's size down, so this skips the last tile
    parallel.parallel_poly_fwd_kernel[grid](
        q, k, v, short, zs, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *short.stride()[:3],
        a0, a1, a2, 1e-12, 70, 1, K=16, V=16, BT=tiles.BT, BS=tiles.BS, BK=BK, BV=BV, SQUARE=square,
        Z_MODE=parallel.Z_MODE, INTERPRET=parallel.INTERPRET, **tiles.launch(),
    )
    with pytest.raises(AssertionError, match="non-finite"):
        assert_rel_close("o", short, o.cpu().double(), "fp16")


@pytest.mark.skipif(DEVICE != "cuda", reason="dispatch sends CPU tensors to the naive path")
def test_dispatch_uses_kernel_on_cuda():
    from rebased_bench.kernels import parallel_rebased, polynomial_attention

    q, k, v, _ = make_inputs(1, 64, 2, 16, 64, torch.bfloat16, torch.bfloat16)
    torch.testing.assert_close(polynomial_attention(q, k, v, "rebased"), parallel_rebased(q, k, v), rtol=0, atol=0)
