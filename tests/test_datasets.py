"""Dataset readers on tiny hand-made fixtures written in each dataset's exact layout, and bad input.

Independent of medbind_lib.synth: every fixture is built here, byte by byte where the layout matters.
"""
from __future__ import annotations

import gzip
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from medbind_lib.constants import CHEXPERT_CSV_LABELS, CHEXPERT_LABELS, LEADS
from medbind_lib.datasets import (READERS, challenge, chexpert, covid, ecgio, icbeb, load_manifest, mimic_cxr,
                                  mimic_ecg, mimic_iv, openi, ptbxl, rsna)
from medbind_lib.errors import ConfigError, DataError
from medbind_lib.quality import QualityLog


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = textwrap.dedent(text).lstrip("\n").encode()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------------- MIMIC-CXR
D1 = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
D2 = "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"
D3 = "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714"
D4 = "aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee"
LAB_HEADER = "subject_id,study_id," + ",".join(CHEXPERT_LABELS)


def build_mimic_cxr(root: Path, chexpert_header: str = LAB_HEADER, split_value: str = "validate") -> Path:
    write(root / "mimic-cxr-2.0.0-metadata.csv.gz", f"""
        dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning
        {D1},10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.53100000002,CHEST (PA AND LAT),postero-anterior,Erect
        {D2},10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect
        {D3},10000032,53911762,CHEST (PORTABLE AP),AP,2705,2539,21800723,80556.875,CHEST (PORTABLE AP),antero-posterior,
        {D4},11000011,56699142,,,2544,3056,21840101,0.187,,,
        """, gz=True)
    write(root / "mimic-cxr-2.0.0-split.csv.gz", f"""
        dicom_id,study_id,subject_id,split
        {D1},50414267,10000032,train
        {D2},50414267,10000032,train
        {D3},53911762,10000032,test
        {D4},56699142,11000011,{split_value}
        """, gz=True)
    n = len(CHEXPERT_LABELS)
    # study 50414267: Atelectasis empty (NaN), Cardiomegaly 0.0, Consolidation -1.0, Edema 1.0, rest empty
    row1 = ["", "0.0", "-1.0", "1.0"] + [""] * (n - 4)
    row2 = ["1.0"] + ["0.0"] * (n - 1)
    write(root / "mimic-cxr-2.0.0-chexpert.csv.gz", chexpert_header + "\n"
          + "10000032,50414267," + ",".join(row1) + "\n" + "10000032,53911762," + ",".join(row2) + "\n", gz=True)
    return root


def test_mimic_cxr_times_splits_labels(tmp_path):
    root = build_mimic_cxr(tmp_path / "cxr")
    q = QualityLog()
    raw = mimic_cxr.read(root, q, reports_root=tmp_path / "reports")
    assert list(raw.columns[:6]) == ["dataset", "record_id", "subject_id", "path", "time", "split"]
    df = raw.set_index("record_id")
    assert df.loc[D1, "time"] == pd.Timestamp("2180-05-06 21:30:14")
    assert df.loc[D3, "time"] == pd.Timestamp("2180-07-23 08:05:56")   # 80556.875 zero-padded
    assert df.loc[D4, "time"] == pd.Timestamp("2184-01-01 00:00:00")   # 0.187
    assert str(df["time"].dtype) == "datetime64[ns]"
    assert df.loc[D4, "split"] == "valid" and df.loc[D1, "split"] == "train" and df.loc[D3, "split"] == "test"
    assert df.loc[D4, "view"] == "" and df.loc[D1, "view"] == "PA"
    assert df.loc[D1, "subject_id"] == "10000032" and df.loc[D1, "study_id"] == 50414267
    assert df.loc[D1, "path"] == str(root / f"files/p10/p10000032/s50414267/{D1}.jpg")
    assert df.loc[D1, "report_path"] == str(tmp_path / "reports/files/p10/p10000032/s50414267.txt")
    # NaN (not mentioned) stays distinct from 0.0 (negative) and -1.0 (uncertain)
    assert np.isnan(df.loc[D1, "Atelectasis"])
    assert df.loc[D1, "Cardiomegaly"] == 0.0 and df.loc[D1, "Consolidation"] == -1.0 and df.loc[D1, "Edema"] == 1.0
    assert df.loc[D3, "Atelectasis"] == 1.0 and df.loc[D3, "Support Devices"] == 0.0
    assert not df.loc[D4, "labelled"] and df.loc[D4, list(CHEXPERT_LABELS)].isna().all()
    assert q.count("mimic_cxr", "labels") == 1


def test_mimic_cxr_check_files_counts_missing_images(tmp_path):
    root = build_mimic_cxr(tmp_path)
    img = root / f"files/p10/p10000032/s50414267/{D1}.jpg"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"\xff\xd8\xff")
    q = QualityLog()
    df = mimic_cxr.read(root, q, check_files=True)
    assert df["record_id"].tolist() == [D1]
    assert q.count("mimic_cxr", "files", "image file missing") == 3


def test_mimic_cxr_negbio_option_and_no_labels(tmp_path):
    root = build_mimic_cxr(tmp_path)
    with pytest.raises(DataError, match="negbio"):
        mimic_cxr.read(root, label_source="negbio")
    df = mimic_cxr.read(root, label_source=None)
    assert df[list(CHEXPERT_LABELS)].isna().all().all()


def test_mimic_cxr_renamed_label_column(tmp_path):
    root = build_mimic_cxr(tmp_path, chexpert_header=LAB_HEADER.replace("Lung Opacity", "Airspace Opacity"))
    with pytest.raises(DataError) as e:
        mimic_cxr.read(root)
    assert "mimic-cxr-2.0.0-chexpert.csv.gz" in str(e.value) and "Lung Opacity" in str(e.value)


