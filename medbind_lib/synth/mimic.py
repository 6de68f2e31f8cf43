"""Writers for MIMIC-CXR-JPG (+ reports), MIMIC-IV-ECG, MIMIC-IV hosp/icu and MIMIC-IV-Note.

All four share the latent cohort's subjects and shifted timeline, so a CXR and an ECG of the same
visit link to each other (|dt| < 24 h) and to the admission by time, exactly as in the real data.

Patients outside the base cohort (latent.make_sources) are drawn from their own streams and appended: the
CXR-only patients' studies after the base studies (``write_mimic_cxr(extra=)``), the EHR-only patients'
admissions and every table derived from them after the base rows (``write_mimic_iv(extra=)``), each table
written as the base bytes followed by the new rows (``write_csv_appended``), with ids disjoint from the base
ones. Neither group has an ECG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import CHEXPERT_LABELS, LEADS, LEADS_MIMIC
from . import cxr, ecg, ehr, icu, reports
from .common import (dicom_ids, disjoint_ids, fmt_dt, study_time_str, unique_ints, write_csv,
                     write_csv_appended, write_wfdb, save_gray)
from .latent import Cohort

BATCH = 48
CXR_KEYS = ("cardiomegaly", "edema", "effusion", "pneumonia", "atelectasis", "nodule", "pneumothorax",
            "fracture", "pleural_other", "device")


def cxr_findings(p, v, rng) -> dict:
    """What a chest film of this visit shows (chronic heart size and device + the visit's acute state)."""
    f = {k: bool(getattr(v, k)) for k in CXR_KEYS if k not in ("cardiomegaly", "device")}
    f.update(cardiomegaly=bool(p.enlarged), device=bool(p.paced),
             ctr=float(np.clip(p.ctr + rng.normal(0, 0.008), 0.33, 0.72)))
    return f


def ecg_findings(p, v, rng) -> dict:
    """What an ECG of this visit shows: chronic rhythm/conduction/hypertrophy + acute ischemia/rate."""
    ish = bool(v.ischemia)
    f = dict(lvh=bool(p.lvh_ecg), mi_inferior=bool(p.mi_inferior), mi_anterior=bool(p.mi_anterior),
             lbbb=bool(p.lbbb), rbbb=bool(p.rbbb), avb1=bool(p.avb1), afib=bool(p.afib), paced=bool(p.paced),
             pvc=bool(v.pvc), pac=bool(v.pac) and not p.afib,
             std=ish and rng.random() < 0.6, ste=ish and rng.random() < 0.25,
             nst=(bool(v.edema) and rng.random() < 0.5) or (ish and rng.random() < 0.4),
             tachy=(bool(v.pneumonia) or bool(v.edema)) and not p.paced and rng.random() < 0.7,
             lad=bool(p.lbbb) or rng.random() < 0.04)
    f["brady"] = bool(p.healthy) and not f["tachy"] and rng.random() < 0.12
    if f["paced"]:
        f.update(std=False, ste=False, nst=False)
    return f


def _findings_str(f: dict) -> str:
    return ";".join(sorted(k for k, val in f.items() if val is True or (isinstance(val, (int, np.integer)) and
                                                                         not isinstance(val, bool) and val)))


# --- MIMIC-CXR ---------------------------------------------------------------------------------------
def _plan_cxr(cohort: Cohort, rng, taken_study_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Studies (one per CXR visit) and images (frontal, optional lateral, a few odd ViewPositions).

    ``taken_study_ids`` (appended patients): study ids kept disjoint from these, and none of the base cohort's
    one-off oddities (empty/LL ViewPosition, midnight/morning StudyTime), which stay unique."""
    pat = cohort.patients.set_index("subject_id")
    vis = cohort.visits[cohort.visits.cxr].reset_index(drop=True)
    study_ids = unique_ints(rng, len(vis), 50_000_000, 60_000_000)
    if taken_study_ids is not None:
        study_ids = disjoint_ids(rng, study_ids, taken_study_ids, 50_000_000, 60_000_000)
    studies, images = [], []
    for k, v in enumerate(vis.itertuples(index=False)):
        p = pat.loc[v.subject_id]
        ap = rng.random() < (0.65 if v.setting != "outpatient" else 0.12)
        f = cxr_findings(p, v, rng)
        g = cxr.sample_geometry(rng, f, f["ctr"], ap)
        t = v.time
        studies.append(dict(study_id=int(study_ids[k]), subject_id=int(v.subject_id), visit_id=int(v.visit_id),
                            hadm_id=v.hadm_id, time=t, ms=int(rng.integers(0, 1000)), ap=ap, f=f, g=g,
                            sex=p.gender))
        views = ["AP" if ap else "PA"] + (["LATERAL"] if rng.random() < (0.1 if ap else 0.75) else [])
        for view in views:
            images.append(dict(study_id=int(study_ids[k]), view=view))
    studies, images = pd.DataFrame(studies), pd.DataFrame(images)
    if taken_study_ids is not None:
        images["dicom_id"] = dicom_ids(rng, len(images))
        return studies, images
    # real-data oddities: a frontal image with empty ViewPosition and one 'LL' lateral
    extra = [dict(study_id=int(studies.study_id.iloc[0]), view=""),
             dict(study_id=int(studies.study_id.iloc[-1]), view="LL")]
    images = pd.concat([images, pd.DataFrame(extra)], ignore_index=True)
    images["dicom_id"] = dicom_ids(rng, len(images))
    # StudyTime edge cases: one study just after midnight (< 1), one in the morning (< 100000)
    studies.loc[0, "time"] = studies.loc[0, "time"].normalize()
    studies.loc[1, "time"] = studies.loc[1, "time"].normalize() + pd.Timedelta(hours=8, minutes=5, seconds=56)
    return studies, images


def _render_cxr(studies, images, root: Path, size: int, rng, bar) -> None:
    st = studies.set_index("study_id")
    for lateral in (False, True):
        sel = images[images.view.isin(["LATERAL", "LL"]) == lateral]
        for s in range(0, len(sel), BATCH):
            chunk = sel.iloc[s:s + BATCH]
            params = [st.loc[i, "g"] for i in chunk.study_id]
            fn = cxr.render_lateral if lateral else cxr.render_frontal
            imgs = fn(params, size, size, rng, cxr.DOMAINS["mimic"])
            for img, r in zip(imgs, chunk.itertuples(index=False)):
                sid = str(st.loc[r.study_id, "subject_id"])
                save_gray(img, root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{r.study_id}" / f"{r.dicom_id}.jpg")
            bar.update(len(chunk))


def write_mimic_cxr(cohort: Cohort, root: Path, reports_root: Path, size: int, rng, bar, extra: Cohort | None = None,
                    extra_rng=None) -> pd.DataFrame:
    """Images, reports and the four tables of ``cohort``'s CXR visits; then, from ``extra_rng`` alone, those of
    ``extra`` (the CXR-only patients), appended after them. Returns the ground truth, one row per image."""
    studies, images = _plan_cxr(cohort, rng)
    _render_cxr(studies, images, root, size, rng, bar)
    labels = _write_reports(studies, reports_root, rng, specials=True)
    tables = _cxr_tables(studies, images, labels, size, rng)
    truth = [_cxr_truth(studies, images, labels)]
    more = None
    if extra is not None and bool(extra.visits.cxr.any()):
        es, ei = _plan_cxr(extra, extra_rng, taken_study_ids=studies.study_id.to_numpy())
        _render_cxr(es, ei, root, size, extra_rng, bar)
        el = _write_reports(es, reports_root, extra_rng, specials=False)
        more = _cxr_tables(es, ei, el, size, extra_rng)
        truth.append(_cxr_truth(es, ei, el))
    for name, (df, kw) in tables.items():
        add = more[name][0] if more else None
        if name == "IMAGE_FILENAMES":
            (root / name).write_text(df.text.iloc[0] + ("" if add is None else add.text.iloc[0]))
        else:
            write_csv_appended(df, add, root / name, **kw)
    return pd.concat(truth, ignore_index=True) if len(truth) > 1 else truth[0]


def _write_reports(studies, reports_root: Path, rng, specials: bool) -> pd.DataFrame:
    """One report per study (text files); returns its CheXpert-style labels. ``specials``: the base cohort's
    single impression-only pair and addendum (real-data oddities, kept unique)."""
    special = {}
    if specials:
        abnormal = [k for k, f in enumerate(studies.f) if f["cardiomegaly"] or f["effusion"]]
        normal = [k for k, f in enumerate(studies.f) if not any(f[c] for c in CXR_KEYS)]
        special = {k: "impression_only" for k in normal[:2]} | {k: "addendum" for k in abnormal[:1]}
    lab_rows = []
    for k, s in enumerate(studies.itertuples(index=False)):
        text, labels = reports.mimic_report(s.f, s.g, rng, s.ap, s.sex, special.get(k, ""))
        sid = str(s.subject_id)
        path = reports_root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{s.study_id}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        lab_rows.append(dict(subject_id=s.subject_id, study_id=s.study_id, **labels))
    return pd.DataFrame(lab_rows)


def _cxr_tables(studies, images, labels, size: int, rng) -> dict:
    """``{file name: (frame, write_csv kwargs)}`` of the MIMIC-CXR tables (IMAGE_FILENAMES: one ``text`` cell)."""
    st = studies.set_index("study_id")
    view_meaning = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral",
                    "": ""}
    proc = np.where(st.loc[images.study_id, "ap"].to_numpy(), "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)")
    t = st.loc[images.study_id, "time"]
    meta = pd.DataFrame({
        "dicom_id": images.dicom_id, "subject_id": st.loc[images.study_id, "subject_id"].to_numpy(),
        "study_id": images.study_id, "PerformedProcedureStepDescription": proc, "ViewPosition": images.view,
        "Rows": size, "Columns": size, "StudyDate": t.dt.strftime("%Y%m%d").astype(int).to_numpy(),
        "StudyTime": [study_time_str(x, ms) for x, ms in zip(t, st.loc[images.study_id, "ms"])],
        "ProcedureCodeSequence_CodeMeaning": proc,
        "ViewCodeSequence_CodeMeaning": images.view.map(view_meaning),
        "PatientOrientationCodeSequence_CodeMeaning": np.where(proc == "CHEST (PA AND LAT)", "Erect",
                                                               rng.choice(["Recumbent", ""], len(images)))})
    subjects = studies.subject_id.unique()
    split = dict(zip(subjects, rng.choice(["train", "validate", "test"], len(subjects), p=[0.8, 0.1, 0.1])))
    split_df = pd.DataFrame({"dicom_id": images.dicom_id, "study_id": images.study_id,
                             "subject_id": meta.subject_id, "split": meta.subject_id.map(split)})
    cols = ["subject_id", "study_id", *CHEXPERT_LABELS]
    chex = labels[cols].iloc[np.sort(rng.choice(len(labels), len(labels) - max(1, len(labels) // 50), replace=False))]
    neg = labels[cols].copy()
    flip = (neg["Pneumonia"] == -1.0) & (rng.random(len(neg)) < 0.3)   # NegBio resolves some uncertainty
    neg.loc[flip, "Pneumonia"] = 1.0
    neg = neg.iloc[np.sort(rng.choice(len(neg), len(neg) - max(1, len(neg) // 40), replace=False))]
    lines = [f"files/p{str(s)[:2]}/p{s}/s{d}/{i}.jpg" for s, d, i in zip(meta.subject_id, meta.study_id, meta.dicom_id)]
    return {"mimic-cxr-2.0.0-metadata.csv.gz": (meta, {}), "mimic-cxr-2.0.0-split.csv.gz": (split_df, {}),
            "mimic-cxr-2.0.0-chexpert.csv.gz": (chex, {"float_format": "%.1f"}),
            "mimic-cxr-2.0.0-negbio.csv.gz": (neg, {"float_format": "%.1f"}),
            "IMAGE_FILENAMES": (pd.DataFrame({"text": ["\n".join(lines) + "\n"]}), {})}


def _cxr_truth(studies, images, labels) -> pd.DataFrame:
    st = studies.set_index("study_id")
    lab = labels.set_index("study_id")
    rows = []
    for r in images.itertuples(index=False):
        s = st.loc[r.study_id]
        sid = str(s.subject_id)
        pos = [c for c in CHEXPERT_LABELS if lab.loc[r.study_id, c] == 1.0]
        rows.append(dict(dataset="mimic_cxr", modality="cxr", record_id=r.dicom_id, subject_id=sid,
                         study_id=str(r.study_id), visit_id=s.visit_id, hadm_id=s.hadm_id, time=s.time,
                         path=f"files/p{sid[:2]}/p{sid}/s{r.study_id}/{r.dicom_id}.jpg", view=r.view or "",
                         findings=_findings_str(s.f), labels=";".join(pos), ctr=s.f["ctr"]))
    return pd.DataFrame(rows)


# --- MIMIC-IV-ECG ------------------------------------------------------------------------------------
_MIMIC_ORDER = [LEADS.index(n) for n in LEADS_MIMIC]


def write_mimic_ecg(cohort: Cohort, root: Path, rng, bar) -> pd.DataFrame:
    pat = cohort.patients.set_index("subject_id")
    vis = cohort.visits[cohort.visits.ecg].reset_index(drop=True)
    ids = unique_ints(rng, len(vis), 40_000_000, 50_000_000)
    carts = rng.integers(6_000_000, 7_000_000, 12)
    rec, mm, links, truth = [], [], [], []
    bad = {int(rng.integers(len(vis)))}                      # one record with invalid (NaN) samples
    for k, v in enumerate(vis.itertuples(index=False)):
        p, sid, study = pat.loc[v.subject_id], str(v.subject_id), int(ids[k])
        f = ecg_findings(p, v, rng)
        sig = ecg.synth_ecg(f, rng)[:, _MIMIC_ORDER]
        d = np.clip(np.round(sig * 200), -32767, 32767).astype(np.int16)
        if k in bad:
            d[1000:1040, 3] = -32768                         # WFDB invalid sample -> NaN after rdsamp
        rel = f"files/p{sid[:4]}/p{sid}/s{study}"
        write_wfdb(root / rel, str(study), d, 500, 200.0, LEADS_MIMIC, v.ecg_time, [f"<subject_id>: {sid}"])
        stm = ecg.machine_statements(f, rng)
        u = rng.random()
        if u < 0.04:
            stm.append("Borderline ECG")
        elif u < 0.06:
            stm.insert(0, "Warning: Data quality may affect interpretation")
        elif u < 0.08:
            stm.append("Poor quality data, interpretation may be adversely affected")
        if rng.random() < 0.12 and len(stm) > 1:                          # gaps between report columns
            stm.insert(int(rng.integers(1, len(stm))), "")
        reps = {f"report_{i}": (stm[i] if i < len(stm) else "") for i in range(18)}
        et = fmt_dt(v.ecg_time)
        rec.append(dict(subject_id=v.subject_id, study_id=study, file_name=study, ecg_time=et, path=f"{rel}/{study}"))
        mm.append(dict(subject_id=v.subject_id, study_id=study, cart_id=int(rng.choice(carts)), ecg_time=et, **reps,
                       bandwidth="0.005-150 Hz", filtering="60 Hz notch Baseline filter", **ecg.intervals(f, rng)))
        if rng.random() < 0.3:
            links.append(dict(subject_id=v.subject_id, study_id=study, waveform_path=f"{rel}/{study}",
                              note_id=f"{sid}-EC-{len(links) + 1}", note_seq=len(links) + 1, charttime=et))
        truth.append(dict(dataset="mimic_ecg", modality="ecg", record_id=str(study), subject_id=sid,
                          study_id=str(study), visit_id=int(v.visit_id), hadm_id=v.hadm_id, time=v.ecg_time,
                          path=f"{rel}/{study}", view="", findings=_findings_str(f),
                          labels=";".join(s for s in stm if s), ctr=np.nan, invalid_samples=k in bad))
        bar.update(1)
    write_csv(pd.DataFrame(rec), root / "record_list.csv")
    write_csv(pd.DataFrame(mm), root / "machine_measurements.csv")
    write_csv(pd.DataFrame(links, columns=["subject_id", "study_id", "waveform_path", "note_id", "note_seq",
                                           "charttime"]), root / "waveform_note_links.csv")
    (root / "RECORDS").write_text("".join(sorted({f"files/p{str(s)[:4]}/\n" for s in vis.subject_id})))
    return pd.DataFrame(truth)


# --- MIMIC-IV ----------------------------------------------------------------------------------------
DICTIONARIES = ("hosp/d_icd_diagnoses", "icu/d_items", "hosp/d_labitems")     # constant: never appended to
NOTES = "note/discharge"
# the tables whose ids (pharmacy, stay, specimen, lab event, order) a later group must keep disjoint from
_ID_TABLES = ("hosp/prescriptions", "icu/icustays", "hosp/labevents", "icu/procedureevents", "icu/inputevents")


def _iv_tables(cohort: Cohort, rng, icu_rng, base: dict | None = None, onset_shift=(0.0, 0.0)) -> dict:
    """Every MIMIC-IV / MIMIC-IV-Note frame of ``cohort`` (``{table: frame}``, notes under ``NOTES``).

    ``base`` (appended patients): the base cohort's frames; stay, pharmacy, specimen and order ids are then
    kept disjoint from theirs and lab event ids continue after theirs."""
    p, a = cohort.patients, cohort.admissions
    dx, d_icd = ehr.diagnoses_tables(p, a)
    tables = {"hosp/patients": ehr.patients_table(p, a, rng), "hosp/admissions": ehr.admissions_table(a, rng),
              "hosp/diagnoses_icd": dx, "hosp/d_icd_diagnoses": d_icd,
              "hosp/prescriptions": ehr.prescriptions_table(p, a, rng)}
    if base is not None:
        tables["hosp/prescriptions"]["pharmacy_id"] = disjoint_ids(
            rng, tables["hosp/prescriptions"].pharmacy_id, base["hosp/prescriptions"].pharmacy_id, 10_000_000, 100_000_000)
    tables[NOTES] = ehr.discharge_table(p, a, rng)
    stays = ehr.icustays_table(a, icu_rng)            # the ICU stream from here on: the tables above never move
    if base is not None:
        stays["stay_id"] = disjoint_ids(icu_rng, stays.stay_id, base["icu/icustays"].stay_id, 30_000_000, 40_000_000)
    tables["icu/icustays"] = stays
    events, _ = icu.make_icu(p, a, stays, icu_rng, onset_shift)
    tables.update(events)
    if base is not None:
        lab = tables["hosp/labevents"]
        lab["specimen_id"] = disjoint_ids(icu_rng, lab.specimen_id, base["hosp/labevents"].specimen_id,
                                          1_000_000, 91_000_000)
        lab["labevent_id"] = int(base["hosp/labevents"].labevent_id.to_numpy().max(initial=0)) + 1 + np.arange(len(lab))
        ev = ("icu/procedureevents", "icu/inputevents")
        cols = [tables[t][c].to_numpy() for t in ev for c in ("orderid", "linkorderid")]
        new = disjoint_ids(icu_rng, np.concatenate(cols), np.concatenate([base[t].orderid.to_numpy() for t in ev]),
                           100_000, 9_100_000)
        bounds = np.cumsum([0] + [len(c) for c in cols])
        for k, (t, c) in enumerate((t, c) for t in ev for c in ("orderid", "linkorderid")):
            tables[t][c] = new[bounds[k]:bounds[k + 1]]
    return tables


def write_mimic_iv(cohort: Cohort, iv_root: Path, note_root: Path, rng, icu_rng, extra: Cohort | None = None,
                   extra_rng=None, extra_icu_rng=None, task: Cohort | None = None, task_rng=None,
                   task_icu_rng=None) -> dict:
    """hosp/{patients,admissions,diagnoses_icd,d_icd_diagnoses,prescriptions}, note/discharge, then icu/icustays
    and the ICU event tables and lab results of icu.py (``icu.TABLES``) drawn from ``icu_rng`` alone, so the
    tables above do not depend on them. ``extra`` (the EHR-only patients) and then ``task`` (the task population,
    with ``icu.TASK_ONSET_SHIFT``): the same tables from their own generators alone, their rows appended after the
    earlier rows (dictionaries unchanged; ids disjoint from every earlier group's). Returns row counts (all
    patients)."""
    tables = _iv_tables(cohort, rng, icu_rng)
    groups, taken = [], tables
    for c, r, ir, shift in ((extra, extra_rng, extra_icu_rng, (0.0, 0.0)),
                            (task, task_rng, task_icu_rng, icu.TASK_ONSET_SHIFT)):
        if c is None or not len(c.admissions):
            continue
        groups.append(_iv_tables(c, r, ir, base=taken, onset_shift=shift))
        taken = {k: pd.concat([taken[k], groups[-1][k]], ignore_index=True) for k in _ID_TABLES}
    for name, df in tables.items():
        path = note_root / "note" / "discharge.csv.gz" if name == NOTES else iv_root / f"{name}.csv.gz"
        write_csv_appended(df, None if name in DICTIONARIES else [g[name] for g in groups], path)
    n = {name: len(df) + (0 if name in DICTIONARIES else sum(len(g[name]) for g in groups))
         for name, df in tables.items()}
    return {"admissions": n["hosp/admissions"], "discharge_notes": n[NOTES], "diagnoses": n["hosp/diagnoses_icd"],
            "prescriptions": n["hosp/prescriptions"], "icustays": n["icu/icustays"],
            **{name.split("/")[1]: n[name] for name in icu.TABLES}}
