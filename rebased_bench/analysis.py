"""Reductions shared by tables and figures."""

import pandas as pd

# Columns that change what a run means without being a sweep axis: runs that differ in one are never pooled.
SETTINGS = ("num_kv_pairs", "epochs", "schedule_epochs", "train_examples", "test_examples", "batch_size",
            "micro_batch_size", "precision", "vocab_size", "value_dim_quirk")


def mixed_settings(rows: pd.DataFrame, keys) -> list[str]:
    """Setting columns that take several values inside one group of `keys` (e.g. a rerun with --epochs 8)."""
    present = [c for c in SETTINGS if c in rows and c not in keys]
    if rows.empty or not present:
        return []
    counts = rows.groupby(list(keys))[present].nunique(dropna=False).max()
    return [c for c in present if counts[c] > 1]


def setting_columns(best: pd.DataFrame) -> list[str]:
    """The setting columns `best_lr` had to add to its keys: label table rows with them too."""
    return [c for c in SETTINGS if c in best]


def best_lr(rows: pd.DataFrame, keys=("mixer", "d_model", "seq_len"), metric="accuracy") -> pd.DataFrame:
    """Per `keys`, the lr with the best mean-over-seeds `metric`: keys, lr, mean, std (0 for one seed), seeds.

    Rows that differ in a setting (epochs, examples, ...) inside a group become separate groups, named by
    those setting columns, so runs of different protocols are never averaged as if they were seeds.
    """
    ok = rows[rows["status"] == "ok"]
    keys = list(keys) + mixed_settings(ok, keys)
    stats = ok.groupby(keys + ["lr"])[metric].agg(mean="mean", std="std", seeds="count").reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    if stats.empty:
        return stats
    return stats.loc[stats.groupby(keys)["mean"].idxmax()].reset_index(drop=True)
