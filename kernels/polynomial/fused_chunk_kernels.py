"""Triton kernels for causal normalized polynomial attention in the fused chunked (linear in T) form, d = 16.

One program per (batch, head) walks the sequence in chunks of BT positions and keeps the running sums over the
earlier chunks on chip, with v' = [v, 1] (padded with zeros to BV columns; the ones column gives the denominator):

    z0 = sum_s v'_s [BV],  S1 = sum_s k_s v'_s^T [BK, BV],  W[j, (i, c)] = sum_s k_sj k_si v'_sc [BK, BK*BV]

so a query t reads the earlier chunks as a0 z0 + a1 q_t^T S1 + a2 sum_i q_ti (q_t^T W)[(i, c)], and the keys of
its own chunk through the BT x BT causal scores. Every product contracts over d, dv or BT, never over d*d: a
d*d-deep dot operand would be held whole by every warp (small M and N) and spill registers on sm_90.
x = q.k is the raw dot: the wrapper folds `scale` into a0, a1, a2.
The backward passes and their formulas are described in fused_chunk.py. Keys and queries past T load as zeros,
with v' = 0 and do' = 0 there, so they add nothing to any sum. The state products run in fp32 (tf32 on tensor
cores); only the scores x and the in-chunk p @ v' take the inputs' dtype (_mm and _cast, shared with
parallel_kernels.py, carry its workarounds for the interpreter's bf16 bugs).
"""

import triton
import triton.language as tl

from .parallel_kernels import _cast, _mm


@triton.jit
def _load_rows(p, o_t, m_t, o_c, C: tl.constexpr):
    """[BT, BC] tile of rows o_t (masked by m_t) and columns o_c < C; p already points at (batch, head)."""
    return tl.load(p + o_t[:, None] + o_c[None, :], mask=m_t[:, None] & (o_c < C)[None, :], other=0)


@triton.jit
def _outer(b_x, BT: tl.constexpr, BK: tl.constexpr):
    """Rows x_t (x) x_t of b_x [BT, BK] as one fp32 [BT, BK*BK] tile (row-major (i, j) -> i * BK + j)."""
    b_x = b_x.to(tl.float32)
    return tl.reshape(b_x[:, :, None] * b_x[:, None, :], [BT, BK * BK])


@triton.jit
def _outer2(b_a, b_b, BT: tl.constexpr, BA: tl.constexpr, BB: tl.constexpr):
    """Rows a_t (x) b_t of b_a [BT, BA] and b_b [BT, BB] as one fp32 [BT, BA*BB] tile ((i, c) -> i * BB + c)."""
    return tl.reshape(b_a.to(tl.float32)[:, :, None] * b_b.to(tl.float32)[:, None, :], [BT, BA * BB])


