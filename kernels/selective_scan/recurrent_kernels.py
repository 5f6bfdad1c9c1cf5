"""Triton kernels of the selective scan (the autograd wrapper is in recurrent.py beside this file).

h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, y_t = C_t . h_t, per batch row and channel d, h_t in R^N.
One program per (channel block of BD, batch row) holds its [BD, BN] fp32 state in registers and walks the
sequence one step at a time, as mamba-ssm's kernel does; only (batch, seq_len, D) and (batch, seq_len, N)
tensors are read and written, never the (batch, seq_len, D, N) states.

The backward pass needs h_t and h_{t-1} at every step in reverse order. The forward pass stores the state
entering every chunk of CHUNK steps (hc [batch, NC, D, N]); the backward pass walks the chunks from the last,
recomputes the chunk's CHUNK states from its entry state into a per-program scratch tile (hs: CHUNK + 1 slots
of [BD, BN], small enough to stay in L1/L2), then runs the reverse recurrence over the chunk:
    g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}      (dL/dh_t, [BD, BN])
    du_t = delta_t (g_t . B_t), dB_t = sum_d g_t delta_t u_t, dC_t = sum_d h_t dy_t
    x_t = g_t exp(delta_t A) h_{t-1}                  (dL/d(delta_t A)): dA += x_t delta_t, ddelta_t = x_t . A + ...
dB, dC are summed over channels per block (fp32 partials [ND, batch, T, N], summed by the wrapper) and dA
over time per program (fp32 partials [batch, D, N]); no atomics, so the gradients are deterministic.
Masked loads give 0 on padded channels and states, which then stay 0. The per-step loads are written out rather
than put in a helper: each call of a jit helper costs ~0.2 ms in the interpreter, which the CPU tests run.
"""

import triton
import triton.language as tl


@triton.jit
def selective_scan_fwd_kernel(
    u, delta, A, B, C, y, hc,
    s_ub, s_ut, s_db, s_dt, s_Bb, s_Bt, s_Cb, s_Ct,
    T, NC, D, N,
    BD: tl.constexpr, BN: tl.constexpr, CHUNK: tl.constexpr,
):
    # u, delta: [batch, T, D]; B, C: [batch, T, N] (any strides but the last); A: [D, N] contiguous;
    # y: [batch, T, D] fp32 contiguous; hc: [batch, NC, D, N] fp32, the state entering each chunk
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    i_b64 = i_b.to(tl.int64)
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    m_d, m_n = o_d < D, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    o_dn = o_d[:, None] * N + o_n[None, :]
    b_A = tl.load(A + o_dn, mask=m_dn, other=0.0).to(tl.float32)  # [BD, BN]
    p_u, p_dt = u + i_b64 * s_ub + o_d, delta + i_b64 * s_db + o_d
    p_B, p_C = B + i_b64 * s_Bb + o_n, C + i_b64 * s_Cb + o_n
    p_y = y + i_b64 * T * D + o_d
    p_hc = hc + i_b64 * NC * D * N + o_dn
    b_h = tl.zeros([BD, BN], dtype=tl.float32)
    for i_c in range(NC):
        tl.store(p_hc + i_c * D * N, b_h, mask=m_dn)
        for t in range(i_c * CHUNK, tl.minimum(i_c * CHUNK + CHUNK, T)):
            b_u = tl.load(p_u + t * s_ut, mask=m_d, other=0.0).to(tl.float32)
            b_dt = tl.load(p_dt + t * s_dt, mask=m_d, other=0.0).to(tl.float32)
            b_B = tl.load(p_B + t * s_Bt, mask=m_n, other=0.0).to(tl.float32)
            b_C = tl.load(p_C + t * s_Ct, mask=m_n, other=0.0).to(tl.float32)
            b_h = tl.exp(b_dt[:, None] * b_A) * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
            tl.store(p_y + t * D, tl.sum(b_h * b_C[None, :], 1), mask=m_d)


