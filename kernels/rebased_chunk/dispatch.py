"""`rebased_attention`: the quadratic parallel kernel for short sequences, the chunked one for long ones."""

from ..polynomial.naive import naive_parallel_rebased
from ..polynomial.parallel import parallel_rebased
from .chunk import chunk_rebased

# Smallest seq_len that goes to the chunked kernel on CUDA (d <= CHUNK_MAX_D). Placeholder until measured on
# the H100 by `python benchmarks/chunk_bench.py --threshold` (see benchmarks/CHUNK.md).
CHUNK_MIN_SEQ_LEN = 2048
# beyond this feature dim the d(d+1)/2 state outgrows the quadratic form's work at any measured length
CHUNK_MAX_D = 32


def use_chunked(seq_len, d):
    """True when rebased_attention takes the chunked kernel for this shape on CUDA."""
    return d <= CHUNK_MAX_D and seq_len >= CHUNK_MIN_SEQ_LEN


def rebased_attention(q, k, v, scale=None, eps=1e-12):
    """Causal normalized ReBased attention, parallel or chunked by seq_len (naive PyTorch off CUDA).

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv) in v's dtype.
    """
    if not q.is_cuda:
        return naive_parallel_rebased(q, k, v, scale=scale, eps=eps)
    if use_chunked(q.shape[1], q.shape[-1]):
        return chunk_rebased(q, k, v, scale=scale, eps=eps)[0]
    return parallel_rebased(q, k, v, scale=scale, eps=eps)
