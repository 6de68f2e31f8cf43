"""MEDCSP case studies (Figures 8 and 9): grouping scores, patient picking, triplet picking, plots.

All inputs are synthetic, built here; silhouettes are checked on hand-computed points.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import silhouette_score

from medbind_lib.reports import case_studies as cs


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(by: str, n_pat=4, per=6, d=16, noise=0.05, seed=0):
    """Points of ``n_pat`` patients x (image, report): tight around a per-patient direction (by="patient")
    or a per-modality direction (by="modality")."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(max(n_pat, 2), d)))
    patient = np.repeat([f"{10 + i}" for i in range(n_pat)], 2 * per)
    modality = np.tile(np.repeat([cs.IMAGE, cs.REPORT], per), n_pat)
    idx = np.repeat(np.arange(n_pat), 2 * per) if by == "patient" else (modality == cs.REPORT).astype(int)
    emb = _unit(centres[idx] + noise * rng.normal(size=(len(patient), d)))
    return {"emb": emb, "patient": patient, "modality": modality,
            "record_id": np.array([f"r{i}" for i in range(len(patient))])}


@pytest.mark.parametrize("by", ["patient", "modality"])
def test_grouping_scores_follow_the_clusters_and_match_sklearn(by):
    p = _clustered(by)
    s = cs.grouping_scores(p["emb"], p["patient"], p["modality"], k=3)
    other = "modality" if by == "patient" else "patient"
    assert s[f"silhouette_{by}"] > 0.8 and s[f"knn_{by}"] == 1.0
    assert s[f"silhouette_{other}"] < 0.1 and s[f"knn_{other}"] < 0.6
    for lab in ("patient", "modality"):
        ref = silhouette_score(p["emb"], p[lab], metric="cosine")
        assert s[f"silhouette_{lab}"] == pytest.approx(ref, abs=1e-9)
    assert (s["n_points"], s["n_patients"], s["n_modalities"], s["k"]) == (48, 4, 2, 3)


def test_silhouette_hand_computed_scale_invariant_singleton_zero():
    # A = {(1,0), (0,1)}, B = {(-1,0), (0,-1)}; cosine distances: 1 within a class, 2 and 1 across: for every
    # point a = 1, b = (2 + 1) / 2, s = (b - a) / b = 1/3
    x = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    np.testing.assert_allclose(cs.silhouette_samples_cosine(x * [[1], [3], [0.5], [2]], list("AABB")), [1 / 3] * 4)
    # a singleton cluster scores 0; (1,0) now has b = 1 - cos 45 deg to the singleton: s = (0.2929 - 1) / 1
    x5 = np.vstack([x, [1, 1]])
    s5 = cs.silhouette_samples_cosine(x5, list("AABBC"))
    assert s5[-1] == 0.0 and s5[0] == pytest.approx(1 - np.cos(np.pi / 4) - 1)
    with pytest.raises(ValueError):
        cs.silhouette_samples_cosine(x5, np.zeros(5))


def test_knn_purity_hand_computed():
    ang = np.deg2rad([0, 15, 35, 100, 120])
    x = np.c_[np.cos(ang), np.sin(ang)]
    lab = np.array(["A", "A", "B", "B", "B"])
    # k=2 neighbours: p0 -> p1 p2, p1 -> p0 p2, p2 -> p1 p0, p3 -> p4 p2, p4 -> p3 p2
    np.testing.assert_allclose(cs.knn_purity_samples(x, lab, k=2), [0.5, 0.5, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(cs.knn_purity_samples(x, lab, k=1), [1, 1, 0, 1, 1])
    assert cs.knn_chance(lab) == pytest.approx((2 * 1 / 4 + 3 * 2 / 4) / 5)
    with pytest.raises(ValueError):
        cs.knn_purity_samples(x, lab, k=5)


def test_knn_ties_go_to_the_lower_index():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])       # p1 and p2 equidistant from p0
    assert cs.knn_purity_samples(x, np.array(["a", "a", "b"]), k=1)[0] == 1.0
    assert cs.knn_purity_samples(x, np.array(["a", "b", "a"]), k=1)[0] == 0.0


def test_grouping_table_and_paired_difference():
    a, b = _clustered("modality"), _clustered("patient")
    t = cs.grouping_table({"A only": a, "full": b}, k=3, n_boot=50)
    assert len(t) == 8 and set(t["variant"]) == {"A only", "full"}
    assert ((t["lo"] <= t["value"] + 1e-12) & (t["value"] <= t["hi"] + 1e-12)).all()
    full_sil = t.query("variant == 'full' and metric == 'silhouette' and by == 'patient'")["value"].item()
    assert full_sil == pytest.approx(cs.grouping_scores(b["emb"], b["patient"], b["modality"])["silhouette_patient"])
    d = cs.grouping_difference(a, b, k=3, n_boot=50).set_index(["metric", "by"])
    assert d.loc[("silhouette", "patient"), "diff"] > 0.5 and d.loc[("knn", "modality"), "diff"] < -0.3
    bad = dict(b, record_id=b["record_id"][::-1])
    with pytest.raises(ValueError, match="same points"):
        cs.grouping_difference(a, bad)


