"""Fused linear cross-entropy on the GPU: launchers, the custom ops and the public `linear_cross_entropy`.

The Triton kernels are in kernels.py. Under TRITON_INTERPRET=1 (set before this module is imported) the same kernels
run on CPU tensors through Triton's interpreter, with small tiles; the tests use that on CPU.
"""

import torch
import triton

from ..launch import empty, interpreted, on_input_device
from .kernels import linear_ce_bwd_dh_kernel, linear_ce_bwd_dw_kernel, linear_ce_fwd_kernel
from .naive import autocast_operands

INTERPRET = interpreted(linear_ce_fwd_kernel)
# Block sizes (BM rows x BN vocab entries per step) and launch options per kernel. GPU: untimed guesses for the MQAR
# head (V = 8192, D = 64 or 128, bf16), not yet measured: 128 x 128 fp32 logit tiles over 8 warps (64 registers a
# thread) in the forward; dh also holds a [BM, BD] accumulator, so half the vocab step; dW holds [BN, BD] and steps
# over 64 rows. "dw_splits": dW's row splits, so its grid (V / BN = 64 vocab blocks at V = 8192) times the splits
# fills the 132 SMs several times over; its fp32 partials (splits x V x D: 64 MiB at D = 128) are written and summed
# once. D = 256 fits (BD = 256) but may spill registers with these tiles.
GPU_TILES = {
    "fwd": {"BM": 128, "BN": 128, "num_warps": 8, "num_stages": 3},
    "dh": {"BM": 128, "BN": 64, "num_warps": 8, "num_stages": 3},
    "dw": {"BM": 64, "BN": 128, "num_warps": 8, "num_stages": 3},
    "dw_splits": 16,
}
# Interpreter: small tiles, different in each kernel, so test shapes cross several tiles and the kernels are checked
# not to depend on each other's tiling (the interpreter takes no launch options).
INTERPRET_TILES = {"fwd": {"BM": 16, "BN": 64}, "dh": {"BM": 32, "BN": 16}, "dw": {"BM": 16, "BN": 32}, "dw_splits": 2}
TILES = INTERPRET_TILES if INTERPRET else GPU_TILES
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_D = 256


def _strided(x):
    # the kernels index the last dim with stride 1; the row stride is passed through
    return x if x.stride(-1) == 1 else x.contiguous()


def _check(hidden, weight, targets):
    """One-line ValueErrors for what the kernels cannot take."""
    if hidden.ndim != 2 or weight.ndim != 2 or weight.shape[1] != hidden.shape[1] or targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy needs hidden (N, D), weight (V, D), targets (N,); got "
                         f"{tuple(hidden.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}")
    (N, D), V = hidden.shape, weight.shape[0]
    if N == 0 or V == 0 or not 1 <= D <= MAX_D:
        raise ValueError(f"linear_cross_entropy needs N >= 1, V >= 1, 1 <= D <= {MAX_D}; got N={N}, V={V}, D={D}")
    if hidden.dtype not in DTYPES or weight.dtype not in DTYPES or targets.dtype.is_floating_point:
        raise ValueError(f"linear_cross_entropy needs fp32/fp16/bf16 hidden and weight and integer targets; got "
                         f"{hidden.dtype}, {weight.dtype}, {targets.dtype}")


def _block_d(D):
    # tl.dot needs every tile dimension >= 16
    return max(16, triton.next_power_of_2(D))


@on_input_device
def linear_ce_fwd(hidden, weight, targets):
    """Mean loss (0-d fp32) and each row's log-sum-exp lse (N,) fp32, which the backward reuses."""
    if hidden.device.type != "cuda" and not INTERPRET:
        raise RuntimeError("CPU tensors need TRITON_INTERPRET=1 set before rebased_bench.kernels is imported")
    hidden, weight, targets = _strided(hidden), _strided(weight), targets.contiguous()
    (N, D), V = hidden.shape, weight.shape[0]
    lse = empty(N, device=hidden.device)
    loss = empty(N, device=hidden.device)
    tiles = TILES["fwd"]
    linear_ce_fwd_kernel[(triton.cdiv(N, tiles["BM"]),)](
        hidden, weight, targets, lse, loss, hidden.stride(0), weight.stride(0), N, V,
        D=D, BD=_block_d(D), INTERPRET=INTERPRET, **tiles,
    )
    return loss.mean(), lse


