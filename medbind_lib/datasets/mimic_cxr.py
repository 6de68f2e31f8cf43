"""MIMIC-CXR-JPG 2.0.0/2.1.0 (+ MIMIC-CXR free-text reports).

``read(root, quality=None, reports_root=None, label_source="chexpert", check_files=False)`` joins
``mimic-cxr-2.0.0-metadata`` (one row per image) with ``-split`` (by dicom_id) and ``-chexpert`` or
``-negbio`` (by subject_id + study_id); ``.csv`` or ``.csv.gz`` are both accepted. One row per image:

| column | meaning |
|---|---|
| dataset, record_id (= dicom_id), subject_id ('10000032'), path (``files/p10/p10000032/s50414267/<dicom_id>.jpg`` under root, absolute), time, split | common; time = StudyDate + zero-padded int(StudyTime) (fractional seconds dropped, MedFuse recipe: 80556.875 -> 08:05:56, 0.187 -> 00:00:00); split from split.csv.gz with ``validate`` -> ``valid`` (NA if the image has no split row) |
| dicom_id, study_id (int), view (ViewPosition, '' when empty), rows, columns (Rows/Columns, Int64) | image |
| report_path | ``files/p10/p10000032/s50414267.txt`` under ``reports_root`` (default: root); not checked |
| the 14 CheXpert labels (``constants.CHEXPERT_LABELS``) | float: 1.0 / 0.0 / -1.0 / NaN (not mentioned); NaN is never filled |
| labelled | False when the study has no row in the label file (labels all NaN; counted in quality) |

``label_source=None`` skips labels (all NaN, labelled False, nothing counted).
Quality: images without a split row (stage ``split``), unlabelled studies (stage ``labels``), images whose
StudyDate/StudyTime cannot be parsed (kept with NaT, stage ``time``) and, with ``check_files``, images whose
JPG is missing (excluded, stage ``files``). Duplicate dicom_id in metadata/split or duplicate study rows in
the label file are DataErrors. ``read_report(path)`` returns a report's text (UTF-8 policy: see there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import CHEXPERT_LABELS, SPLITS
from ..errors import DataError
from ..io import check_unique, find_table, read_table
from ..quality import QualityLog
from ._common import decode_text, finish_manifest, id_str, quality_or_new, require_dir

DATASET = "mimic_cxr"
META_REQUIRED = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]
META_OPTIONAL = ["Rows", "Columns", "PerformedProcedureStepDescription"]
SPLIT_MAP = {"train": "train", "validate": "valid", "valid": "valid", "val": "valid", "test": "test"}
PREFIX = "mimic-cxr-2.0.0-"


def study_datetime(study_date, study_time) -> pd.Series:
    """StudyDate (int YYYYMMDD) + StudyTime (float HHMMSS.fff, no zero padding) -> datetime64[ns].

    Fractional seconds are dropped (``f"{int(float(t)):06}"``); float noise such as 213014.53100000002
    is harmless. Unparseable or out-of-range values give NaT.
    """
    d = pd.to_datetime(id_str(pd.Series(study_date).reset_index(drop=True)), format="%Y%m%d", errors="coerce")
    t = pd.to_numeric(pd.Series(study_time).reset_index(drop=True), errors="coerce")
    ok = t.notna() & (t >= 0) & (t < 240000)
    i = np.floor(t.where(ok, 0)).astype(np.int64)
    hh, mm, ss = i // 10000, (i // 100) % 100, i % 100
    ok &= (hh < 24) & (mm < 60) & (ss < 60)
    sec = (hh * 3600 + mm * 60 + ss).where(ok)
    return (d + pd.to_timedelta(sec, unit="s")).astype("datetime64[ns]")


def image_relpath(subject_id, study_id, dicom_id) -> str:
    sid = str(subject_id)
    return f"files/p{sid[:2]}/p{sid}/s{study_id}/{dicom_id}.jpg"


def report_relpath(subject_id, study_id) -> str:
    sid = str(subject_id)
    return f"files/p{sid[:2]}/p{sid}/s{study_id}.txt"


def read_report(path, quality: QualityLog | None = None, strict: bool = False) -> str:
    """Text of one report file. Missing file: DataError. Not UTF-8: DataError when ``strict``; else the stray
    bytes are read as latin-1 and the file is counted in ``quality`` (stage ``text``, kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "report file not found")
    return decode_text(path.read_bytes(), path, quality, DATASET, strict=strict)


