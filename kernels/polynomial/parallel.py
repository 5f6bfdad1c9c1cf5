"""Causal normalized polynomial attention on the GPU: launchers, autograd.Function and public wrappers.

The Triton kernels are in parallel_kernels.py. Under TRITON_INTERPRET=1 (set before this module is imported) the
same kernels run on CPU tensors through Triton's interpreter, with small tiles; the tests use that on CPU.
"""

from dataclasses import dataclass

import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .naive import BASED_COEFFS, REBASED_COEFFS
from .ops import attention_ops
from .parallel_kernels import (
    gram_tile_kernel,
    parallel_poly_bwd_dkdv_kernel,
    parallel_poly_bwd_dq_kernel,
    parallel_poly_bwd_prep_kernel,
    parallel_poly_fwd_kernel,
)

INTERPRET = interpreted(parallel_poly_fwd_kernel)
# How the forward sums the denominator (_zsum in parallel_kernels.py): 2 = on the tensor core, over the scores
# exactly as rounded for the value product. 0 (fp32 sums of unrounded scores) and 1 (rounded on the CUDA cores)
# are kept so the benchmark can price them; 0 leaves dq, dk noise ~ 1/|q.k| where one tiny score dominates a row.
Z_MODE = 2


@dataclass(frozen=True)
class Tiles:
    """Launch shape of one kernel: BT query rows x BS key rows per inner step (BT % BS == 0 in fwd and dq,
    BS % BT == 0 in dkdv, where BS is the program's key tile and BT the inner query step)."""

    BT: int
    BS: int
    num_warps: int = 4
    num_stages: int = 2
    maxnreg: int = 0  # register cap per thread (0: the compiler's choice); 128 fits 4 CTAs of 4 warps per SM

    def launch(self):
        """Launch options for the kernel call (the interpreter takes none)."""
        if INTERPRET:
            return {}
        opts = {"num_warps": self.num_warps, "num_stages": self.num_stages}
        return {**opts, "maxnreg": self.maxnreg} if self.maxnreg else opts


# Chosen on the H100 at d=16, dv=64 bf16 (benchmarks/parallel_bench.py --explore); "bv_max" caps the value block:
# wider values are split over programs (dq/dk partial sums add up).
# From seq_len "z_prefix_min_t" on, ReBased's forward takes the denominator over the keys before the diagonal tile
# from prefix sums of k k^T (Z_PREFIX in the kernel; two small launches first, so only for long sequences), with
# the "fwd_prefix" tiles: uncapped, ptxas gives that kernel 182 registers (2 CTAs per SM), capped 168 (3, no spills).
GPU_TILES = {"fwd": Tiles(128, 32, 4, 4), "fwd_prefix": Tiles(128, 32, 4, 4, 168), "dq": Tiles(128, 64, 4, 3),
             "dkdv": Tiles(32, 64, 4, 4, 128), "bv_max": 128, "z_prefix_min_t": 8192}
# Interpreter: small tiles so short test sequences still cross several tiles, and bv_max = 32 so dv = 64
# already exercises the split-value path; z_prefix_min_t = 64 tests both denominators (T = 130 vs T <= 63).
INTERPRET_TILES = {"fwd": Tiles(32, 16), "fwd_prefix": Tiles(32, 16), "dq": Tiles(32, 16), "dkdv": Tiles(16, 32),
                   "bv_max": 32, "z_prefix_min_t": 64}
TILES = INTERPRET_TILES if INTERPRET else GPU_TILES


def _strided(x):
    # the kernels index the last dim with stride 1; any other strides are passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def _prepare(q, k, v, coeffs, scale):
    if q.ndim != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k (B, T, H, d) and v (B, T, H, dv); got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] > 128:
        raise ValueError(f"feature dim d = {q.shape[-1]} > 128 is not supported (q and k stay in one tile)")
    if q.device.type != "cuda" and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    c0, c1, c2 = (float(c) for c in coeffs)
    # x = q.k raw; p = a0 + a1 x + a2 x^2
    a0, a1, a2 = c0, c1 * scale, c2 * scale * scale
    square = c0 == 0 and c1 == 0 and a2 > 0
    BK = max(16, triton.next_power_of_2(q.shape[-1]))
    BV = min(max(16, triton.next_power_of_2(v.shape[-1])), TILES["bv_max"])
    return square, a0, a1, a2, BK, BV


