"""Tune and measure the chunked ReBased kernel on the GPU (issue 4): tile exploration, chunked vs parallel per
seq_len (which sets the dispatch threshold), memory growth with seq_len, grid fill at small batch, and a
per-kernel profile. Reuses the timing and checking helpers of benchmarks/parallel_bench.py.

    python benchmarks/chunk_bench.py --out $OUT/chunk_bench.parquet [--explore] [--profile]

FLOPs of the chunked form (per head, D' = d(d+1)/2, chunk C, MAC = 2): forward T (4 D' dv + C (d + dv)) as in
shared/reference/kernels.md; backward T (8 D' dv + C (3 d + 2 dv)) (no recomputation counted).
"""

import argparse
import os
import sys

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parallel_bench import check_polynomial_op, env_info, log, make_inputs, parallel_flops, time_op  # noqa: E402

from rebased_bench.kernels.polynomial.parallel import parallel_rebased  # noqa: E402
from rebased_bench.kernels.rebased_chunk import chunk as chunk_mod  # noqa: E402
from rebased_bench.kernels.rebased_chunk import dispatch  # noqa: E402


def chunk_flops(B, T, H, d, dv, mode, C=64):
    """Chunked ReBased: forward T (4 D' dv + C (d + dv)), backward T (8 D' dv + C (3 d + 2 dv)) per head."""
    dp = d * (d + 1) // 2
    fwd = B * H * T * (4 * dp * dv + C * (d + dv))
    return fwd if mode == "fwd" else fwd + B * H * T * (8 * dp * dv + C * (3 * d + 2 * dv))


def chunk_fn(q, k, v):
    return chunk_mod.chunk_rebased(q, k, v)[0]


OPS = {"chunk": chunk_fn, "parallel": parallel_rebased, "dispatch": dispatch.rebased_attention}


def time_mode(fn, B, T, H, d, dv, mode, rep_ms=100):
    q, k, v, do = make_inputs(B, T, H, d, dv)
    if mode == "fwd":
        def step():
            with torch.no_grad():
                fn(q, k, v)
    else:
        def step():
            torch.autograd.grad(fn(q, k, v), (q, k, v), do)
    return time_op(step, rep_ms=rep_ms)


def row(op, mode, B, T, H, d, dv, t, flops, **extra):
    return {"op": op, "mode": mode, "B": B, "T": T, "H": H, "d": d, "dv": dv, "dtype": "bf16", **t,
            "tflops": flops / t["median_ms"] / 1e9, "status": "ok", **extra}


