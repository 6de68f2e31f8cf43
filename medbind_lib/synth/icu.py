"""MIMIC-IV ICU event tables and lab results: latent ICU trajectories that foreshadow ARF, shock and death.

Every ICU stay of ``icu/icustays`` (ehr.icustays_table) gets a latent trajectory over the stay,
driven by its admission's latent state (conditions, severity, ``hospital_expire_flag``):

- respiratory impairment R(t): a baseline from pneumonia / edema / heart failure / effusion (+ noise), plus a
  ramp over the 12-48 h before an ARF onset (falling SpO2, rising FiO2 and RR); at the onset the stay is
  ventilated (``procedureevents`` 225792/225794 from the onset; PEEP set, ``chartevents`` 220339, while
  invasively ventilated; a few stays have PEEP charted without a ventilation row);
- circulatory failure C(t): a baseline from sepsis-like pneumonia / ischemia / severity, plus a ramp over the
  12-40 h before a shock onset (falling MAP, rising HR and lactate, less urine); at the onset a vasopressor
  starts (``inputevents``, a few rate-change segments, sometimes vasopressin added);
- dying D(t) for admissions that end in death (the existing ``hospital_expire_flag``, never changed): lower
  GCS, rising creatinine, BUN and lactate over the stay.

Onsets (``medcsp_items.TASK_EVENTS``) fall before 48 h for some stays, after 48 h for others and never for
most; the intercepts are tuned so that among FIDDLE-eligible stays (first ICU stay of the patient, stay
longer than 48 h, no onset before 48 h) about ``FIDDLE_PREVALENCE`` of stays have the event (ARF ~18 %,
shock ~15 %). Mortality is the latent admissions' own outcome; which admissions reach the ICU
(``latent.ICU_LOGIT``) puts it at ~14 % of those stays (FIDDLE 12 %). The ramps make the first 48 h informative for
onsets after 48 h; a logistic regression on 24-48 h vital and 0-48 h lab means reaches AUROC ~0.88 (ARF),
~0.78 (shock), ~0.85 (mortality) on a 2,500-patient cohort, leaving room for better models.

Charting: vitals on 1-2 h grids, temperature and GCS every ~4 h, labs (``hosp/labevents``) every 6-24 h in the
ICU (more often for sicker stays) and every 14-30 h on the ward (also for admissions without an ICU stay), urine
output hourly (Foley) or every few hours (void); FiO2 when ventilated or on supplemental oxygen, arterial MAP for
stays with an arterial line, blood gases mostly for sicker stays (missingness is informative, as in MIMIC).

All draws, ``icu/icustays`` included (1.4.0), come from one generator (the ``mimic_icu`` stream), so the hosp
tables and notes never depend on the ICU model. Everything is vectorised over stays and events (no per-event Python loops).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..ehr import items as M
from .common import write_csv

# --- real MIMIC-IV 2.2 layouts (demo headers; chartevents/inputevents from the MIMIC-IV 2.2 schema) ------
CHARTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                       "value", "valuenum", "valueuom", "warning"]
INPUTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                       "itemid", "amount", "amountuom", "rate", "rateuom", "orderid", "linkorderid",
                       "ordercategoryname", "secondaryordercategoryname", "ordercomponenttypedescription",
                       "ordercategorydescription", "patientweight", "totalamount", "totalamountuom", "isopenbag",
                       "continueinnextdept", "statusdescription", "originalamount", "originalrate"]
PROCEDUREEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                           "itemid", "value", "valueuom", "location", "locationcategory", "orderid", "linkorderid",
                           "ordercategoryname", "ordercategorydescription", "patientweight", "isopenbag",
                           "continueinnextdept", "statusdescription", "ORIGINALAMOUNT", "ORIGINALRATE"]
OUTPUTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                        "value", "valueuom"]
D_ITEMS_COLUMNS = ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type",
                   "lownormalvalue", "highnormalvalue"]
LABEVENTS_COLUMNS = ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id",
                     "charttime", "storetime", "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper",
                     "flag", "priority", "comments"]
D_LABITEMS_COLUMNS = ["itemid", "label", "fluid", "category"]
TABLES = ("icu/chartevents", "icu/inputevents", "icu/procedureevents", "icu/outputevents", "icu/d_items",
          "hosp/labevents", "hosp/d_labitems")

# --- item ids, looked up by label in medcsp_items (never re-typed) ------------------------------------------
_V = {label: itemid for itemid, (label, _) in M.VITALS.items()}
HR, SBP, DBP, NBPM = (_V["Heart Rate"], _V["Non Invasive Blood Pressure systolic"],
                      _V["Non Invasive Blood Pressure diastolic"], _V["Non Invasive Blood Pressure mean"])
ABPM, RR, SPO2, TEMP, FIO2 = (_V["Arterial Blood Pressure mean"], _V["Respiratory Rate"],
                              _V["O2 saturation pulseoxymetry"], _V["Temperature Fahrenheit"],
                              _V["Inspired O2 Fraction"])
GCS_EYE, GCS_VERBAL, GCS_MOTOR = _V["GCS - Eye Opening"], _V["GCS - Verbal Response"], _V["GCS - Motor Response"]
_P = {name: itemid for itemid, name in M.VASOPRESSORS.items()}
_O = {label: itemid for itemid, (label, _) in M.OUTPUTS.items()}
FOLEY, VOID = _O["Foley"], _O["Void"]
_L = {label: itemid for itemid, (label, *_) in M.LABS.items()}

# d_items rows of the ids used (labels, abbreviations, categories, units and param types as in MIMIC-IV 2.2)
D_ITEMS = {
    **{i: (lab, abbr, "chartevents", cat, unit, "Numeric") for i, lab, abbr, cat, unit in [
        (HR, "Heart Rate", "HR", "Routine Vital Signs", "bpm"),
        (SBP, "Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg"),
        (DBP, "Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg"),
        (NBPM, "Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg"),
        (ABPM, "Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg"),
        (RR, "Respiratory Rate", "RR", "Respiratory", "insp/min"),
        (SPO2, "O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%"),
        (TEMP, "Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "°F"),
        (FIO2, "Inspired O2 Fraction", "FiO2", "Respiratory", ""),
        (M.PEEP, "PEEP set", "PEEP set", "Respiratory", "cmH2O")]},
    **{i: (lab, abbr, "chartevents", "Neurological", "", "Text") for i, lab, abbr in [
        (GCS_EYE, "GCS - Eye Opening", "Eye Opening"), (GCS_VERBAL, "GCS - Verbal Response", "Verbal Response"),
        (GCS_MOTOR, "GCS - Motor Response", "Motor Response")]},
    **{i: (lab, lab, "procedureevents", "2-Ventilation", "", "Processes") for i, lab in [
        (M.INVASIVE_VENTILATION, "Invasive Ventilation"), (M.NONINVASIVE_VENTILATION, "Non-invasive Ventilation")]},
    **{i: (name, name, "inputevents", "Medications", "units" if name == "Vasopressin" else "mg", "Solution")
       for i, name in M.VASOPRESSORS.items()},
    **{i: (lab, lab, "outputevents", "Output", "mL", "Numeric") for i, (lab, _) in M.OUTPUTS.items()},
}
# chartevents valueuom and rounding (decimals) per numeric item
CHART_UNIT = {i: ("" if i == FIO2 else M.VITALS[i][1]) for i in M.VITALS} | {M.PEEP: "cmH2O"}
CHART_DECIMALS = {TEMP: 1}
GCS_TEXT = {
    GCS_EYE: {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"},
    GCS_VERBAL: {5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds",
                 1: "No Response", 0: "No Response-ETT"},         # 0: intubated (valuenum 1, as in MIMIC-IV)
    GCS_MOTOR: {6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws", 3: "Abnormal Flexion",
                2: "Abnormal extension", 1: "No response"},
}
# label -> (decimals, reference range (lower, upper); (F, M) pairs where MIMIC-IV has sex-specific ranges)
LAB_SPEC = {
    "Lactate": (1, (0.5, 2.0)), "pH": (2, (7.35, 7.45)), "pCO2": (0, (35, 45)), "pO2": (0, (85, 105)),
    "Sodium": (0, (135, 147)), "Potassium": (1, (3.3, 5.1)), "Bicarbonate": (0, (22, 32)),
    "Creatinine": (1, ((0.4, 1.1), (0.5, 1.2))), "Urea Nitrogen": (0, (6, 20)), "Glucose": (0, (70, 100)),
    "Hemoglobin": (1, ((11.2, 15.7), (13.7, 17.5))), "Platelet Count": (0, (150, 400)),
    "White Blood Cells": (1, (4.0, 10.0)),
}
PANELS = {"Blood Gas": ("Lactate", "pH", "pCO2", "pO2"),
          "Chemistry": ("Sodium", "Potassium", "Bicarbonate", "Creatinine", "Urea Nitrogen", "Glucose"),
          "Hematology": ("Hemoglobin", "Platelet Count", "White Blood Cells")}
# vasopressor -> (choice weight as first drug, rate range, rate unit, amount unit)
PRESSOR_SPEC = {"Norepinephrine": (0.72, (0.02, 0.5), "mcg/kg/min", "mg"),
                "Phenylephrine": (0.14, (0.5, 3.0), "mcg/kg/min", "mg"),
                "Dopamine": (0.05, (3.0, 15.0), "mcg/kg/min", "mg"),
                "Epinephrine": (0.04, (0.02, 0.2), "mcg/kg/min", "mg"),
                "Vasopressin": (0.05, (2.4, 2.4), "units/hour", "units")}

# --- event model: intercepts solved so that the expected FIDDLE-eligible prevalence over latent cohorts of
# 5,000 patients (3 seeds) is FIDDLE_PREVALENCE; tests/test_synth_icu.py re-measures it from the tables -------
ARF_INTERCEPT, SHOCK_INTERCEPT = -2.5, -2.85      # logit intercepts (1.4.0, with latent.ICU_LOGIT; were -3.35, -3.18)
ARF_EARLY, SHOCK_EARLY = 0.42, 0.36               # share of onsets before 48 h (of stays that get the event)
H = 3_600_000_000_000                             # ns per hour
MIN = 60_000_000_000                              # ns per minute

__all__ = ["make_icu", "write_icu", "TABLES"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ns(s) -> np.ndarray:
    return pd.to_datetime(pd.Series(s)).to_numpy("datetime64[ns]").astype(np.int64)


def _floor_min(ns: np.ndarray) -> np.ndarray:
    return ns - ns % MIN


def _fmt(ns: np.ndarray) -> pd.Series:
    """MIMIC datetime text for int64 ns timestamps (vectorised fmt_dt)."""
    s = np.datetime_as_string(np.asarray(ns, dtype="datetime64[ns]").astype("datetime64[s]"), unit="s")
    return pd.Series(s).str.replace("T", " ", regex=False)


def _num(x: np.ndarray, decimals) -> pd.Series:
    """Numbers as MIMIC writes them: rounded, without trailing zeros (``85``, ``98.6``, ``7.38``)."""
    x = np.asarray(x, dtype=float)
    dec = np.broadcast_to(np.asarray(decimals, dtype=int), x.shape)
    scale = 10 ** dec
    q = np.round(np.abs(x) * scale).astype(np.int64)
    ip, fp = q // scale, q % scale
    s = pd.Series(ip).astype(str)
    sign = np.where(x < 0, "-", "")
    frac = pd.Series(fp).astype(str).str.zfill(2)
    frac = pd.Series(np.where(dec == 1, frac.str[-1], frac)).str.rstrip("0")
    has = (fp > 0) & (dec > 0)
    return pd.Series(sign) + s + pd.Series(np.where(has, "." + frac, ""))


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, rank within group) of a flat array with ``counts[g]`` rows per group."""
    counts = np.asarray(counts, dtype=np.int64)
    g = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    return g, np.arange(len(g)) - start[g]


