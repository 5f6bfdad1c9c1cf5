"""Benchmark the Triton parallel ReBased kernel against flash-linear-attention and SDPA.

Fixed tokens per call (batch * seq_len), bf16, H=16, d=16, dv=64; peers in the same process; correctness vs an
fp32 reference (one head) before timing; do_bench medians with p20/p80; FLOPs counted as in
rebased_bench.timing (causal, MAC = 2): parallel forward T^2 (d + dv), backward T^2 (4d + 3dv) per head;
SDPA forward 2 T^2 D, backward 2.5x forward. Writes a Parquet (one row per op, mode, shape) and prints a table.

    python benchmarks/parallel_bench.py --out runs/parallel_bench/parallel_bench.parquet [--explore]

The measuring functions (time_op, parallel_flops, run_case) are meant to be reused by the `kernels` suite.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import torch
import triton

from rebased_bench.kernels.polynomial import parallel
from rebased_bench.timing import parallel_flops, sdpa_flops, time_op  # noqa: F401  (shared with the kernels suite)
from rebased_bench.kernels.polynomial.naive import naive_parallel_based, naive_parallel_rebased
from rebased_bench.kernels.polynomial.parallel import REBASED_COEFFS, Tiles, parallel_based, parallel_rebased


def log(*args):
    print(*args, file=sys.stderr, flush=True)


PEAK_TFLOPS = 798  # bf16 matrix product measured on an NVIDIA H100 80GB HBM3


def min_bytes(B, T, H, d, dv, mode, itemsize=2):
    """Each input read once, each output written once (fwd: q, k, v -> o; bwd adds do -> dq, dk, dv)."""
    fwd = B * T * H * (2 * d + 2 * dv) * itemsize
    return fwd if mode == "fwd" else 2 * fwd + B * T * H * dv * itemsize * 2


def env_info():
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    commit = os.environ.get("REBASED_BENCH_GIT_COMMIT") or git("rev-parse", "HEAD") or "unknown"
    dirty = os.environ.get("REBASED_BENCH_GIT_DIRTY")
    dirty = dirty or ("1" if git("status", "--porcelain", "--untracked-files=no") else "0")
    try:
        import fla

        fla_version = getattr(fla, "__version__", "?")
    except Exception:  # optional peer
        fla_version = ""
    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "cuda": torch.version.cuda or "",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "fla": fla_version,
        "python": platform.python_version(),
        "git_commit": commit,
        "git_dirty": dirty == "1",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def load_fla():
    """FLA's parallel_rebased(q, k, v) in (B, T, H, d) layout, or (None, reason)."""
    try:
        from fla.ops.rebased import parallel_rebased as fla_parallel_rebased
    except Exception as e:  # optional peer: never a dependency
        return None, f"fla import failed: {type(e).__name__}: {e}"
    return (lambda q, k, v: fla_parallel_rebased(q, k, v, eps=1e-12)), ""


