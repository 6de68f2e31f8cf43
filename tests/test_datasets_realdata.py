"""Reader conformance on the REAL sample files (../shared/realdata, via the ``realdata`` fixture).

Files are read in place, never copied or modified. Expected values are taken from the raw files by hand
(plain text / gzip / regex parsing here), not from the readers.
"""
from __future__ import annotations

import ast
import csv
import gzip
import re

import numpy as np
import pandas as pd
import pytest
import wfdb

from medbind_lib.constants import LEADS
from medbind_lib.datasets import challenge, ecgio, icbeb, mimic_ecg, mimic_iv, nih, openi, ptbxl
from medbind_lib.errors import DataError
from medbind_lib.quality import QualityLog

pytestmark = pytest.mark.realdata


def raw_header(path):
    """(record line tokens, {comment key: value}) of a .hea, parsed by hand."""
    lines = path.read_text().splitlines()
    fields = {}
    for ln in lines:
        if ln.startswith("#") and ":" in ln:
            k, v = ln.lstrip("#").split(":", 1)
            fields[k.strip()] = v.strip()
    return lines[0].split(), fields, [ln.split()[-1] for ln in lines[1:] if ln and not ln.startswith("#")]


# ---------------------------------------------------------------------------------------------------- PTB-XL
def test_ptbxl_excerpt(realdata):
    root = realdata / "ptbxl"
    rows = list(csv.DictReader(open(root / "ptbxl_database.csv")))
    present = [r for r in rows if (root / (r["filename_lr"] + ".hea")).exists()
               and (root / (r["filename_hr"] + ".hea")).exists()]
    q = QualityLog()
    df = ptbxl.read(root, q)
    assert df["record_id"].tolist() == [r["ecg_id"] for r in present] and len(df) == 20
    by = df.set_index("record_id")
    # hand check against scp_statements.csv: IMI -> MI; AFLT/ABQRS/AFIB are rhythm/form -> none;
    # IRBBB -> CD, RAO/RAE + RVH -> HYP; IMI -> MI, NST_/DIG -> STTC (likelihood 15 still counts)
    assert by.loc["8", "labels"] == ["MI"] and by.loc["17", "labels"] == []
    assert by.loc["45", "labels"] == ["CD", "HYP"] and by.loc["39", "labels"] == ["MI", "STTC"]
    assert by.loc["1", "labels"] == ["NORM"] and by.loc["50", "labels"] == ["CD", "MI"]
    assert q.count("ptbxl", "labels") == 1
    assert by.loc["1", "subject_id"] == "15709" and by.loc["1", "sex"] == "Female"
    assert by.loc["8", "split"] == "valid" and by.loc["9", "split"] == "test" and by.loc["1", "split"] == "train"
    assert by.loc["1", "scp_codes"] == ast.literal_eval(rows[0]["scp_codes"])
    for rid, r in by.iterrows():
        h = wfdb.rdheader(r["path"])
        assert (h.fs, h.sig_len, h.n_sig) == (100, 1000, 12) and set(h.adc_gain) == {1000.0}
        assert [ecgio.canonical_lead(n) for n in h.sig_name] == list(LEADS)
        hh = wfdb.rdheader(r["path_hr"])
        assert (hh.fs, hh.sig_len) == (500, 5000) and set(hh.adc_gain) == {1000.0}
        assert (r["fs"], r["n_samples"]) == (h.fs, h.sig_len)          # manifest read from the header
    x, fs, leads = ecgio.load_signal(by.loc["1", "path"])
    assert x.shape == (1000, 12) and fs == 100 and leads == list(LEADS)
    with pytest.raises(DataError, match=r"00001_lr.hea \[record 1\]: header sampling rate 100 Hz, expected 500"):
        ptbxl.read(root, expected_fs=500)


