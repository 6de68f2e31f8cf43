"""Paired differences between two systems scored on the same test queries (e.g. MEDBind_BD - MEDBind_NM),
for one pre-training run each (``paired_differences``) or averaged over seed replicates
(``seed_paired_differences``, ``replicates.py``).

Each bootstrap replicate resamples the test patients once for both systems, so the interval is that of the
difference itself, far narrower than two overlapping marginal CIs suggest. It covers test resampling only: each
variant is pre-trained once per profile, so pre-training seed variance is not in it.

Builders that support it (``crossmodal_recall_table``, ``fig3_zero_few_shot``, ``table3_crossmodal``) take a
``per_query`` dict and deposit, per item (a metric on one dataset/task), the per-query outcomes of every
system: ``{item: {"kind": "mean" | "balanced_accuracy" | "auroc", "groups": [N], "y": [N], "n_classes": C,
"by_system": {system: [N] hits (0/100), predicted classes or class scores}}}``; ``paired_differences`` turns them into a
table.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..replicates import run_name
from .bootstrap import balanced_accuracy_replicates, mean_replicates, percentile_ci

__all__ = ["record", "paired_mean_difference", "paired_balanced_accuracy_difference", "paired_differences",
           "seed_paired_differences", "mean_difference_replicates", "seed_average", "rests_on"]


def record(per_query: dict | None, item: str, system: str, outcome, *, kind: str, groups=None, y=None,
           n_classes: int | None = None) -> None:
    """Deposit one system's per-query outcomes of ``item`` (no-op when ``per_query`` is None)."""
    if per_query is None:
        return
    slot = per_query.setdefault(item, {"kind": kind, "groups": None if groups is None else np.asarray(groups),
                                       "y": None if y is None else np.asarray(y), "n_classes": n_classes,
                                       "by_system": {}})
    slot["by_system"][system] = np.asarray(outcome)


def mean_difference_replicates(values_a, values_b, groups, n_boot: int, seed: int):
    """(mean a - mean b, its [n_boot] paired replicates, mean a, mean b) of per-query values."""
    d = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    reps = mean_replicates(d, None if groups is None else np.asarray(groups), n_boot, seed)
    return float(d.mean()), reps, float(np.mean(values_a)), float(np.mean(values_b))


def _ba_diff_reps(y, pred_a, pred_b, groups, n_classes, n_boot: int, seed: int):
    va, ra, _ = balanced_accuracy_replicates(y, pred_a, groups, n_classes, n_boot, seed)
    vb, rb, _ = balanced_accuracy_replicates(y, pred_b, groups, n_classes, n_boot, seed)
    return 100 * (va - vb), 100 * (ra - rb), 100 * va, 100 * vb


def _auroc_diff_reps(y, score_a, score_b, groups, n_boot: int, seed: int):
    from .binary import auroc_replicates
    from .zeroshot import binary_auroc

    y, sa, sb = np.asarray(y), np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)
    va, vb = binary_auroc(y, sa), binary_auroc(y, sb)
    reps = auroc_replicates(y, sa, groups, n_boot, seed) - auroc_replicates(y, sb, groups, n_boot, seed)
    return 100 * (va - vb), 100 * reps, 100 * va, 100 * vb


def _slot_diff(slot: dict, a: str, b: str, n_boot: int, seed: int):
    """(a - b, its paired replicates, a, b) of one item; the replicates depend only on the test patients, the
    number of replicates and the seed, so they line up across systems and across pre-training seeds."""
    by = slot["by_system"]
    if slot["kind"] == "mean":
        return mean_difference_replicates(by[a], by[b], slot["groups"], n_boot, seed)
    if slot["kind"] == "auroc":
        return _auroc_diff_reps(slot["y"], by[a], by[b], slot["groups"], n_boot, seed)
    return _ba_diff_reps(slot["y"], by[a], by[b], slot["groups"], slot["n_classes"], n_boot, seed)


def paired_mean_difference(values_a, values_b, groups=None, n_boot: int = 1000, seed: int = 0,
                           alpha: float = 0.05) -> dict:
    """mean(a) - mean(b) of per-query values (e.g. hits x 100) with a paired patient-bootstrap CI."""
    diff, reps, _, _ = mean_difference_replicates(values_a, values_b, groups, n_boot, seed)
    lo, hi = percentile_ci(reps, alpha)
    return {"diff": diff, "lo": lo, "hi": hi, "n": len(np.asarray(values_a))}