def make_inputs(B, T, H, d, dv, dtype=torch.bfloat16, seed=0, head_first=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (B, H, T) if head_first else (B, T, H)
    q, k = (torch.randn(*shape, d, device="cuda", generator=g, dtype=dtype).requires_grad_() for _ in range(2))
    v = torch.randn(*shape, dv, device="cuda", generator=g, dtype=dtype).requires_grad_()
    do = torch.randn(*shape, dv, device="cuda", generator=g, dtype=dtype)
    return q, k, v, do


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def check_polynomial_op(fn, B, T, H, d, dv, with_grad=True, reference=naive_parallel_rebased):
    """Relative errors of o (and dq, dk, dv) vs the fp32 naive reference on head 0 of batch 0."""
    q, k, v, do = make_inputs(B, T, H, d, dv, seed=1)
    o = fn(q, k, v)
    errs = {}
    grads = torch.autograd.grad(o, (q, k, v), do) if with_grad else None
    sl = (slice(0, 1), slice(None), slice(0, 1))
    ref_in = [x[sl].detach().float().requires_grad_() for x in (q, k, v)]
    o_ref = reference(*ref_in)
    errs["err_o"] = rel_err(o[sl], o_ref)
    if with_grad:
        ref_grads = torch.autograd.grad(o_ref, ref_in, do[sl].float())
        for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
            errs[f"err_{name}"] = rel_err(g[sl], r)
    del o_ref, ref_in
    torch.cuda.empty_cache()
    return errs


def run_case(op, fn, B, T, H, d, dv, mode, flops):
    """Time fn(q, k, v) forward or forward + backward; returns one result row."""
    head_first = op == "sdpa"
    q, k, v, do = make_inputs(B, T, H, d, dv, head_first=head_first)
    if mode == "fwd":
        def step():
            with torch.no_grad():
                fn(q, k, v)
    else:
        def step():
            torch.autograd.grad(fn(q, k, v), (q, k, v), do)
    t = time_op(step)
    return {"op": op, "mode": mode, "B": B, "T": T, "H": H, "d": d, "dv": dv, "dtype": "bf16", **t,
            "tflops": flops / t["median_ms"] / 1e9, "status": "ok"}


def sdpa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def explore(B, H, d, dv, seq_lens, candidates):
    """Time each candidate Tiles of each kernel (the others at their defaults); returns rows and the best."""
    rows, best = [], {}
    defaults = dict(parallel.TILES)
    for kind, cands in candidates.items():
        totals = {}
        for cand in cands:
            parallel.TILES[kind] = cand
            total = 0.0
            for T in seq_lens:
                Bt = max(1, B // T)
                q, k, v, do = make_inputs(Bt, T, H, d, dv)
                if kind == "fwd":
                    fn = lambda: parallel.parallel_poly_fwd(q, k, v, REBASED_COEFFS)
                else:
                    o, z = parallel.parallel_poly_fwd(q, k, v, REBASED_COEFFS)
                    fn = lambda: parallel.parallel_poly_bwd(q, k, v, o, z, do, REBASED_COEFFS)
                try:
                    t = time_op(fn, rep_ms=100)
                except Exception as e:  # a tile shape that does not compile or fit is a result too
                    log(f"explore {kind} {cand}: {type(e).__name__}: {str(e)[:200]}")
                    total = float("inf")
                    break
                total += t["median_ms"]
                rows.append({"op": f"explore_{kind}", "mode": kind, "B": Bt, "T": T, "H": H, "d": d, "dv": dv,
                             "dtype": "bf16", **t, "tiles": str(cand), "status": "ok"})
                log(f"explore {kind:5s} {cand} T={T:6d}: {t['median_ms']:.3f} ms")
            totals[cand] = total
        best[kind] = min(totals, key=totals.get)
        parallel.TILES[kind] = defaults[kind]
        log(f"best {kind}: {best[kind]}")
    return rows, best


EXPLORE = {
    "fwd": [Tiles(128, 32, 4, 4), Tiles(128, 32, 4, 4, 128), Tiles(128, 32, 4, 3, 128)],
    "dq": [Tiles(128, 64, 4, 3), Tiles(64, 64, 4, 3), Tiles(128, 32, 4, 3, 128), Tiles(128, 64, 8, 3)],
    "dkdv": [Tiles(32, 64, 4, 3), Tiles(32, 64, 4, 3, 128), Tiles(32, 64, 4, 4, 128), Tiles(32, 128, 8, 3, 128)],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/parallel_bench/parallel_bench.parquet")
    ap.add_argument("--seq-lens", default="1024,2048,4096,8192,16384")
    ap.add_argument("--tokens", type=int, default=32768, help="batch * seq_len")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--dv", type=int, default=64)
    ap.add_argument("--explore", action="store_true", help="time candidate tiles first and use the best")
    ap.add_argument("--explore-seq-lens", default="2048,16384")
    ap.add_argument("--skip-fla", action="store_true")
    args = ap.parse_args(argv)
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    H, d, dv = args.heads, args.d, args.dv
    env = env_info()
    log(env)
    rows = []
    if args.explore:
        ex_rows, best = explore(args.tokens, H, d, dv, [int(s) for s in args.explore_seq_lens.split(",")], EXPLORE)
        rows += ex_rows
        parallel.TILES.update(best)
    log("tiles:", parallel.TILES)
    ops = {"ours": parallel_rebased, "ours_based": parallel_based, "sdpa": sdpa}
    fla_fn, fla_reason = (None, "--skip-fla") if args.skip_fla else load_fla()
    if fla_fn is not None:
        ops["fla"] = fla_fn
    else:
        log("FLA skipped:", fla_reason)
    for T in seq_lens:
        B = max(1, args.tokens // T)
        errs = {name: check_polynomial_op(fn, B, T, H, d, dv, reference=naive_parallel_based if name == "ours_based"
                                          else naive_parallel_rebased) for name, fn in ops.items() if name != "sdpa"}
        for name, e in errs.items():
            log(f"T={T} {name} errors vs fp32 reference: " + ", ".join(f"{k}={v:.2e}" for k, v in e.items()))
        for mode in ("fwd", "fwd_bwd"):
            for name, fn in ops.items():
                dd, vv = (64, 64) if name == "sdpa" else (d, dv)
                flops = sdpa_flops(B, T, H, 64, mode) if name == "sdpa" else parallel_flops(B, T, H, d, dv, mode)
                try:
                    row = run_case(name, fn, B, T, H, dd, vv, mode, flops)
                except Exception as e:
                    row = {"op": name, "mode": mode, "B": B, "T": T, "H": H, "d": dd, "dv": vv, "dtype": "bf16",
                           "status": f"error: {type(e).__name__}: {str(e)[:300]}"}
                row.update(errs.get(name, {}))
                row["min_bytes"] = min_bytes(B, T, H, dd, vv, mode)
                rows.append(row)
                log(f"{name:5s} {mode:7s} T={T:6d} B={B:3d}: {row.get('median_ms', float('nan')):.3f} ms "
                    f"{row.get('tflops', float('nan')):.0f} TFLOP/s {row['status']}")
    if fla_fn is None:
        rows.append({"op": "fla", "mode": "", "status": f"skipped: {fla_reason}"})
    df = pd.DataFrame(rows)
    for key, value in env.items():
        df[key] = value
    for kind in ("fwd", "fwd_prefix", "dq", "dkdv", "z_prefix_min_t"):
        df[f"tiles_{kind}"] = str(parallel.TILES.get(kind, ""))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_parquet(args.out)
    table = summary_table(df)
    print(table)
    return df


def summary_table(df):
    """Markdown: per seq_len and mode, our ms and TFLOP/s and the speed-up over each peer (peer ms / our ms)."""
    ok = df[(df["status"] == "ok") & df["op"].isin(["ours", "ours_based", "fla", "sdpa"])]
    lines = ["| T | mode | ours ms | ours TFLOP/s | % of 798 | FLA ms | x FLA | SDPA ms | x SDPA | Based ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (T, mode), g in ok.groupby(["T", "mode"], sort=True):
        ms = dict(zip(g["op"], g["median_ms"]))
        tf = dict(zip(g["op"], g["tflops"]))
        if "ours" not in ms:
            continue
        cell = lambda op: (f"{ms[op]:.3f}", f"{ms[op] / ms['ours']:.2f}") if op in ms else ("-", "-")
        (fla_ms, fla_x), (sdpa_ms, sdpa_x), (based_ms, _) = cell("fla"), cell("sdpa"), cell("ours_based")
        lines.append(f"| {T} | {mode} | {ms['ours']:.3f} | {tf['ours']:.0f} | {100 * tf['ours'] / PEAK_TFLOPS:.0f} | "
                     f"{fla_ms} | {fla_x} | {sdpa_ms} | {sdpa_x} | {based_ms} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
