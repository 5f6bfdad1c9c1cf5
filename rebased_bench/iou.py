"""Attention-map IoU: how close are a linear model's attention maps to softmax attention's, and to the oracle?

The paper compares maps by intersection over union but its binarization is not public; this one is ours:
- map: the (batch, seq_len, seq_len) `attention_map` of the mixer layer (layer 1, the last block): softmax
  probabilities for attention, the causal row-normalized kernel matrix tril(p(q.k)) / row sum for linear
  attention, both averaged over heads; evaluated in fp32 without dropout on the MQAR test set.
- rows: the MQAR query positions only (labels != -100: each query-key token of the query region, where the
  model must output the value), pooled over the test set.
- key set of a row: the `top_k` causal keys with the largest weights (ties in torch.topk order), or, when
  `mass` is given, the smallest set of keys holding at least `mass` of the row (largest weights first).
- IoU of two sets: |A ∩ B| / |A ∪ B|, averaged over all query rows (every query weighs the same).
- oracle set: the positions of the queried key and of its value in the context ({2j, 2j + 1}). A top-1 set
  has at most IoU 1/2 with it; top-2 or a mass set can reach 1.
"""

import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from rich.console import Group

from . import mqar
from .checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from .data.mqar import query_index
from .errors import BenchError
from .models.registry import resolve
from .render import pivot_table
from .runner import SuiteKind, case_id, register_kind
from .training import query_logits

# Columns typed as in the mqar rows (trained_model passes on every config field that is not in IOU_FIELDS).
MQAR_FIELDS = ("mixer", "d_model", "seq_len", "num_kv_pairs", "lr", "seed", "epochs", "schedule_epochs",
               "train_examples", "test_examples", "batch_size", "micro_batch_size", "precision", "vocab_size",
               "value_dim_quirk", "checkpoint_dir")
COLUMNS = pa.schema([mqar.COLUMNS.field(name) for name in MQAR_FIELDS] + [
    ("reference_mixer", pa.string()), ("top_k", pa.int64()), ("mass", pa.float64()), ("map_dir", pa.string()),
    ("iou_vs_reference", pa.float64()), ("iou_vs_oracle", pa.float64()), ("reference_iou_vs_oracle", pa.float64()),
    ("set_size", pa.float64()), ("reference_set_size", pa.float64()), ("accuracy", pa.float64()),
    ("reference_accuracy", pa.float64()), ("query_rows", pa.int64()), ("eval_seconds", pa.float64()),
    ("checkpoint_path", pa.string()), ("reference_checkpoint_path", pa.string()), ("map_path", pa.string()),
], metadata={"iou_vs_reference": "mean over MQAR query rows of |A∩B|/|A∪B| of the model's and the reference's sets",
             "accuracy": "MQAR test accuracy of the weights whose maps are compared (the last epoch's)"})

DEFAULTS = dict(reference_mixer="conv_attention", top_k=None, mass=None)
IOU_FIELDS = (*DEFAULTS, "map_dir")  # the config fields an MQAR case does not have
IDENTITY_IGNORES = ("checkpoint_dir", "map_dir")  # where models and maps are kept does not change the result
EVAL_ELEMENTS = 2 ** 22  # batch * seq_len^2 per evaluation batch: 12 heads of fp32 maps stay under ~200 MB


def key_sets(maps, support, top_k=None, mass=None):
    """Boolean key sets per row. maps: (n, seq_len) weights >= 0; support: (n, seq_len) bool causal keys."""
    weights = maps.masked_fill(~support, -1.0)  # never chosen over a causal key
    if mass is None:
        chosen = weights.topk(min(top_k, weights.shape[-1]), dim=-1).indices  # (n, top_k)
        return torch.zeros_like(support).scatter_(-1, chosen, True) & support
    ordered, order = weights.clamp(min=0).sort(-1, descending=True)  # (n, seq_len)
    before = ordered.cumsum(-1) - ordered  # mass of the larger weights
    keep = before < mass * ordered.sum(-1, keepdim=True)  # up to and including the key that reaches `mass`
    return torch.zeros_like(support).scatter_(-1, order, keep) & support


