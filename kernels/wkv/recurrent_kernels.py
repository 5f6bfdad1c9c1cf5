"""Triton kernels of RWKV-v4's WKV, after the official CUDA kernel (the autograd wrapper is in recurrent.py).

Per channel, with w < 0 the per-step log-decay and u the bonus of the current key:
    a_t = sum_{j<t} e^{(t-1-j) w + k_j} v_j,  b_t = sum_{j<t} e^{(t-1-j) w + k_j}
    y_t = (a_t + e^{u + k_t} v_t) / (b_t + e^{u + k_t})
One program per (channel block of BC, batch row) walks the sequence one step at a time. The state (a, b) is
kept as (num, den) scaled by e^{-log}, log a running maximum of the exponents, so nothing overflows for any k.

Backward, the official kernel's two passes (q_t = dL/da_t = dL/dy_t / denominator, p_t the log-scale of y_t):
  - the forward recurrence again, for dw = sum_t q_t (a'_t - y_t b'_t) with a' = da/dw (a'_{t+1} = e^w (a'_t +
    a_t)) and du; it stores q_t e^{p_t} and p_t in fp32 scratch for
  - the reverse pass, which carries R_t = sum_{s>t} e^{(s-1-t) w} q_s and R'_t (the same weighted by -y_s),
    scaled by their own running maximum: dk_t = e^{k_t} (v_t R_t + R'_t) + direct term, dv_t = e^{k_t} R_t + direct.
All exponents are <= 0 (the running maxima bound every term), all math is fp32. STAGES > 1 lets Triton's
pipeliner issue the loads of later steps early, so their latency overlaps the math of the step-by-step chain.
"""

import triton
import triton.language as tl

EMPTY_LOG = tl.constexpr(-1e38)  # log-scale of an empty sum: exp(EMPTY_LOG - anything finite) == 0


@triton.jit
def _channel_block(w, u, C, BC: tl.constexpr):
    """This program's batch row (int64), channel offsets and mask, and its w, u [BC]."""
    i_c, i_b = tl.program_id(0), tl.program_id(1)
    i_b64 = i_b.to(tl.int64)
    o_c = i_c * BC + tl.arange(0, BC)
    m_c = o_c < C
    b_w = tl.load(w + o_c, mask=m_c, other=0.0)
    b_u = tl.load(u + o_c, mask=m_c, other=0.0)
    return i_b64, o_c, m_c, b_w, b_u


@triton.jit
def wkv_fwd_kernel(w, u, k, v, y, s_kb, s_kt, s_vb, s_vt, T, C, BC: tl.constexpr, STAGES: tl.constexpr):
    # w, u: [C] fp32; k, v: [batch, T, C] (any strides but the last); y: [batch, T, C] fp32 contiguous
    i_b64, o_c, m_c, b_w, b_u = _channel_block(w, u, C, BC)
    p_k, p_v, p_y = k + i_b64 * s_kb + o_c, v + i_b64 * s_vb + o_c, y + i_b64 * T * C + o_c
    b_num = tl.zeros([BC], dtype=tl.float32)
    b_den = tl.zeros([BC], dtype=tl.float32)
    b_log = tl.full([BC], EMPTY_LOG, dtype=tl.float32)
    for t in tl.range(0, T, num_stages=STAGES):
        b_k = tl.load(p_k + t * s_kt, mask=m_c, other=0.0).to(tl.float32)
        b_v = tl.load(p_v + t * s_vt, mask=m_c, other=0.0).to(tl.float32)
        b_p = tl.maximum(b_log, b_u + b_k)  # the output's scale
        b_e1, b_e2 = tl.exp(b_log - b_p), tl.exp(b_u + b_k - b_p)
        tl.store(p_y + t * C, (b_e1 * b_num + b_e2 * b_v) / (b_e1 * b_den + b_e2), mask=m_c)
        b_p = tl.maximum(b_log + b_w, b_k)  # the next state's scale
        b_e1, b_e2 = tl.exp(b_log + b_w - b_p), tl.exp(b_k - b_p)
        b_num = b_e1 * b_num + b_e2 * b_v
        b_den = b_e1 * b_den + b_e2
        b_log = b_p


