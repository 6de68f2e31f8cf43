"""Synthetic cohort: layouts and headers of all nine datasets, determinism, reuse, atomicity, and the
cross-modal structure (in the ground truth AND measurable in the written files)."""
from __future__ import annotations

import ast
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from PIL import Image

from medbind_lib.config import load_profile
from medbind_lib.constants import (CHEXPERT_CSV_LABELS, CHEXPERT_LABELS, COVID_CLASSES, ICBEB_SNOMED, LEADS,
                                   LEADS_MIMIC, LEADS_PTBXL)
from medbind_lib.medcsp.records import cross_source_gaps, source_overlap
from medbind_lib.synth import STAMP_NAME, external, latent, truth_paths, write_cohort
from medbind_lib.synth.cxr import measure_ctr
from medbind_lib.synth.common import write_wfdb


def _cfg(root: Path, **kw):
    return load_profile("smoke", overrides={"data_root": str(root), "progress": False, **kw})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("synth") / "data")
    summary = write_cohort(cfg)
    return cfg, summary


@pytest.fixture(scope="module")
def truth(cohort):
    cfg, _ = cohort
    return {k: pd.read_parquet(p) for k, p in truth_paths(cfg).items()}


def _gz(root, name, **kw):
    return pd.read_csv(Path(root) / name, **kw)


