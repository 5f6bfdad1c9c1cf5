"""Mamba's selective scan: sequential reference, chunked PyTorch path (CPU) and fused Triton kernels (CUDA)."""

from .chunked import selective_scan_chunked
from .naive import selective_scan_reference
from .recurrent import selective_scan_triton

__all__ = ["selective_scan_chunked", "selective_scan_reference", "selective_scan_triton"]
