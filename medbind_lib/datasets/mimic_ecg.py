"""MIMIC-IV-ECG 1.0 (Diagnostic Electrocardiogram Matched Subset).

``read(root, quality=None, measurements=True, note_links=True, check_files=False, read_headers=False)``
joins ``record_list.csv`` with ``machine_measurements.csv`` on (subject_id, study_id) and, when present,
``waveform_note_links.csv`` on study_id. One row per ECG:

| column | meaning |
|---|---|
| dataset, record_id (= str(study_id)), subject_id, path (root / record_list.path, no extension), time (ecg_time), split (NA: MIMIC splits are patient-level, made by linking) | common |
| study_id (int), file_name (str), signal_format ('wfdb') | record |
| machine_reports | list of the non-empty report_0..report_17 strings, in column order, gaps removed ([] when the record has no measurements row: counted, stage ``measurements``) |
| has_measurements | whether a machine_measurements row exists |
| cart_id, bandwidth, filtering, rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis | measurements; the 29999 "not measured" sentinel becomes NA (Int64) |
| note_id (str or NA), note_seq (Int64), note_charttime | from waveform_note_links (first link by note_seq; extra links counted) |
| fs, n_samples | from the WFDB header when ``read_headers`` (else NA); the release is 500 Hz x 5000 |

``check_files`` excludes (and counts, stage ``files``) records whose ``.hea`` is missing.
``read_record_list(path)`` parses a record_list file alone (e.g. the demo's ``record_list.head.csv``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import check_unique, find_table, read_table
from ..quality import QualityLog
from ._common import finish_manifest, id_str, quality_or_new, require_dir, to_datetime_ns
from .ecgio import parse_header

DATASET = "mimic_ecg"
REPORT_COLS = [f"report_{i}" for i in range(18)]
MEASURE_COLS = ["rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"]
SENTINEL = 29999


def read_record_list(path, quality: QualityLog | None = None) -> pd.DataFrame:
    """record_list.csv -> DataFrame(subject_id str, study_id int, file_name str, ecg_time datetime64, path str)."""
    rl = read_table(path, ["subject_id", "study_id", "ecg_time", "path"], ["file_name"],
                    dtype={"path": str, "file_name": str})
    for c in ("subject_id", "study_id", "path"):
        if rl[c].isna().any():
            raise DataError(path, f"empty {c} in {int(rl[c].isna().sum())} row(s)")
    check_unique(rl, "study_id", path, what="study_id")
    out = pd.DataFrame({"subject_id": id_str(rl["subject_id"]).values,
                        "study_id": pd.to_numeric(rl["study_id"]).astype(np.int64).values,
                        "ecg_time": to_datetime_ns(rl["ecg_time"]).values,
                        "relpath": rl["path"].astype(str).values})
    out["file_name"] = rl["file_name"].astype(str).values if "file_name" in rl else out["study_id"].astype(str)
    bad = out["ecg_time"].isna() & rl["ecg_time"].notna().values
    if bad.any():
        raise DataError(path, f"unparseable ecg_time, e.g. {rl.loc[bad.values, 'ecg_time'].head(3).tolist()}",
                        record=out.loc[bad, "study_id"].iloc[0])
    return out


def reports_list(mm: pd.DataFrame) -> list[list[str]]:
    cols = [c for c in REPORT_COLS if c in mm.columns]
    vals = mm[cols].astype(object).where(mm[cols].notna(), None).values.tolist()
    return [[str(v).strip() for v in row if v is not None and str(v).strip()] for row in vals]


def read(root, quality: QualityLog | None = None, measurements: bool = True, note_links: bool = True,
         check_files: bool = False, read_headers: bool = False) -> pd.DataFrame:
    root = require_dir(root, "MIMIC-IV-ECG")
    q = quality_or_new(quality)
    rl = read_record_list(find_table(root, "record_list"), q)
    q.seen(DATASET, "read", len(rl))
    df = pd.DataFrame({"record_id": rl["study_id"].astype(str), "subject_id": rl["subject_id"],
                       "study_id": rl["study_id"], "file_name": rl["file_name"],
                       "path": [str(root / p) for p in rl["relpath"]], "time": rl["ecg_time"],
                       "split": None, "signal_format": "wfdb"})

    if measurements:
        mm_path = find_table(root, "machine_measurements")
        mm = read_table(mm_path, ["subject_id", "study_id"],
                        ["cart_id", "ecg_time", *REPORT_COLS, "bandwidth", "filtering", *MEASURE_COLS],
                        dtype={c: str for c in REPORT_COLS + ["bandwidth", "filtering"]})
        check_unique(mm, ["subject_id", "study_id"], mm_path, what="ECG")
        mm.index = pd.Index([f"{a}/{b}" for a, b in zip(id_str(mm["subject_id"]), id_str(mm["study_id"]))])
        key = df["subject_id"] + "/" + df["record_id"]
        has = key.isin(mm.index).values
        m = mm.reindex(key.values)
        m.index = df.index
        reps = reports_list(m)
        df["machine_reports"] = [r if h else [] for r, h in zip(reps, has)]
        df["has_measurements"] = has
        if "cart_id" in m:
            df["cart_id"] = id_str(m["cart_id"]).values
        for c in ("bandwidth", "filtering"):
            if c in m:
                df[c] = m[c].astype(object).where(m[c].notna(), None).values
        for c in MEASURE_COLS:
            if c in m:
                v = pd.to_numeric(m[c], errors="coerce")
                df[c] = v.where(v != SENTINEL).round().astype("Int64").values
        q.seen(DATASET, "measurements", len(df))
        q.exclude(DATASET, "measurements", "no machine_measurements row (machine_reports=[])",
                  records=df.loc[~has, "record_id"])
    else:
        df["machine_reports"] = [[] for _ in range(len(df))]
        df["has_measurements"] = False

    df["note_id"], df["note_seq"], df["note_charttime"] = None, pd.array([pd.NA] * len(df), dtype="Int64"), pd.NaT
    links = None
    if note_links:
        try:
            links = find_table(root, "waveform_note_links")
        except DataError:
            links = None
    if links is not None:
        wl = read_table(links, ["study_id", "note_id"], ["subject_id", "note_seq", "charttime", "waveform_path"],
                        dtype={"note_id": str})
        wl = wl[wl["note_id"].notna()].copy()
        wl["_seq"] = pd.to_numeric(wl.get("note_seq", pd.Series(index=wl.index, dtype=float)), errors="coerce")
        wl = wl.sort_values(["study_id", "_seq"], kind="stable")
        extra = wl["study_id"].duplicated()
        q.flag(DATASET, "notes", "extra note link for the same ECG ignored (first by note_seq kept)",
                  records=wl.loc[extra, "study_id"].astype(str))
        wl = wl[~extra]
        wl.index = pd.Index(id_str(wl["study_id"]).astype(str).values)
        hit = df["record_id"].isin(wl.index)
        w = wl.reindex(df["record_id"].values)
        df["note_id"] = w["note_id"].astype(object).where(w["note_id"].notna(), None).values
        df["note_seq"] = w["_seq"].round().astype("Int64").values
        if "charttime" in w:
            df["note_charttime"] = to_datetime_ns(w["charttime"]).values
        q.seen(DATASET, "notes", int(hit.sum()))
    df["note_charttime"] = pd.to_datetime(df["note_charttime"]).astype("datetime64[ns]")

    df["fs"], df["n_samples"] = np.nan, pd.array([pd.NA] * len(df), dtype="Int64")
    if check_files or read_headers:
        ok = np.array([Path(p + ".hea").is_file() for p in df["path"]], dtype=bool)
        if check_files:
            q.seen(DATASET, "files", len(df))
            q.exclude(DATASET, "files", "WFDB header missing", records=df.loc[~ok, "record_id"])
            df = df[ok].copy()
        if read_headers:
            fs, n = [], []
            for p in df["path"]:
                if Path(p + ".hea").is_file():
                    h = parse_header(p)
                    fs.append(h.fs)
                    n.append(h.sig_len)
                else:
                    fs.append(np.nan)
                    n.append(None)
            df["fs"] = np.asarray(fs, dtype=float)
            df["n_samples"] = pd.array(n, dtype="Int64")
    return finish_manifest(df, DATASET)