@on_input_device
def linear_ce_bwd(hidden, weight, targets, lse, dloss):
    """Gradients (dh (N, D), dW (V, D)) in hidden's and weight's dtypes; dloss: the 0-d gradient of the mean loss."""
    hidden, weight, targets = _strided(hidden), _strided(weight), targets.contiguous()
    (N, D), V = hidden.shape, weight.shape[0]
    dev = hidden.device
    flags = dict(D=D, BD=_block_d(D), INTERPRET=INTERPRET)
    dh = empty(N, D, dtype=hidden.dtype, device=dev)
    tiles = TILES["dh"]
    linear_ce_bwd_dh_kernel[(triton.cdiv(N, tiles["BM"]),)](
        hidden, weight, targets, lse, dloss, dh, hidden.stride(0), weight.stride(0), dh.stride(0), N, V,
        **flags, **tiles,
    )
    tiles = TILES["dw"]
    splits = min(TILES["dw_splits"], triton.cdiv(N, tiles["BM"]))
    dw = empty(splits, V, D, device=dev)
    linear_ce_bwd_dw_kernel[(triton.cdiv(V, tiles["BN"]), splits)](
        hidden, weight, targets, lse, dloss, dw, hidden.stride(0), weight.stride(0), N, V, **flags, **tiles,
    )
    return dh, dw.sum(0).to(weight.dtype)


# Custom ops: autograd and torch.compile see one opaque op each way, and the compiler never traces the launchers.
@torch.library.custom_op("rebased_bench::linear_cross_entropy_fwd", mutates_args=())
def linear_cross_entropy_fwd(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    return linear_ce_fwd(hidden, weight, targets)


@torch.library.custom_op("rebased_bench::linear_cross_entropy_bwd", mutates_args=())
def linear_cross_entropy_bwd(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
                             dloss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return linear_ce_bwd(hidden, weight, targets, lse, dloss)


@linear_cross_entropy_fwd.register_fake
def _(hidden, weight, targets):
    return hidden.new_empty((), dtype=torch.float32), hidden.new_empty(hidden.shape[:1], dtype=torch.float32)


@linear_cross_entropy_bwd.register_fake
def _(hidden, weight, targets, lse, dloss):
    return hidden.new_empty(hidden.shape), weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output[1])


def _backward(ctx, dloss, _dlse):
    hidden, weight, targets, lse = ctx.saved_tensors
    return (*linear_cross_entropy_bwd(hidden, weight, targets, lse, dloss), None)


linear_cross_entropy_fwd.register_autograd(_backward, setup_context=_setup_context)


def linear_cross_entropy(hidden, weight, targets):
    """Mean over rows of cross_entropy(hidden @ weight.T, targets), the N x V logits never in memory.

    Args:
        hidden: (N, D), D <= 256; weight: (V, D); fp32, fp16 or bf16 (may differ).
        targets: (N,) integer class ids in [0, V) (not checked; there is no ignore index).
    Returns:
        0-d fp32 loss; differentiable in hidden and weight (gradients in their dtypes). Under autocast the operands
        are first cast as `hidden @ weight.T` would cast them; logits and sums stay fp32 (tf32 products for fp32
        operands on the GPU).
    """
    _check(hidden, weight, targets)
    # outside the op, so that autograd casts the gradients back to the callers' dtypes
    hidden, weight = autocast_operands(hidden, weight)
    return linear_cross_entropy_fwd(hidden, weight, targets)[0]
