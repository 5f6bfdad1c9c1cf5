"""Time of one optimizer step of the MQAR trainer, per mixer, shape, precision and variant.

A step is rebased_bench.training.optimizer_step on one batch of real MQAR data (forward, cross-entropy, backward,
AdamW); the variants (benchmarks/trainer_variants.py, listed by --help) change how the loss is built, how the
batch is split and which attention path the mixers take; `loop` times the real `train` loop instead. Median and
min of `--repeats` steps after 3 warm-up steps (CUDA events on a GPU, the host clock on a CPU), peak memory, and
first_step_s: the first step (compilation; for `loop` its whole first epoch). --profile prints the top CUDA
kernels of each step variant and keeps them in its row (`profile`: name, cuda_time_total_us, count over
`profile_steps` steps). Writes {env, rows} as JSON (--out), a Markdown table last.

    python benchmarks/trainer_step_bench.py --precisions bf16 --variants compiled --out bench_bf16.json
    python benchmarks/trainer_step_bench.py --cases rebased:64:1024 --precisions bf16 --variants compiled --profile
    python benchmarks/trainer_step_bench.py --device cpu --cases rebased:16:64 --batch 4 --repeats 2 \\
        --precisions fp32 --variants eager_whole,paper,loop   # smoke test, seconds
"""

import argparse
import json
import statistics
import time
import traceback

import torch

from rebased_bench.data.mqar import generate, paper_num_kv_pairs, query_index
from rebased_bench.env import git_state
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.timing import time_calls
from rebased_bench.training import TrainConfig, micro_batch_size, optimizer_step, train
from trainer_variants import VARIANTS

CASES = "rebased:64:1024,based:64:1024,conv_attention:64:1024,rebased:128:2048,based:128:2048"
LOOP_EPOCHS = 3  # timed epochs of `loop`, after one warm-up epoch
PROFILE_STEPS = 3


def log(*args):
    print(*args, flush=True)


def sync(device):
    """Wait for the GPU's queued work (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device):
    """Peak bytes allocated on the GPU since the last reset; None on a CPU."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def fresh_model(mixer, d_model, seq_len, device):
    """The 2-layer MQAR model, seeded, in training mode on `device`."""
    torch.manual_seed(0)
    return LanguageModel(ModelConfig(mixer, d_model, seq_len)).to(device).train()


def profiled(step, device):
    """Print the top CUDA kernels of PROFILE_STEPS steps; return them as [{name, cuda_time_total_us, count}]."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILE_STEPS):
            step()
        sync(device)
    averages = prof.key_averages()
    log(averages.table(sort_by="device_time_total", row_limit=25, max_name_column_width=90))
    kernels = sorted((e for e in averages if e.device_time_total > 0), key=lambda e: -e.device_time_total)
    return [dict(name=e.key, cuda_time_total_us=e.device_time_total, count=e.count) for e in kernels]


def bench_step(variant, mixer, d_model, seq_len, precision, batch, repeats, profile, device):
    """One step variant's row: median/min ms, micro-batch, peak memory, first-step seconds, the profile if asked."""
    inputs, labels = (t.to(device) for t in generate(batch, seq_len, paper_num_kv_pairs(seq_len), seed=0))
    index = query_index(labels)  # (batch, queries)
    model = fresh_model(mixer, d_model, seq_len, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=device.type == "cuda")
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=batch, precision=precision)
    micro = micro_batch_size(config, seq_len) if variant.paper_micro else batch
    loss_fn = variant.loss(device)

    def step():
        variant.before_step()
        optimizer_step(model, optimizer, loss_fn, inputs, labels, index, micro, precision)

    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    first_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    median, best = time_calls(step, device, warmup=3, repeats=repeats)
    row = dict(micro_batch=micro, median_ms=median, min_ms=best, first_step_s=first_s,
               peak_mem_bytes=peak_memory(device))
    if profile:
        row.update(profile=profiled(step, device), profile_steps=PROFILE_STEPS)
    return row


