"""The fused chunked Triton kernel vs the naive reference (fp64) and the quadform path: outputs and all gradients.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) with 16-position chunks, so the lengths below
cross several chunks and end inside one; the interpreter's bf16 bugs are worked around as in parallel_kernels.py
(see test_parallel.py). Every buffer the wrappers allocate is NaN-filled first (POISON).
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DEVICE, POLY_ABS_TOL as ABS_TOL, POLY_REL_TOL as REL_TOL, SCORES

from rebased_bench.kernels import launch
from rebased_bench.kernels.polynomial import fused_chunk
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS
from rebased_bench.kernels.polynomial.quadform import quadform_polynomial


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def check(score, B, T, H, DV, dtype_qk, dtype_v, seed=0):
    inputs = kernel_checks.poly_inputs(B, T, H, 16, DV, dtype_qk, dtype_v, seed)
    kernel_checks.check_poly_op(fused_chunk.fused_chunk_polynomial, SCORES[score], *inputs)


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
    q, k, v, do = kernel_checks.poly_inputs(2, 45, 3, 16, 10, "fp32", "fp32", seed=5)
    out = kernel_checks.poly_grads(fused_chunk.fused_chunk_polynomial, q, k, v, do, BASED_COEFFS)
    ref = kernel_checks.poly_grads(lambda *x: quadform_polynomial(*x, chunk_size=8), *(x.cpu() for x in (q, k, v, do)),
                                   BASED_COEFFS)
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} vs quadform", a, r.double(), REL_TOL["fp32"], ABS_TOL["fp32"])


def test_strided_inputs():
    """q, k, v as slices of one fused projection: read through strides, no copies."""
    kernel_checks.check_poly_op(fused_chunk.fused_chunk_polynomial, REBASED_COEFFS, *kernel_checks.strided_qkv())


def test_compiles_as_opaque_ops():
    kernel_checks.check_compiles_as_opaque_ops(fused_chunk.fused_chunk_polynomial, BASED_COEFFS)


@pytest.mark.parametrize("d,dv", [(32, 5), (16, 64)])
def test_unsupported_shapes_are_refused(d, dv):
    q = torch.zeros(1, 4, 1, d, device=DEVICE)
    with pytest.raises(ValueError, match="fused_chunk needs"):
        fused_chunk.fused_chunk_polynomial(q, q, torch.zeros(1, 4, 1, dv, device=DEVICE), REBASED_COEFFS)