@triton.jit
def _quad_read(b_y, b_x, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """sum_i x_ti Y_t[i, c] for b_y [BT, BK*BV] read as Y_t [BK, BV]: with b_y = x @ W, the quadratic form."""
    return tl.sum(tl.reshape(b_y, [BT, BK, BV]) * b_x.to(tl.float32)[:, :, None], 1)


@triton.jit
def _quad_grad(b_a, b_x, BT: tl.constexpr, BK: tl.constexpr):
    """sum_i x_ti A_t[i, j] for b_a [BT, BK*BK] read as A_t [BK, BK] (symmetric states): the gradient of the
    quadratic form x^T A x / 2 with respect to x, per row."""
    return tl.sum(tl.reshape(b_a, [BT, BK, BK]) * b_x.to(tl.float32)[:, :, None], 1)


@triton.jit
def fused_chunk_poly_fwd_kernel(
    q, k, v, o, z,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_ob, s_ot, s_oh,
    a0, a1, a2, eps, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """o_t = num_t / (den_t + eps) in v's layout; z (batch, heads, T) fp32 = den_t + eps for the backward."""
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_c = o_i[:, None] >= o_i[None, :]  # causal mask inside a chunk
    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    o += i_b.to(tl.int64) * s_ob + i_h * s_oh
    z += i_bh.to(tl.int64) * T

    b_z0 = tl.zeros([BV], dtype=tl.float32)
    b_s1 = tl.zeros([BK, BV], dtype=tl.float32)
    b_w = tl.zeros([BK, BK * BV], dtype=tl.float32)
    for i_t in range(0, T, BT):
        o_t = i_t + o_i
        m_t = o_t < T
        b_q = _load_rows(q, o_t * s_qt, m_t, o_k, K)  # [BT, BK]
        b_k = _load_rows(k, o_t * s_kt, m_t, o_k, K)  # [BT, BK]
        b_v = _load_rows(v, o_t * s_vt, m_t, o_v, V)  # [BT, BV]
        # v' = [v, 1]: column V is 1 on the rows inside the sequence (exact in every dtype)
        b_v = tl.where(m_t[:, None] & (o_v == V)[None, :], 1.0, b_v).to(b_v.dtype)
        # earlier chunks, through the states
        b_o = a0 * b_z0[None, :] + a1 * _mm(b_q.to(tl.float32), b_s1, INTERPRET)
        b_o += a2 * _quad_read(_mm(b_q.to(tl.float32), b_w, INTERPRET), b_q, BT, BK, BV)
        # this chunk: the scores themselves, causal
        b_x = _mm(b_q, tl.trans(b_k), INTERPRET)  # [BT, BT]
        b_p = tl.where(m_c, a0 + b_x * (a1 + a2 * b_x), 0)
        b_o += _mm(b_p, b_v, INTERPRET)
        # column V holds the denominator (fp32)
        b_den = tl.sum(tl.where((o_v == V)[None, :], b_o, 0), 1) + eps
        b_o = b_o / b_den[:, None]
        p_o = o + o_t[:, None] * s_ot + o_v[None, :]
        tl.store(p_o, _cast(b_o, p_o.dtype.element_ty, INTERPRET), mask=m_t[:, None] & (o_v < V)[None, :])
        tl.store(z + o_t, b_den, mask=m_t)
        # add this chunk to the states
        b_vf = b_v.to(tl.float32)
        b_z0 += tl.sum(b_vf, 0)
        b_s1 += _mm(tl.trans(b_k.to(tl.float32)), b_vf, INTERPRET)
        b_w += _mm(tl.trans(b_k.to(tl.float32)), _outer2(b_k, b_vf, BT, BK, BV), INTERPRET)


@triton.jit
def _load_dov(o, do, z, o_t, m_t, s_ot, s_dt, o_v, V: tl.constexpr):
    """do' = [g, h] [BT, BV] fp32: g = do / z, h = -(do . o) / z in column V, zeros past T and past V."""
    b_do = _load_rows(do, o_t * s_dt, m_t, o_v, V).to(tl.float32)
    b_o = _load_rows(o, o_t * s_ot, m_t, o_v, V).to(tl.float32)
    b_rz = 1.0 / tl.load(z + o_t, mask=m_t, other=1.0)
    b_h = -tl.sum(b_do * b_o, 1) * b_rz
    return tl.where((o_v == V)[None, :], b_h[:, None], b_do * b_rz[:, None])


@triton.jit
def fused_chunk_poly_bwd_dq_kernel(
    q, k, v, o, z, do, dq,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_ob, s_ot, s_oh, s_db, s_dt, s_dh, s_gb, s_gt, s_gh,
    a1, a2, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """dq_t = sum_{s<=t} p'(x_ts) (do'_t . v'_s) k_s in forward order; dq has q's layout and dtype. The states are
    S1^T = sum_s v'_s k_s^T [BV, BK] and S2^T = sum_s v'_s (k_s (x) k_s)^T [BV, BK*BK], read over dv."""
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_c = o_i[:, None] >= o_i[None, :]
    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    o += i_b.to(tl.int64) * s_ob + i_h * s_oh
    do += i_b.to(tl.int64) * s_db + i_h * s_dh
    dq += i_b.to(tl.int64) * s_gb + i_h * s_gh
    z += i_bh.to(tl.int64) * T

    b_s1 = tl.zeros([BV, BK], dtype=tl.float32)
    b_s2 = tl.zeros([BV, BK * BK], dtype=tl.float32)
    for i_t in range(0, T, BT):
        o_t = i_t + o_i
        m_t = o_t < T
        b_q = _load_rows(q, o_t * s_qt, m_t, o_k, K)
        b_k = _load_rows(k, o_t * s_kt, m_t, o_k, K)
        b_v = _load_rows(v, o_t * s_vt, m_t, o_v, V).to(tl.float32)
        b_v = tl.where(m_t[:, None] & (o_v == V)[None, :], 1.0, b_v)
        b_do = _load_dov(o, do, z, o_t, m_t, s_ot, s_dt, o_v, V)  # [BT, BV]
        # earlier chunks: a1 do' S1^T + 2 a2 (d/dq of q^T (do' S2^T) q / 2)
        b_dq = a1 * _mm(b_do, b_s1, INTERPRET)
        b_dq += (2 * a2) * _quad_grad(_mm(b_do, b_s2, INTERPRET), b_q, BT, BK)
        # this chunk
        b_x = _mm(b_q, tl.trans(b_k), INTERPRET)
        b_ds = tl.where(m_c, _mm(b_do, tl.trans(b_v), INTERPRET) * (a1 + (2 * a2) * b_x), 0)
        b_dq += _mm(b_ds, b_k, INTERPRET)
        p_dq = dq + o_t[:, None] * s_gt + o_k[None, :]
        tl.store(p_dq, _cast(b_dq, p_dq.dtype.element_ty, INTERPRET), mask=m_t[:, None] & (o_k < K)[None, :])
        b_vt = tl.trans(b_v)
        b_s1 += _mm(b_vt, b_k.to(tl.float32), INTERPRET)
        b_s2 += _mm(b_vt, _outer(b_k, BT, BK), INTERPRET)


@triton.jit
def fused_chunk_poly_bwd_dkdv_kernel(
    q, k, v, o, z, do, dk, dv,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_ob, s_ot, s_oh, s_db, s_dt, s_dh, s_gb, s_gt, s_gh,
    s_wb, s_wt, s_wh, a0, a1, a2, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """dk_s = sum_{t>=s} p'(x_ts) (do'_t . v'_s) q_t and dv_s = sum_{t>=s} p(x_ts) do'_t (first V columns) in
    reverse order, over states of the later queries: R0 = sum_t do'_t [BV], R1 = sum_t q_t do'_t^T [BK, BV], and
    their second-order sum in two layouts, U[j, (i, c)] = sum_t q_tj q_ti do'_tc [BK, BK*BV] for dv and
    R2^T = sum_t do'_t (q_t (x) q_t)^T [BV, BK*BK] for dk, so that no product contracts over d*d (see the top).
    dk, dv have k's and v's layouts and dtypes."""
    i_bh = tl.program_id(0)
    i_b, i_h = i_bh // H, i_bh % H
    o_i = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_c = o_i[:, None] <= o_i[None, :]  # [keys, queries]: query t sees key s when s <= t
    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    o += i_b.to(tl.int64) * s_ob + i_h * s_oh
    do += i_b.to(tl.int64) * s_db + i_h * s_dh
    dk += i_b.to(tl.int64) * s_gb + i_h * s_gh
    dv += i_b.to(tl.int64) * s_wb + i_h * s_wh
    z += i_bh.to(tl.int64) * T

    b_r0 = tl.zeros([BV], dtype=tl.float32)
    b_r1 = tl.zeros([BK, BV], dtype=tl.float32)
    b_u = tl.zeros([BK, BK * BV], dtype=tl.float32)
    b_r2 = tl.zeros([BV, BK * BK], dtype=tl.float32)
    for i_c in range(tl.cdiv(T, BT) - 1, -1, -1):
        o_t = i_c * BT + o_i
        m_t = o_t < T
        b_q = _load_rows(q, o_t * s_qt, m_t, o_k, K)
        b_k = _load_rows(k, o_t * s_kt, m_t, o_k, K)
        b_v = _load_rows(v, o_t * s_vt, m_t, o_v, V).to(tl.float32)
        b_v = tl.where(m_t[:, None] & (o_v == V)[None, :], 1.0, b_v)
        b_do = _load_dov(o, do, z, o_t, m_t, s_ot, s_dt, o_v, V)
        # later chunks, through the states
        b_dv = a0 * b_r0[None, :] + a1 * _mm(b_k.to(tl.float32), b_r1, INTERPRET)
        b_dv += a2 * _quad_read(_mm(b_k.to(tl.float32), b_u, INTERPRET), b_k, BT, BK, BV)
        b_dk = a1 * _mm(b_v, tl.trans(b_r1), INTERPRET)
        b_dk += (2 * a2) * _quad_grad(_mm(b_v, b_r2, INTERPRET), b_k, BT, BK)
        # this chunk: [keys, queries]
        b_x = _mm(b_k, tl.trans(b_q), INTERPRET)
        b_p = tl.where(m_c, a0 + b_x * (a1 + a2 * b_x), 0)
        b_dv += _mm(b_p, b_do, INTERPRET)
        b_ds = tl.where(m_c, _mm(b_v, tl.trans(b_do), INTERPRET) * (a1 + (2 * a2) * b_x), 0)
        b_dk += _mm(b_ds, b_q, INTERPRET)
        p_dk = dk + o_t[:, None] * s_gt + o_k[None, :]
        tl.store(p_dk, _cast(b_dk, p_dk.dtype.element_ty, INTERPRET), mask=m_t[:, None] & (o_k < K)[None, :])
        p_dv = dv + o_t[:, None] * s_wt + o_v[None, :]
        tl.store(p_dv, _cast(b_dv, p_dv.dtype.element_ty, INTERPRET), mask=m_t[:, None] & (o_v < V)[None, :])
        b_r0 += tl.sum(b_do, 0)
        b_r1 += _mm(tl.trans(b_q.to(tl.float32)), b_do, INTERPRET)
        b_u += _mm(tl.trans(b_q.to(tl.float32)), _outer2(b_q, b_do, BT, BK, BV), INTERPRET)
        b_r2 += _mm(tl.trans(b_do), _outer(b_q, BT, BK), INTERPRET)