def bench_loop(mixer, d_model, seq_len, precision, batch, repeats, device):
    """The real loop's row: ms per step of `train`, `repeats` steps and one evaluation (batch examples) an
    epoch, timed between the ends of its epochs: its first epoch (compilation, the whole-batch trial) and each
    run's setup are per-run costs, not per-step ones."""
    kv = paper_num_kv_pairs(seq_len)
    train_data, test_data = generate(repeats * batch, seq_len, kv, seed=42), generate(batch, seq_len, kv, seed=52)
    model = fresh_model(mixer, d_model, seq_len, device)
    # early_stop_accuracy 1.0 is never exceeded, so every epoch runs
    config = TrainConfig(lr=1e-3, epochs=1 + LOOP_EPOCHS, batch_size=batch, precision=precision,
                         early_stop_accuracy=1.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ends = []  # host clock at each epoch's end; train has read its loss and accuracy back by then
    start = time.perf_counter()
    result = train(model, train_data, test_data, config, device, on_epoch=lambda _: ends.append(time.perf_counter()))
    per_step = [(b - a) * 1e3 / repeats for a, b in zip(ends, ends[1:])]
    return dict(micro_batch=result["micro_batch_used"], median_ms=statistics.median(per_step), min_ms=min(per_step),
                first_step_s=ends[0] - start, peak_mem_bytes=peak_memory(device))


def first_line(exc):
    """An exception's message up to its first line break (the table keeps one line per row)."""
    return (str(exc).splitlines() or [""])[0]


def bench(name, mixer, d_model, seq_len, precision, args, device):
    """One row of the table: the case, then bench_step's or bench_loop's fields, or the error that stopped it."""
    variant = VARIANTS[name]
    row = dict(mixer=mixer, d_model=d_model, seq_len=seq_len, precision=precision, variant=name, batch=args.batch)
    try:
        with variant.attention():
            if variant.loop:
                row.update(bench_loop(mixer, d_model, seq_len, precision, args.batch, args.repeats, device))
            else:
                row.update(bench_step(variant, mixer, d_model, seq_len, precision, args.batch, args.repeats,
                                      args.profile, device))
    except torch.OutOfMemoryError as exc:
        row["error"] = f"out of memory: {first_line(exc)}"
    except Exception as exc:  # one failing variant (a compile error, say) keeps the other rows of the run
        traceback.print_exc()
        row["error"] = f"{type(exc).__name__}: {first_line(exc)}"
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def table(rows):
    """The rows as Markdown lines."""
    lines = ["| mixer | d_model | seq_len | precision | variant | micro | median ms | peak GiB | first step s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        case = f"| {r['mixer']} | {r['d_model']} | {r['seq_len']} | {r['precision']} | {r['variant']} |"
        if "error" in r:
            lines.append(f"{case} - | {r['error']} | | |")
            continue
        peak = "-" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / 2**30:.1f}"
        lines.append(f"{case} {r['micro_batch']} | {r['median_ms']:.2f} | {peak} | {r['first_step_s']:.1f} |")
    return lines


def parse_args():
    listing = "variants:\n" + "\n".join(f"  {name:<24} {v.doc}" for name, v in VARIANTS.items())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=listing,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=CASES, help="mixer:d_model:seq_len, comma separated")
    parser.add_argument("--precisions", default="bf16,fp32", help="bf16 (autocast) and/or fp32, comma separated")
    parser.add_argument("--variants", default="eager_paper,eager_whole,compiled", help="comma separated, see below")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps (loop: steps an epoch)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true", help="top CUDA kernels of each step variant (CUDA only)")
    parser.add_argument("--out", help="write {env, rows} as JSON here")
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if args.profile and torch.device(args.device).type != "cuda":
        parser.error("--profile times CUDA kernels: it needs --device cuda")
    return args


def main():
    args = parse_args()
    device = torch.device(args.device)
    commit, dirty = git_state()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    env = dict(gpu=gpu, torch=torch.__version__, git_commit=commit, git_dirty=dirty)
    log(json.dumps(env))
    rows = []
    for case in args.cases.split(","):
        mixer, d_model, seq_len = case.split(":")
        for precision in args.precisions.split(","):
            for name in args.variants.split(","):
                rows.append(bench(name, mixer, int(d_model), int(seq_len), precision, args, device))
                log(json.dumps({k: v for k, v in rows[-1].items() if k != "profile"}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    log("\n".join(table(rows)))


if __name__ == "__main__":
    main()
