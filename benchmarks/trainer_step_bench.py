"""Time of one optimizer step of the MQAR trainer at the paper's batch (512), per mixer, shape and precision.

Variants of the same step (rebased_bench.training.optimizer_step on one batch of real MQAR data):
- eager_paper: eager PyTorch, the paper's micro-batches (256/128/64 at seq_len 512/1024/2048);
- eager_whole: eager, the whole batch at once;
- compiled: what the trainer runs on a GPU: torch.compile of the loss (loss_function), the whole batch;
- compiled_quadform: the same with the mixer's attention on the quadform path (kernels/polynomial/quadform.py)
  in place of the Triton parallel kernel: what the step would take if the trainer used it;
- compiled_fused_chunk: likewise with the fused chunked Triton kernel (kernels/polynomial/fused_chunk.py; d = 16).
Median of CUDA-event timings after warm-up; peak memory; compile time (first step); --profile prints the top GPU
kernels of the compiled step. Writes rows as JSON (--out) and prints a Markdown table last.

    python benchmarks/trainer_step_bench.py --out trainer_step_bench.json
    python benchmarks/trainer_step_bench.py --cases rebased:64:1024 --precisions bf16 --profile
"""

import argparse
import contextlib
import json
import time
from unittest import mock

import torch

from rebased_bench.data.mqar import generate, paper_num_kv_pairs, query_index
from rebased_bench.env import git_state
from rebased_bench.kernels.polynomial.fused_chunk import fused_chunk_polynomial
from rebased_bench.kernels.polynomial.quadform import quadform_polynomial
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.mixers import SCORE_COEFFS
from rebased_bench.timing import time_calls
from rebased_bench.training import TrainConfig, loss_function, micro_batch_size, optimizer_step, query_loss

CASES = "rebased:64:1024,based:64:1024,conv_attention:64:1024,rebased:128:2048,based:128:2048"


def log(*args):
    print(*args, flush=True)


def quadform_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    """polynomial_attention on the quadform path. q, k: (batch, seq_len, heads, d); v: (..., dv) -> (..., dv)."""
    return quadform_polynomial(q, k, v, SCORE_COEFFS[score], scale, eps)


def fused_chunk_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    """polynomial_attention on fused_chunk. q, k: (batch, seq_len, heads, 16); v: (..., dv) -> (..., dv)."""
    return fused_chunk_polynomial(q, k, v, SCORE_COEFFS[score], scale, eps)


ATTENTION_PATHS = {"compiled_quadform": quadform_attention, "compiled_fused_chunk": fused_chunk_attention}


def attention_path(variant):
    """The context a variant's steps run in: the mixers' attention swapped for compiled_quadform's or
    compiled_fused_chunk's."""
    if variant in ATTENTION_PATHS:
        return mock.patch("rebased_bench.models.mixers.polynomial_attention", ATTENTION_PATHS[variant])
    return contextlib.nullcontext()


def bench(mixer, d_model, seq_len, precision, variant, batch, repeats, profile):
    """One row: the step's median/min ms, peak memory, first-step (compile) seconds."""
    device = torch.device("cuda")
    inputs, labels = (t.to(device) for t in generate(batch, seq_len, paper_num_kv_pairs(seq_len), seed=0))
    index = query_index(labels)
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer, d_model, seq_len)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=batch, precision=precision)
    micro = micro_batch_size(config, seq_len) if variant == "eager_paper" else batch
    loss_fn = loss_function(device) if variant.startswith("compiled") else query_loss

    def step():
        optimizer_step(model, optimizer, loss_fn, inputs, labels, index, micro, precision)

    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - start
    for _ in range(3):
        step()
    torch.cuda.reset_peak_memory_stats()
    median, best = time_calls(step, device, warmup=0, repeats=repeats)
    row = dict(mixer=mixer, d_model=d_model, seq_len=seq_len, precision=precision, variant=variant, batch=batch,
               micro_batch=micro, median_ms=median, min_ms=best, first_step_s=first_s,
               peak_mem_bytes=torch.cuda.max_memory_allocated())
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES, help="mixer:d_model:seq_len, comma separated")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--variants", default="eager_paper,eager_whole,compiled")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="top GPU kernels of each compiled bf16 step")
    parser.add_argument("--out", help="write {env, rows} as JSON here")
    args = parser.parse_args()
    commit, dirty = git_state()
    env = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, git_commit=commit, git_dirty=dirty)
    log(json.dumps(env))
    rows = []
    for case in args.cases.split(","):
        mixer, d_model, seq_len = case.split(":")
        for precision in args.precisions.split(","):
            for variant in args.variants.split(","):
                profile = args.profile and variant.startswith("compiled") and precision == "bf16"
                try:
                    with attention_path(variant):
                        row = bench(mixer, int(d_model), int(seq_len), precision, variant, args.batch,
                                    args.repeats, profile)
                except torch.OutOfMemoryError as exc:
                    row = dict(mixer=mixer, d_model=int(d_model), seq_len=int(seq_len), precision=precision,
                               variant=variant, error=f"out of memory: {str(exc).splitlines()[0]}")
                rows.append(row)
                log(json.dumps(row))
                torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    log("| mixer | d_model | seq_len | precision | variant | micro | median ms | peak GiB | first step s |")
    log("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "median_ms" in r:
            log(f"| {r['mixer']} | {r['d_model']} | {r['seq_len']} | {r['precision']} | {r['variant']} | "
                f"{r['micro_batch']} | {r['median_ms']:.2f} | {r['peak_mem_bytes'] / 2**30:.1f} | {r['first_step_s']:.1f} |")
        else:
            log(f"| {r['mixer']} | {r['d_model']} | {r['seq_len']} | {r['precision']} | {r['variant']} | - | "
                f"{r['error']} | | |")


if __name__ == "__main__":
    main()
