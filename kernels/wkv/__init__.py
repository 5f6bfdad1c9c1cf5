"""RWKV-v4's WKV: sequential reference, chunked PyTorch path (CPU) and fused Triton kernels (CUDA)."""

from .chunked import wkv_chunked
from .naive import wkv_reference
from .recurrent import wkv_triton

__all__ = ["wkv_chunked", "wkv_reference", "wkv_triton"]
