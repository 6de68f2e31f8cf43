"""Latent patients: chronic conditions, admissions with acute states and outcomes, and visits.

One latent state drives every modality: a visit's CXR, ECG, reports, ICD codes and notes are all
rendered from the same row, which is what makes cross-modal retrieval and zero-shot transfer learnable.

Three groups of patients (``make_sources``), each from its own RNG stream, later groups appended after the
earlier ones so that adding one never changes a row written for another:

- base (``make_cohort``, stream ``latent``): MIMIC-IV admissions, CXR and/or ECG visits (most have both);
- EHR-only (``make_ehr_only``, stream ``ehr_only``): admissions (hence MIMIC-IV tables, ICU stays, notes),
  no CXR and no ECG;
- CXR-only (``make_cxr_only``, stream ``cxr_only``): CXR visits only, no MIMIC-IV admission and no ECG (the
  patients MEDCSP keeps out of pre-training and samples its text->image retrieval hold-out from). Their
  visits come from latent hospital/ED encounters outside MIMIC-IV (``make_admissions`` + ``make_visits``, the
  same model as the base patients; the encounters are not written, the visits carry no ``hadm_id``);
- task population (``make_task_population``, stream ``task``; generator 1.6.0): ICU patients whose every
  admission has an ICU stay (an ICU database, as MIMIC-III), no CXR and no ECG. They play the paper's MIMIC-III:
  MEDCSP's EHR tasks are scored on them and nothing pre-trains on them (``medcsp_task_subjects``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .common import disjoint_ids, rng_for, unique_ints

CHRONIC = ("enlarged", "lvh_ecg", "mi_inferior", "mi_anterior", "lbbb", "rbbb", "avb1", "afib", "paced",
           "htn", "diabetes")
ACUTE = ("edema", "effusion", "pneumonia", "atelectasis", "nodule", "pneumothorax", "fracture",
         "pleural_other", "ischemia", "pvc", "pac")
ADMISSION_TYPES_SEVERE = ("EW EMER.", "URGENT", "DIRECT EMER.")
ADMISSION_TYPES_MILD = ("EU OBSERVATION", "OBSERVATION ADMIT", "ELECTIVE", "SURGICAL SAME DAY ADMISSION")
# P(ICU stay | admission) = sigmoid(a + b * severity). 1.4.0: (-1.25, 0.1), was (-2.0, 0.9): with the steep
# slope, in-hospital mortality among FIDDLE-eligible stays was 25-27 % (FIDDLE: 12 %); now ~14 % (ICU admissions
# still sicker than ward ones, and long stays sicker still). The draw is the same uniform, so only the ICU flag
# moves; every other latent column is unchanged.
ICU_LOGIT = (-1.25, 0.1)
DEATH_LOGIT, READMIT_LOGIT = (-4.0, 1.15), (-1.9, 0.75)     # P(in-hospital death), P(next admission <= 30 d)
# The task population's (1.6.0): intercepts solved (3,000 latent patients, then the default cohort) so that its
# FIDDLE-eligible ICU stays die in hospital ~12 % of the time (FIDDLE at 48 h; the base model gives ~16 %) and its
# ICU admissions discharged alive are readmitted within 30 days ~13.5 % (MEDCSP's Table 4; base ~10 %).
TASK_DEATH_LOGIT, TASK_READMIT_LOGIT = (-4.4, 1.15), (-1.5, 0.75)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Cohort:
    patients: pd.DataFrame      # one row per subject: demographics + chronic conditions
    admissions: pd.DataFrame    # one row per hadm: times, acute state, outcomes
    visits: pd.DataFrame        # one row per CXR/ECG occasion (admission work-up, follow-up, outpatient)


def make_patients(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Demographics and correlated chronic conditions; about a third of patients are healthy."""
    age = np.clip(rng.normal(62, 17, n), 20, 96).round().astype(int)
    healthy = rng.random(n) < 0.36
    a = (age - 65) / 10.0
    enl = rng.random(n) < _sigmoid(-0.9 + 0.45 * a)
    mi = rng.random(n) < 0.16 + 0.12 * enl
    mi_inf = mi & (rng.random(n) < 0.5)
    afib = rng.random(n) < np.clip(0.07 + 0.03 * a + 0.15 * enl, 0.02, 0.6)
    lbbb = rng.random(n) < 0.05 + 0.07 * enl
    rbbb = (rng.random(n) < 0.07) & ~lbbb
    avb1 = (rng.random(n) < np.clip(0.06 + 0.02 * a, 0.02, 0.3)) & ~afib
    paced = rng.random(n) < 0.04 + 0.12 * (lbbb | avb1) + 0.05 * afib
    df = pd.DataFrame({
        "subject_id": unique_ints(rng, n, 10_000_000, 20_000_000),
        "gender": np.where(rng.random(n) < 0.48, "F", "M"),
        "age": age,
        "healthy": healthy,
        "enlarged": enl, "mi_inferior": mi_inf, "mi_anterior": mi & ~mi_inf, "lbbb": lbbb & ~paced,
        "rbbb": rbbb & ~paced, "avb1": avb1 & ~paced, "afib": afib, "paced": paced,
        "htn": rng.random(n) < 0.35 + 0.3 * enl, "diabetes": rng.random(n) < 0.2,
    })
    for c in CHRONIC:
        if c in df:
            df.loc[healthy, c] = False
    df["enlarge_severity"] = np.where(df.enlarged, rng.uniform(0.1, 1.0, n), 0.0).round(3)
    # ECG hypertrophy voltage: most enlarged hearts, a few hypertensive ones; hidden by paced/LBBB QRS.
    lvh = (df.enlarged & (rng.random(n) < 0.85)) | (df.htn & (rng.random(n) < 0.06))
    df["lvh_ecg"] = lvh & ~df.paced & ~df.lbbb
    df["ctr"] = np.where(df.enlarged, 0.53 + 0.13 * df.enlarge_severity + rng.normal(0, 0.01, n),
                         rng.uniform(0.37, 0.47, n)).round(3)
    df["anchor_year"] = rng.integers(2110, 2186, n)
    df["anchor_age"] = np.minimum(df.age, 91)
    df["anchor_year_group"] = rng.choice(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019",
                                          "2020 - 2022"], n)
    df["modalities"] = rng.choice(["both", "cxr", "ecg"], n, p=[0.7, 0.15, 0.15])
    return df


