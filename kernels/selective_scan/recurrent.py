"""The selective scan on the GPU: launchers, autograd.Function and the public `selective_scan_triton`.

The Triton kernels are in recurrent_kernels.py. Under TRITON_INTERPRET=1 (set before this module is imported) the same
kernels run on CPU tensors through Triton's interpreter with small tiles; the tests use that on CPU.
"""

import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .recurrent_kernels import selective_scan_bwd_kernel, selective_scan_fwd_kernel

INTERPRET = interpreted(selective_scan_fwd_kernel)
# BD channels per program, CHUNK steps between stored states, STAGES of pipelined loads. GPU: one warp per program
# keeps every reduction inside the warp, and 16 channels make 1024 programs at the benchmark's batch 64 x d_inner
# 256. Chosen on an NVIDIA H100 at that shape (fp32 inputs, forward + backward; benchmarks/scan_bench.py's sweep
# of launch configs at commit edd9834 with STAGES added, not in a published result set): STAGES 3 took the scan
# from 5.73 to 3.83 ms (STAGES 2: 5.88); CHUNK 16 or 64 and BD 8 were within 3% of this config.
# Interpreter: small, so that short test sequences cross several chunks and odd widths several blocks.
GPU_CONFIG = {"BD": 16, "CHUNK": 32, "num_warps": 1, "STAGES": 3}
INTERPRET_CONFIG = {"BD": 4, "CHUNK": 8, "num_warps": 1, "STAGES": 1}
CONFIG = dict(INTERPRET_CONFIG if INTERPRET else GPU_CONFIG)


def _launch(cfg):
    """Launch options for the kernel call (the interpreter takes none)."""
    return {} if INTERPRET else {"num_warps": cfg["num_warps"]}


def _check(u, delta, A, B, C, D, z, delta_bias):
    batch, seq_len, d_inner = u.shape
    d_state = A.shape[1]
    if delta.shape != u.shape or A.shape != (d_inner, d_state) or B.shape != (batch, seq_len, d_state) \
            or C.shape != B.shape or (z is not None and z.shape != u.shape) \
            or any(x is not None and x.shape != (d_inner,) for x in (D, delta_bias)):
        raise ValueError(f"expected u, delta, z (B, T, D), A (D, N), B, C (B, T, N), D, delta_bias (D,); got "
                         f"{[None if x is None else tuple(x.shape) for x in (u, delta, A, B, C, D, z, delta_bias)]}")
    if not u.is_cuda and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")


def _flags(D, z, bias, softplus, N, cfg):
    """The kernels' compile-time arguments and launch options (both kernels take the same)."""
    return dict(BD=cfg["BD"], BN=triton.next_power_of_2(N), CHUNK=cfg["CHUNK"], STAGES=cfg["STAGES"], HAS_BIAS=bias is not None,
                SOFTPLUS=softplus, HAS_D=D is not None, HAS_Z=z is not None, **_launch(cfg))


@on_input_device
def selective_scan_fwd(u, dt, A, B, C, D, z, bias, softplus, cfg):
    """y (batch, T, DI) and the chunk entry states hc (batch, NC, DI, N), both fp32. D, z, bias may be None."""
    batch, T, DI = u.shape
    N = A.shape[1]
    NC = triton.cdiv(T, cfg["CHUNK"])
    y = empty(batch, T, DI, device=u.device)
    hc = empty(batch, NC, DI, N, device=u.device)
    selective_scan_fwd_kernel[(triton.cdiv(DI, cfg["BD"]), batch)](
        u, dt, A, B, C, *(u if x is None else x for x in (D, z, bias)), y, hc, T, NC, DI, N,
        **_flags(D, z, bias, softplus, N, cfg),
    )
    return y, hc


@on_input_device
def selective_scan_bwd(u, dt, A, B, C, D, z, bias, softplus, hc, dy, cfg):
    """fp32 gradients (du, ddt, dA, dB, dC, dD, dz, dbias) from the forward's chunk states hc; None where the
    input was None."""
    batch, T, DI = u.shape
    N = A.shape[1]
    BD, CHUNK = cfg["BD"], cfg["CHUNK"]
    ND = triton.cdiv(DI, BD)
    dev = u.device
    dy = dy.contiguous()
    hs = empty(batch, ND, CHUNK + 1, BD, triton.next_power_of_2(N), device=dev)
    du, ddt, dz = (empty(batch, T, DI, device=dev) for _ in range(3))
    dA = empty(batch, DI, N, device=dev)
    dB, dC = empty(ND, batch, T, N, device=dev), empty(ND, batch, T, N, device=dev)
    dD, dbias = empty(batch, DI, device=dev), empty(batch, DI, device=dev)
    selective_scan_bwd_kernel[(ND, batch)](
        u, dt, A, B, C, *(u if x is None else x for x in (D, z, bias)), dy, hc, hs,
        du, ddt, dA, dB, dC, dD, dz, dbias, T, hc.shape[1], DI, N, **_flags(D, z, bias, softplus, N, cfg),
    )
    return (du, ddt, dA.sum(0), dB.sum(0), dC.sum(0), None if D is None else dD.sum(0), None if z is None else dz,
            None if bias is None else dbias.sum(0))


class SelectiveScanFunction(torch.autograd.Function):
    """Autograd for the fused kernels; saves the inputs and the chunk entry states (batch, T / CHUNK, DI, N)."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, D, z, bias, softplus, cfg):
        y, hc = selective_scan_fwd(u, dt, A, B, C, D, z, bias, softplus, cfg)
        ctx.save_for_backward(u, dt, A, B, C, D, z, bias, hc)
        ctx.softplus, ctx.cfg = softplus, cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, B, C, D, z, bias, hc = ctx.saved_tensors
        grads = selective_scan_bwd(u, dt, A, B, C, D, z, bias, ctx.softplus, hc, dy, ctx.cfg)
        return (*grads, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, config=None):
    """`selective_scan_reference` fused (mamba-ssm's selective_scan_fn): fp32 state in registers, O(seq_len) memory.

    Args:
        u, delta: (batch, seq_len, d_inner). A: (d_inner, d_state). B, C: (batch, seq_len, d_state).
        D, delta_bias: None or (d_inner,). z: None or like u. delta_softplus: delta <- softplus(delta + delta_bias).
        Any float dtypes: they are upcast to contiguous fp32 first (only loads of >= 4 bytes per thread are
        pipelined, see recurrent_kernels.py); the gradients come back in the dtypes given.
        config: overrides of CONFIG (BD channels per program, CHUNK steps between stored states, STAGES, num_warps).
    Returns:
        y: (batch, seq_len, d_inner) fp32 = (C . h + D u) silu(z); differentiable in every tensor argument.
    """
    _check(u, delta, A, B, C, D, z, delta_bias)
    cfg = {**CONFIG, **(config or {})}
    f32 = [None if x is None else x.float().contiguous() for x in (u, delta, A, B, C, D, z, delta_bias)]
    return SelectiveScanFunction.apply(*f32, bool(delta_softplus), cfg)
