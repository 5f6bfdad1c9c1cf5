"""Triton kernels for the fused linear cross-entropy: mean_i CE(h_i W^T, t_i) without the N x V logits in memory.

With logits z = h W^T (h: (N, D) rows, W: (V, D) vocab, t: (N,) targets):
    lse_i = log sum_j exp(z_ij),  loss_i = lse_i - z_{i t_i},  loss = (1 / N) sum_i loss_i.
With g the upstream gradient of the mean loss and dz_ij = (g / N) (p_ij - [j = t_i]), p_ij = exp(z_ij - lse_i):
    dh = dz W,  dW = dz^T h.
The forward keeps a running max and sum of exponentials per row over vocab tiles (online log-sum-exp); the backward
recomputes each logit tile from h and W and the saved lse: memory holds the operands, lse and the loss rows (N each)
and dW's partial sums, never an N x V buffer. The target's logit is picked from the same tiles as the sum, so a
row's loss is >= 0 (up to fp32 rounding in exp and log) however the products round (tf32 for fp32 operands on the
GPU). Products accumulate in fp32 (tl.dot); `_mm` and `_cast` (parallel_kernels.py) work around the interpreter's
bf16 handling. The launchers, tiles and custom ops are in linear_ce.py beside this file.
"""

import triton
import triton.language as tl

from ..polynomial.parallel_kernels import _cast, _mm


@triton.jit
def _rows(h, t, o_m, m_m, o_d, m_d, s_h):
    """The hidden rows o_m [BM, BD] and their targets [BM]; rows past N load as zeros."""
    b_h = tl.load(h + o_m[:, None].to(tl.int64) * s_h + o_d[None, :], mask=m_m[:, None] & m_d[None, :], other=0)
    return b_h, tl.load(t + o_m, mask=m_m, other=0)


@triton.jit
def _logit_tile(b_h, w, i_n, s_w, V, o_d, m_d, BN: tl.constexpr, INTERPRET: tl.constexpr):
    """Vocab tile i_n..i_n+BN: its indices and mask, its W rows [BN, BD] and the logits b_h W^T [BM, BN]."""
    o_n = i_n + tl.arange(0, BN)
    m_n = o_n < V
    b_w = tl.load(w + o_n[:, None] * s_w + o_d[None, :], mask=m_n[:, None] & m_d[None, :], other=0)
    return o_n, m_n, b_w, _mm(b_h, tl.trans(b_w), INTERPRET)


@triton.jit
def linear_ce_fwd_kernel(
    h, w, t, lse, loss, s_h, s_w, N, V,
    D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, INTERPRET: tl.constexpr,
):
    """One program: BM rows, looping over the vocab in tiles of BN. lse, loss: (N,) fp32."""
    i_m = tl.program_id(0)
    o_m = i_m * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m_m, m_d = o_m < N, o_d < D
    b_h, b_t = _rows(h, t, o_m, m_m, o_d, m_d, s_h)  # [BM, BD], [BM]
    b_max = tl.full([BM], float("-inf"), dtype=tl.float32)
    b_sum = tl.zeros([BM], dtype=tl.float32)
    b_zt = tl.zeros([BM], dtype=tl.float32)
    for i_n in range(0, V, BN):
        o_n, m_n, b_w, b_z = _logit_tile(b_h, w, i_n, s_w, V, o_d, m_d, BN, INTERPRET)  # b_z [BM, BN]
        # padded vocab columns weigh exp(-inf) = 0; every tile has at least one real column, so b_new is finite
        b_z = tl.where(m_n[None, :], b_z, float("-inf"))
        b_new = tl.maximum(b_max, tl.max(b_z, 1))
        b_sum = b_sum * tl.exp(b_max - b_new) + tl.sum(tl.exp(b_z - b_new[:, None]), 1)
        b_max = b_new
        b_zt += tl.sum(tl.where(o_n[None, :] == b_t[:, None], b_z, 0.0), 1)
    b_lse = b_max + tl.log(b_sum)
    tl.store(lse + o_m, b_lse, mask=m_m)
    tl.store(loss + o_m, b_lse - b_zt, mask=m_m)


