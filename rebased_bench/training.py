"""The MQAR trainer: AdamW, cosine per epoch, micro-batches, early stop, best-epoch accuracy."""

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.mqar import query_index


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
    """Cross-entropy over the labelled (query) positions only (arguments as query_logits)."""
    logits, targets = query_logits(model, inputs, labels, index)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


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


# The trainer's fast path: query_loss compiled by torch.compile. Inductor fuses the norms, casts, convolution and
# the loss around the Triton attention ops (custom ops, opaque to it). One static graph per batch shape (the
# last, partial batch of an epoch gets its own). Compiling is lazy: nothing happens until the first call.
compiled_query_loss = torch.compile(query_loss, dynamic=False)


def loss_function(device: torch.device):
    """The loss a step calls: compiled on CUDA; eager elsewhere, where compiling costs more than it saves."""
    return compiled_query_loss if device.type == "cuda" else query_loss


def optimizer_step(model, optimizer, loss_fn, inputs, labels, index, micro: int, precision: str):
    """One AdamW step over a batch in micro-batches of `micro` rows; each micro-batch's loss is weighted by its
    share of the batch, so the gradient is the whole batch's whatever `micro` is. inputs, labels: (batch, seq_len);
    index: (batch, queries). Returns nothing: no value is read back, so the host runs ahead of the GPU."""
    optimizer.zero_grad(set_to_none=True)
    for start in range(0, len(inputs), micro):
        rows = slice(start, start + micro)
        with autocast(precision, inputs.device):
            loss = loss_fn(model, inputs[rows], labels[rows], index[rows])
        (loss * len(inputs[rows]) / len(inputs)).backward()
    optimizer.step()


def device_micro_batch(model, loss_fn, inputs, labels, index, config: TrainConfig) -> int:
    """The micro-batch `train` uses: on a GPU with no micro_batch_size set, the whole batch when one step of it
    fits in memory (tried once, with the RNG state kept and the gradients dropped), else the paper's rule."""
    rule = micro_batch_size(config, inputs.shape[1])
    if inputs.device.type != "cuda" or config.micro_batch_size or rule >= config.batch_size:
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


def train(model, train_data, test_data, config: TrainConfig, device: torch.device):
    """Train on (inputs, labels) and evaluate after every epoch; returns metrics for the result row."""
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
    history, tokens, start = [], 0, time.perf_counter()
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=shuffle).to(device)
        for batch_start in range(0, len(inputs), config.batch_size):
            batch = order[batch_start:batch_start + config.batch_size]
            optimizer_step(model, optimizer, loss_fn, inputs[batch], labels[batch], index[batch], micro,
                           config.precision)
            tokens += len(batch) * seq_len
        schedule.step()
        history.append(evaluate(model, test_inputs, test_labels, test_index, micro, config.precision))
        if history[-1] > config.early_stop_accuracy:
            break
    train_seconds = time.perf_counter() - start
    best_epoch = max(range(len(history)), key=history.__getitem__)
    return {
        "accuracy": history[best_epoch],
        "final_accuracy": history[-1],
        "best_epoch": best_epoch + 1,
        "epochs_run": len(history),
        "train_seconds": train_seconds,
        "tokens_per_second": tokens / train_seconds if train_seconds > 0 else math.nan,
        "accuracy_history": history,
    }
