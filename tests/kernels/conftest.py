"""Run the Triton kernels natively on a CUDA machine, else through Triton's interpreter on CPU tensors.

TRITON_INTERPRET is read when @triton.jit decorates a function, so it must be set before the kernel module is
imported. If another test imported rebased_bench.kernels first (mixers do), the kernel modules are reloaded.
"""

import importlib
import os
import sys

import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"
    for name in ("rebased_bench.kernels.polynomial.parallel_kernels", "rebased_bench.kernels.polynomial.parallel",
                 "rebased_bench.kernels.polynomial.fused_chunk_kernels", "rebased_bench.kernels.polynomial.fused_chunk",
                 "rebased_bench.kernels.polynomial.quadform_chunk_kernels",
                 "rebased_bench.kernels.polynomial.quadform_chunk",
                 "rebased_bench.kernels.linear_ce.kernels", "rebased_bench.kernels.linear_ce.linear_ce"):
        if name in sys.modules:
            importlib.reload(sys.modules[name])
