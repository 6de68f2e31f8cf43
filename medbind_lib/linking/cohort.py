"""Orchestration: :func:`link_cohort` runs every linking step on the MIMIC cohort; :func:`table1` counts it.

The only module that reads profile keys (``cfg``); the steps it calls take plain arguments.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..constants import ECG_SUPERCLASSES, MIMIC_CXR_CLASSES, SPLITS
from ..errors import DataError
from .admissions import assign_admissions, task_links
from .common import normalize_ids, prepare_admissions
from .labels import mortality_labels, readmission_labels
from .pairs import mimic_pairs, pair_counts
from .splits import apply_splits, patient_splits


# --------------------------------------------------------------------------------------------------
# orchestration and Table 1
# --------------------------------------------------------------------------------------------------
def _cfg(cfg, key):
    from ..config import SCHEMA

    return cfg[key] if key in cfg else SCHEMA[key][0]


def link_cohort(cfg, cxr: pd.DataFrame, ecg: pd.DataFrame, tables: Mapping[str, pd.DataFrame], quality=None) -> dict:
    """Link the MIMIC cohort: admissions, MIMIC-PAIR, labels and the one patient-level split.

    ``tables`` holds MIMIC-IV ``admissions`` (required) and ``patients`` (optional: adds gender,
    anchor_age, anchor_year and ``age`` = anchor_age + admit year - anchor_year). Profile keys used:
    pair_window_hours, pair_policy, admission_window_hours, admission_pre_hours, readmission_days,
    readmission_exclude_elective, readmission_no_next (default "negative"), split_fractions, mimic_split, seed.

    Returns a dict, every frame split-annotated:
    - ``cxr`` / ``ecg``: the manifests with ``hadm_id`` and ``split`` (CXR's incoming official split is
      kept as ``split_official``);
    - ``pairs``: :func:`mimic_pairs` output + ``split``;
    - ``admissions``: one row per admission: :func:`task_links` columns (``cxr_*``, ``ecg_*``), admission
      and patient fields, ``mortality`` (Int64), ``readmission`` (Int64, NA when excluded: died in hospital,
      empty flag, or censored under ``readmission_no_next: censor``),
      ``readmission_gap_days``, ``ends_in_window`` (discharge or death before admittime +
      admission_window_hours: inputs may then cover the whole stay; flagged, not excluded) and ``split``;
    - ``splits``: :func:`patient_splits` output; ``pair_counts``: :func:`pair_counts`; ``params``.
    """
    window = float(_cfg(cfg, "pair_window_hours"))
    policy = _cfg(cfg, "pair_policy")
    aw, ap = float(_cfg(cfg, "admission_window_hours")), float(_cfg(cfg, "admission_pre_hours"))
    if "admissions" not in tables:
        raise DataError("tables", "link_cohort needs the MIMIC-IV 'admissions' table")
    adm = prepare_admissions(tables["admissions"], quality)
    cxr_l = assign_admissions(cxr, adm, quality, dataset="mimic_cxr")
    ecg_l = assign_admissions(ecg, adm, quality, dataset="mimic_ecg")
    pairs = mimic_pairs(cxr_l, ecg_l, window, policy, quality)
    tasks = task_links({"cxr": cxr_l, "ecg": ecg_l}, adm, aw, ap)
    extra = [c for c in ("admission_type", "admission_location", "discharge_location", "deathtime",
                         "hospital_expire_flag") if c in adm.columns]
    tasks = tasks.merge(adm[["hadm_id"] + extra], on="hadm_id", how="left")
    mort = mortality_labels(adm, quality)
    no_next = cfg.get("readmission_no_next", "negative")
    readm = readmission_labels(adm, _cfg(cfg, "readmission_days"), bool(_cfg(cfg, "readmission_exclude_elective")),
                               quality, no_next=no_next)
    tasks = tasks.merge(mort[["hadm_id", "mortality"]], on="hadm_id", how="left")
    tasks = tasks.merge(readm[["hadm_id", "readmission", "gap_days"]].rename(columns={"gap_days": "readmission_gap_days"}),
                        on="hadm_id", how="left")
    tasks["mortality"] = tasks["mortality"].astype("Int64")
    tasks["readmission"] = tasks["readmission"].astype("Int64")
    end = tasks["dischtime"]
    if "deathtime" in tasks.columns:
        end = tasks[["dischtime", "deathtime"]].min(axis=1)
    tasks["ends_in_window"] = (end <= tasks["admittime"] + pd.Timedelta(hours=aw)).to_numpy(dtype=bool)
    if "patients" in tables and tables["patients"] is not None:
        pat = tables["patients"].copy()
        pat["subject_id"] = normalize_ids(pat["subject_id"])
        pcols = [c for c in ("gender", "anchor_age", "anchor_year") if c in pat.columns]
        tasks = tasks.merge(pat[["subject_id"] + pcols].drop_duplicates("subject_id"), on="subject_id", how="left")
        if {"anchor_age", "anchor_year"} <= set(pcols):
            tasks["age"] = tasks["anchor_age"] + (tasks["admittime"].dt.year - tasks["anchor_year"])
    official = None
    if _cfg(cfg, "mimic_split") == "official_cxr":
        if "split" not in cxr_l.columns:
            raise DataError("mimic_cxr", "mimic_split=official_cxr needs the official split column in the CXR manifest")
        official = cxr_l[["subject_id", "split"]]
    elif _cfg(cfg, "mimic_split") != "patient_random":
        raise ValueError(f"mimic_split must be patient_random or official_cxr, got {_cfg(cfg, 'mimic_split')!r}")
    splits = patient_splits({"mimic_cxr": cxr_l["subject_id"], "mimic_ecg": ecg_l["subject_id"],
                             "mimic_iv": adm["subject_id"]}, _cfg(cfg, "split_fractions"), int(_cfg(cfg, "seed")),
                            official)
    if "split" in cxr_l.columns:
        cxr_l["split_official"] = cxr_l["split"]
    return {"cxr": apply_splits(cxr_l, splits), "ecg": apply_splits(ecg_l, splits),
            "pairs": apply_splits(pairs, splits), "admissions": apply_splits(tasks, splits), "splits": splits,
            "pair_counts": pair_counts(cxr_l, ecg_l, pairs),
            "params": {"pair_window_hours": window, "pair_policy": policy, "admission_window_hours": aw,
                       "admission_pre_hours": ap, "readmission_days": _cfg(cfg, "readmission_days"),
                       "readmission_exclude_elective": bool(_cfg(cfg, "readmission_exclude_elective")),
                       "readmission_no_next": no_next,
                       "mimic_split": _cfg(cfg, "mimic_split"), "seed": int(_cfg(cfg, "seed"))}}


def table1(linked: Mapping, require_record: bool = True) -> pd.DataFrame:
    """Table 1 rows for the MIMIC part: dataset, link, classes, train, valid, test, total, positives.

    Counts are rows of each frame (CXR/ECG: manifest records; MIMIC-PAIR: pairs; tasks: admissions
    with a label). With ``require_record`` a task admission counts only when it has a CXR or an ECG in
    its window (Table 4 needs an embedding). ``positives`` = label 1 rows for the binary tasks.
    """
    p = linked.get("params", {})
    w, aw, ap = p.get("pair_window_hours", 24.0), p.get("admission_window_hours", 24.0), p.get("admission_pre_hours", 24.0)
    rows = []

    def add(name, link, classes, df, label=None):
        counts = df["split"].value_counts() if len(df) else pd.Series(dtype=int)
        rows.append({"dataset": name, "link": link, "classes": classes,
                     **{s: int(counts.get(s, 0)) for s in SPLITS}, "total": len(df),
                     "positives": int((df[label] == 1).sum()) if label else pd.NA})

    add("MIMIC-CXR", "dicom_id -> study_id -> subject_id; hadm_id by admittime <= t <= dischtime",
        len(MIMIC_CXR_CLASSES), linked["cxr"])
    add("MIMIC-ECG", "study_id -> subject_id; hadm_id by admittime <= t <= dischtime", len(ECG_SUPERCLASSES),
        linked["ecg"])
    add("MIMIC-PAIR", f"same hadm_id, else same subject and |t_ecg - t_cxr| <= {w:g} h", pd.NA, linked["pairs"])
    adm = linked["admissions"]
    has_rec = pd.Series(False, index=adm.index)
    for c in ("cxr_record_id", "ecg_record_id"):
        if c in adm.columns:
            has_rec |= adm[c].notna()
    link = f"admission; CXR/ECG within [admittime - {ap:g} h, admittime + {aw:g} h]"
    for name, label in (("MIMIC-IV readmission", "readmission"), ("MIMIC-IV mortality", "mortality")):
        sel = adm[label].notna() & (has_rec if require_record else True)
        add(name, link, 2, adm[sel], label)
    return pd.DataFrame(rows, columns=["dataset", "link", "classes", *SPLITS, "total", "positives"])
