"""Synthetic MIMIC-IV ICU events and labs (synth/icu.py): layouts, ids, times, FIDDLE onsets and their signal.

Most tests run the table builders directly on a latent cohort (no images), so the whole file takes seconds;
the onsets and prevalences are recomputed here from the tables alone, with plain pandas.
"""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

from medbind_lib.ehr import items as M
from medbind_lib.synth import ehr, icu, latent, mimic
from medbind_lib.synth.common import STREAMS, rng_for

T = 48.0                                     # FIDDLE prediction time (hours after intime)
CHARTEVENTS = ("subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valuenum,valueuom,"
               "warning").split(",")
INPUTEVENTS = ("subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,amount,amountuom,rate,"
               "rateuom,orderid,linkorderid,ordercategoryname,secondaryordercategoryname,"
               "ordercomponenttypedescription,ordercategorydescription,patientweight,totalamount,totalamountuom,"
               "isopenbag,continueinnextdept,statusdescription,originalamount,originalrate").split(",")
DEMO = "mimic-iv-clinical-database-demo-2.2"


def _build(n: int, seed: int = 0):
    c = latent.make_cohort(rng_for(seed, "latent"), n)
    stays = ehr.icustays_table(c.admissions, rng_for(seed, "mimic_iv"))
    tables, truth = icu.make_icu(c.patients, c.admissions, stays, rng_for(seed, "mimic_icu"))
    return c, stays, tables, truth


@pytest.fixture(scope="module")
def big():
    """~1,500 patients: ~650 ICU stays, ~450 FIDDLE-eligible first stays per task."""
    return _build(1500)


def _stays(stays: pd.DataFrame) -> pd.DataFrame:
    st = stays.copy()
    st["intime"], st["outtime"] = pd.to_datetime(st.intime), pd.to_datetime(st.outtime)
    st["los_h"] = (st.outtime - st.intime).dt.total_seconds() / 3600
    return st


def _onsets(tables: dict, stays: pd.DataFrame) -> pd.DataFrame:
    """FIDDLE onsets from the tables alone: ARF = first PEEP set or ventilation start, shock = first pressor."""
    st = _stays(stays)
    ce, pe, ie = tables["icu/chartevents"], tables["icu/procedureevents"], tables["icu/inputevents"]
    peep = pd.to_datetime(ce.charttime[ce.itemid == M.PEEP]).groupby(ce.stay_id).min()
    vent = pd.to_datetime(pe.starttime[pe.itemid.isin(M.VENTILATION)]).groupby(pe.stay_id).min()
    arf = pd.concat([peep, vent], axis=1).min(axis=1)
    shock = pd.to_datetime(ie.starttime[ie.itemid.isin(list(M.VASOPRESSORS))]).groupby(ie.stay_id).min()
    st["arf_h"] = (st.stay_id.map(arf) - st.intime).dt.total_seconds() / 3600
    st["shock_h"] = (st.stay_id.map(shock) - st.intime).dt.total_seconds() / 3600
    return st


def _eligible(st: pd.DataFrame, adm: pd.DataFrame) -> pd.DataFrame:
    """First ICU stay of each (adult) patient that lasts beyond T, with the admission's outcome."""
    st = st.merge(adm[["hadm_id", "hospital_expire_flag"]], on="hadm_id")
    first = st.sort_values("intime").groupby("subject_id").head(1)
    return first[first.los_h > T]


def _hourly_means(events: pd.DataFrame, st: pd.DataFrame, time_col: str, lo: float, hi: float, key="stay_id"):
    e = events.merge(st[[key, "stay_id", "intime"]] if key != "stay_id" else st[["stay_id", "intime"]], on=key)
    h = (pd.to_datetime(e[time_col]) - e.intime).dt.total_seconds() / 3600
    e = e[(h >= lo) & (h < hi)].assign(v=lambda d: pd.to_numeric(d.valuenum))
    return e.pivot_table(index="stay_id", columns="itemid", values="v", aggfunc="mean")


