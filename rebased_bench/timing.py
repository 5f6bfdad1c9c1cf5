"""Timing and work counts shared by the kernel benchmarks (benchmarks/*.py) and the `kernels` suite.

FLOPs are counted causal, MAC = 2 FLOP, per call of batch x heads heads:
- quadratic form (ReBased / Based parallel): forward T^2 (d + dv), backward T^2 (4 d + 3 dv);
- softmax attention (SDPA, head dim D): forward 2 T^2 D, backward 2.5x the forward;
- chunked linear form with D' features and chunk C: forward T (4 D' dv + C (d + dv)),
  backward T (8 D' dv + C (3 d + 2 dv)) (recomputation not counted).
"""

import statistics
import time

import torch


def time_op(fn, warmup_ms=25, rep_ms=200, device=None):
    """Median and 20th / 80th percentile of fn's time in ms: triton.testing.do_bench (device events, L2
    flushed) on CUDA (the default where a GPU is visible); on CPU a wall-clock loop of at least 3 calls."""
    fn()  # compile / autotune outside the timed region
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda:
        import triton.testing

        torch.cuda.synchronize()
        med, p20, p80 = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
        return {"median_ms": med, "p20_ms": p20, "p80_ms": p80}
    times, deadline = [], time.perf_counter() + rep_ms / 1e3
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    q = statistics.quantiles(times, n=10, method="inclusive")
    return {"median_ms": statistics.median(times), "p20_ms": q[1], "p80_ms": q[7]}


def time_calls(fn, device, warmup=3, repeats=10):
    """Median and minimum time of one fn() call in ms over `repeats` calls after `warmup`: CUDA events on a GPU
    (whole training steps, where do_bench's L2 flush and its budget in ms would not fit), wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.device(device).type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def parallel_flops(B, T, H, d, dv, mode):
    """Causal parallel polynomial attention: forward T^2 (d + dv), backward T^2 (4 d + 3 dv) per head."""
    fwd, bwd = B * H * T * T * (d + dv), B * H * T * T * (4 * d + 3 * dv)
    return fwd if mode == "fwd" else fwd + bwd


def sdpa_flops(B, T, H, D, mode):
    """Causal softmax attention: forward 4 T^2 D / 2, backward 2.5x the forward."""
    fwd = 2 * B * H * T * T * D
    return fwd if mode == "fwd" else 3.5 * fwd


def chunk_flops(B, T, H, d, dv, mode, C=64, features=None):
    """Chunked linear form with `features` (default d(d+1)/2) and chunk C: see the module docstring."""
    dp = d * (d + 1) // 2 if features is None else features
    fwd = B * H * T * (4 * dp * dv + C * (d + dv))
    return fwd if mode == "fwd" else fwd + B * H * T * (8 * dp * dv + C * (3 * d + 2 * dv))
