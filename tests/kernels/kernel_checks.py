"""The error bound every kernel test uses, and what the polynomial attention tests share (imported beside it)."""

import torch

from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS

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