# --- layouts and dictionaries ------------------------------------------------------------------------------
def test_layouts_match_real(big, realdata):
    _, _, tables, _ = big
    demo = realdata / DEMO
    for name in ("icu/procedureevents", "icu/outputevents", "icu/d_items", "hosp/labevents", "hosp/d_labitems"):
        real = list(pd.read_csv(demo / f"{name}.csv.gz", nrows=0).columns)
        assert list(tables[name].columns) == real, name
    assert list(tables["icu/chartevents"].columns) == CHARTEVENTS           # not in the demo: MIMIC-IV 2.2 schema
    assert list(tables["icu/inputevents"].columns) == INPUTEVENTS
    assert set(tables) == set(icu.TABLES)


def test_dictionaries_match_real(big, realdata):
    _, _, tables, _ = big
    demo = realdata / DEMO
    cols = ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type"]
    ours = tables["icu/d_items"][cols].fillna("").replace("", np.nan).set_index("itemid").sort_index()
    real = pd.read_csv(demo / "icu/d_items.csv.gz")[cols].set_index("itemid")
    pd.testing.assert_frame_equal(ours, real.loc[ours.index], check_dtype=False)
    lab = tables["hosp/d_labitems"].set_index("itemid").sort_index()
    real_lab = pd.read_csv(demo / "hosp/d_labitems.csv.gz").set_index("itemid")
    pd.testing.assert_frame_equal(lab, real_lab.loc[lab.index], check_dtype=False)


def test_itemids_come_from_ehr_items(big):
    _, _, t, _ = big
    known = {"icu/chartevents": set(M.VITALS) | {M.PEEP}, "icu/procedureevents": set(M.VENTILATION),
             "icu/inputevents": set(M.VASOPRESSORS), "icu/outputevents": set(M.OUTPUTS)}
    d_items = t["icu/d_items"].set_index("itemid")
    assert set(d_items.index) == set().union(*known.values())
    for name, ids in known.items():
        used = set(t[name].itemid)
        assert used == ids, (name, ids ^ used)                        # every id used, none outside ehr.items
        assert (d_items.loc[sorted(used), "linksto"] == name.split("/")[1]).all()
    assert set(t["hosp/labevents"].itemid) == set(M.LABS) == set(t["hosp/d_labitems"].itemid)
    d_lab = t["hosp/d_labitems"].set_index("itemid")
    assert d_lab.label.to_dict() == {i: v[0] for i, v in M.LABS.items()}
    lab = t["hosp/labevents"]
    assert (lab.valueuom == lab.itemid.map({i: v[3] for i, v in M.LABS.items()})).all()
    ce = t["icu/chartevents"]
    assert (ce.valueuom.fillna("") == ce.itemid.map(d_items.unitname).fillna("")).all()


# --- times, charting, values ---------------------------------------------------------------------------------
def test_events_lie_within_their_stay(big):
    c, stays, t, _ = big
    st = _stays(stays).set_index("stay_id")
    spans = ["starttime", "endtime"]
    for name, cols in (("icu/chartevents", ["charttime"]), ("icu/outputevents", ["charttime"]),
                       ("icu/procedureevents", spans), ("icu/inputevents", spans)):
        df = t[name]
        assert len(df) and df.stay_id.isin(st.index).all(), name
        assert (df.hadm_id.to_numpy() == st.loc[df.stay_id, "hadm_id"].to_numpy()).all(), name
        for col in cols:
            ts = pd.to_datetime(df[col])
            assert (ts >= st.loc[df.stay_id, "intime"].to_numpy()).all(), (name, col)
            assert (ts <= st.loc[df.stay_id, "outtime"].to_numpy()).all(), (name, col)
    assert set(t["icu/chartevents"].stay_id) == set(st.index)             # every stay is charted
    for name in ("icu/procedureevents", "icu/inputevents"):
        df = t[name]
        assert (pd.to_datetime(df.endtime) > pd.to_datetime(df.starttime)).all(), name
    lab = t["hosp/labevents"].merge(c.admissions[["hadm_id", "subject_id", "admittime", "dischtime", "icu"]],
                                    on="hadm_id", suffixes=("", "_a"))
    assert (lab.subject_id == lab.subject_id_a).all() and len(lab) == len(t["hosp/labevents"])
    ts = pd.to_datetime(lab.charttime)
    assert ((ts >= lab.admittime) & (ts <= lab.dischtime)).all()
    assert lab.icu.any() and (~lab.icu).any()                              # ICU and ward-only admissions
    assert t["hosp/labevents"].labevent_id.is_unique


