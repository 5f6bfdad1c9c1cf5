"""Triton kernels of the chunked ReBased form (the autograd wrapper is in chunk.py).

Features phi(x) are the D' = d(d+1)/2 symmetric products c_f x_I[f] x_J[f] (naive.py documents the
order), built on the fly: each program gathers the two factor columns of a [BT, BF] feature tile
straight from the (L1-resident) q/k chunk through the index tables I, J. No feature tensor and no
[T, D'] intermediate ever reaches global memory; only one state snapshot per chunk does.

Buffers (bh = batch * heads + head, DP = D' padded to a multiple of BF, NS segments of CPS chunks):
    h  [bh, NT, DP, V] (dot dtype)  state of the chunk's segment before the chunk (exclusive)
    hz [bh, NT, DP]    fp32         the same for z
    hs [bh, NS, DP, V] fp32         each segment's total (the wrapper scans them into prefixes)
    hzs[bh, NS, DP]    fp32
The state kernel walks the chunks of one segment; segments, feature blocks and value blocks run in
parallel, so the grid fills the GPU even for batch * heads = 1. The running state stays fp32 in
registers; snapshots are stored in the dot dtype because that is the precision the dot reads.
"""

import triton
import triton.language as tl

SQRT2 = tl.constexpr(1.4142135623730951)  # jit code reads globals only as constexpr


@triton.jit
def _feature_block(fI, fJ, i_f, DF: tl.constexpr, BF: tl.constexpr):
    """Index vectors I, J and coefficients c (0 on padding) of feature block i_f. # [BF] x 3"""
    o_f = i_f * BF + tl.arange(0, BF)
    b_I = tl.load(fI + o_f)
    b_J = tl.load(fJ + o_f)
    b_c = tl.where(o_f < DF, tl.where(b_I == b_J, 1.0, SQRT2), 0.0)
    return o_f, b_I, b_J, b_c


@triton.jit
def chunk_rebased_state_kernel(
    x, y, den, w, fI, fJ, h, hz, hs, hzs, scale, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr,
    HAS_DEN: tl.constexpr, HAS_W: tl.constexpr, REVERSE: tl.constexpr, PREC: tl.constexpr,
):
    # state sum_t phi(scale * x_t) (y_t / den_t)^T and sum_t phi(scale * x_t) w_t, chunk by chunk
    # forward: x = k, y = v; backward (REVERSE): x = q, y = do / den, w = r
    i_f, i_v, i_bs = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    NS = tl.cdiv(NT, CPS)
    i_bh, i_s = i_bs // NS, i_bs % NS
    i_b, i_h = i_bh // H, i_bh % H
    DT = h.dtype.element_ty
    o_f, b_I, b_J, b_c = _feature_block(fI, fJ, i_f, DF, BF)
    b_c = b_c * scale * scale
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    b_h = tl.zeros([BF, BV], dtype=tl.float32)
    b_z = tl.zeros([BF], dtype=tl.float32)
    c_lo = i_s * CPS
    c_hi = tl.minimum(c_lo + CPS, NT)
    for i in range(0, c_hi - c_lo):
        if REVERSE:
            i_c = c_hi - 1 - i
        else:
            i_c = c_lo + i
        o_hc = (i_bh * NT + i_c).to(tl.int64) * DP
        tl.store(h + (o_hc + o_f[:, None]) * V + o_v[None, :], b_h.to(DT), mask=m_v[None, :])
        if i_v == 0:
            tl.store(hz + o_hc + o_f, b_z)
        o_t = i_c * BT + tl.arange(0, BT)
        m_t = o_t < T
        o_row = ((i_b * T + o_t) * H + i_h).to(tl.int64)  # [BT] token-head rows
        m_x = m_t[:, None] & (o_f < DF)[None, :]
        b_xi = tl.load(x + o_row[:, None] * K + b_I[None, :], mask=m_x, other=0).to(tl.float32)
        b_xj = tl.load(x + o_row[:, None] * K + b_J[None, :], mask=m_x, other=0).to(tl.float32)
        b_phi = b_xi * b_xj * b_c[None, :]  # [BT, BF]
        b_y = tl.load(y + o_row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0).to(tl.float32)
        if HAS_DEN:
            b_y = b_y / tl.load(den + o_row, mask=m_t, other=1.0)[:, None]
        b_h += tl.dot(tl.trans(b_phi.to(DT)), b_y.to(DT), input_precision=PREC)  # [BF, BV]
        if HAS_W:
            b_z += tl.sum(b_phi * tl.load(w + o_row, mask=m_t, other=0)[:, None], 0)
        else:
            b_z += tl.sum(b_phi, 0)
    o_hs = (i_bh * NS + i_s).to(tl.int64) * DP
    tl.store(hs + (o_hs + o_f[:, None]) * V + o_v[None, :], b_h, mask=m_v[None, :])
    if i_v == 0:
        tl.store(hzs + o_hs + o_f, b_z)


