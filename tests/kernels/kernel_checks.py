"""The error bound every kernel test uses (imported by the tests beside it)."""

import torch


def assert_rel_close(name, actual, ref, rel_tol, abs_tol):
    """actual (any device/dtype) vs an fp64 CPU reference: relative Frobenius error, or rms where ref is ~0."""
    actual = actual.detach().cpu().double()
    assert actual.shape == ref.shape, f"{name}: shape {actual.shape} != {ref.shape}"
    assert torch.isfinite(actual).all(), f"{name}: {(~torch.isfinite(actual)).sum()} non-finite (unwritten?) elements"
    diff = (actual - ref.detach()).norm().item()
    rel = diff / max(ref.norm().item(), 1e-30)
    rms = diff / actual.numel() ** 0.5
    assert rel <= rel_tol or rms <= abs_tol, f"{name}: relative error {rel:.2e} > {rel_tol:.0e}, rms error {rms:.2e}"
