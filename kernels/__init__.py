"""Attention ops: Triton kernels beside their naive PyTorch references (imported as rebased_bench.kernels).

`polynomial_attention`, `selective_scan_fn` and `wkv_fn` (dispatch.py) are the dispatch points the mixers call;
`linear_cross_entropy` is the one for the LM head's loss.
"""

from .polynomial.fused_chunk import fused_chunk_based, fused_chunk_rebased
from .polynomial.naive import naive_parallel_based, naive_parallel_rebased
from .polynomial.parallel import parallel_based, parallel_rebased
from .polynomial.quadform import quadform_based, quadform_rebased
from .polynomial.quadform_chunk import quadform_chunk_based, quadform_chunk_rebased
from .dispatch import polynomial_attention

__all__ = [
    "fused_chunk_based",
    "fused_chunk_rebased",
    "naive_parallel_based",
    "naive_parallel_rebased",
    "parallel_based",
    "parallel_rebased",
    "polynomial_attention",
    "quadform_based",
    "quadform_rebased",
    "quadform_chunk_based",
    "quadform_chunk_rebased",
]

from .rebased_chunk import chunk_rebased, rebased_step
from .rebased_chunk.dispatch import rebased_attention

__all__ += ["chunk_rebased", "rebased_attention", "rebased_step"]

from .dispatch import selective_scan_fn, wkv_fn
from .selective_scan import selective_scan_chunked, selective_scan_reference, selective_scan_triton
from .wkv import wkv_chunked, wkv_reference, wkv_triton

__all__ += ["selective_scan_chunked", "selective_scan_fn", "selective_scan_reference", "selective_scan_triton",
            "wkv_chunked", "wkv_fn", "wkv_reference", "wkv_triton"]

from .dispatch import linear_cross_entropy
from .linear_ce.naive import naive_linear_cross_entropy

__all__ += ["linear_cross_entropy", "naive_linear_cross_entropy"]
