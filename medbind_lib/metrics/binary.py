"""Binary-outcome metrics with patient-bootstrap CIs, vectorised over replicates: AUROC, AUPR (the MEDCSP paper's
``auc(recall, precision)``) and average precision (EHR tasks, notebook 10; zero-shot AUROC, notebooks 05, 06, 11).

A replicate of ``bootstrap.resample_indices(groups, n_boot, seed)`` draws each row m times; here the row gets weight m
instead, so one sort of the scores serves every replicate, and the replicates are those of ``with_ci`` with the
same seed (two systems scored on the same rows share them: their difference is a paired bootstrap).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .common import as_numpy
from .bootstrap import count_blocks, block_counts, draw_blocks, group_codes, percentile_ci

__all__ = ["METRICS", "binary_metrics", "metric_replicates", "auroc_replicates", "binary_counts_replicates",
           "runs_bootstrap", "paired_difference"]

METRICS = ("auroc", "aupr", "ap")


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def binary_metrics(y, score) -> tuple[float, float, float]:
    """(AUROC, AUPR, AP) as fractions; NaN for all three when ``y`` has one class. One sort serves the three:
    the curve points are scikit-learn's (``_binary_clf_curve``: one point per distinct score), AUPR =
    ``auc(recall, precision)`` of ``precision_recall_curve`` (with its final (recall 0, precision 1) point),
    AP = sum over thresholds of (R_k - R_k-1) P_k. Numpy, not sklearn, because the bootstrap calls it
    n_boot x runs times per row."""
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan"), float("nan"), float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = last + 1 - tps
    auroc = _trapezoid(np.r_[0.0, tps / n_pos], np.r_[0.0, fps / (len(y) - n_pos)])
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / n_pos)[::-1], 0.0]
    aupr = -_trapezoid(precision, recall)
    ap = float(-np.sum(np.diff(recall) * precision[:-1]))
    return auroc, aupr, ap


def _curve_metrics(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
    """[b, 3] (AUROC, AUPR, AP) from cumulative true / false positive weights [b, U] at the distinct scores in
    DESCENDING order. A score group absent from a replicate repeats the previous point (zero width: no area); a
    leading point with nothing above the threshold gets precision 1, i.e. merges into sklearn's final (recall 0,
    precision 1) point. NaN where a replicate lacks a class."""
    P, N = tps[:, -1:], fps[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([np.zeros_like(P), tps / P], 1)
        fpr = np.concatenate([np.zeros_like(N), fps / N], 1)
        auroc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, 1)
        prec = np.where(tps + fps > 0, tps / (tps + fps), 1.0)
        rec = tps / P
    rec0 = np.concatenate([np.zeros_like(P), rec], 1)                         # ascending recall, then (0, 1) first
    prec0 = np.concatenate([np.ones_like(P), prec], 1)
    aupr = np.sum(np.diff(rec0, axis=1) * (prec0[:, 1:] + prec0[:, :-1]) / 2, 1)
    ap = np.sum(np.diff(rec0, axis=1) * prec, 1)
    out = np.stack([auroc, aupr, ap], 1)
    out[(P[:, 0] <= 0) | (N[:, 0] <= 0)] = np.nan
    return out


def metric_replicates(y, score, groups, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, 3] (AUROC, AUPR, AP) of every patient-bootstrap replicate of ``bootstrap.resample_indices(groups,
    n_boot, seed)``, vectorised: a row drawn m times is the row with weight m, so one sort of the scores serves
    every replicate (equal to ``binary_metrics`` on the resampled rows; NaN where a replicate has one class)."""
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, np.float64).ravel()
    codes = group_codes(np.asarray(groups), len(y))
    g = int(codes.max()) + 1 if len(y) else 0
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order].astype(np.float64), s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]]) if len(ss) else np.zeros(0, np.int64)
    out = []
    for draws in draw_blocks(g, int(n_boot), int(seed)):
        w = block_counts(draws, g)[:, codes[order]]                               # [b, N] row weights, score order
        pos = np.add.reduceat(w * ys, starts, axis=1)
        neg = np.add.reduceat(w * (1 - ys), starts, axis=1)
        out.append(_curve_metrics(np.cumsum(pos, 1), np.cumsum(neg, 1)))
    return np.concatenate(out) if out else np.zeros((0, len(METRICS)))