def test_mimic_cxr_bad_split_value_and_duplicates(tmp_path):
    root = build_mimic_cxr(tmp_path / "a", split_value="val2")
    with pytest.raises(DataError, match=r"split.csv.gz.*unknown split value"):
        mimic_cxr.read(root)
    root = build_mimic_cxr(tmp_path / "b")
    meta = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    lines = gzip.decompress(meta.read_bytes()).decode().splitlines()
    meta.write_bytes(gzip.compress(("\n".join(lines + [lines[1]]) + "\n").encode()))
    with pytest.raises(DataError, match=r"metadata.csv.gz.*duplicate dicom_id"):
        mimic_cxr.read(root)


def test_missing_root_and_file_name_the_path(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        mimic_cxr.read(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"mimic-cxr-2.0.0-metadata.csv\[.gz\].*not found"):
        mimic_cxr.read(tmp_path / "empty")
    with pytest.raises(DataError, match=r"ptbxl_database.csv.*not found"):
        ptbxl.read(tmp_path / "empty")


def test_report_non_utf8_policy(tmp_path):
    p = tmp_path / "s1.txt"
    p.write_bytes(" FINDINGS: caf\xe9 normal.\n".encode("latin-1"))
    with pytest.raises(DataError) as e:
        mimic_cxr.read_report(p, strict=True)
    assert str(p) in str(e.value) and "UTF-8" in str(e.value)
    q = QualityLog()
    text = mimic_cxr.read_report(p, q)
    assert text == " FINDINGS: caf\u00e9 normal.\n"                     # the stray byte read as latin-1
    assert q.count("mimic_cxr", "text", flagged=True) == 1 and str(p) in q.to_frame()["examples"].iloc[0]
    # only the stray byte falls back: valid UTF-8 around it stays right (no mojibake)
    p.write_bytes("Ré: caf".encode("utf-8") + b"\xe9 ok.")
    assert mimic_cxr.read_report(p, q) == "Ré: café ok." and q.count("mimic_cxr", "text") == 2
    with pytest.raises(DataError, match="report file not found"):
        mimic_cxr.read_report(tmp_path / "missing.txt")


# ----------------------------------------------------------------------------------------------- MIMIC-ECG
def build_mimic_ecg(root: Path) -> Path:
    write(root / "record_list.csv", """
        subject_id,study_id,file_name,ecg_time,path
        10000032,40689238,40689238,2180-07-23 08:44:00,files/p1000/p10000032/s40689238/40689238
        10000980,46642833,46642833,2137-05-21 15:50:00,files/p1000/p10000980/s46642833/46642833
        10001000,41111111,41111111,2150-01-01 00:00:00,files/p1000/p10001000/s41111111/41111111
        """)
    reps = lambda xs: ",".join(xs + [""] * (18 - len(xs)))  # noqa: E731
    hdr = ("subject_id,study_id,cart_id,ecg_time," + ",".join(f"report_{i}" for i in range(18))
           + ",bandwidth,filtering,rr_interval,p_onset,p_end,qrs_onset,qrs_end,t_end,p_axis,qrs_axis,t_axis")
    write(root / "machine_measurements.csv", hdr + "\n"
          + "10000032,40689238,6848296,2180-07-23 08:44:00,"
          + reps(["Sinus rhythm", "Possible right atrial abnormality", "", "Borderline ECG"])
          + ",0.005-150 Hz,60 Hz notch Baseline filter,659,40,128,170,258,518,81,77,79\n"
          + "10000980,46642833,6555070,2137-05-21 15:50:00,"
          + reps(["Atrial fibrillation with PVC(s) or aberrant ventricular conduction.", "Left ventricular hypertrophy"])
          + ",0.005-150 Hz,60 Hz notch Baseline filter,769,29999,29999,200,302,636,29999,-18,-67\n")
    write(root / "waveform_note_links.csv", """
        subject_id,study_id,waveform_path,note_id,note_seq,charttime
        10000032,40689238,files/p1000/p10000032/s40689238/40689238,10000032-EC-2,2,2180-07-23 09:00:00
        10000032,40689238,files/p1000/p10000032/s40689238/40689238,10000032-EC-1,1,2180-07-23 09:00:00
        """)
    return root


def test_mimic_ecg_join_reports_sentinels_notes(tmp_path):
    root = build_mimic_ecg(tmp_path)
    q = QualityLog()
    df = mimic_ecg.read(root, q).set_index("record_id")
    assert df.loc["40689238", "machine_reports"] == ["Sinus rhythm", "Possible right atrial abnormality",
                                                     "Borderline ECG"]  # gap at report_2 removed
    assert df.loc["41111111", "machine_reports"] == [] and not df.loc["41111111", "has_measurements"]
    assert q.count("mimic_ecg", "measurements") == 1
    assert df.loc["40689238", "path"] == str(root / "files/p1000/p10000032/s40689238/40689238")
    assert df.loc["40689238", "time"] == pd.Timestamp("2180-07-23 08:44:00")
    assert pd.isna(df.loc["46642833", "p_onset"]) and df.loc["46642833", "qrs_axis"] == -18
    assert df.loc["40689238", "note_id"] == "10000032-EC-1"        # first by note_seq
    assert pd.isna(df.loc["46642833", "note_id"])
    assert q.count("mimic_ecg", "notes") == 1
    assert df["split"].isna().all()


def test_mimic_ecg_headers_and_missing_files(tmp_path):
    import wfdb
    root = build_mimic_ecg(tmp_path)
    d = root / "files/p1000/p10000032/s40689238"
    d.mkdir(parents=True)
    sig = (np.random.default_rng(0).normal(size=(5000, 12)) * 100).astype(np.int16)
    wfdb.wrsamp("40689238", fs=500, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2",
                "V3", "V4", "V5", "V6"], d_signal=sig, fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12,
                write_dir=str(d), comments=["<subject_id>: 10000032"])
    q = QualityLog()
    df = mimic_ecg.read(root, q, check_files=True, read_headers=True)
    assert df["record_id"].tolist() == ["40689238"]
    assert df["fs"].iloc[0] == 500.0 and df["n_samples"].iloc[0] == 5000
    assert q.count("mimic_ecg", "files") == 2
    x, fs, leads = ecgio.load_signal(df["path"].iloc[0])
    assert x.shape == (5000, 12) and leads[4] == "aVF" and np.allclose(x[:, 0], sig[:, 0] / 200.0, atol=1e-6)


