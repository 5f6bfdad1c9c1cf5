"""The kernels suite kind: one case = one attention provider x shape x mode, timed -> one row.

Every case draws fresh random inputs (seeded by the case), checks the provider's output (and, for fwd_bwd
up to seq_len 8192, its gradients) against an fp32 reference on batch 0 / head 0 before timing, then times
forward or forward + backward with `time_op` and measures the peak memory one step allocates above its
inputs. A provider that cannot run here (no GPU, `fla` not importable, a shape it does not support) gives a
`skipped` row saying why. With `--profile` each case also writes a torch.profiler Chrome trace and prints
its top GPU kernels.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import torch
from rich.table import Table
import torch.nn.functional as F

from .errors import BenchError
from .render import pivot_table
from .runner import SuiteKind, register_kind, stderr
from .timing import chunk_flops, parallel_flops, sdpa_flops, time_op

COLUMNS = pa.schema([
    ("provider", pa.string()), ("mode", pa.string()), ("batch", pa.int64()), ("seq_len", pa.int64()),
    ("heads", pa.int64()), ("d", pa.int64()), ("dv", pa.int64()), ("dtype", pa.string()), ("tokens", pa.int64()),
    ("seed", pa.int64()), ("warmup_ms", pa.int64()), ("rep_ms", pa.int64()), ("profile_dir", pa.string()),
    ("median_ms", pa.float64()), ("p20_ms", pa.float64()), ("p80_ms", pa.float64()), ("tflops", pa.float64()),
    ("tokens_per_second", pa.float64()), ("peak_mem_bytes", pa.int64()), ("rel_err", pa.float64()),
    ("rel_err_grad", pa.float64()), ("path", pa.string()), ("trace_path", pa.string()),
], metadata={
    "median_ms": "device time of one call (fwd) or forward + backward (fwd_bwd), median; p20/p80 beside it",
    "peak_mem_bytes": "peak memory one step allocates above its inputs",
    "rel_err": "|o - ref| / |ref| on batch 0, head 0, ref in fp32 from the provider's semantics",
    "rel_err_grad": "max over dq, dk, dv of the same, fwd_bwd rows up to seq_len 8192",
    "tflops": "FLOPs of the provider's algorithm (rebased_bench/timing.py) / median time",
})

DEFAULTS = dict(batch="auto", tokens=32768, heads=16, d=16, dv=64, dtype="bf16", seed=0, warmup_ms=25, rep_ms=100,
                profile_dir=None)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fwd", "fwd_bwd")
NAIVE_MAX_SEQ_LEN = 2048  # the naive form materializes batch x heads x T x T fp32 scores
GRAD_CHECK_MAX_SEQ_LEN = 8192  # the fp32 reference's autograd graph is O(T^2)


@dataclass(frozen=True)
class Provider:
    """An attention implementation under test: how to build it and what it computes."""

    semantics: str  # rebased | based | softmax: picks the fp32 reference
    build: Callable  # () -> fn(q, k, v) -> o, inputs in `layout`
    flops: Callable  # (config) -> FLOPs of one call in the config's mode
    cuda: bool = True  # needs a GPU
    fla: bool = False  # needs flash-linear-attention
    head_first: bool = False  # (batch, heads, seq_len, dim) instead of (batch, seq_len, heads, dim)
    unsupported: Callable = lambda config: None  # (config) -> reason or None


def _shape(c):
    return c["batch"], c["seq_len"], c["heads"], c["d"], c["dv"], c["mode"]


def _quadratic(c):
    return parallel_flops(*_shape(c))


def _chunked(c, features=None):
    return chunk_flops(*_shape(c), features=features)


def _ours(name):
    def build():
        from . import kernels
        fns = {"parallel": kernels.parallel_rebased, "dispatch": kernels.rebased_attention,
               "chunk": lambda q, k, v: kernels.chunk_rebased(q, k, v)[0], "naive": kernels.naive_parallel_rebased}
        return fns[name]
    return build


def _dispatch_flops(c):
    from .kernels.rebased_chunk.dispatch import use_chunked
    return _chunked(c) if _path(c) == "chunk" else _quadratic(c)


def _fla_parallel_rebased():
    from fla.ops.rebased import parallel_rebased
    return lambda q, k, v: parallel_rebased(q, k, v, eps=1e-12)


def _fla_chunk_linear_attn():
    # FLA's ReBased layer path: materialize the 136-d features, then its generic normalized linear attention
    from fla.ops.linear_attn import chunk_linear_attn

    from .kernels.rebased_chunk import rebased_feature_map

    def fn(q, k, v):
        scale = q.shape[-1] ** -0.5
        fq, fk = (rebased_feature_map(x).to(v.dtype) for x in (q * scale, k))
        return chunk_linear_attn(fq, fk, v, scale=1.0, normalize=True)[0]
    return fn


def _fla_based(name):
    def build():
        from fla.ops import based
        return getattr(based, name)
    return build


def _sdpa():
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)


PROVIDERS = {
    "dispatch": Provider("rebased", _ours("dispatch"), _dispatch_flops),
    "chunk": Provider("rebased", _ours("chunk"), _chunked,
                      unsupported=lambda c: "chunk: d > 64" if c["d"] > 64 else None),
    "parallel": Provider("rebased", _ours("parallel"), _quadratic),
    "naive": Provider("rebased", _ours("naive"), _quadratic, cuda=False, unsupported=lambda c: (
        f"naive: seq_len {c['seq_len']} > {NAIVE_MAX_SEQ_LEN} (materializes T x T scores)"
        if c["seq_len"] > NAIVE_MAX_SEQ_LEN else None)),
    "sdpa": Provider("softmax", _sdpa, lambda c: sdpa_flops(c["batch"], c["seq_len"], c["heads"], c["d"], c["mode"]),
                     cuda=False, head_first=True),
    "fla_parallel_rebased": Provider("rebased", _fla_parallel_rebased, _quadratic, fla=True),
    "fla_chunk_linear_attn": Provider("rebased", _fla_chunk_linear_attn, _chunked, fla=True),
    "fla_parallel_based": Provider("based", _fla_based("parallel_based"), _quadratic, fla=True),
    "fla_fused_chunk_based": Provider(
        "based", _fla_based("fused_chunk_based"), lambda c: _chunked(c, 1 + c["d"] + c["d"] ** 2), fla=True,
        unsupported=lambda c: "fused_chunk_based: d > 16" if c["d"] > 16 else None),
}


def prepare(config: dict, device: torch.device) -> dict:
    """Fill defaults, derive batch from tokens per call, check names; SDPA runs at head dim dv."""
    config = {**DEFAULTS, **config}
    if config["provider"] not in PROVIDERS:
        raise BenchError(f"--providers: unknown {config['provider']!r}; known: {', '.join(PROVIDERS)}")
    if config["mode"] not in MODES:
        raise BenchError(f"--modes: unknown {config['mode']!r}; known: {', '.join(MODES)}")
    if config["dtype"] not in DTYPES:
        raise BenchError(f"dtype: unknown {config['dtype']!r}; known: {', '.join(DTYPES)}")
    for name in ("seq_len", "heads", "d", "dv", "tokens"):
        if int(config[name]) < 1:
            raise BenchError(f"{name} must be >= 1, got {config[name]}")
    if config["batch"] == "auto":
        config["batch"] = max(1, config["tokens"] // config["seq_len"])
    config["batch"] = int(config["batch"])
    if config["batch"] < 1:
        raise BenchError(f"--batch must be >= 1, got {config['batch']}")
    config["tokens"] = config["batch"] * config["seq_len"]
    if config["provider"] == "sdpa":
        config["d"] = config["dv"]  # softmax attention at head dim dv: the usual comparison point
    return config


def _unavailable(provider: Provider, config: dict, device: torch.device):
    if provider.cuda and device.type != "cuda":
        return f"{config['provider']}: needs a CUDA GPU (device {device})"
    if provider.fla:
        try:
            import fla  # noqa: F401
        except Exception as exc:  # optional peer: never a dependency
            return f"{config['provider']}: fla not importable ({type(exc).__name__}: {str(exc)[:120]})"
    return provider.unsupported(config)


def _inputs(config, device, head_first):
    g = torch.Generator(device=device).manual_seed(config["seed"])
    b, t, h, d, dv, _ = _shape(config)
    dtype = DTYPES[config["dtype"]]
    lead = (b, h, t) if head_first else (b, t, h)
    q, k = (torch.randn(*lead, d, device=device, generator=g, dtype=dtype).requires_grad_() for _ in range(2))
    v = torch.randn(*lead, dv, device=device, generator=g, dtype=dtype).requires_grad_()
    do = torch.randn(*lead, dv, device=device, generator=g, dtype=dtype)
    return q, k, v, do


def _reference(semantics, q, k, v):
    """fp32 reference on (1, T, 1, dim) slices (softmax: (1, 1, T, dim))."""
    from .kernels import naive_parallel_based, naive_parallel_rebased
    if semantics == "softmax":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return (naive_parallel_rebased if semantics == "rebased" else naive_parallel_based)(q, k, v)


def _rel(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def check(provider: Provider, fn, config, q, k, v, do):
    """(rel_err of o, rel_err of the gradients or NaN) on batch 0, head 0 against the fp32 reference."""
    grad = config["mode"] == "fwd_bwd" and config["seq_len"] <= GRAD_CHECK_MAX_SEQ_LEN
    with torch.set_grad_enabled(grad):
        o = fn(q, k, v)
        sl = (slice(0, 1), slice(0, 1)) if provider.head_first else (slice(0, 1), slice(None), slice(0, 1))
        ref_in = [x[sl].detach().float().requires_grad_(grad) for x in (q, k, v)]
        ref = _reference(provider.semantics, *ref_in)
        err = _rel(o[sl], ref)
        if not grad:
            return err, math.nan
        grads = torch.autograd.grad(o, (q, k, v), do)
        ref_grads = torch.autograd.grad(ref, ref_in, do[sl].float())
        return err, max(_rel(g[sl], r) for g, r in zip(grads, ref_grads))


def run_case(config: dict, device: torch.device) -> dict:
    """One provider x shape x mode -> rel_err, times, rates, peak memory (or a skipped row with the reason)."""
    provider = PROVIDERS[config["provider"]]
    reason = _unavailable(provider, config, device)
    if reason:
        return {"status": "skipped", "error": reason}
    fn = provider.build()
    q, k, v, do = _inputs(config, device, provider.head_first)
    rel_err, rel_err_grad = check(provider, fn, config, q, k, v, do)
    if not math.isfinite(rel_err) or rel_err > (1e-3 if config["dtype"] == "fp32" else 5e-2):
        raise BenchError(f"{config['provider']}: output rel_err {rel_err:.2e} vs the fp32 reference; not timed")

    def step():
        if config["mode"] == "fwd":
            with torch.no_grad():
                fn(q, k, v)
        else:
            torch.autograd.grad(fn(q, k, v), (q, k, v), do)

    t = time_op(step, config["warmup_ms"], config["rep_ms"], device)
    metrics = {**t, "rel_err": rel_err, "rel_err_grad": rel_err_grad, "peak_mem_bytes": _peak_memory(step, device),
               "tflops": provider.flops(config) / t["median_ms"] / 1e9,
               "tokens_per_second": config["tokens"] / (t["median_ms"] / 1e3), "path": _path(config)}
    if config.get("profile_dir"):
        metrics["trace_path"] = profile(step, config, device)
    return metrics


def _path(config):
    if config["provider"] != "dispatch":
        return config["provider"]
    from .kernels.rebased_chunk.dispatch import use_chunked
    chunked = use_chunked(config["seq_len"], config["d"], config["mode"] == "fwd_bwd", config["batch"] * config["heads"])
    return "chunk" if chunked else "parallel"


def _peak_memory(step, device):
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def profile(step, config, device, steps=3, top=8):
    """A Chrome trace of `steps` calls under PROFILE_DIR, and a Rich table of the top kernels on stderr."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    name = f"{config['provider']}_{config['mode']}_B{config['batch']}_T{config['seq_len']}_H{config['heads']}" \
           f"_d{config['d']}_dv{config['dv']}_{config['dtype']}"
    path = Path(config["profile_dir"]) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    kernels = [e for e in prof.key_averages() if getattr(e, key, 0) > 0 and (not cuda or e.device_type.name == "CUDA")]
    events = sorted(kernels, key=lambda e: -getattr(e, key))
    table = Table(title=f"top {'GPU kernels' if cuda else 'CPU ops'}: {name} ({steps} steps)")
    for column in ("kernel", "calls", "total ms", "share"):
        table.add_column(column, justify="left" if column == "kernel" else "right")
    total = sum(getattr(e, key) for e in events) or 1
    for e in events[:top]:
        table.add_row(e.key[:70], str(e.count), f"{getattr(e, key) / 1e3:.3f}", f"{getattr(e, key) / total:.0%}")
    stderr.print(table)
    return str(path)


def summary(rows):
    """Median ms per (mode, provider, shape) x seq_len, ok rows; skipped and error rows are listed apart."""
    ok = rows[rows["status"] == "ok"]
    skipped = rows[rows["status"] == "skipped"].drop_duplicates("error")
    if ok.empty:
        table = Table(title="Kernel time: no ok rows")
        table.add_column("skipped")
    else:
        table = pivot_table(ok, ["mode", "provider", "tokens", "d", "dtype"], "seq_len", "median_ms",
                            title="Kernel time, median ms (tokens = batch x seq_len per call)")
    table.caption = "\n".join(f"skipped: {reason}" for reason in skipped["error"])
    return table


KERNELS = register_kind(SuiteKind("kernels", COLUMNS, run_case, prepare, summary, identity_ignores=("profile_dir",)))
