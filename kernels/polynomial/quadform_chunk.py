"""Causal normalized polynomial attention as chunked Triton kernels in the quadratic form (linear in T), for small
feature dims (d <= 32) and small value heads: launchers, tiles and the public functions.

The kernels and their formulas are in quadform_chunk_kernels.py. The forward runs two launches (the states of the
earlier chunks, then every chunk's output in parallel), the backward four (do', the forward's states again, the later
queries' states, then dq, dk, dv of every chunk in parallel); the states (B*H x chunks x d x d x BV fp32) pass
through global memory so that no launch walks the sequence with more than a running sum. Under TRITON_INTERPRET=1
(set before this module is imported) the same kernels run on CPU tensors with small tiles.
"""

import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .naive import BASED_COEFFS, REBASED_COEFFS
from .ops import attention_ops
from .quadform_chunk_kernels import (
    quadform_bwd_kernel,
    quadform_bwd_prep_kernel,
    quadform_fwd_kernel,
    quadform_state_kernel,
)

INTERPRET = interpreted(quadform_fwd_kernel)
MAX_D = 32
MAX_DV = 63
# BT: chunk length; BW: state columns per slice (at most d * BV); warps per kernel. GPU: a first choice, not yet
# set by timing (benchmarks/quadform_chunk_bench.py --tiles times others at the MQAR model's shapes).
# Interpreter: chunks of 16 and slices of 32, so short test sequences cross several chunks and d * BV several slices.
GPU_TILES = {"BT": 64, "BW": 128, "warps_state": 4, "warps_fwd": 4, "warps_bwd": 4}
INTERPRET_TILES = {"BT": 16, "BW": 32}
TILES = INTERPRET_TILES if INTERPRET else GPU_TILES


def _launch(kernel):
    """Launch options of one kernel ("state", "fwd", "bwd"); the interpreter takes none."""
    return {} if INTERPRET else {"num_warps": TILES[f"warps_{kernel}"]}


def _strided(x):
    # the kernels index the last dim with stride 1; any other strides are passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def fits(d, dv):
    """True when the kernels take feature dim d and value dim dv."""
    return d <= MAX_D and dv <= MAX_DV


def _prepare(q, k, v, coeffs, scale):
    if q.ndim != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k (B, T, H, d) and v (B, T, H, dv); got {q.shape}, {k.shape}, {v.shape}")
    if not fits(q.shape[-1], v.shape[-1]):
        raise ValueError(f"quadform_chunk needs d <= {MAX_D} and dv <= {MAX_DV}; got d = {q.shape[-1]}, "
                         f"dv = {v.shape[-1]}")
    if q.device.type != "cuda" and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    c0, c1, c2 = (float(c) for c in coeffs)
    BK = max(16, triton.next_power_of_2(q.shape[-1]))
    BV = triton.next_power_of_2(v.shape[-1] + 1)  # v and the ones column
    dims = dict(BT=TILES["BT"], BK=BK, BV=BV, BVP=max(16, BV), BW=min(TILES["BW"], BK * BV))
    return (c0, c1 * scale, c2 * scale * scale), c0 != 0 or c1 != 0, dims  # p = a0 + a1 x + a2 x^2, x = q.k


