"""Reductions shared by tables and figures."""

import pandas as pd


def best_lr(rows: pd.DataFrame, keys=("mixer", "d_model", "seq_len"), metric="accuracy") -> pd.DataFrame:
    """Per `keys`, the lr with the best mean-over-seeds `metric`: keys, lr, mean, std (0 for one seed), seeds."""
    ok = rows[rows["status"] == "ok"]
    keys = list(keys)
    stats = ok.groupby(keys + ["lr"])[metric].agg(mean="mean", std="std", seeds="count").reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    if stats.empty:
        return stats
    return stats.loc[stats.groupby(keys)["mean"].idxmax()].reset_index(drop=True)