def read(root, quality: QualityLog | None = None, reports_root=None, label_source: str | None = "chexpert",
         check_files: bool = False) -> pd.DataFrame:
    root = require_dir(root, "MIMIC-CXR-JPG")
    reports_root = Path(reports_root) if reports_root is not None else root
    q = quality_or_new(quality)

    meta_path = find_table(root, PREFIX + "metadata")
    meta = read_table(meta_path, META_REQUIRED, META_OPTIONAL,
                      dtype={"dicom_id": str, "ViewPosition": str, "StudyDate": str})
    check_unique(meta, "dicom_id", meta_path, what="dicom_id")
    for c in ("subject_id", "study_id"):
        if meta[c].isna().any():
            bad = meta.loc[meta[c].isna(), "dicom_id"].head(3).tolist()
            raise DataError(meta_path, f"empty {c} for image(s) {bad}")
    q.seen(DATASET, "read", len(meta))

    split_path = find_table(root, PREFIX + "split")
    sp = read_table(split_path, ["dicom_id", "split"], ["study_id", "subject_id"],
                    dtype={"dicom_id": str, "split": str})
    check_unique(sp, "dicom_id", split_path, what="dicom_id")
    unknown = sorted(set(sp["split"].dropna().astype(str)) - set(SPLIT_MAP))
    if unknown:
        raise DataError(split_path, f"unknown split value(s) {unknown}; expected train/validate/test")
    split = meta["dicom_id"].map(dict(zip(sp["dicom_id"], sp["split"].map(SPLIT_MAP))))

    df = pd.DataFrame({
        "record_id": meta["dicom_id"].astype(str),
        "dicom_id": meta["dicom_id"].astype(str),
        "subject_id": id_str(meta["subject_id"]).values,
        "study_id": pd.to_numeric(meta["study_id"]).astype(np.int64).values,
    })
    df["path"] = [str(root / image_relpath(s, st, d)) for s, st, d in
                  zip(df["subject_id"], df["study_id"], df["dicom_id"])]
    df["time"] = study_datetime(meta["StudyDate"], meta["StudyTime"]).values
    df["split"] = split.values
    df["view"] = meta["ViewPosition"].fillna("").astype(str).values
    for src, dst in (("Rows", "rows"), ("Columns", "columns")):
        if src in meta:
            df[dst] = pd.to_numeric(meta[src], errors="coerce").astype("Int64").values
    df["report_path"] = [str(reports_root / report_relpath(s, st)) for s, st in zip(df["subject_id"], df["study_id"])]

    q.exclude(DATASET, "split", "image has no row in split.csv (split NA)", records=df.loc[df["split"].isna(), "record_id"])
    q.exclude(DATASET, "time", "unparseable StudyDate/StudyTime (time NaT)", records=df.loc[df["time"].isna(), "record_id"])

    labels = pd.DataFrame(np.nan, index=df.index, columns=list(CHEXPERT_LABELS))
    labelled = np.zeros(len(df), dtype=bool)
    if label_source is not None:
        if label_source not in ("chexpert", "negbio"):
            raise ValueError(f"label_source must be 'chexpert', 'negbio' or None, got {label_source!r}")
        lab_path = find_table(root, PREFIX + label_source)
        lab = read_table(lab_path, ["subject_id", "study_id", *CHEXPERT_LABELS])
        check_unique(lab, ["subject_id", "study_id"], lab_path, what="study")
        for c in CHEXPERT_LABELS:
            v = pd.to_numeric(lab[c], errors="coerce")
            bad = lab[c].notna() & (v.isna() | ~v.isin([1.0, 0.0, -1.0]))
            if bad.any():
                raise DataError(lab_path, f"label column {c!r} has values other than 1.0/0.0/-1.0/empty, e.g. "
                                          f"{lab.loc[bad, c].head(3).tolist()}", record=lab.loc[bad, 'study_id'].iloc[0])
            lab[c] = v.astype(float)
        lab.index = pd.Index((id_str(lab["subject_id"]) + "/" + id_str(lab["study_id"])).astype(str).values)
        key = df["subject_id"] + "/" + df["study_id"].astype(str)
        labelled = key.isin(lab.index).values
        labels = lab.reindex(key.values)[list(CHEXPERT_LABELS)].astype(float)
        labels.index = df.index
        q.seen(DATASET, "labels", len(df))
        q.flag(DATASET, "labels", f"study has no row in {label_source} file (kept unlabelled)",
                  records=df.loc[~labelled, "record_id"])
    df = pd.concat([df, labels], axis=1)
    df["labelled"] = labelled

    if check_files:
        ok = np.array([Path(p).is_file() for p in df["path"]], dtype=bool)
        q.seen(DATASET, "files", len(df))
        q.exclude(DATASET, "files", "image file missing", records=df.loc[~ok, "record_id"])
        df = df[ok]
    assert set(df["split"].dropna()) <= set(SPLITS)
    return finish_manifest(df, DATASET)
