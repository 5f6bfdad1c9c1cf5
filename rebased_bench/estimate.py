"""How long a sweep should take on this device, said before it starts.

A case's time is the examples it trains and evaluates (x epochs) at a rate per shape (mixer, d_model, seq_len, pairs,
vocabulary, precision) on this device: the median `tokens_per_second` of finished rows of that shape on this device
when the results folder has some, else a probe here: one eager forward + backward of a small batch after a
warm-up. It is an upper bound where a run stops early (accuracy above 0.99). Kinds that train nothing (kernels)
get no estimate.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import checkpoint_path
from .data.mqar import generate
from .kinds import iou, mqar
from .progress import duration
from .store import read_rows
from .training import CPU_QUERY_ROWS, autocast, micro_batch_size, query_loss

# Tokens in the probe's batch: bounded, so a probe at seq_len 2048 on a CPU is one example (never a big batch
# through the naive T^2 attention); on a GPU enough rows that launch latency does not dominate.
PROBE_TOKENS = {"cpu": 2048, "cuda": 2 ** 17}
# On a CPU a warm-up this slow is the measurement: its one-time costs are small beside it. (Not on a GPU, where the
# warm-up compiles the Triton kernels.)
SLOW_PROBE_S = 0.5
# On a GPU the trainer compiles its loss and takes the whole batch per step: 2.1-3.3x faster than eager
# micro-batches at the paper's shapes (docs/trainer.md); the eager probe is divided by the low end, rounded.
COMPILED_SPEEDUP = 2.0
EVAL_SHARE = 1 / 3  # a test example (forward only) costs about a third of a training example
# Per trained model: data, the mixer checks, and on a GPU compiling the loss (3-18 s for the first step).
CASE_OVERHEAD_S = {"cpu": 1.0, "cuda": 10.0}
RUN_PROBE_S, DRY_RUN_PROBE_S = 30.0, 3.0  # the most time probes may take before a run, a dry run
HOUR = 3600.0


@dataclass
class Estimate:
    device: torch.device
    cases: int  # in the sweep
    seconds: dict[str, float] = field(default_factory=dict)  # case id -> expected seconds, cases estimated
    stored: int = 0  # shapes whose rate came from stored rows
    probed: int = 0  # shapes probed here
    here: bool = True  # whether the device is on this machine (a dry run may plan for one that is not)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def trainings(case) -> list[mqar.MqarCase] | None:
    """The MQAR models a case trains: an mqar or ablate case its own; an iou case those of its two models not yet
    kept as checkpoints. None for a kind that trains nothing."""
    if isinstance(case, iou.IouCase):
        return [model for model in case.mqar_cases() if case.checkpoint_dir is None
                or not checkpoint_path(case.checkpoint_dir, mqar.KIND.name, model).exists()]
    return [case] if isinstance(case, mqar.MqarCase) else None


def shape(training: mqar.MqarCase) -> tuple:
    """What sets the speed of one training step."""
    return (training.model.mixer, training.model.d_model, training.model.value_dim_quirk, training.data.seq_len,
            training.data.num_kv_pairs, training.data.vocab_size, training.training.precision)


def estimate(cases: list, device: torch.device, results: Path | None, probe_seconds: float) -> Estimate | None:
    """Expected seconds per case on `device` (None when the cases train nothing), from the rates of `results`'
    rows on this device and probes here of up to `probe_seconds` in all."""
    # Shortest sequences and narrowest models first: probes cut short by their time leave out the costliest shapes.
    cases = sorted(cases, key=lambda case: case.data.seq_len * case.model.d_model if trainings(case) else 0)
    runs = {case.case_id: trainings(case) for case in cases}
    if not runs or any(models is None for models in runs.values()):
        return None
    result = Estimate(device, len(runs), here=is_here(device))
    if not result.here:
        return result
    rates = stored_rates(results, device)  # shape -> training tokens per second
    probed, from_rows, seen, start = {}, set(), set(), time.perf_counter()
    for case_id, models in runs.items():
        seconds = 0.0
        for model in models:
            if model.case_id in seen:  # an iou reference model, trained once for every case that needs it
                continue
            seen.add(model.case_id)
            seconds += CASE_OVERHEAD_S[device.type]
            key, data, epochs = shape(model), model.data, model.training.epochs
            if key in rates:
                from_rows.add(key)
                seconds += epochs * data.train_examples * data.seq_len / rates[key]
                continue
            if key not in probed and time.perf_counter() - start < probe_seconds:
                probed[key] = probe(model, device)
            seconds += epochs * (data.train_examples + EVAL_SHARE * data.test_examples) * probed.get(key, math.nan)
        if math.isfinite(seconds):
            result.seconds[case_id] = seconds
    result.stored, result.probed = len(from_rows), sum(math.isfinite(value) for value in probed.values())
    return result


def is_here(device: torch.device) -> bool:
    """Whether `device` is on this machine."""
    if device.type != "cuda":
        return True
    return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()


def stored_rates(results: Path | None, device: torch.device) -> dict[tuple, float]:
    """Per shape, the median training tokens per second of the ok MQAR rows under `results` run on this device."""
    if results is None or not results.is_dir():
        return {}
    rows = read_rows(results)
    needed = {"status", "mixer", "tokens_per_second", "device", "gpu_name", "value_dim_quirk", "precision"}
    if rows.empty or not needed <= set(rows.columns):
        return {}
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    device_type = rows["device"].astype(str).str.split(":").str[0]
    same_device = (device_type == device.type) & (rows["gpu_name"].fillna("") == gpu)
    rows = rows[(rows["status"] == "ok") & rows["mixer"].notna() & (rows["tokens_per_second"] > 0) & same_device]
    columns = ["mixer", "d_model", "value_dim_quirk", "seq_len", "num_kv_pairs", "vocab_size", "precision"]
    medians = rows.groupby(columns)["tokens_per_second"].median()
    return {(m, int(d), bool(q), int(t), int(kv), int(v), p): rate for (m, d, q, t, kv, v, p), rate in medians.items()}


def probe(training: mqar.MqarCase, device: torch.device) -> float:
    """Seconds per training example of this shape here (NaN when the model cannot run): one eager forward +
    backward of a small batch after a warm-up, in eval mode, divided by COMPILED_SPEEDUP on a GPU."""
    data, config = training.data, training.training.train_config()
    examples = min(micro_batch_size(config, data.seq_len), max(1, PROBE_TOKENS[device.type] // data.seq_len))
    if device.type == "cpu":  # the trainer's CPU micro-batch (training.device_micro_batch)
        examples = min(examples, max(1, CPU_QUERY_ROWS // data.num_kv_pairs))
    try:
        inputs, labels = (t.to(device) for t in generate(examples, data.seq_len, data.num_kv_pairs, data.vocab_size))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            model = training.model.build(data).to(device).eval()  # not training: no dropout, no step counted
            for _ in range(2):
                begin = time.perf_counter()
                with autocast(config.precision, device):
                    loss = query_loss(model, inputs, labels)
                loss.backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - begin
                if seconds > SLOW_PROBE_S and device.type == "cpu":
                    break
    except Exception:  # a mixer that fails here fails in its case, whose error row says why
        return math.nan
    per_example = seconds / examples
    return per_example / COMPILED_SPEEDUP if device.type == "cuda" else per_example


def describe(result: Estimate | None) -> list[str]:
    """The estimate in a line (two on a CPU sweep over an hour); nothing for a kind that trains nothing."""
    if result is None or not result.cases:
        return []
    if not result.here:
        return [f"estimate: none, no {result.device} on this machine to measure a rate on (a run there says)"]
    sources = [f"rates of {result.stored} shapes from earlier rows"] if result.stored else []
    if result.probed:
        compiled = f", eager / {COMPILED_SPEEDUP:g} for the compiled trainer" if result.device.type == "cuda" else ""
        sources.append(f"{result.probed} shapes probed here{compiled}")
    estimated = len(result.seconds)
    counted = f"{result.cases}" if estimated == result.cases else f"{estimated} of {result.cases}"
    counted += " cases" if result.cases > 1 else " case"
    line = (f"estimate: ~{duration(result.total)} for {counted} on {result.device} "
            f"({'; '.join(sources + ['less where a run stops early'])})")
    if estimated < result.cases:
        left = result.cases - estimated
        line += f"; {left} case{'s' if left > 1 else ''} not estimated (shapes not probed in time, or failing)"
    lines = [line]
    if result.device.type == "cpu" and result.total > HOUR:
        lines.append(f"this sweep needs over an hour on this CPU (~{duration(result.total)}); it runs anyway: Ctrl-C "
                     "keeps finished rows, and a GPU (--device cuda) or fewer or shorter cases take less")
    return lines