def test_mimic_ecg_duplicate_study(tmp_path):
    root = build_mimic_ecg(tmp_path)
    p = root / "record_list.csv"
    p.write_text(p.read_text() + p.read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError, match=r"record_list.csv.*duplicate study_id"):
        mimic_ecg.read(root)


# ---------------------------------------------------------------------------------------------------- PTB-XL
PTBXL_HEADER = ("ecg_id,patient_id,age,sex,height,weight,nurse,site,device,recording_date,report,scp_codes,heart_axis,"
                "infarction_stadium1,infarction_stadium2,validated_by,second_opinion,initial_autogenerated_report,"
                "validated_by_human,baseline_drift,static_noise,burst_noise,electrodes_problems,extra_beats,pacemaker,"
                "strat_fold,filename_lr,filename_hr")


def build_ptbxl(root: Path, codes3: str = "{'AFLT': 100.0, 'SR': 0.0}") -> Path:
    def row(i, pid, sex, codes, fold):
        return (f'{i},{pid},56.0,{sex},,63.0,2.0,0.0,CS-12   E,1984-11-09 09:17:34,report {i},"{codes}",,,,,False,False,'
                f'True,,,,,,,{fold},records100/00000/{i:05d}_lr,records500/00000/{i:05d}_hr')
    write(root / "ptbxl_database.csv", "\n".join([
        PTBXL_HEADER, row(1, "15709.0", 1, "{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}", 3),
        row(2, "13243.0", 0, "{'IRBBB': 100.0, 'RVH': 0.0, 'SR': 0.0}", 9),
        row(3, "13243.0", 0, codes3, 10)]) + "\n")
    write(root / "scp_statements.csv", """
        ,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass
        NORM,normal ECG,1.0,,,NORM,NORM
        IRBBB,incomplete right bundle branch block,1.0,,,CD,IRBBB
        RVH,right ventricular hypertrophy,1.0,,,HYP,RVH
        LVOLT,low QRS voltages,,1.0,,,
        SR,sinus rhythm,,,1.0,,
        AFLT,atrial flutter,,,1.0,,
        """)
    for i in (1, 2, 3):
        for sub, suf, fs in (("records100", "lr", 100), ("records500", "hr", 500)):
            write(root / sub / "00000" / f"{i:05d}_{suf}.hea", ptbxl_header(f"{i:05d}_{suf}", fs, fs * 10))
    return root


def ptbxl_header(name: str, fs: int, n: int, n_lines: int = 12) -> str:
    """A PTB-XL style header (the real files' signal-line layout, upper-case aVx names)."""
    leads = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    lines = [f"{name} 12 {fs} {n}"] + [f"{name}.dat 16 1000.0(0)/mV 16 0 0 0 0 {ld}" for ld in leads[:n_lines]]
    return "\n".join(lines) + "\n"


