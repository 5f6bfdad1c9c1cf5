"""Triton kernels of the selective scan (the autograd wrapper is in recurrent.py beside this file).

Per batch row and channel d, with h_t in R^N and mamba-ssm's optional fusions (flags HAS_BIAS, SOFTPLUS, HAS_D,
HAS_Z):
    delta_t = softplus(dt_t + bias)                   (the input is dt; without the flags delta_t = dt_t)
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t,  s_t = C_t . h_t + D u_t,  y_t = s_t silu(z_t)
One program per (channel block of BD, batch row) holds its [BD, BN] fp32 state in registers and walks the
sequence one step at a time, as mamba-ssm's kernel does; only (batch, T, DI) and (batch, T, N) tensors are read
and written, never the (batch, T, DI, N) states.

The backward pass needs h_t and h_{t-1} at every step in reverse order. The forward pass stores the state
entering every chunk of CHUNK steps (hc [batch, NC, DI, N]); the backward pass walks the chunks from the last,
recomputes the chunk's CHUNK states from its entry state into a per-program scratch tile (hs: CHUNK + 1 slots
of [BD, BN], small enough to stay in L1/L2), then runs the reverse recurrence over the chunk, with g_t = dL/ds_t:
    G_t = C_t g_t + exp(delta_{t+1} A) G_{t+1}       (G_t = dL/dh_t, [BD, BN])
    du_t = delta_t (G_t . B_t) + D g_t, dB_t = sum_d G_t delta_t u_t, dC_t = sum_d h_t g_t
    x_t = G_t exp(delta_t A) h_{t-1}                  (dL/d(delta_t A)): dA += x_t delta_t, ddelta_t = x_t . A + ...
dB, dC are summed over channels per block (fp32 partials [ND, batch, T, N]) and dA, dD, dbias over time per
program (fp32 partials [batch, DI, N] and [batch, DI]); the wrapper sums the partials: no atomics, so the
gradients are deterministic. Masked loads give 0 on padded channels and states, which then stay 0.

All per-step tensors are contiguous fp32 [batch, T, DI] or [batch, T, N] (the wrapper upcasts). Each step waits on
its loads and the sequence is one long chain of steps: STAGES > 1 lets Triton's pipeliner issue the loads of
later steps early through shared memory (it does so only for loads of >= 4 bytes per thread, hence fp32), so
their latency overlaps the math of earlier ones. Per-step loads are written out, not put in a helper: each call
of a jit helper costs ~0.2 ms in the interpreter, which the CPU tests run.
"""

import triton
import triton.language as tl


@triton.jit
def _softplus(x):
    # log(1 + e^x) without overflow; below ~-17 it rounds to 0 (the true value is < 1e-7)
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _channel_block(A, D, bias, i_d, DI, N, BD: tl.constexpr, BN: tl.constexpr, HAS_D: tl.constexpr,
                   HAS_BIAS: tl.constexpr):
    """Offsets, masks and the per-channel parameters of channel block i_d: A [BD, BN], D and bias [BD] (0 if absent)."""
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, BN)
    m_d, m_n = o_d < DI, o_n < N
    m_dn = m_d[:, None] & m_n[None, :]
    o_dn = o_d[:, None] * N + o_n[None, :]
    b_A = tl.load(A + o_dn, mask=m_dn, other=0.0)  # [BD, BN]
    b_D = tl.zeros([BD], dtype=tl.float32)
    b_bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        b_D = tl.load(D + o_d, mask=m_d, other=0.0)
    if HAS_BIAS:
        b_bias = tl.load(bias + o_d, mask=m_d, other=0.0)
    return o_d, o_n, m_d, m_n, m_dn, o_dn, b_A, b_D, b_bias