def acute_state(rng: np.random.Generator, p: pd.Series, setting: str) -> dict:
    """Acute findings of one occasion; probabilities rise with the chronic state (correlated findings)."""
    scale = {"admission": 1.0, "outpatient": 0.3}[setting]
    enl, healthy = bool(p.enlarged), bool(p.healthy)
    base = 0.35 if healthy else 1.0
    r = lambda q: bool(rng.random() < min(q * scale * base, 0.95))  # noqa: E731
    pneumonia = r(0.22 + 0.08 * (p.age > 70))
    edema = r(0.08 + 0.5 * enl)
    effusion = r(0.07 + 0.35 * enl + 0.2 * edema + 0.15 * pneumonia)
    return {
        "pneumonia": pneumonia, "edema": edema, "effusion": effusion,
        "atelectasis": r(0.06 + 0.2 * effusion), "nodule": r(0.04), "pneumothorax": r(0.025),
        "fracture": r(0.03), "pleural_other": r(0.025),
        "ischemia": r(0.05 + 0.35 * (p.mi_inferior or p.mi_anterior)),
        "pvc": r(0.05 + 0.08 * enl), "pac": r(0.05),
    }


def severity(p: pd.Series, s: dict) -> float:
    """Latent severity on a logit scale: drives death, readmission, ICU and length of stay."""
    return (0.9 * p.enlarged + 1.2 * (p.enlarged and s["edema"]) + 1.1 * s["pneumonia"] + 0.9 * s["ischemia"]
            + 0.5 * s["effusion"] + 0.4 * p.afib + 0.5 * s["pneumothorax"] + 0.045 * (p.age - 65))