@triton.jit
def _dlogits(b_z, b_lse, b_t, o_n, m_n):
    """softmax - onehot for a logit tile b_z; b_lse, b_t broadcast along b_z's vocab axis (o_n, m_n). Padded vocab
    columns (W = 0 there, logit 0) get exp(-inf) = 0, not exp(-lse): that overflows when every real logit is below
    ~ -88. The factor g / N is applied once to the accumulated product instead."""
    b_p = tl.exp(tl.where(m_n, b_z - b_lse, float("-inf")))
    return tl.where(o_n == b_t, b_p - 1.0, b_p)


@triton.jit
def linear_ce_bwd_dh_kernel(
    h, w, t, lse, dloss, dh, s_h, s_w, s_dh, N, V,
    D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, INTERPRET: tl.constexpr,
):
    """dh = dz W for BM rows, looping over the vocab in tiles of BN; dh: (N, D) in h's dtype."""
    i_m = tl.program_id(0)
    o_m = i_m * BM + tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m_m, m_d = o_m < N, o_d < D
    b_h, b_t = _rows(h, t, o_m, m_m, o_d, m_d, s_h)  # [BM, BD], [BM]
    b_lse = tl.load(lse + o_m, mask=m_m, other=0)
    b_dh = tl.zeros([BM, BD], dtype=tl.float32)
    for i_n in range(0, V, BN):
        o_n, m_n, b_w, b_z = _logit_tile(b_h, w, i_n, s_w, V, o_d, m_d, BN, INTERPRET)  # b_z [BM, BN]
        b_dz = _dlogits(b_z, b_lse[:, None], b_t[:, None], o_n[None, :], m_n[None, :])
        b_dh += _mm(b_dz, b_w, INTERPRET)
    # g / N read on the device: no host sync for the upstream gradient
    b_dh *= tl.load(dloss).to(tl.float32) / N
    p_dh = dh + o_m[:, None].to(tl.int64) * s_dh + o_d[None, :]
    tl.store(p_dh, _cast(b_dh, p_dh.dtype.element_ty, INTERPRET), mask=m_m[:, None] & m_d[None, :])


@triton.jit
def linear_ce_bwd_dw_kernel(
    h, w, t, lse, dloss, dw, s_h, s_w, N, V,
    D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, INTERPRET: tl.constexpr,
):
    """dW = dz^T h for BN vocab rows over the row blocks i_s, i_s + S, ... (S = the grid's second axis); writes the
    fp32 partial sum dw[i_s] of (S, V, D). The logits are computed transposed, [BN, BM], so dz^T is the dot's left
    operand as it comes. Padded rows load h = 0 and add nothing."""
    i_n, i_s = tl.program_id(0), tl.program_id(1)
    o_n = i_n * BN + tl.arange(0, BN)
    o_d = tl.arange(0, BD)
    m_n, m_d = o_n < V, o_d < D
    b_w = tl.load(w + o_n[:, None] * s_w + o_d[None, :], mask=m_n[:, None] & m_d[None, :], other=0)  # [BN, BD]
    b_dw = tl.zeros([BN, BD], dtype=tl.float32)
    for i_m in range(i_s * BM, N, tl.num_programs(1) * BM):
        o_m = i_m + tl.arange(0, BM)
        m_m = o_m < N
        b_h, b_t = _rows(h, t, o_m, m_m, o_d, m_d, s_h)  # [BM, BD], [BM]
        b_lse = tl.load(lse + o_m, mask=m_m, other=0)
        b_zt = _mm(b_w, tl.trans(b_h), INTERPRET)  # [BN, BM]
        b_dzt = _dlogits(b_zt, b_lse[None, :], b_t[None, :], o_n[:, None], m_n[:, None])
        b_dw += _mm(b_dzt, b_h, INTERPRET)
    b_dw *= tl.load(dloss).to(tl.float32) / N
    p_dw = dw + (i_s * V + o_n[:, None]).to(tl.int64) * D + o_d[None, :]
    tl.store(p_dw, b_dw, mask=m_n[:, None] & m_d[None, :])
