"""Table 4 metrics: accuracy (the paper's), AUROC and balanced accuracy, averaged over fine-tuning seeds,
with patient-level bootstrap CIs.

Point values come from scikit-learn. The CI of a seed-averaged metric resamples PATIENTS once per replicate
(``metrics.bootstrap.resample_indices``) and averages the metric over the seeds' predictions on that
resample, so the interval covers test-set sampling with the seeds' mean as the statistic; the spread over
seeds is reported separately (``*_seed_sd``). Replicates use vectorised NumPy equivalents of the scikit-learn
metrics (equal to them, tested) because a thousand replicates x seeds of ``roc_auc_score`` are slow.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from ..metrics.common import balanced_accuracy_batched
from ..metrics.bootstrap import percentile_ci, resample_indices

METRICS = ("accuracy", "auroc", "balanced_accuracy")
THRESHOLDS = ("valid_accuracy", "valid_youden", "fixed_0.5")   # first = the default (settings.LLMSettings)


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """Percent accuracy, AUROC and balanced accuracy of ``prob >= threshold``; AUROC and balanced accuracy are
    NaN when ``y_true`` holds one class (a recall of an absent class does not exist)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    auc = 100 * roc_auc_score(y, p) if both else math.nan
    ba = 100 * balanced_accuracy_score(y, pred) if both else math.nan
    return {"accuracy": 100 * accuracy_score(y, pred) if len(y) else math.nan, "auroc": auc,
            "balanced_accuracy": ba}


def auroc_rows(y_true, scores) -> np.ndarray:
    """AUROC (fraction) of each row of ``scores`` [S, N] against ``y_true`` [N] (Mann-Whitney with average
    ranks for ties = ``roc_auc_score``); NaN where ``y_true`` has one class."""
    y = np.asarray(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return np.full(len(s), np.nan)
    r = rankdata(s, axis=1)
    return (r[:, y].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def balanced_accuracy_rows(y_true, pred) -> np.ndarray:
    """Balanced accuracy (fraction; mean of the two class recalls, ``balanced_accuracy_score``) of each row of
    ``pred`` [S, N]; NaN where ``y_true`` has one class (as ``binary_metrics``)."""
    y = np.asarray(y_true).astype(int)
    p = np.atleast_2d(np.asarray(pred)).astype(int)
    if not ((y == 0).any() and (y == 1).any()):
        return np.full(len(p), np.nan)
    return balanced_accuracy_batched(y, p, 2)


def choose_threshold(rule: str, y_valid=None, p_valid=None) -> float:
    """The decision threshold (``prob >= t`` is positive) of ``rule``, fit on the validation split only.

    - ``valid_accuracy`` (default): maximises validation accuracy. Why: Table 4 reports accuracy, while the
      class-weighted loss makes 0.5 the balanced-accuracy point, so at 0.5 accuracy falls below the majority
      rate by design on these imbalanced tasks.
    - ``valid_youden``: maximises Youden's J (sensitivity + specificity - 1), a balanced-accuracy rule.
    - ``fixed_0.5``: 0.5, no fitting.

    Candidates are the midpoints between neighbouring distinct validation scores plus one just below the lowest
    (everyone positive) and one just above the highest (everyone negative), so tied scores are never split.
    Ties in the criterion go to the candidate nearest 0.5 (the trained model's own decision point; then the
    lower one). Fallback 0.5 when the validation split is empty or holds one class: it then says nothing about
    where the classes separate (accuracy would just pick "everyone is that class").
    """
    if rule not in THRESHOLDS:
        raise ValueError(f"llm_threshold must be one of {THRESHOLDS}, got {rule!r}")
    if rule == "fixed_0.5":
        return 0.5
    y = np.asarray(y_valid).astype(int)
    p = np.asarray(p_valid, dtype=np.float64)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return 0.5
    u = np.unique(p)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    pred = p[None, :] >= cands[:, None]
    if rule == "valid_accuracy":
        score = (pred == y[None].astype(bool)).sum(1)          # counts: exact ties
    else:
        score = pred[:, y == 1].mean(1) - pred[:, y == 0].mean(1)  # TPR - FPR = J
    best = np.flatnonzero(np.isclose(score, score.max(), rtol=0, atol=1e-12))
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])   # argmin: first = lower on a tie


def seed_averaged(y_true, probs, thresholds, groups=None, n_boot: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict:
    """Metrics of S seeds' test predictions ``probs`` [S, N] (``thresholds`` [S]) averaged over seeds:
    ``{metric, metric_lo, metric_hi, metric_seed_sd}`` in percent, plus ``n``, ``n_positive``, ``n_patients``,
    ``n_seeds``, ``n_boot``."""
    y = np.asarray(y_true).astype(int)
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1, 1)
    per_seed = [binary_metrics(y, p, t) for p, t in zip(probs, thr[:, 0])]
    out = {}
    for m in METRICS:
        vals = np.array([d[m] for d in per_seed], dtype=np.float64)
        out[m] = float(np.mean(vals)) if np.isfinite(vals).all() else math.nan
        out[f"{m}_seed_sd"] = float(np.std(vals, ddof=1)) if len(vals) > 1 and np.isfinite(vals).all() else math.nan
    pred = probs >= thr
    reps = {m: [] for m in METRICS}
    if n_boot and len(y):
        g = np.arange(len(y)) if groups is None else np.asarray(groups)
        for idx in resample_indices(g, n_boot, seed):
            yi = y[idx]
            reps["accuracy"].append(100 * (pred[:, idx] == yi.astype(bool)).mean())
            reps["auroc"].append(100 * auroc_rows(yi, probs[:, idx]).mean())
            reps["balanced_accuracy"].append(100 * balanced_accuracy_rows(yi, pred[:, idx]).mean())
    for m in METRICS:
        lo, hi = percentile_ci(np.array(reps[m]), alpha) if reps[m] and np.isfinite(out[m]) else (math.nan, math.nan)
        out[f"{m}_lo"], out[f"{m}_hi"] = lo, hi
    out.update(n=len(y), n_positive=int(y.sum()),
               n_patients=len(set(np.asarray(groups).tolist())) if groups is not None else len(y),
               n_seeds=len(probs), n_boot=int(n_boot))
    return out


def majority_accuracy(y_train, y_test) -> float:
    """Accuracy (percent) of always predicting the training split's majority class: the floor for accuracy on
    imbalanced tasks (ties -> class 0)."""
    ytr, yte = np.asarray(y_train).astype(int), np.asarray(y_test).astype(int)
    if len(yte) == 0:
        return math.nan
    major = int(ytr.mean() > 0.5) if len(ytr) else 0
    return 100.0 * float((yte == major).mean())
