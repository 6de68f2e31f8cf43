"""MIMIC-IV ICU event readers (datasets/mimic_icu.py), FIDDLE onsets (ehr/onsets.py) and task cohorts
(ehr/cohorts.py): hand-built tables with hand-computed answers, then the REAL MIMIC-IV demo against
independent csv-module computations."""
from __future__ import annotations

import csv
import gzip
import warnings
from datetime import datetime

import pandas as pd
import pytest

from medbind_lib.ehr import items as M
from medbind_lib.datasets import mimic_icu
from medbind_lib.datasets.mimic_icu import read_events, read_icustays
from medbind_lib.ehr import build_cohorts, first_event_times, task_cohorts, task_onsets
from medbind_lib.errors import DataError
from medbind_lib.quality import QualityLog

BASE = pd.Timestamp("2100-01-01 00:00:00")
HR, VASO, NOREPI = 220045, M.VENTILATION[0], 221906
UNKNOWN_ITEM = 999999


def at(hours: float) -> str:
    return str(BASE + pd.Timedelta(hours=hours))


def write(root, rel: str, rows: list, columns: list) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)   # .gz suffix -> gzip


# stay_id: (subject_id, hadm_id, intime h, outtime h); T = 48 h
STAYS = {301: (1, 201, 0, 120), 302: (2, 202, 0, 96), 303: (3, 203, 0, 30), 304: (4, 204, 0, 50),
         305: (1, 205, 720, 820), 306: (5, 206, 0, 100), 307: (6, 207, 0, 96), 308: (7, 208, 0, 96),
         309: (8, 209, 0, 72), 310: (9, 210, 0, -1)}          # 310: outtime before intime
AGES = {1: 60, 2: 70, 3: 50, 4: 80, 5: 16, 6: 40, 7: 55, 8: 65, 9: 30}
DEATH = {202: 144, 204: 40}                                   # hadm -> deathtime h (in hospital)


def stay_of(sid):
    subj, hadm, _, _ = STAYS[sid]
    return subj, hadm, sid


