"""The iou kind: how close are a linear model's attention maps to softmax attention's, and to the oracle?

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

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from rich.console import Group

from ..analysis import kind_rows, seed_stats, setting_fields
from ..checkpoints import checkpoint_path, load_checkpoint, save_checkpoint, set_aside_if_unreadable
from ..config import IGNORED, WHEN_SET, Check, Count, FieldError, Positive
from ..data.mqar import query_index
from ..errors import BenchError
from ..files import write_atomic
from ..models.checks import check_mixers
from ..models.registry import resolve
from ..runner import SuiteKind
from ..tables import seed_tables
from ..training import query_logits
from . import mqar

# batch * seq_len^2 per evaluation batch: a linear model's attention_map holds a few (batch, 12 heads, seq_len,
# seq_len) fp32 tensors of ~200 MB, under 1 GB at its peak (0.8 GB at seq_len 1024, batch 4, on a CPU). Only sums and
# test example 0's maps are kept, so memory does not grow with the test set.
EVAL_ELEMENTS = 2 ** 22


@dataclass(frozen=True, kw_only=True)
class IouCase(mqar.MqarCase):
    """An MQAR case (its model and the reference's, trained alike but for reference_lr) and the rule that turns a map
    row into a key set."""

    reference_mixer: str = "conv_attention"
    # The reference's lr; unset: the case's own lr. Mixers whose best lrs differ are then compared with one softmax
    # model. Named in the flat form only when set, so rows from before the field keep their case ids.
    reference_lr: Positive | None = field(default=None, metadata=WHEN_SET)
    # A query row's key set: its top_k largest weights (top_k 1 when neither is given), or the fewest keys holding
    # `mass` of the row.
    top_k: Count | None = None
    mass: Annotated[float, Check(lambda v: 0 < v <= 1, "in (0, 1]")] | None = None
    # checkpoint_dir (from MqarCase): where the models are found or kept, <checkpoint_dir>/mqar/
    map_dir: str | None = field(default=None, metadata=IGNORED)  # where the example maps go

    def __post_init__(self):
        super().__post_init__()
        if self.top_k is not None and self.mass is not None:
            raise BenchError("top_k and mass are mutually exclusive: give one set rule")
        if self.mass is None and self.top_k is None:
            object.__setattr__(self, "top_k", 1)
        for field_name, name in (("mixer", self.model.mixer), ("reference_mixer", self.reference_mixer)):
            try:
                layer = resolve(name)(8, 1)
            except BenchError as exc:
                raise FieldError(field_name, str(exc)) from None
            except Exception as exc:  # a user mixer whose constructor fails
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise FieldError(field_name, f"{name!r} cannot be built: {reason}") from None
            if not hasattr(layer, "attention_map"):
                raise FieldError(field_name, f"{name!r} has no attention_map(): IoU needs attention or linear attention")

    def mqar_cases(self) -> tuple[mqar.MqarCase, mqar.MqarCase]:
        """The MQAR cases of the model and of the reference: same data, training and checkpoint folder, but the
        reference's mixer and, when set, reference_lr."""
        reference = mqar.MqarCase(model=dataclasses.replace(self.model, mixer=self.reference_mixer), data=self.data,
                                  training=dataclasses.replace(self.training, lr=self.reference_lr or self.training.lr),
                                  checkpoint_dir=self.checkpoint_dir)
        return (mqar.MqarCase(model=self.model, data=self.data, training=self.training,
                              checkpoint_dir=self.checkpoint_dir), reference)


METRICS = pa.schema([
    ("iou_vs_reference", pa.float64()), ("iou_vs_oracle", pa.float64()), ("reference_iou_vs_oracle", pa.float64()),
    ("set_size", pa.float64()), ("reference_set_size", pa.float64()), ("accuracy", pa.float64()),
    ("reference_accuracy", pa.float64()), ("query_rows", pa.int64()), ("eval_seconds", pa.float64()),
    ("checkpoint_path", pa.string()), ("reference_checkpoint_path", pa.string()), ("map_path", pa.string()),
], metadata={"iou_vs_reference": "mean over MQAR query rows of |A∩B|/|A∪B| of the model's and the reference's sets",
             "accuracy": "MQAR test accuracy of the weights whose maps are compared (the last epoch's)"})


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


def trained_model(mqar_case: mqar.MqarCase, device: torch.device, state_dir=None, on_epoch=None):
    """The model of an MQAR case (IouCase.mqar_cases): loaded from <checkpoint_dir>/mqar/, else trained and kept
    there (resumable through a training state in state_dir, named by the MQAR case id, until the checkpoint exists).

    An unreadable checkpoint is set aside and named in the error: the next run trains that model again. A loaded
    model's mixers are checked as a trained one's were (models/checks.py).
    """
    path = checkpoint_path(mqar_case.checkpoint_dir, mqar.KIND.name, mqar_case)
    if not path.exists():
        state_path = None if state_dir is None else Path(state_dir) / f"{mqar_case.case_id}.pt"
        model, metrics = mqar.train_case(mqar_case, device, state_path, on_epoch)
        save_checkpoint(path, model, mqar_case.flat(), metrics)
        if state_path:
            state_path.unlink(missing_ok=True)
    with set_aside_if_unreadable(path, "the next run trains it again"):
        model = load_checkpoint(path, device)[0]
    check_mixers(model, device)
    return model, str(path)


def run_case(case: IouCase, device: torch.device, state_path=None, on_epoch=None) -> dict:
    """Maps of the model and the softmax reference on the test set -> IoU vs the reference and vs the oracle.

    Models not yet kept are trained first, each reporting its epochs to on_epoch."""
    if case.checkpoint_dir is None or case.map_dir is None:
        raise BenchError("an iou case needs checkpoint_dir and map_dir (the iou command sets them from --out)")
    state_dir = None if state_path is None else Path(state_path).parent
    model_case, reference_case = case.mqar_cases()
    model, model_path = trained_model(model_case, device, state_dir, on_epoch)
    reference, reference_path = trained_model(reference_case, device, state_dir, on_epoch)
    _, (inputs, labels) = case.data.load()
    rule = dict(top_k=case.top_k, mass=case.mass)
    batch_size = max(1, EVAL_ELEMENTS // case.data.seq_len ** 2)
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
    map_path = write_atomic(Path(case.map_dir) / f"{case.case_id}.npz", lambda tmp: _save_npz(tmp, example))
    return {**{name: total / max(1, rows) for name, total in sums.items()}, "query_rows": rows,
            "eval_seconds": time.perf_counter() - start, "checkpoint_path": model_path,
            "reference_checkpoint_path": reference_path, "map_path": str(map_path)}


def _save_npz(path: Path, arrays: dict):
    with open(path, "wb") as file:  # a file object: numpy would add .npz to a temporary file's name
        np.savez_compressed(file, **arrays)


def _example(inputs, query_positions, maps, reference_maps, oracle):
    """The first test example's query rows (they come first in every row order here), as numpy arrays."""
    count = len(query_positions)
    return dict(map=maps[:count].cpu().numpy(), reference_map=reference_maps[:count].cpu().numpy(),
                query_positions=query_positions.cpu().numpy(), oracle=oracle[:count].cpu().numpy(),
                inputs=inputs.cpu().numpy())


# A bar of the IoU figure, whose seeds are pooled. Every other field that changes the result is a setting (the lr
# and the key-set rule among them).
POINT = ("mixer", "d_model", "seq_len")
SETTINGS = setting_fields(IouCase, (*POINT, "seed"))


def summary(rows):
    """Per suite three tables, lines mixer x d_model, columns seq_len, each pooled over seeds: IoU vs the reference
    (without the reference's own rows: 1 by construction), IoU vs the oracle, accuracy."""
    rows = kind_rows(rows, KIND)
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return None
    rules = sorted({f"top-{int(k)}" if pd.notna(k) else f"mass {m:g}" for k, m in zip(ok["top_k"], ok["mass"])})
    titles = {"iou_vs_reference": f"Attention-map IoU vs {', '.join(sorted(set(ok['reference_mixer'])))} "
                                  f"({', '.join(rules)})",
              "iou_vs_oracle": "IoU vs the oracle set {queried key, its value}",
              "accuracy": "MQAR test accuracy of the compared weights"}
    tables = []
    for column, title in titles.items():
        measured = rows[rows["mixer"] != rows["reference_mixer"]] if column == "iou_vs_reference" else rows
        stats = seed_stats(measured, ("suite", *POINT), column, SETTINGS)
        if not stats.empty:
            tables.append(seed_tables(stats, measured, ["mixer", "d_model"], "seq_len", SETTINGS, title))
    return Group(*tables)


KIND = SuiteKind("iou", IouCase, METRICS, run_case, summary, progress_metric="accuracy", reports_epochs=True)
