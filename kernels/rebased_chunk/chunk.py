"""Chunked (linear-time) ReBased: `chunk_rebased`, forward and backward through Triton kernels.

Two passes per direction: a state pass (per segment of chunks, parallel over segments, feature and
value blocks) stores one state snapshot per chunk; the segment totals are scanned in PyTorch (a
tiny [bh, NS, D', dv] tensor); an output pass, parallel over chunks, reads the snapshot plus its
segment's prefix. Memory is O(seq_len): the snapshots are seq_len / BT x D' x dv per head.
"""

import functools

import torch
import triton

from ..launch import empty, on_input_device
from .tuned import CONFIG as TUNED_CONFIG
from .chunk_kernels import (
    chunk_rebased_bwd_dkdv_kernel,
    chunk_rebased_bwd_dq_kernel,
    chunk_rebased_fwd_o_kernel,
    chunk_rebased_scan_kernel,
    chunk_rebased_state_kernel,
)

# Launch shape (BT chunk length, BF feature block, ...): tuned.py, written from measurements on the H100
CONFIG = dict(TUNED_CONFIG)


@functools.lru_cache(maxsize=None)
def _feature_tables(d, bf, device):
    """int32 (I, J) of the D' = d(d+1)/2 symmetric features, zero-padded to a multiple of bf."""
    I, J = torch.triu_indices(d, d)
    dp = triton.cdiv(I.numel(), bf) * bf
    pad = torch.zeros(dp - I.numel(), dtype=I.dtype)
    return torch.cat([I, pad]).to(device, torch.int32), torch.cat([J, pad]).to(device, torch.int32)


@functools.lru_cache(maxsize=None)
def _sm_count(device):
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _segments(nt, n_other, device, cfg):
    """Chunks per segment: split the sequence so that segments x n_other programs fill the GPU."""
    if cfg.get("chunks_per_segment"):
        return cfg["chunks_per_segment"]
    ns = min(nt, triton.cdiv(cfg["programs_per_sm"] * _sm_count(device), n_other))
    return triton.cdiv(nt, max(ns, 1))


def _pow2(n):
    return max(16, triton.next_power_of_2(n))  # tl.dot needs every dim >= 16


def _precision(dtype):
    # fp32 inputs get true fp32 dots (the reference semantics); 16-bit dots ignore this
    return "ieee" if dtype == torch.float32 else "tf32"


