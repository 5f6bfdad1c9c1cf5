"""Tune and measure the chunked ReBased kernel on the GPU: launch-shape exploration, chunked vs parallel
per seq_len and mode (which sets the dispatch thresholds), memory growth with seq_len, and a per-kernel profile.
Timing and FLOP counts come from rebased_bench.timing (shared with parallel_bench.py and the kernels suite).

    python benchmarks/chunk_bench.py --tune kernels/rebased_chunk/tuned.py --out $OUT/chunk_bench.parquet [--profile]

--tune writes the chosen CONFIG and thresholds, with this run's measurements, into the given tuned.py.
"""

import argparse
import os
import sys

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parallel_bench import check_polynomial_op, env_info, log, make_inputs, run_case  # noqa: E402

from rebased_bench.kernels.polynomial.parallel import parallel_rebased  # noqa: E402
from rebased_bench.kernels.rebased_chunk import chunk as chunk_mod  # noqa: E402
from rebased_bench.timing import chunk_flops, parallel_flops, time_op  # noqa: E402


def chunk_fn(q, k, v):
    return chunk_mod.chunk_rebased(q, k, v)[0]


OPS = {"chunk": chunk_fn, "parallel": parallel_rebased}


EXPLORE = [  # candidate CONFIGs (programs_per_sm is a launch argument: no recompilation)
    {"BT": 64, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
    {"BT": 128, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 8, "warps_bwd": 8},
    {"BT": 64, "BF": 16, "programs_per_sm": 4, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
    {"BT": 64, "BF": 32, "programs_per_sm": 16, "warps_state": 4, "warps_o": 4, "warps_bwd": 8},
]
EXPLORE_POINTS = [(16384, "fwd"), (16384, "fwd_bwd"), (4096, "fwd_bwd")]


def explore(tokens, H, d, dv):
    """Time each EXPLORE config at EXPLORE_POINTS; keep the one with the smallest total in chunk_mod.CONFIG."""
    rows, totals = [], []
    for i, cfg in enumerate(EXPLORE):
        chunk_mod.CONFIG.update(cfg)
        total = 0.0
        for T, mode in EXPLORE_POINTS:
            B = max(1, tokens // T)
            try:
                r = run_case(f"explore_{i}", chunk_fn, B, T, H, d, dv, mode, chunk_flops(B, T, H, d, dv, mode, cfg["BT"]))
            except Exception as e:  # a config that does not compile or fit is a result too
                log(f"explore {cfg}: {type(e).__name__}: {str(e)[:300]}")
                total = float("inf")
                break
            total += r["median_ms"]
            rows.append({**r, "config": str(cfg)})
            log(f"explore {i} {cfg} T={T} {mode}: {r['median_ms']:.3f} ms")
        totals.append(total)
    best = EXPLORE[min(range(len(EXPLORE)), key=totals.__getitem__)]
    log("best config:", best, "totals:", [round(x, 3) for x in totals])
    chunk_mod.CONFIG.update(best)
    return rows, best, totals


def choose_threshold(ms):
    """ms: {T: (chunk_ms, parallel_ms)} of one mode -> (threshold, worst dispatch / better kernel): the smallest
    measured T that sends T' >= T to the chunked kernel with the least worst-case loss (then least total time)."""
    Ts = sorted(ms)
    best = None
    for thr in Ts + [2 * Ts[-1]]:
        picked = [ms[T][0] if T >= thr else ms[T][1] for T in Ts]
        worst = max(p / min(ms[T]) for p, T in zip(picked, Ts))
        key = (round(worst, 3), sum(picked))
        if best is None or key < best[0]:
            best = (key, thr, worst)
    return best[1], best[2]


def write_tuned(path, cfg, thresholds, sweep, totals, env, command):
    """tuned.py: CONFIG and thresholds with the measurements that chose them."""
    lines = ["| T | chunk fwd | parallel fwd | chunk fwd_bwd | parallel fwd_bwd |", "|---|---|---|---|---|"]
    for T in sorted(sweep["fwd"]):
        (cf, pf), (cb, pb) = sweep["fwd"][T], sweep["fwd_bwd"][T]
        lines.append(f"| {T} | {cf:.3f} | {pf:.3f} | {cb:.3f} | {pb:.3f} |")
    text = f'''"""Launch shape and dispatch thresholds of the chunked kernel, as measured on the GPU.

Written by `{command}`
on {env['gpu']} (triton {env['triton']}, torch {env['torch']}), {env['timestamp']}.
CONFIG: the best of benchmarks/chunk_bench.py's EXPLORE list by total median ms at {EXPLORE_POINTS}
(totals {[round(x, 3) for x in totals]}). Thresholds: per mode, the smallest measured seq_len from which the
chunked kernel is used with the least worst-case loss against the better kernel. Median ms, bf16, 32768 tokens
per call, H=16, d=16, dv=64:

{chr(10).join(lines)}
"""

# BT: chunk length; BF: feature block; programs_per_sm: the state pass splits the sequence until its grid
# has this many programs per SM; warps_*: num_warps of the state, output and backward kernels
CONFIG = {cfg!r}
# smallest seq_len sent to the chunked kernel: inference (forward only) and training (forward + backward)
CHUNK_MIN_SEQ_LEN_FWD = {thresholds['fwd'][0]}  # worst dispatch / better kernel in the sweep: {thresholds['fwd'][1]:.3f}
CHUNK_MIN_SEQ_LEN_TRAIN = {thresholds['fwd_bwd'][0]}  # worst dispatch / better kernel: {thresholds['fwd_bwd'][1]:.3f}
'''
    with open(path, "w") as f:
        f.write(text)
    log(f"wrote {path}")


def memory(H, d, dv, seq_lens):
    rows = []
    for T in seq_lens:
        for op in ("chunk", "parallel"):
            q, k, v, do = make_inputs(1, T, H, d, dv)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            torch.autograd.grad(OPS[op](q, k, v), (q, k, v), do)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
            rows.append({"op": op, "mode": "fwd_bwd_memory", "B": 1, "T": T, "H": H, "d": d, "dv": dv, "dtype": "bf16",
                         "peak_mem_bytes": peak, "status": "ok"})
            log(f"memory {op} T={T}: {peak / 2**20:.1f} MiB above inputs")
            del q, k, v, do
    return rows


def profile(B, T, H, d, dv, out_dir):
    from torch.profiler import ProfilerActivity, profile as tprofile

    q, k, v, do = make_inputs(B, T, H, d, dv)
    step = lambda: torch.autograd.grad(chunk_fn(q, k, v), (q, k, v), do)  # noqa: E731
    step()
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    if out_dir:
        prof.export_chrome_trace(os.path.join(out_dir, f"chunk_fwd_bwd_T{T}.json"))
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/chunk_bench/chunk_bench.parquet")
    ap.add_argument("--seq-lens", default="512,1024,2048,4096,8192,16384,32768")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--dv", type=int, default=64)
    ap.add_argument("--tune", metavar="TUNED_PY", help="explore configs, sweep, write CONFIG and thresholds here")
    ap.add_argument("--memory", action="store_true", help="peak memory of fwd+bwd at growing seq_len")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    H, d, dv, tokens = args.heads, args.d, args.dv, args.tokens
    env = env_info()
    log(env)
    rows, totals = [], []
    if args.tune:
        rows, _, totals = explore(tokens, H, d, dv)
    log("config:", chunk_mod.CONFIG)
    for T in (1000, 16384):
        errs = check_polynomial_op(chunk_fn, max(1, tokens // T), T, H, d, dv)
        log(f"T={T} chunk errors vs fp32 reference: " + ", ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    sweep = {"fwd": {}, "fwd_bwd": {}}
    for T in [int(s) for s in args.seq_lens.split(",")]:
        B = max(1, tokens // T)
        for mode in ("fwd", "fwd_bwd"):
            ms = []
            for op in ("chunk", "parallel"):
                flops = chunk_flops(B, T, H, d, dv, mode, chunk_mod.CONFIG["BT"]) if op == "chunk" else \
                    parallel_flops(B, T, H, d, dv, mode)
                rows.append(run_case(op, OPS[op], B, T, H, d, dv, mode, flops))
                ms.append(rows[-1]["median_ms"])
                log(f"{op:8s} {mode:7s} T={T:6d} B={B:3d}: {ms[-1]:.3f} ms")
            sweep[mode][T] = tuple(ms)
    thresholds = {mode: choose_threshold(sweep[mode]) for mode in sweep}
    log("thresholds (seq_len, worst dispatch / better kernel):", thresholds)
    if args.tune:
        command = "python benchmarks/chunk_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_tuned(args.tune, dict(chunk_mod.CONFIG), thresholds, sweep, totals, env, command)
    if args.memory:
        rows += memory(H, d, dv, [8192, 32768, 131072])
    if args.profile:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        profile(2, 16384, H, d, dv, os.path.dirname(os.path.abspath(args.out)))
    df = pd.DataFrame(rows)
    for key, value in env.items():
        df[key] = value
    df["config"] = df.get("config", pd.Series(dtype=str)).fillna(str(chunk_mod.CONFIG))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_parquet(args.out)
    ok = df[df["op"].isin(["chunk", "parallel"]) & df["mode"].isin(["fwd", "fwd_bwd"])]
    print(ok.pivot_table(index="T", columns=["mode", "op"], values="median_ms").round(3).to_string())
    print(f"thresholds {thresholds}, config {chunk_mod.CONFIG}")
    return df


if __name__ == "__main__":
    main()
