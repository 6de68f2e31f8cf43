"""Damaged MIMIC-IV ICU tables on MEDCSP's temporal path (datasets/mimic_icu.py -> ehr/temporal.py ->
medcsp/features.py): lab rows without hadm_id (``medcsp_lab_join``), events whose stay_id is in no icustays row,
and a stray non-UTF-8 byte in chartevents. Tiny hand-built tables, hand-computed answers, counted quality rows."""
from __future__ import annotations

import gzip
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medbind_lib.config import CHOICES, SCHEMA
from medbind_lib.datasets.mimic_icu import read_events, read_icustays
from medbind_lib.ehr.temporal import LAB_JOINS, stay_events
from medbind_lib.io import LATIN1_FALLBACK_REASON
from medbind_lib.medcsp import features
from medbind_lib.quality import QualityLog

BASE = pd.Timestamp("2100-01-01 00:00:00")
HR, LACTATE = 220045, 50813


def at(hours: float) -> str:
    return str(BASE + pd.Timedelta(hours=hours))


def write(root, rel: str, rows: list, columns: list) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)   # .gz suffix -> gzip


# stay_id: (subject_id, hadm_id, intime h, outtime h). 403 -> 404: a transfer, the boundary 30 h is in both.
STAYS = {401: (1, 201, 0, 50), 402: (1, 202, 100, 150), 403: (2, 203, 0, 30), 404: (2, 203, 30, 60)}
# labevent_id: (subject_id, hadm_id, charttime h, value)
LABS = {1: (1, 201, 2, 2.0),        # its admission's stay 401 (both joins)
        2: (1, None, 3, 3.0),       # no hadm_id, inside 401 (subject 1)
        3: (1, None, 120, 4.0),     # no hadm_id, inside 402
        4: (1, None, 80, 5.0),      # no hadm_id, between 401 and 402: in no stay
        5: (2, None, 30, 6.0),      # no hadm_id, at the 403/404 boundary: inside both
        6: (9, None, 2, 7.0),       # no hadm_id, subject 9 has no stay here: never read
        7: (2, 203, 10, 8.0),       # its admission's stay 403
        8: (1, 201, 120, 9.0)}      # hadm 201 at 120 h: inside 402 (hadm 202), outside its admission's stay