def _times(rng, start: pd.Timestamp, sev: float):
    los_days = float(np.clip(rng.lognormal(np.log(2.5 + 1.2 * max(sev, 0)), 0.5), 0.3, 40))
    admit = start.floor("min")
    return admit, (admit + pd.Timedelta(days=los_days)).floor("min")


def make_admissions(rng: np.random.Generator, patients: pd.DataFrame, death_logit=DEATH_LOGIT,
                    readmit_logit=READMIT_LOGIT) -> pd.DataFrame:
    """1-4 admissions per patient; death ends the series, readmission gaps depend on severity
    (P = sigmoid(a + b * severity) with ``death_logit`` / ``readmit_logit`` = (a, b))."""
    rows = []
    hadm_ids = iter(unique_ints(rng, 4 * len(patients) + 10, 20_000_000, 30_000_000))
    for p in patients.itertuples(index=False):
        n_adm = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.18, 0.12]))
        t = pd.Timestamp(f"{p.anchor_year}-01-01") + pd.Timedelta(days=float(rng.uniform(20, 700)),
                                                                  hours=float(rng.uniform(0, 24)))
        for k in range(n_adm):
            s = acute_state(rng, pd.Series(p._asdict()), "admission")
            sev = severity(pd.Series(p._asdict()), s)
            admit, disch = _times(rng, t, sev)
            died = bool(rng.random() < _sigmoid(death_logit[0] + death_logit[1] * sev))
            readmit = bool(rng.random() < _sigmoid(readmit_logit[0] + readmit_logit[1] * sev))
            severe = sev > 1.0 or rng.random() < 0.5
            atype = rng.choice(ADMISSION_TYPES_SEVERE if severe else ADMISSION_TYPES_MILD)
            ed = atype in ("EW EMER.", "EU OBSERVATION", "URGENT") and rng.random() < 0.85
            row = dict(subject_id=p.subject_id, hadm_id=int(next(hadm_ids)), admittime=admit,
                       dischtime=disch, admission_type=str(atype), severity=round(float(sev), 3),
                       hospital_expire_flag=int(died), icu=bool(rng.random() < _sigmoid(ICU_LOGIT[0] + ICU_LOGIT[1] * sev)),
                       edregtime=admit - pd.Timedelta(hours=float(rng.uniform(1, 8))) if ed else pd.NaT,
                       edouttime=admit + pd.Timedelta(minutes=float(rng.uniform(5, 90))) if ed else pd.NaT,
                       **s)
            if died:
                row["deathtime"] = disch
            rows.append(row)
            if died:
                break
            gap = rng.uniform(2, 29) if readmit else rng.uniform(45, 600)
            t = disch + pd.Timedelta(days=float(gap), hours=float(rng.uniform(0, 24)))
    adm = pd.DataFrame(rows)
    adm["deathtime"] = pd.to_datetime(adm.get("deathtime"))
    adm = adm.sort_values(["subject_id", "admittime"]).reset_index(drop=True)
    nxt = adm.groupby("subject_id").admittime.shift(-1)
    gap = (nxt - adm.dischtime).dt.total_seconds() / 86400
    adm["readmit_30d"] = (adm.hospital_expire_flag == 0) & (gap > 0) & (gap <= 30)
    return adm


def _modal_flags(rng, group: str) -> tuple[bool, bool]:
    if group == "cxr":
        return True, False
    if group == "ecg":
        return False, True
    u = rng.random()
    return (True, True) if u < 0.76 else ((True, False) if u < 0.88 else (False, True))