@pytest.fixture
def root(tmp_path):
    """A tiny MIMIC-IV root in the real 2.2 layouts (some tables .csv, some .csv.gz)."""
    r = tmp_path / "mimiciv"
    write(r, "icu/icustays.csv", [(*stay_of(s), "MICU", "MICU", at(i), at(o), (o - i) / 24)
                                  for s, (_, _, i, o) in STAYS.items()],
          ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"])
    ce = [(*stay_of(301), 11, at(60), at(60.2), M.PEEP, "5", "5", "cmH2O", 0),
          (*stay_of(306), 11, at(60), at(60.2), M.PEEP, "5", "5", "cmH2O", 0),
          (*stay_of(307), 11, at(-2), at(-1.9), M.PEEP, "8", "8", "cmH2O", 0),      # before intime
          (*stay_of(301), 11, at(1), at(1.1), HR, "80", "80", "bpm", 0),
          (*stay_of(301), 11, at(2), at(2.1), HR, "abc", "abc", "bpm", 0),           # unparseable
          (*stay_of(302), 11, at(3), at(3.1), HR, "90", "90", "bpm", 0),
          (*stay_of(309), 11, at(3), at(3.1), UNKNOWN_ITEM, "1", "1", "", 0)]        # not in d_items
    write(r, "icu/chartevents.csv.gz", ce, ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime",
                                            "storetime", "itemid", "value", "valuenum", "valueuom", "warning"])
    pe = [(*stay_of(301), 12, at(72), at(80), at(80), VASO, 480, "min", 70.0, 5),
          (*stay_of(302), 12, at(10), at(20), at(20), M.NONINVASIVE_VENTILATION, 600, "min", 80.0, 5),
          (*stay_of(305), 12, at(780), at(790), at(790), VASO, 600, "min", 70.0, 5),
          (*stay_of(307), 12, at(50), at(60), at(60), VASO, 600, "min", 90.0, 5)]
    write(r, "icu/procedureevents.csv.gz", pe, ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime",
                                                "endtime", "storetime", "itemid", "value", "valueuom",
                                                "patientweight", "ORIGINALAMOUNT"])
    ie = [(*stay_of(302), 13, at(50), at(51), at(51), NOREPI, 1.0, "mg", 0.1, "mcg/kg/min"),
          (*stay_of(307), 13, at(100), at(101), at(101), NOREPI, 1.0, "mg", 0.1, "mcg/kg/min"),  # after outtime
          (*stay_of(308), 13, at(20), at(19), at(20), NOREPI, 1.0, "mg", 0.1, "mcg/kg/min"),     # end < start
          (*stay_of(308), 13, at(48), at(49), at(49), 221749, 2.0, "mg", 0.5, "mcg/kg/min")]     # exactly T
    write(r, "icu/inputevents.csv", ie, ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime",
                                         "storetime", "itemid", "amount", "amountuom", "rate", "rateuom"])
    write(r, "icu/outputevents.csv", [(*stay_of(301), 14, at(5), at(5.5), 226559, 300, "ml")],
          ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
           "valueuom"])
    items = ([(i, lab, lab, "chartevents", "Routine Vital Signs", u, "Numeric") for i, (lab, u) in M.VITALS.items()]
             + [(M.PEEP, "PEEP set", "PEEP set", "chartevents", "Respiratory", "cmH2O", "Numeric")]
             + [(i, f"vent {i}", "", "procedureevents", "Ventilation", "", "Process") for i in M.VENTILATION]
             + [(i, lab, lab, "inputevents", "Medications", "mg", "Solution") for i, lab in M.VASOPRESSORS.items()]
             + [(i, lab, lab, "outputevents", "Output", u, "Numeric") for i, (lab, u) in M.OUTPUTS.items()])
    write(r, "icu/d_items.csv.gz", items, ["itemid", "label", "abbreviation", "linksto", "category", "unitname",
                                           "param_type"])
    le = [(1, 1, 201, 501, 50813, at(1), "2.1", "2.1", "mmol/L"),
          (2, 1, None, 502, 50912, at(2), "1.0", "1.0", "mg/dL"),                    # no hadm_id (outpatient)
          (3, 2, 202, 503, 50813, at(3), "4.5", "4.5", "mmol/L"),
          (4, 2, 202, 504, 51301, at(4), "___", "", "K/uL")]
    write(r, "hosp/labevents.csv.gz", le, ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid",
                                           "charttime", "value", "valuenum", "valueuom"])
    write(r, "hosp/d_labitems.csv", [(i, lab, fl, cat) for i, (lab, fl, cat, _) in M.LABS.items()],
          ["itemid", "label", "fluid", "category"])
    write(r, "hosp/patients.csv.gz", [(s, "F", a, 2100, "2008 - 2010", None) for s, a in AGES.items()],
          ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"])
    adm = [(subj, hadm, at(i - 5), at(o + 72), at(DEATH[hadm]) if hadm in DEATH else None, "EW EMER.",
            "EMERGENCY ROOM", "DIED" if hadm in DEATH else "HOME", int(hadm in DEATH))
           for (subj, hadm, i, o) in STAYS.values()]
    write(r, "hosp/admissions.csv", adm, ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime",
                                          "admission_type", "admission_location", "discharge_location",
                                          "hospital_expire_flag"])
    return r


# ------------------------------------------------------------------------------------------------ readers
@pytest.mark.parametrize("table", ["chartevents", "labevents", "inputevents", "procedureevents", "icustays"])
def test_chunked_read_equals_unchunked(root, table):
    whole = read_events(root, table, quality=QualityLog())
    for size in (1, 2, 3):
        pd.testing.assert_frame_equal(read_events(root, table, chunksize=size, quality=QualityLog()), whole)


def test_default_columns_and_types(root):
    ce = read_events(root, "chartevents")
    assert list(ce.columns) == list(mimic_icu.TABLES["chartevents"].default)
    assert "caregiver_id" not in ce and "storetime" not in ce           # minimal default, not every column
    assert str(ce["stay_id"].dtype) == "Int64" and str(ce["charttime"].dtype) == "datetime64[ns]"
    assert ce["valuenum"].dtype == "float64"
    le = read_events(root, "labevents")
    assert le["hadm_id"].isna().sum() == 1                              # nullable id kept
    pe = read_events(root, "procedureevents", columns=["stay_id", "itemid", "originalamount", "storetime"])
    assert list(pe.columns) == ["stay_id", "itemid", "originalamount", "storetime"]   # case-insensitive header
    assert pe["originalamount"].tolist() == [5.0] * 4 and pe["storetime"].dtype == "datetime64[ns]"


