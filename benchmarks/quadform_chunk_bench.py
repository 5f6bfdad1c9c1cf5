"""Time the chunked quadratic-form kernel (kernels/polynomial/quadform_chunk.py) against the parallel kernel at the
MQAR model's attention shapes, over launch tiles, and check both against the fp64 reference first.

The MQAR model's attention: 12 heads, feature dim 16, value heads of d_model // 12 (5, 10, 21), batch 512; as the
trainer runs it under bf16 autocast: ReBased's q, k come out of a LayerNorm in fp32, Based's in bf16, v in bf16.
Median ms of `rebased_bench.timing.time_op` (do_bench, L2 flushed). Prints a Markdown table last; --out writes JSON.

    python benchmarks/quadform_chunk_bench.py --out quadform_chunk_bench.json
    python benchmarks/quadform_chunk_bench.py --shapes 1024:5 --tiles 64:128:4:4:4,32:128:4:4:4 --modes fwd_bwd
"""

import argparse
import json

import torch

from rebased_bench.env import git_state
from rebased_bench.kernels.polynomial import quadform_chunk
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS, naive_parallel_polynomial
from rebased_bench.kernels.polynomial.parallel import parallel_polynomial
from rebased_bench.timing import time_op

SCORES = {"rebased": (REBASED_COEFFS, torch.float32), "based": (BASED_COEFFS, torch.bfloat16)}  # coeffs, q/k dtype
# BT:BW:warps_state:warps_fwd:warps_bwd
TILES = "64:128:4:4:4,64:128:4:8:8,32:128:4:4:4,32:64:4:4:4,64:64:4:4:4,128:128:4:8:8,64:256:8:8:8,32:128:2:4:8"


def log(*args):
    print(*args, flush=True)


def inputs(B, T, dv, qk_dtype, seed=0, H=12, d=16):
    """q, k (B, T, H, d) in qk_dtype, v and do (B, T, H, dv) bf16, q, k, v requiring grad."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k = (torch.randn(B, T, H, d, device="cuda", generator=g).to(qk_dtype).requires_grad_() for _ in range(2))
    v = torch.randn(B, T, H, dv, device="cuda", generator=g).to(torch.bfloat16).requires_grad_()
    do = torch.randn(B, T, H, dv, device="cuda", generator=g).to(torch.bfloat16)
    return q, k, v, do


def errors(fn, coeffs, T, dv, qk_dtype):
    """Relative errors of o, dq, dk, dv against the fp64 reference on a batch of 2."""
    q, k, v, do = inputs(2, T, dv, qk_dtype, seed=1)
    out = fn(q, k, v, coeffs)
    got = [out, *torch.autograd.grad(out, (q, k, v), do)]
    leaves = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref_out = naive_parallel_polynomial(*leaves, coeffs)
    ref = [ref_out, *torch.autograd.grad(ref_out, leaves, do.double())]
    return {name: ((a.double() - r).norm() / r.norm()).item() for name, a, r in zip(("o", "dq", "dk", "dv"), got, ref)}


def timing(fn, coeffs, B, T, dv, qk_dtype, mode):
    """Median ms of one forward (mode fwd) or forward + backward call."""
    q, k, v, do = inputs(B, T, dv, qk_dtype)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                fn(q, k, v, coeffs)
    else:
        def call():
            torch.autograd.grad(fn(q, k, v, coeffs), (q, k, v), do)
    return time_op(call)["median_ms"]


def set_tiles(spec):
    bt, bw, ws, wf, wb = (int(x) for x in spec.split(":"))
    quadform_chunk.TILES = {"BT": bt, "BW": bw, "warps_state": ws, "warps_fwd": wf, "warps_bwd": wb}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1024:5,2048:10,512:5,256:5,2048:5,1024:21",
                        help="seq_len:dv, comma separated")
    parser.add_argument("--tokens", type=int, default=512 * 1024, help="batch = tokens / seq_len")
    parser.add_argument("--scores", default="rebased,based")
    parser.add_argument("--tiles", default=TILES, help="BT:BW:warps_state:warps_fwd:warps_bwd, comma separated")
    parser.add_argument("--modes", default="fwd,fwd_bwd")
    parser.add_argument("--out")
    args = parser.parse_args()
    commit, dirty = git_state()
    env = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, git_commit=commit, git_dirty=dirty)
    log(json.dumps(env))
    default_tiles = dict(quadform_chunk.TILES)
    rows = []
    for shape in args.shapes.split(","):
        T, dv = (int(x) for x in shape.split(":"))
        B = max(1, args.tokens // T)
        for score in args.scores.split(","):
            coeffs, qk_dtype = SCORES[score]
            base = dict(score=score, seq_len=T, dv=dv, batch=B)
            candidates = [("parallel", None)] + [("quadform_chunk", t) for t in args.tiles.split(",")]
            for kernel, tiles in candidates:
                fn = parallel_polynomial if kernel == "parallel" else quadform_chunk.quadform_chunk_polynomial
                if tiles:
                    set_tiles(tiles)
                row = dict(base, kernel=kernel, tiles=tiles)
                try:
                    if tiles in (None, args.tiles.split(",")[0]):
                        row["rel_err"] = errors(fn, coeffs, T, dv, qk_dtype)
                    for mode in args.modes.split(","):
                        row[f"{mode}_ms"] = timing(fn, coeffs, B, T, dv, qk_dtype, mode)
                except Exception as exc:  # a tile that fails to compile (shared memory) is a row, not a crash
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                rows.append(row)
                log(json.dumps(row))
                torch.cuda.empty_cache()
    quadform_chunk.TILES = default_tiles
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    modes = args.modes.split(",")
    log("| score | seq_len | dv | kernel | tiles | " + " | ".join(f"{m} ms" for m in modes) + " | max rel err |")
    log("|---|---|---|---|---|" + "---|" * len(modes) + "---|")
    for r in rows:
        cells = [f"{r[f'{m}_ms']:.3f}" if f"{m}_ms" in r else r.get("error", "-")[:40] for m in modes]
        err = f"{max(r['rel_err'].values()):.1e}" if "rel_err" in r else ""
        log(f"| {r['score']} | {r['seq_len']} | {r['dv']} | {r['kernel']} | {r['tiles'] or ''} | "
            + " | ".join(cells) + f" | {err} |")


if __name__ == "__main__":
    main()
