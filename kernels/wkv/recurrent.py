"""WKV on the GPU: launchers, autograd.Function and the public `wkv_triton`.

The Triton kernels are in recurrent_kernels.py. Under TRITON_INTERPRET=1 (set before this module is imported) the same
kernels run on CPU tensors through Triton's interpreter with small tiles; the tests use that on CPU.
"""

import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .recurrent_kernels import wkv_bwd_kernel, wkv_fwd_kernel

INTERPRET = interpreted(wkv_fwd_kernel)
# BC channels per program: one warp of 32 channels, one channel per thread as in the official kernel; STAGES of
# pipelined loads. Chosen on an NVIDIA H100 at benchmarks/scan_bench.py's shape (fp32 inputs, forward + backward;
# its sweep of launch configs at commit edd9834 with STAGES added, not in a published result set): STAGES 3 took
# WKV from 3.42 to 2.14 ms (STAGES 2: 3.81); BC 16 or 64 were within 2%.
# Interpreter: 8, so that odd widths cross several blocks.
GPU_CONFIG = {"BC": 32, "num_warps": 1, "STAGES": 3}
INTERPRET_CONFIG = {"BC": 8, "num_warps": 1, "STAGES": 1}
CONFIG = dict(INTERPRET_CONFIG if INTERPRET else GPU_CONFIG)


def _strided(x):
    # the kernels index the last dim with stride 1; the batch and time strides are passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch(cfg):
    """Launch options for the kernel call (the interpreter takes none)."""
    return {} if INTERPRET else {"num_warps": cfg["num_warps"]}


@on_input_device
def wkv_fwd(w, u, k, v, cfg):
    """y (batch, T, C) fp32."""
    batch, T, C = k.shape
    y = empty(batch, T, C, device=k.device)
    wkv_fwd_kernel[(triton.cdiv(C, cfg["BC"]), batch)](
        w, u, k, v, y, *k.stride()[:2], *v.stride()[:2], T, C, BC=cfg["BC"], STAGES=cfg["STAGES"], **_launch(cfg),
    )
    return y


@on_input_device
def wkv_bwd(w, u, k, v, y, dy, cfg):
    """fp32 gradients (dw, du, dk, dv) from the forward's output y."""
    batch, T, C = k.shape
    dev = k.device
    dy = _strided(dy)
    dw, du = empty(batch, C, device=dev), empty(batch, C, device=dev)
    dk, dv = empty(batch, T, C, device=dev), empty(batch, T, C, device=dev)
    qs, ps = empty(batch, T, C, device=dev), empty(batch, T, C, device=dev)
    wkv_bwd_kernel[(triton.cdiv(C, cfg["BC"]), batch)](
        w, u, k, v, y, dy, dw, du, dk, dv, qs, ps, *k.stride()[:2], *v.stride()[:2], *dy.stride()[:2],
        T, C, BC=cfg["BC"], STAGES=cfg["STAGES"], **_launch(cfg),
    )
    return dw.sum(0), du.sum(0), dk, dv


class WKVFunction(torch.autograd.Function):
    """Autograd for the fused kernels; saves the inputs and the fp32 output (batch, T, C)."""

    @staticmethod
    def forward(ctx, w, u, k, v, cfg):
        y = wkv_fwd(w, u, k, v, cfg)
        ctx.save_for_backward(w, u, k, v, y)
        ctx.cfg = cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        w, u, k, v, y = ctx.saved_tensors
        return (*wkv_bwd(w, u, k, v, y, dy, ctx.cfg), None)


def wkv_triton(w, u, k, v, config=None):
    """RWKV-v4's WKV (`wkv_reference`), fused: one sequential fp32 pass per direction, as the official kernel.

    Args:
        w: (d,) per-step log-decay, < 0 (finite: clamp time_decay first, as `decay_rate` does). u: (d,) bonus.
        k, v: (batch, seq_len, d), any float dtypes: they are upcast to fp32 first (only loads of >= 4 bytes
            per thread are pipelined); their gradients come back in the dtypes given.
        config: overrides of CONFIG (BC channels per program, STAGES, num_warps).
    Returns:
        y: (batch, seq_len, d) fp32; differentiable in w, u (fp32 gradients), k, v (gradients in their dtypes).
    """
    if w.shape != u.shape or w.shape != k.shape[-1:] or v.shape != k.shape:
        raise ValueError(f"expected w, u (d,) and k, v (B, T, d); got {w.shape}, {u.shape}, {k.shape}, {v.shape}")
    if not k.is_cuda and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")
    cfg = {**CONFIG, **(config or {})}
    w, u, k, v = (_strided(x.float()) for x in (w, u, k, v))
    return WKVFunction.apply(w, u, k, v, cfg)
