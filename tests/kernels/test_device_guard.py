"""The Triton launchers run on their inputs' GPU, whichever GPU is current."""

import pytest
import torch

from kernels.polynomial.naive import naive_parallel_rebased
from kernels.polynomial.parallel import parallel_rebased

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")


def test_parallel_rebased_on_second_gpu_while_first_is_current():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 64, 2, 16, device="cuda:1") for _ in range(3))
    with torch.cuda.device(0):
        out = parallel_rebased(q, k, v)
    assert out.device == q.device
    torch.testing.assert_close(out, naive_parallel_rebased(q, k, v), atol=2e-3, rtol=2e-3)
