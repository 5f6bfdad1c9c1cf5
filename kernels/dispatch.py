"""The single point where mixers choose between the Triton kernels and the naive references."""

from .polynomial.naive import naive_parallel_based, naive_parallel_rebased
from .polynomial.parallel import parallel_based
from .rebased_chunk.dispatch import rebased_attention

NAIVE_OPS = {"rebased": naive_parallel_rebased, "based": naive_parallel_based}
TRITON_OPS = {"rebased": rebased_attention, "based": parallel_based}  # rebased: parallel or chunked by length


def polynomial_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    """Causal normalized polynomial attention; score is "rebased" (s^2) or "based" (1 + s + s^2/2).

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv).
    CUDA tensors go to the Triton parallel kernel, anything else to the naive PyTorch reference.
    """
    ops = TRITON_OPS if q.is_cuda else NAIVE_OPS
    return ops[score](q, k, v, scale=scale, eps=eps)
