"""MEDCSP losses (Eqs. 2-7) against straightforward loop implementations of the paper's equations: double
loops over records with float64 scalar arithmetic on 1-D tensors, independent of the vectorised code and
differentiable, so gradients are compared too."""
from __future__ import annotations

import math

import pytest
import torch

from medbind_lib.losses import (
    LA_NEGATIVES,
    LD_TARGETS,
    LP_DIRECTIONS,
    LP_NEGATIVES,
    REDUCTIONS,
    MEDCSP_VARIANTS,
    VARIANTS,
    MEDCSPLoss,
    medcsp_la,
    medcsp_ld,
    medcsp_lp,
    record_embeddings,
)

TAU, THETA = 0.1, 30.0
MODS = ("icd", "note", "image", "report")
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


# ---------------------------------------------------------------- reference loops (paper equations)
def _unit(v):
    return v / torch.sqrt(torch.dot(v, v))


def _lse(values):
    mx = max(float(v.detach()) for v in values)
    return mx + torch.log(sum(torch.exp(v - mx) for v in values))


def ref_c(emb, mask):
    """Eq. 2: c_i = normalize(mean of the present, normalised e_i^m)."""
    out = []
    for i in range(len(mask)):
        vs = [_unit(emb[m][i]) for k, m in enumerate(MODS) if mask[i][k]]
        out.append(_unit(sum(vs) / len(vs)))
    return out


def _reduce(tot, cnt, n, reduction):
    """Eqs. 4, 5, 7 are sums over anchors: mean = / anchors, batch = / records of the batch, sum = as printed."""
    if not cnt:
        return torch.zeros((), dtype=torch.float64)
    return tot / {"mean": cnt, "batch": n, "sum": 1}[reduction]


def ref_la(emb, mask, src, negatives, tau=TAU, reduction="mean"):
    c = ref_c(emb, mask)
    n, tot, cnt = len(c), 0.0, 0
    for i in range(n):
        cands = [j for j in range(n) if negatives == "batch" or src[j] == src[i]]
        for k, m in enumerate(MODS):
            if not mask[i][k]:
                continue
            e = _unit(emb[m][i])
            logits = {j: torch.dot(e, c[j]) / tau for j in cands}
            tot = tot - (logits[i] - _lse(list(logits.values())))
            cnt += 1
    return _reduce(tot, cnt, n, reduction)


def _anchor(src_i, direction):
    return direction == "both" or (direction == "ehr_to_cxr") == (src_i == 0)


def ref_lp(c, src, pat, times, direction="both", tau=TAU, theta=THETA, negatives="other_patients", reduction="mean"):
    """Eq. 5; 3.4.1's negatives are "s != s', if p != p'": other source AND other patient (``other_patients``)."""
    n, tot, cnt, npos = len(c), 0.0, 0, 0
    for i in range(n):
        if not _anchor(src[i], direction):
            continue
        other = [j for j in range(n) if src[j] != src[i]]
        pos = [j for j in other if pat[j] == pat[i] and abs(times[i] - times[j]) <= theta]
        cands = other if negatives == "source" else pos + [j for j in other if pat[j] != pat[i]]
        if not pos:
            continue
        logits = {j: torch.dot(c[i], c[j]) / tau for j in cands}
        lse = _lse(list(logits.values()))
        tot = tot - sum(logits[q] - lse for q in pos) / len(pos)
        cnt += 1
        npos += len(pos)
    return _reduce(tot, cnt, n, reduction), cnt, (npos / cnt if cnt else 0.0)


def _cos(a, b):
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def ref_ld(c, src, pat, hist, target="l1", same_patient=False, direction="both", tau=TAU, reduction="mean"):
    n, tot, cnt = len(c), 0.0, 0
    for i in range(n):
        if not _anchor(src[i], direction):
            continue
        cands = [j for j in range(n) if src[j] != src[i] and (same_patient or pat[j] != pat[i])]
        alpha = {j: _cos(hist[i], hist[j]) for j in cands}
        mass = sum(alpha.values())
        if mass <= 0:
            continue
        if target == "l1":
            y = {j: alpha[j] / mass for j in cands}
        elif target == "raw":  # Eq. 7 as printed: the cosine weights themselves
            y = alpha
        else:
            z = sum(math.exp(a / tau) for a in alpha.values())
            y = {j: math.exp(alpha[j] / tau) / z for j in cands}
        logits = {j: torch.dot(c[i], c[j]) / tau for j in cands}
        lse = _lse(list(logits.values()))
        tot = tot - sum(y[j] * (logits[j] - lse) for j in cands)
        cnt += 1
    return _reduce(tot, cnt, n, reduction), cnt


