"""The attention implementations the kernels kind times: how to build each, what it computes, where it runs.

A provider is a `Provider` in PROVIDERS, keyed by the name suites and `--providers` use. Its `semantics` picks the
fp32 reference its output is checked against; `flops` counts its algorithm's work (rebased_bench/timing.py).
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..timing import chunk_flops, parallel_flops, sdpa_flops

NAIVE_MAX_SEQ_LEN = 2048  # the naive form materializes batch x heads x T x T fp32 scores
GRAD_CHECK_MAX_SEQ_LEN = 8192  # the fp32 reference's autograd graph is O(T^2)


@dataclass(frozen=True)
class Provider:
    """An attention implementation under test: how to build it and what it computes."""

    semantics: str  # rebased | based | softmax: picks the fp32 reference
    build: Callable  # () -> fn(q, k, v) -> o, inputs in `layout`
    flops: Callable  # (case) -> FLOPs of one call in the case's mode
    cuda: bool = True  # needs a GPU
    fla: bool = False  # needs flash-linear-attention
    head_first: bool = False  # (batch, heads, seq_len, dim) instead of (batch, seq_len, heads, dim)
    unsupported: Callable = lambda case: None  # (case) -> reason or None


def shape(c):
    """(batch, seq_len, heads, d, dv, mode) of a kernels case."""
    return c.batch, c.seq_len, c.heads, c.d, c.dv, c.mode


def _quadratic(c):
    return parallel_flops(*shape(c))


def _chunked(c, features=None):
    return chunk_flops(*shape(c), features=features)


def _ours(name):
    def build():
        from .. import kernels
        fns = {"parallel": kernels.parallel_rebased, "dispatch": kernels.polynomial_attention,
               "chunk": lambda q, k, v: kernels.chunk_rebased(q, k, v)[0], "naive": kernels.naive_parallel_rebased,
               "quadform": kernels.quadform_rebased, "fused_chunk": kernels.fused_chunk_rebased,
               "quadform_chunk": kernels.quadform_chunk_rebased}
        return fns[name]
    return build


def path_taken(c) -> str:
    """The kernel a case's provider runs: the provider itself, or for `dispatch` the one it picks."""
    if c.provider != "dispatch":
        return c.provider
    from ..kernels.rebased_chunk.dispatch import use_chunked
    return "chunk" if use_chunked(c.seq_len, c.d, c.mode == "fwd_bwd", c.batch * c.heads) else "parallel"


def _dispatch_flops(c):
    return _chunked(c) if path_taken(c) == "chunk" else _quadratic(c)


def _fla_parallel_rebased():
    from fla.ops.rebased import parallel_rebased
    return lambda q, k, v: parallel_rebased(q, k, v, eps=1e-12)


def _fla_chunk_linear_attn():
    # FLA's ReBased layer path: materialize the 136-d features, then its generic normalized linear attention
    from fla.ops.linear_attn import chunk_linear_attn

    from ..kernels.rebased_chunk import rebased_feature_map

    def fn(q, k, v):
        scale = q.shape[-1] ** -0.5
        fq, fk = (rebased_feature_map(x).to(v.dtype) for x in (q * scale, k))
        return chunk_linear_attn(fq, fk, v, scale=1.0, normalize=True)[0]
    return fn


def _fla_based(name):
    def build():
        from fla.ops import based
        return getattr(based, name)
    return build


def _sdpa():
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)


