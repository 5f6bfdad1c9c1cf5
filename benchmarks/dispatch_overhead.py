"""Where the time of one polynomial-attention forward + backward call goes at short sequences: device time of its
GPU kernels against the host's time to issue the call.

`rebased_attention` (the mixers' ReBased path) at 32768 tokens per call, 16 heads, d 16, dv 64, bf16, as the
kernels-seq suite times it (torch.autograd.grad of the output). Prints one JSON line per run: per seq_len the
do_bench median (L2 flushed, as the suite), the forward alone, the host time per call in a loop of 50 (no sync
inside), the wall time per call of that loop, and the sum of the GPU kernels' time per call (torch.profiler).
Where the host time exceeds the kernels' time the call is bound by the host, and so is the suite's number.

    python benchmarks/dispatch_overhead.py LABEL     # e.g. the commit; PYTHONPATH=<other install> to compare
"""

import json
import sys
import time

import torch
import triton.testing

from rebased_bench.kernels.rebased_chunk.dispatch import rebased_attention


def measure(T, tokens=32768, H=16, d=16, dv=64):
    """do_bench, forward, host, wall and kernel times (ms) of one forward + backward call at seq_len T."""
    B = tokens // T
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(B, T, H, d, device="cuda", generator=g, dtype=torch.bfloat16).requires_grad_()
            for _ in range(2))
    v = torch.randn(B, T, H, dv, device="cuda", generator=g, dtype=torch.bfloat16).requires_grad_()
    do = torch.randn_like(v)

    def call():
        torch.autograd.grad(rebased_attention(q, k, v), (q, k, v), do)

    def forward():
        rebased_attention(q.detach(), k.detach(), v.detach())

    call()
    torch.cuda.synchronize()
    row = {"fwd_bwd_ms": triton.testing.do_bench(call, warmup=25, rep=300, quantiles=[0.5]),
           "fwd_ms": triton.testing.do_bench(forward, warmup=25, rep=300, quantiles=[0.5])}
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(50):
        call()
    row["host_ms"] = (time.perf_counter() - start) / 50 * 1e3
    torch.cuda.synchronize()
    row["wall_ms"] = (time.perf_counter() - start) / 50 * 1e3
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            call()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    row["device_ms"] = sum(e.self_device_time_total for e in events) / 10 / 1e3
    row["kernels_ms"] = {e.key[:40]: e.self_device_time_total / 10 / 1e3 for e in events}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


if __name__ == "__main__":
    print(json.dumps({"label": sys.argv[1] if len(sys.argv) > 1 else "",
                      **{T: measure(T) for T in (256, 1024, 2048)}}), flush=True)
