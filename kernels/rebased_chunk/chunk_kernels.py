"""Triton kernels of the chunked ReBased form (the autograd wrapper is in chunk.py).

Features phi(x) are the D' = d(d+1)/2 symmetric products c_f x_I[f] x_J[f] (naive.py documents the
order), built on the fly per [BT, BF] feature block: the two factor columns x_I, x_J are gathered from
the [BT, BK] chunk tile by products with one-hot [BK, BF] matrices on the tensor cores (exact: one
non-zero product per output), and the VJP scatters back the same way. No feature tensor and no
[T, D'] intermediate reaches global memory; only one state snapshot per chunk does. (A first version
gathered with per-element global loads: ~7 us per feature block on the H100, 4x over the targets.)

Buffers (bh = batch * heads + head, DP = D' padded to a multiple of BF, NS segments of CPS chunks):
    h  [bh, NT, DP, V] (dot dtype)  state of the chunk's segment before the chunk (exclusive)
    hz [bh, NT, DP]    fp32         the same for z
    hs [bh, NS, DP, V] fp32         each segment's total (the wrapper scans them into prefixes)
    hzs[bh, NS, DP]    fp32
The state kernel walks the chunks of one segment; segments and feature blocks run in parallel, so the
grid fills the GPU even for batch * heads = 1. The running state stays fp32 in registers; snapshots are
stored in the dot dtype because that is the precision the dot reads them in.
"""

import triton
import triton.language as tl

SQRT2 = tl.constexpr(1.4142135623730951)  # jit code reads globals only as constexpr


@triton.jit
def _feature_block(fI, fJ, i_f, o_k, DF: tl.constexpr, BF: tl.constexpr, DT: tl.constexpr):
    """Feature ids [BF], coefficients c [BF] (0 on padding), one-hots E_I, E_J [BK, BF] of block i_f."""
    o_f = i_f * BF + tl.arange(0, BF)
    b_I = tl.load(fI + o_f)
    b_J = tl.load(fJ + o_f)
    b_c = tl.where(o_f < DF, tl.where(b_I == b_J, 1.0, SQRT2), 0.0)
    b_eI = (o_k[:, None] == b_I[None, :]).to(DT)
    b_eJ = (o_k[:, None] == b_J[None, :]).to(DT)
    return o_f, b_c, b_eI, b_eJ


@triton.jit
def _gather(b_x, b_eI, b_eJ, PREC: tl.constexpr):
    """x_I, x_J [BT, BF] in fp32 from b_x [BT, BK] (dot dtype)."""
    return tl.dot(b_x, b_eI, input_precision=PREC), tl.dot(b_x, b_eJ, input_precision=PREC)


@triton.jit
def _phi_vjp(b_u, b_xi, b_xj, b_eI, b_eJ, DT: tl.constexpr, PREC: tl.constexpr):
    """d/dx sum_f u_f x_I x_J (b_u already times c) [BT, BK]: the one-hots scatter features back to dims."""
    b_dx = tl.dot((b_u * b_xj).to(DT), tl.trans(b_eI), input_precision=PREC)
    b_dx += tl.dot((b_u * b_xi).to(DT), tl.trans(b_eJ), input_precision=PREC)
    return b_dx