def make_visits(rng: np.random.Generator, patients: pd.DataFrame, adm: pd.DataFrame) -> pd.DataFrame:
    """CXR/ECG occasions: work-up near each admittime, later follow-ups, and outpatient/ED visits."""
    rows = []
    pat = patients.set_index("subject_id")
    for a in adm.itertuples(index=False):
        p = pat.loc[a.subject_id]
        state = {k: getattr(a, k) for k in ACUTE}
        cxr, ecg = _modal_flags(rng, p.modalities)
        t = a.admittime + pd.Timedelta(hours=float(rng.uniform(-6, 10)))
        rows.append(dict(subject_id=a.subject_id, hadm_id=a.hadm_id, setting="admission", time=t, cxr=cxr,
                         ecg=ecg, **state))
        stay_h = (a.dischtime - a.admittime).total_seconds() / 3600
        if stay_h > 72 and rng.random() < 0.45:   # follow-up study later in the stay, same state
            cxr2, ecg2 = _modal_flags(rng, p.modalities)
            t2 = a.admittime + pd.Timedelta(hours=float(rng.uniform(48, stay_h - 2)))
            rows.append(dict(subject_id=a.subject_id, hadm_id=a.hadm_id, setting="followup", time=t2,
                             cxr=cxr2, ecg=ecg2, **state))
    for sid, g in adm.groupby("subject_id"):
        p = pat.loc[sid]
        for _ in range(int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15]))):
            first, last = g.admittime.min(), g.dischtime.max()
            if rng.random() < 0.5 or g.hospital_expire_flag.any():
                t = first - pd.Timedelta(days=float(rng.uniform(35, 400)), hours=float(rng.uniform(0, 24)))
            else:
                t = last + pd.Timedelta(days=float(rng.uniform(40, 300)), hours=float(rng.uniform(0, 24)))
            cxr, ecg = _modal_flags(rng, p.modalities)
            rows.append(dict(subject_id=sid, hadm_id=pd.NA, setting="outpatient", time=t, cxr=cxr, ecg=ecg,
                             **acute_state(rng, p.rename(None), "outpatient")))
    v = pd.DataFrame(rows)
    v["time"] = v.time.dt.floor("s")
    # ECG of the same occasion: within a few hours of the CXR (|dt| < 24 h), same latent state.
    dt = np.clip(rng.normal(0, 4, len(v)), -20, 20) + np.where(rng.random(len(v)) < 0.05, 30, 0)
    v["ecg_time"] = (v.time + pd.to_timedelta(dt, unit="h")).dt.floor("s")
    v = v.sort_values(["subject_id", "time"]).reset_index(drop=True)
    v.insert(0, "visit_id", np.arange(len(v)))
    v["hadm_id"] = v.hadm_id.astype("Int64")
    return v


def make_cohort(rng: np.random.Generator, n_patients: int) -> Cohort:
    patients = make_patients(rng, n_patients)
    adm = make_admissions(rng, patients)
    visits = make_visits(rng, patients, adm)
    return Cohort(patients, adm, visits)


# --- patients outside the base cohort (generator 1.3.0) --------------------------------------------------
SUBJECT_RANGE, HADM_RANGE = (10_000_000, 20_000_000), (20_000_000, 30_000_000)
VISIT_COLUMNS = ["visit_id", "subject_id", "hadm_id", "setting", "time", "cxr", "ecg", *ACUTE, "ecg_time"]


@dataclass
class Sources:
    """The patient groups of the MIMIC datasets; ``ehr_only`` / ``cxr_only`` / ``task`` are None when empty."""
    base: Cohort
    ehr_only: Cohort | None
    cxr_only: Cohort | None
    task: Cohort | None = None


def source_sizes(n_patients: int, ehr_only_fraction: float, cxr_only_fraction: float) -> tuple[int, int]:
    """Numbers of EHR-only and CXR-only patients: the fractions of ``n_patients``, rounded half up."""
    return tuple(int(np.floor(float(f) * int(n_patients) + 0.5)) for f in (ehr_only_fraction, cxr_only_fraction))


def _extra_patients(rng, n: int, taken_subjects, modalities: str) -> pd.DataFrame:
    p = make_patients(rng, n)
    p["subject_id"] = disjoint_ids(rng, p.subject_id.to_numpy(), np.asarray(taken_subjects, dtype=np.int64),
                                   *SUBJECT_RANGE)
    p["modalities"] = modalities
    return p


