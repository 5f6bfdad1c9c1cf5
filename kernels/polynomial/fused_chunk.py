"""Causal normalized polynomial attention as a fused chunked Triton kernel (linear in T), for d = 16 and small dv.

o_t = sum_{s<=t} p(x_ts) v_s / (sum_{s<=t} p(x_ts) + eps), p = c0 + c1 (scale x) + c2 (scale x)^2, x = q_t . k_s.
One program per (batch, head) walks the chunks in order with the running sums over the earlier chunks on chip
(fused_chunk_kernels.py): z0 = sum v'_s, S1 = sum k_s v'_s^T, S2 = sum (k_s (x) k_s) v'_s^T with v' = [v, 1], so
column dv of every product is the denominator. The d x d x (dv + 1) state is the quadratic form of quadform.py,
kept in registers instead of global memory. The structure (one program looping over chunks, the q (x) q tile built as
q[:, :, None] * q[:, None, :] and reshaped to (BT, d*d)) follows flash-linear-attention's fused_chunk_based
(fla/ops/based/fused_chunk.py, MIT licence), here for general (c0, c1, c2), the normalization above with an fp32
denominator, and the (batch, seq_len, heads, dim) layout read through strides.

Limits: d = 16 exactly (the d*d state tiles: S2 is 16 x 16 x BV fp32 per program), dv <= 63 (the value block
BV = next power of 2 of dv + 1, at least 16 for tl.dot, holds v and the ones column in one program).

Backward. With z_t = den_t + eps, g_t = do_t / z_t and h_t = -(do_t . o_t) / z_t, the gradient is that of the
unnormalized polynomial linear attention with values v' = [v, 1] and output gradient do' = [g, h]:
    dq_t = sum_{s<=t} p'(x_ts) (do'_t . v'_s) k_s,  dk_s = sum_{t>=s} p'(x_ts) (do'_t . v'_s) q_t,
    dv'_s = sum_{t>=s} p(x_ts) do'_t  (dv = its first dv columns),  p'(x) = c1 scale + 2 c2 scale^2 x.
dq is a forward-order pass that rebuilds the forward's states; dk and dv a reverse-order pass over states of the
later queries, R0 = sum do'_t, R1 = sum q_t do'_t^T, R2 = sum (q_t (x) q_t) do'_t^T. Both read o and z saved by
the forward, so do' is formed per chunk inside the kernels.
Under TRITON_INTERPRET=1 (set before this module is imported) the kernels run on CPU tensors with small chunks.
"""


import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .fused_chunk_kernels import (
    fused_chunk_poly_bwd_dkdv_kernel,
    fused_chunk_poly_bwd_dq_kernel,
    fused_chunk_poly_fwd_kernel,
)
from .naive import BASED_COEFFS, REBASED_COEFFS
from .ops import attention_ops

INTERPRET = interpreted(fused_chunk_poly_fwd_kernel)
# Chunk length BT and warps: not tuned by timing (at the MQAR shapes the kernel is 1.8-4.6x slower than the
# parallel one, results/kernels-mqar). On the GPU, chosen from ptxas's register counts for sm_90 (Triton
# 3.9, BV = 16, 16-bit inputs): BT 16 with 8 warps needs ~140 (fwd), ~160 (dq) and ~220 (dkdv) registers per
# thread and spills none; BT 32 spills in dkdv, BT 64 in every kernel, and so does BV >= 32 (dv > 15) in dkdv at
# BT 16. Interpreter: 16 too, so short test sequences cross several chunks.
BT = 16
NUM_WARPS = 8
MAX_DV = 63


def _launch():
    """Launch options (the interpreter takes none)."""
    return {} if INTERPRET else {"num_warps": NUM_WARPS}


def _strided(x):
    # the kernels index the last dim with stride 1; any other strides are passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def _prepare(q, k, v, coeffs, scale):
    if q.ndim != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k (B, T, H, d) and v (B, T, H, dv); got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != 16:
        raise ValueError(f"fused_chunk needs feature dim d = 16 (d*d state tiles); got d = {q.shape[-1]}")
    if v.shape[-1] > MAX_DV:
        raise ValueError(f"fused_chunk needs dv <= {MAX_DV} (v and the ones column in one block); got {v.shape[-1]}")
    if q.device.type != "cuda" and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    c0, c1, c2 = (float(c) for c in coeffs)
    BV = max(16, triton.next_power_of_2(v.shape[-1] + 1))
    return c0, c1 * scale, c2 * scale * scale, BV  # p = a0 + a1 x + a2 x^2 for the raw x = q.k