EXPLORE = [  # candidate CONFIGs (programs_per_sm is a launch argument: no recompilation)
    {"BT": 64, "BF": 16, "programs_per_sm": 4, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
    {"BT": 64, "BF": 16, "programs_per_sm": 16, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
    {"BT": 64, "BF": 16, "programs_per_sm": 8, "warps_state": 4, "warps_o": 4, "warps_bwd": 8},
    {"BT": 64, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
    {"BT": 64, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 8, "warps_bwd": 8},
    {"BT": 128, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 8, "warps_bwd": 8},
    {"BT": 32, "BF": 16, "programs_per_sm": 8, "warps_state": 4, "warps_o": 4, "warps_bwd": 4},
]


def explore(tokens, H, d, dv, seq_lens):
    rows, totals = [], []
    for i, cfg in enumerate(EXPLORE):
        chunk_mod.CONFIG.update(cfg)
        total = 0.0
        for T in seq_lens:
            B = max(1, tokens // T)
            for mode in ("fwd", "fwd_bwd"):
                try:
                    t = time_mode(chunk_fn, B, T, H, d, dv, mode, rep_ms=60)
                except Exception as e:  # a config that does not compile or fit is a result too
                    log(f"explore {cfg}: {type(e).__name__}: {str(e)[:300]}")
                    total = float("inf")
                    continue
                total += t["median_ms"]
                rows.append(row(f"explore_{i}", mode, B, T, H, d, dv, t, chunk_flops(B, T, H, d, dv, mode, cfg["BT"]), config=str(cfg)))
                log(f"explore {i} {cfg} T={T} {mode}: {t['median_ms']:.3f} ms")
        totals.append(total)
    best = EXPLORE[min(range(len(EXPLORE)), key=totals.__getitem__)]
    log("best config:", best, "totals:", [round(x, 3) for x in totals])
    chunk_mod.CONFIG.update(best)
    return rows


def choose_threshold(df, slack=1.10):
    """Smallest measured T with chunk chosen from there on and parallel below, within `slack` of the better
    kernel in both modes at every T; returns (threshold, worst ratio dispatch / best)."""
    ms = df.pivot_table(index="T", columns=["mode", "op"], values="median_ms")
    Ts = sorted(ms.index)
    best_thr, best_worst = None, float("inf")
    for thr in Ts + [Ts[-1] * 2]:
        worst = 0.0
        for mode in ("fwd", "fwd_bwd"):
            for T in Ts:
                pick = ms.loc[T, (mode, "chunk" if T >= thr else "parallel")]
                worst = max(worst, pick / min(ms.loc[T, (mode, "chunk")], ms.loc[T, (mode, "parallel")]))
        if worst < best_worst:
            best_thr, best_worst = thr, worst
    return best_thr, best_worst


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
    ap.add_argument("--out", default="results/kernels/chunk_bench.parquet")
    ap.add_argument("--seq-lens", default="256,512,1024,2048,4096,8192,16384,32768")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--dv", type=int, default=64)
    ap.add_argument("--explore", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    H, d, dv, tokens = args.heads, args.d, args.dv, args.tokens
    env = env_info()
    log(env)
    rows = explore(tokens, H, d, dv, [16384, 2048]) if args.explore else []
    log("config:", chunk_mod.CONFIG)
    for T in (1000, 16384):
        errs = check_polynomial_op(chunk_fn, max(1, tokens // T), T, H, d, dv)
        log(f"T={T} chunk errors vs fp32 reference: " + ", ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    sweep = []
    for T in [int(s) for s in args.seq_lens.split(",")]:
        B = max(1, tokens // T)
        for mode in ("fwd", "fwd_bwd"):
            for op in ("chunk", "parallel"):
                flops = chunk_flops(B, T, H, d, dv, mode) if op == "chunk" else parallel_flops(B, T, H, d, dv, mode)
                sweep.append(row(op, mode, B, T, H, d, dv, time_mode(OPS[op], B, T, H, d, dv, mode), flops))
                log(f"{op:8s} {mode:7s} T={T:6d} B={B:3d}: {sweep[-1]['median_ms']:.3f} ms")
    thr, worst = choose_threshold(pd.DataFrame(sweep))
    log(f"dispatch threshold: chunked from T >= {thr}; worst dispatch / best kernel = {worst:.3f}")
    dispatch.CHUNK_MIN_SEQ_LEN = thr
    for T in [int(s) for s in args.seq_lens.split(",")]:
        B = max(1, tokens // T)
        for mode in ("fwd", "fwd_bwd"):
            sweep.append(row("dispatch", mode, B, T, H, d, dv, time_mode(OPS["dispatch"], B, T, H, d, dv, mode), 0.0,
                             threshold=thr))
    rows += sweep
    for B in (1, 4):  # grid fill: batch * heads = 16 and 64 at T = 8192
        for mode in ("fwd", "fwd_bwd"):
            rows.append(row("chunk_batch", mode, B, 8192, H, d, dv, time_mode(chunk_fn, B, 8192, H, d, dv, mode),
                            chunk_flops(B, 8192, H, d, dv, mode)))
    rows += memory(H, d, dv, [8192, 32768, 131072])
    if args.profile:
        profile(2, 16384, H, d, dv, os.path.dirname(os.path.abspath(args.out)))
    df = pd.DataFrame(rows)
    for key, value in env.items():
        df[key] = value
    df["config"] = df.get("config", pd.Series(dtype=str)).fillna(str(chunk_mod.CONFIG))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_parquet(args.out)
    ok = df[df["op"].isin(["chunk", "parallel", "dispatch"]) & df["mode"].isin(["fwd", "fwd_bwd"])]
    print(ok.pivot_table(index="T", columns=["mode", "op"], values="median_ms").round(3).to_string())
    print(f"threshold {thr}, worst dispatch/best {worst:.3f}, config {chunk_mod.CONFIG}")
    return df


if __name__ == "__main__":
    main()
