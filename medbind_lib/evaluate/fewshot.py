"""Few-shot linear probing on frozen embeddings, vectorised over support sets.

Protocol (Fig. 3): for each K in {1, 2, 4, 8, 16}, ``n_sets`` (300) seeded support sets, each BALANCED
(K rows of every class, drawn without replacement from the training split); an L2-regularised multinomial
logistic regression is fit on each set and scored by balanced accuracy on the whole test split; report
mean +- sd over the sets (plus the 2.5/97.5 percentiles over sets and, optionally, a patient-level
bootstrap CI of the mean over test patients).

The probe (``fit_probe_batched``) solves the S problems at once: support tensors [S, K*C, d], one
full-batch L-BFGS (strong Wolfe) on the sum of the S independent objectives - the problems share no
parameters, so the joint optimum is every problem's optimum. The objective is scikit-learn's
``LogisticRegression(C=C, solver='lbfgs')`` up to the factor C: sum of cross-entropies + ||W||^2 / (2C),
intercept unpenalised; with 2 classes it is the binary (sigmoid) model, as scikit-learn fits, not the
symmetric 2-class softmax (whose penalty would be half as strong). ``sklearn_probe`` is the reference loop.

Multi-label datasets: use the single-label rows (``single_label``) of both splits, as in zero-shot.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ._common import as_numpy, as_tensor, balanced_accuracy, balanced_accuracy_batched, resolve_device
from .bootstrap import bootstrap_balanced_accuracy

KS = (1, 2, 4, 8, 16)


def single_label(y_multi) -> tuple[np.ndarray, np.ndarray]:
    """Rows with exactly one positive of a multi-hot [N, C] matrix -> ``(row mask, class index of those rows)``."""
    ym = as_numpy(y_multi).astype(bool)
    mask = ym.sum(1) == 1
    return mask, ym[mask].argmax(1)


def sample_support_sets(y_train, k: int, n_sets: int = 300, seed: int = 0,
                        n_classes: int | None = None) -> np.ndarray:
    """[n_sets, k * C] row indices into the training split: set s holds k distinct rows of class 0, then k of
    class 1, ... (class-major). Seeded by ``(seed, k)`` so every K has its own reproducible sets."""
    y = as_numpy(y_train).astype(np.int64)
    c = int(n_classes if n_classes is not None else y.max() + 1)
    rng = np.random.default_rng([seed, k])
    cols = []
    for cls in range(c):
        idx = np.flatnonzero(y == cls)
        if len(idx) < k:
            raise ValueError(f"class {cls} has {len(idx)} training rows, fewer than K={k}")
        r = rng.random((n_sets, len(idx)))
        pick = np.argpartition(r, k - 1, axis=1)[:, :k] if k < len(idx) else np.argsort(r, axis=1)
        cols.append(idx[np.sort(pick, axis=1)])     # sorted within class: the set, not the draw order
    return np.concatenate(cols, axis=1)


def fit_probe_batched(x_support, y_support, n_classes: int, C: float = 1.0, max_iter: int = 500,
                      tol: float = 1e-6, device=None, dtype=torch.float32):
    """Fit S logistic regressions at once. ``x_support`` [S, n, d], ``y_support`` [S, n] or [n] (int).
    Returns ``(W [S, d, C'], b [S, C'])`` with C' = 1 for 2 classes (binary model) else C.

    Speed: by the representer theorem the optimal W lies in the span of the set's n rows, W = X^T alpha.
    With the Cholesky factor G + eps I = L L^T of the n x n Gram matrix (eps = 1e-6 x mean diagonal, so
    duplicated rows are harmless) and V = L^T alpha, the problem is an ordinary logistic regression on the
    n features L with penalty ||V||^2 / (2C): each L-BFGS step costs [S, n, n] products instead of
    [S, n, d], with analytic gradients (no autograd graph), in float64 (``dtype`` is only the dtype of W and of prediction). ``tol`` bounds the max-abs gradient of the
    sum-of-losses objective (scikit-learn's default, 1e-4 on the mean-loss objective, is looser)."""
    dev = resolve_device(device)
    x = as_tensor(x_support, dev, dtype)
    s, n, d = x.shape
    y = torch.as_tensor(as_numpy(y_support), dtype=torch.long, device=dev)
    y = (y.expand(s, n) if y.ndim == 1 else y).contiguous()
    cp = 1 if n_classes == 2 else n_classes
    with torch.no_grad():
        x64 = x.double()                  # Gram and back-projection in float64: alpha amplifies Gram errors
        g = torch.bmm(x64, x64.transpose(1, 2))
        eps = 1e-6 * g.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        g = g + eps[:, None, None] * torch.eye(n, dtype=g.dtype, device=dev)
        chol, info = torch.linalg.cholesky_ex(g)
        if bool((info > 0).any()):                      # numerically indefinite: a larger ridge for those sets
            bad = info > 0
            g[bad] += 1e-4 * g[bad].diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * torch.eye(n, dtype=g.dtype,
                                                                                                   device=dev)
            chol = torch.linalg.cholesky(g)
        feats_t = chol.transpose(1, 2).contiguous()                      # L^T: features as [S, n(feat), n]
        target = (torch.nn.functional.one_hot(y, n_classes).double().transpose(1, 2) if cp > 1
                  else y.double()[:, None, :])                           # [S, C', n]
    # the small n-dimensional problem is solved in float64: summed over S sets, float32 losses stall L-BFGS
    v = torch.zeros(s, cp, n, device=dev, dtype=torch.float64, requires_grad=True)   # V^T
    b = torch.zeros(s, cp, 1, device=dev, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=10, line_search_fn="strong_wolfe")
    inv_c = 1.0 / C

    @torch.no_grad()
    def closure():
        z = torch.baddbmm(b, v, feats_t)                                  # [S, C', n] logits
        if cp == 1:
            loss = (F.softplus(z) - target * z).sum()
            r = torch.sigmoid(z) - target
        else:
            lse = torch.logsumexp(z, 1, keepdim=True)
            loss = (lse - z).mul_(target).sum()
            r = torch.exp(z - lse) - target
        loss = loss + 0.5 * inv_c * (v * v).sum()
        v.grad = torch.baddbmm(v, r, feats_t.transpose(1, 2), beta=inv_c)   # R L + V / C
        b.grad = r.sum(2, keepdim=True)
        return loss

    opt.step(closure)
    _LAST_STATE.update(n_iter=opt.state[opt._params[0]].get("n_iter"),
                       func_evals=opt.state[opt._params[0]].get("func_evals"))
    with torch.no_grad():
        alpha = torch.linalg.solve_triangular(feats_t, v.detach().transpose(1, 2), upper=True)
        w = torch.bmm(x64.transpose(1, 2), alpha).to(dtype)             # W = X^T alpha   [S, d, C']
    return w, b.detach()[:, :, 0].to(dtype)


_LAST_STATE: dict = {}   # iterations of the last fit (diagnostics for the benchmark)


@torch.no_grad()
def predict_batched(w, b, x_test, chunk: int = 128) -> torch.Tensor:
    """[S, N] class predictions of S probes on a shared test matrix [N, d]: one GEMM per chunk of sets."""
    xt = as_tensor(x_test, w.device, w.dtype)
    s_all, d, cp = w.shape
    out = []
    for s in range(0, s_all, chunk):
        ws = w[s:s + chunk]
        z = (xt @ ws.transpose(0, 1).reshape(d, -1)).reshape(len(xt), len(ws), cp) + b[s:s + chunk]
        out.append((z[..., 0] > 0).long().T if cp == 1 else z.argmax(-1).T)
    return torch.cat(out).cpu()


def probe_predictions(train_x, train_y, test_x, support: np.ndarray, n_classes: int, C: float = 1.0,
                      device=None, dtype=torch.float32, max_iter: int = 500, tol: float = 1e-6) -> np.ndarray:
    """[S, N_test] predictions of the vectorised probe for the given support index sets [S, n]."""
    dev = resolve_device(device)
    xtr = as_tensor(train_x, dev, dtype)
    ytr = torch.as_tensor(as_numpy(train_y), dtype=torch.long)
    sup = torch.as_tensor(support, dtype=torch.long)
    w, b = fit_probe_batched(xtr[sup.to(dev)], ytr[sup], n_classes, C, max_iter, tol, dev, dtype)
    return predict_batched(w, b, test_x).numpy()


def sklearn_probe_predictions(train_x, train_y, test_x, support: np.ndarray, C: float = 1.0,
                              max_iter: int = 1000, tol: float = 1e-4) -> np.ndarray:
    """Reference: one ``sklearn.linear_model.LogisticRegression(C, lbfgs, L2)`` per support set."""
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    xtr, ytr, xte = as_numpy(train_x), as_numpy(train_y), as_numpy(test_x)
    preds = []
    with threadpool_limits(1):      # tiny problems: BLAS threads only add synchronisation cost
        for idx in support:
            m = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol).fit(xtr[idx], ytr[idx])
            preds.append(m.predict(xte))
    return np.stack(preds)


