"""Attention ops: Triton kernels beside their naive PyTorch references (imported as rebased_bench.kernels).

`polynomial_attention` is the one dispatch point the mixers call.
"""

from .polynomial.naive import naive_parallel_based, naive_parallel_rebased
from .polynomial.parallel import parallel_based, parallel_rebased
from .dispatch import polynomial_attention

__all__ = [
    "naive_parallel_based",
    "naive_parallel_rebased",
    "parallel_based",
    "parallel_rebased",
    "polynomial_attention",
]

from .rebased_chunk import chunk_rebased, rebased_step
from .rebased_chunk.dispatch import rebased_attention

__all__ += ["chunk_rebased", "rebased_attention", "rebased_step"]