def test_ptbxl_superclasses_splits_ids(tmp_path):
    root = build_ptbxl(tmp_path)
    q = QualityLog()
    df = ptbxl.read(root, q).set_index("record_id")
    assert df.loc["1", "labels"] == ["NORM"] and df.loc["2", "labels"] == ["CD", "HYP"]  # likelihood 0 counts
    assert df.loc["3", "labels"] == []                                # kept, counted
    assert q.count("ptbxl", "labels") == 1
    assert df["split"].tolist() == ["train", "valid", "test"]
    assert df.loc["1", "subject_id"] == "15709" and df.loc["1", "sex"] == "Female" and df.loc["2", "sex"] == "Male"
    assert df.loc["1", "scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert df.loc["1", "path"] == str(root / "records100/00000/00001_lr")
    assert df.loc["1", "path_hr"] == str(root / "records500/00000/00001_hr")
    assert df.loc["1", "time"] == pd.Timestamp("1984-11-09 09:17:34")


def test_ptbxl_missing_record_counted_and_bad_codes(tmp_path):
    root = build_ptbxl(tmp_path / "a")
    (root / "records500/00000/00002_hr.hea").unlink()
    q = QualityLog()
    assert ptbxl.read(root, q)["record_id"].tolist() == ["1", "3"]
    assert q.count("ptbxl", "files", "record files missing") == 1
    root = build_ptbxl(tmp_path / "b", codes3="{'NORM': 100.0")
    with pytest.raises(DataError) as e:
        ptbxl.read(root)
    assert "ptbxl_database.csv" in str(e.value) and "record 3" in str(e.value) and "scp_codes" in str(e.value)


def test_ptbxl_fs_and_length_come_from_the_header(tmp_path):
    root = build_ptbxl(tmp_path)
    df = ptbxl.read(root)
    assert df["fs"].tolist() == [100.0] * 3 and df["n_samples"].tolist() == [1000] * 3
    lr2 = root / "records100/00000/00002_lr.hea"
    lr2.write_text(ptbxl_header("00002_lr", 500, 5000))                  # a 500 Hz file in records100
    with pytest.raises(DataError) as e:
        ptbxl.read(root)
    assert (e.value.file, e.value.record) == (str(lr2), "2")
    assert e.value.problem == "header sampling rate 500 Hz, expected 100 Hz"
    by = ptbxl.read(root, expected_fs=None, expected_n_samples=None).set_index("record_id")
    assert (by.loc["2", "fs"], by.loc["2", "n_samples"]) == (500.0, 5000) and by.loc["1", "fs"] == 100.0
    lr2.write_text(ptbxl_header("00002_lr", 100, 900))                   # cropped copy
    with pytest.raises(DataError, match=r"00002_lr.hea \[record 2\]: header signal length 900 samples, expected 1000"):
        ptbxl.read(root)
    lr2.write_text(ptbxl_header("00002_lr", 100, 1000, n_lines=11))     # truncated header
    with pytest.raises(DataError, match=r"00002_lr.hea \[record 2\]: header declares 12 signals but lists 11"):
        ptbxl.read(root)
    assert ptbxl.read(root, check_files=False)["fs"].tolist() == [100.0] * 3   # no file opened: nominal values


def test_ptbxl_renamed_column(tmp_path):
    root = build_ptbxl(tmp_path)
    p = root / "ptbxl_database.csv"
    p.write_text(p.read_text().replace("strat_fold", "fold", 1))
    with pytest.raises(DataError, match=r"ptbxl_database.csv.*missing required column.*strat_fold"):
        ptbxl.read(root)


# ------------------------------------------------------------------------------------- Challenge / ICBEB
def challenge_header(name, leads=LEADS, fs=500, n=1000, gain="1000/mV", dx="59118001", style=2020,
                     record_line_name=None):
    line = f"{record_line_name or name} {len(leads)} {fs} {n}" + (" 05-Feb-2020 11:39:16" if style == 2020 else "")
    out = [line] + [f"{name}.mat 16+24 {gain} 16 0 0 0 0 {ld}" for ld in leads]
    sp = "" if style == 2020 else " "
    out += [f"#{sp}Age: 74", f"#{sp}Sex: Male", f"#{sp}Dx: {dx}", f"#{sp}Rx: Unknown"]
    return "\n".join(out) + "\n"


def write_challenge(d: Path, name: str, val=None, **kw) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    n = kw.get("n", 1000)
    leads = kw.get("leads", LEADS)
    if val is None:
        val = (np.arange(len(leads) * n).reshape(len(leads), n) % 200 - 100).astype(np.int16)
    sio.savemat(str(d / f"{name}.mat"), {"val": val})
    (d / f"{name}.hea").write_text(challenge_header(name, **kw))
    return d / name


def test_challenge_read_forms_and_load_signal(tmp_path):
    root = tmp_path / "ch"
    write_challenge(root / "cpsc_2018" / "g1", "A0001", dx="59118001,164884008")
    write_challenge(root / "georgia", "E00001", gain="4880/mV", dx="", record_line_name="E00001.mat")
    write_challenge(root / "ptb-xl", "HR00001", gain="1000.0(0)/mv", style=2021, dx="426783006")
    df = challenge.read(root).set_index("record_id")
    assert df.loc["A0001", "dx"] == ["59118001", "164884008"] and df.loc["E00001", "dx"] == []
    assert df.loc["A0001", "source"] == "cpsc_2018" and df.loc["A0001", "age"] == 74 and df.loc["A0001", "sex"] == "Male"
    assert df.loc["HR00001", "lead_names"] == list(LEADS) and df.loc["HR00001", "units"] == "mv"
    assert df.loc["E00001", "gain"] == 4880.0 and not df.loc["E00001", "wfdb_readable"]
    assert df.loc["A0001", "header_datetime"] == pd.Timestamp("2020-02-05 11:39:16")
    assert df.loc["A0001", "n_samples"] == 1000 and df.loc["A0001", "fs"] == 500
    x, fs, leads = ecgio.load_signal(df.loc["E00001", "path"], "challenge_mat")
    val = sio.loadmat(str(root / "georgia/E00001.mat"))["val"]
    assert x.shape == (1000, 12) and np.allclose(x, val.T / 4880.0, atol=1e-6)
    x2, _, _ = ecgio.load_signal(df.loc["A0001", "path"], "challenge_mat", gain_override=200)
    assert np.allclose(x2 * 200, sio.loadmat(str(root / "cpsc_2018/g1/A0001.mat"))["val"].T)


@pytest.mark.parametrize("case,reason", [
    (dict(leads=LEADS[:11]), "unexpected lead set"),
    (dict(leads=("I",) * 12), "unexpected lead set"),
    (dict(fs=250), "unexpected sampling rate"),
])
def test_challenge_bad_headers_strict_or_counted(tmp_path, case, reason):
    root = tmp_path / "ch"
    write_challenge(root, "A0001")
    write_challenge(root, "A0002", **case)
    q = QualityLog()
    df = challenge.read(root, q, expected_fs=500)
    assert df["record_id"].tolist() == ["A0001"] and q.count(reason=reason) == 1
    with pytest.raises(DataError) as e:
        challenge.read(root, strict=True, expected_fs=500)
    assert "A0002.hea" in str(e.value) and "record A0002" in str(e.value)


def test_challenge_malformed_and_non_utf8_header(tmp_path):
    root = tmp_path / "ch"
    write_challenge(root, "A0001")
    write_challenge(root, "A0002")
    (root / "A0002.hea").write_text("A0002 twelve 500 1000\n")
    write_challenge(root, "A0003")
    (root / "A0003.hea").write_bytes(challenge_header("A0003").replace("Male", "M\xe4le").encode("latin-1"))
    write_challenge(root, "A0004")
    (root / "A0004.hea").write_text("\n".join(challenge_header("A0004").splitlines()[:6]) + "\n")  # 5 of 12 leads
    q = QualityLog()
    assert challenge.read(root, q)["record_id"].tolist() == ["A0001"]
    assert q.count(reason="malformed header") == 3
    with pytest.raises(DataError, match=r"A0002.hea \[record A0002\]: malformed WFDB header record line"):
        challenge.read(root, strict=True)
    with pytest.raises(DataError, match=r"A0003.hea.*not UTF-8"):
        ecgio.parse_header(root / "A0003")
    with pytest.raises(DataError, match=r"A0004.hea \[record A0004\]: header declares 12 signals but lists 5 "):
        ecgio.parse_header(root / "A0004")


def test_challenge_duplicate_record_names(tmp_path):
    write_challenge(tmp_path / "ch" / "a", "A0001")
    write_challenge(tmp_path / "ch" / "b", "A0001")
    with pytest.raises(DataError, match=r"duplicate record name"):
        challenge.read(tmp_path / "ch")


def test_icbeb_challenge_form_labels_and_split(tmp_path):
    root = tmp_path / "icbeb"
    for i in range(1, 11):
        write_challenge(root / "g1", f"A{i:04d}", dx={1: "", 2: "10370003"}.get(i, "59118001,164884008"))
    write_challenge(root / "extra", "Q0001")
    q = QualityLog()
    df = icbeb.read(root, q, seed=0)
    assert len(df) == 8 and set(df["labels"].map(tuple)) == {("CRBBB", "VPC")}
    assert q.count("icbeb", "labels", "no ICBEB class in labels (excluded)") == 2
    assert q.count("icbeb", "source") == 1
    assert (df["split"] == "test").sum() == 2 and set(df["split"]) == {"train", "test"}
    assert df["split"].tolist() == icbeb.read(root, seed=0)["split"].tolist()   # seeded
    kept = icbeb.read(root, keep_unlabelled=True)
    assert len(kept) == 10 and kept.set_index("record_id").loc["A0001", "labels"] == []


def test_icbeb_benchmark_form(tmp_path):
    root = tmp_path / "ICBEB"
    write(root / "icbeb_database.csv", """
        ,ecg_id,filename,validation,age,sex,scp_codes,patient_id,strat_fold
        0,1,A0001,False,74.0,1,{'CRBBB': 100},1,3
        1,2,A0002,False,49.0,0,"{'NORM': 100, 'PAC': 100}",2,9
        2,3,A0003,False,81.0,0,{'AFIB': 100},3,10
        """)
    df = icbeb.read(root).set_index("record_id")
    assert df["form"].iloc[0] == "benchmark"
    assert df.loc["1", "sex"] == "Male" and df.loc["2", "sex"] == "Female"   # 1 = male here
    assert df.loc["2", "labels"] == ["NORM", "PAC"] and df["split"].tolist() == ["train", "test", "test"]
    assert df.loc["1", "path"] == str(root / "records500" / "1")


def test_icbeb_original_form(tmp_path):
    root = tmp_path / "cpsc"
    (root / "TrainingSet1").mkdir(parents=True)
    for rec, sex in (("A0001", "Male"), ("A0002", "Female")):
        ecg = {"sex": np.array([sex]), "age": np.array([[52.0]]), "data": np.ones((12, 3000)) * 0.5}
        sio.savemat(str(root / "TrainingSet1" / f"{rec}.mat"), {"ECG": ecg})
    write(root / "REFERENCE.csv", "Recording,First_label,Second_label,Third_label\nA0001,5,7,\nA0002,1,,\n")
    df = icbeb.read(root, form="original").set_index("record_id")
    assert df.loc["A0001", "labels"] == ["CRBBB", "VPC"] and df.loc["A0002", "labels"] == ["NORM"]
    assert df.loc["A0001", "n_samples"] == 3000 and df.loc["A0002", "sex"] == "Female"
    x, fs, leads = ecgio.load_signal(df.loc["A0001", "path"], "cpsc_mat")
    assert x.shape == (3000, 12) and fs == 500 and leads == list(LEADS) and np.allclose(x, 0.5)


# --------------------------------------------------------------------------------------------------- CheXpert
def chexpert_row(path, frontal="Frontal", ap="AP", **labels):
    vals = [labels.get(c.replace(" ", "_"), "") for c in CHEXPERT_CSV_LABELS]
    return ",".join([path, "Female", "68", frontal, ap if frontal == "Frontal" else ""] + [str(v) for v in vals])


def build_chexpert(root: Path) -> Path:
    base = root / "CheXpert-v1.0-small"
    hdr = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_CSV_LABELS)
    p = "CheXpert-v1.0-small/train/patient{:05d}/study1/view1_frontal.jpg"
    rows = [
        chexpert_row(p.format(1), Atelectasis="1.0"),                                   # eligible Atelectasis
        chexpert_row(p.format(2), Atelectasis="1.0", Edema="-1.0"),                     # -1 excludes
        chexpert_row(p.format(3), Cardiomegaly="1.0", No_Finding="1.0"),               # No Finding ignored
        chexpert_row(p.format(4).replace("frontal", "lateral"), frontal="Lateral", Edema="1.0"),  # lateral
        chexpert_row(p.format(5), Edema="1.0", Support_Devices="1.0"),                  # other label = 1
        chexpert_row(p.format(6), Edema="1.0", Pneumonia="0.0", Fracture=""),           # eligible Edema
        chexpert_row(p.format(7), Atelectasis="1.0", Cardiomegaly="1.0"),               # two classes
        chexpert_row(p.format(8), Atelectasis="1.0", Lung_Opacity="0.0"),               # eligible Atelectasis
    ]
    write(base / "train.csv", "\n".join([hdr] + rows) + "\n")
    write(base / "valid.csv", "\n".join([hdr, chexpert_row(
        "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", No_Finding="1.0", Edema="0.0")]) + "\n")
    return root


