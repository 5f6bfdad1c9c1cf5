"""The kernels kind: one case = one attention provider x shape x mode, timed -> one row.

Every case draws fresh random inputs (seeded by the case), checks the provider's output (and, for fwd_bwd
up to seq_len 8192, its gradients) against an fp32 reference on batch 0 / head 0 before timing, then times
forward or forward + backward with `time_op` and measures the peak memory one step allocates above its
inputs. A provider that cannot run here (no GPU, `fla` not importable, a shape it does not support) gives a
`skipped` row saying why. With a `profile_dir` (`--profile`) each case also writes a torch.profiler Chrome
trace and prints its top kernels on stderr.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import torch
from rich.table import Table

from .. import console
from ..analysis import kind_rows
from ..config import IGNORED, INT64_RANGE, Config, Count, FieldError, NonNegative
from ..errors import BenchError
from ..files import write_atomic
from ..runner import SuiteKind
from ..tables import pivot_table
from ..timing import time_op
from .kernel_providers import PROVIDERS, check, path_taken, shape, unavailable

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("fwd", "fwd_bwd")


@dataclass(frozen=True, kw_only=True)
class KernelCase(Config):
    """One timed call shape: q, k (batch, seq_len, heads, d) and v (batch, seq_len, heads, dv) in `dtype`."""

    provider: Literal[tuple(PROVIDERS)]
    mode: Literal[MODES]
    seq_len: Count
    batch: Count | Literal["auto"] = "auto"  # auto: tokens // seq_len (at least 1)
    tokens: Count = 32768  # tokens per call; settled to batch * seq_len
    heads: Count = 16
    d: Count = 16  # SDPA runs at head dim dv: the usual comparison point
    dv: Count = 64
    dtype: Literal[tuple(DTYPES)] = "bf16"
    seed: NonNegative = 0
    warmup_ms: NonNegative = 25
    rep_ms: Count = 100
    profile_dir: str | None = field(default=None, metadata=IGNORED)  # write a Chrome trace per case here

    def __post_init__(self):
        super().__post_init__()
        if self.batch == "auto":
            object.__setattr__(self, "batch", max(1, self.tokens // self.seq_len))
        if self.batch * self.seq_len > INT64_RANGE[1]:  # the tokens column is int64
            raise FieldError("seq_len", f"batch x seq_len = {self.batch * self.seq_len} is beyond a 64-bit integer")
        object.__setattr__(self, "tokens", self.batch * self.seq_len)
        if self.provider == "sdpa":
            object.__setattr__(self, "d", self.dv)


METRICS = pa.schema([
    ("median_ms", pa.float64()), ("p20_ms", pa.float64()), ("p80_ms", pa.float64()), ("tflops", pa.float64()),
    ("tokens_per_second", pa.float64()), ("peak_mem_bytes", pa.int64()), ("rel_err", pa.float64()),
    ("rel_err_grad", pa.float64()), ("path", pa.string()), ("trace_path", pa.string()),
    ("repeat_median_ms", pa.float64()), ("timing_flag", pa.string()),
], metadata={
    "median_ms": "device time of one call (fwd) or forward + backward (fwd_bwd), median; p20/p80 beside it",
    "peak_mem_bytes": "peak memory one step allocates above its inputs",
    "rel_err": "|o - ref| / |ref| on batch 0, head 0, ref in fp32 from the provider's semantics",
    "rel_err_grad": "max over dq, dk, dv of the same, fwd_bwd rows up to seq_len 8192",
    "tflops": "FLOPs of the provider's algorithm (rebased_bench/timing.py) / median time",
    "repeat_median_ms": "the median of a second timing right after the first",
    "timing_flag": "why the timing is not steady (p80/p20 or the repeat beyond their margins), or null",
})

# A steady timing has p80 within SPREAD_MARGIN of p20 and a repeat within REPEAT_MARGIN of its median; past
# either (a busy machine: seen 200x off on a loaded CPU) the row and the table say so.
SPREAD_MARGIN = 1.5
REPEAT_MARGIN = 1.2


def _inputs(case: KernelCase, device, head_first):
    g = torch.Generator(device=device).manual_seed(case.seed)
    b, t, h, d, dv, _ = shape(case)
    dtype = DTYPES[case.dtype]
    lead = (b, h, t) if head_first else (b, t, h)
    q, k = (torch.randn(*lead, d, device=device, generator=g, dtype=dtype).requires_grad_() for _ in range(2))
    v = torch.randn(*lead, dv, device=device, generator=g, dtype=dtype).requires_grad_()
    do = torch.randn(*lead, dv, device=device, generator=g, dtype=dtype)
    return q, k, v, do


def run_case(case: KernelCase, device: torch.device, state_path=None) -> dict:
    """One provider x shape x mode -> rel_err, times, rates, peak memory (or a skipped row with the reason).

    state_path is unused: a timing has no epochs to resume."""
    provider = PROVIDERS[case.provider]
    reason = unavailable(provider, case, device)
    if reason:
        return {"status": "skipped", "error": reason}
    fn = provider.build()
    q, k, v, do = _inputs(case, device, provider.head_first)
    rel_err, rel_err_grad = check(provider, fn, case, q, k, v, do)
    if not math.isfinite(rel_err) or rel_err > (1e-3 if case.dtype == "fp32" else 5e-2):
        raise BenchError(f"{case.provider}: output rel_err {rel_err:.2e} vs the fp32 reference; not timed")

    def step():
        if case.mode == "fwd":
            with torch.no_grad():
                fn(q, k, v)
        else:
            torch.autograd.grad(fn(q, k, v), (q, k, v), do)

    t = time_op(step, case.warmup_ms, case.rep_ms, device)
    repeat = time_op(step, case.warmup_ms, case.rep_ms, device)["median_ms"]
    metrics = {**t, "repeat_median_ms": repeat, "timing_flag": timing_flag(t, repeat), "rel_err": rel_err, "rel_err_grad": rel_err_grad, "peak_mem_bytes": _peak_memory(step, device),
               "tflops": provider.flops(case) / t["median_ms"] / 1e9,
               "tokens_per_second": case.tokens / (t["median_ms"] / 1e3), "path": path_taken(case)}
    if case.profile_dir:
        metrics["trace_path"] = profile(step, case, device)
    return metrics


def timing_flag(timing: dict, repeat_ms: float) -> str | None:
    """Why a timing is unsteady: its p80/p20 spread or its repeat's median beyond the margins; None when steady."""
    reasons = []
    spread = timing["p80_ms"] / max(timing["p20_ms"], 1e-12)
    if spread > SPREAD_MARGIN:
        reasons.append(f"p80/p20 {spread:.2f}x > {SPREAD_MARGIN}x")
    ratio = max(timing["median_ms"], repeat_ms) / max(min(timing["median_ms"], repeat_ms), 1e-12)
    if ratio > REPEAT_MARGIN:
        reasons.append(f"repeat differs {ratio:.2f}x > {REPEAT_MARGIN}x")
    return "; ".join(reasons) or None