OUTSIDE_ADM = "lab result outside every ICU stay of its admission (not in a tensor)"
NO_HADM_OUT = "lab row without hadm_id, outside every ICU stay of its subject (not in a tensor)"
NO_HADM_IN = "lab row without hadm_id, inside an ICU stay of its subject (not joined: medcsp_lab_join=admission)"
NO_HADM_JOINED = "lab row without hadm_id joined to its subject's ICU stay by charttime (medcsp_lab_join=subject_time)"
NO_HADM_MULTI = "lab row without hadm_id inside two or more ICU stays of its subject (joined to each)"


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "mimiciv"
    write(r, "icu/icustays.csv", [(s, h, sid, "MICU", "MICU", at(i), at(o), (o - i) / 24)
                                  for sid, (s, h, i, o) in STAYS.items()],
          ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"])
    write(r, "hosp/labevents.csv.gz", [(i, s, h, 9000 + i, LACTATE, at(t), str(v), str(v), "mmol/L")
                                       for i, (s, h, t, v) in LABS.items()],
          ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "charttime", "value", "valuenum",
           "valueuom"])
    write(r, "hosp/d_labitems.csv", [(LACTATE, "Lactate", "Blood", "Blood Gas")],
          ["itemid", "label", "fluid", "category"])
    ce = [(1, 201, 401, at(1), HR, "80", "80", "bpm"),
          (1, 201, 499, at(2), HR, "81", "81", "bpm"),              # stay 499: in no icustays row
          (2, 203, None, at(3), HR, "82", "82", "bpm"),             # empty stay_id
          (2, 203, 403, at(4), HR, "83", "83", "bpm"),
          (2, 203, 498, at(5), 220210, "20", "20", "insp/min")]    # in no icustays row, another item
    write(r, "icu/chartevents.csv.gz", ce, ["subject_id", "hadm_id", "stay_id", "charttime", "itemid", "value",
                                            "valuenum", "valueuom"])
    write(r, "icu/d_items.csv", [(HR, "Heart Rate", "HR", "chartevents", "Routine Vital Signs", "bpm", "Numeric"),
                                 (220210, "Respiratory Rate", "RR", "chartevents", "Respiratory", "insp/min",
                                  "Numeric")],
          ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type"])
    return r


def lab_stays(events: pd.DataFrame) -> dict:
    """value -> sorted stay ids its lab row landed in (values identify the LABS rows)."""
    return {v: sorted(g["stay_id"].tolist()) for v, g in events.groupby("value")}


# ------------------------------------------------------------------------------------------- 1. lab join
def test_reader_keeps_unlinked_rows_of_the_given_subjects(root):
    le = read_events(root, "labevents", hadm_ids=[201], unlinked_subject_ids=[1])
    assert sorted(le["valuenum"]) == [2.0, 3.0, 4.0, 5.0, 9.0]            # hadm 201, or no hadm and subject 1
    assert sorted(read_events(root, "labevents", hadm_ids=[201])["valuenum"]) == [2.0, 9.0]
    with pytest.raises(ValueError, match="hadm_ids"):
        read_events(root, "labevents", unlinked_subject_ids=[1])


def test_lab_join_admission_counts_rows_without_hadm(root):
    q = QualityLog()
    ev = stay_events(root, read_icustays(root), sources=("labevents",), quality=q)   # default: admission
    assert lab_stays(ev) == {2.0: [401], 8.0: [403]}
    assert q.count("mimic_iv", "temporal", NO_HADM_IN, flagged=False) == 3          # rows 2, 3, 5
    assert q.count("mimic_iv", "temporal", NO_HADM_OUT, flagged=False) == 1         # row 4 (row 6: not a subject)
    assert q.count("mimic_iv", "temporal", OUTSIDE_ADM) == 1                        # row 8
    assert q.count("mimic_iv", "temporal", NO_HADM_JOINED) == 0
    assert q.count("mimic_iv", "labevents") == 0
    examples = q.to_frame().set_index("reason").loc[NO_HADM_OUT, "examples"]
    assert examples == f"labevents subject 1 at {at(80)}"


def test_lab_join_subject_time_hand_computed(root):
    q = QualityLog()
    ev = stay_events(root, read_icustays(root), sources=("labevents",), quality=q, lab_join="subject_time")
    # row 8 keeps its admission (201) although 402 holds its time; row 5 joins both stays of the transfer
    assert lab_stays(ev) == {2.0: [401], 3.0: [401], 4.0: [402], 6.0: [403, 404], 8.0: [403]}
    assert q.count("mimic_iv", "temporal", NO_HADM_JOINED, flagged=True) == 3       # rows 2, 3, 5
    assert q.count("mimic_iv", "temporal", NO_HADM_MULTI, flagged=True) == 1        # row 5
    assert q.count("mimic_iv", "temporal", NO_HADM_OUT, flagged=False) == 1         # row 4
    assert q.count("mimic_iv", "temporal", OUTSIDE_ADM) == 1 and q.count(reason=NO_HADM_IN) == 0
    assert ev.loc[ev["value"] == 4.0, "time"].tolist() == [pd.Timestamp(at(120))]


def test_lab_join_key_and_validation(root):
    assert SCHEMA["medcsp_lab_join"][0] == "admission" and CHOICES["medcsp_lab_join"] == LAB_JOINS
    assert "medcsp_lab_join" in features.PARAM_KEYS                   # cached features rebuilt when it changes
    with pytest.raises(ValueError, match="medcsp_lab_join"):
        stay_events(root, read_icustays(root), sources=("labevents",), lab_join="nearest")
    with pytest.raises(ValueError, match="subject_id"):
        stay_events(root, read_icustays(root).drop(columns="subject_id"), sources=("labevents",))


def test_lab_join_reaches_the_tensor_through_features(root):
    """medcsp.features._temporal passes the profile key: the subject_time tensor holds the rows without hadm."""
    adm = pd.DataFrame({"hadm_id": [201, 202, 203], "split": ["train", "train", "train"]})
    cfg = dict(mimic_iv_root=root, medcsp_prediction_hours=48.0, medcsp_bin_hours=1.0,
               medcsp_item_min_stay_frac=0.0, medcsp_max_items=None, medcsp_max_stays=3,
               medcsp_temporal_sources=["labevents"])
    masks = {}
    for join in LAB_JOINS:
        q = QualityLog()
        t = features._temporal(SimpleNamespace(**cfg, medcsp_lab_join=join), adm, q)
        row = dict(zip(t["stays"]["stay_id"], t["stays"]["row"]))
        masks[join] = {sid: np.flatnonzero(t["mask"][row[sid], :, 0]).tolist() for sid in STAYS}
    assert masks["admission"] == {401: [2], 402: [], 403: [10], 404: []}
    # row 5 (30 h) lands in bin 30 of 403 (its window is 48 h from intime) and bin 0 of 404
    assert masks["subject_time"] == {401: [2, 3], 402: [20], 403: [10, 30], 404: [0]}


# ------------------------------------------------------------------------------------------- 2. stay_id
def test_events_of_unknown_or_empty_stays_counted(root):
    q = QualityLog()
    ev = stay_events(root, read_icustays(root), sources=("chartevents",), quality=q)
    assert sorted(zip(ev["stay_id"], ev["value"])) == [(401, 80.0), (403, 83.0)]
    unknown = "stay_id in no icustays row (in no ICU stay)"
    assert q.count("mimic_iv", "chartevents", unknown, flagged=False) == 2          # 499 and 498
    assert q.count("mimic_iv", "chartevents", "stay_id empty (in no ICU stay)", flagged=False) == 1
    examples = q.to_frame().set_index("reason").loc[unknown, "examples"]
    assert examples == "chartevents.csv.gz row 2: stay_id 499, chartevents.csv.gz row 5: stay_id 498"
    q2 = QualityLog()                                                # only the requested items are checked
    read_events(root, "chartevents", itemids=[HR], stay_ids=[401], check_stays=True, quality=q2)
    assert q2.count(reason=unknown) == 1 and q2.count(reason="stay_id empty (in no ICU stay)") == 1
    plain = read_events(root, "chartevents", quality=QualityLog())   # without the check: every row, as before
    assert len(plain) == 5


# ------------------------------------------------------------------------------------------- 3. encoding
def test_stray_non_utf8_byte_in_chartevents_read_as_latin1_and_counted(root):
    p = root / "icu" / "chartevents.csv.gz"
    lines = gzip.decompress(p.read_bytes()).split(b"\n")
    lines[1] = lines[1].replace(b",80,80,bpm", b",80,80,bpm\xb7")               # row 1: one stray byte
    lines[4] = lines[4].replace(b",83,83,bpm", b",8\xe93,83,b\xe9m")            # row 4: two fields
    lines[2] = lines[2].replace(b",bpm", b",b\xc3\xa9m")                        # row 2: VALID UTF-8 (not counted)
    p.write_bytes(gzip.compress(b"\n".join(lines)))
    q = QualityLog()
    ce = read_events(root, "chartevents", chunksize=2, quality=q)
    assert ce["valueuom"].tolist()[:4] == ["bpm·", "bém", "bpm", "bém"] and ce["value"][3] == "8é3"
    assert q.count("mimic_iv", "chartevents", LATIN1_FALLBACK_REASON, flagged=True) == 2
    ex = q.to_frame().set_index("reason").loc[LATIN1_FALLBACK_REASON, "examples"]
    assert ex == "chartevents.csv.gz row 1, chartevents.csv.gz row 4"
    q2 = QualityLog()                                                # the temporal path goes on past the byte
    ev = stay_events(root, read_icustays(root), sources=("chartevents",), quality=q2)
    assert sorted(zip(ev["stay_id"], ev["value"])) == [(401, 80.0), (403, 83.0)]
    assert q2.count("mimic_iv", "chartevents", LATIN1_FALLBACK_REASON) == 2
