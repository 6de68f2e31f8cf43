"""PTB-XL 1.0.x: ``ptbxl_database.csv`` + ``scp_statements.csv`` + ``records100/`` and ``records500/``.

``read(root, quality=None, check_files=True, expected_fs=100.0, expected_n_samples=1000)`` -> one row per ECG:

| column | meaning |
|---|---|
| dataset, record_id (str ecg_id), subject_id (patient_id 15709.0 -> '15709'), path (100 Hz record, absolute, no extension), time (recording_date), split | common columns; split: strat_fold 1-8 train, 9 valid, 10 test (PTB-XL benchmark) |
| ecg_id (int), path_hr (500 Hz record), fs, n_samples (of ``path``, from its header), signal_format ('wfdb') | record |
| age (float; 300 = over 89, kept as written), sex ('Male'/'Female'; CSV 0 = male, 1 = female) | demographics |
| report (free text, mostly German), scp_codes (dict code -> likelihood) | statements |
| labels | sorted list of diagnostic superclasses (NORM, MI, STTC, CD, HYP) of the scp_codes keys that are diagnostic statements; likelihood ignored (0.0 counts) |
| strat_fold (int), validated_by_human (bool) | |

Quality: records with no superclass are KEPT with ``labels == []`` and counted (stage ``labels``; the
superclass task drops them later); with ``check_files`` a record whose 100 Hz or 500 Hz header is missing is
excluded and counted (stage ``files``). A malformed ``scp_codes`` string is a DataError naming the ecg_id.

Sampling rate and length come from each 100 Hz header (``check_files``), not from the release notes: a
header that disagrees with ``expected_fs`` / ``expected_n_samples`` (a resampled or cropped copy) is a
DataError naming the file and ecg_id; pass None to accept any (preprocessing resamples and pads by the
header). Without ``check_files`` no file is opened and both columns hold the expected values, unverified.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import check_unique, read_table
from ..quality import QualityLog
from ._common import finish_manifest, id_str, quality_or_new, require_dir, require_file
from .ecgio import parse_header

DATASET = "ptbxl"
REQUIRED = ["ecg_id", "patient_id", "age", "sex", "recording_date", "report", "scp_codes", "strat_fold",
            "filename_lr", "filename_hr"]
OPTIONAL = ["validated_by_human", "height", "weight", "device", "site", "heart_axis"]


def fold_split(fold) -> str | None:
    """Benchmark split of a PTB-XL strat_fold: 1-8 train, 9 valid, 10 test."""
    if pd.isna(fold):
        return None
    f = int(fold)
    return "train" if 1 <= f <= 8 else "valid" if f == 9 else "test" if f == 10 else None


def read_statements(path) -> pd.DataFrame:
    """``scp_statements.csv`` indexed by SCP code (the unnamed first column)."""
    path = require_file(path, "PTB-XL scp_statements.csv")
    try:
        agg = pd.read_csv(path, index_col=0)
    except Exception as e:
        raise DataError(path, f"cannot parse CSV ({type(e).__name__}: {e})") from e
    missing = [c for c in ("diagnostic", "diagnostic_class") if c not in agg.columns]
    if missing:
        raise DataError(path, f"missing required column(s) {missing}; found {list(agg.columns)}")
    agg.index = agg.index.astype(str)
    return agg


def superclass_map(statements: pd.DataFrame) -> dict[str, str]:
    diag = statements[pd.to_numeric(statements["diagnostic"], errors="coerce") == 1]
    return {k: str(v) for k, v in diag["diagnostic_class"].items() if pd.notna(v)}


def _parse_codes(s, path, ecg_id) -> dict:
    try:
        d = ast.literal_eval(s) if isinstance(s, str) else {}
    except (ValueError, SyntaxError) as e:
        raise DataError(path, f"scp_codes is not a Python dict literal: {s!r}", record=ecg_id) from e
    if not isinstance(d, dict):
        raise DataError(path, f"scp_codes is not a dict: {s!r}", record=ecg_id)
    return {str(k): float(v) for k, v in d.items()}


def header_shape(path, ecg_id, expected_fs: float | None = 100.0,
                 expected_n_samples: int | None = 1000) -> tuple[float, int | None]:
    """(fs, n_samples) from a record's header; a DataError naming file and ecg_id when they differ from
    what the caller expects, so a resampled or cropped copy cannot pass as 100 Hz x 1000 samples."""
    try:
        h = parse_header(path)
    except DataError as e:
        raise DataError(e.file, e.problem, record=ecg_id) from e
    if expected_fs is not None and h.fs != float(expected_fs):
        raise DataError(h.path, f"header sampling rate {h.fs:g} Hz, expected {float(expected_fs):g} Hz",
                        record=ecg_id)
    if expected_n_samples is not None and h.sig_len != int(expected_n_samples):
        raise DataError(h.path, f"header signal length {h.sig_len} samples, expected {int(expected_n_samples)}",
                        record=ecg_id)
    return h.fs, h.sig_len


def read(root, quality: QualityLog | None = None, check_files: bool = True, expected_fs: float | None = 100.0,
         expected_n_samples: int | None = 1000) -> pd.DataFrame:
    root = require_dir(root, "PTB-XL")
    q = quality_or_new(quality)
    db_path = require_file(root / "ptbxl_database.csv", "PTB-XL ptbxl_database.csv")
    db = read_table(db_path, REQUIRED, OPTIONAL, dtype={"report": str, "scp_codes": str,
                                                        "filename_lr": str, "filename_hr": str})
    check_unique(db, "ecg_id", db_path, what="ecg_id")
    sc = superclass_map(read_statements(root / "scp_statements.csv"))
    q.seen(DATASET, "files", len(db))
    df = pd.DataFrame({"ecg_id": db["ecg_id"].astype(int)})
    df["record_id"] = df["ecg_id"].astype(str)
    df["subject_id"] = id_str(db["patient_id"]).values
    df["path"] = [str(root / f) for f in db["filename_lr"]]
    df["path_hr"] = [str(root / f) for f in db["filename_hr"]]
    t = pd.to_datetime(db["recording_date"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    retry = t.isna() & db["recording_date"].notna()
    if retry.any():  # re-saved copies use m/d/yy H:MM
        t[retry] = pd.to_datetime(db.loc[retry, "recording_date"], format="mixed", errors="coerce")
    df["time"] = t.astype("datetime64[ns]").values
    df["split"] = db["strat_fold"].map(fold_split).values
    df["fs"] = np.nan if expected_fs is None else float(expected_fs)
    df["n_samples"] = pd.array([expected_n_samples] * len(df), dtype="Int64")
    df["signal_format"] = "wfdb"
    df["age"] = pd.to_numeric(db["age"], errors="coerce").astype(float).values
    df["sex"] = pd.to_numeric(db["sex"], errors="coerce").map({0: "Male", 1: "Female"}).astype(object).values
    df["report"] = db["report"].fillna("").astype(str).values
    df["scp_codes"] = [_parse_codes(s, db_path, e) for s, e in zip(db["scp_codes"], df["ecg_id"])]
    df["labels"] = [sorted({sc[k] for k in d if k in sc}) for d in df["scp_codes"]]
    df["strat_fold"] = pd.to_numeric(db["strat_fold"], errors="coerce").astype("Int64").values
    if "validated_by_human" in db:
        df["validated_by_human"] = db["validated_by_human"].astype(str).str.lower().eq("true").values
    if check_files:
        ok = np.array([Path(a + ".hea").is_file() and Path(b + ".hea").is_file()
                       for a, b in zip(df["path"], df["path_hr"])], dtype=bool)
        q.exclude(DATASET, "files", "record files missing", records=df.loc[~ok, "record_id"])
        df = df[ok].copy()
        shapes = [header_shape(p, e, expected_fs, expected_n_samples) for p, e in zip(df["path"], df["ecg_id"])]
        df["fs"] = pd.array([fs for fs, _ in shapes], dtype=float)
        df["n_samples"] = pd.array([n for _, n in shapes], dtype="Int64")
    nolab = df["labels"].map(len) == 0
    q.seen(DATASET, "labels", len(df))
    q.flag(DATASET, "labels", "no diagnostic superclass (kept, labels=[])", records=df.loc[nolab, "record_id"])
    return finish_manifest(df, DATASET)