@triton.jit
def wkv_bwd_kernel(
    w, u, k, v, y, dy, dw, du, dk, dv, qs, ps,
    s_kb, s_kt, s_vb, s_vt, s_yb, s_yt, T, C, BC: tl.constexpr, STAGES: tl.constexpr,
):
    # y: the forward's output, [batch, T, C] fp32 contiguous; dy: [batch, T, C] (any strides but the last);
    # dw, du: [batch, C] fp32 (summed over batch by the wrapper); dk, dv, and the scratch qs, ps: [batch, T, C] fp32
    i_b64, o_c, m_c, b_w, b_u = _channel_block(w, u, C, BC)
    p_k, p_v, p_dy = k + i_b64 * s_kb + o_c, v + i_b64 * s_vb + o_c, dy + i_b64 * s_yb + o_c
    o_btc = i_b64 * T * C + o_c  # offsets into the contiguous [batch, T, C] buffers
    b_num = tl.zeros([BC], dtype=tl.float32)
    b_den = tl.zeros([BC], dtype=tl.float32)
    b_log = tl.full([BC], EMPTY_LOG, dtype=tl.float32)
    b_ga = tl.zeros([BC], dtype=tl.float32)  # a'_t, b'_t scaled like a_t, b_t
    b_gb = tl.zeros([BC], dtype=tl.float32)
    b_dw = tl.zeros([BC], dtype=tl.float32)
    b_du = tl.zeros([BC], dtype=tl.float32)
    for t in tl.range(0, T, num_stages=STAGES):
        b_k = tl.load(p_k + t * s_kt, mask=m_c, other=0.0).to(tl.float32)
        b_v = tl.load(p_v + t * s_vt, mask=m_c, other=0.0).to(tl.float32)
        b_y = tl.load(y + o_btc + t * C, mask=m_c, other=0.0)
        b_dy = tl.load(p_dy + t * s_yt, mask=m_c, other=0.0).to(tl.float32)
        b_p = tl.maximum(b_log, b_u + b_k)
        b_e1, b_e2 = tl.exp(b_log - b_p), tl.exp(b_u + b_k - b_p)
        b_q = b_dy / (b_e1 * b_den + b_e2)  # q_t e^{p_t}
        b_dw += (b_ga - b_gb * b_y) * b_e1 * b_q
        b_du += (b_v - b_y) * b_e2 * b_q
        tl.store(qs + o_btc + t * C, b_q, mask=m_c)
        tl.store(ps + o_btc + t * C, b_p, mask=m_c)
        b_p = tl.maximum(b_log + b_w, b_k)
        b_e1, b_e2 = tl.exp(b_log + b_w - b_p), tl.exp(b_k - b_p)
        b_ga = b_e1 * (b_ga + b_num)
        b_gb = b_e1 * (b_gb + b_den)
        b_num = b_e1 * b_num + b_e2 * b_v
        b_den = b_e1 * b_den + b_e2
        b_log = b_p
    tl.store(dw + i_b64 * C + o_c, b_dw, mask=m_c)
    tl.store(du + i_b64 * C + o_c, b_du, mask=m_c)
    # each thread reads back the q, p it wrote; the barrier only orders the two passes within the program
    tl.debug_barrier()
    b_ra = tl.zeros([BC], dtype=tl.float32)  # R_t and R'_t, scaled by e^{-b_rlog}
    b_rb = tl.zeros([BC], dtype=tl.float32)
    b_rlog = tl.full([BC], EMPTY_LOG, dtype=tl.float32)
    for i in tl.range(0, T, num_stages=STAGES):
        t = T - 1 - i
        b_k = tl.load(p_k + t * s_kt, mask=m_c, other=0.0).to(tl.float32)
        b_v = tl.load(p_v + t * s_vt, mask=m_c, other=0.0).to(tl.float32)
        b_y = tl.load(y + o_btc + t * C, mask=m_c, other=0.0)
        b_q = tl.load(qs + o_btc + t * C, mask=m_c, other=0.0)
        b_p = tl.load(ps + o_btc + t * C, mask=m_c, other=0.0)
        b_e = tl.exp(b_u + b_k - b_p) * b_q  # the current key's own weight in dL/dy_t / denominator
        b_s = tl.exp(b_k + b_rlog)  # e^{k_t} in R's scale: <= 1, as k_t + (s-1-t) w <= p_s
        tl.store(dk + o_btc + t * C, b_e * (b_v - b_y) + b_s * (b_ra * b_v + b_rb), mask=m_c)
        tl.store(dv + o_btc + t * C, b_e + b_s * b_ra, mask=m_c)
        b_top = tl.maximum(b_rlog + b_w, -b_p)  # R_{t-1} = e^w R_t + q_t, q_t = (q_t e^{p_t}) e^{-p_t}
        b_f1, b_f2 = tl.exp(b_rlog + b_w - b_top), tl.exp(-b_p - b_top) * b_q
        b_ra = b_f1 * b_ra + b_f2
        b_rb = b_f1 * b_rb - b_f2 * b_y
        b_rlog = b_top