def _renewal(rng, start: np.ndarray, end: np.ndarray, first: tuple, gap: tuple, scale=1.0):
    """Times (hours from 0) of one renewal process per group on [start, end]: first at start + U(first),
    then gaps U(gap) * scale[g]. Returns (group, time)."""
    scale = np.broadcast_to(np.asarray(scale, dtype=float), start.shape)
    span = np.maximum(end - start, 0)
    cap = np.ceil(span / (gap[0] * scale.clip(min=1e-3))).astype(np.int64) + 2
    g, k = _expand(cap)
    steps = np.where(k == 0, rng.uniform(*first, len(g)), rng.uniform(*gap, len(g)) * scale[g])
    c = np.cumsum(steps)
    c -= (c - steps)[np.cumsum(cap) - cap][g]                          # cumulative sum within group
    t = start[g] + c
    keep = t <= end[g]
    return g[keep], t[keep]


# --- latent state ---------------------------------------------------------------------------------------------
def _admission_state(patients: pd.DataFrame, adm: pd.DataFrame, rng) -> pd.DataFrame:
    """Per admission: respiratory/circulatory risk scores, their baseline impairment and baseline labs."""
    p = patients.set_index("subject_id").loc[adm.subject_id]
    n = len(adm)
    f = lambda c: adm[c].to_numpy().astype(float)  # noqa: E731
    enlarged = p.enlarged.to_numpy().astype(float)
    hf = enlarged * np.maximum(f("edema"), f("effusion"))
    died, sev = f("hospital_expire_flag"), f("severity")
    zr, zc = rng.normal(size=n), rng.normal(size=n)
    resp = (1.3 * f("pneumonia") + 0.9 * f("edema") + 0.7 * hf + 0.4 * f("effusion") + 0.3 * f("atelectasis")
            + 0.5 * f("pneumothorax") + 0.15 * sev + 0.8 * died + 0.7 * zr)
    circ = 1.0 * f("pneumonia") + 0.6 * f("ischemia") + 0.4 * hf + 0.25 * sev + 1.0 * died + 0.7 * zc
    age = p.age.to_numpy().astype(float)
    male = (p.gender.to_numpy() == "M")
    diab, htn = p.diabetes.to_numpy().astype(float), p.htn.to_numpy().astype(float)
    return pd.DataFrame({
        "subject_id": adm.subject_id.to_numpy(), "hadm_id": adm.hadm_id.to_numpy(),
        "admit": _ns(adm.admittime), "disch": _ns(adm.dischtime), "died": died, "sev": sev, "resp": resp,
        "circ": circ, "r0": np.clip(0.08 * (resp - 1.0), -0.15, 0.35),
        "c0": np.clip(0.08 * (circ - 0.8), -0.15, 0.35),
        "pneumonia": f("pneumonia"), "male": male, "afib": p.afib.to_numpy().astype(float),
        "cr0": np.exp(rng.normal(np.log(0.85) + 0.12 * male + 0.25 * diab + 0.15 * htn + 0.006 * (age - 60), 0.25)),
        "hgb0": rng.normal(np.where(male, 11.5, 10.6), 1.5), "plt0": np.exp(rng.normal(np.log(215), 0.3)),
        "wbc0": np.exp(rng.normal(np.log(8.5), 0.3)) + 3.5 * f("pneumonia"), "glu0": rng.normal(118 + 45 * diab, 18),
        "na0": rng.normal(139, 2.5), "k0": rng.normal(4.1, 0.3), "hco30": rng.normal(25, 1.8),
        "weight": np.clip(rng.normal(np.where(male, 85, 72), 17), 40, 180).round(1),
        "d_scale": rng.uniform(0.2, 1.1, n), "d_blur": rng.uniform(0, 1, n),
    })