def test_chexpert_labels_and_ids(tmp_path):
    root = build_chexpert(tmp_path)
    df = chexpert.read(root).set_index("record_id")
    r = df.loc["CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg"]
    assert r["subject_id"] == "patient00002" and r["study"] == "study1" and r["split"] == "train"
    assert r["Atelectasis"] == 1.0 and r["Edema"] == -1.0 and np.isnan(r["Cardiomegaly"])
    v = df.loc["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg"]
    assert v["split"] == "valid" and v["Edema"] == 0.0 and np.isnan(v["Atelectasis"])
    assert r["path"] == str(root / "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg")
    lat = df.loc["CheXpert-v1.0-small/train/patient00004/study1/view1_lateral.jpg"]
    assert not lat["frontal"] and lat["view"] == "LATERAL"


def test_chexpert_5x200_gloria_rule(tmp_path):
    root = build_chexpert(tmp_path)
    df = chexpert.read(root)
    elig = chexpert.eligible_5x200(df)
    got = {rid.split("/")[2]: c for rid, c in zip(df["record_id"], elig) if c}
    assert got == {"patient00001": "Atelectasis", "patient00003": "Cardiomegaly", "patient00006": "Edema",
                   "patient00008": "Atelectasis"}
    q = QualityLog()
    s = chexpert.build_5x200(df, per_class=1, seed=0, quality=q)
    assert sorted(s["label"]) == ["Atelectasis", "Cardiomegaly", "Edema"] and (s["split"] == "test").all()
    assert q.count("chexpert_5x200", "sample") == 2            # Consolidation, Pleural Effusion: 0 of 1
    assert s["record_id"].tolist() == chexpert.build_5x200(df, per_class=1, seed=0)["record_id"].tolist()
    two = chexpert.build_5x200(df, per_class=2, seed=0)
    assert (two["label"] == "Atelectasis").sum() == 2


