"""Patient-level (cluster) bootstrap confidence intervals.

Rows of one patient are correlated (several CXRs/ECGs per subject), so a row-level bootstrap understates
the uncertainty. Every interval here resamples SUBJECT IDS with replacement (G draws from the G distinct
groups) and takes all rows of each drawn subject, then reports the percentile interval. ``groups=None``
means one group per row (the ordinary bootstrap; use it only where rows are independent, e.g. COVID which
has no patient ids).

Determinism: the resample of replicate b depends only on ``(seed, number of groups)`` - draws are made in
fixed blocks of ``_BLOCK`` replicates from ``numpy.random.default_rng(seed)`` - so two metrics computed on
the same rows with the same seed see the same resamples (paired comparisons), and the vectorised paths
(``bootstrap_mean``, ``bootstrap_balanced_accuracy``) give exactly the replicates of the generic
``with_ci`` loop.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from .common import as_numpy, factorize

_BLOCK = 64


def group_codes(groups, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n, dtype=np.int64)
    g = as_numpy(groups)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} rows, data has {n}")
    return factorize(g.tolist())[0]


def draw_blocks(n_groups: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks [b, G] of drawn group indices (with replacement), ``_BLOCK`` replicates at a time."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(_BLOCK, n_boot - done)
        # always draw a full block so replicate b does not depend on n_boot
        yield rng.integers(0, n_groups, size=(_BLOCK, n_groups))[:b]
        done += b


def block_counts(draws: np.ndarray, n_groups: int) -> np.ndarray:
    """[b, G] drawn indices -> [b, G] multiplicity of each group in each replicate."""
    b = draws.shape[0]
    flat = (draws + np.arange(b)[:, None] * n_groups).ravel()
    return np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)


def percentile_ci(reps: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN replicates, e.g. a class absent, are dropped)."""
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(r, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _result(value, reps, n_boot, seed, alpha, n_groups) -> dict:
    lo, hi = percentile_ci(reps, alpha)
    return {"value": float(value), "lo": lo, "hi": hi, "n_boot": int(n_boot), "seed": int(seed),
            "alpha": float(alpha), "n_groups": int(n_groups), "n_valid": int(np.isfinite(reps).sum()),
            "ci": "cluster percentile"}


def resample_indices(groups, n_boot: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of each bootstrap replicate: all rows of every drawn group (duplicates kept)."""
    yield from _resample_codes(group_codes(groups, len(groups)), n_boot, seed)


def _resample_codes(codes: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    n_groups = int(codes.max()) + 1 if codes.size else 0
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for block in draw_blocks(n_groups, n_boot, seed):
        for drawn in block:
            ln = sizes[drawn]
            # concatenated ranges starts[g] .. starts[g]+sizes[g] without a Python loop
            offs = np.repeat(starts[drawn] - np.concatenate([[0], np.cumsum(ln)[:-1]]), ln)
            yield order[offs + np.arange(int(ln.sum()))]


def mean_replicates(values, groups=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot] bootstrap replicates of a mean of per-row values (the resamples of ``resample_indices``, so two
    value arrays over the same rows share every resample: their difference is a paired bootstrap)."""
    v = np.asarray(values, dtype=np.float64)
    g = np.arange(len(v)) if groups is None else groups
    return np.array([v[idx].mean() for idx in resample_indices(g, n_boot, seed)]) if n_boot else np.zeros(0)


def with_ci(metric_fn: Callable, *arrays, groups=None, n_boot: int = 1000, seed: int = 0,
            alpha: float = 0.05) -> dict:
    """Any metric with a patient-level bootstrap CI: ``metric_fn(*arrays)`` on all rows, then on each
    cluster resample (rows indexed along the first axis of every array). Returns
    ``dict(value, lo, hi, n_boot, seed, alpha, n_groups, n_valid, ci)``."""
    arrays = [as_numpy(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same number of rows")
    value = metric_fn(*arrays)
    codes = group_codes(groups, n)
    reps = np.array([metric_fn(*[a[idx] for a in arrays])
                     for idx in _resample_codes(codes, n_boot, seed)], dtype=np.float64)
    return _result(value, reps, n_boot, seed, alpha, int(codes.max()) + 1 if n else 0)


def bootstrap_mean(values, groups=None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Vectorised CI of a mean of per-row values (retrieval hits, correct/incorrect): replicate b =
    sum_g count_bg * sum_g(values) / sum_g count_bg * n_g. Same replicates as ``with_ci(np.mean, ...)``."""
    v = as_numpy(values).astype(np.float64)
    codes = group_codes(groups, len(v))
    g = int(codes.max()) + 1 if len(v) else 0
    gsum = np.bincount(codes, weights=v, minlength=g)
    gn = np.bincount(codes, minlength=g).astype(np.float64)
    reps = []
    for draws in draw_blocks(g, n_boot, seed):
        c = block_counts(draws, g)
        reps.append((c @ gsum) / (c @ gn))
    reps = np.concatenate(reps) if reps else np.zeros(0)
    return _result(v.mean() if len(v) else np.nan, reps, n_boot, seed, alpha, g)


def bootstrap_balanced_accuracy(y_true, y_pred, groups=None, n_classes: int | None = None,
                                n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Vectorised CI of balanced accuracy. ``y_pred`` [N] or [S, N] (S prediction sets, e.g. few-shot
    support sets: the statistic is the MEAN balanced accuracy over the S sets, and each replicate resamples
    the test patients once for all S sets)."""
    value, reps, g = balanced_accuracy_replicates(y_true, y_pred, groups, n_classes, n_boot, seed)
    return _result(value, reps, n_boot, seed, alpha, g)


def balanced_accuracy_replicates(y_true, y_pred, groups=None, n_classes: int | None = None, n_boot: int = 1000,
                                 seed: int = 0) -> tuple[float, np.ndarray, int]:
    """(value, [n_boot] replicates, number of groups) of ``bootstrap_balanced_accuracy``. The replicates depend
    only on (groups, n_boot, seed), so two systems scored on the same queries share every resample: their
    difference replicate by replicate is a paired bootstrap."""
    yt = as_numpy(y_true).astype(np.int64)
    yp = as_numpy(y_pred).astype(np.int64)
    if yp.ndim == 1:
        yp = yp[None]
    c = int(n_classes if n_classes is not None else max(yt.max(), yp.max()) + 1)
    codes = group_codes(groups, len(yt))
    g = int(codes.max()) + 1
    s = yp.shape[0]
    tot = np.zeros((g, c))
    np.add.at(tot, (codes, yt), 1.0)                                         # [G, C] rows per class
    correct = (yp == yt[None]).astype(np.float64)                            # [S, N]
    flat = codes[None, :] * (s * c) + np.arange(s)[:, None] * c + yt[None, :]
    hit = np.bincount(flat.ravel(), weights=correct.ravel(), minlength=g * s * c).reshape(g, s * c)

    def stat(cnt):  # cnt [b, G] -> [b]
        t = cnt @ tot                                                         # [b, C]
        h = (cnt @ hit).reshape(len(cnt), s, c)                               # [b, S, C]
        present = t > 0
        rec = np.where(present[:, None], h / np.maximum(t, 1)[:, None], 0.0)
        ba = rec.sum(-1) / np.maximum(present.sum(-1), 1)[:, None]            # [b, S]
        return ba.mean(-1)

    value = stat(np.ones((1, g)))[0]
    reps = np.concatenate([stat(block_counts(d, g)) for d in draw_blocks(g, n_boot, seed)]) if n_boot \
        else np.zeros(0)
    return float(value), reps, g


def count_blocks(groups, n: int, n_boot: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row codes, [b, G] multiplicities) per block: the resamples of ``with_ci`` / ``resample_indices`` with
    the same seed, as counts. A row drawn m times is the row with weight m, which is how the vectorised
    statistics below equal the loop over resampled rows."""
    codes = group_codes(groups, n)
    g = int(codes.max()) + 1 if n else 0
    for draws in draw_blocks(g, n_boot, seed):
        yield codes, block_counts(draws, g)

