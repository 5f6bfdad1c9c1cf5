"""What the Triton launchers share: whether their kernels run in Triton's interpreter, and the buffers they allocate.

Under TRITON_INTERPRET=1 (set before a kernel module is imported) the kernels run on CPU tensors through Triton's
interpreter; each launcher asks `interpreted(kernel)` of its own kernels, since a test may rebuild them.
"""

import functools
import os

import torch
import triton

# Debug aid for tests: fill every buffer the launchers allocate with NaN, so an element a kernel forgets to write
# (or a snapshot or scratch value it reads before it was written) shows up as NaN in the result. Tests flip it.
POISON = os.environ.get("REBASED_KERNELS_POISON", "0") == "1"


def interpreted(kernel) -> bool:
    """True when `kernel` was built by Triton's interpreter (TRITON_INTERPRET=1 when its module was imported)."""
    return not isinstance(kernel, triton.runtime.JITFunction)


def empty(*size, dtype=torch.float32, device=None) -> torch.Tensor:
    """torch.empty(*size) for a kernel to fill; NaN-filled under POISON. size: ints or one shape tuple."""
    x = torch.empty(*size, dtype=dtype, device=device)
    return x.fill_(float("nan")) if POISON else x


def on_input_device(launcher):
    """Run `launcher` with its first tensor argument's CUDA device current: Triton launches on the current device,
    which need not be the inputs' (tensors on cuda:1 in a process whose current device is cuda:0)."""
    @functools.wraps(launcher)
    def guarded(*args, **kwargs):
        first = next(arg for arg in args if isinstance(arg, torch.Tensor))
        if first.device.type != "cuda" or first.device.index == torch.cuda.current_device():
            return launcher(*args, **kwargs)
        with torch.cuda.device(first.device):
            return launcher(*args, **kwargs)
    return guarded
