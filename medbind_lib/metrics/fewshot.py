"""Few-shot linear probing on frozen embeddings, vectorised over support sets.

Protocol (Fig. 3): for each K in {1, 2, 4, 8, 16}, ``n_sets`` (300) seeded support sets, each BALANCED
(K rows of every class, drawn without replacement from the training split); an L2-regularised multinomial
logistic regression is fit on each set and scored by balanced accuracy on the whole test split; report
mean +- sd over the sets (plus the 2.5/97.5 percentiles over sets and, optionally, a patient-level
bootstrap CI of the mean over test patients).

The probe (``fit_probe_batched``) solves the S problems at once on support tensors [S, K*C, d]. The objective
is scikit-learn's ``LogisticRegression(C=C, solver='lbfgs')``: cross-entropy + ||W||^2 / (2C), intercept
unpenalised; with 2 classes it is the binary (sigmoid) model, as scikit-learn fits, not the symmetric 2-class
softmax (whose penalty would be half as strong). Default solver ``"ncg"``: per-set nonlinear conjugate
gradient in the n x n dual space with Newton step lengths; every returned set satisfies scikit-learn's own
stopping rule (max-abs gradient <= ``tol``), checked in the primal. ``"lbfgs"``: the earlier joint L-BFGS.
``sklearn_probe_predictions`` is the reference loop.

Multi-label datasets: use the single-label rows (``single_label``) of both splits, as in zero-shot.
"""
from __future__ import annotations

import time
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .common import as_numpy, as_tensor, balanced_accuracy_batched, resolve_device
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


SOLVERS = ("ncg", "lbfgs")
_DEFAULT_TOL = {"ncg": 1e-4, "lbfgs": 1e-6}