@triton.jit
def chunk_rebased_state_kernel(
    x, y, den, r, fI, fJ, h, hz, hs, hzs, scale, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr,
    REVERSE: tl.constexpr, PREC: tl.constexpr,
):
    # forward: S = sum phi(k) v^T, z = sum phi(k); REVERSE (backward): R = sum phi(q') g^T and
    # rz = sum phi(q') r, from the end, with q' = scale q, g = do / den, r = (do . o) / den (from the dq kernel)
    i_f, i_bs = tl.program_id(0), tl.program_id(1)
    NS = tl.cdiv(NT, CPS)
    i_bh, i_s = i_bs // NS, i_bs % NS
    i_b, i_h = i_bh // H, i_bh % H
    DT = h.dtype.element_ty
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    o_f, b_c, b_eI, b_eJ = _feature_block(fI, fJ, i_f, o_k, DF, BF, DT)
    b_c = b_c * scale * scale
    b_h = tl.zeros([BF, BV], dtype=tl.float32)
    b_z = tl.zeros([BF], dtype=tl.float32)
    c_lo = i_s * CPS
    c_hi = tl.minimum(c_lo + CPS, NT)
    for i in range(0, c_hi - c_lo):
        if REVERSE:
            i_c = c_hi - 1 - i
        else:
            i_c = c_lo + i
        o_hc = (i_bh * NT + i_c).to(tl.int64) * DP + o_f
        tl.store(h + o_hc[:, None] * V + o_v[None, :], b_h.to(DT), mask=m_v[None, :])
        tl.store(hz + o_hc, b_z)
        o_t = i_c * BT + tl.arange(0, BT)
        m_t = o_t < T
        o_row = ((i_b * T + o_t) * H + i_h).to(tl.int64)  # [BT] token-head rows
        b_x = tl.load(x + o_row[:, None] * K + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0).to(DT)
        b_xi, b_xj = _gather(b_x, b_eI, b_eJ, PREC)
        b_phi = b_xi * b_xj * b_c[None, :]  # [BT, BF]
        m_tv = m_t[:, None] & m_v[None, :]
        b_y = tl.load(y + o_row[:, None] * V + o_v[None, :], mask=m_tv, other=0).to(tl.float32)  # [BT, BV]
        if REVERSE:
            b_y = b_y / tl.load(den + o_row, mask=m_t, other=1.0)[:, None]
            b_z += tl.sum(b_phi * tl.load(r + o_row, mask=m_t, other=0)[:, None], 0)
        else:
            b_z += tl.sum(b_phi, 0)
        b_h += tl.dot(tl.trans(b_phi.to(DT)), b_y.to(DT), input_precision=PREC)  # [BF, BV]
    o_hs = (i_bh * NS + i_s).to(tl.int64) * DP + o_f
    tl.store(hs + o_hs[:, None] * V + o_v[None, :], b_h, mask=m_v[None, :])
    tl.store(hzs + o_hs, b_z)


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
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    b_q = tl.load(q + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(DT)  # [BT, BK]
    b_k = tl.load(k + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(DT)
    b_v = tl.load(v + o_row[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0).to(DT)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_den = tl.zeros([BT], dtype=tl.float32)
    for i_f in range(0, DP // BF):
        o_f, b_c, b_eI, b_eJ = _feature_block(fI, fJ, i_f, o_k, DF, BF, DT)
        b_qi, b_qj = _gather(b_q, b_eI, b_eJ, PREC)
        b_phi = b_qi * b_qj * (b_c * scale * scale)[None, :]  # [BT, BF]
        b_h, b_z = _load_state(h, hz, hs, hzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_o += tl.dot(b_phi.to(DT), b_h.to(DT), input_precision=PREC)
        b_den += tl.sum(b_phi * b_z[None, :], 1)
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * scale  # [BT, BT]
    # the denominator sums the scores as rounded for the dot, so that o is a convex combination of v
    b_a = tl.where(o_t[:, None] >= o_t[None, :], b_s * b_s, 0).to(DT)
    b_o += tl.dot(b_a, b_v, input_precision=PREC)
    b_a = b_a.to(tl.float32)
    b_den += tl.sum(b_a, 1) + eps
    tl.store(o + o_row[:, None] * V + o_v[None, :], (b_o / b_den[:, None]).to(o.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])
    if i_v == 0:
        tl.store(den + o_row, b_den, mask=m_t)


@triton.jit
def _bwd_tiles(q, k, v, do, den, i_t, i_bh, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
               BK: tl.constexpr, BV: tl.constexpr, DT: tl.constexpr):
    """Chunk i_t of head i_bh: row offsets and masks, q, k [BT, BK], v, g = do / den [BT, BV] in the dot dtype, den.
    g is rounded once and used so everywhere: g . v_s - r then vanishes exactly when o = v_s."""
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    o_row = ((i_b * T + o_t) * H + i_h).to(tl.int64)
    o_k, o_v = tl.arange(0, BK), tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    m_tk, m_tv = m_t[:, None] & m_k[None, :], m_t[:, None] & m_v[None, :]
    b_q = tl.load(q + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(DT)
    b_k = tl.load(k + o_row[:, None] * K + o_k[None, :], mask=m_tk, other=0).to(DT)
    b_v = tl.load(v + o_row[:, None] * V + o_v[None, :], mask=m_tv, other=0).to(DT)
    b_den = tl.load(den + o_row, mask=m_t, other=1.0)
    b_g = (tl.load(do + o_row[:, None] * V + o_v[None, :], mask=m_tv, other=0).to(tl.float32) / b_den[:, None]).to(DT)
    return o_t, m_t, o_row, o_k, m_k, o_v, m_v, b_q, b_k, b_v, b_g, b_den


@triton.jit
def chunk_rebased_bwd_dq_kernel(
    q, k, v, do, den, r, h, hz, hs, hzs, fI, fJ, dq, scale, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    # g = do / den, r = (do . o) / den; dL/dA_ts = g_t . v_s - r_t; dL/dphi(q'_t) = S g_t - z r_t through the
    # forward state. o is recomputed here in fp32 for r (stored for the dk, dv kernel): from the 16-bit o, the
    # rounding of do.(v_s - o) is amplified by 1/s at tokens with tiny scores (seen: 8% error in a bf16 dq).
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    NS = tl.cdiv(NT, CPS)
    i_s = i_t // CPS
    DT = h.dtype.element_ty
    o_t, m_t, o_row, o_k, m_k, o_v, m_v, b_q, b_k, b_v, b_g, b_den = _bwd_tiles(
        q, k, v, do, den, i_t, i_bh, T, H, K, V, BT, BK, BV, DT)
    b_num = tl.zeros([BT, BV], dtype=tl.float32)  # o * den
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)  # through S g; the z r part goes through b_zm
    b_zm = tl.zeros([BK, BK], dtype=tl.float32)  # sum_f z_f c_f e_I e_J^T: phi(q).z = q^T b_zm q
    for i_f in range(0, DP // BF):
        o_f, b_c, b_eI, b_eJ = _feature_block(fI, fJ, i_f, o_k, DF, BF, DT)
        b_qi, b_qj = _gather(b_q, b_eI, b_eJ, PREC)  # [BT, BF]
        b_h, b_z = _load_state(h, hz, hs, hzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_phq = b_qi * b_qj * (b_c * scale * scale)[None, :]
        b_num += tl.dot(b_phq.to(DT), b_h.to(DT), input_precision=PREC)
        b_u = tl.dot(b_g, tl.trans(b_h.to(DT)), input_precision=PREC) * b_c[None, :]
        b_dq += _phi_vjp(b_u, b_qi, b_qj, b_eI, b_eJ, DT, PREC)
        b_zm += tl.dot((b_eI * (b_z * b_c)[None, :]).to(DT), tl.trans(b_eJ), input_precision=PREC)
    m_c = (o_t[:, None] >= o_t[None, :]) & m_t[:, None]
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * scale  # [BT, BT]
    b_a = tl.where(m_c, b_s * b_s, 0).to(DT)  # rounded as in the forward
    b_num += tl.dot(b_a, b_v, input_precision=PREC)
    b_r = tl.sum(b_g.to(tl.float32) * b_num, 1) / b_den
    tl.store(r + o_row, b_r, mask=m_t)
    # through z: -r_t d(q^T Zm q)/dq = -r_t (Zm + Zm^T) q (as precise as S g: both come from dot-dtype states)
    b_zq = tl.dot(b_q, (b_zm + tl.trans(b_zm)).to(DT), input_precision=PREC)
    b_dq = (b_dq - b_r[:, None] * b_zq) * (scale * scale)
    b_dp = tl.dot(b_g, tl.trans(b_v), input_precision=PREC)  # [BT, BT] g_t . v_s
    b_ds = tl.where(m_c, 2 * b_s * (b_dp - b_r[:, None]), 0) * scale
    b_dq += tl.dot(b_ds.to(DT), b_k, input_precision=PREC)
    tl.store(dq + o_row[:, None] * K + o_k[None, :], b_dq.to(dq.dtype.element_ty), mask=m_t[:, None] & m_k[None, :])


@triton.jit
def chunk_rebased_bwd_dkdv_kernel(
    q, k, v, do, den, r, dh, dhz, dhs, dhzs, fI, fJ, dk, dv, scale, T, NT, CPS,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, DF: tl.constexpr, DP: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BF: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    # through the reverse state dh = sum_{later t} phi(q'_t) g_t^T, dhz = sum_{later t} phi(q'_t) r_t:
    # dL/dphi(k_s) = dh v_s - dhz, dv_s = dh^T phi(k_s); plus the chunk's own quadratic form
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    NS = tl.cdiv(NT, CPS)
    i_s = i_t // CPS
    DT = dh.dtype.element_ty
    o_t, m_t, o_row, o_k, m_k, o_v, m_v, b_q, b_k, b_v, b_g, b_den = _bwd_tiles(
        q, k, v, do, den, i_t, i_bh, T, H, K, V, BT, BK, BV, DT)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dv = tl.zeros([BT, BV], dtype=tl.float32)
    for i_f in range(0, DP // BF):
        o_f, b_c, b_eI, b_eJ = _feature_block(fI, fJ, i_f, o_k, DF, BF, DT)
        b_ki, b_kj = _gather(b_k, b_eI, b_eJ, PREC)  # [BT, BF]
        b_R, b_rz = _load_state(dh, dhz, dhs, dhzs, i_bh, i_t, i_s, NT, NS, o_f, o_v, m_v, V, DP)
        b_phk = b_ki * b_kj * b_c[None, :]
        b_dv += tl.dot(b_phk.to(DT), b_R.to(DT), input_precision=PREC)
        b_w = (tl.dot(b_v, tl.trans(b_R.to(DT)), input_precision=PREC) - b_rz[None, :]) * b_c[None, :]
        b_dk += _phi_vjp(b_w, b_ki, b_kj, b_eI, b_eJ, DT, PREC)
    m_c = (o_t[:, None] >= o_t[None, :]) & m_t[:, None]
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * scale  # [BT, BT]
    b_a = tl.where(m_c, b_s * b_s, 0).to(DT)
    b_dp = tl.dot(b_g, tl.trans(b_v), input_precision=PREC)
    b_ds = tl.where(m_c, 2 * b_s * (b_dp - tl.load(r + o_row, mask=m_t, other=0)[:, None]), 0) * scale
    b_dk += tl.dot(tl.trans(b_ds.to(DT)), b_q, input_precision=PREC)
    b_dv += tl.dot(tl.trans(b_a), b_g, input_precision=PREC)
    tl.store(dk + o_row[:, None] * K + o_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_t[:, None] & m_k[None, :])
    tl.store(dv + o_row[:, None] * V + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])


@triton.jit
def chunk_rebased_scan_kernel(x, x0, xt, NS, N: tl.constexpr, BLOCK: tl.constexpr, REVERSE: tl.constexpr,
                              HAS_INIT: tl.constexpr):
    # x [bh, NS, N] segment totals -> in place the exclusive scan over segments (from the end when REVERSE)
    # starting at x0 [bh, N]; xt [bh, N] gets the total. One launch instead of a dozen PyTorch ops.
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    o_n = i_n * BLOCK + tl.arange(0, BLOCK)
    m_n = o_n < N
    if HAS_INIT:
        b_acc = tl.load(x0 + i_bh.to(tl.int64) * N + o_n, mask=m_n, other=0).to(tl.float32)
    else:
        b_acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, NS):
        if REVERSE:
            i_s = NS - 1 - i
        else:
            i_s = i
        p_x = x + (i_bh * NS + i_s).to(tl.int64) * N + o_n
        b_x = tl.load(p_x, mask=m_n, other=0)
        tl.store(p_x, b_acc, mask=m_n)
        b_acc += b_x
    tl.store(xt + i_bh.to(tl.int64) * N + o_n, b_acc, mask=m_n)