@triton.jit
def selective_scan_fwd_kernel(
    u, dt, A, B, C, D, z, bias, y, hc, T, NC, DI, N,
    BD: tl.constexpr, BN: tl.constexpr, CHUNK: tl.constexpr, STAGES: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
):
    # u, dt, z, y: [batch, T, DI]; B, C: [batch, T, N]; A: [DI, N]; D, bias: [DI];
    # hc: [batch, NC, DI, N], the state entering each chunk
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    i_b64 = i_b.to(tl.int64)
    o_d, o_n, m_d, m_n, m_dn, o_dn, b_A, b_D, b_bias = _channel_block(A, D, bias, i_d, DI, N, BD, BN, HAS_D, HAS_BIAS)
    o_td = i_b64 * T * DI + o_d  # [BD] offsets of step 0 into the [batch, T, DI] tensors
    o_tn = i_b64 * T * N + o_n
    p_hc = hc + i_b64 * NC * DI * N + o_dn
    b_h = tl.zeros([BD, BN], dtype=tl.float32)
    for i_c in range(NC):
        tl.store(p_hc + i_c * DI * N, b_h, mask=m_dn)
        for t in tl.range(i_c * CHUNK, tl.minimum(i_c * CHUNK + CHUNK, T), num_stages=STAGES):
            b_u = tl.load(u + o_td + t * DI, mask=m_d, other=0.0)
            b_dt = tl.load(dt + o_td + t * DI, mask=m_d, other=0.0) + b_bias
            b_B = tl.load(B + o_tn + t * N, mask=m_n, other=0.0)
            b_C = tl.load(C + o_tn + t * N, mask=m_n, other=0.0)
            if SOFTPLUS:
                b_dt = tl.where(m_d, _softplus(b_dt), 0.0)
            b_h = tl.exp(b_dt[:, None] * b_A) * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
            b_y = tl.sum(b_h * b_C[None, :], 1) + b_D * b_u
            if HAS_Z:
                b_z = tl.load(z + o_td + t * DI, mask=m_d, other=0.0)
                b_y = b_y * b_z * tl.sigmoid(b_z)
            tl.store(y + o_td + t * DI, b_y, mask=m_d)