@triton.jit
def _load_state(h, hz, hs, hzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V: tl.constexpr, DP: tl.constexpr):
    """State before chunk i_t: segment-local snapshot plus the segment's prefix. # [BF, BV], [BF]"""
    o_hc = (i_bh * NT + i_t).to(tl.int64) * DP + o_f
    o_hs = (i_bh * NS + i_s).to(tl.int64) * DP + o_f
    b_h = tl.load(h + o_hc[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0).to(tl.float32)
    b_h += tl.load(hs + o_hs[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0)
    b_z = tl.load(hz + o_hc) + tl.load(hzs + o_hs)
    return b_h, b_z


@triton.jit
def chunk_rebased_fwd_o_kernel(
    q, k, v, h, hz, hs, hzs, fI, fJ, o, den, scale, eps, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    # o = (A v + phi(q') S) / (A 1 + phi(q') z + eps), A = causal squared scores inside the chunk
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NS = tl.cdiv(NT, CPS)
    i_s = i_t // CPS
    DT = h.dtype.element_ty
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_row = ((i_b * T + o_t) * H + i_h).to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    b_q = tl.load(q + o_row[:, None] * K + o_k[None, :], mask=m_t[:, None] & (o_k < K)[None, :], other=0)  # [BT, BK]
    b_k = tl.load(k + o_row[:, None] * K + o_k[None, :], mask=m_t[:, None] & (o_k < K)[None, :], other=0)
    b_v = tl.load(v + o_row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0)  # [BT, BV]
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_den = tl.zeros([BT], dtype=tl.float32)
    for i_f in range(0, DP // BF):
        o_f, b_I, b_J, b_c = _feature_block(fI, fJ, i_f, DF, BF)
        m_x = m_t[:, None] & (o_f < DF)[None, :]
        b_qi = tl.load(q + o_row[:, None] * K + b_I[None, :], mask=m_x, other=0).to(tl.float32)
        b_qj = tl.load(q + o_row[:, None] * K + b_J[None, :], mask=m_x, other=0).to(tl.float32)
        b_phi = b_qi * b_qj * (b_c * scale * scale)[None, :]  # [BT, BF]
        b_h, b_z = _load_state(h, hz, hs, hzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_o += tl.dot(b_phi.to(DT), b_h.to(DT), input_precision=PREC)
        b_den += tl.sum(b_phi * b_z[None, :], 1)
    b_s = tl.dot(b_q.to(DT), tl.trans(b_k.to(DT)), input_precision=PREC) * scale  # [BT, BT]
    b_a = tl.where(o_t[:, None] >= o_t[None, :], b_s * b_s, 0)
    b_o += tl.dot(b_a.to(DT), b_v.to(DT), input_precision=PREC)
    b_den += tl.sum(b_a, 1) + eps
    tl.store(o + o_row[:, None] * V + o_v[None, :], (b_o / b_den[:, None]).to(o.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])
    if i_v == 0:
        tl.store(den + o_row, b_den, mask=m_t)


@triton.jit
def _phi_vjp(b_u, b_xi, b_xj, b_ei, b_ej, DT: tl.constexpr, PREC: tl.constexpr):
    """d/dx of sum_f u_f c_f x_I x_J (b_u already times c): one-hot dots scatter features to dims. # [BT, BK]"""
    b_dx = tl.dot((b_u * b_xj).to(DT), b_ei, input_precision=PREC)
    b_dx += tl.dot((b_u * b_xi).to(DT), b_ej, input_precision=PREC)
    return b_dx


@triton.jit
def chunk_rebased_bwd_kernel(
    q, k, v, do, den, r, h, hz, hs, hzs, dh, dhz, dhs, dhzs, fI, fJ, dq, dk, dv, scale, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    # g = do / den, r = (do . o) / den; dL/dA_ts = g_t . v_s - r_t; across chunks through the
    # forward state (h: for dq) and the reverse state dh = sum_{later t} phi(q'_t) g_t^T (for dk, dv)
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NS = tl.cdiv(NT, CPS)
    i_s = i_t // CPS
    DT = h.dtype.element_ty
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_row = ((i_b * T + o_t) * H + i_h).to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_tk, m_tv = m_t[:, None] & m_k[None, :], m_t[:, None] & m_v[None, :]
    b_q = tl.load(q + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(tl.float32)  # [BT, BK]
    b_k = tl.load(k + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(tl.float32)
    b_v = tl.load(v + o_row[:, None] * V + o_v[None, :], mask=m_tv, other=0).to(tl.float32)  # [BT, BV]
    b_g = tl.load(do + o_row[:, None] * V + o_v[None, :], mask=m_tv, other=0).to(tl.float32)
    b_g = b_g / tl.load(den + o_row, mask=m_t, other=1.0)[:, None]
    b_r = tl.load(r + o_row, mask=m_t, other=0)  # [BT]
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dv = tl.zeros([BT, BV], dtype=tl.float32)
    for i_f in range(0, DP // BF):
        o_f, b_I, b_J, b_c = _feature_block(fI, fJ, i_f, DF, BF)
        m_x = m_t[:, None] & (o_f < DF)[None, :]
        b_ei = (b_I[:, None] == o_k[None, :]).to(DT)  # [BF, BK] one-hot of I
        b_ej = (b_J[:, None] == o_k[None, :]).to(DT)
        b_qi = tl.load(q + o_row[:, None] * K + b_I[None, :], mask=m_x, other=0).to(tl.float32)  # [BT, BF]
        b_qj = tl.load(q + o_row[:, None] * K + b_J[None, :], mask=m_x, other=0).to(tl.float32)
        b_ki = tl.load(k + o_row[:, None] * K + b_I[None, :], mask=m_x, other=0).to(tl.float32)
        b_kj = tl.load(k + o_row[:, None] * K + b_J[None, :], mask=m_x, other=0).to(tl.float32)
        # dq: dL/dphi(q'_t) = S g_t - z r_t
        b_h, b_z = _load_state(h, hz, hs, hzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_u = tl.dot(b_g.to(DT), tl.trans(b_h.to(DT)), input_precision=PREC) - b_r[:, None] * b_z[None, :]
        b_dq += _phi_vjp(b_u * b_c[None, :], b_qi, b_qj, b_ei, b_ej, DT, PREC)
        # dk, dv: dL/dphi(k_s) = R v_s - rz, dv_s = R^T phi(k_s)
        b_R, b_rz = _load_state(dh, dhz, dhs, dhzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_phk = b_ki * b_kj * b_c[None, :]
        b_dv += tl.dot(b_phk.to(DT), b_R.to(DT), input_precision=PREC)
        b_w = tl.dot(b_v.to(DT), tl.trans(b_R.to(DT)), input_precision=PREC) - b_rz[None, :]
        b_dk += _phi_vjp(b_w * b_c[None, :], b_ki, b_kj, b_ei, b_ej, DT, PREC)
    b_dq = b_dq * (scale * scale)
    # intra-chunk quadratic form
    m_c = (o_t[:, None] >= o_t[None, :]) & m_t[:, None]
    b_s = tl.dot(b_q.to(DT), tl.trans(b_k.to(DT)), input_precision=PREC) * scale  # [BT, BT]
    b_a = tl.where(m_c, b_s * b_s, 0)
    b_dp = tl.dot(b_g.to(DT), tl.trans(b_v.to(DT)), input_precision=PREC)  # [BT, BT] g_t . v_s
    b_ds = tl.where(m_c, 2 * b_s * (b_dp - b_r[:, None]), 0) * scale
    b_dq += tl.dot(b_ds.to(DT), b_k.to(DT), input_precision=PREC)
    b_dk += tl.dot(tl.trans(b_ds.to(DT)), b_q.to(DT), input_precision=PREC)
    b_dv += tl.dot(tl.trans(b_a.to(DT)), b_g.to(DT), input_precision=PREC)
    tl.store(dq + o_row[:, None] * K + o_k[None, :], b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + o_row[:, None] * K + o_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dv + o_row[:, None] * V + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
