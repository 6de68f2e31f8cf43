"""Evaluation metrics on tiny hand-computed cases (expected numbers worked out by hand in the comments)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medbind_lib.metrics import (balanced_accuracy, bootstrap_balanced_accuracy, bootstrap_mean,
                                  cardiomegaly_from_ecg, chexpert5x200_prompts, class_prototypes, class_scores,
                                  covid_prompts, cross_modal_recall, dense_target_ranks, ecg_prompts,
                                  hypertrophy_from_cxr, modality_to_text_recall, relevant_in_topk,
                                  resample_indices, rsna_prompts, rsum_total, target_ranks,
                                  text_to_image_precision_recall, with_ci, zero_shot, zero_shot_multilabel)

E1, E2, E3 = np.eye(3, dtype=np.float32)


# ---------------------------------------------------------------- retrieval
def _dup_case():
    # 4 rows, texts "A", "b", "a ", "C": lower_ws keys a, b, a, c -> 3 gallery items g0=e1, g1=e2, g2=e3
    texts = ["A", "b", "a ", "C"]
    text_emb = np.stack([E1, E2, E1, E3])            # identical texts -> identical embeddings
    q = np.array([[.8, .6, 0], [.8, .6, 0], [0, .6, .8], [0, .6, .8]], dtype=np.float32)
    return texts, text_emb, q


def test_recall_with_duplicate_texts_hand_computed():
    texts, t, q = _dup_case()
    # q0 -> g0: scores (.8,.6,0) rank 0 | q1 -> g1: (.8,.6,0) rank 1 | q2 -> g0: (0,.6,.8) rank 2
    # q3 -> g2: (0,.6,.8) rank 0  => R@1 = 2/4, R@2 = 3/4, R@3 = 4/4; RSUM(1,2) = 50 + 75
    r = modality_to_text_recall(q, t, texts, ks=(1, 2, 3), rsum_ks=(1, 2), n_boot=0, return_ranks=True)
    assert r["ranks"].tolist() == [0, 1, 2, 0]
    assert (r["R@1"], r["R@2"], r["R@3"]) == (50.0, 75.0, 100.0)
    assert r["rsum"] == 125.0 and r["n_gallery"] == 3 and r["n_queries"] == 4
    assert r["identity"] == "lower_ws" and r["ties"] == "pessimistic"


def test_recall_ties_rules_hand_computed():
    texts, t, q = _dup_case()
    # identity=exact: "A" and "a " are different texts -> 4 gallery items [e1, e2, e1, e3] with an exact tie.
    # q0 -> g0 (.8): scores (.8,.6,.8,0): pessimistic 1, optimistic 0, index 0 (g2 has a larger index)
    # q1 -> g1 (.6): (.8,.6,.8,0): all rules 2          q3 -> g3 (.8): (0,.6,0,.8): 0
    # q2 -> g2 (0):  (0,.6,0,.8): pessimistic 3, optimistic 2 (strictly above: g1, g3), index 2+1 (g0 < g2)
    expected = {"pessimistic": [1, 2, 3, 0], "optimistic": [0, 2, 2, 0], "index": [0, 2, 3, 0]}
    for ties, ranks in expected.items():
        r = modality_to_text_recall(q, t, texts, identity="exact", ties=ties, ks=(1,), rsum_ks=(1,), n_boot=0,
                                    return_ranks=True)
        assert r["ranks"].tolist() == ranks, ties
        assert r["R@1"] == 100 * np.mean(np.array(ranks) < 1)
    # a collapsed model (every embedding equal) scores 0 under the default rule, 100 under optimistic
    same = np.tile(E1, (4, 1))
    assert modality_to_text_recall(same, same, ["x", "y", "z", "w"], ks=(1,), rsum_ks=(1,), n_boot=0)["R@1"] == 0
    assert modality_to_text_recall(same, same, ["x", "y", "z", "w"], ks=(1,), rsum_ks=(1,), n_boot=0,
                                   ties="optimistic")["R@1"] == 100


def test_rsum_total_matches_table2():
    # Table 2 CXR, MEDBind_BD: MIMIC-CXR 44.7/91.0, C5x200 2.4/20.0, Open-I 13.6/39.7 -> RSUM 211.4
    rs = [{"rsum": 44.7 + 91.0}, {"rsum": 2.4 + 20.0}, {"rsum": 13.6 + 39.7}]
    assert rsum_total(rs) == pytest.approx(211.4)


def test_precision_recall_at_k_hand_computed():
    # images: i0=e1 (x), i1=(.6,.8,0) (x), i2=(.8,.6,0) (y), i3=e3 (z)
    img = np.array([E1, [.6, .8, 0], [.8, .6, 0], E3], dtype=np.float32)
    ikeys = ["x", "x", "y", "z"]
    # queries: x=e1 (twice: deduplicated), y=e2, w (no relevant image: skipped)
    txt = np.array([E1, E2, E1, E3], dtype=np.float32)
    qkeys = ["x", "y", "x", "w"]
    r = text_to_image_precision_recall(txt, img, qkeys, ikeys, ks=(1, 2, 3, 5), n_boot=0)
    # qx: order i0(1) i2(.8) i1(.6) i3(0), relevant {i0,i1}: P@1 1, P@2 1/2, P@3 2/3, P@5 2/5; R 1/2,1/2,1,1
    # qy: order i1(.8) i2(.6) {i0,i3}(0), relevant {i2}:   P@1 0, P@2 1/2, P@3 1/3, P@5 1/5; R 0,1,1,1
    assert r["P@1"] == pytest.approx(50) and r["P@2"] == pytest.approx(50) and r["P@3"] == pytest.approx(50)
    assert r["P@5"] == pytest.approx(30)
    assert (r["R@1"], r["R@2"], r["R@3"], r["R@5"]) == pytest.approx((25, 75, 100, 100))
    assert r["n_queries"] == 2 and r["n_skipped_no_relevant"] == 1


def test_topk_tie_rules_hand_computed():
    # gallery scores for the query: (1, .5, .5, .5, 0); relevant = item 3 (one of the three tied at .5)
    g = np.array([[1, 0], [.5, np.sqrt(.75)], [.5, -np.sqrt(.75)], [.5, np.sqrt(.75)], [0, 1]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    gk, qk = [0, 0, 0, 1, 0], [1]
    # K=2: one slot left for 3 tied items: pessimistic 0, optimistic 1, index 0 (items 1, 2 come first)
    # K=4: three slots for 3 tied: every rule 1
    for ties, exp in {"pessimistic": [0, 1], "optimistic": [1, 1], "index": [0, 1]}.items():
        hits, nrel = relevant_in_topk(q, g, qk, gk, (2, 4), ties=ties)
        assert hits[0].tolist() == exp and nrel.tolist() == [1]


def test_cross_modal_recall_hand_computed():
    ecg = np.stack([E1, E2, E3])
    cxr = np.array([[.8, .6, 0], [.8, .6, 0], [.6, 0, .8]], dtype=np.float32)
    # q0 -> e1 rank 0; q1 -> e2: e1 .8 > e2 .6 -> rank 1; q2 -> e3: .8 top -> rank 0  => R@1 2/3, R@2 1
    r = cross_modal_recall(cxr, ecg, ks=(1, 2), n_boot=0)
    assert r["R@1"] == pytest.approx(200 / 3) and r["R@2"] == 100
    # rows 0 and 1 share one ECG (same key, same embedding): q1's partner is now e1 -> R@1 = 1
    r = cross_modal_recall(cxr, np.stack([E1, E1, E3]), gallery_keys=["a", "a", "b"], ks=(1,), n_boot=0)
    assert r["R@1"] == 100 and r["n_gallery"] == 2


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "index"])
def test_chunked_equals_dense_and_topk_path(ties):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(157, 16)).astype(np.float32)
    g = rng.normal(size=(211, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g[5] = g[7]                                        # an exact tie in the gallery
    t = rng.integers(0, 211, 157)
    t[:3] = 5
    dense = dense_target_ranks(q, g, t, ties)
    for chunk in (1, 7, 64, 1000):
        assert np.array_equal(target_ranks(q, g, t, ties=ties, chunk_size=chunk), dense)
        hits, _ = relevant_in_topk(q, g, t, np.arange(211), (1, 5, 10, 300), ties=ties, chunk_size=chunk)
        for j, k in enumerate((1, 5, 10, 300)):
            assert np.array_equal(hits[:, j], (dense < k).astype(int))
    # torch input on the requested device gives the same ranks
    assert np.array_equal(target_ranks(torch.from_numpy(q), torch.from_numpy(g), t, ties=ties, device="cpu"), dense)


def test_retrieval_ci_attached():
    texts, t, q = _dup_case()
    r = modality_to_text_recall(q, t, texts, ks=(1,), rsum_ks=(1,), groups=[1, 1, 2, 3], n_boot=200, seed=3)
    assert r["R@1_lo"] <= r["R@1"] <= r["R@1_hi"] and r["groups"] == "patients" and r["n_boot"] == 200


# ---------------------------------------------------------------- prompts
def test_prompt_sets_sizes_and_sampling():
    p = chexpert5x200_prompts()
    # products: Atelectasis 3*7*10, Cardiomegaly 15, Consolidation 4*6*8, Edema 6*3,
    # Pleural Effusion 6*3*3 with a repeated subtype -> 6*3*2 distinct
    assert {c: len(v) for c, v in p.prompts.items()} == {"Atelectasis": 210, "Cardiomegaly": 15,
                                                         "Consolidation": 192, "Edema": 18, "Pleural Effusion": 36}
    assert "mild subsegmental atelectasis at the mid lung zone" in p.prompts["Atelectasis"]
    assert "small left bilateral pleural effusion" in p.prompts["Pleural Effusion"]   # MedCLIP key order
    c1, c2 = covid_prompts(n=10, seed=1), covid_prompts(n=10, seed=1)
    assert c1.prompts == c2.prompts and len(c1.prompts["COVID"]) == 10 and c1.n_generated == {"COVID": 12}
    pn = covid_prompts("pos_vs_no", n=10, seed=1)                   # the older rule, kept as an option
    assert pn.prompts["Normal"] == ["No " + s for s in c1.prompts["COVID"]]
    assert covid_prompts(n=10, seed=2).prompts != c1.prompts
    # RSNA: 6*4*13 minus the all-empty combination
    assert len(rsna_prompts("positive_only").prompts["Pneumonia"]) == 311
    assert rsna_prompts("fixed").prompts == {"Normal": ["No evidence of pneumonia."],
                                             "Pneumonia": ["Findings suggesting pneumonia."]}
    assert ecg_prompts("ptbxl").prompts["HYP"] == ["This ECG shows Hypertrophy."]
    assert len(ecg_prompts("icbeb").classes) == 9
    with pytest.raises(ValueError):
        rsna_prompts("bogus")


# ---------------------------------------------------------------- zero-shot
def test_zero_shot_prompt_pool_hand_computed():
    e = np.eye(4, dtype=np.float32)
    pe = {"a": e[[0]], "b": e[[1]], "c": e[[2, 3]]}
    from medbind_lib.metrics import PromptSet
    ps = PromptSet("toy", ("a", "b", "c"), {"a": ["pa"], "b": ["pb"], "c": ["pc1", "pc2"]})
    x = np.array([e[0], e[1], e[2], [.5, 0, np.sqrt(.75), 0]], dtype=np.float32)
    y = ["a", "b", "c", "c"]
    # row 3: mean_cosine a .5, c (.866+0)/2 = .433 -> a ;  mean_embedding c .866/sqrt(2) = .612 -> c
    # mean_cosine preds a,b,c,a -> recalls 1, 1, 1/2 -> 83.33 ; mean_embedding a,b,c,c -> 100
    r = zero_shot(x, y, ps, prompt_embeddings=pe, prompt_pool="mean_cosine", n_boot=0, return_predictions=True)
    assert r["predictions"].tolist() == [0, 1, 2, 0] and r["balanced_accuracy"] == pytest.approx(250 / 3)
    r = zero_shot(x, y, ps, prompt_embeddings=pe, prompt_pool="mean_embedding", n_boot=0)
    assert r["balanced_accuracy"] == pytest.approx(100) and r["prompt_pool"] == "mean_embedding"
    assert r["prompt_set"] == "toy"
    np.testing.assert_allclose(class_scores(x[3:], pe, prompt_pool="mean_cosine"), [[.5, 0, np.sqrt(.75) / 2]],
                               atol=1e-6)


def _encode(texts):
    """Fake text encoder: 'No ...' prompts point along e2, every other prompt along e1."""
    return np.array([[0, 1] if s.startswith("No") else [1, 0] for s in texts], dtype=np.float32)


@pytest.mark.parametrize("rule,expected", [("positive_only", 200 / 3), ("pos_vs_no", 250 / 3),
                                           ("fixed", 250 / 3)])
def test_binary_rules_hand_computed(rule, expected):
    # rows: (.6,.8) Normal, (.8,.6) Pneumonia, (.6,-.8) Normal, (-.6,.8) Normal
    x = np.array([[.6, .8], [.8, .6], [.6, -.8], [-.6, .8]], dtype=np.float32)
    y = [0, 1, 0, 0]
    # positive_only (cos to e1 > 0): preds 1,1,1,0 -> Normal 1/3, Pneumonia 1 -> 66.67
    # pos_vs_no / fixed (e1 vs e2): preds 0,1,1,0 -> Normal 2/3, Pneumonia 1 -> 83.33
    r = zero_shot(x, y, rsna_prompts(rule), encode_text=_encode, n_boot=0)
    assert r["balanced_accuracy"] == pytest.approx(expected)
    assert r["binary_rule"] == rule and r["prompt_set"] == f"medclip_rsna/{rule}"


def test_table_a1_prompts_and_auroc_beside_balanced_accuracy():
    ps = rsna_prompts()                                               # default: Table A.1's pair
    assert ps.prompts == {"Normal": ["No evidence of pneumonia."], "Pneumonia": ["Findings suggesting pneumonia."]}
    cv = covid_prompts()
    assert cv.binary_rule == "table_a1" and len(cv.prompts["COVID"]) == 10
    assert cv.prompts["Normal"][:2] == ["Heart size is normal and the lungs are clear.",
                                        "The heart is normal in size and contour."]
    assert not any(p.startswith("No ") and p[3:] in cv.prompts["COVID"] for p in cv.prompts["Normal"])
    ecg = ecg_prompts("ptbxl").prompts
    assert ecg["NORM"] == ["This ECG shows Normal sinus rhythm."] and ecg["STTC"] == ["This ECG shows STT Changes."]
    # scores s(Pneumonia) - s(Normal) with the fake encoder: -.2, .2, 1.4, -1.4; y = 0, 1, 0, 0
    # balanced accuracy (argmax): preds 0, 1, 1, 0 -> 83.33; AUROC: the positive (.2) beats 2 of 3 negatives
    x = np.array([[.6, .8], [.8, .6], [.6, -.8], [-.6, .8]], dtype=np.float32)
    r = zero_shot(x, [0, 1, 0, 0], ps, encode_text=_encode, n_boot=200, groups=["a", "b", "c", "d"])
    assert r["balanced_accuracy"] == pytest.approx(250 / 3) and r["auroc"] == pytest.approx(200 / 3)
    assert r["auroc_lo"] <= r["auroc"] <= r["auroc_hi"]


def test_zero_shot_multilabel_protocol():
    ps = ecg_prompts("ptbxl")
    e = np.eye(5, dtype=np.float32)
    pe = {c: e[[i]] for i, c in enumerate(ps.classes)}
    x = np.array([e[0], e[1], e[2], e[0] + e[3]], dtype=np.float32)
    ym = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]])
    # single-label rows 0, 1, 3: preds 0, 1, (tie 0/3 -> argmax first = 0): recalls NORM 1, MI 1, CD 0 -> 66.67
    r = zero_shot_multilabel(x, ym, ps, prompt_embeddings=pe, n_boot=0)
    assert r["n_single_label"] == 3 and r["balanced_accuracy"] == pytest.approx(200 / 3)
    assert r["n_labelled"] == 4 and "HYP" not in r["auroc_per_class"]


# ---------------------------------------------------------------- cross-modal prototypes
def test_crossmodal_prototypes_hand_computed():
    sup = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [.6, .8]], dtype=np.float32)
    lab = [1, 1, 0, 0, 0]
    # class 1: mean (1,0); class 0: mean (.2, .9333) / norm .9545 = (.2095, .9778)
    p = class_prototypes(sup, lab).numpy()
    np.testing.assert_allclose(p, [[.2 / .95452, .93333 / .95452], [1, 0]], atol=1e-4)
    q = np.array([[.8, .6], [.6, .8], [1, 0]], dtype=np.float32)
    # q0: class1 .8 vs class0 (.16+.56)/.9545 = .754 -> 1; q1: .6 vs .908 -> 0; q2: 1 vs .21 -> 1
    # truth 1, 0, 0 -> recall class0 1/2, class1 1/1 -> 75
    r = hypertrophy_from_cxr(q, [1, 0, 0], sup, lab, n_boot=0)
    assert r["balanced_accuracy"] == pytest.approx(75) and r["support_modality"] == "ECG"
    assert cardiomegaly_from_ecg(q, [1, 0, 0], sup, lab, n_boot=0)["task"] == "Cardiomegaly vs other"
    with pytest.raises(ValueError):
        class_prototypes(sup, [1, 1, 1, 1, 1])


# ---------------------------------------------------------------- bootstrap
def test_balanced_accuracy_hand_computed():
    # class 0: 2/3 correct, class 1: 1/1 -> (2/3 + 1)/2
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(5 / 6)


def test_bootstrap_patients_not_rows():
    # 10 patients x 20 identical rows; 5 patients all 1, 5 all 0. Row bootstrap sd ~ sqrt(.25/200) = .035,
    # patient bootstrap sd ~ sqrt(.25/10) = .16: the patient interval must be much wider.
    groups = np.repeat(np.arange(10), 20)
    v = (groups < 5).astype(float)
    rows = bootstrap_mean(v, None, n_boot=500, seed=0)
    pats = bootstrap_mean(v, groups, n_boot=500, seed=0)
    assert pats["hi"] - pats["lo"] > 3 * (rows["hi"] - rows["lo"])
    assert pats["n_groups"] == 10 and rows["n_groups"] == 200
    for idx in resample_indices(groups, n_boot=20, seed=1):    # every replicate = whole patients, 10 draws
        assert len(idx) == 200 and all(np.sum(groups[idx] == g) % 20 == 0 for g in range(10))


def test_bootstrap_deterministic_contains_value_and_vectorised_matches_loop():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 300)
    v = rng.random(300)
    a = with_ci(np.mean, v, groups=groups, n_boot=300, seed=7)
    b = with_ci(np.mean, v, groups=groups, n_boot=300, seed=7)
    c = bootstrap_mean(v, groups, n_boot=300, seed=7)
    assert a == b and a["lo"] <= a["value"] <= a["hi"] and a["seed"] == 7 and a["n_boot"] == 300
    assert (c["lo"], c["hi"]) == pytest.approx((a["lo"], a["hi"]), abs=1e-12)
    assert with_ci(np.mean, v, groups=groups, n_boot=300, seed=8)["lo"] != a["lo"]
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < .7, y, rng.integers(0, 3, 300))
    loop = with_ci(lambda t, q: balanced_accuracy(t, q, 3), y, p, groups=groups, n_boot=200, seed=1)
    vec = bootstrap_balanced_accuracy(y, p, groups, 3, n_boot=200, seed=1)
    assert (vec["value"], vec["lo"], vec["hi"]) == pytest.approx((loop["value"], loop["lo"], loop["hi"]), abs=1e-12)
