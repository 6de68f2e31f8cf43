"""Record -> admission: the admission covering each record's time, and per-admission task windows (Table 4).

Kept apart from MIMIC-PAIR and the labels: both functions answer "which stay does this record belong to",
once for the stay itself (:func:`assign_admissions`) and once for the first hours of it (:func:`task_links`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import HOUR, merge_by_subject, prepare_admissions, record_frame


# --------------------------------------------------------------------------------------------------
# record -> admission
# --------------------------------------------------------------------------------------------------
def assign_admissions(records: pd.DataFrame, admissions: pd.DataFrame, quality=None, dataset: str = "records",
                      use_edregtime: bool = False) -> pd.DataFrame:
    """Copy of ``records`` with ``hadm_id`` (Int64, NA when none) = the admission covering the record time.

    Rule (docs/DATASETS.md, MIMIC-IV): same subject and ``admittime <= time <= dischtime`` (both ends inclusive).
    With ``use_edregtime`` the interval starts at ``min(edregtime, admittime)`` so ED work-up before
    the admission (ECGs in particular) belongs to it.

    Choices:
    - Overlapping admissions covering the same time: the one with the LATEST start (admittime) <= time
      wins (the most recent stay is the one the record was taken for); ties by the larger hadm_id. The
      record is counted as ``ambiguous`` (kept, linked to the chosen admission).
    - Records with no time (NaT) get no hadm_id and are counted; records whose time no admission covers
      (outpatient / ED-only) get NA and are counted too, so the data-quality table shows the link rate.
    - An existing ``hadm_id`` column in ``records`` is overwritten.
    - ``subject_id`` in the returned copy is normalised to str.
    """
    out = records.copy()
    rec = record_frame(records, dataset)
    out["subject_id"] = rec["subject_id"].to_numpy()
    adm = prepare_admissions(admissions)
    start = adm["admittime"]
    if use_edregtime and "edregtime" in adm.columns:
        start = adm[["admittime", "edregtime"]].min(axis=1)
    right = pd.DataFrame({"subject_id": adm["subject_id"], "hadm_id": adm["hadm_id"], "_start": start,
                          "_end": adm["dischtime"]})
    left = pd.DataFrame({"_pos": np.arange(len(rec)), "subject_id": rec["subject_id"], "time": rec["time"]})
    nat = left["time"].isna().to_numpy()
    cand = merge_by_subject(left[~nat], right,
                             lambda m: (m["_start"] <= m["time"]) & (m["time"] <= m["_end"]))
    cand = cand.sort_values(["_pos", "_start", "hadm_id"], kind="mergesort")
    n_match = cand.groupby("_pos").size()
    best = cand.drop_duplicates("_pos", keep="last")
    hadm = pd.array([pd.NA] * len(out), dtype="Int64")
    hadm[best["_pos"].to_numpy()] = best["hadm_id"].to_numpy()
    out["hadm_id"] = hadm
    if quality is not None:
        stage = "admission_link"
        ids = rec["record_id"]
        quality.seen(dataset, stage, len(out))
        quality.flag(dataset, stage, "no recording time (NaT): not linked to an admission", records=ids[nat])
        unlinked = ~nat & out["hadm_id"].isna().to_numpy()
        quality.flag(dataset, stage, "no admission covers the recording time (hadm_id NA, record kept)",
                        records=ids[unlinked])
        amb = n_match[n_match > 1].index.to_numpy()
        quality.flag(dataset, stage, "several admissions cover the time: latest admittime kept (record kept)",
                        records=ids.iloc[amb])
    return out


def task_links(records, admissions: pd.DataFrame, window_hours: float = 24.0, pre_hours: float = 24.0,
               quality=None) -> pd.DataFrame:
    """One row per admission with the record of each modality nearest to admittime (Table 4 inputs).

    ``records`` is a mapping ``{modality: manifest}`` (e.g. ``{"cxr": cxr, "ecg": ecg}``); a single
    DataFrame is treated as ``{"record": df}``. A record qualifies for an admission when it belongs to
    the same subject and ``admittime - pre_hours <= time <= min(admittime + window_hours, dischtime)``:
    only the first hours of the stay are used, so no information from late in the stay (close to the
    outcome) leaks into readmission / mortality inputs; the end is clipped at dischtime because a record
    after discharge does not belong to the stay. Records before admittime (ED work-up) are allowed;
    they are linked by time only, even if they fall in an earlier admission.

    Returns columns ``subject_id, hadm_id, admittime, dischtime`` and, per modality ``m``,
    ``{m}_record_id`` (str or NA), ``{m}_dt_hours`` (time - admittime, signed) and ``{m}_n`` (records
    in the window). Nearest = smallest |time - admittime|; ties -> the earlier record, then the smaller
    record_id. Callers attach embeddings per admission by merging on ``{m}_record_id``.
    """
    if isinstance(records, pd.DataFrame):
        records = {"record": records}
    adm = prepare_admissions(admissions, quality, stage="task_links")
    out = adm[["subject_id", "hadm_id", "admittime", "dischtime"]].copy()
    pre, post = pd.Timedelta(hours=float(pre_hours)), pd.Timedelta(hours=float(window_hours))
    right = out[["subject_id", "hadm_id", "admittime", "dischtime"]]
    for m, df in records.items():
        rec = record_frame(df, m)
        rec = rec[rec["time"].notna()]
        cand = merge_by_subject(
            rec, right,
            lambda x: (x["time"] >= x["admittime"] - pre)
            & (x["time"] <= x["admittime"] + post) & (x["time"] <= x["dischtime"]))
        cand["_dt"] = cand["time"] - cand["admittime"]
        cand["_abs"] = cand["_dt"].abs()
        cand = cand.sort_values(["hadm_id", "_abs", "time", "record_id"], kind="mergesort")
        n = cand.groupby("hadm_id").size().rename(f"{m}_n")
        best = cand.drop_duplicates("hadm_id", keep="first")
        best = pd.DataFrame({"hadm_id": best["hadm_id"].to_numpy(),
                             f"{m}_record_id": best["record_id"].to_numpy(),
                             f"{m}_dt_hours": (best["_dt"] / HOUR).to_numpy(dtype=float)})
        best["hadm_id"] = best["hadm_id"].astype("Int64")
        out = out.merge(best, on="hadm_id", how="left").merge(n.reset_index().astype({"hadm_id": "Int64"}),
                                                              on="hadm_id", how="left")
        out[f"{m}_n"] = out[f"{m}_n"].fillna(0).astype(int)
    return out
