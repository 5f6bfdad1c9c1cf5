"""Triton kernels for causal normalized polynomial attention in the chunked quadratic form, for small value heads.

o_t = N_t[:V] / (N_t[V] + eps), N_t = sum_{s<=t} p(x_ts) v'_s, v' = [v, 1], p = a0 + a1 x + a2 x^2, x = q_t . k_s.
The sequence is cut into chunks of BT positions. Inside a chunk the BT x BT scores are materialized (causal); the
keys of earlier chunks enter through running sums, read as a quadratic form in q_t (quadform.py's algorithm):

    sum_s p(x_ts) v'_sc = a0 S0[c] + a1 (q_t^T S1)[c] + a2 q_t^T W_c q_t,
    S0 = sum_s v'_s [BV],  S1 = sum_s k_s v'_s^T [BK, BV],  W_c = sum_s v'_sc k_s k_s^T [BK, BK] per value column c.

All W_c live in one [BK, BK*BV] matrix, column i*BV + c holding W_c[:, i], so (q_t^T W)[i*BV + c] = (W_c q_t)_i.
Reading it needs sums over i or over c of such products, and these run on the tensor cores: q_ti is repeated over c
by a product with the 0/1 matrix E[j, i*BV + c] = [j == i], and sum_i by a product with R[i*BV + c, c'] = [c == c'],
so no tile is ever reshaped. The columns are walked in slices of BW (NI = BW / BV values of i each) to bound
registers. The cost per position is O(BT + BK^2 BV), not O(T): at the MQAR model's value heads (5, 10, 21) the
state is 16 x 16 x 8..32.

quadform_state_kernel writes for every chunk the sums over the chunks before it, or after it (REVERSE, for the
backward, with q for k and do' for v'); quadform_fwd_kernel and quadform_bwd_kernel then take every chunk in
parallel. With z_t = N_t[V] + eps, the backward is that of N with output gradient do'_t = [do_t / z_t, -delta_t],
delta_t = (do_t / z_t) . o_t (quadform_bwd_prep_kernel); the later queries' sums for dk and dv are
U_c = sum_t do'_tc q_t q_t^T (W's layout), R1 = sum_t q_t do'_t^T and R0 = sum_t do'_t:

    dq_t = a1 sum_c do'_tc S1[:, c] + 2 a2 sum_c do'_tc W_c q_t   + this chunk's terms,
    dk_s = a1 sum_c v'_sc R1[:, c]  + 2 a2 sum_c v'_sc U_c k_s    + ...,
    dv'_s = a0 R0 + a1 k_s^T R1 + a2 k_s^T U_c k_s                 + ...
x is the raw dot: the wrapper folds `scale` into a0, a1, a2. Rows past T load as zeros and add nothing.
Products follow parallel_kernels.py's _mm: 16-bit operands meet in bf16 when the other side is bf16, else in fp32
(tf32 on the tensor cores); sums over c that cancel (the -delta column against do / z) take fp32 operands.
"""

import triton
import triton.language as tl

from .parallel_kernels import _cast, _like_dot, _mm