def test_charting_rhythm(big):
    _, stays, t, _ = big
    ce = t["icu/chartevents"]

    def median_gap(df, time_col="charttime"):
        ts = pd.to_datetime(df[time_col])
        gaps = ts.groupby(df.stay_id).diff().dt.total_seconds() / 3600
        return gaps.groupby(df.stay_id).median().median()

    assert 1.0 <= median_gap(ce[ce.itemid == icu.HR]) <= 2.0                    # vitals every 1-2 h
    assert 3.0 <= median_gap(ce[ce.itemid == icu.GCS_MOTOR]) <= 6.0            # GCS every ~4 h
    lab = t["hosp/labevents"]
    lab = lab[lab.itemid == icu.LAB_ITEMS["Creatinine"]].merge(_stays(stays)[["hadm_id", "stay_id", "intime", "outtime"]],
                                                         on="hadm_id")
    ts = pd.to_datetime(lab.charttime)
    in_icu = lab[(ts >= lab.intime) & (ts <= lab.outtime)]
    assert 6.0 <= median_gap(in_icu) <= 24.0                                    # ICU labs every 6-24 h
    # missingness: not every vital at every charting time, FiO2 and ABP only for some
    per_time = ce.groupby(["stay_id", "charttime"]).itemid.nunique()
    assert per_time.median() < len(M.VITALS)
    assert ce[ce.itemid == icu.FIO2].stay_id.nunique() < ce.stay_id.nunique()


def test_values_in_realistic_ranges(big):
    _, _, t, _ = big
    ce = t["icu/chartevents"]
    v = pd.to_numeric(ce.valuenum)
    assert v.notna().all()
    ranges = {icu.HR: (30, 210), icu.SPO2: (60, 100), icu.RR: (5, 50), icu.FIO2: (21, 100), icu.TEMP: (93, 106),
              icu.NBPM: (30, 180), icu.ABPM: (30, 180), M.PEEP: (5, 18), icu.GCS_EYE: (1, 4),
              icu.GCS_VERBAL: (1, 5), icu.GCS_MOTOR: (1, 6)}
    for item, (lo, hi) in ranges.items():
        x = v[ce.itemid == item]
        assert len(x) and x.between(lo, hi).all(), item
    med = v.groupby(ce.itemid).median()
    assert 75 <= med[icu.HR] <= 100 and 94 <= med[icu.SPO2] <= 99 and 70 <= med[icu.NBPM] <= 90
    for item, names in icu.GCS_TEXT.items():
        assert set(ce.value[ce.itemid == item]) <= set(names.values())
    num = ~ce.itemid.isin(list(icu.GCS_TEXT))
    assert (ce.value[num] == ce.valuenum[num]).all()
    lab = t["hosp/labevents"]
    lv = pd.to_numeric(lab.valuenum)
    lab_med = lv.groupby(lab.itemid.map({i: v[0] for i, v in M.LABS.items()})).median()
    assert 1.0 <= lab_med["Lactate"] <= 2.5 and 7.3 <= lab_med["pH"] <= 7.45 and 135 <= lab_med["Sodium"] <= 143
    assert 0.7 <= lab_med["Creatinine"] <= 1.6 and 8 <= lab_med["Hemoglobin"] <= 13
    lo, hi = pd.to_numeric(lab.ref_range_lower), pd.to_numeric(lab.ref_range_upper)
    assert ((lab.flag == "abnormal") == ((lv < lo) | (lv > hi))).all()
    io = t["icu/inputevents"]
    assert (pd.to_numeric(io.amount) > 0).all() and (io.linkorderid.isin(io.orderid)).all()


