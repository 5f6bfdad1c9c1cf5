"""The chunked quadratic-form path vs the naive reference: outputs and all three gradients, on fresh inputs."""

import pytest
import torch

import kernel_checks

from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial
from rebased_bench.kernels.polynomial.quadform import quadform_polynomial

SCORES = {"rebased": REBASED_COEFFS, "based": BASED_COEFFS}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
REL_TOL = {"fp32": 1e-4, "bf16": 1.5e-2}  # fp32 sums in another order; bf16: the output's rounding
ABS_TOL = {"fp32": 1e-6, "bf16": 1e-2}


def grads(fn, q, k, v, do, **kw):
    """(o, dq, dk, dv) of fn at fresh leaves of q, k, v."""
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    o = fn(*leaves, **kw)
    o.backward(do)
    return [o] + [x.grad for x in leaves]


# odd lengths cross the chunks unevenly (chunk_size 8 and 16 here), d and dv include the MQAR value heads (5, 10)
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("T, D, DV, chunk_size", [(1, 16, 5, 8), (17, 16, 5, 8), (63, 5, 10, 16), (130, 16, 16, 16),
                                                  (40, 32, 5, 64)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_and_gradients_match_the_reference(score, T, D, DV, chunk_size, dtype):
    g = torch.Generator().manual_seed(T * 1000 + D * 10 + DV)
    q, k, v, do = (torch.randn(2, T, 3, n, generator=g).to(DTYPES[dtype]) for n in (D, D, DV, DV))
    out = grads(quadform_polynomial, q, k, v, do, coeffs=SCORES[score], chunk_size=chunk_size)
    ref = grads(naive_parallel_polynomial, *(x.double() for x in (q, k, v, do)), coeffs=SCORES[score])
    assert out[0].dtype == v.dtype and [x.dtype for x in out[1:]] == [q.dtype, k.dtype, v.dtype]
    for name, a, r in zip(("o", "dq", "dk", "dv"), out, ref):
        kernel_checks.assert_rel_close(f"{name} ({dtype})", a, r, REL_TOL[dtype], ABS_TOL[dtype])


def test_autocast_does_not_lower_the_sums():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 100, 2, n, generator=g) for n in (16, 16, 5))
    plain = quadform_polynomial(q, k, v, REBASED_COEFFS, chunk_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = quadform_polynomial(q, k, v, REBASED_COEFFS, chunk_size=16)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, plain, rtol=1e-5, atol=1e-6)


def test_a_later_key_never_reaches_an_earlier_query():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 50, 2, n, generator=g) for n in (16, 16, 5))
    o = quadform_polynomial(q, k, v, BASED_COEFFS, chunk_size=16)
    k2, v2 = k.clone(), v.clone()
    k2[:, 30:], v2[:, 30:] = 100.0, -100.0
    o2 = quadform_polynomial(q, k2, v2, BASED_COEFFS, chunk_size=16)
    assert torch.equal(o[:, :30], o2[:, :30]) and not torch.allclose(o[:, 30:], o2[:, 30:])