PROVIDERS = {
    "dispatch": Provider("rebased", _ours("dispatch"), _dispatch_flops),
    "chunk": Provider("rebased", _ours("chunk"), _chunked, unsupported=lambda c: "chunk: d > 64" if c.d > 64 else None),
    "parallel": Provider("rebased", _ours("parallel"), _quadratic),
    "naive": Provider("rebased", _ours("naive"), _quadratic, cuda=False, unsupported=lambda c: (
        f"naive: seq_len {c.seq_len} > {NAIVE_MAX_SEQ_LEN} (materializes T x T scores)"
        if c.seq_len > NAIVE_MAX_SEQ_LEN else None)),
    # plain PyTorch, linear in T, state d x d x dv per head: a candidate for the MQAR model's value heads of 5-10
    "quadform": Provider("rebased", _ours("quadform"), lambda c: _chunked(c, c.d ** 2), cuda=False),
    # the same state kept on chip by one Triton program per (batch, head); d = 16, dv <= 63 only
    "fused_chunk": Provider("rebased", _ours("fused_chunk"), lambda c: _chunked(c, c.d ** 2), unsupported=lambda c: (
        f"fused_chunk: d = {c.d} != 16 or dv = {c.dv} > 63" if c.d != 16 or c.dv > 63 else None)),
    # the same state written per chunk by Triton kernels that then take every chunk in parallel; d <= 32, dv <= 63
    "quadform_chunk": Provider("rebased", _ours("quadform_chunk"), lambda c: _chunked(c, c.d ** 2),
                               unsupported=lambda c: (f"quadform_chunk: d = {c.d} > 32 or dv = {c.dv} > 63"
                                                      if c.d > 32 or c.dv > 63 else None)),
    "sdpa": Provider("softmax", _sdpa, lambda c: sdpa_flops(c.batch, c.seq_len, c.heads, c.d, c.mode),
                     cuda=False, head_first=True),
    "fla_parallel_rebased": Provider("rebased", _fla_parallel_rebased, _quadratic, fla=True),
    "fla_chunk_linear_attn": Provider("rebased", _fla_chunk_linear_attn, _chunked, fla=True),
    "fla_parallel_based": Provider("based", _fla_based("parallel_based"), _quadratic, fla=True),
    "fla_fused_chunk_based": Provider(
        "based", _fla_based("fused_chunk_based"), lambda c: _chunked(c, 1 + c.d + c.d ** 2), fla=True,
        unsupported=lambda c: "fused_chunk_based: d > 16" if c.d > 16 else None),
}


def unavailable(provider: Provider, c, device: torch.device) -> str | None:
    """Why the provider cannot run this case here (no GPU, no fla, a shape it lacks), or None."""
    if provider.cuda and device.type != "cuda":
        return f"{c.provider}: needs a CUDA GPU (device {device})"
    if provider.fla:
        try:
            import fla  # noqa: F401
        except Exception as exc:  # optional peer: never a dependency
            return f"{c.provider}: fla not importable ({type(exc).__name__}: {str(exc)[:120]})"
    return provider.unsupported(c)


def _reference(semantics, q, k, v):
    """fp32 reference on (1, T, 1, dim) slices (softmax: (1, 1, T, dim))."""
    from ..kernels import naive_parallel_based, naive_parallel_rebased
    if semantics == "softmax":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return (naive_parallel_rebased if semantics == "rebased" else naive_parallel_based)(q, k, v)


def _rel(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def check(provider: Provider, fn, c, q, k, v, do):
    """(rel_err of o, rel_err of the gradients or NaN) on batch 0, head 0 against the fp32 reference."""
    grad = c.mode == "fwd_bwd" and c.seq_len <= GRAD_CHECK_MAX_SEQ_LEN
    with torch.set_grad_enabled(grad):
        o = fn(q, k, v)
        sl = (slice(0, 1), slice(0, 1)) if provider.head_first else (slice(0, 1), slice(None), slice(0, 1))
        ref_in = [x[sl].detach().float().requires_grad_(grad) for x in (q, k, v)]
        ref = _reference(provider.semantics, *ref_in)
        err = _rel(o[sl], ref)
        if not grad:
            return err, math.nan
        grads = torch.autograd.grad(o, (q, k, v), do)
        ref_grads = torch.autograd.grad(ref, ref_in, do[sl].float())
        return err, max(_rel(g[sl], r) for g, r in zip(grads, ref_grads))