def iou(a, b):
    """|A ∩ B| / |A ∪ B| per row. a, b: (n, seq_len) bool -> (n,) float; two empty sets count as 1."""
    union = (a | b).sum(-1)
    return torch.where(union > 0, (a & b).sum(-1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float))


def oracle_sets(inputs, index):
    """The queried key's position in the context and its value's, per query row.

    inputs: (batch, seq_len) tokens; index: (batch, n) query positions (query_index) -> (batch * n, seq_len) bool.
    """
    rows = inputs.repeat_interleave(index.shape[1], dim=0)  # (batch * n, seq_len)
    queried = inputs.gather(1, index).flatten()  # (batch * n,)
    key_position = (rows == queried.unsqueeze(-1)).int().argmax(-1)  # first occurrence: the context key
    oracle = torch.zeros(rows.shape, dtype=torch.bool, device=inputs.device)
    oracle[torch.arange(len(rows)), key_position] = True
    oracle[torch.arange(len(rows)), key_position + 1] = True
    return oracle


@torch.no_grad()
def query_rows(model, inputs, labels, index):
    """Mixer-layer map rows at the MQAR query positions and whether the model answers them right.

    inputs, labels: (batch, seq_len); index: their query_index (batch, n) -> maps (batch * n, seq_len),
    support (batch * n, seq_len) bool, correct (batch * n,) bool, rows in the order of index.
    """
    mixer = model.blocks[-1].mixer
    captured = []
    hook = mixer.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        logits, targets = query_logits(model, inputs, labels, index)  # (batch, n, vocab), (batch, n)
    finally:
        hook.remove()
    maps = mixer.attention_map(captured[0])  # (batch, seq_len, seq_len)
    maps = maps.gather(1, index.unsqueeze(-1).expand(-1, -1, maps.shape[-1])).flatten(0, 1)
    support = torch.arange(inputs.shape[1], device=inputs.device) <= index.flatten().unsqueeze(-1)
    return maps, support, (logits.argmax(-1) == targets).flatten()


def prepare(config: dict, device: torch.device) -> dict:
    """An MQAR config plus the set rule; BenchError for mixers without an attention map or a bad rule."""
    config = {**DEFAULTS, **config}
    if not config.get("checkpoint_dir") or not config.get("map_dir"):
        raise BenchError("an iou case needs checkpoint_dir and map_dir (the iou command sets them from --out)")
    if config["top_k"] is not None and config["mass"] is not None:
        raise BenchError("--top-k and --mass are mutually exclusive: give one set rule")
    if config["mass"] is None:
        config["top_k"] = 1 if config["top_k"] is None else int(config["top_k"])
        if config["top_k"] < 1:
            raise BenchError(f"--top-k must be >= 1, got {config['top_k']}")
    elif not 0 < config["mass"] <= 1:
        raise BenchError(f"--mass must be in (0, 1], got {config['mass']}")
    for name in (config["mixer"], config["reference_mixer"]):
        if not hasattr(resolve(name)(8, 1), "attention_map"):
            raise BenchError(f"mixer {name!r} has no attention_map(): IoU needs attention or linear attention")
    return mqar.prepare(config, device)


def trained_model(config: dict, mixer: str, device: torch.device):
    """The MQAR model of this config and mixer: loaded from <checkpoint_dir>/mqar/, else trained and saved there."""
    mqar_config = {**{k: v for k, v in config.items() if k not in IOU_FIELDS}, "mixer": mixer}  # as mqar's case
    path = checkpoint_path(config["checkpoint_dir"], "mqar", mqar_config, mqar.IDENTITY_IGNORES)
    if not path.exists():
        model, metrics = mqar.train_case(mqar_config, device)
        save_checkpoint(path, model, mqar_config, metrics)
    return load_checkpoint(path, device)[0], str(path)


