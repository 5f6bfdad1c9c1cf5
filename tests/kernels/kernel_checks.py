"""The error bound every kernel test uses, and what the polynomial attention tests share (imported beside it)."""

import torch

from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SCORES = {"rebased": REBASED_COEFFS, "based": BASED_COEFFS}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Polynomial attention kernels: relative error bound (on ||kernel - ref|| / ||ref||) by the least precise input
# dtype (tf32 value and state products on the GPU), and an rms bound where the reference is ~0 (at T = 1 the score
# cancels out of o, so dq = dk = 0).
POLY_REL_TOL = {"fp32": 3e-3, "fp16": 3e-3, "bf16": 1.5e-2}
POLY_ABS_TOL = {"fp32": 1e-5, "fp16": 1e-3, "bf16": 1e-2}


def assert_rel_close(name, actual, ref, rel_tol, abs_tol):
    """actual (any device/dtype) vs an fp64 CPU reference: relative Frobenius error, or rms where ref is ~0."""
    actual = actual.detach().cpu().double()
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    assert torch.isfinite(actual).all(), f"{name}: {(~torch.isfinite(actual)).sum()} non-finite (unwritten?) elements"
    diff = (actual - ref.detach()).norm().item()
    rel = diff / max(ref.norm().item(), 1e-30)
    rms = diff / actual.numel() ** 0.5
    assert rel <= rel_tol or rms <= abs_tol, f"{name}: relative error {rel:.2e} > {rel_tol:.0e}, rms error {rms:.2e}"


def poly_inputs(B, T, H, D, DV, dtype_qk, dtype_v, seed):
    """Fresh q, k (B, T, H, D) and v, do (B, T, H, DV) on the test device; dtypes by name ("fp32", "bf16", ...)."""
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, D, generator=g).to(DEVICE, DTYPES[dtype_qk]) for _ in range(2))
    v, do = (torch.randn(B, T, H, DV, generator=g).to(DEVICE, DTYPES[dtype_v]) for _ in range(2))
    return q, k, v, do


def poly_grads(fn, q, k, v, do, coeffs):
    """(o, dq, dk, dv) of fn(q, k, v, coeffs) at fresh leaves of q, k, v."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    o = fn(*leaves, coeffs)
    o.backward(do)
    return [o] + [x.grad for x in leaves]


def check_poly_op(fn, coeffs, q, k, v, do):
    """fn's output and gradients against the naive reference in fp64, at the bound of the least precise dtype."""
    out = poly_grads(fn, q, k, v, do, coeffs)
    ref = poly_grads(naive_parallel_polynomial, *(x.cpu().double() for x in (q, k, v, do)), coeffs)
    assert out[0].dtype == v.dtype and [x.dtype for x in out[1:]] == [q.dtype, k.dtype, v.dtype]
    names = {dtype: name for name, dtype in DTYPES.items()}
    dtypes = {names[x.dtype] for x in (q, v)}
    tol = "bf16" if "bf16" in dtypes else "fp16" if "fp16" in dtypes else "fp32"
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        assert_rel_close(f"{name} ({tol})", a, r, POLY_REL_TOL[tol], POLY_ABS_TOL[tol])


def strided_qkv(T=21, H=2, seed=1):
    """q, k, v as slices of one fused fp16 projection (batch 2, T, 3, H, 16), not contiguous, and do (2, T, H, 16)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(2, T, 3, H, 16, generator=g).to(DEVICE, torch.float16).unbind(2)
    assert not q.is_contiguous()
    return q, k, v, torch.randn(2, T, H, 16, generator=g).to(DEVICE, torch.float16)


def check_compiles_as_opaque_ops(fn, coeffs):
    """torch.compile (fullgraph) traces fn's custom ops through their fake kernels: the same outputs and gradients."""
    q, k, v, do = poly_inputs(1, 20, 2, 16, 5, "fp32", "fp32", seed=7)

    def loss(q, k, v, coeffs):
        return fn(q * 1.5, k, v, coeffs)

    eager = poly_grads(loss, q, k, v, do, coeffs)
    compiled = poly_grads(torch.compile(loss, backend="aot_eager", fullgraph=True), q, k, v, do, coeffs)
    for name, a, r in zip(("o", "dq", "dk", "dv"), compiled, eager):
        assert torch.equal(a, r), name