# --- onsets, prevalences, foreshadowing ----------------------------------------------------------------------
def test_onsets_match_the_latent_truth(big):
    _, stays, t, truth = big
    st = _onsets(t, stays).merge(truth[["stay_id", "arf_on", "shock_on"]], on="stay_id")
    for col, on in (("arf_h", "arf_on"), ("shock_h", "shock_on")):
        has = np.isfinite(st[on])
        assert (st[col].notna() == has).all(), col
        assert (st[col][has] - st[on][has]).between(-1 / 60, 0).all(), col      # floored to the minute


def test_reference_prevalences(big):
    c, stays, t, _ = big
    st = _onsets(t, stays)
    el = _eligible(st, c.admissions)
    assert len(el) >= 250 and len(el) / st.subject_id.nunique() > 0.45          # a good share lasts beyond 48 h
    for task, col in (("arf", "arf_h"), ("shock", "shock_h")):
        early = (el[col] <= T).mean()
        cohort = el[~(el[col] <= T)]
        prev = (cohort[col] > T).mean()
        assert 0.03 <= early <= 0.25, (task, early)                              # some onsets before 48 h ...
        assert abs(prev - M.REFERENCE_PREVALENCE[task]) <= 0.04, (task, prev)    # ... some after, most never
    # mortality: the admissions' own outcome (never changed here), among stays whose patient is alive at T
    death = pd.to_datetime(el.hadm_id.map(c.admissions.set_index("hadm_id").deathtime))
    alive = ~((death - el.intime).dt.total_seconds() / 3600 <= T)
    assert abs(el.hospital_expire_flag[alive].mean() - M.REFERENCE_PREVALENCE["mortality"]) <= 0.07
    assert st.arf_h.notna().mean() < 0.5 and st.shock_h.notna().mean() < 0.5


def test_readings_foreshadow_events(big):
    c, stays, t, _ = big
    st = _onsets(t, stays)
    el = _eligible(st, c.admissions).set_index("stay_id")
    w = _hourly_means(t["icu/chartevents"], st, "charttime", 24, T)
    labs = _hourly_means(t["hosp/labevents"], st, "charttime", 0, T, key="hadm_id")
    first = lambda x: x.reindex(el.index)  # noqa: E731
    w, labs = first(w), first(labs)
    later_arf, no_arf = el.arf_h > T, el.arf_h.isna()
    assert w[icu.SPO2][later_arf].mean() < w[icu.SPO2][no_arf].mean() - 1.0
    assert w[icu.RR][later_arf].mean() > w[icu.RR][no_arf].mean() + 1.5
    assert w[icu.FIO2][later_arf].mean() > w[icu.FIO2][no_arf].mean() + 3
    later_shock, no_shock = el.shock_h > T, el.shock_h.isna()
    mapv = w[icu.NBPM].fillna(w[icu.ABPM])
    assert mapv[later_shock].mean() < mapv[no_shock].mean() - 3
    assert w[icu.HR][later_shock].mean() > w[icu.HR][no_shock].mean() + 4
    lac = icu.LAB_ITEMS["Lactate"]
    assert labs[lac][later_shock].mean() > labs[lac][no_shock].mean() + 0.2
    died = el.hospital_expire_flag == 1
    assert w[icu.GCS_MOTOR][died].mean() < w[icu.GCS_MOTOR][~died].mean() - 0.2
    cr = icu.LAB_ITEMS["Creatinine"]
    assert labs[cr][died].mean() > labs[cr][~died].mean() + 0.15


