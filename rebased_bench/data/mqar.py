"""MQAR (multi-query associative recall) data, as the ReBased paper's code (zoology) generates it."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .. import console
from ..errors import BenchError
from ..files import save_torch

IGNORE_INDEX = -100
_CHUNK = 2048  # examples per vectorized draw: bounds the (chunk, vocab/2) random matrix to ~64 MB


def paper_num_kv_pairs(seq_len: int) -> int:
    """The paper's rule: 16 pairs at seq_len 128, otherwise seq_len / 4."""
    return 16 if seq_len == 128 else seq_len // 4


def check_config(seq_len: int, num_kv_pairs: int, vocab_size: int = 8192):
    """Raise BenchError when the generator cannot build this configuration."""
    if num_kv_pairs < 1:
        raise BenchError(f"num_kv_pairs must be >= 1, got {num_kv_pairs}")
    if seq_len < 4 * num_kv_pairs:
        raise BenchError(f"seq_len {seq_len} < 4 * num_kv_pairs ({4 * num_kv_pairs}): the queries do not fit")
    if seq_len % 2:
        raise BenchError(f"seq_len must be even, got {seq_len}")
    if vocab_size // 2 - 1 < num_kv_pairs:
        raise BenchError(f"vocab_size {vocab_size} has too few keys for {num_kv_pairs} pairs")


def generate(num_examples, seq_len, num_kv_pairs, vocab_size=8192, power_a=0.01, seed=0):
    """Draw MQAR examples: inputs and labels, both int64 of shape (num_examples, seq_len).

    Layout: [k1 v1 ... kN vN] then a query region of seq_len - 2N tokens filled with 0, where key j is
    written at offset 2 * gap_j, gaps drawn without replacement from 0..space-1 with weight (i+1)^(a-1)
    (zoology's np.random.choice over arange(space) with p ~ a * i^(a-1), i = 1..space). Keys come from
    [1, vocab/2), values from [vocab/2, vocab), distinct within an example. The label of a query token is
    its key's value; every other label is -100. Same distributions as zoology, not its exact random stream.
    """
    check_config(seq_len, num_kv_pairs, vocab_size)
    rng = np.random.default_rng(seed)
    parts = [_draw(rng, min(_CHUNK, num_examples - i), seq_len, num_kv_pairs, vocab_size, power_a)
             for i in range(0, num_examples, _CHUNK)]
    inputs = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, seq_len), np.int64)
    labels = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, seq_len), np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def _distinct(rng, n, count, low, high):
    """`count` distinct integers in [low, high) per row, in random order (as np.random.choice draws them)."""
    keys = rng.random((n, high - low))
    chosen = np.argpartition(keys, count - 1, axis=1)[:, :count] + low  # (n, count)
    return rng.permuted(chosen, axis=1)


def _draw(rng, n, seq_len, num_kv_pairs, vocab_size, power_a):
    half = vocab_size // 2
    keys = _distinct(rng, n, num_kv_pairs, 1, half)  # (n, num_kv_pairs)
    values = _distinct(rng, n, num_kv_pairs, half, vocab_size)
    context = 2 * num_kv_pairs
    space = (seq_len - context) // 2
    weights = power_a * np.arange(1, space + 1) ** (power_a - 1)
    # Weighted sampling without replacement (Efraimidis-Spirakis): same law as sequential np.random.choice.
    gumbel = np.log(rng.random((n, space))) / weights
    # Sorted by key, the winners come in draw order, so key j gets the j-th draw as np.random.choice gives it.
    gaps = np.argsort(-gumbel, axis=1)[:, :num_kv_pairs]  # (n, num_kv_pairs)
    inputs = np.zeros((n, seq_len), dtype=np.int64)  # (n, seq_len)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    labels = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    query_pos = context + 2 * gaps
    np.put_along_axis(inputs, query_pos, keys, axis=1)
    np.put_along_axis(labels, query_pos, values, axis=1)
    return inputs, labels


def cache_dir() -> Path:
    """Where generated data is cached: $REBASED_BENCH_CACHE or ~/.cache/rebased-bench."""
    return Path(os.environ.get("REBASED_BENCH_CACHE", Path.home() / ".cache" / "rebased-bench"))


def query_index(labels):
    """Positions of the labelled (query) tokens, ascending in each row. labels: (batch, seq_len) -> (batch, n).

    MQAR queries every key once, so every row has the same n; an index (unlike a boolean mask) selects them
    without a host sync, which lets the trainer queue steps ahead of the GPU.
    """
    is_query = labels != IGNORE_INDEX  # (batch, seq_len)
    counts = is_query.sum(1)
    if counts.numel() and counts.min() != counts.max():
        raise ValueError("query_index: rows have different numbers of labelled positions")
    return is_query.int().argsort(dim=1, descending=True, stable=True)[:, :int(counts[0]) if len(counts) else 0]


def cached_generate(num_examples, seq_len, num_kv_pairs, vocab_size=8192, power_a=0.01, seed=0):
    """`generate`, cached on disk by a hash of its arguments."""
    config = dict(num_examples=num_examples, seq_len=seq_len, num_kv_pairs=num_kv_pairs,
                  vocab_size=vocab_size, power_a=power_a, seed=seed, version=1)
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "mqar" / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path)
        except Exception:  # a torn cache file is regenerated, never fatal
            pass
    data = generate(num_examples, seq_len, num_kv_pairs, vocab_size, power_a, seed)
    save_torch(data, path)
    return data


def train_test(train_examples, test_examples, seq_len, num_kv_pairs, vocab_size=8192, power_a=0.01,
               train_seed=42, test_seed=52):
    """The paper's split: train data seed 42, test seed 52, independent of the training seed."""
    train = cached_generate(train_examples, seq_len, num_kv_pairs, vocab_size, power_a, train_seed)
    test = cached_generate(test_examples, seq_len, num_kv_pairs, vocab_size, power_a, test_seed)
    leaked = _leak_fraction(train[0], test[0])
    if leaked > 0.001:
        console.warn(f"MQAR: {leaked:.2%} of test sequences also appear in train")
    return train, test


def _leak_fraction(train_inputs, test_inputs):
    seen = {row.tobytes() for row in train_inputs.numpy()}
    return sum(row.tobytes() in seen for row in test_inputs.numpy()) / max(1, len(test_inputs))
