"""Linking rules on hand-made frames (hand-computed values) and labels on the real MIMIC-IV demo tables."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from medbind_lib.errors import DataError
from medbind_lib.linking import (
    apply_splits, assign_admissions, link_cohort, mimic_pairs, mortality_labels, normalize_ids, pair_counts,
    patient_splits, readmission_labels, table1, task_links,
)
from medbind_lib.quality import QualityLog

T = pd.Timestamp


def adm_frame(rows):
    """rows: (subject_id, hadm_id, admittime, dischtime, flag[, admission_type[, discharge_location, deathtime]])"""
    out = []
    for r in rows:
        r = list(r) + [None] * (8 - len(r))
        sid, hadm, a, d, flag, typ, loc, death = r
        out.append(dict(subject_id=sid, hadm_id=hadm, admittime=T(a), dischtime=T(d),
                        deathtime=T(death) if death else pd.NaT, admission_type=typ or "EW EMER.",
                        admission_location="EMERGENCY ROOM",
                        discharge_location=loc if loc is not None else ("DIED" if flag == 1 else "HOME"),
                        hospital_expire_flag=flag))
    return pd.DataFrame(out)


def manifest(rows, dataset="mimic_cxr", split=None):
    """rows: (record_id, subject_id, time or None)"""
    return pd.DataFrame({"dataset": dataset, "record_id": [r[0] for r in rows],
                         "subject_id": [r[1] for r in rows],
                         "path": [f"files/{r[0]}" for r in rows],
                         "time": pd.to_datetime(pd.Series([r[2] for r in rows], dtype=object)),
                         "split": split if split is not None else [pd.NA] * len(rows)})


# --------------------------------------------------------------------------------------------------
def test_normalize_ids_accepts_int_float_and_str():
    s = normalize_ids(pd.Series([10000032, 10000033]))
    f = normalize_ids(pd.Series([10000032.0, np.nan]))
    t = normalize_ids(pd.Series(["10000032", " 10000033.0", None]))
    assert s.tolist() == ["10000032", "10000033"]
    assert f.tolist() == ["10000032", None]
    assert t.tolist() == ["10000032", "10000033", None]
    with pytest.raises(DataError):
        normalize_ids(pd.Series([1.5]))


# --------------------------------------------------------------------------------------------------
ADM = adm_frame([
    (1, 100, "2180-01-01 10:00", "2180-01-05 10:00", 0),
    (1, 101, "2180-01-03 00:00", "2180-01-04 00:00", 0),   # nested inside 100 (overlap)
    (1, 102, "2180-03-01 00:00", "2180-03-02 00:00", 0),
    (2, 200, "2180-01-01 00:00", "2180-01-02 00:00", 0),
])


def test_assign_admissions_rules_and_counts():
    rec = manifest([
        ("a", "1", "2180-01-01 10:00"),      # exactly admittime -> 100 (inclusive)
        ("b", "1", "2180-01-05 10:00"),      # exactly dischtime -> 100 (inclusive)
        ("c", "1", "2180-01-05 10:01"),      # one minute after discharge -> NA
        ("d", "1", "2180-01-03 12:00"),      # covered by 100 and 101 -> latest admittime = 101, ambiguous
        ("e", "1", None),                    # NaT -> NA, counted
        ("f", "2", "2180-01-01 12:00"),      # other subject -> 200
        ("g", "3", "2180-01-01 12:00"),      # subject without admissions -> NA
        ("h", "2", "2180-01-03 12:00"),      # subject 2 after discharge -> NA
    ])
    q = QualityLog()
    out = assign_admissions(rec, ADM, q, dataset="cx")
    assert out["hadm_id"].dtype == "Int64"
    got = dict(zip(out["record_id"], out["hadm_id"].astype(object).where(out["hadm_id"].notna(), None)))
    assert got == {"a": 100, "b": 100, "c": None, "d": 101, "e": None, "f": 200, "g": None, "h": None}
    assert q.count("cx", "admission_link", "no recording time (NaT): not linked to an admission") == 1
    assert q.count("cx", "admission_link", "no admission covers the recording time (hadm_id NA, record kept)") == 3
    assert q.count("cx", "admission_link",
                   "several admissions cover the time: latest admittime kept (record kept)") == 1
    assert list(out.columns[:6]) == list(rec.columns)          # input columns kept, in order
    assert len(out) == len(rec)


def test_assign_admissions_int_subject_ids_and_edregtime():
    adm = ADM.copy()
    adm["edregtime"] = [T("2180-01-01 06:00"), pd.NaT, pd.NaT, pd.NaT]
    rec = manifest([("a", 1, "2180-01-01 07:00")])             # int subject id, in the ED before admittime
    assert assign_admissions(rec, adm)["hadm_id"].isna().all()
    assert assign_admissions(rec, adm, use_edregtime=True)["hadm_id"].tolist() == [100]
    assert assign_admissions(rec, adm)["subject_id"].tolist() == ["1"]


# --------------------------------------------------------------------------------------------------
def test_pairs_time_window_boundary_exact_24h():
    cxr = manifest([("c1", "1", "2180-06-01 00:00"), ("c2", "2", "2180-06-01 00:00")])
    ecg = manifest([("e1", "1", "2180-06-02 00:00"),            # exactly 24 h after c1 -> paired
                    ("e2", "2", "2180-06-02 00:01")], "mimic_ecg")  # 24 h + 1 min after c2 -> not paired
    q = QualityLog()
    pairs = mimic_pairs(cxr, ecg, 24, "nearest", q)
    assert pairs[["cxr_record_id", "ecg_record_id", "subject_id", "link"]].values.tolist() == [["c1", "e1", "1", "time"]]
    assert pairs["dt_hours"].tolist() == [24.0]
    assert pairs["hadm_id"].isna().all()
    assert q.count("mimic_pair", "pairing (CXR)") == 1 and q.count("mimic_pair", "pairing (ECG)") == 1
    assert pair_counts(cxr, ecg, pairs) == {"pairs": 1, "pairs_hadm": 0, "pairs_time": 1, "cxr": 2,
                                            "cxr_paired": 1, "cxr_only": 1, "ecg": 2, "ecg_paired": 1,
                                            "ecg_only": 1}


def test_pairs_hadm_link_nearest_all_and_nat():
    adm = adm_frame([(1, 100, "2180-01-01 00:00", "2180-01-10 00:00", 0),
                     (1, 101, "2180-01-10 06:00", "2180-01-12 00:00", 0)])
    cxr = manifest([("c1", "1", "2180-01-01 01:00"),   # in 100
                    ("c2", "1", "2180-01-11 00:00"),   # in 101
                    ("c3", "1", None)])                # NaT: never paired
    ecg = manifest([("e1", "1", "2180-01-08 00:00"),   # in 100, 167 h after c1 (hadm link, no time bound)
                    ("e2", "1", "2180-01-09 23:00"),   # in 100; 25 h before c2, different hadm
                    ("e3", "1", "2180-01-10 03:00"),   # between stays (no hadm), 21 h before c2
                    ("e4", "1", "2180-01-11 02:00")], "mimic_ecg")  # in 101, 2 h after c2
    cxr, ecg = assign_admissions(cxr, adm), assign_admissions(ecg, adm)
    assert ecg["hadm_id"].astype(object).where(ecg["hadm_id"].notna(), None).tolist() == [100, 100, None, 101]
    allp = mimic_pairs(cxr, ecg, 24, "all")
    got = {(r.cxr_record_id, r.ecg_record_id): (r.link, None if pd.isna(r.hadm_id) else int(r.hadm_id), r.dt_hours)
           for r in allp.itertuples()}
    # c1: e1 & e2 by hadm 100; e3 has no hadm, 218 h away -> no. c2: e4 by hadm 101; e3 by time (21 h);
    # e2 is 25 h before c2 and of another admission -> no. c3 (NaT) nothing.
    assert got == {("c1", "e1"): ("hadm", 100, 167.0), ("c1", "e2"): ("hadm", 100, 214.0),
                   ("c2", "e3"): ("time", None, -21.0), ("c2", "e4"): ("hadm", 101, 2.0)}
    near = mimic_pairs(cxr, ecg, 24, "nearest")
    assert near[["cxr_record_id", "ecg_record_id"]].values.tolist() == [["c1", "e1"], ["c2", "e4"]]


def test_pairs_hadm_decides_and_one_to_one():
    adm = adm_frame([(1, 100, "2180-01-01 00:00", "2180-01-02 00:00", 0),
                     (1, 101, "2180-01-02 01:00", "2180-01-03 00:00", 0)])
    cxr = assign_admissions(manifest([("c1", "1", "2180-01-01 23:00")]), adm)          # in 100
    ecg = assign_admissions(manifest([("e1", "1", "2180-01-02 02:00")], "mimic_ecg"), adm)  # in 101, 3 h later
    assert mimic_pairs(cxr, ecg, 24, "all").empty                                       # different stays
    loose = mimic_pairs(cxr, ecg, 24, "all", hadm_decides=False)
    assert loose[["link", "dt_hours"]].values.tolist() == [["time", 3.0]]
    # one ECG nearest to two CXRs: nearest lets both use it; one_to_one gives the 2nd CXR its next ECG
    cxr2 = manifest([("c1", "1", "2180-05-01 00:00"), ("c2", "1", "2180-05-01 02:00")])
    ecg2 = manifest([("e1", "1", "2180-05-01 01:00"), ("e2", "1", "2180-05-01 05:00")], "mimic_ecg")
    near = mimic_pairs(cxr2, ecg2, 24, "nearest")
    assert near[["cxr_record_id", "ecg_record_id"]].values.tolist() == [["c1", "e1"], ["c2", "e1"]]
    oto = mimic_pairs(cxr2, ecg2, 24, "nearest", one_to_one=True)
    # candidates by |dt|: (c1,e1)=1h, (c2,e1)=1h, (c2,e2)=3h, (c1,e2)=5h; tie (c1,e1) vs (c2,e1) -> c1 first
    assert oto[["cxr_record_id", "ecg_record_id"]].values.tolist() == [["c1", "e1"], ["c2", "e2"]]
    with pytest.raises(ValueError):
        mimic_pairs(cxr2, ecg2, 24, "best")


# --------------------------------------------------------------------------------------------------
def test_task_links_window_and_nearest():
    adm = adm_frame([(1, 100, "2180-01-02 00:00", "2180-01-05 00:00", 0),
                     (1, 101, "2180-02-01 00:00", "2180-02-01 06:00", 0),   # 6 h stay
                     (2, 200, "2180-01-01 00:00", "2180-01-09 00:00", 0)])
    cxr = manifest([("x1", "1", "2180-01-01 00:00"),   # exactly admittime - 24 h -> in window of 100
                    ("x2", "1", "2180-01-03 00:00"),   # exactly admittime + 24 h -> in window (farther)
                    ("x3", "1", "2180-02-01 07:00"),   # after discharge of 101 (6 h stay) -> excluded
                    ("x4", "2", "2179-12-30 23:59")])  # 24 h + 1 min before 200 -> excluded
    ecg = manifest([("y1", "1", "2180-01-02 05:00"), ("y2", "1", "2180-01-01 19:00"),  # tie |5 h| -> earlier y2
                    ("y3", "2", "2180-01-02 00:01")], "mimic_ecg")                     # 24 h + 1 min after -> out
    t = task_links({"cxr": cxr, "ecg": ecg}, adm, window_hours=24, pre_hours=24).set_index("hadm_id")
    assert t.loc[100, "cxr_record_id"] == "x1" and t.loc[100, "cxr_dt_hours"] == -24.0 and t.loc[100, "cxr_n"] == 2
    assert t.loc[100, "ecg_record_id"] == "y2" and t.loc[100, "ecg_n"] == 2
    assert pd.isna(t.loc[101, "cxr_record_id"]) and t.loc[101, "cxr_n"] == 0
    assert pd.isna(t.loc[200, "cxr_record_id"]) and pd.isna(t.loc[200, "ecg_record_id"])
    assert len(t) == 3


# --------------------------------------------------------------------------------------------------
def _readm_frame():
    return adm_frame([
        # subject 1: discharge 01-10 00:00; next admit exactly 30 days later -> 1
        (1, 10, "2180-01-01 00:00", "2180-01-10 00:00", 0),
        (1, 11, "2180-02-09 00:00", "2180-02-10 00:00", 0),   # next is 30 d + 1 min later (2180 is leap) -> 0
        (1, 12, "2180-03-11 00:01", "2180-03-13 00:00", 0),   # next starts before discharge (overlap) -> 0
        (1, 13, "2180-03-12 12:00", "2180-03-14 00:00", 0),   # next starts exactly at discharge (gap 0) -> 0
        (1, 14, "2180-03-14 00:00", "2180-03-20 00:00", 1, None, "DIED", "2180-03-20 00:00"),  # died: excluded
        # subject 2: single admission -> no later admission: 0 (paper), or censored
        (2, 20, "2180-01-01 00:00", "2180-01-02 00:00", 0),
        # subject 3: index, then an ELECTIVE 5 days later, then EW 20 days later (32: no later admission)
        (3, 30, "2180-01-01 00:00", "2180-01-02 00:00", 0),
        (3, 31, "2180-01-07 00:00", "2180-01-08 00:00", 0, "ELECTIVE"),
        (3, 32, "2180-01-22 00:00", "2180-01-23 00:00", 0),
    ])


NO_NEXT_FLAG = "no later (qualifying) admission: labelled 0 (kept)"
CENSORED = "censored: no later (qualifying) admission"


def test_readmission_default_no_next_negative_boundaries_overlap_died():
    adm = _readm_frame()
    q = QualityLog()
    r = readmission_labels(adm, 30, quality=q).set_index("hadm_id")
    # hand-computed: no later admission (20, 32) is a negative, the death (14) is out
    assert r["readmission"].to_dict() == {10: 1, 11: 0, 12: 0, 13: 0, 20: 0, 30: 1, 31: 1, 32: 0}
    assert r.loc[10, "gap_days"] == 30.0 and r.loc[10, "next_hadm_id"] == 11
    assert r.loc[12, "gap_days"] < 0 and r.loc[13, "gap_days"] == 0
    assert pd.isna(r.loc[20, "next_hadm_id"]) and pd.isna(r.loc[20, "next_admittime"])
    assert np.isnan(r.loc[20, "gap_days"])
    assert sorted(set(adm["hadm_id"]) - set(r.index)) == [14]
    assert q.count("mimic_iv", "readmission", "index admission died in hospital", flagged=False) == 1
    assert q.count("mimic_iv", "readmission", NO_NEXT_FLAG, flagged=True) == 2        # 20, 32: kept, noted
    assert q.count("mimic_iv", "readmission", CENSORED) == 0
    assert q.count("mimic_iv", "readmission", flagged=False) == 1                      # only the death dropped
    # exclude_elective: 30 skips 31 (ELECTIVE) -> next qualifying is 32, 20 days after discharge -> 1;
    # 31 (itself elective) is still an index: next 32, 14 days -> 1
    r2 = readmission_labels(adm, 30, exclude_elective=True).set_index("hadm_id")
    assert r2.loc[30, "next_hadm_id"] == 32 and r2.loc[30, "readmission"] == 1 and r2.loc[31, "readmission"] == 1
    r7 = readmission_labels(adm, 7).set_index("hadm_id")
    assert r7.loc[30, "readmission"] == 1                  # elective 5 days later counts without exclusion
    r7x = readmission_labels(adm, 7, exclude_elective=True).set_index("hadm_id")
    assert r7x.loc[30, "readmission"] == 0                 # skipped to the EW admission 20 days later


def test_readmission_no_next_censor_option():
    adm = _readm_frame()
    q = QualityLog()
    r = readmission_labels(adm, 30, quality=q, no_next="censor").set_index("hadm_id")
    assert r["readmission"].to_dict() == {10: 1, 11: 0, 12: 0, 13: 0, 30: 1, 31: 1}
    assert q.count("mimic_iv", "readmission", "index admission died in hospital") == 1
    # censored: 20 (single admission) and 32 (last of subject 3); 14 is last too but died -> counted as died
    assert q.count("mimic_iv", "readmission", CENSORED, flagged=False) == 2
    assert q.count("mimic_iv", "readmission", NO_NEXT_FLAG) == 0
    assert sorted(set(adm["hadm_id"]) - set(r.index)) == [14, 20, 32]
    # an index whose only later admission is planned has no QUALIFYING next under exclude_elective
    only_planned = adm_frame([(1, 10, "2180-01-01", "2180-01-02", 0),
                              (1, 11, "2180-01-05", "2180-01-06", 0, "ELECTIVE")])
    assert readmission_labels(only_planned, 30, True, no_next="censor").empty          # 10 and 11: no qualifying next
    as_event = readmission_labels(only_planned, 30, no_next="censor").set_index("hadm_id")["readmission"]
    assert as_event.to_dict() == {10: 1}                                               # an event: 3 days later
    neg = readmission_labels(only_planned, 30, True).set_index("hadm_id")["readmission"].to_dict()
    assert neg == {10: 0, 11: 0}
    with pytest.raises(ValueError, match="readmission_no_next"):
        readmission_labels(adm, 30, no_next="drop")


@pytest.mark.parametrize("no_next,labels,no_next_count", [("negative", {10: 1, 11: 0, 20: 0}, 2),
                                                          ("censor", {10: 1}, 2)])
def test_readmission_no_next_count_exact(no_next, labels, no_next_count):
    adm = adm_frame([(1, 10, "2180-01-01", "2180-01-02", 0), (1, 11, "2180-01-05", "2180-01-06", 0),
                     (2, 20, "2180-01-01", "2180-01-02", 0), (3, 30, "2180-01-01", "2180-01-02", 1)])
    q = QualityLog()
    r = readmission_labels(adm, 30, quality=q, no_next=no_next)
    assert dict(zip(r["hadm_id"], r["readmission"])) == labels
    reason = NO_NEXT_FLAG if no_next == "negative" else CENSORED
    assert q.count("mimic_iv", "readmission", reason) == no_next_count                           # 11, 20
    assert q.count("mimic_iv", "readmission", "index admission died in hospital") == 1           # 30


def test_mortality_flag_and_crosschecks():
    adm = adm_frame([(1, 10, "2180-01-01", "2180-01-02", 0),
                     (1, 11, "2180-02-01", "2180-02-02", 1, None, "DIED", "2180-02-02"),
                     (2, 20, "2180-01-01", "2180-01-02", 1, None, "HOME", None),            # flag w/o death
                     (3, 30, "2180-01-01", "2180-01-02", 0, None, "DIED", "2180-01-02")])   # death w/o flag
    q = QualityLog()
    m = mortality_labels(adm, q).set_index("hadm_id")
    assert m["mortality"].to_dict() == {10: 0, 11: 1, 20: 1, 30: 0}
    assert m["consistent"].to_dict() == {10: True, 11: True, 20: False, 30: False}
    assert q.count("mimic_iv", "mortality_crosscheck") == 4     # 20: two checks, 30: two checks
    adm.loc[0, "hospital_expire_flag"] = np.nan
    q2 = QualityLog()
    assert 10 not in set(mortality_labels(adm, q2)["hadm_id"])
    assert q2.count("mimic_iv", "mortality", "hospital_expire_flag empty") == 1


# --------------------------------------------------------------------------------------------------
def test_patient_splits_deterministic_stable_and_official():
    ids = [str(10000000 + i) for i in range(3000)]
    a = patient_splits({"cxr": ids[:2000]}, (0.7, 0.1, 0.2), seed=3)
    b = patient_splits({"cxr": ids[:2000], "ecg": [int(i) for i in ids[1000:]]}, (0.7, 0.1, 0.2), seed=3)
    assert a.equals(patient_splits({"cxr": ids[:2000]}, (0.7, 0.1, 0.2), seed=3))
    merged = a.merge(b, on="subject_id", suffixes=("_a", "_b"))
    assert (merged["split_a"] == merged["split_b"]).all()            # adding a source reshuffles nobody
    assert len(b) == 3000 and b["subject_id"].is_unique
    frac = b["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.04 and abs(frac["valid"] - 0.1) < 0.03 and abs(frac["test"] - 0.2) < 0.03
    c = patient_splits({"cxr": ids[:2000]}, (0.7, 0.1, 0.2), seed=4)
    assert (c["split"] != a["split"]).any()
    off = pd.DataFrame({"subject_id": [ids[0], ids[0], ids[1]], "split": ["validate", "validate", None]})
    o = patient_splits({"cxr": ids[:10]}, (0, 0, 1), seed=0, official=off).set_index("subject_id")
    assert o.loc[ids[0], "split"] == "valid" and o.loc[ids[0], "assigned"] == "official"
    assert o.loc[ids[1], "split"] == "test" and o.loc[ids[1], "assigned"] == "random"
    with pytest.raises(DataError):
        patient_splits({"cxr": ids[:10]}, official=pd.DataFrame({"subject_id": [ids[0]] * 2,
                                                                 "split": ["train", "test"]}))
    with pytest.raises(DataError):
        apply_splits(pd.DataFrame({"subject_id": ["99"]}), a)


def _cohort(n=60, seed=0):
    """A small random cohort: admissions, CXRs and ECGs around them (times on the MIMIC timeline)."""
    rng = np.random.default_rng(seed)
    adm, cxr, ecg = [], [], []
    hadm = 20000000
    for s in range(n):
        sid = 10000000 + s
        t = T("2150-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
        for k in range(int(rng.integers(1, 4))):
            los = pd.Timedelta(hours=int(rng.integers(5, 200)))
            died = int(rng.random() < 0.1)
            adm.append(dict(subject_id=sid, hadm_id=hadm, admittime=t, dischtime=t + los,
                            deathtime=t + los if died else pd.NaT, admission_type="EW EMER.",
                            admission_location="EMERGENCY ROOM", discharge_location="DIED" if died else "HOME",
                            hospital_expire_flag=died))
            for j in range(int(rng.integers(0, 3))):
                cxr.append((f"d{len(cxr)}", str(sid), t + pd.Timedelta(hours=float(rng.uniform(-30, 60)))))
            for j in range(int(rng.integers(0, 3))):
                ecg.append((f"{40000000 + len(ecg)}", str(sid), t + pd.Timedelta(hours=float(rng.uniform(-30, 60)))))
            hadm += 1
            if died:
                break
            t = t + los + pd.Timedelta(days=int(rng.integers(1, 60)))
    for j in range(5):   # ECG-only and CXR-only subjects, one NaT record
        ecg.append((f"{41000000 + j}", str(10100000 + j), T("2150-01-01")))
    cxr.append(("dnat", "10000000", None))
    official = [("train", "valid", "test", "validate")[i % 4] if i % 3 else None for i in range(len(cxr))]
    return (manifest(cxr, split=official), manifest(ecg, "mimic_ecg"), pd.DataFrame(adm),
            pd.DataFrame({"subject_id": sorted({a["subject_id"] for a in adm}), "gender": "F", "anchor_age": 50,
                          "anchor_year": 2150, "anchor_year_group": "2014 - 2016", "dod": None}))


@pytest.mark.parametrize("mimic_split", ["patient_random", "official_cxr"])
def test_link_cohort_no_patient_in_two_splits_and_table1(mimic_split):
    cxr, ecg, adm, pat = _cohort()
    off = cxr[["subject_id", "split"]].dropna()
    # make the official split patient-disjoint (first value per subject), as the real one is
    first = off.drop_duplicates("subject_id").set_index("subject_id")["split"]
    cxr["split"] = cxr["subject_id"].map(first).where(cxr["split"].notna(), pd.NA)
    cfg = {"seed": 1, "mimic_split": mimic_split, "pair_policy": "nearest"}
    q = QualityLog()
    linked = link_cohort(cfg, cxr, ecg, {"admissions": adm, "patients": pat}, q)
    sp = linked["splits"].set_index("subject_id")["split"]
    for key in ("cxr", "ecg", "pairs", "admissions"):
        df = linked[key]
        assert df["split"].isin(["train", "valid", "test"]).all(), key
        assert (df.groupby("subject_id")["split"].nunique() == 1).all(), key
        assert (df["split"] == df["subject_id"].map(sp)).all(), key
    pairs = linked["pairs"]
    c = linked["cxr"].set_index("record_id")["split"]
    e = linked["ecg"].set_index("record_id")["split"]
    assert (pairs["cxr_record_id"].map(c) == pairs["ecg_record_id"].map(e)).all()
    assert len(pairs) > 0 and set(pairs["link"]) <= {"hadm", "time"}
    if mimic_split == "official_cxr":
        offsub = linked["cxr"].dropna(subset=["split_official"]).drop_duplicates("subject_id")
        exp = offsub["split_official"].replace({"validate": "valid"})
        assert (offsub["split"].to_numpy() == exp.to_numpy()).all()
    a = linked["admissions"]
    assert a["hadm_id"].is_unique and len(a) == len(adm)
    assert {"mortality", "readmission", "cxr_record_id", "ecg_record_id", "age", "gender"} <= set(a.columns)
    t1 = table1(linked)
    assert t1["dataset"].tolist() == ["MIMIC-CXR", "MIMIC-ECG", "MIMIC-PAIR", "MIMIC-IV readmission",
                                      "MIMIC-IV mortality"]
    assert t1.loc[0, ["train", "valid", "test"]].sum() == len(cxr)
    assert t1.loc[2, "total"] == len(pairs)
    has = a["cxr_record_id"].notna() | a["ecg_record_id"].notna()
    assert t1.loc[4, "total"] == int((a["mortality"].notna() & has).sum())
    assert t1.loc[3, "positives"] == int(((a["readmission"] == 1) & has).sum())
    assert q.count("mimic_cxr", "admission_link", "no recording time (NaT): not linked to an admission") == 1


# --------------------------------------------------------------------------------------------------
# real MIMIC-IV demo tables: labels against an independent loop implementation
# --------------------------------------------------------------------------------------------------
PLANNED = {"ELECTIVE", "SURGICAL SAME DAY ADMISSION", "EU OBSERVATION", "OBSERVATION ADMIT",
           "DIRECT OBSERVATION", "AMBULATORY OBSERVATION"}


@pytest.fixture(scope="module")
def demo(realdata):
    hosp = realdata / "mimic-iv-clinical-database-demo-2.2" / "hosp"
    found = {n: next((hosp / f"{n}{ext}" for ext in (".csv.gz", ".csv") if (hosp / f"{n}{ext}").exists()), None)
             for n in ("admissions", "patients")}
    if None in found.values():
        pytest.skip(f"MIMIC-IV demo admissions/patients not found under {hosp}")
    adm = pd.read_csv(found["admissions"],
                      parse_dates=["admittime", "dischtime", "deathtime", "edregtime", "edouttime"])
    pat = pd.read_csv(found["patients"], parse_dates=["dod"])
    return adm, pat


def loop_readmission(adm: pd.DataFrame, days: int, exclude_elective: bool, no_next: str = "negative") -> dict:
    """Straightforward per-admission loop: {hadm_id: label} for labelled index admissions."""
    rows = list(adm.itertuples(index=False))
    labels = {}
    for r in rows:
        if r.hospital_expire_flag == 1:
            continue
        later = [s for s in rows if s.subject_id == r.subject_id and (s.admittime, s.hadm_id) > (r.admittime, r.hadm_id)
                 and not (exclude_elective and s.admission_type in PLANNED)]
        if not later:
            if no_next == "negative":
                labels[int(r.hadm_id)] = 0
            continue  # censored
        nxt = min(later, key=lambda s: (s.admittime, s.hadm_id))
        gap = nxt.admittime.to_pydatetime() - r.dischtime.to_pydatetime()
        labels[int(r.hadm_id)] = 1 if timedelta(0) < gap <= timedelta(days=days) else 0
    return labels


@pytest.mark.parametrize("days,excl,no_next", [(30, False, "negative"), (30, True, "negative"), (7, False, "negative"),
                                               (30, False, "censor"), (30, True, "censor")])
def test_real_demo_readmission_matches_loop(demo, days, excl, no_next):
    adm, _ = demo
    q = QualityLog()
    got = readmission_labels(adm, days, exclude_elective=excl, quality=q, no_next=no_next)
    ref = loop_readmission(adm, days, excl, no_next)
    assert dict(zip(got["hadm_id"].astype(int), got["readmission"].astype(int))) == ref
    died = int((adm["hospital_expire_flag"] == 1).sum())
    assert q.count("mimic_iv", "readmission", "index admission died in hospital") == died
    if no_next == "censor":
        assert q.count("mimic_iv", "readmission", CENSORED) == len(adm) - died - len(ref)
    else:
        assert len(ref) == len(adm) - died


def test_real_demo_readmission_figures_and_hand_checks(demo):
    adm, _ = demo
    q = QualityLog()
    r = readmission_labels(adm, 30, quality=q).set_index("hadm_id")
    assert len(adm) == 275 and adm["subject_id"].nunique() == 100
    assert int((adm["hospital_expire_flag"] == 1).sum()) == 15
    # paper rule (default): every surviving index admission is labelled, no later admission = 0
    assert len(r) == 260 and (r["readmission"] == 1).sum() == 52 and (r["readmission"] == 0).sum() == 208
    ref = loop_readmission(adm, 30, False)
    assert len(ref) == 260 and sum(ref.values()) == 52
    assert q.count("mimic_iv", "readmission", NO_NEXT_FLAG, flagged=True) == 85
    assert q.count("mimic_iv", "readmission", "index admission died in hospital") == 15
    # censoring (the option): the 85 last admissions leave, the positives stay
    rc = readmission_labels(adm, 30, no_next="censor")
    assert len(rc) == 175 and (rc["readmission"] == 1).sum() == 52
    # subject 10000032 (4 admissions):
    #   22595853 disch 2180-05-07 17:15 -> next 22841357 admit 2180-06-26 18:27: 50.05 d -> 0
    #   22841357 disch 2180-06-27 18:49 -> next 29079034 admit 2180-07-23 12:35: 25.74 d -> 1
    #   29079034 disch 2180-07-25 17:55 -> next 25742920 admit 2180-08-05 23:44: 11.24 d -> 1
    #   25742920 last admission -> 0 (censored under the option)
    assert r.loc[22595853, "readmission"] == 0 and r.loc[22841357, "readmission"] == 1
    assert r.loc[29079034, "readmission"] == 1
    assert r.loc[25742920, "readmission"] == 0 and pd.isna(r.loc[25742920, "next_hadm_id"])
    assert 25742920 not in set(rc["hadm_id"])
    assert r.loc[22841357, "gap_days"] == pytest.approx((25 * 1440 + 17 * 60 + 46) / 1440)
    # subject 10002930:
    #   22380825 (EU OBSERVATION) disch 2193-08-05 11:44 -> 23688993 admit 11:45: gap 1 minute -> 1
    #   28477649 disch 2197-04-08 19:37 -> 28301173 admit 2197-04-08 19:37: gap exactly 0 -> 0 (not > 0)
    #   28301173 disch 2197-04-15 12:01 -> 25282382 (EU OBSERVATION) admit 2197-04-17 02:01: 1.58 d -> 1;
    #     with exclude_elective the observation stay is skipped -> next 25922998 in 2198 -> 0
    assert r.loc[22380825, "readmission"] == 1
    assert r.loc[28477649, "readmission"] == 0 and r.loc[28477649, "gap_days"] == 0
    assert r.loc[28301173, "readmission"] == 1
    rx = readmission_labels(adm, 30, exclude_elective=True).set_index("hadm_id")
    assert rx.loc[28301173, "next_hadm_id"] == 25922998 and rx.loc[28301173, "readmission"] == 0


def test_real_demo_mortality(demo):
    adm, _ = demo
    q = QualityLog()
    m = mortality_labels(adm, q)
    ref = {int(r.hadm_id): int(r.hospital_expire_flag) for r in adm.itertuples()}
    assert dict(zip(m["hadm_id"].astype(int), m["mortality"])) == ref
    assert m["mortality"].sum() == 15
    # independent cross-check: flag == deathtime set == discharge_location DIED on every demo admission
    for r in adm.itertuples():
        died_dt = not pd.isna(r.deathtime)
        died_loc = r.discharge_location == "DIED"
        assert bool(r.hospital_expire_flag) == died_dt == died_loc
    assert m["consistent"].all() and q.count("mimic_iv", "mortality_crosscheck") == 0
    # 22942076 (subject 10006053): flag 1, deathtime 2111-11-15 17:20, discharge_location DIED -> 1
    assert m.set_index("hadm_id").loc[22942076, "mortality"] == 1


def test_real_demo_link_cohort_splits(demo):
    adm, pat = demo
    cxr = manifest([("d1", "10000032", "2180-05-06 21:30")])          # a CXR before admittime
    ecg = manifest([("40689238", "10000032", "2180-07-23 08:44")], "mimic_ecg")
    linked = link_cohort({"seed": 0}, cxr, ecg, {"admissions": adm, "patients": pat}, QualityLog())
    a = linked["admissions"].set_index("hadm_id")
    # CXR 53 min before admittime 22:23 -> not inside the stay (hadm NA) but in the task window (pre 24 h)
    assert linked["cxr"]["hadm_id"].isna().all() and a.loc[22595853, "cxr_record_id"] == "d1"
    # ECG at 08:44, admission 29079034 admitted 12:35 (ED reg 05:54): task window yes, stay no
    assert a.loc[29079034, "ecg_record_id"] == "40689238"
    assert linked["splits"]["subject_id"].is_unique and len(linked["splits"]) == 100
    assert (linked["admissions"].groupby("subject_id")["split"].nunique() == 1).all()
    assert a.loc[22595853, "age"] == 52   # anchor_age 52 in anchor_year 2180
    # readmission labels follow the profile's readmission_no_next (default: no later admission = 0)
    assert a["readmission"].notna().sum() == 260 and (a["readmission"] == 1).sum() == 52
    assert linked["params"]["readmission_no_next"] == "negative"
    cens = link_cohort({"seed": 0, "readmission_no_next": "censor"}, cxr, ecg, {"admissions": adm, "patients": pat})
    assert cens["admissions"]["readmission"].notna().sum() == 175 and cens["params"]["readmission_no_next"] == "censor"
