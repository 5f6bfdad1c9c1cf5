"""The single point where mixers choose between the Triton kernels and the PyTorch paths."""

from .linear_ce.linear_ce import linear_cross_entropy as linear_cross_entropy_triton
from .linear_ce.naive import naive_linear_cross_entropy
from .polynomial.naive import naive_parallel_based, naive_parallel_rebased
from .polynomial.parallel import parallel_based
from .rebased_chunk.dispatch import rebased_attention
from .selective_scan import selective_scan_chunked, selective_scan_triton
from .wkv import wkv_chunked, wkv_triton

NAIVE_OPS = {"rebased": naive_parallel_rebased, "based": naive_parallel_based}
TRITON_OPS = {"rebased": rebased_attention, "based": parallel_based}  # rebased: parallel or chunked by length


def polynomial_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    """Causal normalized polynomial attention; score is "rebased" (s^2) or "based" (1 + s + s^2/2).

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv).
    CUDA tensors go to the Triton parallel kernels (ReBased: parallel or chunked by length), anything else to the
    naive PyTorch reference.
    """
    ops = TRITON_OPS if q.is_cuda else NAIVE_OPS
    return ops[score](q, k, v, scale=scale, eps=eps)


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=None):
    """Mamba's selective scan with mamba-ssm's optional fusions (`selective_scan_reference`), y fp32.

    u, delta, z: (batch, seq_len, d_inner); A: (d_inner, d_state); B, C: (batch, seq_len, d_state); D, delta_bias:
    (d_inner,). CUDA tensors go to the fused Triton kernels, anything else to the chunked PyTorch path (chunk_size:
    its chunk length, None for ~sqrt(seq_len); the kernels ignore it).
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_triton(*args) if u.is_cuda else selective_scan_chunked(*args, chunk_size=chunk_size)


def wkv_fn(w, u, k, v, chunk_size=16):
    """RWKV-v4's WKV (`wkv_reference`), (batch, seq_len, d) fp32; w, u: (d,); k, v: (batch, seq_len, d).

    CUDA tensors go to the fused Triton kernels, anything else to the chunked PyTorch path (chunk_size: its
    chunk length; the kernels ignore it).
    """
    if k.is_cuda:
        return wkv_triton(w, u, k, v)
    return wkv_chunked(w, u, k, v, chunk_size)


def linear_cross_entropy(hidden, weight, targets):
    """Mean over rows of cross_entropy(hidden @ weight.T, targets): the LM head and its loss, logits in fp32.

    hidden: (N, D); weight: (V, D); targets: (N,) class ids in [0, V) -> 0-d fp32 loss. CUDA tensors go to the fused
    Triton op (the logits never in memory), anything else to the naive PyTorch reference.
    """
    op = linear_cross_entropy_triton if hidden.is_cuda else naive_linear_cross_entropy
    return op(hidden, weight, targets)