def make_ehr_only(rng: np.random.Generator, n: int, taken_subjects, taken_hadm, modalities: str = "none",
                  death_logit=DEATH_LOGIT, readmit_logit=READMIT_LOGIT) -> Cohort:
    """``n`` patients with admissions only (MIMIC-IV tables, ICU stays, notes; no CXR, no ECG), ids disjoint
    from ``taken_*``; ``visits`` is empty. ``modalities`` / ``*_logit``: the group's tag and outcome intercepts
    (``make_admissions``)."""
    patients = _extra_patients(rng, n, taken_subjects, modalities)
    adm = make_admissions(rng, patients, death_logit, readmit_logit)
    adm["hadm_id"] = disjoint_ids(rng, adm.hadm_id.to_numpy(), np.asarray(taken_hadm, dtype=np.int64), *HADM_RANGE)
    return Cohort(patients, adm, pd.DataFrame(columns=VISIT_COLUMNS))


def make_task_population(rng: np.random.Generator, n: int, taken_subjects, taken_hadm) -> Cohort:
    """``n`` ICU patients for MEDCSP's EHR tasks: the base model's patients and admissions with the task
    population's death and readmission intercepts (``TASK_*_LOGIT``: the reference prevalences), each admission
    with an ICU stay (``icu`` set after the draws), no CXR, no ECG; ids disjoint from ``taken_*``."""
    c = make_ehr_only(rng, n, taken_subjects, taken_hadm, "task", TASK_DEATH_LOGIT, TASK_READMIT_LOGIT)
    c.admissions["icu"] = True
    return c


def make_cxr_only(rng: np.random.Generator, n: int, taken_subjects, first_visit_id: int) -> Cohort:
    """``n`` patients with CXR visits only (no admission, no ECG; ``hadm_id`` NA), subject ids disjoint from
    ``taken_subjects``, visit ids from ``first_visit_id``; ``admissions`` is empty. The visits' times and acute
    states come from latent encounters outside MIMIC-IV drawn as base admissions are (same model)."""
    patients = _extra_patients(rng, n, taken_subjects, "cxr")
    encounters = make_admissions(rng, patients)
    visits = make_visits(rng, patients, encounters)
    visits["hadm_id"] = pd.array([pd.NA] * len(visits), dtype="Int64")
    visits["visit_id"] += int(first_visit_id)
    return Cohort(patients, encounters.iloc[:0], visits)


def make_sources(seed: int, n_patients: int, ehr_only_fraction: float = 0.0,
                 cxr_only_fraction: float = 0.0, task_patients: int = 0) -> Sources:
    """The base cohort (stream ``latent``, unchanged by the fractions), the EHR-only / CXR-only patients
    (streams ``ehr_only`` / ``cxr_only``) and the ``task_patients`` of the task population (stream ``task``),
    ids never colliding with an earlier group's."""
    base = make_cohort(rng_for(seed, "latent"), n_patients)
    n_e, n_c = source_sizes(n_patients, ehr_only_fraction, cxr_only_fraction)
    ehr = make_ehr_only(rng_for(seed, "ehr_only"), n_e, base.patients.subject_id,
                        base.admissions.hadm_id) if n_e else None
    taken = np.concatenate([base.patients.subject_id.to_numpy()]
                           + ([ehr.patients.subject_id.to_numpy()] if ehr is not None else []))
    cxr = make_cxr_only(rng_for(seed, "cxr_only"), n_c, taken, len(base.visits)) if n_c else None
    task = None
    if int(task_patients):
        groups = [g for g in (base, ehr, cxr) if g is not None]
        task = make_task_population(rng_for(seed, "task"), int(task_patients),
                                    np.concatenate([g.patients.subject_id.to_numpy() for g in groups]),
                                    np.concatenate([g.admissions.hadm_id.to_numpy() for g in (base, ehr)
                                                    if g is not None]))
    return Sources(base, ehr, cxr, task)