# ---------------------------------------------------------------- data
def problem(seed=0, n=14, d=8, v=6, *, sources=None, patients=None, zero_hist=None):
    """Random records: EHR rows tend to have icd/note, imaging rows image/report, some missing; patients
    from a small set (several positives per anchor, anchors without positives); times over 0-90 days."""
    g = torch.Generator().manual_seed(seed)
    src = torch.tensor(sources if sources is not None else [0] * (n // 2) + [1] * (n - n // 2))
    n = len(src)
    p_ehr = torch.tensor([0.9, 0.6, 0.1, 0.1], dtype=torch.float64)
    p_cxr = torch.tensor([0.1, 0.1, 0.9, 0.6], dtype=torch.float64)
    probs = torch.where(src[:, None] == 0, p_ehr, p_cxr)
    mask = torch.rand(n, len(MODS), generator=g, dtype=torch.float64) < probs
    first = torch.where(src == 0, 0, 2)
    mask[torch.arange(n), first] |= ~mask.any(1)  # every record has >= 1 modality
    pat = torch.tensor(patients) if patients is not None else torch.randint(0, 4, (n,), generator=g)
    n_pat = int(pat.max()) + 1
    hist_p = (torch.rand(n_pat, v, generator=g) < 0.4).double()
    for p in (zero_hist if zero_hist is not None else [n_pat - 1]):
        hist_p[p] = 0.0
    emb = {m: torch.randn(n, d, generator=g, dtype=torch.float64) for m in MODS}
    for k, m in enumerate(MODS):  # absent rows hold garbage: it must not matter
        emb[m][~mask[:, k]] = 1e3
        emb[m].requires_grad_(True)
    return {"embeddings": emb, "mask": mask, "sources": src, "patients": pat,
            "times": torch.rand(n, generator=g, dtype=torch.float64) * 90.0, "histories": hist_p[pat]}


def lists(b):
    return ([int(x) for x in b["sources"]], [int(x) for x in b["patients"]], [float(x) for x in b["times"]],
            [[float(x) for x in row] for row in b["histories"]])


def mask_list(b):
    return [[bool(x) for x in row] for row in b["mask"]]


def grads(loss, b):
    return torch.autograd.grad(loss, [b["embeddings"][m] for m in MODS], allow_unused=True, retain_graph=True)


def close(a, b, tol=1e-8):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               atol=tol, rtol=tol)


def close_grads(got, ref, b, tol=1e-7):
    g1, g2 = grads(got, b), grads(ref, b)
    for k, (a, r) in enumerate(zip(g1, g2)):
        r = torch.zeros_like(b["embeddings"][MODS[k]]) if r is None else r
        close(a, r, tol)
    return g1


def check_problem_has_edge_cases(b):
    """The random data really covers several positives and anchors without positives."""
    src, pat, t, _ = lists(b)
    n = len(src)
    npos = [sum(1 for j in range(n) if src[j] != src[i] and pat[j] == pat[i] and abs(t[i] - t[j]) <= THETA)
            for i in range(n)]
    assert max(npos) >= 2 and min(npos) == 0
    assert not bool(b["mask"].all())


# ---------------------------------------------------------------- record embeddings (Eq. 2)
def test_record_embeddings_masked_mean_and_absent_rows_inert():
    b = problem(seed=1)
    e, present, c = record_embeddings(b["embeddings"], b["mask"])
    assert e.shape == (14, 4, 8) and present.dtype == torch.bool and c.dtype == torch.float64
    for ci, ri in zip(c, ref_c(b["embeddings"], mask_list(b))):
        close(ci, ri)
    close(c.norm(dim=1), torch.ones(14))
    # absent rows: any value (NaN too) changes nothing and receives zero gradient
    emb2 = {m: b["embeddings"][m].detach().masked_fill(~b["mask"][:, k, None], float("nan")).requires_grad_(True)
            for k, m in enumerate(MODS)}
    _, _, c2 = record_embeddings(emb2, b["mask"])
    close(c2, c)
    gs = torch.autograd.grad(c2.sum(), [emb2[m] for m in MODS])
    for k, g in enumerate(gs):
        assert torch.isfinite(g).all() and g[~b["mask"][:, k]].abs().sum() == 0
    # a dict mask and an explicit column order give the same
    dmask = {m: b["mask"][:, k] for k, m in enumerate(MODS)}
    _, _, c3 = record_embeddings(dict(reversed(list(b["embeddings"].items()))), dmask, modalities=MODS)
    close(c3, c)


def test_record_without_modality_is_an_error():
    b = problem(seed=2)
    b["mask"][3] = False
    with pytest.raises(ValueError, match="without any modality"):
        record_embeddings(b["embeddings"], b["mask"])
    with pytest.raises(ValueError):
        record_embeddings(b["embeddings"], b["mask"][:, :3])


# ---------------------------------------------------------------- L_A
@pytest.mark.parametrize("negatives", LA_NEGATIVES)
def test_la_matches_loop(negatives):
    b = problem(seed=3)
    r = medcsp_la(b["embeddings"], b["mask"], b["sources"], TAU, negatives=negatives, return_terms=True)
    ref = ref_la(b["embeddings"], mask_list(b), lists(b)[0], negatives)
    close(r["loss"], ref)
    assert float(r["la_anchors"]) == int(b["mask"].sum())
    gs = close_grads(r["loss"], ref, b)
    for k, g in enumerate(gs):  # absent rows get no gradient
        assert g[~b["mask"][:, k]].abs().sum() == 0


def test_la_source_and_batch_differ_and_agree_on_one_source():
    b = problem(seed=4)
    src_only = medcsp_la(b["embeddings"], b["mask"], b["sources"], negatives="source")
    batch = medcsp_la(b["embeddings"], b["mask"], b["sources"], negatives="batch")
    assert float(batch) > float(src_only)  # more negatives
    one = torch.ones_like(b["sources"])
    close(medcsp_la(b["embeddings"], b["mask"], one, negatives="source"),
          medcsp_la(b["embeddings"], b["mask"], one, negatives="batch"))


# ---------------------------------------------------------------- L_P
@pytest.mark.parametrize("direction,negatives", [(d, "other_patients") for d in LP_DIRECTIONS] + [("both", "source")])
def test_lp_matches_loop(direction, negatives):
    b = problem(seed=5)
    check_problem_has_edge_cases(b)
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    r = medcsp_lp(c, b["sources"], b["patients"], b["times"], TAU, theta=THETA, direction=direction,
                  negatives=negatives, return_terms=True)
    src, pat, t, _ = lists(b)
    ref, cnt, pos_mean = ref_lp(ref_c(b["embeddings"], mask_list(b)), src, pat, t, direction, negatives=negatives)
    assert cnt > 0
    close(r["loss"], ref)
    assert float(r["lp_anchors"]) == cnt
    assert float(r["lp_positives_mean"]) == pytest.approx(pos_mean)
    close_grads(r["loss"], ref, b)


def test_lp_all_patients_identical_and_theta_boundary():
    n = 10
    b = problem(seed=6, n=n, patients=[7] * n)
    b["times"] = torch.tensor([0.0, 10, 30, 31, 45, 5, 30, 60, 61, 100], dtype=torch.float64)
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    r = medcsp_lp(c, b["sources"], b["patients"], b["times"], TAU, return_terms=True)
    src, pat, t, _ = lists(b)
    ref, cnt, pos_mean = ref_lp(ref_c(b["embeddings"], mask_list(b)), src, pat, t)
    close(r["loss"], ref)
    close_grads(r["loss"], ref, b)
    assert float(r["lp_anchors"]) == cnt and pos_mean > 1  # several positives, |dt| = 30 included
    # time 100 (record 9) has no positive within 30 days: it contributes nothing
    assert cnt == 9


def test_all_patients_identical_module():
    b = problem(seed=18, patients=[3] * 14, zero_hist=[])
    src, pat, t, hist = lists(b)
    c = ref_c(b["embeddings"], mask_list(b))
    out = MEDCSPLoss(reduction="mean")(b)
    close(out["lp"], ref_lp(c, src, pat, t)[0])
    # one patient: the paper's L_D (pairs of OTHER patients) has no candidate at all
    assert float(out["ld"]) == 0.0 and float(out["ld_anchors"]) == 0 and out["ld"].requires_grad
    for g in grads(out["loss"], b):
        assert torch.isfinite(g).all()
    # with same-patient pairs, one history gives uniform targets over the other source
    out = MEDCSPLoss(ld_same_patient=True, reduction="mean")(b)
    close(out["ld"], ref_ld(c, src, pat, hist, same_patient=True)[0])
    assert float(out["ld_anchors"]) == 14


def test_lp_no_positive_anywhere_is_zero_in_graph():
    b = problem(seed=7)
    b["times"] = torch.arange(14, dtype=torch.float64) * 100.0  # every cross-source gap > theta
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    r = medcsp_lp(c, b["sources"], b["patients"], b["times"], return_terms=True)
    assert float(r["loss"]) == 0.0 and r["loss"].requires_grad and float(r["lp_anchors"]) == 0
    for g in grads(r["loss"], b):
        assert torch.isfinite(g).all() and g.abs().sum() == 0


# ---------------------------------------------------------------- L_D
@pytest.mark.parametrize("target,same_patient,direction", [
    ("l1", True, "both"), ("softmax", True, "both"), ("l1", False, "both"), ("softmax", False, "ehr_to_cxr"),
    ("l1", True, "cxr_to_ehr"), ("raw", False, "both"), ("raw", True, "ehr_to_cxr"),
])
def test_ld_matches_loop(target, same_patient, direction):
    b = problem(seed=8)
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    r = medcsp_ld(c, b["sources"], b["histories"], TAU, patients=b["patients"], target=target,
                  same_patient=same_patient, direction=direction, return_terms=True)
    src, pat, _, hist = lists(b)
    ref, cnt = ref_ld(ref_c(b["embeddings"], mask_list(b)), src, pat, hist, target, same_patient, direction)
    assert 0 < cnt < sum(_anchor(s, direction) for s in src)  # the all-zero-history patient is skipped
    close(r["loss"], ref)
    assert float(r["ld_anchors"]) == cnt
    close_grads(r["loss"], ref, b)


def test_ld_same_patient_key_changes_the_loss():
    b = problem(seed=9)
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    with_p = medcsp_ld(c, b["sources"], b["histories"], patients=b["patients"], same_patient=True)
    without = medcsp_ld(c, b["sources"], b["histories"], patients=b["patients"])
    assert abs(float(with_p) - float(without)) > 1e-6
    with pytest.raises(ValueError):
        medcsp_ld(c, b["sources"], b["histories"])  # the paper's default excludes same-patient pairs: needs patients
    close(medcsp_ld(c, b["sources"], b["histories"], same_patient=True), with_p)  # ... which this does not


def test_ld_all_zero_histories_is_zero_in_graph():
    b = problem(seed=10)
    _, _, c = record_embeddings(b["embeddings"], b["mask"])
    for target in LD_TARGETS:
        r = medcsp_ld(c, b["sources"], torch.zeros(14, 6, dtype=torch.float64), patients=b["patients"], target=target,
                      return_terms=True)
        assert float(r["loss"]) == 0.0 and r["loss"].requires_grad and float(r["ld_anchors"]) == 0
        for g in grads(r["loss"], b):
            assert torch.isfinite(g).all() and g.abs().sum() == 0


# ---------------------------------------------------------------- module
def test_medcsp_total_and_counts():
    b = problem(seed=11)
    ls = torch.tensor(math.log(1 / TAU), dtype=torch.float64, requires_grad=True)
    out = MEDCSPLoss()(b, logit_scale=ls.exp())
    src, pat, t, hist = lists(b)
    c = ref_c(b["embeddings"], mask_list(b))
    ref_p, lp_cnt, _ = ref_lp(c, src, pat, t, reduction="batch")   # the paper's defaults: sums / 14 records
    ref_d, ld_cnt = ref_ld(c, src, pat, hist, reduction="batch")
    ref_a = ref_la(b["embeddings"], mask_list(b), src, "source", reduction="batch")
    close(out["la"], ref_a)
    close(out["lp"], ref_p)
    close(out["ld"], ref_d)
    ref_total = ref_a + 0.5 * ref_p + 0.2 * ref_d
    close(out["loss"], ref_total)
    close_grads(out["loss"], ref_total, b)
    assert float(out["n_records"]) == 14 and float(out["n_ehr"]) == 7 and float(out["n_cxr"]) == 7
    assert float(out["lp_anchors"]) == lp_cnt and float(out["ld_anchors"]) == ld_cnt
    assert float(out["la_anchors"]) == int(b["mask"].sum())
    (g,) = torch.autograd.grad(out["loss"], ls)  # learnable temperature gets a gradient
    assert torch.isfinite(g) and float(g) != 0.0


def test_medcsp_keys_reach_the_terms():
    b = problem(seed=12)
    kw = dict(la_negatives="batch", lp_direction="cxr_to_ehr", ld_target="softmax", ld_same_patient=True,
              ld_direction="ehr_to_cxr", theta=20.0, lambda_p=0.3, lambda_d=0.7, lp_negatives="source",
              reduction="mean")
    out = MEDCSPLoss(**kw)(b)
    src, pat, t, hist = lists(b)
    c = ref_c(b["embeddings"], mask_list(b))
    close(out["la"], ref_la(b["embeddings"], mask_list(b), src, "batch"))
    close(out["lp"], ref_lp(c, src, pat, t, "cxr_to_ehr", theta=20.0, negatives="source")[0])
    close(out["ld"], ref_ld(c, src, pat, hist, "softmax", True, "ehr_to_cxr")[0])
    close(out["loss"], out["la"] + 0.3 * out["lp"] + 0.7 * out["ld"])


@pytest.mark.parametrize("variant,terms", [("medcsp_a", {"la"}), ("medcsp_a_p", {"la", "lp"}),
                                           ("medcsp_a_d", {"la", "ld"}), ("medcsp", {"la", "lp", "ld"})])
def test_variants_terms(variant, terms):
    b = problem(seed=13)
    out = MEDCSPLoss(variant)(b)
    assert terms == {k for k in ("la", "lp", "ld") if k in out}
    total = out["la"] + 0.5 * out.get("lp", 0.0) + 0.2 * out.get("ld", 0.0)
    close(out["loss"], total)
    # keys a variant does not use may be absent
    need = {"medcsp_a": ("patients", "times", "histories"), "medcsp_a_p": ("histories",),
            "medcsp_a_d": ("times",), "medcsp": ()}[variant]  # L_D's pair rule reads the patients
    close(MEDCSPLoss(variant)({k: v for k, v in b.items() if k not in need})["loss"], out["loss"])


def test_medcsp_single_uses_imaging_records_only():
    b = problem(seed=14)
    out = MEDCSPLoss("medcsp_single", la_negatives="batch")(b)
    img = b["sources"] == 1
    sub_mask = [row for row, keep in zip(mask_list(b), img.tolist()) if keep]
    sub_emb = {m: b["embeddings"][m][img] for m in MODS}
    ref = ref_la(sub_emb, sub_mask, [1] * int(img.sum()), "batch", reduction="batch")  # / the 7 imaging records
    close(out["loss"], ref)
    close(out["la"], out["loss"])
    assert set(out) == {"la", "loss", "n_records", "n_ehr", "n_cxr", "la_anchors"}
    assert float(out["n_records"]) == 7 and float(out["n_ehr"]) == 0
    gs = close_grads(out["loss"], ref, b)
    for g in gs:
        assert g[~img].abs().sum() == 0  # EHR rows ignored
    # an EHR-only batch: nothing to contrast, zero in the graph
    ehr = MEDCSPLoss("medcsp_single")({**b, "sources": torch.zeros(14, dtype=torch.long)})
    assert float(ehr["loss"]) == 0.0 and ehr["loss"].requires_grad


@pytest.mark.parametrize("source", [0, 1])
def test_one_source_batch_cross_terms_are_zero_in_graph(source):
    b = problem(seed=15, sources=[source] * 12)
    out = MEDCSPLoss()(b)
    assert float(out["lp"]) == 0.0 and float(out["ld"]) == 0.0
    assert out["lp"].requires_grad and out["ld"].requires_grad
    assert float(out["lp_anchors"]) == 0 and float(out["ld_anchors"]) == 0
    close(out["loss"], out["la"])
    close(out["la"], ref_la(b["embeddings"], mask_list(b), [source] * 12, "source", reduction="batch"))
    for term in ("lp", "ld"):
        for g in grads(out[term], b):
            assert torch.isfinite(g).all() and g.abs().sum() == 0
    for g in grads(out["loss"], b):
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_small_tau_no_nan(dtype):
    b = problem(seed=16)
    emb = {m: x.detach().to(dtype).requires_grad_(True) for m, x in b["embeddings"].items()}
    b = {**b, "embeddings": emb, "histories": b["histories"].float()}
    out = MEDCSPLoss(tau=0.01)(b)
    for k in ("la", "lp", "ld", "loss"):
        assert out[k].dtype == torch.float32 and torch.isfinite(out[k])
    for g in torch.autograd.grad(out["loss"], list(emb.values())):
        assert torch.isfinite(g).all()


def test_bad_arguments():
    b = problem(seed=17)
    with pytest.raises(ValueError):
        MEDCSPLoss("nope")
    for key, bad in (("la_negatives", "x"), ("lp_direction", "x"), ("ld_target", "x"), ("ld_direction", "x")):
        with pytest.raises(ValueError):
            MEDCSPLoss(**{key: bad})
    with pytest.raises(ValueError):
        MEDCSPLoss()({**b, "sources": b["sources"] + 1})  # sources are 0 / 1
    with pytest.raises(ValueError):
        MEDCSPLoss()({**b, "histories": -b["histories"]})
    with pytest.raises(ValueError):
        MEDCSPLoss()({k: v for k, v in b.items() if k != "times"})
    with pytest.raises(ValueError):
        MEDCSPLoss()({**b, "mask": b["mask"][:, :2]})


def test_the_two_methods_name_their_variants_apart():
    assert VARIANTS and MEDCSP_VARIANTS and not set(VARIANTS) & set(MEDCSP_VARIANTS)


# ---------------------------------------------------------------- the paper's pair rules and reduction
def _hand_batch():
    """4 records, 2 patients: EHR r0 (p0, day 0), r1 (p1, day 0); CXR r2 (p0, day 10), r3 (p0, day 100).
    Embeddings in 2-D at angles 0, 90, 60 and 180 degrees, so every logit is cos / tau by hand."""
    ang = torch.tensor([0.0, 90.0, 60.0, 180.0], dtype=torch.float64) * math.pi / 180
    c = torch.stack([torch.cos(ang), torch.sin(ang)], 1).requires_grad_(True)
    return (c, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 0]),
            torch.tensor([0.0, 0.0, 10.0, 100.0], dtype=torch.float64))