@on_input_device
def parallel_poly_fwd(q, k, v, coeffs, scale=None, eps=1e-12):
    """Returns o (B, T, H, dv) in v's dtype and z (B, H, T) fp32: the denominators sum_s p_ts + eps (in the
    kernel's units: divided by c2 scale^2 for the pure-square score)."""
    q, k, v = _strided(q), _strided(k), _strided(v)
    square, a0, a1, a2, BK, BV = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V = v.shape[-1]
    if square:
        eps = eps / a2  # sum a2 x^2 v / (sum a2 x^2 + eps) = sum x^2 v / (sum x^2 + eps / a2)
    o = empty((B, T, H, V), dtype=v.dtype, device=q.device)
    z = empty((B, H, T), dtype=torch.float32, device=q.device)
    g = None
    if square and Z_MODE == 2 and BK <= 32 and T >= TILES["z_prefix_min_t"]:
        # g[bh, j] = sum of k k^T over key tiles 0..j (fp32 [BK, BK] each): q^T g[bh, i - 1] q is the denominator
        # over the keys before query tile i, so the kernel's loop skips p @ 1 there
        t = TILES["fwd_prefix"]
        NT = triton.cdiv(T, t.BT)
        g = empty((B * H, NT, BK, BK), dtype=torch.float32, device=q.device)
        gram_tile_kernel[(B * H, NT)](k, g, *k.stride()[:3], T, H, K=K, BT=t.BT, BK=BK, INTERPRET=INTERPRET)
        g = torch.cumsum(g, 1)
    else:
        t = TILES["fwd"]
    grid = (B * H, triton.cdiv(V, BV), triton.cdiv(T, t.BT))
    parallel_poly_fwd_kernel[grid](
        q, k, v, o, z, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        a0, a1, a2, eps, T, H, K=K, V=V, BT=t.BT, BS=t.BS, BK=BK, BV=BV, SQUARE=square, Z_MODE=Z_MODE,
        INTERPRET=INTERPRET, Z_PREFIX=g is not None, g=g, **t.launch(),
    )
    return o, z


@on_input_device
def parallel_poly_bwd(q, k, v, o, z, do, coeffs, scale=None):
    """Gradients (dq, dk, dv) in the dtypes of q, k, v, from the forward's o and z and the output gradient do."""
    q, k, v, do = _strided(q), _strided(k), _strided(v), _strided(do)
    square, a0, a1, a2, BK, BV = _prepare(q, k, v, coeffs, scale)
    B, T, H, K = q.shape
    V = v.shape[-1]
    NV = triton.cdiv(V, BV)
    dev = q.device
    # do / z stays in bf16 only for bf16 values; fp16 could flush it to zero when z is large
    dos = empty((B, H, T, V), dtype=v.dtype if v.dtype == torch.bfloat16 else torch.float32, device=dev)
    delta = empty((B, H, T), dtype=torch.float32, device=dev)
    BT_PREP = 16 if INTERPRET else 64
    parallel_poly_bwd_prep_kernel[(B * H, triton.cdiv(T, BT_PREP))](
        o, do, z, dos, delta, *o.stride()[:3], *do.stride()[:3], T, H, V=V, BT=BT_PREP, BV=BV, INTERPRET=INTERPRET,
    )
    # with one value block the kernels write the gradients directly; else fp32 partial sums over value blocks
    partial = (NV, B, T, H, K) if NV > 1 else (1, B, T, H, K)
    dq = empty(partial, dtype=torch.float32 if NV > 1 else q.dtype, device=dev)
    dk = empty(partial, dtype=torch.float32 if NV > 1 else k.dtype, device=dev)
    dv = empty((B, T, H, V), dtype=v.dtype, device=dev)
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
    flags = dict(K=K, V=V, BK=BK, BV=BV, SQUARE=square, INTERPRET=INTERPRET)
    t = TILES["dq"]
    parallel_poly_bwd_dq_kernel[(B * H, NV, triton.cdiv(T, t.BT))](
        q, k, v, dos, delta, dq, *strides, *dq.stride()[:4], a1, a2, T, H,
        BT=t.BT, BS=t.BS, **t.launch(), **flags,
    )
    t = TILES["dkdv"]
    parallel_poly_bwd_dkdv_kernel[(B * H, NV, triton.cdiv(T, t.BS))](
        q, k, v, dos, delta, dk, dv, *strides, *dk.stride()[:4], *dv.stride()[:3], a0, a1, a2, T, H,
        BT=t.BT, BS=t.BS, **t.launch(), **flags,
    )
    dq = dq.sum(0).to(q.dtype) if NV > 1 else dq[0]
    dk = dk.sum(0).to(k.dtype) if NV > 1 else dk[0]
    return dq, dk, dv


parallel_poly_fwd_op = attention_ops("parallel_poly", parallel_poly_fwd, parallel_poly_bwd)


def parallel_polynomial(q, k, v, coeffs, scale=None, eps=1e-12):
    """Causal attention with score p(s) = c0 + c1 s + c2 s^2, s = scale * q.k, normalized by the causal sum.

    Args:
        q, k: (batch, seq_len, heads, d), d <= 128, any float dtype (may differ from v's, as under autocast).
        v: (batch, seq_len, heads, dv), any dv.
        coeffs: (c0, c1, c2). scale: None means d ** -0.5. eps: added to the fp32 denominator.
    Returns:
        o: (batch, seq_len, heads, dv) in v's dtype; differentiable in q, k, v.
    """
    return parallel_poly_fwd_op(q, k, v, [float(c) for c in coeffs], scale, eps)[0]


def parallel_rebased(q, k, v, scale=None, eps=1e-12):
    """ReBased: score (scale * q.k)^2.

    Args:
        q, k: (batch, seq_len, heads, d), d <= 128. v: (batch, seq_len, heads, dv).
        scale: None means d ** -0.5. eps: added to the fp32 denominator.
    Returns:
        o: (batch, seq_len, heads, dv) in v's dtype.
    """
    return parallel_polynomial(q, k, v, REBASED_COEFFS, scale, eps)


def parallel_based(q, k, v, scale=None, eps=1e-12):
    """Based: score 1 + s + s^2 / 2, s = scale * q.k; arguments, shapes and result as in parallel_rebased."""
    return parallel_polynomial(q, k, v, BASED_COEFFS, scale, eps)
