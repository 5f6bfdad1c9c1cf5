"""The polynomial attention kernels reach autograd and torch.compile through one function per kernel: custom ops
(opaque to the compiler, which fuses the projections and norms around them instead of tracing into the launchers)
while torch.compile traces, a plain autograd.Function otherwise: the custom op's dispatch lengthens the host's
path, which bounds a call at short sequences (docs/trainer.md: 1.19 -> 0.85 ms a forward + backward at seq_len
1024 on an NVIDIA H200, the kernels taking 0.65)."""

from typing import Callable, Optional

import torch


def attention_ops(name: str, fwd: Callable, bwd: Callable):
    """Register `fwd` (q, k, v, coeffs, scale, eps) -> (o, z) and `bwd` (q, k, v, o, z, do, coeffs, scale) ->
    (dq, dk, dv) as the ops rebased_bench::<name>_fwd and _bwd, with shapes for tracing and the autograd link;
    returns the differentiable forward, (q, k, v, coeffs, scale, eps) -> (o, z). o: (B, T, H, dv) in v's dtype,
    z: (B, H, T) fp32 (not differentiable); dq, dk, dv in q's, k's, v's dtypes."""

    def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, coeffs: list[float], scale: Optional[float],
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return fwd(q, k, v, coeffs, scale, eps)

    def backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, z: torch.Tensor,
                 do: torch.Tensor, coeffs: list[float], scale: Optional[float]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return bwd(q, k, v, o, z, do, coeffs, scale)

    fwd_op = torch.library.custom_op(f"rebased_bench::{name}_fwd", forward, mutates_args=())
    bwd_op = torch.library.custom_op(f"rebased_bench::{name}_bwd", backward, mutates_args=())

    @fwd_op.register_fake
    def _(q, k, v, coeffs, scale, eps):
        B, T, H, _ = q.shape
        return v.new_empty((B, T, H, v.shape[-1])), q.new_empty((B, H, T), dtype=torch.float32)

    @bwd_op.register_fake
    def _(q, k, v, o, z, do, coeffs, scale):
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)

    def setup_context(ctx, inputs, output):
        q, k, v, coeffs, scale, _ = inputs
        ctx.save_for_backward(q, k, v, *output)
        ctx.coeffs, ctx.scale = coeffs, scale

    def link(ctx, do, _dz):
        q, k, v, o, z = ctx.saved_tensors
        return (*bwd_op(q, k, v, o, z, do, ctx.coeffs, ctx.scale), None, None, None)

    fwd_op.register_autograd(link, setup_context=setup_context)

    class Eager(torch.autograd.Function):
        """The same launchers under autograd without the custom-op dispatch."""

        @staticmethod
        def forward(ctx, q, k, v, coeffs, scale, eps):
            o, z = fwd(q, k, v, coeffs, scale, eps)
            ctx.save_for_backward(q, k, v, o, z)
            ctx.coeffs, ctx.scale = coeffs, scale
            ctx.mark_non_differentiable(z)
            return o, z

        @staticmethod
        def backward(ctx, do, _dz):
            q, k, v, o, z = ctx.saved_tensors
            return (*bwd(q, k, v, o, z, do, ctx.coeffs, ctx.scale), None, None, None)

    def attention(q, k, v, coeffs, scale, eps):
        if torch.compiler.is_compiling():
            return fwd_op(q, k, v, coeffs, scale, eps)
        return Eager.apply(q, k, v, coeffs, scale, eps)

    return attention
