"""Time Mamba's selective scan and RWKV's WKV alone, at the MQAR model's shapes, per launch config.

Forward + backward (and forward only) of fp32 inputs: the Triton kernels (CUDA only) at their default launch
config and a few others, then the chunked PyTorch paths (what the mixers ran on CUDA before the kernels) for
comparison. Shapes: mamba d_inner = 2 d_model, d_state 16; RWKV d_model channels. Median and min of `--repeats`
calls after warm-up (CUDA events on a GPU, the host clock on a CPU, where only the chunked paths run). The whole
training step per mixer: benchmarks/trainer_step_bench.py.

    python benchmarks/scan_bench.py --out scan_bench.json
    python benchmarks/scan_bench.py --device cpu --batch 2 --seq-len 128 --repeats 2   # smoke test
"""

import argparse
import json

import torch
import triton

from rebased_bench.env import git_state
from rebased_bench.kernels import selective_scan_chunked, selective_scan_triton, wkv_chunked, wkv_triton
from rebased_bench.timing import time_calls

# (overrides of the launch config, with backward, with mamba-ssm's fusions as Mamba runs them: softplus(dt +
# bias), D skip, z gate); STAGES 1 shows what pipelining the loads gains
SCAN_CONFIGS = [({}, True, False), ({}, False, False), ({"STAGES": 1}, True, False), ({}, True, True)]
WKV_CONFIGS = [({}, True), ({}, False), ({"STAGES": 1}, True)]


def log(*args):
    print(*args, flush=True)


def bench_scans(batch, seq_len, d_model, repeats, device):
    """Rows {op, config, [fused], mode, median_ms, min_ms} of the scans at (batch, seq_len, d_model)."""
    rows = []
    b, n, d = batch, seq_len, d_model
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=device, generator=gen)

    def timed(op, config, backward, fn, leaves, **extra):
        """Time fn() on leaves (requires_grad), with the backward pass of an all-ones output gradient or without."""
        def run():
            y = fn(*leaves)
            if backward:
                torch.autograd.grad(y, leaves, torch.ones_like(y))
        with torch.set_grad_enabled(backward):
            median, best = time_calls(run, device, repeats=repeats)
        mode = "fwd_bwd" if backward else "fwd"
        rows.append({"op": op, "config": json.dumps(config), **extra, "mode": mode, "median_ms": median,
                     "min_ms": best})
        log(f"  {op:>22} {json.dumps({**config, **extra}):>34} {mode:>7}: {median:8.3f} ms")

    dt = rand(b, n, 2 * d)
    scan_leaves = [rand(b, n, 2 * d), torch.nn.functional.softplus(dt - 4),
                   -torch.arange(1, 17, device=device, dtype=torch.float32).repeat(2 * d, 1), rand(b, n, 16),
                   rand(b, n, 16)]
    fused_leaves = [*scan_leaves[:1], dt - 4, *scan_leaves[2:], rand(2 * d), rand(b, n, 2 * d), rand(2 * d)]
    scan_leaves, fused_leaves = ([x.clone().requires_grad_() for x in xs] for xs in (scan_leaves, fused_leaves))
    wkv_leaves = [x.requires_grad_() for x in (rand(d), rand(d), rand(b, n, d), rand(b, n, d))]

    def wkv(op):
        return lambda w, u, k, v: op(-torch.exp(w), u, k, v)

    if device.type == "cuda":
        for config, backward, fused in SCAN_CONFIGS:
            if fused:
                fn = lambda u, dt, A, B, C, D, z, bias, c=config: selective_scan_triton(  # noqa: E731
                    u, dt, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True, config=c)
            else:
                fn = lambda *x, c=config: selective_scan_triton(*x, config=c)  # noqa: E731
            timed("selective_scan_triton", config, backward, fn, fused_leaves if fused else scan_leaves, fused=fused)
        for config, backward in WKV_CONFIGS:
            timed("wkv_triton", config, backward, wkv(lambda *x, c=config: wkv_triton(*x, config=c)), wkv_leaves)
    timed("selective_scan_chunked", {}, True, selective_scan_chunked, scan_leaves)
    timed("wkv_chunked", {"chunk_size": 16}, True, wkv(wkv_chunked), wkv_leaves)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write {env, rows} as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    commit, dirty = git_state()
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "triton": triton.__version__, "git_commit": commit, "git_dirty": dirty,
           "d_model": args.d_model, "seq_len": args.seq_len, "batch": args.batch}
    log(json.dumps(env))
    rows = bench_scans(args.batch, args.seq_len, args.d_model, args.repeats, device)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
