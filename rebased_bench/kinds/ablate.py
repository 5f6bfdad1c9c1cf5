"""The ablate kind: MQAR accuracy of the feature-map variants of one LinearAttention layer.

A case is an MQAR case (same trainer, `mqar.train_case`) whose mixer is a variant (models/registry.py VARIANTS); its
row adds the variant and the learned γ/β of q and k (mean and std over the vector, NaN where the variant has none).
"""

import math
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import torch
from rich.console import Group
from rich.table import Table

from ..analysis import best_lr, kind_rows, setting_fields
from ..checkpoints import save_if_asked
from ..config import FieldError
from ..models.mixers import LinearAttention
from ..models.registry import VARIANTS
from ..runner import SuiteKind
from ..tables import seed_tables
from . import mqar

AFFINE_COLUMNS = [f"{owner}_{param}_{stat}" for owner in ("q", "k") for param in ("gamma", "beta")
                  for stat in ("mean", "std")]
METRICS = pa.unify_schemas([mqar.METRICS, pa.schema(
    [(name, pa.float64()) for name in AFFINE_COLUMNS],
    metadata={"q_gamma_mean": "mean over the learned γ vector of q (NaN: the variant has no γ)"})])


@dataclass(frozen=True, kw_only=True)
class AblateCase(mqar.MqarCase):
    """An MQAR case whose mixer is the variant: a suite gives `variant`, never `mixer`."""

    variant: Literal[VARIANTS]

    @classmethod
    def from_flat(cls, fields: dict) -> "AblateCase":
        if "variant" not in fields:
            raise FieldError("variant", f"missing (one of {', '.join(VARIANTS)})")
        variant = cls.field_value("variant", fields["variant"])
        if fields.get("mixer", variant) != variant:  # a row's flat form names both, alike
            raise FieldError("mixer", "an ablate case's mixer is its variant: set variant instead")
        return super().from_flat({**fields, "mixer": variant})

    def __post_init__(self):
        super().__post_init__()
        if self.model.mixer != self.variant:
            raise FieldError("variant", f"the model's mixer {self.model.mixer!r} is not the variant {self.variant!r}")


# A bar of the ablation figure; the variant is the mixer. Every other field that changes the result is a setting.
POINT = ("variant", "d_model", "seq_len")
SETTINGS = setting_fields(AblateCase, (*POINT, "mixer", "lr", "seed"))


def affine_summary(model) -> dict:
    """Mean and std of the learned γ and β of q and k in the model's LinearAttention layer (NaN where absent)."""
    layer = next(m for m in model.modules() if isinstance(m, LinearAttention))
    summary = {}
    for owner, params in layer.norm.affine().items():
        for name, param in zip(("gamma", "beta"), params):
            values = None if param is None else param.detach().float()
            summary[f"{owner}_{name}_mean"] = math.nan if values is None else values.mean().item()
            summary[f"{owner}_{name}_std"] = math.nan if values is None else values.std().item()
    return summary


def run_case(case: AblateCase, device: torch.device, state_path=None, on_epoch=None) -> dict:
    """Train the variant on MQAR -> accuracy metrics, γ/β summary, checkpoint path (None unless asked)."""
    model, metrics = mqar.train_case(case, device, state_path, on_epoch)
    checkpoint = save_if_asked(model, KIND.name, case, metrics)
    return {**metrics, **affine_summary(model), "checkpoint_path": checkpoint}


def summary(rows):
    """Per suite, the best-lr accuracy (variant x d_model lines, seq_len columns), then the learned γ/β per variant."""
    rows = kind_rows(rows, KIND)
    best = best_lr(rows, ("suite", *POINT), SETTINGS)
    if best.empty:
        return None
    accuracy = seed_tables(best, rows, ["variant", "d_model"], "seq_len", SETTINGS,
                           "Feature-map ablation: MQAR accuracy (best lr per cell)")
    return Group(accuracy, _affine_table(rows))


def _affine_table(rows) -> Table:
    """Per variant, over its ok runs: the mean of each vector's mean, ± the mean of each vector's std."""
    ok = rows[rows["status"] == "ok"]
    table = Table(title="Learned γ / β of q and k (mean ± spread within the vector, averaged over the n runs)",
                  caption="-: the variant has no such parameter")
    table.add_column("variant")
    table.add_column("n", justify="right")
    for owner in ("q", "k"):
        for param in ("γ", "β"):
            table.add_column(f"{owner} {param}", justify="right")
    for variant, group in ok.groupby("variant", sort=True):
        cells = []
        for owner in ("q", "k"):
            for param in ("gamma", "beta"):
                mean, std = group[f"{owner}_{param}_mean"].mean(), group[f"{owner}_{param}_std"].mean()
                cells.append("-" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}")
        table.add_row(variant, str(len(group)), *cells)
    return table


KIND = SuiteKind("ablate", AblateCase, METRICS, run_case, summary, progress_metric="accuracy", reports_epochs=True)
