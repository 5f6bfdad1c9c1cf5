"""The mqar kind: one case trains the 2-layer model on MQAR and reports its test accuracy.

A case (`MqarCase`) is a model part (which mixer, how wide), a data part (the MQAR task and its examples) and a
training part (the optimizer protocol); its flat fields are a suite's fields and the row's config columns. The
ablate and iou kinds extend it.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import torch

from ..checkpoints import save_if_asked
from ..analysis import best_lr, kind_rows, setting_fields
from ..config import IGNORED, WHEN_SET, Config, Count, FieldError, NonNegative, Positive
from ..data.mqar import check_config, paper_num_kv_pairs, train_test
from ..errors import BenchError
from ..models.checks import check_mixers
from ..models.lm import LanguageModel, ModelConfig
from ..models.registry import resolve
from ..runner import SuiteKind
from ..tables import seed_tables
from ..training import TrainConfig, train

PRECISIONS = ("fp32", "bf16")  # fp32: the paper's protocol; bf16: autocast


@dataclass(frozen=True, kw_only=True)
class MqarModel(Config):
    """The paper's 2-layer MQAR language model."""

    mixer: str  # a registered mixer (models/registry.py) or module:Class
    d_model: Count
    value_dim_quirk: bool = True  # the paper's value head dim d_model // 12; False rounds it up

    def __post_init__(self):
        super().__post_init__()
        try:
            resolve(self.mixer)  # an unknown mixer fails here, before anything runs
        except BenchError as exc:
            raise FieldError("mixer", str(exc)) from None

    def build(self, data: "MqarData") -> LanguageModel:
        """The model for this task, freshly initialized (seed torch first)."""
        return LanguageModel(ModelConfig(self.mixer, self.d_model, data.seq_len, data.vocab_size,
                                         value_dim_quirk=self.value_dim_quirk))


@dataclass(frozen=True, kw_only=True)
class MqarData(Config):
    """The MQAR task: train data seed 42, test seed 52, whatever the training seed."""

    seq_len: Count
    num_kv_pairs: Count | Literal["paper"] = "paper"  # "paper": 16 at seq_len 128, else seq_len / 4
    vocab_size: Count = 8192
    train_examples: Count
    test_examples: Count

    def __post_init__(self):
        super().__post_init__()
        if self.num_kv_pairs == "paper":
            object.__setattr__(self, "num_kv_pairs", paper_num_kv_pairs(self.seq_len))
        check_config(self.seq_len, self.num_kv_pairs, self.vocab_size)

    def load(self):
        """(train, test), each (inputs, labels) int64 of shape (examples, seq_len); cached on disk."""
        return train_test(self.train_examples, self.test_examples, self.seq_len, self.num_kv_pairs, self.vocab_size)


@dataclass(frozen=True, kw_only=True)
class MqarTraining(Config):
    """The optimizer protocol: AdamW, cosine per epoch, micro-batches, early stop (training.py)."""

    lr: Positive
    seed: NonNegative
    epochs: Count
    # Cosine period in epochs; unset: the run's epochs. Named in the flat form only when set, so rows from before
    # the field existed keep their case ids (null in the column means the run's own epochs).
    schedule_epochs: Count | None = field(default=None, metadata=WHEN_SET)
    batch_size: Count
    micro_batch_size: NonNegative = 0  # 0: the device's choice (training.device_micro_batch); same gradient
    precision: Literal[("auto", *PRECISIONS)] = "auto"  # auto: bf16 on CUDA, fp32 elsewhere (for_device)

    def train_config(self) -> TrainConfig:
        return TrainConfig(lr=self.lr, epochs=self.epochs, batch_size=self.batch_size, seed=self.seed,
                           precision=self.precision, micro_batch_size=self.micro_batch_size,
                           schedule_epochs=self.schedule_epochs or 0)


@dataclass(frozen=True, kw_only=True)
class MqarCase(Config):
    """One MQAR training run."""

    model: MqarModel
    data: MqarData
    training: MqarTraining
    checkpoint_dir: str | None = field(default=None, metadata=IGNORED)  # keep the trained model under it

    def for_device(self, device: torch.device) -> "MqarCase":
        if self.training.precision != "auto":
            return self
        precision = "bf16" if device.type == "cuda" else "fp32"
        return dataclasses.replace(self, training=dataclasses.replace(self.training, precision=precision))


METRICS = pa.schema([
    ("accuracy", pa.float64()), ("final_accuracy", pa.float64()), ("best_epoch", pa.int64()),
    ("epochs_run", pa.int64()), ("resumed_from_epoch", pa.int64()), ("micro_batch_used", pa.int64()), ("train_seconds", pa.float64()),
    ("tokens_per_second", pa.float64()), ("params", pa.int64()), ("accuracy_history", pa.list_(pa.float64())),
    ("loss_history", pa.list_(pa.float64())), ("checkpoint_path", pa.string()),
], metadata={"accuracy": "best test accuracy over epochs, pooled over query positions",
             "resumed_from_epoch": "the epoch an interrupted run continued from (0: ran in one go)",
             "micro_batch_used": "examples per forward/backward: the device's choice when micro_batch_size is 0",
             "loss_history": "mean training loss of each epoch"})

# A point of Figure 1, and its sweep axes. Every other field of an MQAR case that changes the result is a setting:
# runs that differ in one are never pooled as if they were seeds.
POINT = ("mixer", "d_model", "seq_len")
SETTINGS = setting_fields(MqarCase, (*POINT, "lr", "seed"))


def train_case(case: MqarCase, device: torch.device, state_path=None,
               on_epoch=None) -> tuple[LanguageModel, dict]:
    """Train one case: (the trained model, its metrics); with state_path, resumable after any epoch; on_epoch is
    called with a training.Progress after each epoch.

    The model's mixers are checked first (models/checks.py): one that fails is the case's error, before training.
    """
    train_data, test_data = case.data.load()
    torch.manual_seed(case.training.seed)
    model = case.model.build(case.data)
    check_mixers(model, device)
    metrics = train(model, train_data, test_data, case.training.train_config(), device, state_path, on_epoch)
    return model, {**metrics, "params": sum(p.numel() for p in model.parameters())}


def run_case(case: MqarCase, device: torch.device, state_path=None, on_epoch=None) -> dict:
    """One MQAR case -> its metric columns (and its checkpoint when the case has a checkpoint_dir)."""
    model, metrics = train_case(case, device, state_path, on_epoch)
    return {**metrics, "checkpoint_path": save_if_asked(model, KIND.name, case, metrics)}


def summary(rows):
    """Per suite: lines mixer x d_model (x settings that differ), columns seq_len, cells the best-lr accuracy."""
    rows = kind_rows(rows, KIND)
    best = best_lr(rows, ("suite", *POINT), SETTINGS)
    return None if best.empty else seed_tables(best, rows, ["mixer", "d_model"], "seq_len", SETTINGS,
                                               "MQAR accuracy (best lr per cell)")


KIND = SuiteKind("mqar", MqarCase, METRICS, run_case, summary, progress_metric="accuracy", reports_epochs=True)