def fit_probe_batched(x_support, y_support, n_classes: int, C: float = 1.0, max_iter: int = 500,
                      tol: float | None = None, device=None, dtype=torch.float32, solver: str = "ncg"):
    """Fit S logistic regressions at once. ``x_support`` [S, n, d], ``y_support`` [S, n] or [n] (int).
    Returns ``(W [S, d, C'], b [S, C'])`` with C' = 1 for 2 classes (binary model) else C.

    Both solvers use the representer theorem: the optimal W lies in the span of the set's n rows, so the
    work is on the [S, n, n] Gram matrices instead of [S, n, d] (d > n in every few-shot setting).

    ``solver="ncg"`` (default): per-set nonlinear conjugate gradient (Polak-Ribiere+) in the dual
    coordinates W = X_c^T A of the CENTRED rows X_c (exact: the intercept is unpenalised, so centring only
    re-parametrises it, and it decouples the intercept from W), with the primal metric <u, v> = u^T G_c v,
    the intercept scaled by its Hessian at 0, and as step along each direction the Newton step (exact
    directional curvature, no extra matrix product) guarded by an Armijo backtrack. Every set has its own
    step and stops on its own; one [S, n, n] x [S, n, C'] product per iteration, no factorisation (so
    duplicated rows and K = 1 need no special case). Gram matrix, iterates and losses are in ``dtype``.
    Stopping (``tol``, default 1e-4 = scikit-learn's default), on scikit-learn's objective (mean loss +
    ||W||^2 / (2 C n): the lbfgs objective of scikit-learn >= 1.1, ``sklearn/linear_model/_logistic.py``):
    a set stops iterating when a bound on its gradient (per class ||X_c^T g_c|| + ||m|| |g_b,c|, the 2-norm,
    which bounds the max-abs) is <= tol; then every set is CERTIFIED in the primal: scikit-learn's own
    stopping quantity, the max-abs gradient of that objective at the returned (W, b) in scikit-learn's
    coordinates (what its L-BFGS-B compares with ``tol``), must be <= tol. With float32, sets that fail
    the certificate or need more than ``_FLOAT32_ITERS`` (100) iterations are redone in float64, Gram
    included (needed for large-norm / far-from-origin features, where float32 Grams and dual gradients
    cancel). A ``RuntimeWarning`` counts the sets that still fail after ``max_iter`` iterations.

    ``solver="lbfgs"`` (legacy): one joint torch L-BFGS on the sum of the S objectives after Cholesky
    whitening of the Gram matrices (see ``_fit_joint_lbfgs``); ``tol`` (default 1e-6) bounds the max-abs
    gradient of that summed, whitened objective."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    tol = _DEFAULT_TOL[solver] if tol is None else float(tol)
    dev = resolve_device(device)
    x = as_tensor(x_support, dev, dtype)
    s, n, d = x.shape
    y = torch.as_tensor(as_numpy(y_support), dtype=torch.long, device=dev)
    y = (y.expand(s, n) if y.ndim == 1 else y).contiguous()
    if solver == "lbfgs":
        return _fit_joint_lbfgs(x, y, n_classes, C, max_iter, tol, dtype)
    return _fit_ncg(lambda sel: x[sel], s, n, d, y, n_classes, C, max_iter, tol, x.dtype)


_CHUNK_ELEMS = 1 << 19       # support rows gathered per chunk: 2 MiB of float32, stays in a core's L2 cache
_FLOAT32_ITERS = 100         # float32 iterations before unconverged sets are finished in float64


@torch.no_grad()
def _fit_ncg(rows, s: int, n: int, d: int, y: torch.Tensor, n_classes: int, C: float, max_iter: int, tol: float,
             dtype):
    """The "ncg" solver on support rows given by ``rows(sel)`` -> [sets, n, d] for a slice or index tensor of
    sets: indexing of a gathered tensor, or a gather into a reused buffer (``probe_predictions``: the
    [S, n, d] support tensor is never materialised). Gram matrices and back-projection chunk by chunk.
    Then every set's result is CERTIFIED in the primal: scikit-learn's gradient at the returned (W, b) (one
    extra product per chunk, sharing the back-projection's pass over the rows; evaluated in the working
    dtype, before the final cast); in float32, sets that fail (or need more than ``_FLOAT32_ITERS``
    iterations) are redone in float64, Gram included. Returns (W [S, d, C'], b [S, C'])."""
    step = max(1, _CHUNK_ELEMS // max(1, n * d))
    g = torch.empty(s, n, n, dtype=dtype, device=y.device)
    for i in range(0, s, step):
        xb = rows(slice(i, i + step))
        torch.bmm(xb, xb.transpose(1, 2), out=g[i:i + step])          # [S, n, n] Gram, in dtype
    r = g.mean(2, keepdim=True)                                        # X m (m = the set's mean row)
    first = max_iter if dtype == torch.float64 else min(max_iter, _FLOAT32_ITERS)
    at, bc, _, it, nfev = _ncg_dual(g, r, y, n_classes, C, first, tol)
    wt, b, ok = _back_project(rows, g, r, at, bc, y, n_classes, C, tol, step, d)
    idx = (~ok).nonzero()[:, 0]
    n64 = len(idx) if dtype != torch.float64 else 0
    if n64:     # float32 could not certify tol (e.g. large-norm features): redo those sets in float64 from
        def rows64(sel):                                               # zero, Gram included
            return rows(idx[sel]).double()

        g64 = torch.empty(n64, n, n, dtype=torch.float64, device=y.device)
        for i in range(0, n64, step):
            xb = rows64(slice(i, i + step))
            torch.bmm(xb, xb.transpose(1, 2), out=g64[i:i + step])
        r64 = g64.mean(2, keepdim=True)
        at64, b64, _, it64, nfev64 = _ncg_dual(g64, r64, y[idx], n_classes, C, max_iter, tol)
        wt64, b64, ok64 = _back_project(rows64, g64, r64, at64, b64, y[idx], n_classes, C, tol, step, d)
        wt[idx], b[idx], ok[idx] = wt64.to(dtype), b64.to(dtype), ok64
        it, nfev = it + it64, nfev + nfev64
    _LAST_STATE.clear()
    _LAST_STATE.update(solver="ncg", n_iter=it, func_evals=nfev, float64_sets=n64, unconverged=int((~ok).sum()))
    if not bool(ok.all()):
        warnings.warn(f"few-shot probe: {int((~ok).sum())} of {s} support sets did not reach tol={tol} in "
                      f"max_iter={max_iter} iterations", RuntimeWarning, stacklevel=4)   # past no_grad
    return wt.transpose(1, 2), b


def _gc_mul(g: torch.Tensor, r: torch.Tensor, v: torch.Tensor, v1: torch.Tensor | None = None) -> torch.Tensor:
    """v G_c for v [S, C', n], with the centred Gram G_c = G - r 1^T - 1 r^T + mu applied implicitly
    (``g`` = G of the uncentred rows, ``r`` [S, n, 1] its row means, mu = mean(r)); ``v1`` = v 1 if known."""
    v1 = v.sum(2, keepdim=True) if v1 is None else v1
    mu = r.mean(1, keepdim=True)
    vr = torch.linalg.vecdot(v, r.transpose(1, 2)).unsqueeze_(-1)                # v r  [S, C', 1]
    return torch.baddbmm(vr.sub_(v1 * mu).neg_(), v, g).addcmul_(v1, r.transpose(1, 2), value=-1)


def _probs_residual(z: torch.Tensor, y: torch.Tensor, cp: int) -> torch.Tensor:
    """Predicted probabilities minus one-hot targets, class-major [S, C', n] (binary: sigmoid - y)."""
    if cp == 1:
        return torch.sigmoid(z).sub_(y[:, None, :].to(z.dtype))
    return torch.softmax(z, 1).scatter_add_(1, y[:, None, :], torch.full_like(z[:, :1], -1.0))


def _back_project(rows, g, r, at, b, y, n_classes: int, C: float, tol: float, step: int, d: int):
    """W^T = A_c^T X (A_c = A centred over the set, so X^T A_c = X_c^T A), the intercept for uncentred rows
    (b_c - W^T m), and the certificate: scikit-learn's gradient at (W, b) in its own coordinates - W-part
    X^T (res + A_c / C), intercept part sum(res), res from the logits G_c A_c + b_c recomputed from A (not
    the solver's running copy) - must have max-abs <= tol * n (scikit-learn's ``tol`` on its mean objective;
    its L-BFGS-B stops on the same max-abs projected gradient). The W-part shares the back-projection's
    pass over the rows. Returns (W^T [S, C', d], b [S, C'], ok [S])."""
    s, cp, n = at.shape
    at = at - at.mean(2, keepdim=True)
    res = _probs_residual(_gc_mul(g, r, at) + b[..., None], y, cp)
    gb = res.sum(2)
    both = torch.cat([at, res.add_(at, alpha=1.0 / C)], 1)            # [S, 2C', n]: A_c; W-gradient = X^T .
    out = torch.empty(s, 2 * cp, d, dtype=at.dtype, device=at.device)
    for i in range(0, s, step):
        torch.bmm(both[i:i + step], rows(slice(i, i + step)), out=out[i:i + step])
    wt = out[:, :cp]
    gmax = out[:, cp:].abs().amax((1, 2))
    ok = torch.maximum(gmax, gb.abs().amax(1)) <= tol * n
    return wt, b - torch.bmm(at, r)[..., 0], ok


def _ncg_dual(g: torch.Tensor, r: torch.Tensor, y: torch.Tensor, n_classes: int, C: float, max_iter: int,
              tol: float):
    """The S problems min_{A, b} sum_i CE(z_i, y_i) + <A, G_c A> / (2C), Z = G_c A + 1 b^T, by batched
    nonlinear CG (see ``fit_probe_batched``). ``g`` [S, n, n] Gram of the UNCENTRED rows, ``r`` [S, n, 1]
    its row means (X m): the centred Gram G_c = G - r 1^T - 1 r^T + ||m||^2 is applied implicitly (cheaper
    than forming it). Computes in the Gram's dtype, class-major ([S, C', n]: contiguous along the set's
    rows; the CPU cost is memory traffic of these small tensors). Starts from A = 0, b = 0. Returns
    (A^T [S, C', n], centred-model intercept b [S, C'], mask of the sets that did not converge, iterations,
    loss evaluations)."""
    s, n, _ = g.shape
    cp = 1 if n_classes == 2 else n_classes
    dt = g.dtype
    ic = 1.0 / C
    lam = n * (0.25 if cp == 1 else 1.0 / cp)          # intercept metric: the intercept's Hessian at 0
    mu = r.mean(1, keepdim=True)                       # ||m||^2  [S, 1, 1]
    r_t = r.transpose(1, 2)                            # [S, 1, n]
    smu = mu[:, 0].clamp_min(0).sqrt()                 # ||m||  [S, 1]
    slack_eps = 16 * torch.finfo(dt).eps               # objective changes below rounding are not tested
    if cp == 1:
        tgt = y.to(dt)[:, None, :]                     # [S, 1, n]
    else:
        tgt = F.one_hot(y, n_classes).to(dt).transpose(1, 2).contiguous()   # [S, C, n]
    yi = y[:, None, :]

    def dot(u, v):                                     # per-set inner product of [S, C', n] tensors
        return torch.linalg.vecdot(u.reshape(s, -1), v.reshape(s, -1))

    def loss_prob(za, b):                              # summed cross-entropy and probabilities at Z
        z = za + b
        if cp == 1:
            return F.softplus(z).sum((1, 2)) - dot(z, tgt), torch.sigmoid(z)
        m = z.amax(1, keepdim=True)
        e = torch.sub(z, m).exp_()
        se = e.sum(1, keepdim=True)
        lse = torch.log(se).add_(m)                    # [S, 1, n]
        return (lse - z.gather(1, yi)).sum((1, 2)), e.div_(se)

    dev = g.device
    a = torch.zeros(s, cp, n, dtype=dt, device=dev)    # A^T
    za = torch.zeros(s, cp, n, dtype=dt, device=dev)   # (G_c A)^T, kept incrementally: one product per step
    b = torch.zeros(s, cp, 1, dtype=dt, device=dev)
    loss, prob = loss_prob(za, b)
    pen = torch.zeros(s, dtype=dt, device=dev)         # <A, G_c A> / (2C)
    active = torch.ones(s, dtype=torch.bool, device=dev)
    d_a = d_img = d_b = g_img_old = gb_old = gg_old = None
    it = nfev = 0
    while True:
        res = prob - tgt
        gb = res.sum(2, keepdim=True)                   # intercept gradient [S, C', 1]
        # (G_c g_a)^T = res G_c + za / C, with res G_c = res G - (res 1) r^T - (res r - mu res 1) 1^T
        g_img = torch.baddbmm(za, res, g, beta=ic)
        g_img.addcmul_(gb, r_t, value=-1).sub_(torch.linalg.vecdot(res, r_t).unsqueeze_(-1).sub_(gb * mu))
        # W-gradient = X_c^T g_a; representative centred over the set (X_c^T 1 = 0), so A stays centred and
        # no component along the Gram's null direction 1 builds up (it is invisible to the metric)
        g_a = res.add_(a, alpha=ic).sub_(gb, alpha=1.0 / n)
        ga_gi = (g_a * g_img).sum(2)                    # ||X_c^T g_c||^2 per class
        gbn = gb[..., 0].abs()
        crit = torch.maximum(ga_gi.abs().sqrt() + smu * gbn, gbn).amax(1)   # sum-objective scale
        active &= crit > tol * n
        if not bool(active.any()) or it >= max_iter:
            break
        it += 1
        gbv = gb / lam                                  # the intercept part of the (metric) gradient
        gg = ga_gi.sum(1) + (gb * gbv).sum((1, 2))
        if d_a is None:
            d_a, d_img, d_b = -g_a, -g_img, -gbv
        else:                                           # PR+: beta = <g, g - g_old> / <g_old, g_old>
            beta = (gg - dot(g_a, g_img_old) - (gb * gb_old).sum((1, 2))) / gg_old.clamp_min(1e-30)
            beta = torch.where(active, beta.clamp_min(0), torch.zeros_like(beta))
            bb = beta[:, None, None]
            d_a.mul_(bb).sub_(g_a)
            d_img.mul_(bb).sub_(g_img)
            d_b = d_b * bb - gbv
        slope = dot(g_a, d_img) + (gb * d_b).sum((1, 2))
        restart = active & (slope >= 0)                 # not a descent direction: steepest descent
        if bool(restart.any()):
            m = restart[:, None, None]
            d_a, d_img, d_b = torch.where(m, -g_a, d_a), torch.where(m, -g_img, d_img), torch.where(m, -gbv, d_b)
            slope = torch.where(restart, -gg, slope)
        dz = d_img + d_b                                # change of the logits per unit step
        pdz = prob * dz                                 # curvature of the loss along d: sum p dz^2 - (p.dz)^2
        dmd = dot(d_a, d_img)                           # <d, d> in the primal metric
        amd = dot(a, d_img)
        curv = dot(pdz, dz) - pdz.sum(1).square_().sum(1) + ic * dmd
        ok_dir = active & (slope < 0) & (curv > 0)      # else (lost precision) no step; the certificate decides
        t = torch.where(ok_dir, -slope / curv.clamp_min(1e-30), torch.zeros_like(slope))   # Newton step
        for _ in range(60):                             # Armijo backtracking (rarely more than one pass)
            tt = t[:, None, None]
            za_t, b_t = torch.addcmul(za, tt, d_img), torch.addcmul(b, tt, d_b)
            loss_t, prob_t = loss_prob(za_t, b_t)
            nfev += 1
            dpen = t * ic * amd + 0.5 * ic * t * t * dmd
            slack = slack_eps * (loss.abs() + pen + 1)
            fail = ok_dir & ((loss_t - loss) + dpen > 1e-4 * t * slope + slack)
            if not bool(fail.any()):
                break
            t = torch.where(fail, 0.5 * t, t)
        a.addcmul_(t[:, None, None], d_a)
        za, b, loss, prob, pen = za_t, b_t, loss_t, prob_t, pen + dpen
        g_img_old, gb_old, gg_old = g_img, gbv, gg
    return a, b[..., 0], active, it, nfev + 1


def _fit_joint_lbfgs(x, y, n_classes: int, C: float, max_iter: int, tol: float, dtype):
    """Legacy solver: one full-batch torch L-BFGS (strong Wolfe) on the sum of the S independent
    objectives - the problems share no parameters, so the joint optimum is every problem's optimum. With
    the Cholesky factor G + eps I = L L^T of the n x n Gram matrix (eps = 1e-6 x mean diagonal, so
    duplicated rows are harmless) and V = L^T alpha, the problem is an ordinary logistic regression on the
    n features L with penalty ||V||^2 / (2C): analytic gradients, float64. ``tol`` bounds the max-abs
    gradient of the summed objective in V."""
    dev = x.device
    s, n, d = x.shape
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
    _LAST_STATE.clear()
    _LAST_STATE.update(solver="lbfgs", n_iter=opt.state[opt._params[0]].get("n_iter"),
                       func_evals=opt.state[opt._params[0]].get("func_evals"))
    with torch.no_grad():
        alpha = torch.linalg.solve_triangular(feats_t, v.detach().transpose(1, 2), upper=True)
        w = torch.bmm(x64.transpose(1, 2), alpha).to(dtype)             # W = X^T alpha   [S, d, C']
    return w, b.detach()[:, :, 0].to(dtype)


_LAST_STATE: dict = {}   # iterations of the last fit (diagnostics for the benchmark)


@torch.no_grad()
def predict_batched(w, b, x_test, chunk: int = 64) -> torch.Tensor:
    """[S, N] class predictions (int64, CPU) of S probes (W [S, d, C'], b [S, C']) on a shared test matrix
    [N, d]. Binary: one GEMM, sign of the logit. Multinomial: the argmax of (0, z_1 - z_0, ..., z_{C-1} - z_0)
    (the same argmax with one column fewer), one GEMM per ``chunk`` of sets written directly in [set, test]
    layout, and a running max over the classes (torch's argmax over a short last axis is slow on CPU)."""
    xt = as_tensor(x_test, w.device, w.dtype)
    s_all, d, cp = w.shape
    n = len(xt)
    wt = w.transpose(1, 2)                                          # [S, C', d]
    if cp == 1:
        return (torch.addmm(b[:, :1], wt[:, 0], xt.T) > 0).long().cpu()
    k = cp - 1
    out = torch.empty(s_all, n, dtype=torch.uint8 if cp <= 255 else torch.int64, device=w.device)
    wc = wt[:, 1:] - wt[:, :1]                                       # contrasts against class 0 [S, k, d]
    bc = b[:, 1:] - b[:, :1]
    chunk = max(1, min(chunk, s_all))
    zbuf = torch.empty(k * chunk, n, dtype=w.dtype, device=w.device)
    best = torch.empty(chunk, n, dtype=w.dtype, device=w.device)
    hit = torch.empty(chunk, n, dtype=torch.bool, device=w.device)
    cls = torch.empty(chunk, n, dtype=out.dtype, device=w.device)
    for s in range(0, s_all, chunk):
        e = min(s_all, s + chunk)
        c_ = e - s
        z = torch.addmm(bc[s:e].T.reshape(-1, 1), wc[s:e].transpose(0, 1).reshape(-1, d), xt.T,
                        out=zbuf[:k * c_]).view(k, c_, n)          # class-major rows: z[c] is [sets, N]
        bst, h, cl, idx = best[:c_], hit[:c_], cls[:c_], out[s:e]
        torch.clamp_min(z[0], 0, out=bst)
        torch.gt(z[0], 0, out=h)
        idx.copy_(h)
        for c in range(1, k):                # strict '>' keeps the first maximum, as argmax does
            torch.gt(z[c], bst, out=h)
            torch.maximum(bst, z[c], out=bst)
            cl.copy_(h).mul_(c + 1)
            torch.maximum(idx, cl, out=idx)  # class indices only grow along the loop: max = overwrite
    return out.long().cpu()


def probe_predictions(train_x, train_y, test_x, support: np.ndarray, n_classes: int, C: float = 1.0,
                      device=None, dtype=torch.float32, max_iter: int = 500, tol: float | None = None,
                      solver: str = "ncg") -> np.ndarray:
    """[S, N_test] predictions of the vectorised probe for the given support index sets [S, n]
    (``solver``, ``tol``, ``max_iter``: see ``fit_probe_batched``)."""
    dev = resolve_device(device)
    xtr = as_tensor(train_x, dev, dtype)
    ytr = torch.as_tensor(as_numpy(train_y), dtype=torch.long, device=dev)
    sup = torch.as_tensor(np.asarray(support), dtype=torch.long, device=dev)
    if solver == "ncg":                     # gather the support rows chunk by chunk into one reused buffer
        s, n = sup.shape
        d = xtr.shape[1]
        buf = torch.empty(max(1, min(s, _CHUNK_ELEMS // max(1, n * d))) * n, d, dtype=xtr.dtype, device=dev)

        def rows(sel):                      # sets ``sel`` (slice: into the buffer; index tensor: fresh)
            idx = sup[sel].reshape(-1)
            out = buf[:len(idx)] if isinstance(sel, slice) and len(idx) <= len(buf) else None
            return torch.index_select(xtr, 0, idx, out=out).view(-1, n, d)

        tol = _DEFAULT_TOL[solver] if tol is None else float(tol)
        w, b = _fit_ncg(rows, s, n, d, ytr[sup], n_classes, C, max_iter, tol, xtr.dtype)
    else:
        xs = xtr.index_select(0, sup.reshape(-1)).view(*sup.shape, xtr.shape[1])
        w, b = fit_probe_batched(xs, ytr[sup], n_classes, C, max_iter, tol, dev, dtype, solver=solver)
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