# ------------------------------------------------------------------------------------------- Challenge
@pytest.mark.parametrize("folder", ["challenge2020", "challenge2021"])
def test_challenge_every_record(realdata, folder):
    root = realdata / folder
    heads = sorted(root.rglob("*.hea"))
    q = QualityLog()
    df = challenge.read(root, q).set_index("record_id")
    assert q.count(flagged=False) == 0 and len(df) == len(heads) and len(heads) in (10, 7)
    copies = sorted(h.stem for h in heads if h.stem.startswith("HR") and "200/mV" in h.read_text())
    assert copies == (["HR00001", "HR00599"] if folder == "challenge2020" else [])   # 2021 declares 1000
    assert q.count(dataset="challenge", stage="header", flagged=True) == len(copies)
    assert sorted(df.index[df["gain_corrected"]]) == copies
    for hea in heads:
        tok, fields, names = raw_header(hea)
        r = df.loc[hea.stem]
        assert r["fs"] == float(tok[2]) == 500 and r["n_samples"] == int(tok[3]) and r["n_leads"] == 12
        assert r["lead_names"] == list(LEADS) == names
        assert r["dx"] == [c for c in fields["Dx"].split(",") if c]
        assert r["sex"] == fields["Sex"] and r["age"] == float(fields["Age"])
        x, fs, leads = ecgio.load_signal(r["path"], "challenge_mat")
        assert x.shape == (int(tok[3]), 12) and fs == 500
        if r["wfdb_readable"]:   # wfdb applies the declared gain; the manifest lists the gain used
            declared = np.asarray(wfdb.rdheader(r["path"]).adc_gain)
            assert np.allclose(x, wfdb.rdrecord(r["path"]).p_signal * declared / np.asarray(r["gains"]), atol=1e-6)
    if folder == "challenge2020":
        # Georgia 2020 headers name the record 'E00009.mat' and declare 4880 adu/mV: wfdb rejects them
        assert not df.loc["E00009", "wfdb_readable"] and df.loc["E00009", "gain"] == 4880.0
        assert df.loc["A5432", "header_datetime"] == pd.Timestamp("2020-05-12 12:33:59")
    else:
        assert df["wfdb_readable"].all() and df.loc["HR06000", "units"] == "mv"


def test_challenge2020_ptbxl_copy_gain(realdata):
    """The Challenge 2020 copy of PTB-XL 00001 holds the same samples but declares 200 adu/mV, not 1000:
    read by default at PTB-XL's gain (counted), as declared only on request."""
    copy = realdata / "challenge2020/ptb-xl_dx_stripped/HR00001"
    orig = realdata / "ptbxl/records500/00000/00001_hr"
    a, b = wfdb.rdrecord(str(copy), physical=False), wfdb.rdrecord(str(orig), physical=False)
    assert np.array_equal(a.d_signal, b.d_signal)
    assert set(a.adc_gain) == {200.0} and set(b.adc_gain) == {1000.0}
    pb = wfdb.rdrecord(str(orig)).p_signal                               # PTB-XL itself, read by wfdb
    q = QualityLog()
    pa, _, _ = ecgio.load_signal(copy, "challenge_mat", quality=q)
    assert np.allclose(pa, pb, atol=1e-6) and q.count("challenge", "signal", flagged=True) == 1
    ratio = np.abs(pa).max(axis=0) / np.abs(pb).max(axis=0)
    assert np.allclose(ratio, 1.0, atol=1e-3)                           # 1, not 5
    raw, _, _ = ecgio.load_signal(copy, "challenge_mat", fix_ptbxl_gain=False)
    assert np.allclose(raw, 5 * pb, atol=1e-5)                          # 5x too large as declared
    m = challenge.read(realdata / "challenge2020").set_index("record_id")
    assert m.loc["HR00001", "gain"] == 1000.0 and m.loc["HR00599", "gains"] == [1000.0] * 12
    assert not m.loc["A5432", "gain_corrected"] and m.loc["A5432", "gain"] == 1000.0
    m_off = challenge.read(realdata / "challenge2020", fix_ptbxl_gain=False).set_index("record_id")
    assert m_off.loc["HR00001", "gain"] == 200.0 and not m_off["gain_corrected"].any()
    assert wfdb.rdheader(str(realdata / "challenge2020/ptb-xl/HR00599")).adc_gain[0] == 200.0
    # Challenge 2021 copies declare 1000 and are read unchanged
    c21 = realdata / "challenge2021/ptb-xl/HR06000"
    q21 = QualityLog()
    x21, _, _ = ecgio.load_signal(c21, "challenge_mat", quality=q21)
    assert q21.count() == 0 and np.allclose(x21, wfdb.rdrecord(str(c21)).p_signal, atol=1e-6)


def test_icbeb_from_challenge2020_and_a5432_by_hand(realdata):
    root = realdata / "challenge2020"
    _, fields, _ = raw_header(root / "cpsc_2018/A5432.hea")
    assert fields["Dx"] == "284470004"                                  # SNOMED PAC
    q = QualityLog()
    df = icbeb.read(root, q, keep_unlabelled=True).set_index("record_id")
    assert sorted(df.index) == ["A0001", "A0002", "A5432"]             # Q/E/HR records are other sources
    assert df.loc["A5432", "labels"] == ["PAC"] and df.loc["A0001", "labels"] == []   # Dx blanked in A0001
    assert q.count("icbeb", "source") == 7 and q.count("icbeb", "labels") == 2
    assert icbeb.read(root).index.size == 1


def test_cpsc_original_mat(realdata):
    q = QualityLog()
    df = icbeb.read(realdata / "cpsc2018_original", q)
    r = df.iloc[0]
    assert (r["record_id"], r["form"], r["sex"], r["age"], r["n_samples"]) == ("A1980", "original", "Male", 52.0, 5000)
    assert r["labels"] == [] and not r["labelled"] and q.count("icbeb", "labels") == 1
    x, fs, leads = ecgio.load_signal(r["path"], "cpsc_mat")
    assert x.shape == (5000, 12) and fs == 500 and np.isfinite(x).all() and np.abs(x).max() < 20