def _states(x, y, den, r, scale, init, cfg, dot_dtype, reverse):
    """Per-chunk snapshots (h, hz), segment prefixes (hs, hzs), chunks per segment, and the total (S, z).

    Forward: x = k, y = v. Reverse: x = q (times scale), y = do, with den and r for g = do / den and weights r.
    """
    b, t, nh, d = x.shape
    dv = y.shape[-1]
    bt, bf = cfg["BT"], cfg["BF"]
    fI, fJ = _feature_tables(d, bf, x.device)
    dp = fI.numel()
    nt = triton.cdiv(t, bt)
    cps = _segments(nt, (dp // bf) * b * nh, x.device, cfg)
    ns = triton.cdiv(nt, cps)
    h = empty(b * nh, nt, dp, dv, device=x.device, dtype=dot_dtype)
    hz = empty(b * nh, nt, dp, device=x.device, dtype=torch.float32)
    hs = empty(b * nh, ns, dp, dv, device=x.device, dtype=torch.float32)
    hzs = empty(b * nh, ns, dp, device=x.device, dtype=torch.float32)
    chunk_rebased_state_kernel[(dp // bf, b * nh * ns)](
        x, y, den, r, fI, fJ, h, hz, hs, hzs, scale, t, nt, cps,
        H=nh, K=d, V=dv, DF=d * (d + 1) // 2, DP=dp, BT=bt, BK=_pow2(d), BF=bf, BV=_pow2(dv),
        REVERSE=reverse, PREC=_precision(dot_dtype), num_warps=cfg["warps_state"],
    )
    # exclusive scan of the segment totals (towards the start when reverse), from init; totals out
    S0, z0 = init
    St = empty(b * nh, dp, dv, device=x.device, dtype=torch.float32)
    zt = empty(b * nh, dp, device=x.device, dtype=torch.float32)
    for seg, start, total, n in ((hs, S0, St, dp * dv), (hzs, z0, zt, dp)):
        block = min(1024, triton.next_power_of_2(n))
        chunk_rebased_scan_kernel[(triton.cdiv(n, block), b * nh)](
            seg, start, total, ns, N=n, BLOCK=block, REVERSE=reverse, HAS_INIT=start is not None,
        )
    return h, hz, hs, hzs, cps, (St, zt)


def _pad_state(state, b, nh, dp, dv, device):
    """User (S, z) with D' rows -> fp32 (bh, DP, dv), (bh, DP); None -> (None, None)."""
    if state is None:
        return None, None
    S, z = state
    pad = dp - S.shape[-2]
    S = torch.nn.functional.pad(S.float(), (0, 0, 0, pad)).reshape(b * nh, dp, dv)
    z = torch.nn.functional.pad(z.float(), (0, pad)).reshape(b * nh, dp)
    return S, z


def _unpad_state(S, z, b, nh, df):
    return S[:, :df].reshape(b, nh, df, -1), z[:, :df].reshape(b, nh, df)


class ChunkRebasedFunction(torch.autograd.Function):
    @staticmethod
    @on_input_device
    def forward(ctx, q, k, v, S0, z0, scale, eps, cfg):
        b, t, nh, d = q.shape
        dv = v.shape[-1]
        bt, bf = cfg["BT"], cfg["BF"]
        fI, fJ = _feature_tables(d, bf, q.device)
        df, dp = d * (d + 1) // 2, fI.numel()
        dt = v.dtype
        init = _pad_state(None if S0 is None else (S0, z0), b, nh, dp, dv, q.device)
        h, hz, hs, hzs, cps, (St, zt) = _states(k, v, None, None, 1.0, init, cfg, dt, reverse=False)
        nt = triton.cdiv(t, bt)
        bk, bv = _pow2(d), min(_pow2(dv), 128)
        o = empty(b, t, nh, dv, device=q.device, dtype=v.dtype)
        den = empty(b, t, nh, device=q.device, dtype=torch.float32)
        chunk_rebased_fwd_o_kernel[(triton.cdiv(dv, bv), nt, b * nh)](
            q, k, v, h, hz, hs, hzs, fI, fJ, o, den, scale, eps, t, nt, cps,
            H=nh, K=d, V=dv, DF=df, DP=dp, BT=bt, BK=bk, BF=bf, BV=bv, PREC=_precision(dt), num_warps=cfg["warps_o"],
        )
        ctx.save_for_backward(q, k, v, o, den, *init)
        # the backward reuses the same segment split, so that both state passes index alike
        ctx.scale, ctx.has_init, ctx.cfg = scale, S0 is not None, {**cfg, "chunks_per_segment": cps}
        ctx.needs_final_state = cfg["final_state"]
        return (o, *_unpad_state(St, zt, b, nh, df))

    @staticmethod
    @on_input_device
    def backward(ctx, do, dSt, dzt):
        q, k, v, o, den, S0, z0 = ctx.saved_tensors
        b, t, nh, d = q.shape
        dv = v.shape[-1]
        scale, cfg, dt = ctx.scale, ctx.cfg, v.dtype
        bt, bf = cfg["BT"], cfg["BF"]
        do = do.contiguous()
        fI, fJ = _feature_tables(d, bf, q.device)
        df, dp = d * (d + 1) // 2, fI.numel()
        nt = triton.cdiv(t, bt)
        shape = dict(H=nh, K=d, V=dv, DF=df, DP=dp, BT=bt, BK=_pow2(d), BF=bf, BV=_pow2(dv), PREC=_precision(dt))
        h, hz, hs, hzs, cps, _ = _states(k, v, None, None, 1.0, (S0, z0), cfg, dt, reverse=False)
        dq, r = empty(q.shape, device=q.device, dtype=q.dtype), empty(b, t, nh, device=q.device, dtype=torch.float32)
        chunk_rebased_bwd_dq_kernel[(nt, b * nh)](
            q, k, v, do, den, r, h, hz, hs, hzs, fI, fJ, dq, scale, t, nt, cps, **shape, num_warps=cfg["warps_bwd"],
        )
        del h, hz, hs, hzs
        # reverse state from the final state's gradient: R = dS_T, rz = -dz_T (none when the state is unused)
        used = ctx.needs_final_state
        dinit = _pad_state((dSt, -dzt) if used else None, b, nh, dp, dv, q.device)
        dh, dhz, dhs, dhzs, _, (dS0, mdz0) = _states(q, do, den, r, scale, dinit, cfg, dt, reverse=True)
        dk, dvv = empty(k.shape, device=q.device, dtype=k.dtype), empty(v.shape, device=q.device, dtype=v.dtype)
        chunk_rebased_bwd_dkdv_kernel[(nt, b * nh)](
            q, k, v, do, den, r, dh, dhz, dhs, dhzs, fI, fJ, dk, dvv, scale, t, nt, cps, **shape, num_warps=cfg["warps_bwd"],
        )
        dS0, dz0 = _unpad_state(dS0, -mdz0, b, nh, df) if ctx.has_init else (None, None)
        return dq, dk, dvv, dS0, dz0, None, None, None


def chunk_rebased(q, k, v, scale=None, eps=1e-12, initial_state=None, output_final_state=False, *, chunk_size=None, chunks_per_segment=None):
    """Causal normalized ReBased attention in linear time (same function as parallel_rebased).

    Args:
        q, k: (batch, seq_len, heads, d), d <= 64; v: (batch, seq_len, heads, dv), dv <= 256.
        scale: score scale, None for d^-1/2. eps: added to the fp32 denominator.
        initial_state: None or (S, z) fp32, S (batch, heads, d(d+1)/2, dv), z (batch, heads, d(d+1)/2)
            (format in naive.py); gradients flow into it.
        output_final_state: also return the state after the last token.
        chunk_size, chunks_per_segment: override CONFIG's chunk length and the automatic sequence split.
    Returns:
        (o, final_state): o (batch, seq_len, heads, dv) in v's dtype; final_state (S, z) or None.
    """
    d, dv = q.shape[-1], v.shape[-1]
    assert d <= 64 and dv <= 256, "chunk_rebased: d <= 64 and dv <= 256 (use parallel_rebased beyond)"
    scale = d**-0.5 if scale is None else float(scale)
    S0, z0 = (None, None) if initial_state is None else initial_state
    cfg = {**CONFIG, "BT": chunk_size or CONFIG["BT"], "chunks_per_segment": chunks_per_segment,
           "final_state": output_final_state}
    o, St, zt = ChunkRebasedFunction.apply(q.contiguous(), k.contiguous(), v.contiguous(), S0, z0, scale, eps, cfg)
    return o, ((St, zt) if output_final_state else None)