def run_case(config: dict, device: torch.device) -> dict:
    """Maps of the model and the softmax reference on the test set -> IoU vs the reference and vs the oracle."""
    model, model_path = trained_model(config, config["mixer"], device)
    reference, reference_path = trained_model(config, config["reference_mixer"], device)
    _, (inputs, labels) = mqar.mqar_data(config)
    rule = dict(top_k=config["top_k"], mass=config["mass"])
    batch_size = max(1, EVAL_ELEMENTS // config["seq_len"] ** 2)
    sums = dict(iou_vs_reference=0.0, iou_vs_oracle=0.0, reference_iou_vs_oracle=0.0, set_size=0.0,
                reference_set_size=0.0, accuracy=0.0, reference_accuracy=0.0)
    start, rows, example = time.perf_counter(), 0, None
    for batch_start in range(0, len(inputs), batch_size):
        x = inputs[batch_start:batch_start + batch_size].to(device)
        y = labels[batch_start:batch_start + batch_size].to(device)
        index = query_index(y)  # (batch, n)
        maps, support, correct = query_rows(model, x, y, index)
        reference_maps, _, reference_correct = query_rows(reference, x, y, index)
        sets, reference_sets = key_sets(maps, support, **rule), key_sets(reference_maps, support, **rule)
        oracle = oracle_sets(x, index)
        for name, values in (("iou_vs_reference", iou(sets, reference_sets)), ("iou_vs_oracle", iou(sets, oracle)),
                             ("reference_iou_vs_oracle", iou(reference_sets, oracle)), ("set_size", sets.sum(-1)),
                             ("reference_set_size", reference_sets.sum(-1)), ("accuracy", correct),
                             ("reference_accuracy", reference_correct)):
            sums[name] += values.float().sum().item()
        rows += len(maps)
        if example is None:
            example = _example(x[0], index[0], maps, reference_maps, oracle)
    map_path = Path(config["map_dir"]) / f"{case_id(config, IDENTITY_IGNORES)}.npz"
    map_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(map_path, **example)
    return {**{name: total / max(1, rows) for name, total in sums.items()}, "query_rows": rows,
            "eval_seconds": time.perf_counter() - start, "checkpoint_path": model_path,
            "reference_checkpoint_path": reference_path, "map_path": str(map_path)}


def _example(inputs, query_positions, maps, reference_maps, oracle):
    """The first test example's query rows (they come first in every row order here), as numpy arrays."""
    count = len(query_positions)
    return dict(map=maps[:count].cpu().numpy(), reference_map=reference_maps[:count].cpu().numpy(),
                query_positions=query_positions.cpu().numpy(), oracle=oracle[:count].cpu().numpy(),
                inputs=inputs.cpu().numpy())


def summary(rows):
    """Three tables, rows mixer x d_model, columns seq_len: IoU vs the reference, IoU vs the oracle, accuracy."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return None
    rules = sorted({f"top-{int(k)}" if not math.isnan(k) else f"mass {m:g}"
                    for k, m in zip(ok["top_k"].astype(float), ok["mass"].astype(float))})
    titles = {"iou_vs_reference": f"Attention-map IoU vs {', '.join(sorted(set(ok['reference_mixer'])))} "
                                  f"({', '.join(rules)}; mean over seeds)",
              "iou_vs_oracle": "IoU vs the oracle set {queried key, its value}",
              "accuracy": "MQAR test accuracy of the compared weights"}
    tables = []
    for column, title in titles.items():
        stats = ok.groupby(["mixer", "d_model", "seq_len"])[column].agg(mean="mean", std="std", seeds="count")
        stats = stats.reset_index().fillna({"std": 0.0})
        tables.append(pivot_table(stats, ["mixer", "d_model"], "seq_len", "mean", std="std", title=title))
    return Group(*tables)


IOU = register_kind(SuiteKind("iou", COLUMNS, run_case, prepare, summary, identity_ignores=IDENTITY_IGNORES))