def preflight(cases: list[KernelCase], device: torch.device) -> list[str]:
    """One line per provider of the sweep that cannot be timed here, with the reason (its rows will be skipped)."""
    lines = {}
    for case in cases:
        reason = unavailable(PROVIDERS[case.provider], case, device)
        if reason and case.provider not in lines:
            lines[case.provider] = f"cannot time {reason}: its cases get skipped rows"
    return list(lines.values())


def _peak_memory(step, device):
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def profile(step, case: KernelCase, device, steps=3, top=8) -> str:
    """A Chrome trace of `steps` calls under the case's profile_dir, and a table of the top kernels on stderr."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    name = f"{case.provider}_{case.mode}_B{case.batch}_T{case.seq_len}_H{case.heads}_d{case.d}_dv{case.dv}_{case.dtype}"
    path = write_atomic(Path(case.profile_dir) / f"{name}.json", lambda tmp: prof.export_chrome_trace(str(tmp)))
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    kernels = [e for e in prof.key_averages() if getattr(e, key, 0) > 0 and (not cuda or e.device_type.name == "CUDA")]
    events = sorted(kernels, key=lambda e: -getattr(e, key))
    table = Table(title=f"top {'GPU kernels' if cuda else 'CPU ops'}: {name} ({steps} steps)")
    for column in ("kernel", "calls", "total ms", "share"):
        table.add_column(column, justify="left" if column == "kernel" else "right")
    total = sum(getattr(e, key) for e in events) or 1
    for e in events[:top]:
        table.add_row(e.key[:70], str(e.count), f"{getattr(e, key) / 1e3:.3f}", f"{getattr(e, key) / total:.0%}")
    console.stderr.print(table)
    return str(path)


def per_call(rows: pd.DataFrame) -> pd.Series:
    """Per row, what its sweep holds fixed per call: "<n> tokens", or "batch <n>" in a suite whose batch stays fixed
    while seq_len (and so tokens = batch x seq_len) varies; a line across seq_len then compares like with like."""
    tokens = rows["batch"] * rows["seq_len"]
    suites = rows.assign(tokens=tokens).groupby("suite", dropna=False)
    fixed_batch = suites["batch"].transform("nunique") < suites["tokens"].transform("nunique")
    return ("batch " + rows["batch"].astype(str)).where(fixed_batch, tokens.astype(str) + " tokens")


def summary(rows):
    """Median ms per (mode, provider, shape, dtype) x seq_len over the ok rows, each case once; skipped rows apart."""
    rows = kind_rows(rows, KIND)
    ok = rows[rows["status"] == "ok"].dropna(subset=["median_ms"]) if "median_ms" in rows else rows.iloc[0:0]
    skipped = [f"skipped: {reason}" for reason in rows.loc[rows["status"] == "skipped", "error"].drop_duplicates()]
    if ok.empty:
        table = Table(title="Kernel time: no ok rows", caption="\n".join(skipped) or None)
        table.add_column("skipped")
        return table
    ok = ok.assign(per_call=per_call(ok))
    lines = ["mode", "provider", "per_call", "heads", "d", "dv", "dtype"]
    cells = ok.groupby([*lines, "seq_len"], dropna=False)["median_ms"].agg(median="median", runs="count")
    cells = cells.reset_index()
    flagged = ok.assign(flagged=ok["timing_flag"].notna() if "timing_flag" in ok else False)
    cells = cells.merge(flagged.groupby([*lines, "seq_len"], dropna=False)["flagged"].any().reset_index(),
                        on=[*lines, "seq_len"], how="left")
    cells["text"] = [f"{median:.3f}" + (f" n={runs}" if runs > 1 else "") + (" !" if flag else "")
                     for median, runs, flag in zip(cells["median"], cells["runs"], cells["flagged"])]
    caption = ("one timed run per cell (n=1); n=k: the median of k runs of one shape (seeds, timing settings); "
               f"!: unsteady timing (p80/p20 > {SPREAD_MARGIN}x or a repeat off by > {REPEAT_MARGIN}x: a busy "
               "machine), rerun it on an idle one")
    title = "Kernel time, median ms (per call: tokens = batch x seq_len)"
    return pivot_table(cells, lines, "seq_len", "text", title=title, caption="\n".join([caption, *skipped]))


KIND = SuiteKind("kernels", KernelCase, METRICS, run_case, summary, progress_metric="median_ms", preflight=preflight)
