"""ICBEB 2018 / CPSC2018 in any of its three distributions (docs/DATASETS.md, ICBEB).

``read(root, quality=None, form="auto", seed=0, keep_unlabelled=False, record_prefix="A", strict=False,
test_fraction=0.2)``

Forms (``form="auto"`` picks the first that matches):

* ``benchmark``: ``icbeb_database.csv`` + ``records500/{ecg_id}`` (PTB-XL benchmark conversion). Labels =
  scp_codes keys among ``constants.ICBEB_CLASSES``; sex 1 = Male (opposite of PTB-XL); path = 500 Hz WFDB
  record, ``path_lr`` = ``records100/{ecg_id}`` when present. signal_format ``wfdb``.
* ``challenge``: PhysioNet/CinC Challenge 2020/2021 folders (any depth) of ``A0001.hea`` + ``.mat``, read by
  :func:`medbind_lib.datasets.challenge.read` with 12 leads and 500 Hz required; only records whose name
  starts with ``record_prefix`` ('A' = CPSC2018; 'Q' = CPSC-extra, other sources) are kept, the rest counted.
  Labels = ``#Dx`` SNOMED codes mapped by ``constants.ICBEB_SNOMED`` (other codes ignored).
  signal_format ``challenge_mat``.
* ``original``: ``REFERENCE.csv`` (Recording, First_label, Second_label, Third_label; ints 1-9) +
  ``TrainingSet*/A0001.mat`` (MATLAB struct ECG{sex, age, data}); path = the ``.mat`` FILE (with extension),
  signal_format ``cpsc_mat``. Without REFERENCE.csv the labels are unknown: rows are kept with ``labels=[]``,
  ``labelled=False`` (counted) whatever ``keep_unlabelled`` says.

Columns: common + ``labels`` (sorted list of ICBEB class codes NORM, AFIB, 1AVB, CLBBB, CRBBB, PAC, VPC,
STD_, STE_), ``labelled``, ``signal_format``, ``fs`` (500), ``n_samples``, ``age``, ``sex`` ('Male'/'Female'),
``strat_fold`` (benchmark only), ``form``. Records whose Dx is blank or has none of the 9 classes are
excluded and counted (stage ``labels``), or kept with ``labels=[]`` when ``keep_unlabelled``.
Split: strat_fold 1-8 train / 9-10 test where folds exist, else a seeded patient-level split with
``test_fraction`` test (Challenge/original forms: one patient per record). No valid split (paper: "-").
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import ICBEB_CLASSES, ICBEB_REFERENCE_CODES, ICBEB_SNOMED, LEADS
from ..errors import DataError
from ..io import check_unique, read_table
from ..quality import QualityLog
from . import challenge
from ._common import finish_manifest, id_str, quality_or_new, require_dir, seeded_split
from .ecgio import read_cpsc_mat

DATASET = "icbeb"
FORMS = ("benchmark", "challenge", "original")


def detect_form(root: Path) -> str:
    if (root / "icbeb_database.csv").is_file():
        return "benchmark"
    if (root / "REFERENCE.csv").is_file() or any(root.glob("TrainingSet*")):
        return "original"
    if next(root.rglob("*.hea"), None) is not None:
        return "challenge"
    if next(root.rglob("*.mat"), None) is not None:
        return "original"
    raise DataError(root, "no ICBEB data found: expected icbeb_database.csv (benchmark form), *.hea + *.mat "
                          "(Challenge form) or REFERENCE.csv + TrainingSet*/A*.mat (original form)")


def _benchmark(root: Path, q: QualityLog) -> pd.DataFrame:
    path = root / "icbeb_database.csv"
    db = read_table(path, ["ecg_id", "scp_codes", "strat_fold"], ["filename", "age", "sex", "patient_id"],
                    dtype={"scp_codes": str, "filename": str})
    check_unique(db, "ecg_id", path, what="ecg_id")
    labels = []
    for e, s in zip(db["ecg_id"], db["scp_codes"]):
        try:
            d = ast.literal_eval(s) if isinstance(s, str) else {}
            assert isinstance(d, dict)
        except (ValueError, SyntaxError, AssertionError):
            raise DataError(path, f"scp_codes is not a dict literal: {s!r}", record=e) from None
        labels.append(sorted(k for k in d if k in ICBEB_CLASSES))
    df = pd.DataFrame({"record_id": db["ecg_id"].astype(int).astype(str)})
    df["subject_id"] = id_str(db["patient_id"]).values if "patient_id" in db else df["record_id"]
    df["path"] = [str(root / "records500" / r) for r in df["record_id"]]
    lr = [root / "records100" / r for r in df["record_id"]]
    df["path_lr"] = [str(p) if p.with_name(p.name + ".hea").is_file() else None for p in lr]
    df["labels"] = labels
    df["signal_format"] = "wfdb"
    df["fs"] = 500.0
    df["age"] = pd.to_numeric(db.get("age"), errors="coerce").astype(float).values if "age" in db else np.nan
    df["sex"] = pd.to_numeric(db["sex"], errors="coerce").map({1: "Male", 0: "Female"}).astype(object).values \
        if "sex" in db else None
    df["strat_fold"] = pd.to_numeric(db["strat_fold"], errors="coerce").astype("Int64").values
    if "filename" in db:
        df["filename"] = db["filename"].astype(str).values
    return df


def _challenge(root: Path, q: QualityLog, record_prefix: str | None, strict: bool) -> pd.DataFrame:
    m = challenge.read(root, q, strict=strict, expected_leads=LEADS, expected_fs=500, dataset=DATASET)
    if record_prefix:
        other = ~m["record_id"].str.startswith(record_prefix)
        q.exclude(DATASET, "source", f"record name does not start with {record_prefix!r} (not CPSC2018)",
                  records=m.loc[other, "record_id"])
        m = m[~other]
    m = m.drop(columns=["dataset", "time", "split"]).copy()
    m["labels"] = [sorted({ICBEB_SNOMED[c] for c in dx if c in ICBEB_SNOMED}) for dx in m["dx"]]
    return m


def _original(root: Path, q: QualityLog) -> pd.DataFrame:
    mats = sorted(p for p in root.rglob("*.mat"))
    ref_path = root / "REFERENCE.csv"
    ref = None
    if ref_path.is_file():
        ref = read_table(ref_path, ["Recording", "First_label"], ["Second_label", "Third_label"],
                         dtype={"Recording": str})
        check_unique(ref, "Recording", ref_path, what="Recording")
        ref = ref.set_index("Recording")
    rows = []
    for p in mats:
        ecg = read_cpsc_mat(p)
        rec = p.stem
        labels, labelled = [], ref is not None and rec in ref.index
        if labelled:
            for c in ("First_label", "Second_label", "Third_label"):
                v = ref.loc[rec].get(c)
                if pd.notna(v):
                    try:
                        labels.append(ICBEB_REFERENCE_CODES[int(float(v))])
                    except (KeyError, ValueError):
                        raise DataError(ref_path, f"{c} {v!r} is not a class code 1-9", record=rec) from None
        rows.append(dict(record_id=rec, subject_id=rec, path=str(p), labels=sorted(set(labels)),
                         labelled=labelled, signal_format="cpsc_mat", fs=500.0, n_samples=ecg["data"].shape[1],
                         age=ecg["age"], sex=ecg["sex"] if ecg["sex"] in ("Male", "Female") else None,
                         source=p.parent.name))
    df = pd.DataFrame(rows, columns=["record_id", "subject_id", "path", "labels", "labelled", "signal_format",
                                     "fs", "n_samples", "age", "sex", "source"])
    check_unique(df, "record_id", root, what="record name")
    if ref is None:
        q.flag(DATASET, "labels", "no REFERENCE.csv: labels unknown (kept, labels=[])", records=df["record_id"])
    else:
        q.flag(DATASET, "labels", "record not in REFERENCE.csv (kept, labels=[])",
                  records=df.loc[~df["labelled"], "record_id"])
    return df


def read(root, quality: QualityLog | None = None, form: str = "auto", seed: int = 0,
         keep_unlabelled: bool = False, record_prefix: str | None = "A", strict: bool = False,
         test_fraction: float = 0.2) -> pd.DataFrame:
    root = require_dir(root, "ICBEB/CPSC2018")
    q = quality_or_new(quality)
    form = detect_form(root) if form == "auto" else form
    if form not in FORMS:
        raise ValueError(f"form must be 'auto' or one of {FORMS}, got {form!r}")
    if form == "benchmark":
        df = _benchmark(root, q)
    elif form == "challenge":
        df = _challenge(root, q, record_prefix, strict)
    else:
        df = _original(root, q)
    q.seen(DATASET, "labels", len(df))
    if form != "original":
        df["labelled"] = df["labels"].map(len) > 0
        nolab = ~df["labelled"]
        if keep_unlabelled:
            q.flag(DATASET, "labels", "no ICBEB class in labels (kept, labels=[])", records=df.loc[nolab, "record_id"])
        else:
            q.exclude(DATASET, "labels", "no ICBEB class in labels (excluded)", records=df.loc[nolab, "record_id"])
            df = df[~nolab]
    df = df.reset_index(drop=True)
    df["form"] = form
    df["time"] = pd.NaT
    if "strat_fold" in df and df["strat_fold"].notna().all() and len(df):
        df["split"] = np.where(df["strat_fold"].astype(int) <= 8, "train", "test")
    else:
        df["split"] = seeded_split(df["subject_id"], seed, [1 - test_fraction, test_fraction],
                                   ["train", "test"]).values
    return finish_manifest(df, DATASET)
