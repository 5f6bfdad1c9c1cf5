"""The chunked quadratic-form Triton kernels vs the naive reference (fp64): outputs and all gradients.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) with chunks of 16 and state slices of 32 columns, so
the lengths below cross several chunks and end inside one, and d * BV crosses several slices. Every buffer the
wrappers allocate is NaN-filled first (POISON), so an element or state a kernel never writes fails.
"""

import pytest
import torch

import kernel_checks
from kernel_checks import DEVICE, SCORES

from rebased_bench.kernels import launch
from rebased_bench.kernels.polynomial import quadform_chunk
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def check(score, B, T, H, D, DV, dtype_qk, dtype_v, seed=0):
    inputs = kernel_checks.poly_inputs(B, T, H, D, DV, dtype_qk, dtype_v, seed)
    kernel_checks.check_poly_op(quadform_chunk.quadform_chunk_polynomial, SCORES[score], *inputs)


# the MQAR value heads (5, 10, 21: one, two and four state slices here); 37 ends inside the third chunk
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("T,DV", [(37, 5), (70, 10), (33, 21)])
def test_outputs_and_gradients_match_the_reference(score, dtype, T, DV):
    check(score, 2, T, 3, 16, DV, dtype, dtype, seed=T + DV)


# the trainer's dtypes under autocast (ReBased's q, k fp32 from its LayerNorm, Based's bf16; v bf16) over many
# chunks: on the GPU the MQAR shape (seq_len 1024: 16 chunks of 64, 12 heads), here 7 chunks of 16
@pytest.mark.parametrize("score,dtype_qk", [("rebased", "fp32"), ("based", "bf16")])
def test_many_chunks_in_the_trainers_dtypes(score, dtype_qk):
    B, T, H = (2, 1024, 12) if DEVICE == "cuda" else (1, 100, 2)
    check(score, B, T, H, 16, 5, dtype_qk, "bf16", seed=7)


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
    """q, k, v as slices of one fused projection: read through strides, no copies."""
    kernel_checks.check_poly_op(quadform_chunk.quadform_chunk_polynomial, REBASED_COEFFS, *kernel_checks.strided_qkv())


def test_compiles_as_opaque_ops():
    kernel_checks.check_compiles_as_opaque_ops(quadform_chunk.quadform_chunk_polynomial, BASED_COEFFS)


@pytest.mark.parametrize("d,dv", [(64, 5), (16, 64)])
def test_unsupported_shapes_are_refused(d, dv):
    q = torch.zeros(1, 4, 1, d, device=DEVICE)
    with pytest.raises(ValueError, match="quadform_chunk needs"):
        quadform_chunk.quadform_chunk_polynomial(q, q, torch.zeros(1, 4, 1, dv, device=DEVICE), REBASED_COEFFS)
