"""Linear-time ReBased: chunked Triton kernel, one-token decoding step, and the length-based dispatch."""

from .chunk import chunk_rebased
from .naive import naive_chunk_rebased, naive_recurrent_rebased, rebased_feature_map, rebased_step

__all__ = ["chunk_rebased", "naive_chunk_rebased", "naive_recurrent_rebased", "rebased_feature_map", "rebased_step"]