def _states(x, y, y_strides, yw, ones, reverse, linear, dims):
    """Per chunk, the sums over the chunks before it (after it when reverse): w (B*H, chunks, BK, BK*BV) fp32 and,
    when linear, s1 (B*H, chunks, BK, BVP) and s0 (B*H, chunks, BVP); x (B, T, H, d), y read through y_strides."""
    B, T, H, K = x.shape
    BK, BV, BVP = dims["BK"], dims["BV"], dims["BVP"]
    NC = triton.cdiv(T, dims["BT"])
    w = empty((B * H, NC, BK, BK * BV), dtype=torch.float32, device=x.device)
    s1 = empty((B * H, NC, BK, BVP), dtype=torch.float32, device=x.device) if linear else w
    s0 = empty((B * H, NC, BVP), dtype=torch.float32, device=x.device) if linear else w
    quadform_state_kernel[(B * H, BK * BV // dims["BW"])](
        x, y, w, s1, s0, *x.stride()[:3], *y_strides, T, H, NC, K=K, YW=yw, ONES=ones, LINEAR=linear,
        REVERSE=reverse, INTERPRET=INTERPRET, **dims, **_launch("state"),
    )
    return w, s1, s0


@on_input_device
def quadform_chunk_fwd(q, k, v, coeffs, scale=None, eps=1e-12):
    """Returns o (B, T, H, dv) in v's dtype and z (B, H, T) fp32: the denominators sum_s p_ts + eps."""
    q, k, v = _strided(q), _strided(k), _strided(v)
    (a0, a1, a2), linear, dims = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V = v.shape[-1]
    w, s1, s0 = _states(k, v, v.stride()[:3], V, True, False, linear, dims)
    o = empty((B, T, H, V), dtype=v.dtype, device=q.device)
    z = empty((B, H, T), dtype=torch.float32, device=q.device)
    quadform_fwd_kernel[(B * H, triton.cdiv(T, dims["BT"]))](
        q, k, v, o, z, w, s1, s0, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        a0, a1, a2, eps, T, H, triton.cdiv(T, dims["BT"]), K=K, V=V, LINEAR=linear, INTERPRET=INTERPRET,
        **dims, **_launch("fwd"),
    )
    return o, z


@on_input_device
def quadform_chunk_bwd(q, k, v, o, z, do, coeffs, scale=None):
    """Gradients (dq, dk, dv) in the dtypes of q, k, v, from the forward's o and z and the output gradient do."""
    q, k, v, o, do = _strided(q), _strided(k), _strided(v), _strided(o), _strided(do)
    (a0, a1, a2), linear, dims = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V, BVP = v.shape[-1], dims["BVP"]
    NC = triton.cdiv(T, dims["BT"])
    dop = empty((B * H, T, BVP), dtype=torch.float32, device=q.device)  # do' = [do / z, -delta, 0...]
    quadform_bwd_prep_kernel[(B * H, NC)](
        o, do, z, dop, *o.stride()[:3], *do.stride()[:3], T, H, V=V, BT=dims["BT"], BVP=BVP, INTERPRET=INTERPRET,
    )
    w, s1, _ = _states(k, v, v.stride()[:3], V, True, False, linear, dims)
    u, r1, r0 = _states(q, dop, (H * T * BVP, BVP, T * BVP), V + 1, False, True, linear, dims)
    dq = empty(q.shape, dtype=q.dtype, device=q.device)
    dk = empty(k.shape, dtype=k.dtype, device=q.device)
    dv = empty(v.shape, dtype=v.dtype, device=q.device)
    quadform_bwd_kernel[(B * H, NC)](
        q, k, v, dop, w, u, s1, r1, r0, dq, dk, dv, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
        *dq.stride()[:3], *dk.stride()[:3], *dv.stride()[:3], a0, a1, a2, T, H, NC, K=K, V=V, LINEAR=linear,
        INTERPRET=INTERPRET, **dims, **_launch("bwd"),
    )
    return dq, dk, dv


quadform_chunk_fwd_op = attention_ops("quadform_chunk", quadform_chunk_fwd, quadform_chunk_bwd)


def quadform_chunk_polynomial(q, k, v, coeffs, scale=None, eps=1e-12):
    """Causal attention with score p(s) = c0 + c1 s + c2 s^2, s = scale * q.k, normalized by the causal sum.

    Args:
        q, k: (batch, seq_len, heads, d), d <= 32, any float dtype (may differ from v's, as under autocast).
        v: (batch, seq_len, heads, dv), dv <= 63.
        coeffs: (c0, c1, c2). scale: None means d ** -0.5. eps: added to the fp32 denominator.
    Returns:
        o: (batch, seq_len, heads, dv) in v's dtype; differentiable in q, k, v.
    """
    return quadform_chunk_fwd_op(q, k, v, [float(c) for c in coeffs], scale, eps)[0]


def quadform_chunk_rebased(q, k, v, scale=None, eps=1e-12):
    """ReBased: score (scale * q.k)^2; arguments, shapes and result as in quadform_chunk_polynomial."""
    return quadform_chunk_polynomial(q, k, v, REBASED_COEFFS, scale, eps)


def quadform_chunk_based(q, k, v, scale=None, eps=1e-12):
    """Based: score 1 + s + s^2 / 2, s = scale * q.k; arguments, shapes and result as in quadform_chunk_polynomial."""
    return quadform_chunk_polynomial(q, k, v, BASED_COEFFS, scale, eps)
