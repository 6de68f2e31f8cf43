"""Paired differences between two systems scored on the same test queries (e.g. MEDBind_BD - MEDBind_NM).

Each bootstrap replicate resamples the test patients once for both systems, so the interval is that of the
difference itself, far narrower than two overlapping marginal CIs suggest. It covers test resampling only: each
variant is pre-trained once per profile, so pre-training seed variance is not in it.

Builders that support it (``crossmodal_recall_table``, ``fig3_zero_few_shot``, ``table3_crossmodal``) take a
``per_query`` dict and deposit, per item (a metric on one dataset/task), the per-query outcomes of every
system: ``{item: {"kind": "mean" | "balanced_accuracy", "groups": [N], "y": [N], "n_classes": C,
"by_system": {system: [N] hits (0/100) or predicted classes}}}``; ``paired_differences`` turns them into a
table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import balanced_accuracy_replicates, percentile_ci, resample_indices

__all__ = ["record", "paired_mean_difference", "paired_balanced_accuracy_difference", "paired_differences"]


def record(per_query: dict | None, item: str, system: str, outcome, *, kind: str, groups=None, y=None,
           n_classes: int | None = None) -> None:
    """Deposit one system's per-query outcomes of ``item`` (no-op when ``per_query`` is None)."""
    if per_query is None:
        return
    slot = per_query.setdefault(item, {"kind": kind, "groups": None if groups is None else np.asarray(groups),
                                       "y": None if y is None else np.asarray(y), "n_classes": n_classes,
                                       "by_system": {}})
    slot["by_system"][system] = np.asarray(outcome)


def paired_mean_difference(values_a, values_b, groups=None, n_boot: int = 1000, seed: int = 0,
                           alpha: float = 0.05) -> dict:
    """mean(a) - mean(b) of per-query values (e.g. hits x 100) with a paired patient-bootstrap CI."""
    d = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    g = np.arange(len(d)) if groups is None else np.asarray(groups)
    reps = np.array([d[idx].mean() for idx in resample_indices(g, n_boot, seed)]) if n_boot else np.zeros(0)
    lo, hi = percentile_ci(reps, alpha)
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "n": len(d)}


def paired_balanced_accuracy_difference(y, pred_a, pred_b, groups=None, n_classes: int | None = None,
                                        n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Balanced accuracy (percent) of a minus that of b on the same queries, paired patient-bootstrap CI."""
    va, ra, _ = balanced_accuracy_replicates(y, pred_a, groups, n_classes, n_boot, seed)
    vb, rb, _ = balanced_accuracy_replicates(y, pred_b, groups, n_classes, n_boot, seed)
    lo, hi = percentile_ci(100 * (ra - rb), alpha)
    return {"diff": 100 * (va - vb), "lo": lo, "hi": hi, "n": len(np.asarray(y)), "a": 100 * va, "b": 100 * vb}


def paired_differences(per_query: dict, a: str = "medbind_bd", b: str = "medbind_nm", n_boot: int = 1000,
                       seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per item both systems were scored on: a, b, a - b with its paired CI, and whether the CI
    excludes 0."""
    rows = []
    for item, slot in per_query.items():
        by = slot["by_system"]
        if a not in by or b not in by:
            continue
        if slot["kind"] == "mean":
            r = paired_mean_difference(by[a], by[b], slot["groups"], n_boot, seed, alpha)
            r.update(a=float(np.mean(by[a])), b=float(np.mean(by[b])))
        else:
            r = paired_balanced_accuracy_difference(slot["y"], by[a], by[b], slot["groups"], slot["n_classes"],
                                                    n_boot, seed, alpha)
        rows.append({"item": item, "metric": "recall" if slot["kind"] == "mean" else "balanced accuracy",
                     "system_a": a, "system_b": b, "a": r["a"], "b": r["b"], "a_minus_b": r["diff"],
                     "lo": r["lo"], "hi": r["hi"], "n_queries": r["n"],
                     "ci_excludes_0": bool(r["lo"] > 0 or r["hi"] < 0)})
    df = pd.DataFrame(rows, columns=["item", "metric", "system_a", "system_b", "a", "b", "a_minus_b", "lo", "hi",
                                     "n_queries", "ci_excludes_0"])
    df.attrs["params"] = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "ci": "paired patient-level cluster "
                          "bootstrap (one resample of the test patients for both systems)",
                          "covers": "test resampling only; each variant pre-trained once"}
    return df
