"""Triton kernels for causal normalized polynomial attention in the parallel (quadratic) form.

o_t = sum_{s<=t} p(x_ts) v_s / (sum_{s<=t} p(x_ts) + eps), x_ts = q_t . k_s, p = c0 + c1 (scale x) + c2 (scale x)^2.
The kernels see the raw dot x; the wrapper folds `scale` into the coefficients a0, a1, a2. For ReBased
(c0 = c1 = 0, "SQUARE") it also folds c2 scale^2 into eps, so the hot loop squares with one multiply.
Layout (batch, seq_len, heads, dim) is read through strides; nothing is transposed or copied.
The autograd wrapper, the tile choices and the public functions are in parallel.py beside this file.
"""

import triton
import triton.language as tl


@triton.jit
def _cast(b_x, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    if INTERPRET and dtype == tl.bfloat16:
        # triton's interpreter (3.9 cast_impl) truncates fp32 -> bf16; round to nearest even like the GPU
        b_u = b_x.to(tl.float32).to(tl.uint32, bitcast=True)
        b_u += 0x7FFF + ((b_u >> 16) & 1)
        b_x = b_u.to(tl.float32, bitcast=True)
    return b_x.to(dtype)


@triton.jit
def _like_dot(b_x, b_other, ROUND: tl.constexpr, INTERPRET: tl.constexpr):
    """fp32 b_x rounded as the tensor core will read it beside b_other: bf16 when b_other is bf16, else tf32 (kept
    in fp32; round to nearest, the tensor core would truncate). Sums over the rounded values then agree exactly
    with the products: with ReBased, sum_s p_ts (v_s - o_t) = 0 must hold or dq, dk pick up noise ~ 1/|q.k|."""
    if not ROUND:
        b_y = b_x
    elif b_other.dtype == tl.bfloat16:
        b_y = _cast(b_x, tl.bfloat16, INTERPRET)
    else:
        b_u = b_x.to(tl.uint32, bitcast=True)
        b_u = (b_u + 0xFFF + ((b_u >> 13) & 1)) & 0xFFFFE000
        b_y = b_u.to(tl.float32, bitcast=True)
    return b_y


@triton.jit
def _mm(b_a, b_b, INTERPRET: tl.constexpr):
    """b_a @ b_b with fp32 accumulation. Operands of different dtypes meet in bf16 when b_b is bf16 (bf16 keeps
    fp32's exponent range), else in fp32 (tf32 on tensor cores): rounding p or dP to fp16 would overflow at
    p > 65504 (|s| > 256) or flush gradients scaled by 1/z to zero."""
    if b_a.dtype != b_b.dtype:
        if b_b.dtype == tl.bfloat16:
            b_a = _cast(b_a, tl.bfloat16, INTERPRET)
        else:
            b_a = b_a.to(tl.float32)
            b_b = b_b.to(tl.float32)
    if INTERPRET:
        # triton's interpreter (3.9 create_dot) matmuls bf16 storage as uint16; bf16 -> fp32 is exact and
        # the product of two bf16 values is exact in fp32, so this emulates the tensor-core bf16 dot.
        b_a = b_a.to(tl.float32)
        b_b = b_b.to(tl.float32)
    return tl.dot(b_a, b_b)


@triton.jit
def _zsum(b_z, b_p, b_v, b_one, Z_MODE: tl.constexpr, INTERPRET: tl.constexpr):
    """Add the row sums of the scores b_p [BT, BS] to the denominator. Z_MODE 2: on the tensor core, b_p @ b_one
    with b_one [BS, 16] = 1 in column 0 (b_z [BT, 16]), so the sums use p exactly as rounded for p @ v (no extra
    conversion per score); 1: rounded on the CUDA cores (one more conversion per score); 0: fp32 p, not rounded."""
    if Z_MODE == 2:
        b_z += _mm(b_p, b_one, INTERPRET)
    elif Z_MODE == 1:
        b_z += tl.sum(_like_dot(b_p, b_v, True, INTERPRET).to(tl.float32), 1)
    else:
        b_z += tl.sum(b_p, 1)
    return b_z


@triton.jit
def _poly(b_x, a0, a1, a2, SQUARE: tl.constexpr):
    # p(x) = a0 + a1 x + a2 x^2; SQUARE: x^2 (c2 scale^2 folded into eps), one multiply per score
    if SQUARE:
        b_p = b_x * b_x
    else:
        b_p = a0 + b_x * (a1 + a2 * b_x)
    return b_p


@triton.jit
def _dpoly(b_x, a1, a2, SQUARE: tl.constexpr):
    # dp/dx = a1 + 2 a2 x; SQUARE returns x and the kernels multiply the accumulated gradient by 2 once
    if SQUARE:
        b_d = b_x
    else:
        b_d = a1 + (2 * a2) * b_x
    return b_d


@triton.jit
def parallel_poly_fwd_kernel(
    q, k, v, o, z,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_ob, s_ot, s_oh,
    a0, a1, a2, eps, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SQUARE: tl.constexpr, Z_MODE: tl.constexpr, INTERPRET: tl.constexpr, Z_PREFIX: tl.constexpr = False, g=None,
):
    """One program: BT queries x BV value columns of one (batch, head); loops over key tiles of BS up to the diagonal.
    o: like v (batch, T, heads, V); z: (batch, heads, T) fp32 denominators (sum p + eps) for the backward.
    Z_PREFIX (ReBased only): the keys before the diagonal tile add q^T G q to the denominator, G = g[bh, i_t - 1] the
    prefix sum of k_s k_s^T over the key tiles before this one (gram_tile_kernel + cumsum), instead of p @ 1 in the
    loop. It drops 1/6 of the loop's tensor-core work; those sums are then exact instead of over p as rounded."""
    i_bh, i_v, i_t = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    # the grid's last axis launches in order: start with the longest causal rows so the short ones fill the tail
    i_t = tl.num_programs(2) - 1 - i_t
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    o_s = tl.arange(0, BS)
    m_t, m_k, m_v = o_t < T, o_k < K, o_v < V

    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    # [BT, BK]
    b_q = tl.load(q + o_t[:, None] * s_qt + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    # column 0 of b_one is 1: the denominator as a product on the tensor core (see _zsum)
    b_one = ((o_s[:, None] >= 0) & (tl.arange(0, 16)[None, :] == 0)).to(tl.float32)  # [BS, 16]
    if v.dtype.element_ty == tl.bfloat16:
        b_one = b_one.to(tl.bfloat16)
    if Z_MODE == 2:
        b_z = tl.zeros([BT, 16], dtype=tl.float32)
    else:
        b_z = tl.zeros([BT], dtype=tl.float32)
    # the diagonal tile first, BT // BS key blocks: causal mask (it also hides keys past T from every stored row).
    # (Diagonal first: a loop that may run zero times ahead of it made ptxas serialize every wgmma, C7515.)
    for i_s in range(i_t * BT, i_t * BT + BT, BS):
        m_s = (i_s + o_s) < T
        b_k = tl.load(k + (i_s + o_s)[None, :] * s_kt + o_k[:, None], mask=m_k[:, None] & m_s[None, :], other=0)
        b_v = tl.load(v + (i_s + o_s)[:, None] * s_vt + o_v[None, :], mask=m_s[:, None] & m_v[None, :], other=0)
        b_p = _poly(_mm(b_q, b_k, INTERPRET), a0, a1, a2, SQUARE)
        b_p = tl.where(o_t[:, None] >= (i_s + o_s)[None, :], b_p, 0)
        b_z = _zsum(b_z, b_p, b_v, b_one, Z_MODE, INTERPRET)
        b_o += _mm(b_p, b_v, INTERPRET)
    # keys strictly before this query tile: no causal mask, no sequence-end mask
    for i_s in range(0, i_t * BT, BS):
        b_k = tl.load(k + (i_s + o_s)[None, :] * s_kt + o_k[:, None], mask=m_k[:, None], other=0)  # [BK, BS]
        b_v = tl.load(v + (i_s + o_s)[:, None] * s_vt + o_v[None, :], mask=m_v[None, :], other=0)  # [BS, BV]
        b_p = _poly(_mm(b_q, b_k, INTERPRET), a0, a1, a2, SQUARE)  # [BT, BS]
        if not Z_PREFIX:
            b_z = _zsum(b_z, b_p, b_v, b_one, Z_MODE, INTERPRET)
        b_o += _mm(b_p, b_v, INTERPRET)
    if Z_MODE == 2:
        b_z = tl.sum(b_z, 1)  # exact: the other 15 columns are 0
    if Z_PREFIX:
        o_kk = tl.arange(0, BK)
        p_g = g + (i_bh.to(tl.int64) * tl.num_programs(2) + i_t - 1) * BK * BK + o_kk[:, None] * BK + o_kk[None, :]
        b_g = tl.load(p_g, mask=(o_kk[:, None] * 0 + i_t) > 0, other=0)  # [BK, BK]; none before the first tile
        b_qf = b_q.to(tl.float32)
        b_z += tl.sum(tl.dot(b_qf, b_g, input_precision="ieee") * b_qf, 1)
    b_z += eps
    b_o = b_o * (1.0 / b_z)[:, None]
    p_o = o + i_b.to(tl.int64) * s_ob + i_h * s_oh + o_t[:, None] * s_ot + o_v[None, :]
    tl.store(p_o, _cast(b_o, p_o.dtype.element_ty, INTERPRET), mask=m_t[:, None] & m_v[None, :])
    if i_v == 0:
        tl.store(z + i_bh.to(tl.int64) * T + o_t, b_z, mask=m_t)


@triton.jit
def gram_tile_kernel(k, g, s_kb, s_kt, s_kh, T, H, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                     INTERPRET: tl.constexpr):
    """g[bh, j] = sum of k_s k_s^T over key tile j (BT keys), fp32 [BK, BK]; the wrapper turns it into prefix sums."""
    i_bh, i_j = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_s = i_j * BT + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    p_k = k + i_b.to(tl.int64) * s_kb + i_h * s_kh + o_s[:, None] * s_kt + o_k[None, :]
    b_k = tl.load(p_k, mask=(o_s < T)[:, None] & (o_k < K)[None, :], other=0)  # [BT, BK]
    if b_k.dtype == tl.float32:
        b_g = tl.dot(tl.trans(b_k), b_k, input_precision="ieee")
    else:
        b_g = _mm(tl.trans(b_k), b_k, INTERPRET)  # products of 16-bit values are exact in fp32
    tl.store(g + (i_bh.to(tl.int64) * tl.num_programs(1) + i_j) * BK * BK + o_k[:, None] * BK + o_k[None, :], b_g)


@triton.jit
def parallel_poly_bwd_prep_kernel(
    o, do, z, dos, delta, s_ob, s_ot, s_oh, s_db, s_dt, s_dh, T, H,
    V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr, INTERPRET: tl.constexpr,
):
    """dos = do / z (batch, heads, T, V) and delta = dos . o (batch, heads, T) fp32, so that dP_ts = dos_t . v_s -
    delta_t and dv_s = sum_t p_ts dos_t need no per-score division. delta uses dos as rounded for the tensor core
    (see _like_dot): at T = 1, o = v and dP - delta is then exactly 0, as dq and dk must be."""
    i_bh, i_t = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    m_t = o_t < T
    b_rz = 1.0 / tl.load(z + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=1.0)  # [BT]
    b_delta = tl.zeros([BT], dtype=tl.float32)
    o += i_b.to(tl.int64) * s_ob + i_h * s_oh
    do += i_b.to(tl.int64) * s_db + i_h * s_dh
    dos += i_bh.to(tl.int64) * T * V
    for i_v in range(0, V, BV):
        o_v = i_v + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        b_o = tl.load(o + o_t[:, None] * s_ot + o_v[None, :], mask=m, other=0).to(tl.float32)  # [BT, BV]
        b_do = tl.load(do + o_t[:, None] * s_dt + o_v[None, :], mask=m, other=0).to(tl.float32)
        p_dos = dos + o_t[:, None] * V + o_v[None, :]
        b_dos = _like_dot(b_do * b_rz[:, None], tl.zeros([1], dtype=p_dos.dtype.element_ty), True, INTERPRET)
        b_delta += tl.sum(b_dos.to(tl.float32) * b_o, 1)
        tl.store(p_dos, b_dos, mask=m)
    tl.store(delta + i_bh.to(tl.int64) * T + o_t, b_delta, mask=m_t)


@triton.jit
def parallel_poly_bwd_dq_kernel(
    q, k, v, dos, delta, dq,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_dqn, s_dqb, s_dqt, s_dqh,
    a1, a2, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SQUARE: tl.constexpr, INTERPRET: tl.constexpr,
):
    """dq_t = sum_{s<=t} (dos_t . v_s - delta_t) p'(x_ts) k_s for BT queries; value block i_v writes its share
    to dq[i_v] (delta counted by block 0 only): dq is linear in the value columns."""
    i_bh, i_v, i_t = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_t = tl.num_programs(2) - 1 - i_t
    i_b, i_h = i_bh // H, i_bh % H
    o_t = i_t * BT + tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    o_s = tl.arange(0, BS)
    m_t, m_k, m_v = o_t < T, o_k < K, o_v < V

    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    b_q = tl.load(q + o_t[:, None] * s_qt + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0)  # [BT, BK]
    p_do = dos + i_bh.to(tl.int64) * T * V + o_t[:, None] * V + o_v[None, :]
    b_do = tl.load(p_do, mask=m_t[:, None] & m_v[None, :], other=0)  # [BT, BV]
    b_delta = tl.load(delta + i_bh.to(tl.int64) * T + o_t, mask=m_t, other=0)  # [BT]
    b_delta = tl.where(i_v == 0, b_delta, 0.0)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    # the diagonal tile first (see the forward), then the keys before it
    for i_s in range(i_t * BT, i_t * BT + BT, BS):
        m_s = (i_s + o_s) < T
        b_k = tl.load(k + (i_s + o_s)[None, :] * s_kt + o_k[:, None], mask=m_k[:, None] & m_s[None, :], other=0)
        b_v = tl.load(v + (i_s + o_s)[None, :] * s_vt + o_v[:, None], mask=m_v[:, None] & m_s[None, :], other=0)
        b_x = _mm(b_q, b_k, INTERPRET)
        b_ds = (_mm(b_do, b_v, INTERPRET) - b_delta[:, None]) * _dpoly(b_x, a1, a2, SQUARE)
        b_ds = tl.where(o_t[:, None] >= (i_s + o_s)[None, :], b_ds, 0)
        b_dq += _mm(b_ds, tl.trans(b_k), INTERPRET)
    for i_s in range(0, i_t * BT, BS):
        b_k = tl.load(k + (i_s + o_s)[None, :] * s_kt + o_k[:, None], mask=m_k[:, None], other=0)  # [BK, BS]
        b_v = tl.load(v + (i_s + o_s)[None, :] * s_vt + o_v[:, None], mask=m_v[:, None], other=0)  # [BV, BS]
        b_x = _mm(b_q, b_k, INTERPRET)  # [BT, BS]
        b_ds = (_mm(b_do, b_v, INTERPRET) - b_delta[:, None]) * _dpoly(b_x, a1, a2, SQUARE)
        b_dq += _mm(b_ds, tl.trans(b_k), INTERPRET)
    if SQUARE:
        b_dq *= 2
    p_dq = dq + i_v * s_dqn + i_b.to(tl.int64) * s_dqb + i_h * s_dqh + o_t[:, None] * s_dqt + o_k[None, :]
    tl.store(p_dq, _cast(b_dq, p_dq.dtype.element_ty, INTERPRET), mask=m_t[:, None] & m_k[None, :])


@triton.jit
def parallel_poly_bwd_dkdv_kernel(
    q, k, v, dos, delta, dk, dv,
    s_qb, s_qt, s_qh, s_kb, s_kt, s_kh, s_vb, s_vt, s_vh, s_dkn, s_dkb, s_dkt, s_dkh, s_dvb, s_dvt, s_dvh,
    a0, a1, a2, T, H,
    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BS: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SQUARE: tl.constexpr, INTERPRET: tl.constexpr,
):
    """For BS keys: dv_s = sum_{t>=s} p_ts dos_t, dk_s = sum_{t>=s} (dos_t . v_s - delta_t) p'(x_ts) q_t, looping
    over query tiles of BT from the diagonal. Queries past T load as zeros (dos = delta = 0): they add nothing."""
    i_bh, i_v, i_s = tl.program_id(0), tl.program_id(1), tl.program_id(2)  # i_s = 0 has the most work: first
    i_b, i_h = i_bh // H, i_bh % H
    o_s = i_s * BS + tl.arange(0, BS)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    o_t = tl.arange(0, BT)
    m_s, m_k, m_v = o_s < T, o_k < K, o_v < V

    q += i_b.to(tl.int64) * s_qb + i_h * s_qh
    k += i_b.to(tl.int64) * s_kb + i_h * s_kh
    v += i_b.to(tl.int64) * s_vb + i_h * s_vh
    b_k = tl.load(k + o_s[:, None] * s_kt + o_k[None, :], mask=m_s[:, None] & m_k[None, :], other=0)  # [BS, BK]
    b_v = tl.load(v + o_s[:, None] * s_vt + o_v[None, :], mask=m_s[:, None] & m_v[None, :], other=0)  # [BS, BV]
    dos += i_bh.to(tl.int64) * T * V
    delta += i_bh.to(tl.int64) * T
    b_dk = tl.zeros([BS, BK], dtype=tl.float32)
    b_dv = tl.zeros([BS, BV], dtype=tl.float32)
    # the diagonal tile, BS // BT query blocks with the causal mask
    for i_t in range(i_s * BS, i_s * BS + BS, BT):
        m_t = (i_t + o_t) < T
        b_q = tl.load(q + (i_t + o_t)[None, :] * s_qt + o_k[:, None], mask=m_k[:, None] & m_t[None, :], other=0)
        b_do = tl.load(dos + (i_t + o_t)[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0)
        b_delta = tl.where(i_v == 0, tl.load(delta + i_t + o_t, mask=m_t, other=0), 0.0)
        b_x = _mm(b_k, b_q, INTERPRET)  # [BS, BT]
        m_c = (i_t + o_t)[None, :] >= o_s[:, None]
        b_p = tl.where(m_c, _poly(b_x, a0, a1, a2, SQUARE), 0)
        b_dv += _mm(b_p, b_do, INTERPRET)
        b_ds = (_mm(b_v, tl.trans(b_do), INTERPRET) - b_delta[None, :]) * _dpoly(b_x, a1, a2, SQUARE)
        b_dk += _mm(tl.where(m_c, b_ds, 0), tl.trans(b_q), INTERPRET)
    # query tiles wholly after the keys
    for i_t in range(i_s * BS + BS, T, BT):
        m_t = (i_t + o_t) < T
        b_q = tl.load(q + (i_t + o_t)[None, :] * s_qt + o_k[:, None], mask=m_k[:, None] & m_t[None, :], other=0)
        b_do = tl.load(dos + (i_t + o_t)[:, None] * V + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0)
        b_delta = tl.where(i_v == 0, tl.load(delta + i_t + o_t, mask=m_t, other=0), 0.0)
        b_x = _mm(b_k, b_q, INTERPRET)
        b_dv += _mm(_poly(b_x, a0, a1, a2, SQUARE), b_do, INTERPRET)
        b_ds = (_mm(b_v, tl.trans(b_do), INTERPRET) - b_delta[None, :]) * _dpoly(b_x, a1, a2, SQUARE)
        b_dk += _mm(b_ds, tl.trans(b_q), INTERPRET)
    if SQUARE:
        b_dk *= 2
    p_dk = dk + i_v * s_dkn + i_b.to(tl.int64) * s_dkb + i_h * s_dkh + o_s[:, None] * s_dkt + o_k[None, :]
    tl.store(p_dk, _cast(b_dk, p_dk.dtype.element_ty, INTERPRET), mask=m_s[:, None] & m_k[None, :])
    p_dv = dv + i_b.to(tl.int64) * s_dvb + i_h * s_dvh + o_s[:, None] * s_dvt + o_v[None, :]
    tl.store(p_dv, _cast(b_dv, p_dv.dtype.element_ty, INTERPRET), mask=m_s[:, None] & m_v[None, :])
