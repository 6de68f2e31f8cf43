"""Few-shot probe: balanced seeded support sets; the vectorised probe agrees with scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from medbind_lib.metrics import (balanced_accuracy_batched, few_shot, fit_probe_batched, predict_batched,
                                  probe_predictions, sample_support_sets, single_label, sklearn_probe_predictions)


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


@pytest.mark.parametrize("solver", ["ncg", "lbfgs"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_probe_matches_sklearn_coefficients(n_classes, solver):
    # same objective as LogisticRegression(C, lbfgs): the binary model for 2 classes, multinomial otherwise
    (x, y), _ = blobs(n_classes, n_train=200, seed=3)
    x = x.astype(np.float64)        # scikit-learn fits float32 input in float32 (~1e-4 coefficient error)
    sup = sample_support_sets(y, 6, n_sets=3, seed=0)
    w, b = fit_probe_batched(torch.from_numpy(x)[sup], torch.from_numpy(y)[sup], n_classes, C=2.0,
                             dtype=torch.float64, solver=solver, tol=1e-10 if solver == "ncg" else None)
    for i in range(3):
        m = LogisticRegression(C=2.0, solver="lbfgs", tol=1e-10, max_iter=10000).fit(x[sup[i]], y[sup[i]])
        np.testing.assert_allclose(w[i].T.numpy(), m.coef_, atol=1e-5)
        np.testing.assert_allclose(b[i].numpy(), m.intercept_, atol=1e-5)


def _sklearn_gradient(x, y, w, b, n_classes, C):
    """Gradient of scikit-learn's lbfgs objective (mean loss + ||W||^2 / (2 C n)) at (W [d, C'], b [C'])."""
    n = len(y)
    z = x @ w + b
    if n_classes == 2:
        r = 1 / (1 + np.exp(-z[:, 0])) - y
        r = r[:, None]
    else:
        p = np.exp(z - z.max(1, keepdims=True))
        r = p / p.sum(1, keepdims=True) - np.eye(n_classes)[y]
    return (x.T @ r + w / C) / n, r.sum(0) / n


def _hard_problem(rng, n, d, n_classes, offset=3.0):
    """Rows far from the origin (large shared component: high cosine similarity, as real embeddings)."""
    x = rng.normal(size=(n, d)) / np.sqrt(d) + offset * rng.normal(size=d) / np.sqrt(d)
    y = np.arange(n) % n_classes
    return x, y


@pytest.mark.parametrize("n_classes,k,C", [(2, 1, 1.0), (2, 5, 0.3), (2, 8, 10.0), (3, 1, 1.0), (3, 4, 5.0),
                                           (5, 3, 1.0)])
def test_ncg_matches_sklearn_small_problems(n_classes, k, C):
    # random problems with a large common offset, K=1 included, duplicated rows in every set with K > 1
    rng = np.random.default_rng(n_classes * 100 + k)
    n, d, s = n_classes * k, 12, 4
    xs, ys = [], []
    for _ in range(s):
        x, y = _hard_problem(rng, n, d, n_classes)
        if k > 1:
            x[n_classes] = x[0]                             # exact duplicate, same class (y = i % C)
            x[n_classes + 1] = x[0]                         # exact duplicate with another class
        xs.append(x)
        ys.append(y)
    xs, ys = np.stack(xs), np.stack(ys)
    w, b = fit_probe_batched(torch.from_numpy(xs), torch.from_numpy(ys), n_classes, C=C, tol=1e-10,
                             dtype=torch.float64)
    for i in range(s):
        m = LogisticRegression(C=C, solver="lbfgs", tol=1e-10, max_iter=10000).fit(xs[i], ys[i])
        np.testing.assert_allclose(w[i].T.numpy(), m.coef_, atol=1e-5 * max(1.0, C))
        np.testing.assert_allclose(b[i].numpy(), m.intercept_, atol=1e-5 * max(1.0, C))
    # default tolerance: scikit-learn's stopping rule holds at the returned point (max-abs gradient <= tol)
    for dtype, slack in ((torch.float64, 1.0), (torch.float32, 1.05)):
        w, b = fit_probe_batched(torch.from_numpy(xs), torch.from_numpy(ys), n_classes, C=C, dtype=dtype)
        for i in range(s):
            gw, gb = _sklearn_gradient(xs[i], ys[i], w[i].double().numpy(), b[i].double().numpy(), n_classes, C)
            assert max(np.abs(gw).max(), np.abs(gb).max()) <= 1e-4 * slack


def test_ncg_float32_falls_back_to_float64_on_large_norm_features():
    # rows of norm ~300 far from the origin: float32 Gram matrices / dual gradients cancel, so the float32 pass
    # cannot certify tol; those sets are redone in float64 and every returned set meets scikit-learn's rule
    from medbind_lib.metrics import fewshot
    rng = np.random.default_rng(0)
    xs, ys = zip(*[_hard_problem(rng, 8, 64, 2) for _ in range(12)])
    xs, ys = np.stack(xs) * 100, np.stack(ys)
    w, b = fit_probe_batched(torch.from_numpy(xs).float(), torch.from_numpy(ys), 2)
    assert fewshot._LAST_STATE["float64_sets"] > 0 and fewshot._LAST_STATE["unconverged"] == 0
    assert torch.isfinite(w).all() and torch.isfinite(b).all()
    w64, _ = fit_probe_batched(torch.from_numpy(xs), torch.from_numpy(ys), 2, tol=1e-7, dtype=torch.float64,
                               max_iter=5000)
    for i in range(len(xs)):
        gw, gb = _sklearn_gradient(xs[i], ys[i], w[i].double().numpy(), b[i].double().numpy(), 2, 1.0)
        assert max(np.abs(gw).max(), np.abs(gb).max()) <= 1.05e-4
        np.testing.assert_allclose(w[i].double().numpy(), w64[i].numpy(), rtol=0, atol=2e-3 * w64[i].abs().max())


def test_predict_batched_is_the_argmax():
    rng = np.random.default_rng(0)
    xt = torch.from_numpy(rng.normal(size=(500, 16)).astype(np.float32))
    for cp in (1, 3, 5):
        w = torch.from_numpy(rng.normal(size=(70, 16, cp)).astype(np.float32))
        b = torch.from_numpy(rng.normal(size=(70, cp)).astype(np.float32))
        z = torch.einsum("nd,sdc->snc", xt, w) + b[:, None]
        want = (z[..., 0] > 0).long() if cp == 1 else z.argmax(-1)
        for chunk in (1, 16, 64, 128):
            got = predict_batched(w, b, xt, chunk=chunk)
            assert got.dtype == torch.int64 and got.shape == (70, 500)
            assert (got == want).float().mean() > 0.999          # float rounding of the class contrasts only


def test_ncg_reports_non_convergence_and_rejects_unknown_solver():
    (x, y), _ = blobs(3, n_train=300, seed=4)
    sup = sample_support_sets(y, 8, n_sets=5, seed=0)
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        fit_probe_batched(torch.from_numpy(x)[sup], torch.from_numpy(y)[sup], 3, C=100.0, max_iter=1)
    with pytest.raises(ValueError, match="solver"):
        fit_probe_batched(torch.from_numpy(x)[sup], torch.from_numpy(y)[sup], 3, solver="newton")


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