# --- layout and headers ------------------------------------------------------------------------------
def test_summary_and_stamp(cohort):
    cfg, s = cohort
    assert not s["reused"] and s["seconds"] > 0 and s["patients_per_s"] > 0
    assert s["counts"]["mimic_patients"] == cfg.n_patients
    for k in ("mimic_cxr", "mimic_ecg", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"):
        assert s["counts"][k] > 0, k
    n_e, n_c = latent.source_sizes(cfg.n_patients, cfg.synth_ehr_only_fraction, cfg.synth_cxr_only_fraction)
    assert n_e > 0 and n_c > 0
    assert (s["counts"]["mimic_ehr_only_patients"], s["counts"]["mimic_cxr_only_patients"]) == (n_e, n_c)
    stamp = json.loads((Path(cfg.data_root) / STAMP_NAME).read_text())
    assert stamp["params"]["seed"] == cfg.seed and stamp["params"]["n_patients"] == cfg.n_patients
    assert stamp["params"]["synth_cxr_only_fraction"] == cfg.synth_cxr_only_fraction


def test_mimic_cxr_layout(cohort):
    cfg, _ = cohort
    root = Path(cfg.mimic_cxr_root)
    meta = _gz(root, "mimic-cxr-2.0.0-metadata.csv.gz", dtype={"StudyTime": str, "dicom_id": str})
    assert list(meta.columns) == ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                                  "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                                  "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                                  "PatientOrientationCodeSequence_CodeMeaning"]
    assert meta.dicom_id.str.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}").all()
    assert meta.subject_id.astype(str).str.fullmatch(r"1\d{7}").all()
    assert meta.study_id.astype(str).str.fullmatch(r"5\d{7}").all()
    views = set(meta.ViewPosition.fillna(""))
    assert {"AP", "PA", "LATERAL", ""} <= views
    st = meta.StudyTime.astype(float)
    assert (st < 1).any() and ((st >= 1) & (st < 100000)).any()
    assert not meta.StudyTime.str.match(r"0\d").any()                       # never zero padded
    assert meta.StudyDate.astype(str).str.fullmatch(r"21\d{6}").all()
    for r in meta.sample(8, random_state=0).itertuples():
        sid = str(r.subject_id)
        img = Image.open(root / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{r.study_id}" / f"{r.dicom_id}.jpg")
        assert img.mode == "L" and img.size == (r.Columns, r.Rows) == (cfg.synth_image_size,) * 2
    split = _gz(root, "mimic-cxr-2.0.0-split.csv.gz")
    assert list(split.columns) == ["dicom_id", "study_id", "subject_id", "split"]
    assert set(split.split) <= {"train", "validate", "test"} and split.groupby("subject_id").split.nunique().max() == 1
    for name in ("chexpert", "negbio"):
        lab = _gz(root, f"mimic-cxr-2.0.0-{name}.csv.gz")
        assert list(lab.columns) == ["subject_id", "study_id", *CHEXPERT_LABELS]
        vals = set(np.unique(lab[list(CHEXPERT_LABELS)].to_numpy().ravel()[~np.isnan(lab[list(CHEXPERT_LABELS)]
                                                                              .to_numpy().ravel())]))
        assert vals == {1.0, 0.0, -1.0} and lab[list(CHEXPERT_LABELS)].isna().any().any()
        assert 0 < meta.study_id.nunique() - len(lab) < 10                   # a few studies lack a row


def test_mimic_cxr_reports(cohort):
    cfg, _ = cohort
    root = Path(cfg.mimic_cxr_reports_root)
    files = sorted(root.glob("files/p1*/p1*/s5*.txt"))
    meta = _gz(Path(cfg.mimic_cxr_root), "mimic-cxr-2.0.0-metadata.csv.gz")
    assert len(files) == meta.study_id.nunique()
    texts = [f.read_text() for f in files]
    for t in texts:
        lines = t.rstrip("\n").split("\n")
        assert "FINAL REPORT" in lines[0] or "FINAL ADDENDUM" in lines[0]
        assert all(ln.startswith(" ") and len(ln) <= 79 for ln in lines)
        assert "\n IMPRESSION: \n" in t
    assert sum("\n FINDINGS: \n" not in t for t in texts) >= 1               # impression-only report
    assert sum("ADDENDUM" in t for t in texts) == 1 and all("___" in t for t in texts)
    body = [t[t.index(" FINDINGS:"):] for t in texts if " FINDINGS:" in t]
    assert pd.Series(body).value_counts().iloc[0] >= 5                       # many identical normal reports
    assert any("No pleural effusion" in t for t in texts)
    assert any(w in t for t in texts for w in ("may reflect", "cannot be excluded", "Possible"))
    # labels agree with the text
    lab = _gz(Path(cfg.mimic_cxr_root), "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
    by_study = {int(f.stem[1:]): t for f, t in zip(files, texts)}
    for sid in lab.index[lab.Cardiomegaly == 1.0]:
        assert "cardiomegaly" in by_study[sid].lower() or "enlarge" in by_study[sid].lower()
    for sid in lab.index[lab["Pleural Effusion"] == 0.0]:
        assert "effusion" in by_study[sid].lower()


def test_mimic_ecg_layout(cohort):
    cfg, _ = cohort
    root = Path(cfg.mimic_ecg_root)
    rl = pd.read_csv(root / "record_list.csv")
    assert list(rl.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert rl.study_id.astype(str).str.fullmatch(r"4\d{7}").all()
    assert (rl.path == [f"files/p{str(s)[:4]}/p{s}/s{d}/{d}" for s, d in zip(rl.subject_id, rl.study_id)]).all()
    mm = pd.read_csv(root / "machine_measurements.csv", dtype=str)
    reps = [f"report_{i}" for i in range(18)]
    assert list(mm.columns) == ["subject_id", "study_id", "cart_id", "ecg_time", *reps, "bandwidth", "filtering",
                                "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis",
                                "qrs_axis", "t_axis"]
    assert (mm.p_onset == "29999").any()
    gaps = mm[reps].isna().to_numpy()
    assert any(g[:k].any() and not g[k] for g in gaps for k in range(1, 18))  # report_k set after an empty one
    text = mm[reps].fillna("").agg(" ".join, axis=1).str.lower()
    for phrase in ("normal ecg", "left ventricular hypertrophy", "bundle branch block", "1st degree a-v block",
                   "atrial fibrillation", "infarct - age undetermined", "borderline ecg"):
        assert text.str.contains(phrase, regex=False).any(), phrase
    sets = mm[reps].fillna("").agg("|".join, axis=1)
    assert sets.value_counts().iloc[0] >= 10                                  # identical normal statement sets
    links = pd.read_csv(root / "waveform_note_links.csv")
    assert list(links.columns) == ["subject_id", "study_id", "waveform_path", "note_id", "note_seq", "charttime"]
    assert 0 < len(links) < len(rl)
    r = wfdb.rdrecord(str(root / rl.path[0]))
    assert r.sig_name == list(LEADS_MIMIC) and r.fs == 500 and r.sig_len == 5000 and r.adc_gain == [200.0] * 12
    assert r.comments == [f"<subject_id>: {rl.subject_id[0]}"] and r.base_date is not None
    assert str(r.base_datetime) == rl.ecg_time[0]


def test_wfdb_writer_matches_wrsamp(tmp_path):
    d = (np.random.default_rng(0).normal(0, 1, (500, 12)) * 300).astype(np.int16)
    when = pd.Timestamp("2150-01-02 03:04:05")
    write_wfdb(tmp_path / "a", "40000001", d, 500, 200.0, LEADS_MIMIC, when, ["<subject_id>: 10000001"])
    (tmp_path / "b").mkdir()
    wfdb.wrsamp("40000001", fs=500, units=["mV"] * 12, sig_name=list(LEADS_MIMIC), d_signal=d, fmt=["16"] * 12,
                adc_gain=[200.0] * 12, baseline=[0] * 12, base_time=when.time(), base_date=when.date(),
                comments=["<subject_id>: 10000001"], write_dir=str(tmp_path / "b"))
    for ext in ("hea", "dat"):
        assert (tmp_path / "a" / f"40000001.{ext}").read_bytes() == (tmp_path / "b" / f"40000001.{ext}").read_bytes()


def test_mimic_iv_tables(cohort):
    cfg, _ = cohort
    hosp, icu = Path(cfg.mimic_iv_root) / "hosp", Path(cfg.mimic_iv_root) / "icu"
    cols = {
        hosp / "patients.csv.gz": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
        hosp / "admissions.csv.gz": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
        "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,edouttime,"
        "hospital_expire_flag",
        hosp / "diagnoses_icd.csv.gz": "subject_id,hadm_id,seq_num,icd_code,icd_version",
        hosp / "d_icd_diagnoses.csv.gz": "icd_code,icd_version,long_title",
        hosp / "prescriptions.csv.gz": "subject_id,hadm_id,pharmacy_id,poe_id,poe_seq,order_provider_id,starttime,"
        "stoptime,drug_type,drug,formulary_drug_cd,gsn,ndc,prod_strength,form_rx,dose_val_rx,dose_unit_rx,"
        "form_val_disp,form_unit_disp,doses_per_24_hrs,route",
        icu / "icustays.csv.gz": "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los",
        Path(cfg.mimic_note_root) / "note" / "discharge.csv.gz":
            "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text",
    }
    for path, header in cols.items():
        assert list(pd.read_csv(path, nrows=0).columns) == header.split(","), path
    adm = pd.read_csv(hosp / "admissions.csv.gz", parse_dates=["admittime", "dischtime", "deathtime"])
    assert adm.hadm_id.astype(str).str.fullmatch(r"2\d{7}").all()
    died = adm.hospital_expire_flag == 1
    assert died.any() and adm.deathtime.notna().eq(died).all() and (adm.discharge_location[died] == "DIED").all()
    assert adm.groupby("subject_id").size().between(1, 4).all()
    dx = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    d_icd = pd.read_csv(hosp / "d_icd_diagnoses.csv.gz", dtype={"icd_code": str})
    assert dx.merge(d_icd, on=["icd_code", "icd_version"], how="left").long_title.notna().all()
    assert {"I509", "I517", "J189", "J90", "I4891", "Z950"} & set(dx.icd_code)
    assert not dx.icd_code.str.contains(".", regex=False).any()
    notes = pd.read_csv(Path(cfg.mimic_note_root) / "note" / "discharge.csv.gz")
    assert notes.note_id.str.fullmatch(r"1\d{7}-DS-\d+").all() and notes.hadm_id.isin(adm.hadm_id).all()
    t = notes.text.iloc[0]
    assert "\n" in t and all(s in t for s in ("Chief Complaint:", "History of Present Illness:",
                                              "Brief Hospital Course:", "Discharge Diagnosis:", "___"))


def test_mimic_iv_icu_tables(cohort):
    """ICU events and labs (synth/icu.py) beside the tables above; the FIDDLE onsets appear in the smoke cohort."""
    from medbind_lib.ehr import items as M
    from medbind_lib.synth import icu

    cfg, summary = cohort
    root = Path(cfg.mimic_iv_root)
    for name in icu.TABLES:
        df = pd.read_csv(root / f"{name}.csv.gz")
        assert len(df) and summary["counts"][f"mimic_iv_{name.split('/')[1]}"] == len(df), name
    stays = pd.read_csv(root / "icu" / "icustays.csv.gz")
    ce = pd.read_csv(root / "icu" / "chartevents.csv.gz")
    assert set(ce.stay_id) == set(stays.stay_id)
    assert set(ce.itemid) <= set(M.VITALS) | {M.PEEP}
    proc = pd.read_csv(root / "icu" / "procedureevents.csv.gz")
    inputs = pd.read_csv(root / "icu" / "inputevents.csv.gz")
    assert (M.PEEP in set(ce.itemid)) or proc.itemid.isin(M.VENTILATION).any()
    assert inputs.itemid.isin(list(M.VASOPRESSORS)).all() and len(inputs)
    lab = pd.read_csv(root / "hosp" / "labevents.csv.gz")
    adm = pd.read_csv(root / "hosp" / "admissions.csv.gz")
    assert set(lab.itemid) == set(M.LABS) and lab.hadm_id.isin(adm.hadm_id).all()
    assert not set(lab.hadm_id) <= set(stays.hadm_id)                          # ward-only admissions too


def test_ptbxl_layout(cohort):
    cfg, _ = cohort
    root = Path(cfg.ptbxl_root)
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    assert len(db.columns) == 27 and list(pd.read_csv(root / "ptbxl_database.csv", nrows=0).columns) == \
        external.PTBXL_COLUMNS
    assert sorted(db.strat_fold.unique()) == list(range(1, 11)) and (db.age == 300).any()
    assert db.patient_id.dtype == float and set(db.sex) == {0, 1}
    assert db.groupby("patient_id").strat_fold.nunique().max() == 1                 # patient-disjoint folds
    scp = pd.read_csv(root / "scp_statements.csv", index_col=0)
    assert list(scp.columns)[:5] == ["description", "diagnostic", "form", "rhythm", "diagnostic_class"]
    agg = scp[scp.diagnostic == 1]
    sup = db.scp_codes.apply(ast.literal_eval).apply(
        lambda d: sorted({agg.loc[k].diagnostic_class for k in d if k in agg.index}))
    counts = pd.Series([c for s in sup for c in s]).value_counts()
    assert set(counts.index) == {"NORM", "MI", "STTC", "CD", "HYP"} and counts.min() >= 5
    for name, fs, n in (("filename_lr", 100, 1000), ("filename_hr", 500, 5000)):
        r = wfdb.rdrecord(str(root / db[name].iloc[0]))
        assert r.sig_name == list(LEADS_PTBXL) and r.fs == fs and r.sig_len == n and r.adc_gain == [1000.0] * 12


def test_icbeb_layout(cohort):
    cfg, _ = cohort
    root = Path(cfg.icbeb_root)
    heas = sorted(root.glob("A*.hea"))
    assert heas[0].name == "A0001.hea" and (root / "A0001.mat").exists()
    lens, labels = [], []
    for h in heas:
        lines = h.read_text().splitlines()
        lens.append(int(lines[0].split()[3]))
        assert lines[1].split()[1:3] == ["16+24", "1000/mV"]
        dx = next(ln for ln in lines if ln.startswith("#Dx: "))[5:].split(",")
        assert 1 <= len(dx) <= 3 and set(dx) <= set(ICBEB_SNOMED)
        labels += [ICBEB_SNOMED[c] for c in dx]
    assert min(lens) >= 3000 and max(lens) == 30000 and len(set(lens)) > 10
    assert pd.Series(labels).value_counts().reindex(list(ICBEB_SNOMED.values())).min() >= 3
    r = wfdb.rdrecord(str(root / "A0001"))
    assert r.sig_name == list(LEADS) and r.fs == 500 and r.adc_gain == [1000.0] * 12
    assert any(c.startswith("Dx: ") for c in r.comments)


def test_chexpert_layout(cohort):
    cfg, _ = cohort
    base = Path(cfg.chexpert_root)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_CSV_LABELS]
    tr = pd.read_csv(base / "CheXpert-v1.0-small" / "train.csv")
    va = pd.read_csv(base / "CheXpert-v1.0-small" / "valid.csv")
    assert list(tr.columns) == header and list(va.columns) == header
    assert tr.Path.str.match(r"CheXpert-v1.0-small/train/patient\d{5}/study\d+/view1_(frontal|lateral)\.jpg").all()
    assert all((base / p).exists() for p in tr.Path.iloc[:10])
    lab = list(CHEXPERT_CSV_LABELS)
    assert (tr[lab] == -1).any().any() and tr[lab].isna().any().any()
    assert set(np.unique(va[lab].to_numpy())) <= {0.0, 1.0}
    # GLoRIA 5x200 rule: frontal, exactly one competition label positive, every other label 0 (blank = 0)
    comp = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    df = tr[tr["Frontal/Lateral"] == "Frontal"].fillna(0)
    others = [c for c in lab if c != "No Finding"]
    for c in comp:
        rest = [o for o in others if o != c]
        assert ((df[c] == 1) & (df[rest] == 0).all(axis=1)).sum() >= 5, c


def test_covid_rsna_openi_layout(cohort):
    cfg, _ = cohort
    root = Path(cfg.covid_root)
    for c in COVID_CLASSES:
        imgs = sorted((root / c / "images").glob(f"{c}-*.png"))
        assert len(imgs) >= 12 and (root / c / "images" / f"{c}-1.png").exists()
    meta = pd.read_excel(root / "Normal.metadata.xlsx")
    assert list(meta.columns) == ["FILE NAME", "FORMAT", "SIZE", "URL"] and meta["FILE NAME"][0] == "NORMAL-1"
    import pydicom

    root = Path(cfg.rsna_root)
    lab = pd.read_csv(root / "stage_2_train_labels.csv")
    assert list(lab.columns) == ["patientId", "x", "y", "width", "height", "Target"]
    assert (lab.groupby("patientId").size() > 1).any()
    neg = lab[lab.Target == 0]
    assert len(neg) and neg[["x", "y", "width", "height"]].isna().all().all()
    assert lab[lab.Target == 1][["x", "y", "width", "height"]].notna().all().all()
    info = pd.read_csv(root / "stage_2_detailed_class_info.csv")
    assert list(info.columns) == ["patientId", "class"] and len(info) == len(lab)
    assert set(info["class"]) == {"Lung Opacity", "Normal", "No Lung Opacity / Not Normal"}
    ds = pydicom.dcmread(root / "stage_2_train_images" / f"{lab.patientId[0]}.dcm")
    assert ds.PatientID == lab.patientId[0] and ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.BitsAllocated == 8 and ds.ViewPosition in ("AP", "PA") and ds.PatientSex in ("M", "F")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.pixel_array.shape == (cfg.synth_image_size,) * 2 and int(ds.PatientAge) > 0

    root = Path(cfg.openi_root)
    xml = ET.parse(root / "ecgen-radiology" / "1.xml").getroot()
    labels = {a.get("Label") for a in xml.iter("AbstractText")}
    assert {"FINDINGS", "IMPRESSION", "COMPARISON", "INDICATION"} <= labels
    ids = [p.get("id") for p in xml.iter("parentImage")]
    assert ids and all((root / "images" / f"{i}.png").exists() for i in ids)
    reps = pd.read_csv(root / "indiana_reports.csv")
    proj = pd.read_csv(root / "indiana_projections.csv")
    assert list(reps.columns) == ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]
    assert list(proj.columns) == ["uid", "filename", "projection"] and set(proj.projection) == {"Frontal", "Lateral"}
    assert all((root / "images" / "images_normalized" / f).exists() for f in proj.filename)


# --- cross-modal structure ---------------------------------------------------------------------------
def test_truth_tables(truth):
    rec, pat = truth["records"], truth["patients"]
    assert {"dataset", "record_id", "subject_id", "path", "findings", "labels", "time"} <= set(rec.columns)
    assert set(rec.dataset) == {"mimic_cxr", "mimic_ecg", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"}
    assert 0.2 < pat.healthy.mean() < 0.55
    # conditions correlate (enlargement with age, edema with enlargement)
    assert pat[pat.enlarged].age.mean() > pat[~pat.enlarged].age.mean()
    adm = truth["admissions"].merge(pat[["subject_id", "enlarged"]], on="subject_id")
    assert adm[adm.enlarged].edema.mean() > adm[~adm.enlarged].edema.mean() + 0.15


def test_cardiomegaly_in_pixels(cohort, truth):
    cfg, _ = cohort
    rec = truth["records"]
    fr = rec[(rec.dataset == "mimic_cxr") & rec.view.isin(["AP", "PA"])]
    root = Path(cfg.mimic_cxr_root)
    ratio = fr.path.map(lambda p: measure_ctr(np.asarray(Image.open(root / p))))
    big = fr.findings.str.contains("cardiomegaly")
    assert big.sum() >= 5 and (~big).sum() >= 5
    assert ratio[big].median() > ratio[~big].median() + 0.04
    assert (fr.ctr[big] > 0.5).all() and (fr.ctr[~big] < 0.5).all()


def _v5_amplitude(path: Path) -> float:
    x = wfdb.rdrecord(str(path)).p_signal[:, LEADS_MIMIC.index("V5")]
    return float(np.percentile(x - np.median(x), 99.5))


def test_hypertrophy_in_waveforms(cohort, truth):
    cfg, _ = cohort
    rec = truth["records"]
    ecgs = rec[(rec.dataset == "mimic_ecg")]
    f = ecgs.findings
    plain = ~f.str.contains("paced|lbbb")
    lvh, other = ecgs[plain & f.str.contains("lvh")], ecgs[plain & ~f.str.contains("lvh")]
    assert len(lvh) >= 5 and len(other) >= 5
    amp = lambda d: np.median([_v5_amplitude(Path(cfg.mimic_ecg_root) / p) for p in d.path])  # noqa: E731
    assert amp(lvh) > 1.5 * amp(other)
    # cardiac enlargement drives both modalities: LVH voltage mostly in patients with cardiomegaly
    pat = truth["patients"].set_index("subject_id")
    enl = ecgs.subject_id.astype(int).map(pat.enlarged)
    assert f[enl].str.contains("lvh").mean() > f[~enl].str.contains("lvh").mean() + 0.4
    # AF: no P wave measured; paced: the statements say so
    mm = pd.read_csv(Path(cfg.mimic_ecg_root) / "machine_measurements.csv").set_index("study_id")
    af = ecgs[f.str.contains("afib")].record_id.astype(int)
    assert len(af) and (mm.loc[af, "p_axis"] == 29999).all()


def test_mortality_depends_on_latent_state(truth):
    adm = truth["admissions"]
    hi = adm.severity >= adm.severity.quantile(0.67)
    lo = adm.severity <= adm.severity.quantile(0.33)
    assert adm[hi].hospital_expire_flag.mean() > adm[lo].hospital_expire_flag.mean() + 0.05
    assert adm[hi].readmit_30d.mean() > adm[lo].readmit_30d.mean()


def test_cxr_ecg_pairs_inside_and_outside_admissions(cohort):
    """From the files only: same-subject CXR/ECG within 24 h, some during an admission, some not."""
    cfg, _ = cohort
    meta = _gz(Path(cfg.mimic_cxr_root), "mimic-cxr-2.0.0-metadata.csv.gz")
    meta = meta[meta.ViewPosition.isin(["AP", "PA"])]
    t = meta.StudyTime.map(lambda x: f"{int(float(x)):06}")
    meta["t_cxr"] = pd.to_datetime(meta.StudyDate.astype(str) + " " + t, format="%Y%m%d %H%M%S")
    rl = pd.read_csv(Path(cfg.mimic_ecg_root) / "record_list.csv", parse_dates=["ecg_time"])
    pairs = meta.merge(rl, on="subject_id")
    pairs = pairs[(pairs.t_cxr - pairs.ecg_time).abs() <= pd.Timedelta(hours=24)]
    adm = pd.read_csv(Path(cfg.mimic_iv_root) / "hosp" / "admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    j = pairs.merge(adm, on="subject_id")
    inside = j[(j.t_cxr >= j.admittime - pd.Timedelta(hours=24)) & (j.t_cxr <= j.dischtime)]
    ins = set(inside.dicom_id)
    assert len(ins) >= 10 and len(set(pairs.dicom_id) - ins) >= 3
    cxr_only = set(meta.subject_id) - set(rl.subject_id)
    ecg_only = set(rl.subject_id) - set(meta.subject_id)
    assert cxr_only and ecg_only


def _sources(cfg, truth):
    adm = pd.read_csv(Path(cfg.mimic_iv_root) / "hosp" / "admissions.csv.gz", parse_dates=["admittime"])
    meta = _gz(Path(cfg.mimic_cxr_root), "mimic-cxr-2.0.0-metadata.csv.gz").drop_duplicates("study_id")
    t = meta.StudyTime.map(lambda x: f"{int(float(x)):06}")
    meta["time"] = pd.to_datetime(meta.StudyDate.astype(str) + " " + t, format="%Y%m%d %H%M%S")
    groups = truth["patients"].groupby("source").subject_id.apply(set)
    return adm, meta, groups


def test_sources_overlap_in_part(cohort, truth):
    """MEDCSP's sources share only some patients (EHR-only and CXR-only ones, from the files alone), and the
    same patient's EHR and CXR records lie both within and beyond 30 days of each other (MEDCSP.md)."""
    cfg, _ = cohort
    adm, meta, groups = _sources(cfg, truth)
    ecg = pd.read_csv(Path(cfg.mimic_ecg_root) / "record_list.csv")
    e, c = set(adm.subject_id), set(meta.subject_id)
    assert c - e == groups["cxr_only"] and not groups["cxr_only"] & set(ecg.subject_id)
    assert groups["ehr_only"] <= e - c - set(ecg.subject_id)
    ov = source_overlap(adm, meta)
    assert 0 < ov["pct_of_ehr"] < 80 and 0 < ov["pct_of_cxr"] < 95
    ehr = pd.DataFrame({"record_id": adm.hadm_id, "subject_id": adm.subject_id, "time": adm.admittime, "split": ""})
    g = cross_source_gaps(ehr, meta.assign(record_id=meta.study_id)[["record_id", "subject_id", "time"]])
    assert (g.gap_days <= 30).mean() > 0.2 and (g.gap_days > 30).mean() > 0.2
    near = g.groupby("cxr_record_id").gap_days.min()                     # per study: nearest admission
    assert 0.5 < (near <= 30).mean() < 0.95


def test_linking_with_single_source_patients(cohort, truth):
    """Notebook 01's linking runs on the cohort: CXR-only studies keep no hadm_id and join no pair; EHR-only
    admissions have no CXR; every patient is in the one patient-level split."""
    from medbind_lib.cohort import mimic_cohort
    from medbind_lib.quality import QualityLog

    cfg, _ = cohort
    _, _, groups = _sources(cfg, truth)
    linked = mimic_cohort(cfg, QualityLog())
    cxr_only, ehr_only = ({str(x) for x in groups[k]} for k in ("cxr_only", "ehr_only"))
    c = linked["cxr"][linked["cxr"].subject_id.isin(cxr_only)]
    assert len(c) and c.hadm_id.isna().all() and not linked["pairs"].subject_id.isin(cxr_only).any()
    a = linked["admissions"][linked["admissions"].subject_id.isin(ehr_only)]
    assert len(a) == truth["admissions"].subject_id.isin(groups["ehr_only"]).sum() and a.cxr_record_id.isna().all()
    sp = linked["splits"].set_index("subject_id")
    assert sp.loc[sorted(cxr_only), "in_mimic_cxr"].all() and not sp.loc[sorted(cxr_only), "in_mimic_iv"].any()
    assert sp.loc[sorted(ehr_only), "in_mimic_iv"].all() and not sp.loc[sorted(ehr_only), "in_mimic_cxr"].any()


# --- determinism, reuse, atomicity -------------------------------------------------------------------
def _digest(root: Path, rels) -> dict:
    return {r: hashlib.sha256((root / r).read_bytes()).hexdigest() for r in rels}


SAMPLE = ["mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz",
          "mimic-iv-ecg/record_list.csv", "mimic-iv-ecg/machine_measurements.csv", "mimiciv/hosp/admissions.csv.gz",
          "mimiciv/icu/chartevents.csv.gz", "mimiciv/hosp/labevents.csv.gz",
          "mimic-iv-note/note/discharge.csv.gz", "ptb-xl/ptbxl_database.csv", "ptb-xl/records100/00000/00007_lr.dat",
          "icbeb/A0003.mat", "chexpert/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
          "COVID-19_Radiography_Dataset/COVID/images/COVID-2.png", "rsna-pneumonia/stage_2_train_labels.csv",
          "openi/ecgen-radiology/2.xml"]


def _sample_files(root: Path) -> list[str]:
    meta = _gz(root / "mimic-cxr-jpg", "mimic-cxr-2.0.0-metadata.csv.gz")
    r = meta.iloc[len(meta) // 2]
    sid = str(r.subject_id)
    rl = pd.read_csv(root / "mimic-iv-ecg" / "record_list.csv")
    return SAMPLE + [f"mimic-cxr-jpg/files/p{sid[:2]}/p{sid}/s{r.study_id}/{r.dicom_id}.jpg",
                     f"mimic-cxr-jpg/files/p{sid[:2]}/p{sid}/s{r.study_id}.txt",
                     f"mimic-iv-ecg/{rl.path.iloc[len(rl) // 2]}.dat"]


def test_determinism(tmp_path):
    kw = dict(n_patients=20, synth_image_size=64)
    a, b, c = (tmp_path / n for n in "abc")
    write_cohort(_cfg(a, **kw))
    write_cohort(_cfg(b, **kw))
    write_cohort(_cfg(c, seed=1, **kw))
    files = _sample_files(a)
    da, db, dc = _digest(a, files), _digest(b, files), None
    assert da == db
    dc = {r: hashlib.sha256((c / r).read_bytes()).hexdigest() if (c / r).exists() else None for r in files}
    assert sum(da[r] != dc[r] for r in files) >= len(files) - 1


def test_reuse_and_force(cohort, tmp_path):
    cfg, first = cohort
    meta = Path(cfg.mimic_cxr_root) / "mimic-cxr-2.0.0-metadata.csv.gz"
    mtime = meta.stat().st_mtime_ns
    again = write_cohort(cfg)
    assert again["reused"] and again["counts"] == first["counts"] and meta.stat().st_mtime_ns == mtime
    # another size is a different cohort: the stamp does not match
    small = _cfg(tmp_path / "s", n_patients=12, synth_image_size=48)
    assert not write_cohort(small)["reused"] and write_cohort(small)["reused"]
    assert not write_cohort(small, force=True)["reused"]


def test_failed_generation_leaves_no_stamped_cohort(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path / "d", n_patients=12, synth_image_size=48)

    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(external, "write_openi", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_cohort(cfg)
    data_root = Path(cfg.data_root)
    assert not (data_root / STAMP_NAME).exists()
    assert not Path(cfg.mimic_cxr_root).exists() and not Path(cfg.ptbxl_root).exists()   # nothing half-written
    assert not any("synth-staging" in p.name for p in data_root.parent.iterdir())
    monkeypatch.undo()
    write_cohort(cfg)                                         # a complete cohort, stamped
    assert (data_root / STAMP_NAME).exists()
    monkeypatch.setattr(external, "write_openi", boom)
    with pytest.raises(RuntimeError):
        write_cohort(cfg, force=True)
    assert not (data_root / STAMP_NAME).exists()              # the old cohort is no longer marked complete