def test_filters(root):
    peep = read_events(root, "chartevents", itemids=[M.PEEP])
    assert sorted(peep["stay_id"]) == [301, 306, 307] and set(peep["itemid"]) == {M.PEEP}
    s301 = read_events(root, "chartevents", stay_ids=[301], chunksize=2)
    assert set(s301["stay_id"]) == {301} and len(s301) == 3
    both = read_events(root, "chartevents", itemids=M.VITALS, hadm_ids=201)      # dict keys, scalar id
    assert both["itemid"].tolist() == [HR, HR] and set(both["hadm_id"]) == {201}
    labs = read_events(root, "labevents", itemids=[50813], hadm_ids=[202])
    assert labs["valuenum"].tolist() == [4.5]
    with pytest.raises(DataError, match="stay_id"):                      # labevents has no stay_id
        read_events(root, "labevents", stay_ids=[301])
    only = read_events(root, "chartevents", itemids=[M.PEEP], columns=["stay_id", "charttime"])
    assert list(only.columns) == ["stay_id", "charttime"] and len(only) == 3    # filter column read, not returned


def test_unparseable_values_counted_not_fatal(root):
    q = QualityLog()
    ce = read_events(root, "chartevents", chunksize=2, quality=q)
    bad = ce[ce["value"] == "abc"]
    assert len(bad) == 1 and bad["valuenum"].isna().all()
    assert q.count(stage="chartevents", reason="valuenum not numeric (kept as NaN)") == 1
    assert q.count(stage="chartevents", reason="itemid not in d_items (kept)") == 1       # UNKNOWN_ITEM
    assert len(ce) == 7                                                              # both kept
    q2 = QualityLog()
    le = read_events(root, "labevents", quality=q2)
    assert q2.count(stage="labevents") == 0 and le["valuenum"].isna().sum() == 1     # empty is missing, not bad


def test_requested_unknown_items_counted(root):
    q = QualityLog()
    df = read_events(root, "chartevents", itemids=[M.PEEP, 123], quality=q)
    assert len(df) == 3
    assert q.count(reason="requested itemid not in d_items") == 1
    assert q.count(reason="requested itemid has no rows") == 1


def test_missing_table_names_table_and_both_paths(root):
    (root / "icu" / "inputevents.csv").unlink()
    with pytest.raises(DataError) as e:
        read_events(root, "inputevents")
    msg = str(e.value)
    assert "'inputevents'" in msg and str(root / "icu" / "inputevents.csv") in msg
    assert str(root / "icu" / "inputevents.csv.gz") in msg


def test_missing_column_and_unknown_table(root):
    with pytest.raises(DataError, match="missing column"):
        read_events(root, "outputevents", columns=["stay_id", "amount"])
    with pytest.raises(ValueError, match="unknown MIMIC-IV event table"):
        read_events(root, "noteevents")


def test_duplicated_stay_ids(root):
    df = pd.read_csv(root / "icu" / "icustays.csv")
    pd.concat([df, df.iloc[[0]]]).to_csv(root / "icu" / "icustays.csv", index=False)
    with pytest.raises(DataError, match="stay_id"):
        read_icustays(root)


def test_icustays_negative_stay_excluded(root):
    q = QualityLog()
    st = read_icustays(root, quality=q)
    assert 310 not in set(st["stay_id"]) and len(st) == 9
    assert q.count(stage="icustays", reason="outtime before intime") == 1
    assert st.set_index("stay_id").loc[303, "los_hours"] == pytest.approx(30.0)


def test_negative_durations_excluded_and_counted(root):
    q = QualityLog()
    ie = read_events(root, "inputevents", quality=q)
    assert len(ie) == 3 and not (ie["endtime"] < ie["starttime"]).any()
    assert q.count(stage="inputevents", reason="endtime before starttime (negative duration)") == 1