def test_lp_negatives_hand_computed():
    """Anchor r0 (p0): positive r2 (same patient, 10 days), r3 is the same patient 100 days away: under the
    paper's rule it is neither positive nor negative, so r0's candidates are {r2} only -> loss 0; under
    ``source`` r3 is a negative: -log(e^{cos60/tau} / (e^{cos60/tau} + e^{cos180/tau})).  Anchor r2 (p0, CXR):
    positive r0, negative r1 (other patient) under both rules.  r1 and r3 have no positive."""
    c, src, pat, t = _hand_batch()
    s = 1 / TAU
    r2 = -(math.cos(math.radians(60)) * s - math.log(math.exp(math.cos(math.radians(60)) * s)
                                                    + math.exp(math.cos(math.radians(30)) * s)))
    r0_source = -(0.5 * s - math.log(math.exp(0.5 * s) + math.exp(-1.0 * s)))
    paper = medcsp_lp(c, src, pat, t, return_terms=True)
    assert float(paper["lp_anchors"]) == 2
    assert float(paper["loss"]) == pytest.approx((0.0 + r2) / 2, rel=1e-12)
    assert float(medcsp_lp(c, src, pat, t, negatives="source")) == pytest.approx((r0_source + r2) / 2, rel=1e-12)
    # batch reduction: the same sum over the 4 records of the batch; sum: the literal Eq. 5
    assert float(medcsp_lp(c, src, pat, t, reduction="batch")) == pytest.approx(r2 / 4, rel=1e-12)
    assert float(medcsp_lp(c, src, pat, t, reduction="sum")) == pytest.approx(r2, rel=1e-12)


