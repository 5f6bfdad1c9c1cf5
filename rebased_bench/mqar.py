"""The MQAR suite kind: one case = train the 2-layer model on MQAR, report test accuracy."""

import pyarrow as pa
import torch

from .analysis import best_lr, setting_columns
from .checkpoints import save_if_asked
from .data.mqar import check_config, paper_num_kv_pairs, train_test
from .errors import BenchError
from .models.lm import LanguageModel, ModelConfig
from .models.registry import resolve
from .render import pivot_table
from .runner import SuiteKind, register_kind
from .training import TrainConfig, train

COLUMNS = pa.schema([
    ("mixer", pa.string()), ("d_model", pa.int64()), ("seq_len", pa.int64()), ("num_kv_pairs", pa.int64()),
    ("lr", pa.float64()), ("seed", pa.int64()), ("epochs", pa.int64()), ("schedule_epochs", pa.int64()),
    ("train_examples", pa.int64()), ("test_examples", pa.int64()), ("batch_size", pa.int64()),
    ("micro_batch_size", pa.int64()),
    ("precision", pa.string()), ("vocab_size", pa.int64()), ("value_dim_quirk", pa.bool_()),
    ("accuracy", pa.float64()), ("final_accuracy", pa.float64()), ("best_epoch", pa.int64()),
    ("epochs_run", pa.int64()), ("train_seconds", pa.float64()), ("tokens_per_second", pa.float64()),
    ("params", pa.int64()), ("accuracy_history", pa.list_(pa.float64())), ("checkpoint_dir", pa.string()), ("checkpoint_path", pa.string()),
], metadata={"accuracy": "best test accuracy over epochs, pooled over query positions"})

DEFAULTS = dict(num_kv_pairs="paper", vocab_size=8192, precision="auto", micro_batch_size=0, value_dim_quirk=True,
                checkpoint_dir=None)
IDENTITY_IGNORES = ("checkpoint_dir",)  # where a model is kept does not change the result
# schedule_epochs is not among DEFAULTS: a config names it only when set, so rows from before it existed keep
# their case ids (null in the column means the run's own epochs).


def prepare(config: dict, device: torch.device) -> dict:
    """Fill defaults, resolve "auto"/"paper" values and validate, so bad input fails before any training."""
    config = {**DEFAULTS, **config}
    if config["num_kv_pairs"] == "paper":
        config["num_kv_pairs"] = paper_num_kv_pairs(config["seq_len"])
    if config["precision"] == "auto":
        config["precision"] = "bf16" if device.type == "cuda" else "fp32"
    if config["precision"] not in ("fp32", "bf16"):
        raise BenchError(f"--precision: {config['precision']!r} is not fp32 or bf16")
    counts = ["d_model", "epochs", "train_examples", "test_examples", "batch_size"]
    counts += ["schedule_epochs"] if "schedule_epochs" in config else []  # optional: see the note at DEFAULTS
    for name in counts:
        if int(config[name]) < 1:
            raise BenchError(f"{name} must be >= 1, got {config[name]}")
    check_config(config["seq_len"], config["num_kv_pairs"], config["vocab_size"])
    resolve(config["mixer"])
    return config


def model_config(config: dict) -> ModelConfig:
    return ModelConfig(config["mixer"], config["d_model"], config["seq_len"], config["vocab_size"],
                       value_dim_quirk=config["value_dim_quirk"])


def train_config(config: dict) -> TrainConfig:
    return TrainConfig(lr=config["lr"], epochs=config["epochs"], batch_size=config["batch_size"],
                       seed=config["seed"], precision=config["precision"],
                       micro_batch_size=config["micro_batch_size"],
                       schedule_epochs=config.get("schedule_epochs", 0))


def mqar_data(config: dict):
    return train_test(config["train_examples"], config["test_examples"], config["seq_len"],
                      config["num_kv_pairs"], config["vocab_size"])


def train_case(config: dict, device: torch.device):
    """Train one configuration; returns (model, metrics)."""
    train_data, test_data = mqar_data(config)
    torch.manual_seed(config["seed"])
    model = LanguageModel(model_config(config))
    metrics = train(model, train_data, test_data, train_config(config), device)
    return model, {**metrics, "params": sum(p.numel() for p in model.parameters())}


def run_case(config: dict, device: torch.device) -> dict:
    """One MQAR case -> its metric columns (and its checkpoint when the case has a checkpoint_dir)."""
    model, metrics = train_case(config, device)
    return {**metrics, "checkpoint_path": save_if_asked(model, "mqar", config, metrics, IDENTITY_IGNORES)}


def summary(rows):
    """Rows mixer x d_model, columns seq_len, cells the best-lr accuracy (mean over seeds ± std)."""
    best = best_lr(rows)
    if best.empty:
        return None
    return pivot_table(best, ["mixer", "d_model", *setting_columns(best)], "seq_len", "mean", std="std",
                       title="MQAR accuracy (best lr, mean over seeds)")


MQAR = register_kind(SuiteKind("mqar", COLUMNS, run_case, prepare, summary, identity_ignores=IDENTITY_IGNORES))
