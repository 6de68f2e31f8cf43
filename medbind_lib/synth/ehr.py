"""MIMIC-IV hosp/icu tables and MIMIC-IV-Note discharge summaries from the latent admissions.

Outcomes were already drawn from the latent severity (latent.make_admissions); here they become
``hospital_expire_flag`` / ``deathtime`` / ``discharge_location = DIED`` and admission gaps, and the
conditions become ICD codes, prescriptions and discharge-note sections.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import fmt_dt

# condition -> (ICD-10, ICD-9, long title ICD-10, long title ICD-9)
ICD = {
    "heart_failure": ("I509", "4280", "Heart failure, unspecified", "Congestive heart failure, unspecified"),
    "enlarged": ("I517", "4293", "Cardiomegaly", "Cardiomegaly"),
    "pneumonia": ("J189", "486", "Pneumonia, unspecified organism", "Pneumonia, organism unspecified"),
    "effusion": ("J90", "5119", "Pleural effusion, not elsewhere classified", "Unspecified pleural effusion"),
    "edema": ("J810", "5184", "Acute pulmonary edema", "Acute edema of lung, unspecified"),
    "ischemia": ("I214", "41071", "Non-ST elevation (NSTEMI) myocardial infarction",
                 "Subendocardial infarction, initial episode of care"),
    "old_mi": ("I252", "412", "Old myocardial infarction", "Old myocardial infarction"),
    "afib": ("I4891", "42731", "Unspecified atrial fibrillation", "Atrial fibrillation"),
    "paced": ("Z950", "V4501", "Presence of cardiac pacemaker", "Cardiac pacemaker in situ"),
    "lbbb": ("I447", "4263", "Left bundle-branch block, unspecified", "Left bundle branch block"),
    "rbbb": ("I4510", "42640", "Unspecified right bundle-branch block", "Right bundle branch block, unspecified"),
    "avb1": ("I440", "4260", "Atrioventricular block, first degree", "Atrioventricular block, first degree"),
    "htn": ("I10", "4019", "Essential (primary) hypertension", "Unspecified essential hypertension"),
    "diabetes": ("E119", "25000", "Type 2 diabetes mellitus without complications",
                 "Diabetes mellitus without mention of complication, type II or unspecified type"),
    "atelectasis": ("J9811", "5180", "Atelectasis", "Pulmonary collapse"),
    "pneumothorax": ("J9383", "5128", "Other pneumothorax", "Other spontaneous pneumothorax"),
    "nodule": ("R911", "79311", "Solitary pulmonary nodule", "Solitary pulmonary nodule"),
    "chest_pain": ("R079", "78650", "Chest pain, unspecified", "Chest pain, unspecified"),
}
FILLER_ICD = [("E785", "10", "Hyperlipidemia, unspecified"), ("K219", "10", "Gastro-esophageal reflux disease without esophagitis"),
              ("N179", "10", "Acute kidney failure, unspecified"), ("F329", "10", "Major depressive disorder, single episode, unspecified"),
              ("2724", "9", "Other and unspecified hyperlipidemia"), ("5849", "9", "Acute kidney failure, unspecified"),
              ("Z87891", "10", "Personal history of nicotine dependence"), ("D649", "10", "Anemia, unspecified")]
# condition -> prescriptions (drug, formulary code, gsn, ndc, strength, dose, unit, route)
DRUGS = {
    "heart_failure": [("Furosemide", "FURO40I", "008208", "00054829725", "40mg/4mL Vial", "40", "mg", "IV")],
    "pneumonia": [("CefTRIAXone", "CEFT1I", "009133", "00409733201", "1gm Vial", "1", "g", "IV"),
                  ("Azithromycin", "AZIT250", "026721", "00093714656", "250 mg Tab", "500", "mg", "PO/NG")],
    "afib": [("Metoprolol Tartrate", "METO25", "004632", "51079025520", "25mg Tablet", "25", "mg", "PO/NG"),
             ("Apixaban", "APIX5", "066545", "00003089421", "5 mg Tab", "5", "mg", "PO/NG")],
    "ischemia": [("Aspirin", "ASA81", "004380", "63739043301", "81mg Tab", "81", "mg", "PO/NG"),
                 ("Heparin", "HEPAPREMIX", "006549", "00409762034", "25,000 unit Premix Bag", "25000", "UNIT", "IV")],
    "old_mi": [("Atorvastatin", "ATOR40", "029968", "00071015623", "40mg Tablet", "40", "mg", "PO/NG")],
    "htn": [("Lisinopril", "LISI10", "000388", "00172375880", "10mg Tablet", "10", "mg", "PO/NG")],
    "any": [("Sodium Chloride 0.9%  Flush", "NACLFLUSH", "", "0", "10 mL Syringe", "3", "mL", "IV"),
            ("Acetaminophen", "ACET325", "004489", "00904198861", "325mg Tablet", "650", "mg", "PO/NG")],
}
ADMISSION_COLUMNS = ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                     "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
                     "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag"]
PRESCRIPTION_COLUMNS = ["subject_id", "hadm_id", "pharmacy_id", "poe_id", "poe_seq", "order_provider_id",
                        "starttime", "stoptime", "drug_type", "drug", "formulary_drug_cd", "gsn", "ndc",
                        "prod_strength", "form_rx", "dose_val_rx", "dose_unit_rx", "form_val_disp",
                        "form_unit_disp", "doses_per_24_hrs", "route"]


def conditions(p, a) -> list[str]:
    """Coded conditions of one admission (principal first): acute problems, then chronic history."""
    acute = [("heart_failure", p.enlarged and (a.edema or a.effusion)), ("ischemia", a.ischemia),
             ("pneumonia", a.pneumonia), ("edema", a.edema), ("effusion", a.effusion),
             ("pneumothorax", a.pneumothorax), ("atelectasis", a.atelectasis), ("nodule", a.nodule)]
    chronic = [("enlarged", p.enlarged), ("afib", p.afib), ("old_mi", p.mi_inferior or p.mi_anterior),
               ("paced", p.paced), ("lbbb", p.lbbb), ("rbbb", p.rbbb), ("avb1", p.avb1), ("htn", p.htn),
               ("diabetes", p.diabetes)]
    out = [k for k, on in acute + chronic if on]
    return out or ["chest_pain"]


def _provider(rng) -> str:
    return "P" + "".join(rng.choice(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"), 5))


def admissions_table(adm: pd.DataFrame, rng) -> pd.DataFrame:
    n = len(adm)
    died = adm.hospital_expire_flag.to_numpy() == 1
    mild = adm.admission_type.isin(["ELECTIVE", "SURGICAL SAME DAY ADMISSION"]).to_numpy()
    loc = np.where(mild, "PHYSICIAN REFERRAL",
                   rng.choice(["EMERGENCY ROOM", "EMERGENCY ROOM", "TRANSFER FROM HOSPITAL", "WALK-IN/SELF REFERRAL"], n))
    disch = np.where(died, "DIED", rng.choice(["HOME", "HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY",
                                               "REHAB", ""], n))
    return pd.DataFrame({
        "subject_id": adm.subject_id, "hadm_id": adm.hadm_id, "admittime": adm.admittime.map(fmt_dt),
        "dischtime": adm.dischtime.map(fmt_dt), "deathtime": adm.deathtime.map(fmt_dt),
        "admission_type": adm.admission_type, "admit_provider_id": [_provider(rng) for _ in range(n)],
        "admission_location": loc, "discharge_location": disch,
        "insurance": rng.choice(["Medicare", "Medicaid", "Other"], n), "language": rng.choice(["ENGLISH", "ENGLISH", "?"], n),
        "marital_status": rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", ""], n),
        "race": rng.choice(["WHITE", "WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN",
                            "OTHER", "UNKNOWN"], n),
        "edregtime": adm.edregtime.map(fmt_dt), "edouttime": adm.edouttime.map(fmt_dt),
        "hospital_expire_flag": adm.hospital_expire_flag.astype(int)})[ADMISSION_COLUMNS]


def patients_table(patients: pd.DataFrame, adm: pd.DataFrame, rng) -> pd.DataFrame:
    """dod: in-hospital deaths plus some deaths within a year after the last discharge."""
    dead = adm[adm.hospital_expire_flag == 1].groupby("subject_id").deathtime.max()
    last = adm.groupby("subject_id").agg(dischtime=("dischtime", "max"), sev=("severity", "max"))
    late = last[(rng.random(len(last)) < 0.12 * (last.sev > 1.5)) & ~last.index.isin(dead.index)]
    late_dod = late.dischtime + pd.to_timedelta(rng.uniform(31, 365, len(late)), unit="D")
    dod = pd.concat([dead, late_dod]).dt.strftime("%Y-%m-%d")
    return pd.DataFrame({"subject_id": patients.subject_id, "gender": patients.gender,
                         "anchor_age": patients.anchor_age, "anchor_year": patients.anchor_year,
                         "anchor_year_group": patients.anchor_year_group,
                         "dod": patients.subject_id.map(dod).fillna("")})


def diagnoses_tables(patients, adm) -> tuple[pd.DataFrame, pd.DataFrame]:
    """diagnoses_icd (ICD-9 for the oldest anchor group, else ICD-10) and a d_icd_diagnoses covering them."""
    pat = patients.set_index("subject_id")
    rows = []
    fill = {v: [c for c, ver, _ in FILLER_ICD if ver == v] for v in ("9", "10")}
    for k, a in enumerate(adm.itertuples(index=False)):
        p = pat.loc[a.subject_id]
        ver = "9" if p.anchor_year_group == "2008 - 2010" else "10"
        codes = [ICD[c][0 if ver == "10" else 1] for c in conditions(p, a)] + [fill[ver][k % len(fill[ver])]]
        rows += [(a.subject_id, a.hadm_id, seq, code, int(ver)) for seq, code in enumerate(dict.fromkeys(codes), 1)]
    dx = pd.DataFrame(rows, columns=["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"])
    d = [(v[0], 10, v[2]) for v in ICD.values()] + [(v[1], 9, v[3]) for v in ICD.values()]
    d += [(c, int(v), t) for c, v, t in FILLER_ICD]
    d_icd = pd.DataFrame(d, columns=["icd_code", "icd_version", "long_title"]).drop_duplicates(["icd_code", "icd_version"])
    return dx, d_icd.sort_values(["icd_version", "icd_code"]).reset_index(drop=True)


def prescriptions_table(patients, adm, rng) -> pd.DataFrame:
    pat = patients.set_index("subject_id")
    rows, pharm = [], iter(rng.choice(90_000_000, 40 * len(adm) + 10, replace=False) + 10_000_000)
    for a in adm.itertuples(index=False):
        conds = conditions(pat.loc[a.subject_id], a) + ["any"]
        for seq, (drug, cd, gsn, ndc, strength, dose, unit, route) in enumerate(
                d for c in conds for d in DRUGS.get(c, ())):
            start = a.admittime + pd.Timedelta(hours=float(rng.uniform(0.5, 12)))
            stop = min(a.dischtime, start + pd.Timedelta(days=float(rng.uniform(1, 6))))
            rows.append((a.subject_id, a.hadm_id, int(next(pharm)), f"{a.subject_id}-{seq + 10}", seq + 10,
                         _provider(rng), fmt_dt(start.floor("h")), fmt_dt(stop.floor("h")), "MAIN", drug, cd, gsn,
                         ndc, strength, "", dose, unit, "1", "TAB" if route == "PO/NG" else "VIAL",
                         "1" if route == "PO/NG" else "2", route))
    return pd.DataFrame(rows, columns=PRESCRIPTION_COLUMNS)


def icustays_table(adm, rng) -> pd.DataFrame:
    icu = adm[adm.icu].copy()
    stay_ids = rng.choice(10_000_000, len(icu), replace=False) + 30_000_000
    intime = icu.admittime + pd.to_timedelta(rng.uniform(0.5, 12, len(icu)), unit="h")
    span = (icu.dischtime - intime).dt.total_seconds() / 86400
    los = np.minimum(span * rng.uniform(0.3, 0.95, len(icu)), span).clip(lower=0.05)
    outtime = intime + pd.to_timedelta(los, unit="D")
    unit = rng.choice(["Medical Intensive Care Unit (MICU)", "Coronary Care Unit (CCU)",
                       "Cardiac Vascular Intensive Care Unit (CVICU)", "Medical/Surgical Intensive Care Unit (MICU/SICU)"],
                      len(icu))
    return pd.DataFrame({"subject_id": icu.subject_id, "hadm_id": icu.hadm_id, "stay_id": stay_ids,
                         "first_careunit": unit, "last_careunit": unit, "intime": intime.map(fmt_dt),
                         "outtime": outtime.map(fmt_dt), "los": (outtime - intime).dt.total_seconds() / 86400})


PHRASES = {
    "heart_failure": ("Acute on chronic systolic heart failure", "volume overloaded with bilateral crackles and "
                      "lower extremity edema; diuresed with IV furosemide with improvement in dyspnea"),
    "ischemia": ("NSTEMI", "troponin elevated with ischemic ECG changes; started on heparin drip and aspirin, "
                 "cardiology consulted"),
    "pneumonia": ("Community acquired pneumonia", "fever, productive cough and a consolidation on chest x-ray; "
                  "treated with ceftriaxone and azithromycin"),
    "edema": ("Pulmonary edema", "chest x-ray with pulmonary edema; improved with diuresis"),
    "effusion": ("Pleural effusion", "pleural effusion on imaging, monitored, no thoracentesis required"),
    "pneumothorax": ("Pneumothorax", "small pneumothorax, stable on serial films"),
    "atelectasis": ("Atelectasis", "basilar atelectasis, incentive spirometry encouraged"),
    "nodule": ("Pulmonary nodule", "incidental pulmonary nodule, outpatient CT recommended"),
    "enlarged": ("Cardiomegaly", "known cardiomegaly on imaging, echocardiogram with dilated left ventricle"),
    "afib": ("Atrial fibrillation", "rate controlled with metoprolol, anticoagulated with apixaban"),
    "old_mi": ("Coronary artery disease s/p MI", "continued aspirin and atorvastatin"),
    "paced": ("Pacemaker in situ", "pacemaker interrogated and functioning normally"),
    "lbbb": ("Left bundle branch block", "chronic LBBB, unchanged"),
    "rbbb": ("Right bundle branch block", "chronic RBBB, unchanged"),
    "avb1": ("First degree AV block", "stable PR prolongation, no further conduction disease"),
    "htn": ("Hypertension", "continued home lisinopril"),
    "diabetes": ("Type 2 diabetes", "insulin sliding scale while inpatient"),
    "chest_pain": ("Atypical chest pain", "ruled out for MI with serial troponins, discharged home"),
}


def discharge_text(p, a, rng) -> str:
    """A discharge summary with the usual MIMIC-IV-Note sections and ___ de-identification."""
    conds = conditions(p, a)
    who, pron = ("woman", "Ms.") if p.gender == "F" else ("man", "Mr.")
    cc = {"heart_failure": "Shortness of breath", "ischemia": "Chest pain", "pneumonia": "Fever, cough",
          "edema": "Dyspnea", "effusion": "Dyspnea", "pneumothorax": "Chest pain"}.get(conds[0], "Chest pain")
    pmh = [PHRASES[c][0] for c in conds if c in ("enlarged", "afib", "old_mi", "paced", "lbbb", "rbbb", "avb1",
                                                    "htn", "diabetes")] or ["no significant past medical history"]
    course = "\n".join(f"# {PHRASES[c][0]}: {PHRASES[c][1]}." for c in conds)
    died = a.hospital_expire_flag == 1
    lines = [" ", "Name:  ___                     Unit No:   ___", " ",
             "Admission Date:  ___              Discharge Date:   ___", " ",
             f"Date of Birth:  ___             Sex:   {p.gender}", " ", "Service: MEDICINE", " ", "Allergies: ",
             "No Known Allergies / Adverse Drug Reactions", " ", "Attending: ___.", " ", "Chief Complaint:", cc, " ",
             "Major Surgical or Invasive Procedure:", "None", " ", " ", "History of Present Illness:",
             f"{pron} ___ is a ___ year old {who} with a history of {', '.join(pmh)} who presents with "
             f"{cc.lower()}. In the ED, initial vitals were notable for HR {int(rng.integers(60, 120))}, "
             f"BP {int(rng.integers(95, 170))}/{int(rng.integers(50, 95))}, O2 sat {int(rng.integers(86, 100))}% on RA.",
             " ", "Past Medical History:"] + [f"- {x}" for x in pmh] + [
             " ", "Brief Hospital Course:", f"___ year old {who} admitted with {PHRASES[conds[0]][0].lower()}.", course,
             " ", "Discharge Disposition:", "Expired" if died else "Home", " ", "Discharge Diagnosis:",
             "Primary:", PHRASES[conds[0]][0], "", "Secondary:"] + [PHRASES[c][0] for c in conds[1:]] + [
             " ", "Discharge Condition:", "Expired" if died else "Mental Status: Clear and coherent.",
             "Activity Status: Ambulatory - Independent.", " ", "Discharge Instructions:",
             f"Dear {pron} ___,", "It was a pleasure taking care of you at ___.", " ", "Followup Instructions:", "___"]
    return "\n".join(lines) + "\n"


def discharge_table(patients, adm, rng) -> pd.DataFrame:
    pat = patients.set_index("subject_id")
    rows = []
    for sid, g in adm.groupby("subject_id", sort=False):
        seq = int(rng.integers(10, 30))
        for a in g.itertuples(index=False):
            if rng.random() < 0.06:     # a few admissions without a discharge summary
                continue
            rows.append((f"{sid}-DS-{seq}", sid, a.hadm_id, "DS", seq, fmt_dt(a.dischtime.normalize()),
                         fmt_dt(a.dischtime + pd.Timedelta(hours=float(rng.uniform(2, 60)))),
                         discharge_text(pat.loc[sid], a, rng)))
            seq += 1
    return pd.DataFrame(rows, columns=["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime",
                                       "storetime", "text"])