def test_chexpert_user_5x200_file(tmp_path):
    root = build_chexpert(tmp_path)
    write(root / "chexpert_5x200.csv", """
        Path,Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion,Report Impression
        CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,1.0,0.0,0.0,0.0,0.0,atelectasis.
        CheXpert-v1.0-small/train/patient00006/study1/view1_frontal.jpg,0.0,0.0,0.0,1.0,0.0,edema.
        """)
    df = chexpert.read_5x200(root)
    assert df["label"].tolist() == ["Atelectasis", "Edema"] and df["target"].tolist() == [0, 3]
    assert df["report"].tolist() == ["atelectasis.", "edema."]


# ------------------------------------------------------------------------------------------ COVID / RSNA
def test_covid_folders_with_space_and_split(tmp_path):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        (root / cls / "images").mkdir(parents=True)
        (root / cls / "masks").mkdir()
        for i in range(1, 11):
            (root / cls / "images" / f"{cls}-{i}.png").write_bytes(b"\x89PNG")
    (root / "Viral Pneumonia" / "images" / "Thumbs.db").write_bytes(b"x")
    q = QualityLog()
    df = covid.read(root, q, seed=1)
    vp = df[df["label"] == "Viral Pneumonia"]
    assert len(df) == 40 and len(vp) == 10 and vp["path"].iloc[0].endswith("Viral Pneumonia/images/Viral Pneumonia-1.png")
    assert (vp["target"] == 3).all() and q.count("covid", "files") == 1
    assert df.groupby("label")["split"].apply(lambda s: (s == "test").sum()).tolist() == [2, 2, 2, 2]
    assert df["split"].tolist() == covid.read(root, seed=1)["split"].tolist()
    assert df["split"].tolist() != covid.read(root, seed=2)["split"].tolist()
    binary = load_manifest("covid", {"covid_root": str(root), "seed": 0})
    assert binary["label"].tolist().count("COVID") == 10 and set(binary["target"]) == {0, 1}
    assert len(binary) == 20
    with pytest.raises(DataError, match=r"Lung_Opacity.*class folder"):
        import shutil
        shutil.rmtree(root / "Lung_Opacity")
        covid.read(root)


def build_rsna(root: Path, extra: str = "") -> Path:
    write(root / "stage_2_train_labels.csv", """
        patientId,x,y,width,height,Target
        0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0
        00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1
        00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1
        00704310-78a8-4b38-8475-49f4573b2dbb,323.0,577.0,160.0,104.0,1
        """ + extra)
    write(root / "stage_2_detailed_class_info.csv", """
        patientId,class
        0004cfab-14fd-4e49-80ba-63a80b6bddd6,No Lung Opacity / Not Normal
        00436515-870c-4b36-a041-de91049b9ab4,Lung Opacity
        00436515-870c-4b36-a041-de91049b9ab4,Lung Opacity
        00704310-78a8-4b38-8475-49f4573b2dbb,Normal
        """)
    return root


def test_rsna_multibox_aggregation(tmp_path):
    root = build_rsna(tmp_path)
    q = QualityLog()
    df = rsna.read(root, q).set_index("record_id")
    a = df.loc["00436515-870c-4b36-a041-de91049b9ab4"]
    assert a["target"] == 1 and a["n_boxes"] == 2 and a["label"] == "Pneumonia"
    assert a["boxes"] == [(264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)]
    n = df.loc["0004cfab-14fd-4e49-80ba-63a80b6bddd6"]
    assert n["target"] == 0 and n["n_boxes"] == 0 and n["boxes"] == [] and n["label"] == "Normal"
    assert n["detailed_class"] == "No Lung Opacity / Not Normal"
    assert n["path"] == str(root / "stage_2_train_images/0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm")
    assert q.count("rsna", "labels") == 1                        # 00704310: box but class Normal
    assert len(df) == 3 and set(df["split"]) <= {"train", "valid", "test"}