@triton.jit
def selective_scan_bwd_kernel(
    u, dt, A, B, C, D, z, bias, dy, hc, hs, du, ddt, dA, dB, dC, dD, dz, dbias, T, NC, DI, N,
    BD: tl.constexpr, BN: tl.constexpr, CHUNK: tl.constexpr, STAGES: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
):
    # dy, du, ddt, dz: [batch, T, DI]; hc from the forward pass; hs: [batch, ND, CHUNK + 1, BD, BN] scratch (slot 0:
    # the chunk's entry state, slot s: h at step s - 1 of the chunk); dA: [batch, DI, N]; dB, dC: [ND, batch, T, N];
    # dD, dbias: [batch, DI]. Everything fp32.
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    ND = tl.num_programs(0)
    i_b64 = i_b.to(tl.int64)
    o_d, o_n, m_d, m_n, m_dn, o_dn, b_A, b_D, b_bias = _channel_block(A, D, bias, i_d, DI, N, BD, BN, HAS_D, HAS_BIAS)
    o_td = i_b64 * T * DI + o_d
    o_tn = i_b64 * T * N + o_n
    o_part = (i_d * tl.num_programs(1) + i_b64) * T * N + o_n  # this block's rows of the dB, dC partials
    p_hc = hc + i_b64 * NC * DI * N + o_dn
    # the scratch tile is private to the program and read back in the layout it was written in
    p_hs = hs + (i_b64 * ND + i_d) * (CHUNK + 1) * BD * BN + tl.arange(0, BD)[:, None] * BN + o_n[None, :]
    b_G = tl.zeros([BD, BN], dtype=tl.float32)  # exp(delta_{t+1} A) G_{t+1}: what step t + 1 passes back
    b_dA = tl.zeros([BD, BN], dtype=tl.float32)
    b_dD = tl.zeros([BD], dtype=tl.float32)
    b_dbias = tl.zeros([BD], dtype=tl.float32)
    for j in range(NC):
        i_c = NC - 1 - j
        t0 = i_c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, T)
        b_h = tl.load(p_hc + i_c * DI * N, mask=m_dn, other=0.0)
        tl.store(p_hs, b_h)
        for t in tl.range(t0, t1, num_stages=STAGES):  # recompute the chunk's states
            b_u = tl.load(u + o_td + t * DI, mask=m_d, other=0.0)
            b_dt = tl.load(dt + o_td + t * DI, mask=m_d, other=0.0) + b_bias
            b_B = tl.load(B + o_tn + t * N, mask=m_n, other=0.0)
            if SOFTPLUS:
                b_dt = tl.where(m_d, _softplus(b_dt), 0.0)
            b_h = tl.exp(b_dt[:, None] * b_A) * b_h + (b_dt * b_u)[:, None] * b_B[None, :]
            tl.store(p_hs + (t - t0 + 1) * BD * BN, b_h)
        tl.debug_barrier()
        for i in tl.range(0, t1 - t0, num_stages=STAGES):  # then walk it backwards
            t = t1 - 1 - i
            b_u = tl.load(u + o_td + t * DI, mask=m_d, other=0.0)
            b_x = tl.load(dt + o_td + t * DI, mask=m_d, other=0.0) + b_bias  # softplus input
            b_B = tl.load(B + o_tn + t * N, mask=m_n, other=0.0)
            b_C = tl.load(C + o_tn + t * N, mask=m_n, other=0.0)
            b_g = tl.load(dy + o_td + t * DI, mask=m_d, other=0.0)
            b_h = tl.load(p_hs + (t - t0 + 1) * BD * BN)  # h_t
            b_hp = tl.load(p_hs + (t - t0) * BD * BN)  # h_{t-1}
            if SOFTPLUS:
                b_dt = tl.where(m_d, _softplus(b_x), 0.0)
            else:
                b_dt = b_x
            if HAS_Z:  # y = s silu(z): g = dy silu(z), dz = dy s silu'(z), s recomputed from h_t
                b_z = tl.load(z + o_td + t * DI, mask=m_d, other=0.0)
                b_sig = tl.sigmoid(b_z)
                b_s = tl.sum(b_h * b_C[None, :], 1) + b_D * b_u
                tl.store(dz + o_td + t * DI, b_g * b_s * b_sig * (1.0 + b_z * (1.0 - b_sig)), mask=m_d)
                b_g = b_g * b_z * b_sig
            b_dD += b_g * b_u
            b_G += b_g[:, None] * b_C[None, :]  # G_t
            b_a = tl.exp(b_dt[:, None] * b_A)
            tl.store(dC + o_part + t * N, tl.sum(b_h * b_g[:, None], 0), mask=m_n)
            tl.store(dB + o_part + t * N, tl.sum(b_G * (b_dt * b_u)[:, None], 0), mask=m_n)
            b_ddu = tl.sum(b_G * b_B[None, :], 1)  # dL/d(delta_t u_t) [BD]
            b_xa = b_G * b_a * b_hp  # dL/d(delta_t A) [BD, BN]
            b_dA += b_xa * b_dt[:, None]
            b_ddt = tl.sum(b_xa * b_A, 1) + b_ddu * b_u  # dL/d delta_t
            if SOFTPLUS:
                b_ddt = b_ddt * tl.sigmoid(b_x)
            b_dbias += b_ddt
            tl.store(du + o_td + t * DI, b_ddu * b_dt + b_D * b_g, mask=m_d)
            tl.store(ddt + o_td + t * DI, b_ddt, mask=m_d)
            b_G = b_a * b_G
        tl.debug_barrier()  # the next chunk overwrites the scratch tile
    tl.store(dA + i_b64 * DI * N + o_dn, b_dA, mask=m_dn)
    tl.store(dD + i_b64 * DI + o_d, b_dD, mask=m_d)
    tl.store(dbias + i_b64 * DI + o_d, b_dbias, mask=m_d)