def test_bad_id_and_bad_datetime_name_the_row(root):
    p = root / "icu" / "outputevents.csv"
    p.write_text(p.read_text() + "1,201,x301,14,2100-01-01 06:00:00,2100-01-01 06:30:00,226559,100,ml\n")
    with pytest.raises(DataError) as e:
        read_events(root, "outputevents")
    assert "[record row 2]" in str(e.value) and "stay_id" in str(e.value)
    p.write_text(p.read_text().replace("x301", "301").replace("2100-01-01 06:00:00", "yesterday"))
    with pytest.raises(DataError, match="charttime") as e:
        read_events(root, "outputevents")
    assert "[record row 2]" in str(e.value)


# ------------------------------------------------------------------------------------------------ onsets
def test_onsets_hand_computed(root):
    q = QualityLog()
    o = task_onsets(root, quality=q, chunksize=2).set_index("stay_id")
    arf = {301: at(60), 302: at(10), 305: at(780), 306: at(60), 307: at(50)}   # 307: PEEP at -2 h ignored
    shock = {302: at(50), 308: at(48)}             # 307: after outtime; 308 at 20 h: end < start
    assert o["arf_onset"].dropna().to_dict() == {k: pd.Timestamp(v) for k, v in arf.items()}
    assert o["shock_onset"].dropna().to_dict() == {k: pd.Timestamp(v) for k, v in shock.items()}
    assert o.loc[301, "arf_source"] == "chartevents" and o.loc[307, "arf_source"] == "procedureevents"
    assert q.count(stage="onset_arf", reason="chartevents: event before intime (ignored)") == 1
    assert q.count(stage="onset_shock", reason="inputevents: event after outtime (ignored)") == 1
    assert q.count(stage="inputevents", reason="endtime before starttime (negative duration)") == 1


def test_onset_window_rules():
    stays = pd.DataFrame({"stay_id": [1, 2], "intime": pd.to_datetime(["2100-01-01", "2100-01-01"]),
                          "outtime": pd.to_datetime(["2100-01-05", "2100-01-05"])})
    ev = pd.DataFrame({"stay_id": pd.array([1, 1, 2, 3, None], dtype="Int64"),
                       "charttime": pd.to_datetime(["2099-12-31 23:00", "2100-01-02 00:00", "2100-01-06 00:00",
                                                    "2100-01-02 00:00", "2100-01-02 00:00"])})
    q = QualityLog()
    ign = first_event_times(ev, stays, "charttime", quality=q)
    assert ign.to_dict() == {1: pd.Timestamp("2100-01-02")}                     # 2: only event after outtime
    assert q.count(reason="events: event before intime (ignored)") == 1
    assert q.count(reason="events: event after outtime (ignored)") == 1
    assert q.count(reason="events: event stay_id not among the stays (ignored)") == 1
    assert q.count(reason="events: event without stay_id (ignored)") == 1
    keep = first_event_times(ev, stays, "charttime", outside_window="keep_before_intime")
    assert keep.to_dict() == {1: pd.Timestamp("2099-12-31 23:00")}
    with pytest.raises(ValueError, match="outside_window"):
        first_event_times(ev, stays, "charttime", outside_window="clip")


def test_missing_source_error_or_skip(root):
    (root / "icu" / "inputevents.csv").unlink()
    with pytest.raises(DataError, match="inputevents"):
        task_onsets(root)
    q = QualityLog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        o = task_onsets(root, missing_source="skip", quality=q)
    said = " ".join(str(w.message) for w in caught)
    assert "onsets built without inputevents" in said and "task 'shock' left out" in said
    assert "arf_onset" in o and "shock_onset" not in o
    assert q.count(stage="onsets", reason="source table missing (onsets from the other sources only)") == 1


# ------------------------------------------------------------------------------------------------ cohorts
def labels(c, task):
    return dict(zip(c.frames[task]["stay_id"], c.frames[task]["label"]))