def test_rsna_conflicting_target(tmp_path):
    root = build_rsna(tmp_path, extra="00704310-78a8-4b38-8475-49f4573b2dbb,,,,,0\n")
    with pytest.raises(DataError) as e:
        rsna.read(root)
    assert "stage_2_train_labels.csv" in str(e.value) and "00704310" in str(e.value) and "conflicting" in str(e.value)


# --------------------------------------------------------------------------------------------------- Open-I
def openi_xml(uid, findings=None, impression=None, images=("CXR{u}_IM-0001-1001", "CXR{u}_IM-0001-2001")):
    secs = "".join(f'<AbstractText Label="{lab}">{txt}</AbstractText>' for lab, txt in
                   (("COMPARISON", "None."), ("FINDINGS", findings), ("IMPRESSION", impression)) if txt is not None)
    imgs = "".join(f'<parentImage id="{i.format(u=uid)}"><caption>x</caption></parentImage>' for i in images)
    return (f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="CXR{uid}"/><MedlineCitation><Article>'
            f"<Abstract>{secs}</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>{imgs}"
            f"</eCitation>")


def test_openi_xml_sections_counted(tmp_path):
    d = tmp_path / "openi" / "ecgen-radiology"
    d.mkdir(parents=True)
    (d / "1.xml").write_text(openi_xml(1, "Heart normal.", "No acute disease."))
    (d / "2.xml").write_text(openi_xml(2, None, "Clear lungs."))             # no FINDINGS
    (d / "3.xml").write_text(openi_xml(3, "", ""))                         # neither (empty tags)
    (d / "10.xml").write_text(openi_xml(10, "Normal.", "Normal.", images=()))  # no image
    q = QualityLog()
    df = openi.read(tmp_path / "openi", q)
    assert df["record_id"].tolist() == ["CXR1_IM-0001-1001", "CXR1_IM-0001-2001", "CXR2_IM-0001-1001",
                                        "CXR2_IM-0001-2001"]
    assert df["text"].iloc[0] == "Heart normal. No acute disease." and df["text"].iloc[2] == "Clear lungs."
    assert df["path"].iloc[0] == str(tmp_path / "openi" / "images" / "CXR1_IM-0001-1001.png")
    assert (df["split"] == "test").all() and df["subject_id"].iloc[0] == "CXR1"
    assert q.count("openi", "text", "report has no FINDINGS (text = impression)") == 1
    assert q.count("openi", "text", "report has neither FINDINGS nor IMPRESSION (dropped)") == 1
    assert q.count("openi", "images") == 1
    rep = openi.read(tmp_path / "openi", per="report")
    assert rep["record_id"].tolist() == ["CXR1", "CXR2", "CXR10"] and rep["path"].iloc[2] == ""


def test_openi_bad_xml(tmp_path):
    d = tmp_path / "ecgen-radiology"
    d.mkdir()
    (d / "1.xml").write_text(openi_xml(1, "a", "b")[:-5])
    with pytest.raises(DataError, match=r"1.xml.*not well-formed XML"):
        openi.read(tmp_path)
    (d / "1.xml").write_bytes(openi_xml(1, "caf\xe9", "b").encode("latin-1"))   # stray 0xE9 under a UTF-8 declaration
    q = QualityLog()
    df = openi.read(tmp_path, q, per="report")
    assert df["findings"].tolist() == ["caf\u00e9"] and df["text"].tolist() == ["caf\u00e9 b"]
    assert q.count("openi", "text", "not valid UTF-8: stray bytes read as latin-1 (kept)") == 1
    (d / "1.xml").write_bytes(openi_xml(1, "caf\xe9", "b").encode("latin-1")[:-5])   # and truncated: still an error
    with pytest.raises(DataError, match=r"1.xml.*not well-formed XML"):
        openi.read(tmp_path)


def test_openi_kaggle_frontal_filter(tmp_path):
    root = tmp_path / "iu"
    write(root / "indiana_reports.csv", """
        uid,MeSH,Problems,image,indication,comparison,findings,impression
        1,normal,normal,Xray Chest PA and Lateral,Positive TB test,None.,Heart normal.,Normal chest x-XXXX.
        2,Cardiomegaly/borderline,Cardiomegaly,x,y,None.,,No acute pulmonary findings.
        """)
    write(root / "indiana_projections.csv", """
        uid,filename,projection
        1,1_IM-0001-4001.dcm.png,Frontal
        1,1_IM-0001-3001.dcm.png,Lateral
        2,2_IM-0652-1001.dcm.png,Frontal
        """)
    q = QualityLog()
    df = openi.read(root, q)
    assert df["record_id"].tolist() == ["1_IM-0001-4001.dcm.png", "2_IM-0652-1001.dcm.png"]
    assert (df["projection"] == "Frontal").all() and df["subject_id"].tolist() == ["1", "2"]
    assert df["path"].iloc[0] == str(root / "images/images_normalized/1_IM-0001-4001.dcm.png")
    assert q.count("openi", "projection") == 1 and q.count("openi", "text") == 1