@triton.jit
def selective_scan_bwd_kernel(
    u, delta, A, B, C, dy, hc, hs, du, ddelta, dA, dB, dC,
    s_ub, s_ut, s_db, s_dt, s_Bb, s_Bt, s_Cb, s_Ct, s_yb, s_yt,
    T, NC, D, N,
    BD: tl.constexpr, BN: tl.constexpr, CHUNK: tl.constexpr,
):
    # dy: [batch, T, D] (any strides but the last); hc from the forward pass; hs: [batch, ND, CHUNK + 1, BD, BN]
    # fp32 scratch (slot 0: the chunk's entry state, slot s: h at step s - 1 of the chunk);
    # du, ddelta: [batch, T, D] fp32; dA: [batch, D, N] fp32; dB, dC: [ND, batch, T, N] fp32
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    ND = tl.num_programs(0)
    i_b64 = i_b.to(tl.int64)
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    m_d, m_n = o_d < D, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    o_dn = o_d[:, None] * N + o_n[None, :]
    b_A = tl.load(A + o_dn, mask=m_dn, other=0.0).to(tl.float32)  # [BD, BN]
    p_u, p_dt = u + i_b64 * s_ub + o_d, delta + i_b64 * s_db + o_d
    p_B, p_C = B + i_b64 * s_Bb + o_n, C + i_b64 * s_Cb + o_n
    p_dy = dy + i_b64 * s_yb + o_d
    p_du, p_ddt = du + i_b64 * T * D + o_d, ddelta + i_b64 * T * D + o_d
    p_dB = dB + (i_d * tl.num_programs(1) + i_b64) * T * N + o_n
    p_dC = dC + (i_d * tl.num_programs(1) + i_b64) * T * N + o_n
    p_hc = hc + i_b64 * NC * D * N + o_dn
    # the scratch tile is private to the program and read back in the layout it was written in
    p_hs = hs + (i_b64 * ND + i_d) * (CHUNK + 1) * BD * BN + tl.arange(0, BD)[:, None] * BN + o_n[None, :]
    b_g = tl.zeros([BD, BN], dtype=tl.float32)  # exp(delta_{t+1} A) g_{t+1}: what step t + 1 passes back
    b_dA = tl.zeros([BD, BN], dtype=tl.float32)
    for j in range(NC):
        i_c = NC - 1 - j
        t0 = i_c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, T)
        b_h = tl.load(p_hc + i_c * D * N, mask=m_dn, other=0.0)
        tl.store(p_hs, b_h)
        for t in range(t0, t1):  # recompute the chunk's states
            b_u = tl.load(p_u + t * s_ut, mask=m_d, other=0.0).to(tl.float32)
            b_dt = tl.load(p_dt + t * s_dt, mask=m_d, other=0.0).to(tl.float32)
            b_B = tl.load(p_B + t * s_Bt, mask=m_n, other=0.0).to(tl.float32)
            b_h = tl.exp(b_dt[:, None] * b_A) * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
            tl.store(p_hs + (t - t0 + 1) * BD * BN, b_h)
        tl.debug_barrier()
        for i in range(t1 - t0):  # then walk it backwards
            t = t1 - 1 - i
            b_u = tl.load(p_u + t * s_ut, mask=m_d, other=0.0).to(tl.float32)
            b_dt = tl.load(p_dt + t * s_dt, mask=m_d, other=0.0).to(tl.float32)
            b_B = tl.load(p_B + t * s_Bt, mask=m_n, other=0.0).to(tl.float32)
            b_C = tl.load(p_C + t * s_Ct, mask=m_n, other=0.0).to(tl.float32)
            b_dy = tl.load(p_dy + t * s_yt, mask=m_d, other=0.0).to(tl.float32)
            b_h = tl.load(p_hs + (t - t0 + 1) * BD * BN)  # h_t
            b_hp = tl.load(p_hs + (t - t0) * BD * BN)  # h_{t-1}
            b_g += b_dy[:, None] * b_C[None, :]  # g_t
            b_a = tl.exp(b_dt[:, None] * b_A)
            tl.store(p_dC + t * N, tl.sum(b_h * b_dy[:, None], 0), mask=m_n)
            tl.store(p_dB + t * N, tl.sum(b_g * (b_dt * b_u)[:, None], 0), mask=m_n)
            b_ddu = tl.sum(b_g * b_B[None, :], 1)  # dL/d(delta_t u_t) [BD]
            b_x = b_g * b_a * b_hp  # dL/d(delta_t A) [BD, BN]
            b_dA += b_x * b_dt[:, None]
            tl.store(p_du + t * D, b_ddu * b_dt, mask=m_d)
            tl.store(p_ddt + t * D, tl.sum(b_x * b_A, 1) + b_ddu * b_u, mask=m_d)
            b_g = b_a * b_g
        tl.debug_barrier()  # the next chunk overwrites the scratch tile
    tl.store(dA + i_b64 * D * N + o_dn, b_dA, mask=m_dn)
