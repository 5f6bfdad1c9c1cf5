"""The MQAR trainer: AdamW, cosine per epoch, micro-batches, early stop, best-epoch accuracy."""

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .checkpoints import set_aside_if_unreadable, unreadable_as_error
from .data.mqar import query_index
from .files import save_torch
from .kernels import linear_cross_entropy


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    epochs: int
    batch_size: int
    seed: int = 0
    weight_decay: float = 0.1
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    micro_batch_size: int = 0  # 0: the paper's rule, batch * 256 / seq_len from seq_len 512 on
    # Cosine period in epochs. 0: this run's epochs, so the lr reaches 0 at its end. The paper's is 64 (its
    # max_epochs, with early stop), so a run cut short of 64 keeps nearly the full lr throughout.
    schedule_epochs: int = 0
    early_stop_accuracy: float = 0.99


def micro_batch_size(config: TrainConfig, seq_len: int) -> int:
    """The paper's micro-batch for gradient accumulation: 256/128/64 at seq_len 512/1024/2048 for batch 512.

    A config's own micro_batch_size wins; `train` on a GPU takes the whole batch when it fits (same gradient).
    """
    if config.micro_batch_size:
        return min(config.micro_batch_size, config.batch_size)
    if seq_len < 512:
        return config.batch_size
    return max(1, config.batch_size * 256 // seq_len)


def lr_schedule(optimizer, config: TrainConfig):
    """Cosine from the full lr, stepped once per epoch, over schedule_epochs (0: this run's epochs)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.schedule_epochs or config.epochs)


def autocast(precision: str, device: torch.device):
    """bf16 autocast on CUDA; fp32 runs plainly."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def query_logits(model, inputs, labels, index=None):
    """Logits (batch, n, vocab) and targets (batch, n) at the labelled (query) positions only.

    inputs, labels: (batch, seq_len); index: their query_index (batch, n), computed from labels when None.
    """
    index = query_index(labels) if index is None else index
    return model(inputs, index), labels.gather(1, index)


def query_loss(model, inputs, labels, index=None):
    """Cross-entropy over the labelled (query) positions only (arguments as query_logits).

    The LM head and the loss are one op (linear_cross_entropy): on a GPU the (rows, vocab) logits never reach memory.
    """
    index = query_index(labels) if index is None else index
    hidden = model.query_hidden(inputs, index)  # (batch, n, d_model)
    return linear_cross_entropy(hidden.flatten(0, 1), model.head_weight, labels.gather(1, index).flatten())


@torch.no_grad()
def evaluate(model, inputs, labels, index, batch_size, precision="fp32"):
    """Accuracy pooled over every labelled position of the set. inputs, labels: (n, seq_len); index: (n, queries)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=inputs.device)
    for start in range(0, len(inputs), batch_size):
        part = slice(start, start + batch_size)
        with autocast(precision, inputs.device):
            logits, targets = query_logits(model, inputs[part], labels[part], index[part])
        correct += (logits.argmax(-1) == targets).sum()
    return int(correct) / max(1, index.numel())


def loss_function(device: torch.device, compile: bool | None = None):
    """The loss a training run's steps call: query_loss, compiled afresh for the run by torch.compile on CUDA
    (compile=None) or when asked; eager elsewhere, where compiling costs more than it saves.

    Inductor fuses the norms, casts, convolution and the loss around the Triton attention ops (custom ops, opaque
    to it), one static graph per batch shape. Dynamo keeps a bounded number of graphs per function and silently
    runs eagerly past it, which a sweep's cases would reach: each run starts from a reset (Inductor's cache makes
    the recompile cheap).
    """
    if not (device.type == "cuda" if compile is None else compile):
        return query_loss
    torch._dynamo.reset()
    return torch.compile(query_loss, dynamic=False)


def optimizer_step(model, optimizer, loss_fn, inputs, labels, index, micro: int, precision: str):
    """One AdamW step over a batch in micro-batches of `micro` rows; each micro-batch's loss is weighted by its
    share of the batch, so the gradient is the whole batch's whatever `micro` is.

    inputs, labels: (batch, seq_len); index: (batch, queries). Returns the batch's loss as a 0-d tensor on the
    device: nothing is read back, so the host runs ahead of the GPU.
    """
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=inputs.device)
    for start in range(0, len(inputs), micro):
        rows = slice(start, start + micro)
        with autocast(precision, inputs.device):
            loss = loss_fn(model, inputs[rows], labels[rows], index[rows]) * (len(inputs[rows]) / len(inputs))
        loss.backward()
        total += loss.detach().float()
    optimizer.step()
    return total


# On a CPU, micro-batches of at most this many query rows keep their (rows, vocab) logits near the cache: at 16
# queries a row, 16-example micro-batches trained 1.2-1.6x faster than 64 on 2 cores, with the same gradient.
CPU_QUERY_ROWS = 256


def device_micro_batch(model, loss_fn, inputs, labels, index, config: TrainConfig) -> int:
    """The micro-batch `train` uses when the config sets none (micro_batch_size 0), which follows the device:
    on a GPU the whole batch when one step of it fits in memory (tried once, with the RNG state kept and the
    gradients dropped), else the paper's rule; on a CPU the paper's rule, cut to CPU_QUERY_ROWS query rows.
    index: (n, queries). A set micro_batch_size is taken as it is. The gradient is the whole batch's in every case."""
    rule = micro_batch_size(config, inputs.shape[1])
    if config.micro_batch_size:
        return rule
    if inputs.device.type != "cuda":
        return min(rule, max(1, CPU_QUERY_ROWS // max(1, index.shape[1])))
    if rule >= config.batch_size:
        return rule
    batch = slice(0, config.batch_size)
    with torch.random.fork_rng(devices=[inputs.device]):
        try:
            with autocast(config.precision, inputs.device):
                loss_fn(model, inputs[batch], labels[batch], index[batch]).backward()
            return config.batch_size
        except torch.OutOfMemoryError:
            return rule
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()


class Diverged(Exception):
    """The training loss became NaN or infinite: the run stops there, keeping no state of that epoch."""


@dataclass
class Progress:
    """What a run reports after each epoch (to a progress display or a log line)."""

    epoch: int
    epochs: int
    loss: float
    accuracy: float
    best_accuracy: float
    seconds: float  # training time so far, earlier runs of a resumed case included


def train(model, train_data, test_data, config: TrainConfig, device: torch.device, state_path=None,
          on_epoch: Callable[[Progress], None] | None = None):
    """Train on (inputs, labels) and evaluate after every epoch; returns metrics for the result row.

    With `state_path`, the whole training state is written there after each epoch and a run finding one
    continues from it (the same history as a run in one go); the caller deletes it once the result is kept.
    An epoch whose mean loss is NaN or infinite raises Diverged, before its state is written.
    """
    # The whole set lives on the device and nothing in a step reads a value back to the host, so the CPU
    # queues steps ahead of the GPU (small models are otherwise bound by launch latency and syncs).
    inputs, labels = (t.to(device) for t in train_data)
    test_inputs, test_labels = (t.to(device) for t in test_data)
    index, test_index = query_index(labels), query_index(test_labels)  # (n, queries)
    seq_len = inputs.shape[1]
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    schedule = lr_schedule(optimizer, config)
    loss_fn = loss_function(device)
    model.train()
    micro = device_micro_batch(model, loss_fn, inputs, labels, index, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    run = RunState(model, optimizer, schedule, shuffle, device)
    resumed_from = run.load(state_path) if state_path else 0
    start = time.perf_counter() - run.seconds
    while run.epoch < config.epochs:
        model.train()
        order = torch.randperm(len(inputs), generator=shuffle).to(device)
        epoch_loss = torch.zeros((), device=device)
        for batch_start in range(0, len(inputs), config.batch_size):
            batch = order[batch_start:batch_start + config.batch_size]
            loss = optimizer_step(model, optimizer, loss_fn, inputs[batch], labels[batch], index[batch], micro,
                                  config.precision)
            epoch_loss += loss * len(batch)
        mean_loss = epoch_loss.item() / len(inputs)  # the epoch's one read-back of the loss
        if not math.isfinite(mean_loss):
            raise Diverged(f"diverged at epoch {run.epoch + 1} (mean training loss {mean_loss})")
        schedule.step()
        run.epoch += 1
        run.loss_history.append(mean_loss)
        run.history.append(evaluate(model, test_inputs, test_labels, test_index, micro, config.precision))
        run.seconds = time.perf_counter() - start
        if state_path:
            run.save(state_path)
        if on_epoch:
            on_epoch(Progress(run.epoch, config.epochs, run.loss_history[-1], run.history[-1], max(run.history),
                              run.seconds))
        if run.history[-1] > config.early_stop_accuracy:
            break
    history = run.history
    tokens = len(history) * len(inputs) * seq_len  # trained so far, earlier runs of a resumed case included
    best_epoch = max(range(len(history)), key=history.__getitem__)
    return {
        "accuracy": history[best_epoch],
        "final_accuracy": history[-1],
        "best_epoch": best_epoch + 1,
        "epochs_run": len(history),
        "resumed_from_epoch": resumed_from,
        "micro_batch_used": micro,
        "train_seconds": run.seconds,
        "tokens_per_second": tokens / run.seconds if run.seconds > 0 else math.nan,
        "accuracy_history": history,
        "loss_history": run.loss_history,
    }


def kept_epoch(path) -> int | None:
    """The last finished epoch of the training state kept at `path`; None when there is none or it is unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # a missing or broken state: the run starts the case afresh either way
        return None


class RunState:
    """Everything a run needs to continue after its last finished epoch: weights, AdamW moments, the lr schedule,
    the shuffling and dropout RNG states, the histories and the training time so far."""

    def __init__(self, model, optimizer, schedule, shuffle, device):
        self.model, self.optimizer, self.schedule, self.shuffle, self.device = model, optimizer, schedule, shuffle, device
        self.epoch, self.history, self.loss_history, self.seconds = 0, [], [], 0.0

    def save(self, path):
        """Write the state atomically: a run killed while writing leaves the previous epoch's state."""
        payload = dict(epoch=self.epoch, history=self.history, loss_history=self.loss_history, seconds=self.seconds,
                       model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                       schedule=self.schedule.state_dict(), shuffle=self.shuffle.get_state(),
                       cpu_rng=torch.get_rng_state(),
                       cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        save_torch(payload, path)

    def load(self, path) -> int:
        """Continue from the state at `path` if there is one; returns the epoch it resumes from (0: none).

        An unreadable state is set aside and raised as UnreadableFile naming it: the case's error row says so and
        the next run starts the case afresh.
        """
        path = Path(path)
        if not path.exists():
            return 0
        with set_aside_if_unreadable(path, "the next run starts the case afresh"), \
                unreadable_as_error(path, "training state"):
            payload = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.schedule.load_state_dict(payload["schedule"])
            self.shuffle.set_state(payload["shuffle"].cpu())
            torch.set_rng_state(payload["cpu_rng"].cpu())
            if payload["cuda_rng"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(payload["cuda_rng"].cpu(), self.device)
            self.epoch, self.seconds = payload["epoch"], payload["seconds"]
            self.history, self.loss_history = list(payload["history"]), list(payload["loss_history"])
        return self.epoch