# --- determinism, non-interference ---------------------------------------------------------------------------
def test_same_seed_same_frames():
    c = latent.make_cohort(rng_for(3, "latent"), 80)
    stays = ehr.icustays_table(c.admissions, rng_for(3, "mimic_iv"))
    adm_before, stays_before = c.admissions.copy(), stays.copy()
    a, ta = icu.make_icu(c.patients, c.admissions, stays, rng_for(3, "mimic_icu"))
    b, tb = icu.make_icu(c.patients, c.admissions, stays, rng_for(3, "mimic_icu"))
    for name in icu.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name])
    pd.testing.assert_frame_equal(ta, tb)
    other, _ = icu.make_icu(c.patients, c.admissions, stays, rng_for(4, "mimic_icu"))
    assert not a["icu/chartevents"].equals(other["icu/chartevents"])
    pd.testing.assert_frame_equal(c.admissions, adm_before)                # outcomes never touched
    pd.testing.assert_frame_equal(stays, stays_before)


def test_no_icu_stays():
    c = latent.make_cohort(rng_for(0, "latent"), 10)
    stays = ehr.icustays_table(c.admissions, rng_for(0, "mimic_iv")).iloc[:0]
    t, _ = icu.make_icu(c.patients, c.admissions, stays, rng_for(0, "mimic_icu"))
    for name in ("icu/chartevents", "icu/inputevents", "icu/procedureevents", "icu/outputevents"):
        assert t[name].empty
    assert len(t["hosp/labevents"]) and len(t["icu/d_items"]) == len(icu.D_ITEMS)


# decompressed sha256 of the tables generator 1.4.0 writes for latent(seed 0, 20 patients) + stream mimic_iv
# (hosp tables as 1.1.0 wrote them; the notes moved once in 1.4.0, when icustays went to the mimic_icu stream)
GOLDEN_1_4_0 = {
    "iv/hosp/admissions.csv.gz": "f74bf7f4bb432073e76c958cb578ec0e861af30ec529bea5ff936a1b0b2ca8c7",
    "iv/hosp/d_icd_diagnoses.csv.gz": "120011494e97dc390a01dda42f831d76c0c02ba15491b753cf03cf33f20b746a",
    "iv/hosp/diagnoses_icd.csv.gz": "87807b1c252cf5b517fbed0c46683fa949a86ad4433de2861bfb011bc8f44af7",
    "iv/hosp/patients.csv.gz": "f29230d9a1f56c7cf3d828bc07a3ed287e0768b51a0b2a98a99a1274c8e5679b",
    "iv/hosp/prescriptions.csv.gz": "3826d3d32697aebcee2d6a7dce71ca0ef77d4cb1371b58d7561e7c3d0b0de794",
    "note/note/discharge.csv.gz": "62fe3e51ebf1e7ecf5774775bd6fa1ee6571aa7ba4d8b59024fc1226563e1b84",
}


def test_existing_tables_unchanged(tmp_path):
    """icustays and the ICU tables draw from their own stream: the hosp tables and notes keep their exact bytes."""
    assert STREAMS["mimic_icu"] not in {v for k, v in STREAMS.items() if k != "mimic_icu"}
    c = latent.make_cohort(rng_for(0, "latent"), 20)
    digests = []
    for k, icu_seed in enumerate((0, 1)):
        root = tmp_path / str(k)
        counts = mimic.write_mimic_iv(c, root / "iv", root / "note", rng_for(0, "mimic_iv"),
                                      rng_for(icu_seed, "mimic_icu"))
        assert counts["chartevents"] > 0 and counts["labevents"] > 0
        digests.append({r: hashlib.sha256(gzip.decompress((root / r).read_bytes())).hexdigest()
                        for r in GOLDEN_1_4_0})
        for name in icu.TABLES:
            assert (root / "iv" / f"{name}.csv.gz").is_file(), name
    assert digests[0] == digests[1] == GOLDEN_1_4_0
    for name in ("icu/chartevents", "icu/icustays"):
        a, b = ((tmp_path / str(k) / f"iv/{name}.csv.gz").read_bytes() for k in (0, 1))
        assert a != b, name