@on_input_device
def fused_chunk_poly_fwd(q, k, v, coeffs, scale=None, eps=1e-12):
    """Returns o (B, T, H, dv) in v's dtype and z (B, H, T) fp32: the denominators sum_s p_ts + eps."""
    q, k, v = _strided(q), _strided(k), _strided(v)
    a0, a1, a2, BV = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = empty((B, T, H, V), dtype=v.dtype, device=q.device)
    z = empty((B, H, T), dtype=torch.float32, device=q.device)
    fused_chunk_poly_fwd_kernel[(B * H,)](
        q, k, v, o, z, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        a0, a1, a2, eps, T, H, K=K, V=V, BT=BT, BK=K, BV=BV, INTERPRET=INTERPRET, **_launch(),
    )
    return o, z


@on_input_device
def fused_chunk_poly_bwd(q, k, v, o, z, do, coeffs, scale=None):
    """Gradients (dq, dk, dv) in the dtypes of q, k, v, from the forward's o and z and the output gradient do."""
    q, k, v, o, do = _strided(q), _strided(k), _strided(v), _strided(o), _strided(do)
    a0, a1, a2, BV = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V = v.shape[-1]
    dq = empty((B, T, H, K), dtype=q.dtype, device=q.device)
    dk = empty((B, T, H, K), dtype=k.dtype, device=q.device)
    dv = empty((B, T, H, V), dtype=v.dtype, device=q.device)
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3], *do.stride()[:3])
    flags = dict(K=K, V=V, BT=BT, BK=K, BV=BV, INTERPRET=INTERPRET, **_launch())
    fused_chunk_poly_bwd_dq_kernel[(B * H,)](
        q, k, v, o, z, do, dq, *strides, *dq.stride()[:3], a1, a2, T, H, **flags,
    )
    fused_chunk_poly_bwd_dkdv_kernel[(B * H,)](
        q, k, v, o, z, do, dk, dv, *strides, *dk.stride()[:3], *dv.stride()[:3], a0, a1, a2, T, H, **flags,
    )
    return dq, dk, dv


fused_chunk_poly_fwd_op = attention_ops("fused_chunk_poly", fused_chunk_poly_fwd, fused_chunk_poly_bwd)


def fused_chunk_polynomial(q, k, v, coeffs, scale=None, eps=1e-12):
    """Causal attention with score p(s) = c0 + c1 s + c2 s^2, s = scale * q.k, normalized by the causal sum.

    Args:
        q, k: (batch, seq_len, heads, 16), any float dtype (may differ from v's, as under autocast).
        v: (batch, seq_len, heads, dv), dv <= 63.
        coeffs: (c0, c1, c2). scale: None means d ** -0.5. eps: added to the fp32 denominator.
    Returns:
        o: (batch, seq_len, heads, dv) in v's dtype; differentiable in q, k, v.
    """
    return fused_chunk_poly_fwd_op(q, k, v, [float(c) for c in coeffs], scale, eps)[0]


def fused_chunk_rebased(q, k, v, scale=None, eps=1e-12):
    """ReBased: score (scale * q.k)^2.

    Args:
        q, k: (batch, seq_len, heads, 16). v: (batch, seq_len, heads, dv), dv <= 63.
        scale: None means d ** -0.5. eps: added to the fp32 denominator.
    Returns:
        o: (batch, seq_len, heads, dv) in v's dtype.
    """
    return fused_chunk_polynomial(q, k, v, REBASED_COEFFS, scale, eps)


def fused_chunk_based(q, k, v, scale=None, eps=1e-12):
    """Based: score 1 + s + s^2 / 2, s = scale * q.k; arguments, shapes and result as in fused_chunk_rebased."""
    return fused_chunk_polynomial(q, k, v, BASED_COEFFS, scale, eps)
