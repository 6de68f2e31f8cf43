"""MEDCSP records: one EHR record per admission with its modality flags, one CXR record per study with a
frontal image, the retrieval hold-out of patients absent from the EHR source, and same-patient time gaps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medbind_lib.medcsp.records import (cross_source_gaps, cxr_records, ehr_records, icu_admissions, source_overlap,
                                       split_sources)
from medbind_lib.quality import QualityLog

T = pd.Timestamp("2150-01-01")
ADM = pd.DataFrame({"subject_id": [1, 1, 2], "hadm_id": [10, 11, 20], "admittime": [T, T + pd.Timedelta(days=100),
                    T + pd.Timedelta(days=5)], "dischtime": [T + pd.Timedelta(days=3)] * 3,
                    "split": ["train", "train", "test"]})
CXR = pd.DataFrame({"record_id": ["d3", "d1", "d2", "d4", "d5", "d6"], "subject_id": [1, 1, 1, 2, 3, 4],
                    "study_id": [100, 100, 101, 200, 300, 400], "view": ["LATERAL", "PA", "AP", "PA", "AP", "PA"],
                    "time": [T + pd.Timedelta(days=d) for d in (10, 10, 50, 5, 0, 0)],
                    "split": ["train"] * 3 + ["test", "valid", "train"], "path": list("abcdef"),
                    "text": ["r1", "r1", "r2", None, "r5", "r6"]})


def test_records_and_modality_flags():
    e = ehr_records(ADM, icd_hadm=[10, 20], temporal_hadm=[11])
    assert e["record_id"].tolist() == ["ehr-10", "ehr-11", "ehr-20"]
    assert e["has_icd"].tolist() == [True, False, True] and e["has_temporal"].tolist() == [False, True, False]
    assert e["has_demo"].all() and not e["has_note"].any()
    assert ehr_records(ADM, record_time="dischtime")["time"].eq(T + pd.Timedelta(days=3)).all()
    with pytest.raises(ValueError, match="ehr_record_time"):
        ehr_records(ADM, record_time="edregtime")
    c = cxr_records(CXR)
    assert c["record_id"].tolist() == ["cxr-100", "cxr-101", "cxr-200", "cxr-300", "cxr-400"]
    assert c.loc[0, "image_record_id"] == "d1"                                 # the frontal image, not the lateral
    assert c["has_report"].tolist() == [True, True, False, True, True]


def test_holdout_is_patients_absent_from_the_ehr_source():
    e, c = ehr_records(ADM), cxr_records(CXR)
    q = QualityLog()
    s = split_sources(e, c, holdout_fraction=1.0, seed=0, quality=q)
    assert set(s["cxr"]["subject_id"]) == {1, 2} and set(s["holdout"]["subject_id"]) == {3, 4}
    s0 = split_sources(e, c, holdout_fraction=0.0, quality=q)
    assert s0["holdout"].empty and q.count(stage="sources") == 2           # both unused studies counted
    half = [split_sources(e, c, 0.5, seed=k)["holdout"]["subject_id"].nunique() for k in range(20)]
    assert set(half) <= {0, 1, 2} and 0 < np.mean(half) < 2                 # whole patients, seeded
    assert source_overlap(e, c) == {"ehr_patients": 2, "cxr_patients": 4, "both": 2, "pct_of_ehr": 100.0,
                                    "pct_of_cxr": 50.0}


def test_cross_source_gaps():
    g = cross_source_gaps(ehr_records(ADM), cxr_records(CXR)).set_index(["ehr_record_id", "cxr_record_id"])
    assert g.loc[("ehr-10", "cxr-100"), "gap_days"] == 10 and g.loc[("ehr-11", "cxr-101"), "gap_days"] == 50
    assert g.loc[("ehr-20", "cxr-200"), "gap_days"] == 0 and len(g) == 5          # 2 x 2 for patient 1, 1 for 2


def test_icu_population_is_the_ehr_source():
    """Only admissions with an ICU stay are EHR records (the paper's FIDDLE-processed source): patient 2's one
    admission has no stay, so 2 leaves the EHR source and 2's study joins the hold-out pool with 3's and 4's."""
    stays = pd.DataFrame({"hadm_id": [11, 11, 99], "stay_id": [1, 2, 3]})   # two stays of 11; 99: no record
    e = ehr_records(ADM)
    q = QualityLog()
    icu = icu_admissions(e, stays, "icu", q)
    assert icu["record_id"].tolist() == ["ehr-11"]                             # one record per admission
    assert q.count(stage="ehr_source") == 2                                   # ehr-10 and ehr-20 counted
    assert icu_admissions(e, stays, "all")["record_id"].tolist() == e["record_id"].tolist()
    s = split_sources(icu, cxr_records(CXR), holdout_fraction=1.0)
    assert set(s["cxr"]["subject_id"]) == {1} and set(s["holdout"]["subject_id"]) == {2, 3, 4}
    assert source_overlap(icu, cxr_records(CXR))["pct_of_cxr"] == 25.0
    with pytest.raises(ValueError, match="population"):
        icu_admissions(e, stays, "ward")
    # the readmission task rows (one per admission, no record_id) follow the same rule
    lab = ADM.assign(readmission=[1, 0, 1])
    q2 = QualityLog()
    assert icu_admissions(lab, stays, "icu", q2, what="readmission")["hadm_id"].tolist() == [11]
    assert q2.count(stage="readmission") == 2
