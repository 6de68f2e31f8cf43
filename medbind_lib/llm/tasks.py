"""Per-admission task frames of Table 4 from notebook 01's outputs (and the discharge notes).

- ``readmission``: 30-day readmission (label from notebook 01, ``linking.readmission_labels``: a later visit
  within ``readmission_days`` of discharge; no later visit = 0 unless ``readmission_no_next: censor``;
  in-hospital deaths are already out) with the DISCHARGE text: the note's sections named by
  ``llm_discharge_sections``, in that order.
- ``mortality``: in-hospital mortality with the Table A.2 demographics text (no discharge text: it would
  state the outcome).

Each frame: ``task, hadm_id, subject_id, split, label, text, cxr_record_id, ecg_record_id`` (the record of
each modality nearest to admittime within the task window, from ``linking.task_links``; NA = none, masked
downstream). Splits are notebook 01's patient-level split shared with pre-training, so no test patient
was seen by the frozen encoders or the fine-tuning. Every admission dropped, and every modality masked, is
counted in the QualityLog (dataset ``table4_<task>``).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from ..linking import normalize_ids
from ..preprocess.text import normalize_ws
from ..quality import QualityLog

TASKS = {"readmission": ("readmission", "discharge note"), "mortality": ("mortality", "demographics (Table A.2)")}
COLUMNS = ["task", "hadm_id", "subject_id", "split", "label", "text", "cxr_record_id", "ecg_record_id"]

# MIMIC-IV-Note discharge summary headers (lower case). Only these start a section, so "Mental Status:"
# inside "Discharge Condition:" stays part of its section.
DISCHARGE_HEADERS = (
    "name", "admission date", "date of birth", "service", "allergies", "attending", "chief complaint",
    "major surgical or invasive procedure", "history of present illness", "past medical history",
    "social history", "family history", "physical exam", "pertinent results", "brief hospital course",
    "medications on admission", "discharge medications", "discharge disposition", "discharge diagnosis",
    "discharge condition", "discharge instructions", "followup instructions", "facility",
)
_HEADER_RE = re.compile(r"^\s*(" + "|".join(re.escape(h) for h in sorted(DISCHARGE_HEADERS, key=len, reverse=True))
                        + r")\s*:(.*)$", re.IGNORECASE)


def discharge_sections(note: str) -> dict[str, str]:
    """``{lower-case header: whitespace-normalised content}`` of a discharge note (a repeated header's
    content is appended)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in str(note).splitlines():
        m = _HEADER_RE.match(line)
        if m:
            current = m.group(1).lower()
            out.setdefault(current, [])
            line = m.group(2)
        if current is not None and line.strip():
            out[current].append(line)
    return {k: normalize_ws(" ".join(v)) for k, v in out.items()}


def discharge_text(note: str, sections: Iterable[str] = ()) -> str | None:
    """The readmission text: ``"Chief complaint: ... Brief hospital course: ..."`` for the requested
    sections present (in the requested order); ``()`` = the whole note, whitespace-normalised; None when
    none of the requested sections has content."""
    if note is None or (isinstance(note, float) and np.isnan(note)):
        return None
    sections = [s.lower() for s in sections]
    if not sections:
        t = normalize_ws(note)
        return t or None
    found = discharge_sections(note)
    parts = [f"{s.capitalize()}: {found[s]}" for s in sections if found.get(s)]
    return " ".join(parts) or None


def notes_by_admission(discharge: pd.DataFrame, quality: QualityLog | None = None) -> pd.Series:
    """hadm_id (Int64) -> note text; several notes for one admission: the last (note_seq, charttime) wins
    and the others are counted (flag)."""
    if discharge is None or len(discharge) == 0:
        return pd.Series(dtype=object, index=pd.Index([], dtype="Int64", name="hadm_id"))
    d = discharge[discharge["hadm_id"].notna()].copy()
    d["hadm_id"] = pd.to_numeric(d["hadm_id"]).astype("Int64")
    order = [c for c in ("hadm_id", "note_seq", "charttime", "note_id") if c in d.columns]
    d = d.sort_values(order, kind="mergesort")
    dup = d["hadm_id"].duplicated(keep="last")
    if quality is not None:
        quality.flag("table4_readmission", "discharge note", "several notes for one admission: the last kept",
                     records=d.loc[dup, "note_id"].astype(str) if "note_id" in d else (), n=int(dup.sum()))
    d = d[~dup]
    return pd.Series(d["text"].to_numpy(), index=pd.Index(d["hadm_id"], name="hadm_id"), dtype=object)