def _onsets(rng, p: np.ndarray, early_share: float, los_h: np.ndarray, lead: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Onset hour (inf: none) and lead time of the pre-onset ramp: before 48 h for ``early_share`` of the events
    in long stays, after 48 h (48.1 h to the end of the stay, earlier more likely) for the rest."""
    n = len(p)
    event = rng.random(n) < p
    early = rng.random(n) < early_share
    u_early = 0.25 + 47.5 * rng.beta(0.9, 1.6, n)                      # 0.25 .. 47.75 h
    late_span = np.clip(np.minimum(los_h, 260.0) - 48.1 - 0.5, 0, None)
    u_late = 48.1 + late_span * rng.beta(1.0, 2.2, n)
    short = los_h <= 48.6
    u_short = np.minimum(0.25 + (los_h - 0.75).clip(min=0) * rng.beta(0.9, 1.6, n), los_h - 0.5)
    on = np.where(short, u_short, np.where(early, u_early, u_late))
    on = np.where(event & (on > 0.2), on, np.inf)
    return on, rng.uniform(*lead, n)


def _stay_state(icustays: pd.DataFrame, A: pd.DataFrame, rng) -> pd.DataFrame:
    """Per ICU stay: baselines, event onsets and durations, devices and charting densities."""
    a_idx = pd.Index(A.hadm_id).get_indexer(icustays.hadm_id)
    a = A.iloc[a_idx].reset_index(drop=True)
    n = len(icustays)
    intime, outtime = _ns(icustays.intime), _ns(icustays.outtime)
    los_h = (outtime - intime) / H
    p_arf, p_shock = _sigmoid(ARF_INTERCEPT + a.resp.to_numpy()), _sigmoid(SHOCK_INTERCEPT + a.circ.to_numpy())
    arf_on, arf_lead = _onsets(rng, p_arf, ARF_EARLY, los_h, (12.0, 48.0))
    shock_on, shock_lead = _onsets(rng, p_shock, SHOCK_EARLY, los_h, (12.0, 40.0))
    kind = rng.choice(3, n, p=[0.62, 0.28, 0.10])        # 0 invasive (+PEEP), 1 non-invasive, 2 PEEP charted only
    vent_dur = np.where(kind == 1, rng.lognormal(np.log(14), 0.6, n), rng.lognormal(np.log(60), 0.7, n))
    vent_end = np.minimum(arf_on + vent_dur, los_h - 0.05)
    press_dur = rng.lognormal(np.log(30), 0.7, n)
    press_end = np.minimum(shock_on + press_dur, los_h - 0.05)
    risk = np.maximum(p_arf, p_shock)
    return pd.DataFrame({
        "a_idx": a_idx, "subject_id": icustays.subject_id.to_numpy(), "hadm_id": icustays.hadm_id.to_numpy(),
        "stay_id": icustays.stay_id.to_numpy(), "intime": intime, "outtime": outtime, "los_h": los_h,
        "p_arf": p_arf, "p_shock": p_shock, "arf_on": arf_on, "arf_lead": arf_lead, "vent_kind": kind,
        "vent_end": vent_end, "shock_on": shock_on, "shock_lead": shock_lead, "press_end": press_end,
        "hr0": rng.normal(84, 11, n), "map0": rng.normal(81, 8, n), "rr0": rng.normal(17, 2.8, n),
        "spo2_0": np.clip(rng.normal(97.0, 1.4, n), 92, 100), "temp0": rng.normal(98.3, 0.45, n),
        "pp": rng.normal(52, 10, n).clip(25, 90), "uo0": np.exp(rng.normal(np.log(75), 0.35, n)),
        "gcs0": np.minimum(rng.exponential(0.9, n), 6), "afib_hr": rng.normal(6, 4, n),
        "art_line": rng.random(n) < 0.15 + 0.6 * risk, "foley": rng.random(n) < 0.45 + 0.45 * risk,
        "p_vital": rng.uniform(0.5, 0.92, n), "lab_scale": 1 - 0.3 * risk,
        "caregiver0": rng.integers(10_000, 99_000, n), "phase4": rng.integers(0, 4, n),
        "weight": a.weight.to_numpy(),
    })


def _ramp(t, on, lead):
    """0 until ``lead`` hours before the onset, rising to 1 at the onset (convex: most of it near the onset)."""
    with np.errstate(invalid="ignore"):
        r = np.clip((t - (on - lead)) / lead, 0, 1) ** 2
    return np.where(np.isfinite(on) & (t < on), r, 0.0)


def _state(S: pd.DataFrame, A: pd.DataFrame, g: np.ndarray, t: np.ndarray) -> dict:
    """Latent state of stays ``g`` at ``t`` hours after intime: impairments R, C, D and support flags."""
    s = {c: S[c].to_numpy()[g] for c in ("arf_on", "arf_lead", "vent_end", "vent_kind", "shock_on", "shock_lead",
                                         "press_end", "a_idx")}
    a = {c: A[c].to_numpy()[s["a_idx"]] for c in ("r0", "c0", "died", "d_scale", "d_blur", "sev")}
    after_r, after_c = t >= s["arf_on"], t >= s["shock_on"]
    post_r = np.where(after_r, 0.8 * np.exp(-np.where(after_r, t - s["arf_on"], 0) / 36), 0.0)
    post_c = np.where(after_c, 0.7 * np.exp(-np.where(after_c, t - s["shock_on"], 0) / 24), 0.0)
    R = a["r0"] + _ramp(t, s["arf_on"], s["arf_lead"]) + post_r
    C = a["c0"] + _ramp(t, s["shock_on"], s["shock_lead"]) + post_c
    D = np.where(a["died"] > 0, a["d_scale"] * (0.15 + 0.85 * np.clip(t / 120, 0, 1)),
                 0.4 * np.clip(a["sev"] / 4, 0, 1) * a["d_blur"])
    vent = after_r & (t < s["vent_end"])
    return {"R": R, "C": C, "D": D, "vent": vent, "intubated": vent & (s["vent_kind"] != 1),
            "pressor": after_c & (t < s["press_end"])}


# --- chartevents ----------------------------------------------------------------------------------------------
def _chartevents(S, A, rng) -> pd.DataFrame:
    intime = S.intime.to_numpy()
    first = -(-intime // H) * H                                        # the first whole hour in the stay
    off_h = (first - intime) / H
    n_slots = np.floor(S.los_h.to_numpy() - off_h).astype(np.int64) + 1
    g, k = _expand(np.maximum(n_slots, 0))
    keep = rng.random(len(g)) < S.p_vital.to_numpy()[g]
    keep |= k == 0                                                     # vitals at arrival
    g, k = g[keep], k[keep]
    jitter = np.where(rng.random(len(g)) < 0.7, 0, rng.integers(1, 59, len(g))) * MIN
    ts = first[g] + k * H + jitter
    ok = ts <= S.outtime.to_numpy()[g]
    g, k, ts = g[ok], k[ok], ts[ok]
    t = (ts - intime[g]) / H
    st = _state(S, A, g, t)
    m = len(g)
    col = lambda c: S[c].to_numpy()[g]  # noqa: E731
    afib = A.afib.to_numpy()[col("a_idx")] * col("afib_hr")
    R, C, D = st["R"], st["C"], st["D"]
    pressor, vent, intub = st["pressor"], st["vent"], st["intubated"]
    hr = col("hr0") + 22 * C + 6 * R + 8 * D + afib + rng.normal(0, 4, m)
    mapv = np.where(pressor, 69 - 4 * C + rng.normal(0, 4, m), col("map0") - 24 * C - 4 * D + rng.normal(0, 4, m))
    rr = np.where(vent, 16 + 3 * R + rng.normal(0, 2, m), col("rr0") + 7 * R + 3 * C + rng.normal(0, 2, m))
    spo2 = np.where(vent, col("spo2_0") - 1.0 - 2.5 * R, col("spo2_0") - 7.5 * R - 1.0 * C) + rng.normal(0, 1.0, m)
    fio2 = np.where(vent, 35 + 45 * R, 21 + 60 * np.maximum(R - 0.12, 0)) + rng.normal(0, 4, m)
    fio2 = np.clip(np.round(fio2 / 5) * 5, 21, 100)
    peep = np.clip(np.round(5 + 7 * R + rng.normal(0, 1.2, m)), 5, 18)
    pneu = A.pneumonia.to_numpy()[col("a_idx")]
    temp = col("temp0") + 1.4 * pneu * np.maximum(C, 0.3) + 0.4 * C + rng.normal(0, 0.35, m)
    pp = col("pp") - 10 * C + rng.normal(0, 5, m)
    art = col("art_line") | (pressor & (rng.random(m) < 0.8))
    u = rng.random((7, m))
    four = k % 4 == col("phase4")                                      # temperature / GCS every ~4 h
    gsl = col("gcs0") + 4 * D + np.where(intub, 4.0, 0.0) + rng.normal(0, 0.8, m)
    gsl = np.clip(gsl, 0, 12)
    eye = np.clip(np.round(4 - gsl * 0.3), 1, 4)
    verbal = np.where(intub, 0, np.clip(np.round(5 - gsl * 0.4), 1, 5))
    motor = np.clip(np.round(6 - gsl * 0.3), 1, 6)
    rows = []

    def add(item, mask, val):
        rows.append((np.full(mask.sum(), item, dtype=np.int64), np.flatnonzero(mask), np.asarray(val)[mask]))

    add(HR, u[0] < 0.98, np.clip(hr, 30, 210))
    nbp = (~art & (u[1] < 0.9)) | (art & (u[1] < 0.2))
    add(SBP, nbp, np.clip(mapv + 2 * pp / 3, 50, 250))
    add(DBP, nbp, np.clip(mapv - pp / 3, 20, 150))
    add(NBPM, nbp, np.clip(mapv + rng.normal(0, 1.5, m), 30, 180))
    add(ABPM, art & (u[2] < 0.95), np.clip(mapv + rng.normal(0, 2, m), 30, 180))
    add(RR, u[3] < 0.95, np.clip(rr, 5, 50))
    add(SPO2, u[4] < 0.95, np.clip(spo2, 60, 100))
    add(FIO2, (vent & (u[5] < 0.55)) | (~vent & (fio2 > 25) & (u[5] < 0.3)), fio2)
    add(TEMP, four & (u[6] < 0.85), np.clip(temp, 93, 106))
    add(M.PEEP, intub & (u[5] < 0.6) & (t > col("arf_on")), peep)
    gcs = four & (u[6] < 0.9)
    for item, v in ((GCS_EYE, eye), (GCS_VERBAL, verbal), (GCS_MOTOR, motor)):
        add(item, gcs, v)
    item = np.concatenate([r[0] for r in rows])
    idx = np.concatenate([r[1] for r in rows])
    val = np.concatenate([r[2] for r in rows]).astype(float)
    ts_ev = ts[idx]
    # ARF: stays with PEEP but no ventilation row chart their first PEEP at the onset itself
    only = np.flatnonzero((S.vent_kind.to_numpy() == 2) & np.isfinite(S.arf_on.to_numpy()))
    on_ns = _floor_min(intime[only] + (S.arf_on.to_numpy()[only] * H).astype(np.int64))
    st0 = _state(S, A, only, (on_ns - intime[only]) / H)
    item = np.concatenate([item, np.full(len(only), M.PEEP)])
    val = np.concatenate([val, np.clip(np.round(5 + 7 * st0["R"] + rng.normal(0, 1.2, len(only))), 5, 18)])
    ts_ev = np.concatenate([ts_ev, on_ns])
    gg = np.concatenate([g[idx], only])
    return _chart_frame(S, gg, item, val, ts_ev, rng)


def _chart_frame(S, g, item, val, ts, rng) -> pd.DataFrame:
    n = len(g)
    is_gcs = np.isin(item, list(GCS_TEXT))
    dec = np.array([CHART_DECIMALS.get(int(i), 0) for i in np.unique(item)])[np.searchsorted(np.unique(item), item)]
    num = _num(np.where(is_gcs, np.maximum(val, 1), val), dec)
    text = num.to_numpy(dtype=object)
    for i, names in GCS_TEXT.items():
        sel = item == i
        text[sel] = pd.Series(val[sel].astype(int)).map(names).to_numpy()
    uom = pd.Series(item).map(CHART_UNIT).fillna("").to_numpy()
    warn = (((item == SPO2) & (val < 88)) | (((item == ABPM) | (item == NBPM)) & (val < 60))
            | ((item == HR) & (val > 130)))
    df = pd.DataFrame({
        "subject_id": S.subject_id.to_numpy()[g], "hadm_id": S.hadm_id.to_numpy()[g],
        "stay_id": S.stay_id.to_numpy()[g],
        "caregiver_id": S.caregiver0.to_numpy()[g] + rng.integers(0, 4, n) * 211, "_t": ts,
        "storetime": _fmt(ts + rng.integers(0, 25, n) * MIN).to_numpy(), "itemid": item, "value": text,
        "valuenum": num.to_numpy(), "valueuom": uom, "warning": warn.astype(int)})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "charttime", _fmt(df.pop("_t").to_numpy()))
    return df[CHARTEVENTS_COLUMNS]


# --- procedureevents / inputevents / outputevents ------------------------------------------------------------
def _procedureevents(S, rng) -> pd.DataFrame:
    sel = np.flatnonzero(np.isfinite(S.arf_on.to_numpy()) & (S.vent_kind.to_numpy() != 2))
    s = S.iloc[sel]
    start = _floor_min(s.intime.to_numpy() + (s.arf_on.to_numpy() * H).astype(np.int64))
    end = np.maximum(_floor_min(s.intime.to_numpy() + (s.vent_end.to_numpy() * H).astype(np.int64)), start + MIN)
    end = np.minimum(end, _floor_min(s.outtime.to_numpy()))
    mins = (end - start) // MIN
    oid = rng.choice(9_000_000, len(s), replace=False) + 100_000
    item = np.where(s.vent_kind.to_numpy() == 1, M.NONINVASIVE_VENTILATION, M.INVASIVE_VENTILATION)
    w = _num(s.weight.to_numpy(), 1).to_numpy()
    df = pd.DataFrame({
        "subject_id": s.subject_id.to_numpy(), "hadm_id": s.hadm_id.to_numpy(), "stay_id": s.stay_id.to_numpy(),
        "caregiver_id": s.caregiver0.to_numpy() + 17, "starttime": _fmt(start), "endtime": _fmt(end),
        "storetime": _fmt(end + rng.integers(0, 40, len(s)) * MIN), "itemid": item, "value": mins,
        "valueuom": "min", "location": "", "locationcategory": "", "orderid": oid, "linkorderid": oid,
        "ordercategoryname": "Ventilation", "ordercategorydescription": "ContinuousProcess", "patientweight": w,
        "isopenbag": 1, "continueinnextdept": 0, "statusdescription": "FinishedRunning", "ORIGINALAMOUNT": mins,
        "ORIGINALRATE": 1})
    return df.sort_values(["subject_id", "stay_id", "starttime"], kind="stable").reset_index(drop=True)


def _inputevents(S, A, rng) -> pd.DataFrame:
    sel = np.flatnonzero(np.isfinite(S.shock_on.to_numpy()))
    s = S.iloc[sel]
    n = len(s)
    names = list(PRESSOR_SPEC)
    weights = np.array([PRESSOR_SPEC[k][0] for k in names])
    first = rng.choice(len(names), n, p=weights / weights.sum())
    add_vaso = (rng.random(n) < 0.3) & (np.array(names)[first] != "Vasopressin")
    # infusions: (stay row, drug, start hour, end hour)
    on, end = s.shock_on.to_numpy(), s.press_end.to_numpy()
    v_on = np.minimum(on + rng.uniform(1, 12, n), end - 0.1)
    inf_stay = np.concatenate([np.arange(n), np.flatnonzero(add_vaso & (v_on > on))])
    inf_drug = np.concatenate([first, np.full(len(inf_stay) - n, names.index("Vasopressin"))])
    inf_start = np.concatenate([on, v_on[inf_stay[n:]]])
    inf_end = np.maximum(end[inf_stay], inf_start + 0.05)
    # each infusion: rate-change segments of 0.5-6 h
    gi, seg_t = _renewal(rng, inf_start, inf_end, (0.0, 0.0), (0.5, 6.0))
    nxt = np.append(seg_t[1:], np.inf)[:len(gi)]
    last = np.append(gi[1:] != gi[:-1], True)[:len(gi)]
    seg_end = np.where(last, inf_end[gi], nxt)
    st_rows = inf_stay[gi]
    intime = s.intime.to_numpy()[st_rows]
    t0 = _floor_min(intime + (seg_t * H).astype(np.int64))
    t1 = np.maximum(_floor_min(intime + (seg_end * H).astype(np.int64)), t0 + MIN)
    t1 = np.minimum(t1, _floor_min(s.outtime.to_numpy()[st_rows]))
    drug = np.array(names)[inf_drug[gi]]
    lo = np.array([PRESSOR_SPEC[d][1][0] for d in names])[inf_drug[gi]]
    hi = np.array([PRESSOR_SPEC[d][1][1] for d in names])[inf_drug[gi]]
    rate = lo + (hi - lo) * rng.beta(1.5, 3.0, len(gi))
    w = A.weight.to_numpy()[s.a_idx.to_numpy()[st_rows]]
    minutes = (t1 - t0) / MIN
    per_kg = np.array([PRESSOR_SPEC[d][2] == "mcg/kg/min" for d in names])[inf_drug[gi]]
    amount = np.where(per_kg, rate * w * minutes / 1000.0, rate * minutes / 60.0)
    oid = rng.choice(9_000_000, len(gi), replace=False) + 100_000
    link = oid[np.searchsorted(gi, gi)]                                   # first segment's order id per infusion
    m = len(gi)
    df = pd.DataFrame({
        "subject_id": s.subject_id.to_numpy()[st_rows], "hadm_id": s.hadm_id.to_numpy()[st_rows],
        "stay_id": s.stay_id.to_numpy()[st_rows], "caregiver_id": s.caregiver0.to_numpy()[st_rows] + 31,
        "_t": t0, "endtime": _fmt(t1), "storetime": _fmt(t0 + rng.integers(0, 30, m) * MIN),
        "itemid": pd.Series(drug).map(_P).to_numpy(), "amount": np.round(amount, 6),
        "amountuom": np.array([PRESSOR_SPEC[d][3] for d in names])[inf_drug[gi]], "rate": np.round(rate, 6),
        "rateuom": np.array([PRESSOR_SPEC[d][2] for d in names])[inf_drug[gi]], "orderid": oid, "linkorderid": link,
        "ordercategoryname": "01-Drips", "secondaryordercategoryname": "02-Fluids (Crystalloids)",
        "ordercomponenttypedescription": "Main order parameter", "ordercategorydescription": "Continuous Med",
        "patientweight": _num(w, 1).to_numpy(), "totalamount": 250, "totalamountuom": "mL", "isopenbag": 0,
        "continueinnextdept": 0,
        "statusdescription": np.where(last, "FinishedRunning", "ChangeDose/Rate"),
        "originalamount": np.round(amount, 6), "originalrate": np.round(rate, 6)})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "starttime", _fmt(df.pop("_t").to_numpy()))
    return df[INPUTEVENTS_COLUMNS]


def _outputevents(S, A, rng) -> pd.DataFrame:
    n = len(S)
    intime, los_h = S.intime.to_numpy(), S.los_h.to_numpy()
    foley = S.foley.to_numpy()
    first = -(-intime // H) * H
    off_h = (first - intime) / H
    g1, k1 = _expand(np.where(foley, np.floor(los_h - off_h).astype(np.int64) + 1, 0).clip(min=0))
    keep = rng.random(len(g1)) < 0.85
    g1, t1 = g1[keep], off_h[g1[keep]] + k1[keep]
    g2, t2 = _renewal(rng, np.zeros(n)[~foley], los_h[~foley], (0.5, 4.0), (2.0, 7.0))
    g2 = np.flatnonzero(~foley)[g2]
    g = np.concatenate([g1, g2])
    t = np.concatenate([t1, t2])
    item = np.concatenate([np.full(len(g1), FOLEY), np.full(len(g2), VOID)])
    ts = _floor_min(intime[g] + np.round(t * H).astype(np.int64))
    ok = ts <= S.outtime.to_numpy()[g]
    g, item, ts = g[ok], item[ok], ts[ok]
    st = _state(S, A, g, (ts - intime[g]) / H)
    uo = S.uo0.to_numpy()[g] * np.exp(-1.1 * st["C"] - 0.9 * st["D"] + rng.normal(0, 0.3, len(g)))
    val = np.where(item == FOLEY, np.round(uo / 5) * 5, np.round(uo * 3.5 / 25) * 25).clip(0, 1500)
    m = len(g)
    df = pd.DataFrame({"subject_id": S.subject_id.to_numpy()[g], "hadm_id": S.hadm_id.to_numpy()[g],
                       "stay_id": S.stay_id.to_numpy()[g], "caregiver_id": S.caregiver0.to_numpy()[g] + 7, "_t": ts,
                       "storetime": _fmt(ts + rng.integers(-15, 30, m) * MIN).to_numpy(), "itemid": item,
                       "value": val.astype(np.int64), "valueuom": "ml"})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "charttime", _fmt(df.pop("_t").to_numpy()))
    return df[OUTPUTEVENTS_COLUMNS]


# --- labevents ------------------------------------------------------------------------------------------------
def _lab_values(A, S, a_idx, g, t, in_icu, rng) -> dict:
    """Lab values at ``t`` hours after intime (stay ``g``) inside the ICU, else at the admission's baseline."""
    m = len(a_idx)
    st = _state(S, A, np.where(in_icu, g, 0), t) if len(S) else None
    col = lambda c: A[c].to_numpy()[a_idx]  # noqa: E731
    if st is None:
        R = C = D = np.zeros(m)
        vent = np.zeros(m, bool)
    else:
        R = np.where(in_icu, st["R"], col("r0"))
        C = np.where(in_icu, st["C"], col("c0"))
        D = np.where(in_icu, st["D"], 0.15 * col("died") * col("d_scale"))
        vent = in_icu & st["vent"]
    e = lambda sd: rng.normal(0, sd, m)  # noqa: E731
    cr = col("cr0") * np.exp(0.5 * D + 0.3 * np.maximum(C, 0) + e(0.07))
    return {
        "Lactate": np.clip(1.15 * np.exp(1.1 * np.maximum(C, 0) + 0.3 * D + e(0.22)), 0.3, 20),
        "pH": np.clip(7.40 - 0.07 * C - 0.03 * D + np.where(vent, 0, -0.02 * R) + e(0.03), 6.9, 7.65),
        "pCO2": np.clip(40 + 7 * R * (col("resp") > 2) - 4 * C + e(4), 18, 110),
        "pO2": np.clip(np.where(vent, 110 - 20 * R, 92 - 30 * R) + e(12), 35, 450),
        "Sodium": np.clip(col("na0") + e(1.5), 115, 165),
        "Potassium": np.clip(col("k0") + 0.35 * D + e(0.25), 2.3, 7.5),
        "Bicarbonate": np.clip(col("hco30") - 5 * C - 2 * D + e(1.5), 8, 45), "Creatinine": np.clip(cr, 0.2, 12),
        "Urea Nitrogen": np.clip(16 * cr ** 0.8 * np.exp(e(0.12)), 3, 180),
        "Glucose": np.clip(col("glu0") + 20 * C + e(22), 40, 600),
        "Hemoglobin": np.clip(col("hgb0") - 0.4 * C + e(0.35), 4, 19),
        "Platelet Count": np.clip(col("plt0") * np.exp(-0.25 * np.maximum(C, 0) + e(0.08)), 5, 900),
        "White Blood Cells": np.clip(col("wbc0") + 4 * np.maximum(C, 0) + e(0.8), 0.3, 80),
    }, R, C


def _labevents(A, S, rng) -> pd.DataFrame:
    n_a = len(A)
    # ICU: from shortly after intime to outtime, every 6-24 h (more often for sicker stays)
    if len(S):
        gs, ts = _renewal(rng, np.zeros(len(S)), S.los_h.to_numpy(), (0.1, 2.0), (6.0, 24.0), S.lab_scale.to_numpy())
    else:
        gs, ts = np.zeros(0, int), np.zeros(0)
    icu_a = S.a_idx.to_numpy()[gs]
    icu_ns = _floor_min(S.intime.to_numpy()[gs] + (ts * H).astype(np.int64))
    # ward (every admission): every 14-30 h from admission to discharge, outside the ICU stay
    ga, ta = _renewal(rng, np.zeros(n_a), (A.disch.to_numpy() - A.admit.to_numpy()) / H, (0.5, 4.0), (14.0, 30.0))
    ward_ns = _floor_min(A.admit.to_numpy()[ga] + (ta * H).astype(np.int64))
    stay_of = np.full(n_a, -1)
    stay_of[S.a_idx.to_numpy()] = np.arange(len(S))
    if len(S):                                      # ward draws during the ICU stay are the ICU's own
        sg = np.maximum(stay_of[ga], 0)
        inside = (stay_of[ga] >= 0) & (ward_ns >= S.intime.to_numpy()[sg]) & (ward_ns <= S.outtime.to_numpy()[sg])
        ga, ward_ns = ga[~inside], ward_ns[~inside]
    a_idx = np.concatenate([icu_a, ga])
    g = np.concatenate([gs, np.maximum(stay_of[ga], 0)])
    ns = np.concatenate([icu_ns, ward_ns])
    in_icu = np.concatenate([np.ones(len(gs), bool), np.zeros(len(ga), bool)])
    t = (ns - S.intime.to_numpy()[g]) / H if len(S) else np.zeros(len(ns))
    vals, R, C = _lab_values(A, S, a_idx, g, t, in_icu, rng)
    m = len(a_idx)
    art = np.where(in_icu, S.art_line.to_numpy()[g], False) if len(S) else np.zeros(m, bool)
    p_bg = np.where(in_icu, 0.15 + 0.45 * art + 0.3 * ((R > 0.5) | (C > 0.5)), 0.04)
    panel_on = {"Blood Gas": rng.random(m) < p_bg, "Chemistry": rng.random(m) < 0.96,
                "Hematology": rng.random(m) < np.where(in_icu, 0.85, 0.7)}
    spec_id = rng.choice(90_000_000, 3 * m, replace=False).reshape(3, m) + 1_000_000
    store_lag = rng.uniform(0.3, 2.0, (3, m))
    priority = np.where(in_icu, rng.choice(["STAT", "ROUTINE", ""], m, p=[0.6, 0.3, 0.1]),
                        rng.choice(["STAT", "ROUTINE", ""], m, p=[0.3, 0.6, 0.1]))
    providers = np.array([""] * 18 + ["P" + "".join(rng.choice(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"), 5))
                                      for _ in range(12)])
    prov = providers[rng.integers(0, len(providers), m)]
    male = A.male.to_numpy()[a_idx]
    parts = []
    for p_k, (panel, labels) in enumerate(PANELS.items()):
        for label in labels:
            dec, rr = LAB_SPEC[label]
            on = panel_on[panel] & (rng.random(m) < 0.97)
            idx = np.flatnonzero(on)
            lo, hi = (np.where(male[idx], rr[1][0], rr[0][0]), np.where(male[idx], rr[1][1], rr[0][1])) \
                if isinstance(rr[0], tuple) else (np.full(len(idx), rr[0]), np.full(len(idx), rr[1]))
            v = np.round(vals[label][idx], dec)
            parts.append(pd.DataFrame({
                "_a": a_idx[idx], "specimen_id": spec_id[p_k, idx], "itemid": _L[label], "order_provider_id": prov[idx],
                "_t": ns[idx], "storetime": ns[idx] + (store_lag[p_k, idx] * 60).astype(np.int64) * MIN, "_v": v,
                "_dec": dec, "valueuom": M.LABS[_L[label]][3], "ref_range_lower": lo, "ref_range_upper": hi,
                "flag": np.where((v < lo) | (v > hi), "abnormal", ""), "priority": priority[idx], "comments": ""}))
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "subject_id", A.subject_id.to_numpy()[df._a.to_numpy()])
    df.insert(1, "hadm_id", A.hadm_id.to_numpy()[df.pop("_a").to_numpy()])
    df = df.sort_values(["subject_id", "_t", "specimen_id", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(0, "labevent_id", np.arange(len(df)) + int(rng.integers(100_000, 1_000_000)))
    text = _num(df._v.to_numpy(), df.pop("_dec").to_numpy())
    df["value"], df["valuenum"] = text.to_numpy(), text.to_numpy()
    df.pop("_v")
    df["charttime"] = _fmt(df.pop("_t").to_numpy()).to_numpy()
    df["storetime"] = _fmt(df.storetime.to_numpy()).to_numpy()
    for c in ("ref_range_lower", "ref_range_upper"):
        df[c] = _num(df[c].to_numpy(), 2).to_numpy()
    return df[LABEVENTS_COLUMNS]


# --- dictionaries ---------------------------------------------------------------------------------------------
def d_items_table(itemids) -> pd.DataFrame:
    rows = [(i, *D_ITEMS[i], "", "") for i in sorted(set(int(x) for x in itemids))]
    return pd.DataFrame(rows, columns=D_ITEMS_COLUMNS)


def d_labitems_table() -> pd.DataFrame:
    return pd.DataFrame([(i, lab, fluid, cat) for i, (lab, fluid, cat, _) in sorted(M.LABS.items())],
                        columns=D_LABITEMS_COLUMNS)


# --- entry points ---------------------------------------------------------------------------------------------
def make_icu(patients: pd.DataFrame, admissions: pd.DataFrame, icustays: pd.DataFrame,
             rng) -> tuple[dict, pd.DataFrame]:
    """The seven tables (``TABLES``) and a per-stay truth frame (onset hours, event probabilities)."""
    A = _admission_state(patients, admissions, rng)
    S = _stay_state(icustays, A, rng)
    chart = _chartevents(S, A, rng)
    proc = _procedureevents(S, rng)
    inputs = _inputevents(S, A, rng)
    outputs = _outputevents(S, A, rng)
    labs = _labevents(A, S, rng)
    tables = {"icu/chartevents": chart, "icu/inputevents": inputs, "icu/procedureevents": proc,
              "icu/outputevents": outputs, "icu/d_items": d_items_table(D_ITEMS), "hosp/labevents": labs,
              "hosp/d_labitems": d_labitems_table()}
    truth = S[["subject_id", "hadm_id", "stay_id", "los_h", "p_arf", "p_shock", "arf_on", "shock_on",
               "vent_kind"]].copy()
    return tables, truth


def write_icu(patients: pd.DataFrame, admissions: pd.DataFrame, icustays: pd.DataFrame, iv_root: Path, rng) -> dict:
    """Write ``TABLES`` under ``iv_root`` (gzip CSV, like the other MIMIC-IV tables); returns row counts."""
    tables, _ = make_icu(patients, admissions, icustays, rng)
    for name, df in tables.items():
        write_csv(df, Path(iv_root) / f"{name}.csv.gz")
    return {name.split("/")[1]: len(df) for name, df in tables.items()}
