"""Few-shot probe: balanced seeded support sets; the vectorised probe agrees with scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from medbind_lib.evaluate import (balanced_accuracy_batched, few_shot, fit_probe_batched, probe_predictions,
                                  sample_support_sets, single_label, sklearn_probe_predictions)


def blobs(n_classes, d=64, n_train=1500, n_test=600, scale=0.06, seed=0):
    """Gaussian blobs on the unit sphere, hard enough that K-shot accuracy is far from 100%."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n_classes, d))

    def draw(n):
        y = rng.integers(0, n_classes, n)
        x = mu[y] * scale + rng.normal(size=(n, d)) / np.sqrt(d)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

    return draw(n_train), draw(n_test)


def test_support_sets_balanced_and_seeded():
    y = np.array([0] * 5 + [1] * 9 + [2] * 4)
    s = sample_support_sets(y, 3, n_sets=50, seed=1)
    assert s.shape == (50, 9)
    assert (y[s] == np.repeat([0, 1, 2], 3)[None]).all()                   # K rows of each class, class-major
    assert all(len(set(r)) == 9 for r in s)                               # without replacement
    assert np.array_equal(s, sample_support_sets(y, 3, n_sets=50, seed=1))
    assert not np.array_equal(s, sample_support_sets(y, 3, n_sets=50, seed=2))
    assert len({tuple(r) for r in s}) > 40                                 # sets differ from each other
    with pytest.raises(ValueError):
        sample_support_sets(y, 5, n_sets=2)                               # class 2 has only 4 rows


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probe_matches_sklearn_coefficients(n_classes):
    # same objective as LogisticRegression(C, lbfgs): the binary model for 2 classes, multinomial otherwise
    (x, y), _ = blobs(n_classes, n_train=200, seed=3)
    x = x.astype(np.float64)        # scikit-learn fits float32 input in float32 (~1e-4 coefficient error)
    sup = sample_support_sets(y, 6, n_sets=3, seed=0)
    w, b = fit_probe_batched(torch.from_numpy(x)[sup], torch.from_numpy(y)[sup], n_classes, C=2.0,
                             dtype=torch.float64)
    for i in range(3):
        m = LogisticRegression(C=2.0, solver="lbfgs", tol=1e-10, max_iter=10000).fit(x[sup[i]], y[sup[i]])
        np.testing.assert_allclose(w[i].T.numpy(), m.coef_, atol=1e-5)
        np.testing.assert_allclose(b[i].numpy(), m.intercept_, atol=1e-5)


def test_vectorised_probe_agrees_with_sklearn_300_sets():
    # 300 support sets as in the paper (3 classes, K=4, d=64): mean balanced accuracy within 1 point
    (xtr, ytr), (xte, yte) = blobs(3, seed=5)
    sup = sample_support_sets(ytr, 4, n_sets=300, seed=0)
    a = 100 * balanced_accuracy_batched(yte, probe_predictions(xtr, ytr, xte, sup, 3), 3)
    b = 100 * balanced_accuracy_batched(yte, sklearn_probe_predictions(xtr, ytr, xte, sup), 3)
    assert 45 < b.mean() < 90                                              # a realistic, non-trivial problem
    assert abs(a.mean() - b.mean()) < 1.0
    assert np.abs(a - b).max() < 3.0                                       # and set by set


def test_vectorised_probe_agrees_binary_k16():
    # binary, K=16, 100 sets (fewer sets to keep the suite fast; the 300-set case is above)
    (xtr, ytr), (xte, yte) = blobs(2, seed=6, scale=0.04)
    sup = sample_support_sets(ytr, 16, n_sets=100, seed=0)
    a = 100 * balanced_accuracy_batched(yte, probe_predictions(xtr, ytr, xte, sup, 2), 2)
    b = 100 * balanced_accuracy_batched(yte, sklearn_probe_predictions(xtr, ytr, xte, sup), 2)
    assert 55 < b.mean() < 95 and abs(a.mean() - b.mean()) < 1.0


def test_few_shot_table_records_parameters():
    (xtr, ytr), (xte, yte) = blobs(3, seed=7)
    df = few_shot(xtr, ytr, xte, yte, ks=(1, 4), n_sets=20, seed=3, n_boot=50,
                  test_groups=np.arange(len(yte)) // 2)
    assert df["K"].tolist() == [1, 4]
    for col in ("balanced_accuracy_mean", "balanced_accuracy_sd", "ci_lo", "ci_hi", "n_support_sets", "seed",
                "C", "method", "n_boot"):
        assert col in df
    assert (df["ci_lo"] <= df["balanced_accuracy_mean"]).all() and (df["n_support_sets"] == 20).all()
    assert df.loc[1, "balanced_accuracy_mean"] > df.loc[0, "balanced_accuracy_mean"]   # more shots help
    mask, idx = single_label(np.array([[1, 0], [1, 1], [0, 1], [0, 0]]))
    assert mask.tolist() == [True, False, True, False] and idx.tolist() == [0, 1]