def check_patient_disjoint(frame: pd.DataFrame, what: str = "task frame") -> None:
    """A subject in two splits would let the test set see a training patient: a DataError naming them."""
    n = frame.groupby("subject_id")["split"].nunique()
    bad = n[n > 1]
    if len(bad):
        raise DataError(what, f"{len(bad)} subject(s) in more than one split, e.g. {bad.index[:3].tolist()}")


def build_task_frame(task: str, admissions: pd.DataFrame, notes: pd.Series | None = None,
                     sections: Iterable[str] = (), admissions_rule: str = "all",
                     quality: QualityLog | None = None, reserved=None) -> pd.DataFrame:
    """The ``task`` frame (module docstring) from notebook 01's ``admissions`` (and ``notes``: hadm_id ->
    discharge note, readmission only). ``admissions_rule``: ``all`` keeps admissions without a CXR/ECG
    (masked), ``with_record`` drops them (counted). ``reserved``: subject ids of MEDCSP's EHR-task population
    (``cohort.task_subjects``), dropped and counted: nothing but MEDCSP's task models fits on them."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {task!r}")
    label_col, source = TASKS[task]
    need = {"hadm_id", "subject_id", "split", label_col, "cxr_record_id", "ecg_record_id"}
    need |= {"demographics_text"} if task == "mortality" else set()
    missing = sorted(need - set(admissions.columns))
    if missing:
        raise DataError("runs/<profile>/01/admissions.parquet", f"missing column(s) {missing}: re-run notebook 01")
    q = quality if quality is not None else QualityLog()
    ds, stage = f"table4_{task}", "task frame"
    a = admissions.copy()
    a["hadm_id"] = pd.to_numeric(a["hadm_id"]).astype("Int64")
    a["subject_id"] = normalize_ids(a["subject_id"])
    q.seen(ds, stage, len(a))
    if reserved:
        mine = pd.to_numeric(a["subject_id"], errors="coerce").isin(reserved).to_numpy()
        q.exclude(ds, stage, "patient of MEDCSP's EHR-task population (medcsp_task_subjects)",
                  records=a.loc[mine, "hadm_id"].astype(str))
        a = a[~mine].reset_index(drop=True)
    ids = a["hadm_id"].astype(str)
    no_label = a[label_col].isna().to_numpy()
    q.exclude(ds, stage, "no label (readmission: died in hospital or censored; see notebook 01)" if task ==
              "readmission" else "no label (hospital_expire_flag empty)", records=ids[no_label])
    if task == "readmission":
        notes = notes if notes is not None else pd.Series(dtype=object)
        raw = a["hadm_id"].map(notes)
        text = pd.Series([discharge_text(n, sections) for n in raw], index=a.index, dtype=object)
        no_note = ~no_label & raw.isna().to_numpy()
        q.exclude(ds, stage, "no discharge note", records=ids[no_note])
        no_sec = ~no_label & ~no_note & text.isna().to_numpy()
        q.exclude(ds, stage, f"discharge note without any of the sections {list(sections)}", records=ids[no_sec])
    else:
        text = a["demographics_text"].astype(object)
        no_sec = ~no_label & text.isna().to_numpy()
        q.exclude(ds, stage, "no demographics text", records=ids[no_sec])
    keep = ~no_label & text.notna().to_numpy()
    has_cxr, has_ecg = a["cxr_record_id"].notna().to_numpy(), a["ecg_record_id"].notna().to_numpy()
    none = keep & ~has_cxr & ~has_ecg
    if admissions_rule == "with_record":
        q.exclude(ds, stage, "no CXR or ECG in the task window (llm_admissions=with_record)", records=ids[none])
        keep &= ~none
    elif admissions_rule == "all":
        q.flag(ds, stage, "no CXR and no ECG in the task window: both masked", records=ids[none])
    else:
        raise ValueError(f"llm_admissions must be 'all' or 'with_record', got {admissions_rule!r}")
    q.flag(ds, stage, "no CXR in the task window: CXR masked", records=ids[keep & ~has_cxr & has_ecg])
    q.flag(ds, stage, "no ECG in the task window: ECG masked", records=ids[keep & has_cxr & ~has_ecg])
    if "ends_in_window" in a.columns:
        q.flag(ds, stage, "stay ends within the input window (inputs may cover the whole stay)",
               records=ids[keep & a["ends_in_window"].fillna(False).to_numpy(bool)])
    out = pd.DataFrame({"task": task, "hadm_id": a["hadm_id"], "subject_id": a["subject_id"], "split": a["split"],
                        "label": a[label_col], "text": text, "cxr_record_id": a["cxr_record_id"],
                        "ecg_record_id": a["ecg_record_id"]})[keep].reset_index(drop=True)
    out["label"] = out["label"].astype(int)
    for c in ("cxr_record_id", "ecg_record_id"):
        out[c] = out[c].astype(object).where(out[c].notna(), None).map(lambda v: None if v is None else str(v))
    bad_split = ~out["split"].isin(["train", "valid", "test"])
    if bad_split.any():
        raise DataError("admissions", f"{int(bad_split.sum())} admission(s) without a train/valid/test split, "
                                      f"e.g. hadm_id {out.loc[bad_split, 'hadm_id'].head(3).tolist()}")
    check_patient_disjoint(out, f"table4_{task}")
    return out[COLUMNS]


def build_task_frames(linked: Mapping[str, pd.DataFrame], discharge: pd.DataFrame | None, settings,
                      quality: QualityLog | None = None, reserved=None) -> dict[str, pd.DataFrame]:
    """``{task: frame}`` for ``settings.tasks`` from ``cohort.load_linked`` output and the discharge table
    (``reserved``: see ``build_task_frame``)."""
    q = quality if quality is not None else QualityLog()
    notes = notes_by_admission(discharge, q) if "readmission" in settings.tasks else None
    return {t: build_task_frame(t, linked["admissions"], notes, settings.discharge_sections, settings.admissions, q,
                                reserved) for t in settings.tasks}


def load_discharge(cfg, quality: QualityLog | None = None) -> pd.DataFrame:
    """MIMIC-IV-Note discharge notes of the profile (``mimic_note_root``); an absent root is a DataError,
    because readmission has no text without it."""
    from pathlib import Path

    from ..datasets import load_tables

    root = Path(cfg["mimic_note_root"])
    if not (root / "note").is_dir():
        raise DataError(root / "note", "MIMIC-IV-Note discharge notes not found (profile key 'mimic_note_root'); "
                                       "Table 4 readmission needs the discharge text (or drop it from llm_tasks)")
    return load_tables(cfg, tables=("discharge",), quality=quality)["discharge"]


def summary(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per task and split: admissions, positives, patients and how many have a CXR / ECG / both / neither."""
    rows = []
    for task, f in frames.items():
        for split in ("train", "valid", "test"):
            d = f[f["split"] == split]
            c, e = d["cxr_record_id"].notna(), d["ecg_record_id"].notna()
            rows.append({"task": task, "split": split, "admissions": len(d), "positives": int(d["label"].sum()),
                         "patients": d["subject_id"].nunique(), "with_cxr": int(c.sum()), "with_ecg": int(e.sum()),
                         "both": int((c & e).sum()), "neither": int((~c & ~e).sum())})
    return pd.DataFrame(rows)


def save_quality(cfg, quality: QualityLog):
    """Write the Table 4 data-quality table to ``runs/<profile>/07/quality.csv`` (atomically)."""
    from ..io import write_csv_atomic
    from ..layout import RunLayout

    path = RunLayout(cfg).llm_quality
    write_csv_atomic(quality.to_frame(), path)
    return path


def save_frames(cfg, frames: Mapping[str, pd.DataFrame], quality: QualityLog):
    """Write ``runs/<profile>/07/task_<task>.parquet`` and the data-quality table (atomically)."""
    from ..io import write_parquet_atomic
    from ..layout import RunLayout

    layout = RunLayout(cfg)
    paths = []
    for task, f in frames.items():
        paths.append(layout.llm_task_frame(task))
        write_parquet_atomic(f.astype({"hadm_id": "int64"}), paths[-1])
    return paths + [save_quality(cfg, quality)]
