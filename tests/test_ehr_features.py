"""MEDCSP's EHR code and temporal features against hand-computed values: training-split vocabularies,
multi-hot rows, diagnosis histories from training admissions only, the demographics vector, and the
FIDDLE-style tensor (window, bins, means, z-scores, missingness, items chosen on the training split)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medbind_lib.ehr.codes import (build_vocab, demographics_matrix, diagnosis_histories, drug_tokens, icd_tokens,
                                   multi_hot)
from medbind_lib.ehr.temporal import (TemporalSpec, bin_events, fit_stats, select_items, stay_events,
                                      temporal_tensor)
from medbind_lib.quality import QualityLog

DX = pd.DataFrame({"subject_id": [1, 1, 1, 2, 2, 3], "hadm_id": [10, 10, 11, 20, 20, 30],
                   "icd_code": ["I509", "I50.9", "4280", "J189", "I509", "J189"], "icd_version": [10, 10, 9, 10, 10, 10]})


def test_icd_tokens_versions_apart_and_levels():
    t = icd_tokens(DX)
    assert sorted(t[t.hadm_id == 10]["token"]) == ["10:I509"]              # "I50.9" == "I509", one row
    assert "9:4280" in set(t["token"]) and "10:4280" not in set(t["token"])
    assert set(icd_tokens(DX, "category")["token"]) == {"10:I50", "9:428", "10:J18"}
    with pytest.raises(ValueError, match="icd_level"):
        icd_tokens(DX, "chapter")


def test_vocab_from_training_admissions_and_multi_hot():
    t = icd_tokens(DX)
    vocab = build_vocab(t, train_hadm_ids=[10, 20], min_count=2)         # I509 in 10 and 20; J189 only in 20
    assert vocab == ["10:I509"]
    assert build_vocab(t, [10, 20], 1) == ["10:I509", "10:J189"]          # 9:4280 is in a non-training admission
    q = QualityLog()
    m = multi_hot(t, [30, 10, 20], ["10:I509", "10:J189"], quality=q).toarray()
    np.testing.assert_array_equal(m, [[0, 1], [1, 0], [1, 1]])
    assert q.count(reason="token outside the training vocabulary (ignored)") == 0
    multi_hot(t, [11], ["10:I509"], quality=q)
    assert q.count(reason="token outside the training vocabulary (ignored)") == 1   # 9:4280


def test_diagnosis_histories_use_training_admissions_only():
    t = icd_tokens(DX)
    h = diagnosis_histories(t, train_hadm_ids=[10, 20], subjects=[1, 2, 3],
                            vocab=["9:4280", "10:I509", "10:J189"]).toarray()
    # subject 1: admission 11 (9:4280) is not a training admission; subject 3 has none
    np.testing.assert_array_equal(h, [[0, 1, 0], [0, 1, 1], [0, 0, 0]])
    # subject ids as text (how notebook 01's linked frames hold them) give the same rows
    h_str = diagnosis_histories(t, [10, 20], ["1", "2", "3"], ["9:4280", "10:I509", "10:J189"]).toarray()
    np.testing.assert_array_equal(h_str, h)
    with pytest.raises(ValueError, match="integers"):
        diagnosis_histories(t, [10], ["x1"], ["10:I509"])


def test_drug_tokens_keys_and_missing_counted():
    rx = pd.DataFrame({"subject_id": [1, 1, 1, 2], "hadm_id": [10, 10, 10, None],
                       "drug": ["Furosemide ", "furosemide", None, "Heparin"], "gsn": ["008208", None, "1", "2"]})
    q = QualityLog()
    d = drug_tokens(rx, "drug", q)
    assert d["token"].tolist() == ["furosemide"] and q.count(stage="drugs") == 2
    assert sorted(drug_tokens(rx, "gsn")["token"]) == ["1", "8208"]
    with pytest.raises(ValueError, match="drug_key"):
        drug_tokens(rx, "atc")


def test_demographics_matrix_fit_on_training_rows():
    adm = pd.DataFrame({"age": [20.0, 40.0, 60.0, 95.0], "gender": ["F", "M", "F", "X"],
                        "admission_type": ["URGENT", "URGENT", "ELECTIVE", "NEWTYPE"]})
    x, names = demographics_matrix(adm, train_mask=[True, True, True, False], max_categories=2)
    f = pd.DataFrame(x, columns=names)
    sd = np.std([20.0, 40.0, 60.0])
    np.testing.assert_allclose(f["age_z"], (np.array([20, 40, 60, 95]) - 40) / sd, rtol=1e-6)
    assert f.loc[3, "age_90+"] == 1 and f.loc[0, "age_18+"] == 1 and f.loc[1, "age_40+"] == 1
    assert f.loc[3, "gender=other"] == 1 and f.loc[3, "admission_type=other"] == 1    # unseen -> other
    assert f.loc[0, "admission_type=URGENT"] == 1 and (f.filter(like="gender=").sum(1) == 1).all()


def _events():
    t0 = pd.Timestamp("2150-01-01 00:00")
    stays = pd.DataFrame({"stay_id": [1, 2, 3], "intime": [t0, t0, t0]})
    h = lambda x: t0 + pd.Timedelta(hours=x)  # noqa: E731
    ev = pd.DataFrame({"stay_id": [1, 1, 1, 2, 2, 3, 1, 1],
                       "itemid": [100, 100, 200, 100, 300, 100, 100, 100],
                       "time": [h(0.2), h(0.7), h(1.5), h(2.0), h(0.1), h(3.9), h(-1), h(4.0)],
                       "value": [1.0, 3.0, 10.0, 5.0, 7.0, 9.0, 99.0, 99.0]})
    return stays, ev


def test_temporal_tensor_hand_computed():
    stays, ev = _events()
    spec = TemporalSpec(hours=4, bin_hours=1, min_stay_frac=0.6)
    b = bin_events(ev, stays, spec)
    assert len(b) == 6                                                     # -1 h and 4 h are outside [0, 4)
    items = select_items(b, train_stay_ids=[1, 2], spec=spec)
    assert items == [100]                                                  # 200 and 300: 1 of 2 training stays
    assert select_items(b, [1, 2], TemporalSpec(4, 1, 0.5)) == [100, 200, 300]
    stats = fit_stats(b, [1, 2], items)
    # training bin means of item 100: stay 1 bin 0 = (1 + 3) / 2 = 2, stay 2 bin 2 = 5 -> mean 3.5, sd 1.5
    assert stats["mean"] == [3.5] and stats["sd"] == [1.5]
    v, m = temporal_tensor(b, [3, 1, 2], stats, spec)
    assert v.shape == m.shape == (3, 4, 1)
    np.testing.assert_array_equal(m[:, :, 0], [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_allclose(v[:, :, 0], [[0, 0, 0, (9 - 3.5) / 1.5], [-1, 0, 0, 0], [0, 0, 1, 0]], rtol=1e-6)


def test_stay_events_on_the_real_demo(realdata):
    """Labs join the ICU stay of their admission whose window holds them (checked against a plain merge);
    outputevents keep their stay; the binned tensor of the demo's stays has the expected shape."""
    from medbind_lib.datasets.mimic_icu import read_icustays

    root = realdata / "mimic-iv-clinical-database-demo-2.2"
    stays = read_icustays(root)
    q = QualityLog()
    ev = stay_events(root, stays, sources=("labevents", "outputevents", "procedureevents"),
                     itemids={"labevents": [50813, 50912]}, quality=q)
    labs = pd.read_csv(root / "hosp" / "labevents.csv.gz", usecols=["hadm_id", "itemid", "charttime", "valuenum"],
                       parse_dates=["charttime"])
    labs = labs[labs["itemid"].isin([50813, 50912]) & labs["hadm_id"].notna()]
    ref = labs.merge(stays[["hadm_id", "stay_id", "intime", "outtime"]], on="hadm_id")
    ref = ref[(ref["charttime"] >= ref["intime"]) & (ref["charttime"] <= ref["outtime"])]
    got = ev[ev["itemid"].isin([50813, 50912])]
    assert len(got) == len(ref) > 0
    assert sorted(got.groupby("stay_id").size().items()) == sorted(ref.groupby("stay_id").size().items())
    out = pd.read_csv(root / "icu" / "outputevents.csv.gz", usecols=["stay_id"])
    assert (ev["itemid"] >= 220000).sum() >= 1 and ev["stay_id"].isin(stays["stay_id"]).all()
    assert len(ev[ev["itemid"].between(220000, 229999) & ev["value"].ne(1.0)]) <= len(out)
    spec = TemporalSpec(hours=48, bin_hours=1, min_stay_frac=0.1)
    b = bin_events(ev, stays, spec)
    items = select_items(b, stays["stay_id"], spec)
    v, m = temporal_tensor(b, stays["stay_id"], fit_stats(b, stays["stay_id"], items), spec)
    assert v.shape == (len(stays), 48, len(items)) and m.any() and np.isfinite(v).all()