# ------------------------------------------------------------------------------------------------- MIMIC-IV
def build_mimic_iv(root: Path, extra_adm: str = "") -> Path:
    write(root / "hosp" / "admissions.csv", """
        subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admission_location,discharge_location,insurance,language,marital_status,ethnicity,edregtime,edouttime,hospital_expire_flag
        10000032,22595853,2180-05-06 22:23:00,2180-05-07 17:15:00,,URGENT,TRANSFER FROM HOSPITAL,HOME,Other,ENGLISH,WIDOWED,WHITE,2180-05-06 19:17:00,2180-05-06 23:30:00,0
        10000032,29079034,2180-07-23 12:35:00,2180-07-25 17:55:00,2180-07-25 17:55:00,EW EMER.,EMERGENCY ROOM,DIED,Medicaid,ENGLISH,WIDOWED,WHITE,2180-07-23 05:54:00,2180-07-23 14:00:00,1
        """ + extra_adm)
    write(root / "hosp" / "patients.csv.gz", """
        subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod
        10000032,F,52,2180,2014 - 2016,2180-09-09
        """, gz=True)
    write(root / "hosp" / "diagnoses_icd.csv.gz", """
        subject_id,hadm_id,seq_num,icd_code,icd_version
        10000032,22595853,1,5723,9
        10000032,22595853,2,V1582,9
        10000032,29079034,1,0389,9
        """, gz=True)
    write(root / "hosp" / "prescriptions.csv.gz", """
        subject_id,hadm_id,pharmacy_id,poe_id,poe_seq,order_provider_id,starttime,stoptime,drug_type,drug,formulary_drug_cd,gsn,ndc,prod_strength,dose_val_rx,dose_unit_rx,form_val_disp,form_unit_disp,doses_per_24_hrs,route
        10000032,22595853,12775705,10000032-55,55,P85UQ1,2180-05-08 08:00:00,2180-05-07 22:00:00,MAIN,Furosemide,FURO40,008209,00079007320,40mg Tablet,1-2,mg,1,TAB,1,PO/NG
        """, gz=True)
    return root


def test_mimic_iv_version_drift_and_dtypes(tmp_path):
    root = build_mimic_iv(tmp_path / "mimiciv")
    with pytest.warns(UserWarning, match="discharge"):
        t = mimic_iv.read_tables(root, tables=("admissions", "patients", "diagnoses_icd", "prescriptions",
                                               "discharge"))
    a = t["admissions"]
    assert "race" in a and "admit_provider_id" not in a and a["race"].iloc[0] == "WHITE"
    assert a["deathtime"].isna().iloc[0] and a["deathtime"].iloc[1] == pd.Timestamp("2180-07-25 17:55:00")
    assert str(a["admittime"].dtype) == "datetime64[ns]" and a["hadm_id"].dtype == "Int64"
    assert t["patients"]["dod"].iloc[0] == pd.Timestamp("2180-09-09")
    assert t["diagnoses_icd"]["icd_code"].tolist() == ["5723", "V1582", "0389"]
    p = t["prescriptions"]
    assert p["ndc"].iloc[0] == "00079007320" and p["gsn"].iloc[0] == "008209" and p["dose_val_rx"].iloc[0] == "1-2"
    assert "form_rx" not in p
    assert len(t["discharge"]) == 0 and "text" in t["discharge"]


def test_mimic_iv_bad_inputs(tmp_path):
    root = build_mimic_iv(tmp_path / "a", extra_adm="10000032,22595853,2180-05-06 22:23:00,,,URGENT,X,HOME,,,,,,,0\n")
    with pytest.raises(DataError, match=r"admissions.csv.*duplicate hadm_id"):
        mimic_iv.read_tables(root, tables=("admissions",))
    root = build_mimic_iv(tmp_path / "b", extra_adm="10000033,22595854,06/05/2180 22:23,,,URGENT,X,HOME,,,,,,,0\n")
    with pytest.raises(DataError, match=r"admissions.csv.*'admittime'.*06/05/2180"):
        mimic_iv.read_tables(root, tables=("admissions",))
    with pytest.raises(DataError, match=r"icu/icustays.csv\[.gz\].*not found"):
        mimic_iv.read_tables(root, tables=("icustays",))
    with pytest.raises(DataError, match=r"nonexistent.*MIMIC-IV-Note root not found"):
        mimic_iv.read_tables(build_mimic_iv(tmp_path / "c"), note_root=tmp_path / "nonexistent",
                             tables=("discharge",))


def test_mimic_iv_discharge_notes(tmp_path):
    root = build_mimic_iv(tmp_path / "m")
    write(tmp_path / "note" / "note" / "discharge.csv.gz", '''
        note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text
        10000032-DS-21,10000032,22595853,DS,21,2180-05-07 00:00:00,2180-05-09 15:26:00,"Name: ___
        Chief Complaint: abdominal pain, fever"
        ''', gz=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = mimic_iv.read_tables(root, note_root=tmp_path / "note", tables=("discharge",))
    d = t["discharge"]
    assert d["note_id"].tolist() == ["10000032-DS-21"] and "\n" in d["text"].iloc[0]
    assert d["storetime"].iloc[0] == pd.Timestamp("2180-05-09 15:26:00")


# -------------------------------------------------------------------------------------------- registry
def test_registry_and_load_manifest(tmp_path):
    assert {"mimic_cxr", "mimic_ecg", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"} <= set(READERS)
    root = build_ptbxl(tmp_path / "ptb")
    df = load_manifest("ptbxl", {"ptbxl_root": str(root), "seed": 0})
    assert len(df) == 3
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_manifest("mimic-cxr", {})
    with pytest.raises(ConfigError, match="load_tables"):
        load_manifest("mimic_iv", {})
    rs = load_manifest("rsna", {"rsna_root": str(build_rsna(tmp_path / "rsna")), "seed": 3})
    assert len(rs) == 3