def paired_balanced_accuracy_difference(y, pred_a, pred_b, groups=None, n_classes: int | None = None,
                                        n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Balanced accuracy (percent) of a minus that of b on the same queries, paired patient-bootstrap CI."""
    diff, reps, va, vb = _ba_diff_reps(y, pred_a, pred_b, groups, n_classes, n_boot, seed)
    lo, hi = percentile_ci(reps, alpha)
    return {"diff": diff, "lo": lo, "hi": hi, "n": len(np.asarray(y)), "a": va, "b": vb}


def seed_average(per_seed: Sequence[tuple], alpha: float = 0.05) -> dict:
    """One paired difference averaged over pre-training seeds, from each seed's ``(a - b, [n_boot] paired
    replicates, a, b)`` on the same test rows and resamples: the mean difference, the percentile CI of the
    replicate-wise mean (test resampling), the SD of the per-seed differences (pre-training variance), each
    seed's own difference, and how many seeds' own CIs exclude 0."""
    diffs = np.array([p[0] for p in per_seed], np.float64)
    lo, hi = percentile_ci(np.mean([p[1] for p in per_seed], axis=0), alpha)
    own = [percentile_ci(p[1], alpha) for p in per_seed]
    return {"a": float(np.mean([p[2] for p in per_seed])), "b": float(np.mean([p[3] for p in per_seed])),
            "a_minus_b": float(diffs.mean()), "lo": lo, "hi": hi, "n_pretrain_seeds": len(per_seed),
            "seed_sd": float(diffs.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
            "per_seed": " ".join(f"{d:+.1f}" for d in diffs),
            "seeds_ci_above_0": sum(lo_k > 0 for lo_k, _ in own), "seeds_ci_below_0": sum(hi_k < 0 for _, hi_k in own)}


def rests_on(n_pretrain_seeds: int, n_patients: int | None = None) -> str:
    """What a verdict rests on, printed beside it: pre-training seeds (or 'one training run') and test patients."""
    runs = ("ONE pre-training run" if n_pretrain_seeds == 1 else f"{n_pretrain_seeds} pre-training seeds")
    return runs + ("" if n_patients is None else f", {n_patients} test patients")


_COLUMNS = ["item", "metric", "system_a", "system_b", "a", "b", "a_minus_b", "lo", "hi", "n_queries", "n_patients",
            "n_pretrain_seeds", "ci_excludes_0"]


def _params(n_boot, seed, alpha, covers: str) -> dict:
    return {"n_boot": n_boot, "seed": seed, "alpha": alpha, "covers": covers,
            "ci": "paired patient-level cluster bootstrap (one resample of the test patients for both systems)"}


def paired_differences(per_query: dict, a: str, b: str, n_boot: int = 1000,
                       seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per item both systems were scored on: a, b, a - b with its paired CI, and whether the CI
    excludes 0."""
    rows = []
    for item, slot in per_query.items():
        if a not in slot["by_system"] or b not in slot["by_system"]:
            continue
        diff, reps, va, vb = _slot_diff(slot, a, b, n_boot, seed)
        lo, hi = percentile_ci(reps, alpha)
        rows.append({"item": item, "metric": _metric(slot), "system_a": a, "system_b": b, "a": va, "b": vb,
                     "a_minus_b": diff, "lo": lo, "hi": hi, "n_queries": len(slot["by_system"][a]),
                     "n_patients": _n_patients(slot), "n_pretrain_seeds": 1, "ci_excludes_0": bool(lo > 0 or hi < 0)})
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df.attrs["params"] = _params(n_boot, seed, alpha, "test resampling only; each variant pre-trained once")
    return df


def _n_patients(slot: dict) -> int:
    g = slot["groups"]
    return len(np.unique(g)) if g is not None else len(next(iter(slot["by_system"].values())))


def _metric(slot: dict) -> str:
    return {"mean": "recall", "auroc": "AUROC"}.get(slot["kind"], "balanced accuracy")


def seed_paired_differences(per_query: dict, comparisons: Sequence[tuple[str, str]], n_seeds: int,
                            n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """a - b averaged over pre-training seeds k = 0 .. n_seeds - 1 (systems ``a@seed<k>`` - ``b@seed<k>``, the
    plain keys for k = 0): one row per (item, comparison) with the mean difference, its paired CI (each
    replicate resamples the test patients once for every seed and both systems), the SD of the per-seed
    differences (pre-training variance) and how many seeds' own paired CIs exclude 0."""
    rows = []
    for item, slot in per_query.items():
        for a, b in comparisons:
            keys = [(run_name(a, k), run_name(b, k)) for k in range(n_seeds)]
            keys = [(x, y) for x, y in keys if x in slot["by_system"] and y in slot["by_system"]]
            if not keys:
                continue
            per = [_slot_diff(slot, x, y, n_boot, seed) for x, y in keys]
            rows.append({"item": item, "metric": _metric(slot), "system_a": a, "system_b": b,
                         "n_patients": _n_patients(slot), **seed_average(per, alpha)})
    df = pd.DataFrame(rows, columns=["item", "metric", "system_a", "system_b", "n_pretrain_seeds", "n_patients", "a",
                                     "b", "a_minus_b", "lo", "hi", "seed_sd", "per_seed", "seeds_ci_above_0",
                                     "seeds_ci_below_0"])
    df.attrs["params"] = _params(n_boot, seed, alpha, "test resampling (CI) and pre-training seeds (seed_sd, "
                                 "per_seed): mean over seeds of the paired differences")
    return df