def _cxr_file():
    #               subject  images (one study each)
    subj = ["10"] * 3 + ["9"] * 3 + ["20"] * 4 + ["30"] * 1
    split = ["test"] * 3 + ["test"] * 3 + ["test"] * 2 + ["valid"] * 2 + ["test"]
    n = len(subj)
    rng = np.random.default_rng(0)
    return {"subject_id": np.array(subj), "split": np.array(split),
            "record_id": np.array([f"img{i}" for i in range(n)]),
            "emb": _unit(rng.normal(size=(n, 8))), "text_emb": _unit(rng.normal(size=(n, 8)))}


def test_pick_top_patients_counts_the_split_and_breaks_ties_by_numeric_id():
    z = _cxr_file()
    assert cs.pick_top_patients(z, n=2) == ["9", "10"]                      # 3 test studies each; 9 < 10
    assert cs.pick_top_patients(z, n=1, split=None) == ["20"]               # 4 over both splits
    assert cs.pick_top_patients(z, n=3, split="test") == ["9", "10", "20"]
    with pytest.raises(ValueError):
        cs.pick_top_patients(z, n=5, split="valid")


def test_holdout_counts_studies_not_images_and_reports_are_deduplicated():
    z = {"subject_id": np.array(["1", "1", "1", "2", "2"]), "study_id": np.array(["s1", "s1", "s2", "s3", "s4"]),
         "record_id": np.array(["a", "b", "c", "d", "e"]), "split": np.array(["holdout"] * 5),
         "emb": np.eye(5), "text_emb": np.eye(5)[[0, 0, 2, 3, 4]]}
    assert cs.pick_top_patients(z, n=1, split=None) == ["1"]                # 2 studies each, tie -> 1
    p = cs.cxr_points(z, ["1"])
    assert (p["modality"] == cs.IMAGE).sum() == 3 and (p["modality"] == cs.REPORT).sum() == 2
    assert list(p["record_id"][p["modality"] == cs.REPORT]) == ["a", "c"]


def test_ehr_points_drop_absent_modalities():
    z = {"subject_id": np.array(["1", "1", "2"]), "split": np.array(["test"] * 3), "hadm_id": np.array([5, 6, 7]),
         "record_id": np.array(["e5", "e6", "e7"]), "emb": np.eye(3),
         "note_emb": np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]]),
         "mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool),
         "mask_names": np.array(["icd", "drug", "demo", "temporal", "note"])}
    assert list(cs.ehr_points(z, [1])["record_id"]) == ["e5", "e6"]          # int ids match text ids
    assert list(cs.ehr_points(z, ["1"], key="note_emb")["record_id"]) == ["e5"]


def _histories():
    rows = {"1": [], "3": [0, 1, 2], "4": [0, 1, 2], "5": [4], "6": [4], "7": [0, 5]}
    subj = list(rows)
    h = np.zeros((len(subj), 6))
    for i, s in enumerate(subj):
        h[i, rows[s]] = 1
    return sparse.csr_matrix(h), subj


def test_pick_overlap_triplet_on_a_hand_made_history():
    h, subj = _histories()
    t = cs.pick_overlap_triplet(h, subj)
    # (3,4) and (5,6) are both identical (cosine 1); (3,4) share 3 codes. Third: 5 and 6 overlap neither ->
    # smaller id; subject 1 (empty history) is not eligible although it "overlaps" with nobody.
    assert t["pair"] == ("3", "4") and t["pair_shared"] == 3 and t["pair_cosine"] == pytest.approx(1.0)
    assert t["third"] == "5" and t["third_cosine"] == (0.0, 0.0) and t["n_candidates"] == 5
    t2 = cs.pick_overlap_triplet(h, pd.DataFrame({"subject_id": [int(s) for s in subj]}), candidates=[4, 5, 6, 7])
    assert t2["pair"] == ("5", "6") and t2["third"] == "4"
    # point counts (case_candidates' values) break ties after the overlap: more points first
    t3 = cs.pick_overlap_triplet(h, subj, candidates={"3": 2, "4": 2, "5": 2, "6": 9, "7": 2})
    assert t3["pair"] == ("3", "4") and t3["third"] == "6"                   # shared codes beat points
    t4 = cs.pick_overlap_triplet(h, subj, candidates={"4": 2, "5": 2, "6": 2, "7": 9})
    assert t4["pair"] == ("5", "6") and t4["third"] == "7"
    even = sparse.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]))
    t5 = cs.pick_overlap_triplet(even, ["1", "2", "3", "4", "5"], candidates={"1": 1, "2": 1, "3": 5, "4": 5, "5": 1})
    assert t5["pair"] == ("3", "4") and t5["third"] == "1"
    with pytest.raises(ValueError, match="non-empty diagnosis history"):
        cs.pick_overlap_triplet(h, subj, candidates=["1", "3", "5"])
    with pytest.raises(ValueError, match="share"):                      # three disjoint histories
        cs.pick_overlap_triplet(sparse.eye(3), ["1", "2", "3"])
    with pytest.raises(ValueError, match="overlaps less"):                # nobody overlaps less than the pair
        cs.pick_overlap_triplet(sparse.csr_matrix(np.ones((3, 2))), ["1", "2", "3"])