# ---------------------------------------------------------------------------------------------- MIMIC
def test_mimic_iv_demo_tables(realdata):
    root = realdata / "mimic-iv-clinical-database-demo-2.2"
    names = ("admissions", "patients", "diagnoses_icd", "d_icd_diagnoses", "prescriptions", "icustays",
             "procedures_icd", "transfers", "services", "labevents")
    t = mimic_iv.read_tables(root, tables=names)
    for name in names:
        path = next(p for p in (root / "hosp" / f"{name}.csv.gz", root / "icu" / f"{name}.csv.gz") if p.exists())
        with gzip.open(path, "rt") as f:
            header = f.readline().strip().split(",")
            n_lines = sum(1 for _ in f)
        assert len(t[name]) == n_lines, name
        if name in mimic_iv.SPECS:
            assert set(t[name].columns) == set(header) - {"ethnicity"}, name
    a = t["admissions"]
    assert a["hadm_id"].is_unique and len(a) == 275
    for c in ("admittime", "dischtime", "deathtime", "edregtime", "edouttime"):
        assert str(a[c].dtype) == "datetime64[ns]"
    assert a["admittime"].notna().all() and a["deathtime"].notna().sum() == a["hospital_expire_flag"].sum()
    assert str(t["patients"]["dod"].dtype) == "datetime64[ns]" and (t["patients"]["dod"].dropna().dt.hour == 0).all()
    assert t["icustays"]["intime"].notna().all() and t["prescriptions"]["starttime"].notna().any()
    assert t["diagnoses_icd"]["icd_code"].map(type).eq(str).all()
    assert t["d_icd_diagnoses"]["icd_code"].str.match(r"^0").any()        # leading zeros kept


def test_mimic_ecg_demo_record_list(realdata):
    path = realdata / "mimic-iv-ecg-demo-0.1/record_list.head.csv"
    rl = mimic_ecg.read_record_list(path)
    raw = list(csv.DictReader(open(path)))
    assert len(rl) == len(raw) == 5
    assert rl["subject_id"].tolist() == [r["subject_id"] for r in raw]
    assert rl["study_id"].tolist() == [int(r["study_id"]) for r in raw]
    assert rl["relpath"].tolist() == [r["path"] for r in raw]
    assert rl["ecg_time"].iloc[0] == pd.Timestamp("2180-07-23 08:44:24")
    assert str(rl["ecg_time"].dtype) == "datetime64[ns]"


# ------------------------------------------------------------------------------------------------ CXR
def test_nih_png_manifest(realdata):
    from PIL import Image
    df = nih.read(realdata / "nih_chestxray14").set_index("record_id")
    assert len(df) == 10
    assert df.loc["00001933_000.png", "labels"] == ["Consolidation", "Pneumonia"]
    assert df.loc["00004030_000.png", "labels"] == [] and df.loc["00004030_000.png", "subject_id"] == "4030"
    for p in df["path"]:
        with Image.open(p) as im:
            assert im.size == (1024, 1024) and im.mode == "L"


def test_openi_xml_all_files(realdata):
    root = realdata / "openi_iu_xray"
    xmls = sorted((root / "ecgen-radiology").glob("*.xml"))
    assert len(xmls) == 10
    raw = (root / "ecgen-radiology/1.xml").read_text()
    f = re.search(r'<AbstractText Label="FINDINGS">(.*?)</AbstractText>', raw, re.S).group(1)
    i = re.search(r'<AbstractText Label="IMPRESSION">(.*?)</AbstractText>', raw, re.S).group(1)
    n_images = sum(len(re.findall(r'<parentImage id="', x.read_text())) for x in xmls)
    q = QualityLog()
    df = openi.read(root, q)
    assert len(df) == n_images == 20
    rep = openi.read(root, per="report").set_index("record_id")
    assert len(rep) == 10
    assert rep.loc["CXR1", "findings"] == f and rep.loc["CXR1", "impression"] == i
    assert rep.loc["CXR1", "text"] == f"{f} {i}"
    assert rep.loc["CXR1", "images"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    assert rep.loc["CXR3", "findings"] == "" and q.count("openi", "text") == 1   # 3.xml has no findings text


def test_openi_kaggle_reports_head(realdata):
    root = realdata / "openi_iu_xray"
    t = openi.read_kaggle_reports(root / "indiana_reports.head.csv")
    assert t["uid"].tolist() == ["1", "2", "3", "4", "5"]
    xml1 = openi.parse_report_xml(root / "ecgen-radiology/1.xml")
    assert t["findings"].iloc[0] == xml1["findings"] and t["impression"].iloc[0] == xml1["impression"]
    assert t["findings"].iloc[2] == "" and t["mesh"].iloc[1][0] == "Cardiomegaly/borderline"
