"""The mechanism measures on planted toys where the answer is known by hand, and the results page's verdicts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medbind_lib.reports import mechanisms as M
from medbind_lib.reports import results_page as RP


def test_recall_at_k_hand_computed():
    sim = np.array([[0.9, 0.1, 0.5, 0.2],
                    [0.1, 0.2, 0.3, 0.4]])
    rel = np.array([[False, False, True, True],       # order 0, 2, 3, 1 -> relevant 2 and 3 at positions 2 and 3
                    [True, False, False, False]])     # relevant item ranked last
    assert M.recall_at_k(sim, rel, 2).tolist() == [50.0, 0.0]
    assert M.recall_at_k(sim, rel, 3).tolist() == [100.0, 0.0]
    assert M.recall_at_k(sim, rel, 4).tolist() == [100.0, 100.0]


def _records():
    t = pd.Timestamp("2150-01-01")
    ehr = pd.DataFrame({"record_id": ["e1", "e2", "e3"], "subject_id": [1, 2, 3], "hadm_id": [11, 12, 13],
                        "time": [t, t, t], "split": ["test"] * 3})
    # patient 1: one CXR within 30 days, one 100 days later (not a positive); patient 2: one within; 3: none
    cxr = pd.DataFrame({"record_id": ["c1", "c1b", "c2", "c4"], "subject_id": [1, 1, 2, 4],
                        "image_record_id": ["i1", "i1b", "i2", "i4"],
                        "time": [t + pd.Timedelta(days=3), t + pd.Timedelta(days=100), t - pd.Timedelta(days=10), t],
                        "split": ["test"] * 4})
    return ehr, cxr


def _z(ehr_vecs, cxr_vecs):
    e = {"hadm_id": np.array([11, 12, 13]), "emb": np.array(ehr_vecs, float)}
    c = {"record_id": np.array(["i1", "i1b", "i2", "i4"]), "emb": np.array(cxr_vecs, float),
         "text_emb": np.array(cxr_vecs, float)}
    return e, c


def test_lp_retrieval_uses_lp_positives_and_both_directions():
    ehr, cxr = _records()
    # planted: each EHR record points exactly at its own positive CXR record
    e, c = _z([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 1]])
    out = M.lp_retrieval(e, c, ehr, cxr, "test", theta_days=30, k=1)
    r, pat = out["ehr_to_cxr"]
    assert r.tolist() == [100.0, 100.0] and pat.tolist() == ["1", "2"]     # patient 3 has no positive: no query
    r, pat = out["cxr_to_ehr"]
    assert r.tolist() == [100.0, 100.0] and pat.tolist() == ["1", "2"]     # c1b is outside theta: no query
    # swapped: EHR record 1 points at patient 2's CXR -> its own positive is ranked 2nd of 4
    e, c = _z([[0, 1, 0], [1, 0, 0], [0, 0, 1]], [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 1]])
    r, _ = M.lp_retrieval(e, c, ehr, cxr, "test", theta_days=30, k=1)["ehr_to_cxr"]
    assert r.tolist() == [0.0, 0.0]
    assert M.lp_retrieval(e, c, ehr, cxr, "test", theta_days=200, k=1)["cxr_to_ehr"][0].shape == (3,)


def test_la_retrieval_finds_own_record_from_the_other_modalities():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8))
    z = {"mask_names": np.array(["icd", "drug", "demo"]), "subject_id": np.arange(6),
         "mask": np.array([[1, 1, 1]] * 5 + [[1, 0, 0]], bool)}
    for i, n in enumerate(["icd", "drug", "demo"]):
        z[f"{n}_emb"] = base + 0.01 * rng.normal(size=base.shape)           # aligned: every modality = the record
    out = M.la_retrieval(z, "ehr", np.arange(6), k=1)
    # record 5 has icd only: no other modality -> neither a query nor in the gallery
    assert {k: v[0].tolist() for k, v in out.items()} == {"icd": [100.0] * 5, "drug": [100.0] * 5,
                                                          "demo": [100.0] * 5}
    z["drug_emb"] = rng.normal(size=base.shape)                             # drug no longer aligned
    out = M.la_retrieval(z, "ehr", np.arange(6), k=1)
    # icd and demo still share an aligned partner in each other's gallery mean; drug has none
    assert out["drug"][0].mean() < min(out["icd"][0].mean(), out["demo"][0].mean())


def test_results_page_verdicts_and_missing_tables(tmp_path):
    assert RP._verdict(1.0, 3.0, 2.0, 1) == "reproduces"
    assert RP._verdict(-3.0, -1.0, -2.0, 1) == "reversed"
    assert RP._verdict(-3.0, -1.0, -2.0, -1) == "reproduces"
    assert RP._verdict(-1.0, 1.0, 0.5, 1).startswith("not shown")
    assert RP._verdict(float("nan"), float("nan"), 0.1, 1).startswith("direction only: as the paper")
    pd.DataFrame({"item": ["CXR->ECG R@10 (MIMIC-PAIR test)", "CXR->ECG R@1 (MIMIC-PAIR test)"],
                  "metric": ["recall"] * 2, "system_a": ["medbind_bd"] * 2, "system_b": ["medbind_nm"] * 2,
                  "n_pretrain_seeds": [3, 3], "n_patients": [50, 50], "a_minus_b": [4.0, 1.0], "lo": [1.0, -1.0],
                  "hi": [7.0, 3.0], "seed_sd": [1.5, 0.5]}).to_csv(tmp_path / "fig2_seeds_paired.csv", index=False)
    rows = RP.claim_rows(tmp_path, RP.CLAIMS[:2])
    first = rows.iloc[0]
    assert first["verdict"] == "reproduces" and first["rests_on"] == "3 pre-training seeds, 50 test patients"
    assert first["measure"].startswith("CXR->ECG R@10") and len(rows) == 2          # R@1 row not selected
    assert rows.iloc[1]["verdict"] == "no row in this run"                          # no zoo row in the table
    page = RP.render(rows, "default", {"git_commit": "abcdef1234567"})
    assert "`abcdef1`" in page and "+4 [+1.0, +7.0], seed SD 1.5" in page
    assert RP.claim_rows(tmp_path / "none", RP.CLAIMS[:1]).iloc[0]["verdict"] == "not run (table missing)"
    # MEDCSP's tables name the rows a / b; Fig. 7's claim is a drop (sign -1): an ablation below full reproduces
    pd.DataFrame({"set": ["covid", "covid"], "metric": ["f1", "auroc"], "a": ["medcsp_a", "medcsp_a"],
                  "b": ["medcsp", "medcsp"], "value_a": [40.0, 60.0], "value_b": [50.0, 70.0],
                  "a_minus_b": [-10.0, -10.0], "lo": [-15.0, -14.0], "hi": [-5.0, -6.0], "n_patients": [180, 180],
                  "n_pretrain_seeds": [1, 1]}).to_csv(tmp_path / "medcsp_fig7_ablations.csv", index=False)
    fig7 = RP.claim_rows(tmp_path, [c for c in RP.CLAIMS if c.table == "medcsp_fig7_ablations"])
    assert len(fig7) == 1 and fig7.iloc[0]["measure"] == "covid f1" and fig7.iloc[0]["verdict"] == "reproduces"
    assert fig7.iloc[0]["rests_on"] == "ONE pre-training run, 180 test patients"


def test_mechanism_comparisons_differ_by_one_term():
    from medbind_lib import registry

    terms = {"L_P": "lp", "L_D": "ld", "L_A": "la"}
    for term, a, b in M.COMPARISONS:
        la = set(registry.VARIANTS[a].terms)
        lb = set() if b == "medcsp_untrained" else set(registry.VARIANTS[b].terms)
        assert terms[term] in la - lb, (term, a, b)


def test_ld_rank_correlation_over_cross_source_pairs_of_other_patients():
    """Planted: the record embeddings ARE the patients' histories, so embedding and history cosines agree on every
    pair of different patients (rho 1); same-patient pairs are left out; shuffled embeddings lose it."""
    t = pd.Timestamp("2150-01-01")
    hist = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1.0]])
    subj = np.array([1, 2, 3, 4])
    ehr = pd.DataFrame({"subject_id": [1, 2, 3, 4], "hadm_id": [11, 12, 13, 14], "time": [t] * 4,
                        "split": ["test"] * 4})
    cxr = pd.DataFrame({"subject_id": [1, 2, 3, 4], "image_record_id": ["a", "b", "c", "d"], "time": [t] * 4,
                        "split": ["test"] * 4})
    noise = np.array([[0.1, 0, 0, 0], [0, 0.2, 0, 0], [0, 0, 0.3, 0], [0, 0, 0, 0.05]])
    ez = {"hadm_id": np.array([11, 12, 13, 14]), "emb": hist + noise}
    cz = {"record_id": np.array(["a", "b", "c", "d"]), "emb": hist, "text_emb": hist}
    rho = M.ld_rank_correlation(ez, cz, ehr, cxr, "test", hist, subj)
    assert rho > 0.8
    cz_shuffled = {**cz, "emb": hist[[2, 3, 0, 1]], "text_emb": hist[[2, 3, 0, 1]]}
    assert M.ld_rank_correlation(ez, cz_shuffled, ehr, cxr, "test", hist, subj) < rho
    with pytest.raises(ValueError, match="cross-source pairs"):
        M.ld_rank_correlation(ez, cz, ehr, cxr, "valid", hist, subj)


def test_label_reference_recall_planted():
    """ECG labels a copy of distinct CXR label vectors: each pair is identifiable (R@1 100); labels independent of
    the CXR: about chance."""
    codes = np.array([[int(b) for b in f"{i:05b}"] for i in range(32)], float)
    assert M.label_reference_recall(codes, codes, k=1) == 100.0
    rng = np.random.default_rng(0)
    cxr, ecg = rng.random((200, 4)) < 0.5, rng.random((200, 3)) < 0.5
    assert M.label_reference_recall(cxr, ecg, k=10) < 20.0                  # chance 5 %; 8 ECG label patterns
