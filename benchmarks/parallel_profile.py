"""A few forward + backward calls of the parallel ReBased kernel at one shape, for Nsight Compute:

    ncu --clock-control none -k regex:parallel_poly -s 4 -c 4 --section SpeedOfLight \\
        --section ComputeWorkloadAnalysis --section WarpStateStats python3 benchmarks/parallel_profile.py
"""

import argparse

import torch

from rebased_bench.kernels.polynomial.parallel import parallel_rebased


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--dv", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    B, T, H = max(1, a.tokens // a.seq_len), a.seq_len, a.heads
    q, k = (torch.randn(B, T, H, a.d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    v = torch.randn(B, T, H, a.dv, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    do = torch.randn_like(v)
    for _ in range(a.iters):
        torch.autograd.grad(parallel_rebased(q, k, v), (q, k, v), do)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