def test_cohorts_hand_computed(root):
    q = QualityLog()
    c = task_cohorts(root, quality=q)
    # 305 second stay, 306 child, 304 died at 40 h, 303 left at 30 h, 310 outtime < intime (reader)
    assert labels(c, "arf") == {301: 1, 307: 1, 308: 0, 309: 0}                 # 302 onset at 10 h excluded
    assert labels(c, "shock") == {301: 0, 302: 1, 307: 0, 308: 1, 309: 0}
    assert labels(c, "mortality") == {301: 0, 302: 1, 307: 0, 308: 0, 309: 0}
    arf = c.frames["arf"].set_index("stay_id")
    assert list(c.frames["arf"].columns) == ["subject_id", "hadm_id", "stay_id", "intime", "outtime",
                                             "prediction_time", "label", "onset"]
    assert arf.loc[307, "prediction_time"] == BASE + pd.Timedelta(hours=48)
    assert arf.loc[307, "onset"] == pd.Timestamp(at(50)) and pd.isna(arf.loc[309, "onset"])
    assert c.frames["mortality"].set_index("stay_id").loc[302, "onset"] == pd.Timestamp(at(144))
    counts = c.counts[c.counts["task"] == "arf"].set_index("criterion")
    assert counts["excluded"].to_dict() == {"ICU stays": 0, "not the patient's first ICU stay": 1,
                                            "no patients row": 0, "age < 18": 1, "no admissions row": 0,
                                            "died before T=48h": 1, "left the ICU before T=48h": 1,
                                            "arf onset before T=48h": 1}
    assert counts.loc["ICU stays", "remaining"] == 9 and counts["remaining"].iloc[-1] == 4
    assert q.count(stage="cohort_arf") == 5 and q.count(stage="cohort_mortality") == 4
    s = c.summary().set_index("task")
    assert s.loc["shock", "positives"] == 2 and s.loc["shock", "prevalence"] == pytest.approx(0.4)


def test_cohort_parameters(root):
    c = task_cohorts(root, outside_window="keep_before_intime", tasks=["arf"])
    assert labels(c, "arf") == {301: 1, 308: 0, 309: 0}                          # 307 PEEP at -2 h: onset < T
    c = task_cohorts(root, onset_before_prediction="positive", tasks="arf")
    assert labels(c, "arf") == {301: 1, 302: 1, 307: 1, 308: 0, 309: 0}
    c = task_cohorts(root, first_stay_only=False, min_age=10, tasks="mortality")
    assert set(labels(c, "mortality")) == {301, 302, 305, 306, 307, 308, 309}
    c = task_cohorts(root, prediction_hours=24, tasks=["arf", "mortality"])
    assert labels(c, "arf") == {301: 1, 303: 0, 304: 0, 307: 1, 308: 0, 309: 0}  # 303 (30 h), 304 (death 40 h) in
    assert 304 in labels(c, "mortality") and labels(c, "mortality")[304] == 1
    with pytest.raises(ValueError, match="onset_before_prediction"):
        task_cohorts(root, onset_before_prediction="drop")


def test_build_cohorts_needs_onsets(root):
    st = read_icustays(root)
    pat = pd.DataFrame({"subject_id": list(AGES), "anchor_age": list(AGES.values()), "anchor_year": 2100})
    adm = pd.DataFrame({"hadm_id": [v[1] for v in STAYS.values()], "deathtime": pd.NaT, "hospital_expire_flag": 0})
    with pytest.raises(ValueError, match="arf_onset"):
        build_cohorts(st, pat, adm, None, tasks=["arf"])
    c = build_cohorts(st, pat.drop(index=0), adm, None, tasks=["mortality"])      # subject 1 has no patients row
    assert c.counts.set_index("criterion").loc["no patients row", "excluded"] == 1


# ------------------------------------------------------------------------------------------------ real demo
@pytest.fixture(scope="module")
def demo(realdata):
    r = realdata / "mimic-iv-clinical-database-demo-2.2"
    need = ["icu/icustays", "icu/procedureevents", "icu/outputevents", "icu/d_items", "hosp/labevents",
            "hosp/d_labitems", "hosp/patients", "hosp/admissions"]
    absent = [n for n in need if not (r / f"{n}.csv.gz").exists() and not (r / f"{n}.csv").exists()]
    if absent:
        pytest.skip(f"MIMIC-IV demo tables {absent} not found under {r}")
    return r