def test_ld_pair_rule_and_raw_target_hand_computed():
    """Histories: p0 = (1, 0), p1 = (1, 1) -> alpha(p0, p1) = 1/sqrt(2), alpha(p0, p0) = 1.  Without same-patient
    pairs anchor r1 (p1, EHR) has candidates r2, r3 (both p0, alpha 1/sqrt 2): l1 targets 1/2, 1/2; raw targets
    1/sqrt 2 each.  r0, r2, r3 (p0) have only same-patient or no other-patient candidates but r1 for r2, r3."""
    c, src, pat, t = _hand_batch()
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    s, a = 1 / TAU, 1 / math.sqrt(2)
    cosd = {(i, j): math.cos(math.radians(x - y)) for i, x in enumerate((0, 90, 60, 180))
            for j, y in enumerate((0, 90, 60, 180))}

    def logp(i, j, cands):
        return cosd[i, j] * s - math.log(sum(math.exp(cosd[i, k] * s) for k in cands))

    # anchors without same-patient pairs: r0 -> {} (only CXR records of p0), r1 -> {r2, r3}, r2 -> {r1}, r3 -> {r1}
    r1_l1 = -(0.5 * logp(1, 2, (2, 3)) + 0.5 * logp(1, 3, (2, 3)))
    r1_raw = -(a * logp(1, 2, (2, 3)) + a * logp(1, 3, (2, 3)))
    r2_l1, r2_raw = -logp(2, 1, (1,)), -a * logp(2, 1, (1,))   # one candidate: log-softmax 0
    assert r2_l1 == 0.0
    out = medcsp_ld(c, src, h, patients=pat, return_terms=True)
    assert float(out["ld_anchors"]) == 3
    assert float(out["loss"]) == pytest.approx((r1_l1 + 2 * r2_l1) / 3, rel=1e-12)
    raw = medcsp_ld(c, src, h, patients=pat, target="raw", reduction="batch")
    assert float(raw) == pytest.approx((r1_raw + 2 * r2_raw) / 4, rel=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_module_reduction_matches_loop(reduction):
    """MEDCSPLoss(reduction) against the float64 loops: each term's sum over its anchors / (anchors | N | 1)."""
    b = problem(seed=21)
    out = MEDCSPLoss(reduction=reduction, ld_target="raw")(b)
    src, pat, t, hist = lists(b)
    c = ref_c(b["embeddings"], mask_list(b))
    ref_a = ref_la(b["embeddings"], mask_list(b), src, "source", reduction=reduction)
    ref_p = ref_lp(c, src, pat, t, reduction=reduction)[0]
    ref_d = ref_ld(c, src, pat, hist, "raw", reduction=reduction)[0]
    for k, r in (("la", ref_a), ("lp", ref_p), ("ld", ref_d)):
        close(out[k], r)
    total = ref_a + 0.5 * ref_p + 0.2 * ref_d
    close(out["loss"], total)
    close_grads(out["loss"], total, b)


def test_paper_defaults():
    """The constructor's and the profile schema's defaults are the paper's rules (3.4.1, 3.4.2, Eqs. 4-7)."""
    from medbind_lib.config import SCHEMA

    m = MEDCSPLoss()
    assert (m.lp_negatives, m.ld_same_patient, m.reduction) == ("other_patients", False, "batch")
    assert LP_NEGATIVES[0] == "other_patients" and "raw" in LD_TARGETS
    assert SCHEMA["medcsp_lp_negatives"][0] == "other_patients"
    assert SCHEMA["medcsp_ld_same_patient"][0] is False and SCHEMA["medcsp_loss_reduction"][0] == "batch"