@triton.jit
def _repeat_rows(o_j, o_w, i_w, NI: tl.constexpr, BV: tl.constexpr):
    """E [len(o_j), BW] (0/1, fp32): E[j, col] = [j == i], col = (i - i_w NI) BV + c of slice i_w."""
    return (o_j[:, None] == (i_w * NI + o_w // BV)[None, :]).to(tl.float32)


@triton.jit
def _repeat_cols(o_c, o_w, BV: tl.constexpr):
    """F [len(o_c), BW] (0/1, fp32): F[c', col] = [c' == c]."""
    return (o_c[:, None] == (o_w % BV)[None, :]).to(tl.float32)


@triton.jit
def _load_rows(p, o_r, m_r, s_t, o_c, C):
    """[len(o_r), len(o_c)] tile of rows o_r (masked by m_r) and columns o_c < C; p points at (batch, head)."""
    return tl.load(p + o_r[:, None] * s_t + o_c[None, :], mask=m_r[:, None] & (o_c < C)[None, :], other=0)


@triton.jit
def _load_chunk(q, k, v, i_b, i_h, s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, o_r, m_r, o_k, o_v, K, V):
    """One chunk's rows o_r of (batch i_b, head i_h): q, k [BT, BK] and v [BT, BVP], zeros past T, K and V."""
    b_q = _load_rows(q + i_b.to(tl.int64) * s_qb + i_h * s_qh, o_r, m_r, s_qt, o_k, K)
    b_k = _load_rows(k + i_b.to(tl.int64) * s_kb + i_h * s_kh, o_r, m_r, s_kt, o_k, K)
    b_v = _load_rows(v + i_b.to(tl.int64) * s_vb + i_h * s_vh, o_r, m_r, s_vt, o_v, V)
    return b_q, b_k, b_v


@triton.jit
def quadform_state_kernel(
    x, y, w, s1, s0,
    s_xb, s_xt, s_xh, s_yb, s_yt, s_yh,
    T, H, NC,
    K: tl.constexpr, YW: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BVP: tl.constexpr,
    BW: tl.constexpr, ONES: tl.constexpr, LINEAR: tl.constexpr, REVERSE: tl.constexpr, INTERPRET: tl.constexpr,
):
    """For every chunk, the sums over the chunks before it (after it with REVERSE) of x (B, T, H, K) and
    y' = y's first YW columns (ONES: and a column of ones at YW): w[bh, i_c] [BK, BK*BV] fp32, this program's
    slice of BW columns; with LINEAR (slice 0 writes them) s1[bh, i_c] = sum x y'^T [BK, BVP], s0[bh, i_c] = sum y'."""
    i_bh, i_w = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NI: tl.constexpr = BW // BV
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BVP)
    o_w = tl.arange(0, BW)
    x += i_b.to(tl.int64) * s_xb + i_h * s_xh
    y += i_b.to(tl.int64) * s_yb + i_h * s_yh
    p_w = w + i_bh.to(tl.int64) * NC * (BK * BK * BV) + o_k[:, None] * (BK * BV) + i_w * BW + o_w[None, :]
    p_s1 = s1 + i_bh.to(tl.int64) * NC * (BK * BVP) + o_k[:, None] * BVP + o_v[None, :]
    p_s0 = s0 + i_bh.to(tl.int64) * NC * BVP + o_v
    # x_ti and y'_tc repeated over the slice's columns (i, c) by 0/1 products: exact for 16-bit x and for bf16 or
    # tf32-rounded y (the prep kernel rounds do / z so); -delta and fp32 x are rounded to tf32 there
    b_e = _repeat_rows(o_k, o_w, i_w, NI, BV)  # [BK, BW]
    b_f = _repeat_cols(o_v, o_w, BV)  # [BVP, BW]
    b_w = tl.zeros([BK, BW], dtype=tl.float32)
    b_s1 = tl.zeros([BK, BVP], dtype=tl.float32)
    b_s0 = tl.zeros([BVP], dtype=tl.float32)
    for i in range(NC):
        i_c = NC - 1 - i if REVERSE else i
        o_r = i_c * BT + o_t
        m_r = o_r < T
        tl.store(p_w + i_c * (BK * BK * BV), b_w)
        b_x = _load_rows(x, o_r, m_r, s_xt, o_k, K)  # [BT, BK]
        b_y = _load_rows(y, o_r, m_r, s_yt, o_v, YW).to(tl.float32)  # [BT, BVP]
        if ONES:
            b_y = tl.where(m_r[:, None] & (o_v == YW)[None, :], 1.0, b_y)
        b_xy = _mm(b_x, b_e.to(b_x.dtype), INTERPRET) * _mm(b_y, b_f, INTERPRET)  # [BT, BW]: x_ti y'_tc
        b_w += _mm(tl.trans(b_x), b_xy, INTERPRET)  # [BK, BT] @ [BT, BW]
        if LINEAR:
            m_first = o_v + i_w * BVP < BVP  # [BVP], all true in slice 0 only
            tl.store(p_s1 + i_c * (BK * BVP), b_s1, mask=(o_k < BK)[:, None] & m_first[None, :])
            tl.store(p_s0 + i_c * BVP, b_s0, mask=m_first)
            b_s1 += _mm(tl.trans(b_x).to(tl.float32), b_y, INTERPRET)
            b_s0 += tl.sum(b_y, 0)


@triton.jit
def quadform_fwd_kernel(
    q, k, v, o, z, w, s1, s0,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_ob, s_ot, s_oh,
    a0, a1, a2, eps, T, H, NC,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BVP: tl.constexpr,
    BW: tl.constexpr, LINEAR: tl.constexpr, INTERPRET: tl.constexpr,
):
    """One program per (batch, head, chunk): o like v (B, T, H, V), z (B, H, T) fp32 = N[V] + eps, from this chunk's
    scores and the states w, s1, s0 of the chunks before it (quadform_state_kernel)."""
    i_bh, i_c = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NI: tl.constexpr = BW // BV
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BVP)
    o_w = tl.arange(0, BW)
    o_r = i_c * BT + o_t
    m_r = o_r < T
    b_q, b_k, b_v = _load_chunk(q, k, v, i_b, i_h, s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, o_r, m_r, o_k,
                                o_v, K, V)
    b_v = tl.where(m_r[:, None] & (o_v == V)[None, :], 1.0, b_v).to(b_v.dtype)  # v' = [v, 1]
    # this chunk: the causal scores
    b_x = _mm(b_q, tl.trans(b_k), INTERPRET)
    b_p = tl.where(o_t[:, None] >= o_t[None, :], a0 + b_x * (a1 + a2 * b_x), 0)
    b_n = _mm(b_p, b_v, INTERPRET)  # [BT, BVP]
    # earlier chunks: a2 sum_i q_ti (W_c q_t)_i, one slice of W's columns at a time
    p_w = w + (i_bh.to(tl.int64) * NC + i_c) * (BK * BK * BV) + o_k[:, None] * (BK * BV) + o_w[None, :]
    for i_w in range(0, (BK * BV) // BW):
        b_y = _mm(b_q, tl.load(p_w + i_w * BW), INTERPRET)  # [BT, BW]
        b_qr = _mm(b_q, _repeat_rows(o_k, o_w, i_w, NI, BV).to(b_q.dtype), INTERPRET)
        b_n += a2 * _mm(b_y * b_qr, tl.trans(_repeat_cols(o_v, o_w, BV)).to(b_v.dtype), INTERPRET)
    if LINEAR:
        b_s1 = tl.load(s1 + (i_bh.to(tl.int64) * NC + i_c) * (BK * BVP) + o_k[:, None] * BVP + o_v[None, :])
        b_s0 = tl.load(s0 + (i_bh.to(tl.int64) * NC + i_c) * BVP + o_v)
        b_n += a1 * _mm(b_q.to(tl.float32), b_s1, INTERPRET) + a0 * b_s0[None, :]
    b_z = tl.sum(tl.where((o_v == V)[None, :], b_n, 0), 1) + eps
    b_o = b_n / b_z[:, None]
    p_o = o + i_b.to(tl.int64) * s_ob + i_h * s_oh + o_r[:, None] * s_ot + o_v[None, :]
    tl.store(p_o, _cast(b_o, p_o.dtype.element_ty, INTERPRET), mask=m_r[:, None] & (o_v < V)[None, :])
    tl.store(z + i_bh.to(tl.int64) * T + o_r, b_z, mask=m_r)


@triton.jit
def quadform_bwd_prep_kernel(
    o, do, z, dop, s_ob, s_ot, s_oh, s_db, s_dt, s_dh, T, H,
    V: tl.constexpr, BT: tl.constexpr, BVP: tl.constexpr, INTERPRET: tl.constexpr,
):
    """do' (B*H, T, BVP) fp32: columns < V hold do / z rounded as the products read it beside v (bf16 for bf16 v,
    else tf32), column V holds -delta = -(do / z) . o over those same rounded values, zeros after."""
    i_bh, i_t = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_r = i_t * BT + tl.arange(0, BT)
    o_v = tl.arange(0, BVP)
    m_r = o_r < T
    b_o = _load_rows(o + i_b.to(tl.int64) * s_ob + i_h * s_oh, o_r, m_r, s_ot, o_v, V).to(tl.float32)
    b_do = _load_rows(do + i_b.to(tl.int64) * s_db + i_h * s_dh, o_r, m_r, s_dt, o_v, V).to(tl.float32)
    b_dos = b_do / tl.load(z + i_bh.to(tl.int64) * T + o_r, mask=m_r, other=1.0)[:, None]
    b_dos = _like_dot(b_dos, tl.zeros([1], dtype=o.dtype.element_ty), True, INTERPRET).to(tl.float32)
    b_delta = tl.sum(b_dos * b_o, 1)
    b_dop = tl.where((o_v == V)[None, :], -b_delta[:, None], b_dos)
    tl.store(dop + i_bh.to(tl.int64) * T * BVP + o_r[:, None] * BVP + o_v[None, :], b_dop, mask=m_r[:, None])


@triton.jit
def quadform_bwd_kernel(
    q, k, v, dop, w, u, s1, r1, r0, dq, dk, dv,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_gb, s_gt, s_gh, s_hb, s_ht, s_hh, s_wb, s_wt, s_wh,
    a0, a1, a2, T, H, NC,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BVP: tl.constexpr,
    BW: tl.constexpr, LINEAR: tl.constexpr, INTERPRET: tl.constexpr,
):
    """One program per (batch, head, chunk): dq, dk, dv (the layouts and dtypes of q, k, v) from this chunk's scores,
    the forward's states w, s1 of the chunks before it and the states u, r1, r0 of the later queries' q and do'."""
    i_bh, i_c = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NI: tl.constexpr = BW // BV
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BVP)
    o_w = tl.arange(0, BW)
    o_r = i_c * BT + o_t
    m_r = o_r < T
    b_q, b_k, b_v = _load_chunk(q, k, v, i_b, i_h, s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, o_r, m_r, o_k,
                                o_v, K, V)
    b_dop = _load_rows(dop + i_bh.to(tl.int64) * T * BVP, o_r, m_r, BVP, o_v, BVP)  # fp32 [BT, BVP]
    b_dos = tl.where((o_v < V)[None, :], b_dop, 0)
    if b_v.dtype == tl.bfloat16:
        b_dos = b_dos.to(tl.bfloat16)  # exact: rounded so in the prep (fp16 could flush do / z, so it stays fp32)
    b_delta = -tl.sum(tl.where((o_v == V)[None, :], b_dop, 0), 1)
    # this chunk, [queries t, keys s]
    m_c = o_t[:, None] >= o_t[None, :]
    b_x = _mm(b_q, tl.trans(b_k), INTERPRET)
    b_p = tl.where(m_c, a0 + b_x * (a1 + a2 * b_x), 0)
    b_ds = tl.where(m_c, (_mm(b_dos, tl.trans(b_v), INTERPRET) - b_delta[:, None]) * (a1 + 2 * a2 * b_x), 0)
    b_dq = _mm(b_ds, b_k, INTERPRET)  # [BT, BK]
    b_dk = _mm(tl.trans(b_ds), b_q, INTERPRET)
    b_dv = _mm(tl.trans(b_p), b_dos, INTERPRET)  # [BT, BVP]
    # other chunks, one slice of the state columns at a time
    b_v1 = tl.where(m_r[:, None] & (o_v == V)[None, :], 1.0, b_v.to(tl.float32))  # v' = [v, 1]
    o_state = (i_bh.to(tl.int64) * NC + i_c) * (BK * BK * BV) + o_k[:, None] * (BK * BV) + o_w[None, :]
    for i_w in range(0, (BK * BV) // BW):
        b_e = _repeat_rows(o_k, o_w, i_w, NI, BV)  # [BK, BW]
        b_f = _repeat_cols(o_v, o_w, BV)  # [BVP, BW]
        # dq: 2 a2 sum_c do'_tc (W_c q_t)_i
        b_y = _mm(b_q, tl.load(w + o_state + i_w * BW), INTERPRET)
        b_dq += (2 * a2) * _mm(b_y * _mm(b_dop, b_f, INTERPRET), tl.trans(b_e), INTERPRET)
        # dk: 2 a2 sum_c v'_sc (U_c k_s)_i; dv': a2 sum_i k_si (U_c k_s)_i
        b_y = _mm(b_k, tl.load(u + o_state + i_w * BW), INTERPRET)
        b_dk += (2 * a2) * _mm(b_y * _mm(b_v1, b_f, INTERPRET), tl.trans(b_e), INTERPRET)
        b_kr = _mm(b_k, b_e.to(b_k.dtype), INTERPRET)
        b_dv += a2 * _mm(b_y * b_kr, tl.trans(b_f).to(b_v.dtype), INTERPRET)
    if LINEAR:
        o_lin = (i_bh.to(tl.int64) * NC + i_c) * (BK * BVP) + o_k[:, None] * BVP + o_v[None, :]
        b_r1 = tl.load(r1 + o_lin)  # [BK, BVP]
        b_dq += a1 * _mm(b_dop, tl.trans(tl.load(s1 + o_lin)), INTERPRET)
        b_dk += a1 * _mm(b_v1, tl.trans(b_r1), INTERPRET)
        b_dv += a1 * _mm(b_k.to(tl.float32), b_r1, INTERPRET)
        b_dv += a0 * tl.load(r0 + (i_bh.to(tl.int64) * NC + i_c) * BVP + o_v)[None, :]
    m_k = m_r[:, None] & (o_k < K)[None, :]
    p_dq = dq + i_b.to(tl.int64) * s_gb + i_h * s_gh + o_r[:, None] * s_gt + o_k[None, :]
    tl.store(p_dq, _cast(b_dq, p_dq.dtype.element_ty, INTERPRET), mask=m_k)
    p_dk = dk + i_b.to(tl.int64) * s_hb + i_h * s_hh + o_r[:, None] * s_ht + o_k[None, :]
    tl.store(p_dk, _cast(b_dk, p_dk.dtype.element_ty, INTERPRET), mask=m_k)
    p_dv = dv + i_b.to(tl.int64) * s_wb + i_h * s_wh + o_r[:, None] * s_wt + o_v[None, :]
    tl.store(p_dv, _cast(b_dv, p_dv.dtype.element_ty, INTERPRET), mask=m_r[:, None] & (o_v < V)[None, :])
