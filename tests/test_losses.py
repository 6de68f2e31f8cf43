"""Losses against straightforward loop implementations of the papers' equations (MEDBind Eq. 1-2, CLIP,
MedCLIP soft targets).  The references loop over anchors / positives with float64 scalar arithmetic on
1-D tensors, independent of the vectorised code (and differentiable, so gradients are compared too)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medbind_lib import distributed as D
from medbind_lib.losses import (
    EMCL_SCALES,
    MEDBindLoss,
    clip_infonce,
    emcl,
    hash_texts,
    medclip_soft,
    normalize_text,
    tmcl,
)

TAU = 0.07
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


# ---------------------------------------------------------------- reference loops (paper equations)
def _lse(values):
    """log sum exp of a list of 0-d tensors (stable)."""
    mx = max(float(v.detach()) for v in values)
    return mx + torch.log(sum(torch.exp(v - mx) for v in values))


def ref_directional(anchors, cands, keys, tau):
    """mean_i  -1/|P(i)| sum_{p in P(i)} log( exp(a_i.c_p/tau) / sum_l exp(a_i.c_l/tau) )."""
    n = len(anchors)
    total = 0.0
    for i in range(n):
        logits = [torch.dot(anchors[i], cands[l]) / tau for l in range(n)]
        log_den = _lse(logits)
        pos = [p for p in range(n) if keys[p] == keys[i]]
        total = total + (-sum(logits[p] - log_den for p in pos) / len(pos))
    return total / n


def ref_tmcl(z, t, keys, tau):
    """(L^{t->z} + L^{z->t}) / 2, each the mean over anchors."""
    keys = [int(k) for k in keys]
    return 0.5 * (ref_directional(t, z, keys, tau) + ref_directional(z, t, keys, tau))


def ref_clip(a, b, tau):
    return ref_tmcl(a, b, list(range(len(a))), tau)


def ref_emcl(c, e, mask, tau, n, scale):
    idx = [u for u in range(len(c)) if bool(mask[u])]
    m = len(idx)
    if m <= 1:
        return torch.zeros((), dtype=torch.float64)

    def direction(x, y):
        tot = 0.0
        for u in idx:
            s = {q: torch.dot(x[u], y[q]) / tau for q in idx}
            if scale == "negatives":
                den = torch.exp(s[u]) + (n / m) * sum(torch.exp(s[q]) for q in idx if q != u)
            elif scale == "constant":
                den = (n / m) * sum(torch.exp(s[q]) for q in idx)
            else:
                den = sum(torch.exp(s[q]) for q in idx)
            tot = tot - torch.log(torch.exp(s[u]) / den)
        return tot / m

    return 0.5 * (direction(c, e) + direction(e, c))


def ref_medclip(z, t, labels, tau, how):
    n = len(z)

    def sim(i, j):
        li, lj = labels[i], labels[j]
        if how == "dot":
            return float(torch.dot(li, lj))
        ni, nj = float(li.norm()), float(lj.norm())
        if ni == 0 and nj == 0:
            return 1.0
        if ni == 0 or nj == 0:
            return 0.0
        return float(torch.dot(li, lj)) / (ni * nj)

    def direction(x, y, transpose):
        tot = 0.0
        for i in range(n):
            s = [sim(j, i) if transpose else sim(i, j) for j in range(n)]
            den_t = sum(math.exp(v) for v in s)
            logits = [torch.dot(x[i], y[j]) / tau for j in range(n)]
            lse = _lse(logits)
            tot = tot - sum((math.exp(s[j]) / den_t) * (logits[j] - lse) for j in range(n))
        return tot / n

    return 0.5 * (direction(z, t, False) + direction(t, z, True))


# ---------------------------------------------------------------- helpers
def emb(n, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).to(dtype).requires_grad_(True)


def grads(loss, *xs):
    return torch.autograd.grad(loss, xs, allow_unused=False)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               atol=tol, rtol=tol)


# ---------------------------------------------------------------- CLIP
def test_clip_matches_loop_values_and_grads():
    a, b = emb(7, seed=1), emb(7, seed=2)
    got, ref = clip_infonce(a, b, TAU), ref_clip(a, b, TAU)
    close(got, ref)
    for g1, g2 in zip(grads(got, a, b), grads(ref, a, b)):
        close(g1, g2, 1e-5)


# ---------------------------------------------------------------- TMCL
@pytest.mark.parametrize("keys", [
    [0, 1, 0, 2, 1, 0, 3, 4],          # duplicates
    [5] * 8,                             # all texts identical
    list(range(8)),                      # all distinct
])
def test_tmcl_matches_loop(keys):
    z, t = emb(8, seed=3), emb(8, seed=4)
    k = torch.tensor(keys)
    got, ref = tmcl(z, t, k, TAU), ref_tmcl(z, t, keys, TAU)
    close(got, ref)
    for g1, g2 in zip(grads(got, z, t), grads(ref, z, t)):
        close(g1, g2, 1e-5)


def test_tmcl_all_distinct_equals_clip_and_terms():
    z, t = emb(9, seed=5), emb(9, seed=6)
    r = tmcl(z, t, torch.arange(9) * 7, TAU, return_terms=True)
    close(r["loss"], clip_infonce(z, t, TAU))
    close(r["loss"], 0.5 * (r["t2z"] + r["z2t"]))
    close(r["t2z"], ref_directional(t, z, list(range(9)), TAU))
    close(r["z2t"], ref_directional(z, t, list(range(9)), TAU))


def test_tmcl_all_identical_value():
    # every item is a positive of every anchor: L_i = -mean_p log softmax_p = lse - mean logits
    z, t = emb(5, seed=7), emb(5, seed=8)
    got = tmcl(z, t, torch.zeros(5, dtype=torch.long), TAU)
    close(got, ref_tmcl(z, t, [0] * 5, TAU))
    assert float(got) >= math.log(5) - 1e-9  # -mean log p >= -log mean p = log n


def test_tmcl_batch_of_one_is_exactly_zero():
    z, t = emb(1, seed=9), emb(1, seed=10)
    got = tmcl(z, t, torch.tensor([3]), TAU)
    assert float(got) == 0.0
    assert all(torch.isfinite(g).all() for g in grads(got, z, t))


def test_tmcl_reductions():
    z, t = emb(6, seed=11), emb(6, seed=12)
    k = torch.tensor([0, 0, 1, 2, 2, 2])
    mean = tmcl(z, t, k, TAU)
    close(tmcl(z, t, k, TAU, reduction="sum"), 6 * mean)
    close(tmcl(z, t, k, TAU, reduction="batch", n_samples=10), 6 * mean / 10)


def test_learnable_logit_scale_equals_tau_and_gets_grad():
    z, t = emb(6, seed=13), emb(6, seed=14)
    k = torch.tensor([0, 1, 1, 2, 3, 3])
    ls = torch.tensor(math.log(1 / TAU), dtype=torch.float64, requires_grad=True)
    got = tmcl(z, t, k, logit_scale=ls.exp())
    close(got, tmcl(z, t, k, TAU))
    (g,) = torch.autograd.grad(got, ls)
    assert torch.isfinite(g) and float(g) != 0.0


# ---------------------------------------------------------------- EMCL
@pytest.mark.parametrize("scale", EMCL_SCALES)
@pytest.mark.parametrize("m", [0, 1, 2, 5, 8])
def test_emcl_matches_loop(scale, m):
    k, n = 8, 11
    c, e = emb(k, seed=20), emb(k, seed=21)
    mask = torch.zeros(k, dtype=torch.bool)
    mask[torch.randperm(k, generator=torch.Generator().manual_seed(m))[:m]] = True
    r = emcl(c, e, mask, TAU, n=n, scale=scale, return_terms=True)
    ref = ref_emcl(c, e, mask, TAU, n, scale)
    close(r["loss"], ref)
    assert float(r["m"]) == m and float(r["n"]) == n
    gc, ge = grads(r["loss"], c, e)  # grads exist (no None) even for m <= 1
    assert torch.isfinite(gc).all() and torch.isfinite(ge).all()
    if m <= 1:
        assert float(r["loss"]) == 0.0 and gc.abs().sum() == 0 and ge.abs().sum() == 0
    else:
        for g1, g2 in zip((gc, ge), grads(ref, c, e)):
            close(g1, g2, 1e-5)
        # rows outside the mask get no gradient
        assert gc[~mask].abs().sum() == 0 and gc[mask].abs().sum() > 0


def test_emcl_m_equals_n_all_scales_agree():
    c, e = emb(6, seed=22), emb(6, seed=23)
    vals = [emcl(c, e, None, TAU, n=6, scale=s) for s in EMCL_SCALES]
    close(vals[0], vals[1])
    close(vals[0], vals[2])
    close(vals[2], clip_infonce(c, e, TAU))  # plain InfoNCE among the pairs


def test_emcl_constant_vs_none_vs_negatives():
    k, n = 8, 20
    c, e = emb(k, seed=24), emb(k, seed=25)
    mask = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0], dtype=torch.bool)
    m = int(mask.sum())
    lc = emcl(c, e, mask, TAU, n=n, scale="constant")
    ln = emcl(c, e, mask, TAU, n=n, scale="none")
    lg = emcl(c, e, mask, TAU, n=n, scale="negatives")
    assert float(lc - ln) == pytest.approx(math.log(n / m), abs=1e-9)
    gc, gn, gg = grads(lc, c, e), grads(ln, c, e), grads(lg, c, e)
    for a, b in zip(gc, gn):
        close(a, b, 1e-10)  # identical gradients
    assert max(float((a - b).abs().max()) for a, b in zip(gg, gn)) > 1e-3  # negatives changes training


def test_emcl_rejects_bad_args():
    c, e = emb(4, seed=26), emb(4, seed=27)
    with pytest.raises(ValueError):
        emcl(c, e, None, TAU, n=4, scale="bogus")
    with pytest.raises(ValueError):
        emcl(c, e, None, TAU, n=3)  # n < m


# ---------------------------------------------------------------- MedCLIP
@pytest.mark.parametrize("how", ["dot", "cosine"])
def test_medclip_matches_loop(how):
    z, t = emb(7, seed=30), emb(7, seed=31)
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0],
                           [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.float64)
    got = medclip_soft(z, t, labels, TAU, label_sim=how)
    ref = ref_medclip(z, t, labels, TAU, how)
    close(got, ref)
    for g1, g2 in zip(grads(got, z, t), grads(ref, z, t)):
        close(g1, g2, 1e-5)


# ---------------------------------------------------------------- robustness
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_no_nan_small_tau_low_precision(dtype):
    n = 16
    z, t = emb(n, seed=40, dtype=dtype), emb(n, seed=41, dtype=dtype)
    # make some pairs near-identical: logits close to +-1/tau = +-100
    with torch.no_grad():
        t[:4] = z[:4]
        t[4:6] = -z[4:6]
    keys = torch.tensor([0, 0, 1, 2] * 4)
    labels = (torch.arange(n)[:, None] % torch.tensor([2, 3, 5]) == 0).float()
    mask = torch.arange(n) % 3 != 0
    for loss in (
        clip_infonce(z, t, 0.01),
        tmcl(z, t, keys, 0.01),
        emcl(z, t, mask, 0.01, n=n + 4, scale="negatives"),
        emcl(z, t, mask, 0.01, n=n + 4, scale="constant"),
        emcl(z, t, torch.zeros(n, dtype=torch.bool), 0.01, n=n),
        medclip_soft(z, t, labels, 0.01, label_sim="cosine"),
    ):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        for g in grads(loss, z, t):
            assert torch.isfinite(g).all()


def _batch(seed=0, d=16, dtype=torch.float64):
    """5 samples: 0,1 CXR only; 2,3 pairs; 4 ECG only."""
    return {
        "cxr": emb(4, d, seed, dtype), "cxr_text": emb(4, d, seed + 1, dtype),
        "cxr_text_keys": torch.tensor([7, 7, 1, 2]),
        "ecg": emb(3, d, seed + 2, dtype), "ecg_text": emb(3, d, seed + 3, dtype),
        "ecg_text_keys": torch.tensor([4, 5, 4]),
        "pairs": torch.tensor([[2, 0], [3, 1]]),
        "cxr_labels": torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=torch.float64),
    }


def test_medbind_bd_total_terms_and_gradients_flow_everywhere():
    b = _batch()
    ls = torch.tensor(math.log(1 / TAU), dtype=torch.float64, requires_grad=True)
    out = MEDBindLoss("medbind_bd")(b, logit_scale=ls.exp())
    c_p, e_p = b["cxr"][b["pairs"][:, 0]], b["ecg"][b["pairs"][:, 1]]
    close(out["tmcl_cxr"], ref_tmcl(b["cxr"], b["cxr_text"], b["cxr_text_keys"], TAU))
    close(out["tmcl_ecg"], ref_tmcl(b["ecg"], b["ecg_text"], b["ecg_text_keys"], TAU))
    close(out["emcl"], ref_emcl(c_p, e_p, [True, True], TAU, 5, "constant"))  # n = 4 + 3 - 2 = 5
    close(out["loss"], out["tmcl_cxr"] + out["tmcl_ecg"] + out["emcl"])
    assert float(out["m_pairs"]) == 2 and float(out["n_samples"]) == 5
    assert float(out["n_cxr"]) == 4 and float(out["n_ecg"]) == 3
    xs = [b[k] for k in ("cxr", "cxr_text", "ecg", "ecg_text")] + [ls]
    for g in grads(out["loss"], *xs):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_medbind_variants():
    b = _batch(seed=50)
    nm = MEDBindLoss("medbind_nm")(b)
    close(nm["loss"], nm["tmcl_cxr"] + nm["tmcl_ecg"])
    assert "emcl" not in nm
    ecg = MEDBindLoss("ecg_clip")({k: v for k, v in b.items() if not k.startswith("cxr")} | {"n_samples": 3})
    close(ecg["loss"], ref_tmcl(b["ecg"], b["ecg_text"], b["ecg_text_keys"], TAU))
    cc = MEDBindLoss("cxr_clip")(b)
    close(cc["loss"], ref_clip(b["cxr"], b["cxr_text"], TAU))
    mc = MEDBindLoss("medclip", medclip_label_sim="cosine")(b)
    close(mc["loss"], ref_medclip(b["cxr"], b["cxr_text"], b["cxr_labels"], TAU, "cosine"))
    with pytest.raises(ValueError):
        MEDBindLoss("medbind_bd")({k: v for k, v in b.items() if not k.startswith("ecg")})
    with pytest.raises(ValueError):
        MEDBindLoss("nope")


def test_medbind_bd_reduction_batch_is_paper_sum_over_n():
    b = _batch(seed=60)
    n = 5
    out = MEDBindLoss("medbind_bd", reduction="batch", emcl_scale="negatives")(b)
    c_p, e_p = b["cxr"][b["pairs"][:, 0]], b["ecg"][b["pairs"][:, 1]]
    paper_sum = (4 * ref_tmcl(b["cxr"], b["cxr_text"], b["cxr_text_keys"], TAU)
                 + 3 * ref_tmcl(b["ecg"], b["ecg_text"], b["ecg_text_keys"], TAU)
                 + 2 * ref_emcl(c_p, e_p, [True, True], TAU, n, "negatives"))
    close(out["loss"], paper_sum / n)
    close(MEDBindLoss("medbind_bd", reduction="sum", emcl_scale="negatives")(b)["loss"], paper_sum)


def test_medbind_bd_without_pairs_and_empty_modality():
    b = _batch(seed=70)
    b.pop("pairs")
    out = MEDBindLoss("medbind_bd")(b)
    assert float(out["emcl"]) == 0.0 and float(out["m_pairs"]) == 0 and float(out["n_samples"]) == 7
    b["ecg"], b["ecg_text"] = b["ecg"][:0], b["ecg_text"][:0]
    b["ecg_text_keys"] = b["ecg_text_keys"][:0]
    out = MEDBindLoss("medbind_bd")(b)
    assert float(out["tmcl_ecg"]) == 0.0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(b["cxr"].grad).all()


# ---------------------------------------------------------------- text keys and helpers
def test_hash_texts():
    k = hash_texts(["Normal  ECG.", "normal ecg.", "Sinus rhythm", " normal\tECG. "])
    assert k.dtype == torch.int64
    assert k[0] == k[1] == k[3] and k[0] != k[2]
    assert hash_texts(["abc"])[0] == hash_texts(["abc"])[0]
    assert hash_texts(["A"], lowercase=False)[0] != hash_texts(["a"], lowercase=False)[0]
    assert normalize_text("  A \n b ") == "a b"


def test_distributed_helpers_are_identity_without_process_group():
    assert not D.is_dist() and D.rank() == 0 and D.world_size() == 1
    x = torch.randn(3, 2, requires_grad=True)
    assert D.gather_with_grad(x) is x
    m = torch.tensor([True, False])
    assert D.gather_no_grad(m) is m
    assert D.gather_sizes(4) == [4]