def runs_bootstrap(y, scores, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """The mean over runs of each metric with a patient-bootstrap CI of that mean.

    ``scores`` [R, n] (one row per run, same test rows). Each replicate resamples the test patients once
    (``groups``; the resamples of ``bootstrap.resample_indices``, so two rows scored on the same patients with the
    same seed see the same replicates) and re-scores every run; the replicate's value is the mean over runs. A
    replicate with one class is NaN for every run: skipped and counted (``n_skipped``). Returns per metric
    ``value`` (fraction), ``lo``, ``hi``, ``per_run`` [R] and ``reps`` [n_boot]."""
    y = np.asarray(y)
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    if scores.shape[1] != len(y):
        raise ValueError(f"scores has {scores.shape[1]} columns, y has {len(y)} rows")
    per_run = np.array([binary_metrics(y, s) for s in scores]).reshape(len(scores), len(METRICS))
    if n_boot and len(y):
        reps = np.mean([metric_replicates(y, s, groups, n_boot, seed) for s in scores], axis=0)
    else:
        reps = np.full((int(n_boot), len(METRICS)), np.nan)
    valid = np.isfinite(reps[:, 0])
    out = {"n_boot": int(n_boot), "n_valid": int(valid.sum()), "n_skipped": int((~valid).sum()),
           "runs": len(scores), "seed": int(seed), "alpha": float(alpha)}
    for j, m in enumerate(METRICS):
        lo, hi = percentile_ci(reps[:, j], alpha)
        v = per_run[:, j]
        out[m] = {"value": float(np.mean(v)) if np.isfinite(v).all() else float("nan"), "lo": lo, "hi": hi,
                  "per_run": v, "reps": reps[:, j]}
    return out


def paired_difference(a: Mapping, b: Mapping, metric: str = "auroc", alpha: float = 0.05) -> dict:
    """Row a minus row b (two ``runs_bootstrap`` results on the same test rows, same seed): the difference of the
    means over runs with the percentile CI of the replicate-wise differences (pairs where either is NaN are
    skipped and counted)."""
    ra, rb = np.asarray(a[metric]["reps"]), np.asarray(b[metric]["reps"])
    if ra.shape != rb.shape:
        raise ValueError("paired rows need the same bootstrap replicates (same test rows, n_boot and seed)")
    d = ra - rb
    lo, hi = percentile_ci(d, alpha)
    ok = np.isfinite(d)
    diff = a[metric]["value"] - b[metric]["value"]
    return {"a": a[metric]["value"], "b": b[metric]["value"], "diff": diff, "lo": lo, "hi": hi,
            "n_valid": int(ok.sum()), "n_skipped": int((~ok).sum()),
            "ci_excludes_0": bool(np.isfinite(lo) and (lo > 0 or hi < 0))}


def auroc_replicates(y, score, groups=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot] bootstrap AUROCs (fractions; NaN where a replicate lacks a class): ``metric_replicates``'s first
    column (the Mann-Whitney statistic with row weights, ties = 1/2), equal to ``with_ci``'s ``roc_auc_score``."""
    g = np.arange(len(as_numpy(y))) if groups is None else groups
    return metric_replicates(y, score, g, n_boot, seed)[:, 0]


def binary_counts_replicates(y, pred, groups=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, 3] bootstrap (true positives, predicted positives, true positives in y) of a binary
    prediction: precision, recall and F1 of every replicate follow without a loop over replicates."""
    y = as_numpy(y).astype(bool)
    p = as_numpy(pred).astype(bool)
    out = []
    for codes, cnt in count_blocks(groups, len(y), n_boot, seed):
        g = cnt.shape[1]
        per = np.stack([np.bincount(codes, weights=v.astype(np.float64), minlength=g) for v in (y & p, p, y)], 1)
        out.append(cnt @ per)
    return np.concatenate(out) if out else np.zeros((0, 3))
