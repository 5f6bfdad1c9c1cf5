"""The selective scan on the GPU: launchers, autograd.Function and the public `selective_scan_triton`.

The Triton kernels are in recurrent_kernels.py. Under TRITON_INTERPRET=1 (set before this module is imported) the same
kernels run on CPU tensors through Triton's interpreter with small tiles; the tests use that on CPU.
"""

import os

import torch
import triton

from .recurrent_kernels import selective_scan_bwd_kernel, selective_scan_fwd_kernel

# True when the kernels were built by Triton's interpreter (TRITON_INTERPRET=1 at import)
INTERPRET = not isinstance(selective_scan_fwd_kernel, triton.runtime.JITFunction)
# Debug aid for tests: NaN-fill every buffer the wrapper allocates, so an element a kernel forgets to write (or
# a checkpoint it reads before it was written) shows up as NaN in the result.
POISON = os.environ.get("REBASED_KERNELS_POISON", "0") == "1"
# BD channels per program, CHUNK steps between stored states. GPU: one warp per program keeps every reduction
# inside the warp, and 16 channels make 1024 programs at the benchmark's batch 64 x d_inner 256.
# Interpreter: small, so that short test sequences cross several chunks and odd widths several blocks.
GPU_CONFIG = {"BD": 16, "CHUNK": 32, "num_warps": 1}
INTERPRET_CONFIG = {"BD": 4, "CHUNK": 8, "num_warps": 1}
CONFIG = dict(INTERPRET_CONFIG if INTERPRET else GPU_CONFIG)


def _empty(*shape, dtype=torch.float32, device=None):
    x = torch.empty(*shape, dtype=dtype, device=device)
    return x.fill_(float("nan")) if POISON else x


def _strided(x):
    # the kernels index the last dim with stride 1; the batch and time strides are passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch(cfg):
    """Launch options for the kernel call (the interpreter takes none)."""
    return {} if INTERPRET else {"num_warps": cfg["num_warps"]}


def _check(u, delta, A, B, C):
    batch, seq_len, d_inner = u.shape
    d_state = A.shape[1]
    if delta.shape != u.shape or A.shape != (d_inner, d_state) or B.shape != (batch, seq_len, d_state) \
            or C.shape != B.shape:
        raise ValueError(f"expected u, delta (B, T, D), A (D, N), B, C (B, T, N); got {u.shape}, {delta.shape}, "
                         f"{A.shape}, {B.shape}, {C.shape}")
    if not u.is_cuda and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")


def selective_scan_fwd(u, delta, A, B, C, cfg):
    """y (batch, T, D) fp32 and the chunk entry states hc (batch, NC, D, N) fp32."""
    batch, T, D = u.shape
    N = A.shape[1]
    NC = triton.cdiv(T, cfg["CHUNK"])
    y = _empty(batch, T, D, device=u.device)
    hc = _empty(batch, NC, D, N, device=u.device)
    selective_scan_fwd_kernel[(triton.cdiv(D, cfg["BD"]), batch)](
        u, delta, A, B, C, y, hc, *u.stride()[:2], *delta.stride()[:2], *B.stride()[:2], *C.stride()[:2],
        T, NC, D, N, BD=cfg["BD"], BN=triton.next_power_of_2(N), CHUNK=cfg["CHUNK"], **_launch(cfg),
    )
    return y, hc


def selective_scan_bwd(u, delta, A, B, C, hc, dy, cfg):
    """Gradients (du, ddelta, dA, dB, dC) in the dtypes of the inputs, from the forward's chunk states hc."""
    batch, T, D = u.shape
    N = A.shape[1]
    BD, BN, CHUNK = cfg["BD"], triton.next_power_of_2(N), cfg["CHUNK"]
    ND = triton.cdiv(D, BD)
    dev = u.device
    dy = _strided(dy)
    hs = _empty(batch, ND, CHUNK + 1, BD, BN, device=dev)
    du, ddelta = _empty(batch, T, D, device=dev), _empty(batch, T, D, device=dev)
    dA = _empty(batch, D, N, device=dev)
    dB, dC = _empty(ND, batch, T, N, device=dev), _empty(ND, batch, T, N, device=dev)
    selective_scan_bwd_kernel[(ND, batch)](
        u, delta, A, B, C, dy, hc, hs, du, ddelta, dA, dB, dC,
        *u.stride()[:2], *delta.stride()[:2], *B.stride()[:2], *C.stride()[:2], *dy.stride()[:2],
        T, hc.shape[1], D, N, BD=BD, BN=BN, CHUNK=CHUNK, **_launch(cfg),
    )
    return (du.to(u.dtype), ddelta.to(delta.dtype), dA.sum(0).to(A.dtype),
            dB.sum(0).to(B.dtype), dC.sum(0).to(C.dtype))


class SelectiveScanFunction(torch.autograd.Function):
    """Autograd for the fused kernels; saves the inputs and the chunk entry states (batch, T / CHUNK, D, N)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, cfg):
        y, hc = selective_scan_fwd(u, delta, A, B, C, cfg)
        ctx.save_for_backward(u, delta, A, B, C, hc)
        ctx.cfg = cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, hc = ctx.saved_tensors
        return (*selective_scan_bwd(u, delta, A, B, C, hc, dy, ctx.cfg), None)


def selective_scan_triton(u, delta, A, B, C, config=None):
    """The selective scan of `selective_scan_reference`, fused: fp32 state in registers, O(seq_len) memory.

    Args:
        u, delta: (batch, seq_len, d_inner), any float dtype (may differ from each other).
        A: (d_inner, d_state). B, C: (batch, seq_len, d_state).
        config: overrides of CONFIG (BD channels per program, CHUNK steps between stored states, num_warps).
    Returns:
        y: (batch, seq_len, d_inner) fp32; differentiable in u, delta, A, B, C (gradients in their dtypes).
    """
    _check(u, delta, A, B, C)
    cfg = {**CONFIG, **(config or {})}
    u, delta, B, C = (_strided(x) for x in (u, delta, B, C))
    return SelectiveScanFunction.apply(u, delta, A.contiguous(), B, C, cfg)