def few_shot(train_x, train_y, test_x, test_y, *, ks: Sequence[int] = KS, n_sets: int = 300, seed: int = 0,
             C: float = 1.0, n_classes: int | None = None, method: str = "torch", test_groups=None,
             n_boot: int = 1000, alpha: float = 0.05, device=None, dtype=torch.float32) -> pd.DataFrame:
    """Few-shot balanced accuracy (percent) per K: one row with mean, sd and the percentiles over the
    support sets, the patient-level bootstrap CI of the mean (``n_boot`` > 0; resampling test patients
    ``test_groups`` once for all sets), and every parameter that produced it."""
    if method not in ("torch", "sklearn"):
        raise ValueError(f"method must be torch or sklearn, got {method!r}")
    ytr = as_numpy(train_y).astype(np.int64)
    yte = as_numpy(test_y).astype(np.int64)
    c = int(n_classes if n_classes is not None else max(ytr.max(), yte.max()) + 1)
    rows = []
    for k in ks:
        support = sample_support_sets(ytr, k, n_sets, seed, c)
        t0 = time.perf_counter()
        if method == "torch":
            pred = probe_predictions(train_x, ytr, test_x, support, c, C, device, dtype)
        else:
            pred = sklearn_probe_predictions(train_x, ytr, test_x, support, C)
        secs = time.perf_counter() - t0
        ba = 100 * balanced_accuracy_batched(yte, pred, c)
        row = {"K": k, "balanced_accuracy_mean": float(ba.mean()), "balanced_accuracy_sd": float(ba.std(ddof=1))
               if len(ba) > 1 else 0.0, "sets_p2.5": float(np.percentile(ba, 2.5)),
               "sets_p97.5": float(np.percentile(ba, 97.5))}
        if n_boot:
            ci = bootstrap_balanced_accuracy(yte, pred, test_groups, c, n_boot=n_boot, seed=seed, alpha=alpha)
            row["ci_lo"], row["ci_hi"] = 100 * ci["lo"], 100 * ci["hi"]
        row.update(n_support_sets=n_sets, seed=seed, C=C, n_classes=c, n_test=len(yte), method=method,
                   n_boot=n_boot, groups="patients" if test_groups is not None else "rows", seconds=secs)
        rows.append(row)
    return pd.DataFrame(rows)



