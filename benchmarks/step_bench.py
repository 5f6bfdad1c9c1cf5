"""Time one training step of the 2-layer MQAR model per mixer: the baselines must stay within 3x of
conv_attention at d_model 128, seq_len 2048, batch 64, so the Figure 1 sweep is not dominated by them.

A step is what the trainer does per micro-batch: forward at the query positions, cross-entropy, backward,
AdamW step; bf16 autocast (the trainer's GPU default) and fp32 (the paper's protocol, suite mqar-paper).
Median of CUDA-event timings after warm-up, peak memory. On CUDA the mixers run their scans through the fused
Triton kernels (rebased_bench.kernels: selective_scan_fn, wkv_fn), elsewhere through the chunked PyTorch paths.
Then the two scans alone (forward + backward, fp32 inputs): the Triton kernels at their default and a few other
launch configs, and the chunked PyTorch paths (what the mixers ran on CUDA before the kernels) for comparison.

    python benchmarks/step_bench.py [--out step_bench.json] [--precisions bf16,fp32] [--mixers conv_attention,mamba,rwkv]
    python benchmarks/step_bench.py --device cpu --batch 2 --seq-len 128 --repeats 2   # smoke test
"""

import argparse
import json

import torch

from rebased_bench.data.mqar import IGNORE_INDEX
from rebased_bench.env import git_state
from rebased_bench.kernels import selective_scan_chunked, selective_scan_triton, wkv_chunked, wkv_triton
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.timing import time_calls
from rebased_bench.training import autocast, query_loss

MIXERS = ["conv_attention", "based", "rebased", "mamba", "rwkv"]
# the kernels alone (CUDA only): (overrides of the launch config, with backward, with mamba-ssm's fusions as
# Mamba runs them: softplus(dt + bias), D skip, z gate); STAGES 1 shows what pipelining the loads gains
SCAN_CONFIGS = [({}, True, False), ({}, False, False), ({"STAGES": 1}, True, False), ({}, True, True)]
WKV_CONFIGS = [({}, True), ({}, False), ({"STAGES": 1}, True)]


def log(*args):
    print(*args, flush=True)


def mqar_batch(batch, seq_len, vocab, device, seed=0):
    """Random tokens with MQAR's label layout: seq_len / 4 labelled query positions per row, all in the query region."""
    gen = torch.Generator().manual_seed(seed)
    kv = seq_len // 4
    inputs = torch.randint(1, vocab, (batch, seq_len), generator=gen)
    labels = torch.full_like(inputs, IGNORE_INDEX)
    for row in labels:
        row[2 * kv + torch.randperm(seq_len - 2 * kv, generator=gen)[:kv]] = torch.randint(vocab // 2, vocab, (kv,))
    return inputs.to(device), labels.to(device)


def bench_step(mixer, precision, args, device):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer, args.d_model, args.seq_len)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    inputs, labels = mqar_batch(args.batch, args.seq_len, 8192, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = query_loss(model, inputs, labels)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    median, best = time_calls(step, device, repeats=args.repeats)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    if args.profile and mixer in args.profile.split(",") and device.type == "cuda":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    return {"median_ms": median, "min_ms": best, "peak_mem_bytes": peak}


def bench_scans(args, device):
    """The two scans alone at the model's shapes (mamba: d_inner = 2 d_model, d_state 16), fp32 inputs: the Triton
    kernels (CUDA only) per launch config, forward + backward and forward only, then the chunked PyTorch paths."""
    rows = []
    b, n, d = args.batch, args.seq_len, args.d_model
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
            median, best = time_calls(run, device, repeats=args.repeats)
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
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--mixers", default=",".join(MIXERS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--profile", default="", help="mixers whose step's top CUDA kernels to print, e.g. mamba,rwkv")
    args = parser.parse_args()
    device = torch.device(args.device)
    import triton

    commit, dirty = git_state()
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "triton": triton.__version__, "git_commit": commit, "git_dirty": dirty,
           "d_model": args.d_model, "seq_len": args.seq_len, "batch": args.batch}
    log(json.dumps(env))
    rows = []
    for precision in args.precisions.split(","):
        log(f"training step, {precision}:")
        base = None
        for mixer in args.mixers.split(","):
            try:
                row = bench_step(mixer, precision, args, device)
            except torch.cuda.OutOfMemoryError as exc:
                row = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            row = {"mixer": mixer, "precision": precision, **row}
            if mixer == "conv_attention":
                base = row.get("median_ms")
            if base and "median_ms" in row:
                row["vs_conv_attention"] = row["median_ms"] / base
            rows.append(row)
            ratio = f"{row['vs_conv_attention']:5.2f}x" if "vs_conv_attention" in row else "   - "
            timing = f"{row['median_ms']:8.2f} ms" if "median_ms" in row else row["error"]
            log(f"  {mixer:>14}: {timing}  {ratio}  peak {row.get('peak_mem_bytes', 0) / 2**30:6.2f} GiB")
    log("scans alone:")
    rows += bench_scans(args, device)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