def raw_rows(root, rel):
    path = root / f"{rel}.csv.gz"
    with (gzip.open(path, "rt", newline="") if path.exists() else open(root / f"{rel}.csv", newline="")) as f:
        yield from csv.DictReader(f)


@pytest.mark.realdata
def test_demo_ventilation_starts_match_plain_loop(demo):
    expected = {}
    for row in raw_rows(demo, "icu/procedureevents"):
        if int(row["itemid"]) in M.VENTILATION:
            t = datetime.fromisoformat(row["starttime"])
            sid = int(row["stay_id"])
            expected[sid] = min(expected.get(sid, t), t)
    q = QualityLog()
    ev = read_events(demo, "procedureevents", itemids=M.VENTILATION, quality=q, chunksize=17)
    got = ev.groupby("stay_id")["starttime"].min()
    assert {int(k): v.to_pydatetime() for k, v in got.items()} == expected
    assert len(expected) == 66 and q.count(flagged=False) == 0


@pytest.mark.realdata
def test_demo_icustays_match_file(demo):
    rows = list(raw_rows(demo, "icu/icustays"))
    st = read_icustays(demo)
    assert len(st) == len(rows) == 140
    assert sorted(st["stay_id"]) == sorted(int(r["stay_id"]) for r in rows)


@pytest.mark.realdata
def test_demo_labevents_filtered_by_labs(demo):
    n = sum(int(r["itemid"]) in M.LABS for r in raw_rows(demo, "hosp/labevents"))
    le = read_events(demo, "labevents", itemids=M.LABS, chunksize=25_000, progress=False)
    assert len(le) == n > 0 and set(le["itemid"]) <= set(M.LABS)


@pytest.mark.realdata
def test_demo_dictionaries_hold_every_medcsp_item(demo):
    d = read_events(demo, "d_items").set_index("itemid")
    expect = {**{i: "chartevents" for i in list(M.VITALS) + [M.PEEP]},
              **{i: "procedureevents" for i in M.VENTILATION},
              **{i: "inputevents" for i in M.VASOPRESSORS}, **{i: "outputevents" for i in M.OUTPUTS}}
    for table_ids in M.TASK_EVENTS.values():
        for table, ids in table_ids.items():
            expect.update({i: table for i in ids})
    assert set(expect) <= set(d.index), sorted(set(expect) - set(d.index))
    assert {i: d.loc[i, "linksto"] for i in expect} == expect
    labels = {**{i: v[0] for i, v in M.VITALS.items()}, **M.VASOPRESSORS, **{i: v[0] for i, v in M.OUTPUTS.items()}}
    assert {i: d.loc[i, "label"] for i in labels} == labels
    dl = read_events(demo, "d_labitems").set_index("itemid")
    assert set(M.LABS) <= set(dl.index)
    assert {i: tuple(dl.loc[i, ["label", "fluid", "category"]]) for i in M.LABS} == {
        i: v[:3] for i, v in M.LABS.items()}


@pytest.mark.realdata
def test_demo_outputevents_readable(demo):
    n = sum(1 for _ in raw_rows(demo, "icu/outputevents"))
    q = QualityLog()
    oe = read_events(demo, "outputevents", quality=q)
    assert len(oe) == n and oe["value"].dtype == "float64" and oe["charttime"].notna().all()
    assert q.count() == 0


@pytest.mark.realdata
def test_demo_onsets_and_cohorts(demo):
    with pytest.raises(DataError, match="chartevents"):                 # the demo copy has no chartevents
        task_onsets(demo)
    q = QualityLog()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        c = task_cohorts(demo, missing_source="skip", quality=q)
    assert set(c.frames) == {"arf", "mortality"}                       # shock needs inputevents
    first = c.counts.set_index(["task", "criterion"])["excluded"]
    assert first[("arf", "not the patient's first ICU stay")] == 140 - 100
    assert q.count(stage="onset_arf", reason="procedureevents: event before intime (ignored)") == 9