def test_patient_histories_or_over_all_records():
    icd = sparse.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]]))
    ehr = pd.DataFrame({"subject_id": [20, 3, 20, 5]})
    h, subj = cs.patient_histories(icd, ehr)
    assert list(subj) == ["3", "5", "20"]
    np.testing.assert_array_equal(h.toarray(), [[0, 1, 0], [0, 0, 0], [1, 0, 1]])


def test_case_candidates_need_both_sources():
    ehr = {"subject_id": np.array(["1", "2", "3"]), "split": np.array(["train", "test", "test"])}
    cxr = {"subject_id": np.array(["2", "3", "4"]), "split": np.array(["test", "valid", "test"]),
           "record_id": np.array(["a", "b", "c"])}
    ehr["subject_id"] = np.array(["3", "2", "3"])
    assert cs.case_candidates(ehr, cxr) == {"2": 2, "3": 3}                  # EHR records + CXR studies
    assert cs.case_candidates(ehr, cxr, cxr_split="test") == {"2": 2}


def test_triplet_similarity_hand_computed_and_modality_balanced():
    e = np.array([[1.0, 0, 0], [1, 0, 0], [0.6, 0.8, 0], [0, 1, 0]])
    patient = np.array(["a", "b", "b", "c"])
    modality = np.array([cs.EHR, cs.EHR, cs.IMAGE, cs.EHR])
    s = cs.triplet_similarity(e, patient, modality, ("a", "b"), "c")
    # a-b: EHR-EHR block 1.0, EHR-image block 0.6 -> balanced 0.8, plain (1 + 0.6) / 2 = 0.8
    assert s["pair"] == pytest.approx(0.8) and s["blocks"]["pair"][(cs.EHR, cs.EHR)] == pytest.approx(1.0)
    assert s["a_third"] == pytest.approx(0.0) and s["b_third"] == pytest.approx((0.0 + 0.8) / 2)
    assert s["margin"] == pytest.approx(0.8 - 0.2) and s["n_points"] == {"a": 1, "b": 2, "c": 1}
    with pytest.raises(ValueError, match="no points"):
        cs.triplet_similarity(e, patient, modality, ("a", "b"), "z")


def test_project_2d_is_pca_up_to_sign_and_deterministic():
    from sklearn.decomposition import PCA

    p = _clustered("patient")
    y = cs.project_2d(p["emb"])
    ref = PCA(2, svd_solver="full").fit_transform(p["emb"])
    assert y.shape == (48, 2)
    np.testing.assert_allclose(np.abs(y), np.abs(ref), atol=1e-8)
    np.testing.assert_array_equal(y, cs.project_2d(p["emb"].copy()))
    with pytest.raises(ValueError):
        cs.project_2d(p["emb"], method="umap")


def test_plots_return_one_axis_per_panel():
    import matplotlib.pyplot as plt

    a, b = _clustered("modality"), _clustered("patient")
    scores = {k: cs.grouping_scores(p["emb"], p["patient"], p["modality"], k=3) for k, p in (("A", a), ("full", b))}
    fig = cs.plot_fig8({"row": {"A": a, "full": b}}, {"row": scores})
    assert len(fig.axes) == 2 and "silhouette" in fig.axes[0].get_title() and fig.axes[0].get_ylabel() == "row"
    plt.close(fig)
    tri = {"pair": ("10", "11"), "third": "12", "pair_cosine": 1.0, "third_cosine": (0.0, 0.1)}
    sims = {"full": cs.triplet_similarity(b["emb"], b["patient"], b["modality"], ("10", "11"), "12")}
    fig = cs.plot_fig9({"r1": {"A": a, "full": b, "x": b}, "r2": {"full": b}}, {"r1": tri, "r2": tri},
                       {"r1": sims})
    assert len(fig.axes) == 6 and "margin" in fig.axes[1].get_title() and "margin" not in fig.axes[3].get_title()
    assert "history cosine A-B 1.00" in fig.axes[3].get_ylabel() and not fig.axes[4].axison   # r2 has one panel
    plt.close(fig)
