"""The ablate suite kind: MQAR accuracy of the feature-map variants of one LinearAttention layer.

A case is an MQAR case (same trainer, `mqar.train_case`) whose mixer is a variant of `FEATURE_MAPS`; its row
adds the variant and the learned γ/β of q and k (mean and std over the vector, NaN where the variant has none).
"""

import math

import pyarrow as pa
import torch
from rich.console import Group
from rich.table import Table

from . import mqar
from .analysis import best_lr, setting_columns
from .checkpoints import save_if_asked
from .errors import BenchError
from .models.mixers import FEATURE_MAPS, LinearAttention
from .render import pivot_table
from .runner import SuiteKind, register_kind

# The paper's ablation table in its order, then flash-linear-attention's shared-γ/β variant.
VARIANTS = ("x2", "gamma_x2", "affine_x2", "norm_x2", "rebased", "rebased_shared", "based")
AFFINE_COLUMNS = [f"{owner}_{param}_{stat}" for owner in ("q", "k") for param in ("gamma", "beta")
                  for stat in ("mean", "std")]

COLUMNS = pa.unify_schemas([
    pa.schema([("variant", pa.string())]),
    mqar.COLUMNS,
    pa.schema([(name, pa.float64()) for name in AFFINE_COLUMNS],
              metadata={"q_gamma_mean": "mean over the learned γ vector of q (NaN: the variant has no γ)"}),
])


def prepare(config: dict, device: torch.device) -> dict:
    """An MQAR case whose mixer is the variant; BenchError for a name that is not a feature map."""
    if "variant" not in config:
        raise BenchError("an ablate suite needs a `variant` grid axis")
    if config["variant"] not in FEATURE_MAPS:
        raise BenchError(f"unknown variant {config['variant']!r}; variants: {', '.join(VARIANTS)}")
    return mqar.prepare({**config, "mixer": config["variant"]}, device)


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


def run_case(config: dict, device: torch.device) -> dict:
    """Train the variant on MQAR -> accuracy metrics, γ/β summary, checkpoint path (None unless asked)."""
    model, metrics = mqar.train_case(config, device)
    checkpoint = save_if_asked(model, "ablate", config, metrics, mqar.IDENTITY_IGNORES)
    return {**metrics, **affine_summary(model), "checkpoint_path": checkpoint}


def summary(rows):
    """Best-lr accuracy (variant x d_model rows, seq_len columns), then the learned γ/β per variant."""
    best = best_lr(rows, keys=("variant", "d_model", "seq_len"))
    if best.empty:
        return None
    accuracy = pivot_table(best, ["variant", "d_model", *setting_columns(best)], "seq_len", "mean", std="std",
                           title="Feature-map ablation: MQAR accuracy (best lr, mean over seeds)")
    return Group(accuracy, _affine_table(rows))


def _affine_table(rows) -> Table:
    """Per variant, over its ok runs: the mean of each vector's mean, ± the mean of each vector's std."""
    ok = rows[rows["status"] == "ok"]
    table = Table(title="Learned γ / β of q and k (mean ± spread within the vector, averaged over runs)",
                  caption="-: the variant has no such parameter")
    table.add_column("variant")
    for owner in ("q", "k"):
        for param in ("γ", "β"):
            table.add_column(f"{owner} {param}", justify="right")
    for variant, group in ok.groupby("variant", sort=True):
        cells = []
        for owner in ("q", "k"):
            for param in ("gamma", "beta"):
                mean, std = group[f"{owner}_{param}_mean"].mean(), group[f"{owner}_{param}_std"].mean()
                cells.append("-" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}")
        table.add_row(variant, *cells)
    return table


ABLATE = register_kind(SuiteKind("ablate", COLUMNS, run_case, prepare, summary,
                                 identity_ignores=mqar.IDENTITY_IGNORES))
