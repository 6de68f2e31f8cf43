"""MEDCSP's two sources as records (MEDCSP.md "Sources, records, times").

- EHR source (MIMIC-IV): one record per hospital admission, at ``ehr_record_time`` (``admittime`` by default).
  The paper's EHR source is the FIDDLE-processed ICU population (App. B; Table 4: 41,230 records of 32,355
  patients): by default (``ehr_population="icu"``) only admissions with an ICU stay are records. The unit is the
  admission, not the stay: 41,230 / 32,355 = 1.27 records per patient is MIMIC-IV 2.2's ratio of admissions with
  a stay (66,239 / 50,920 = 1.30), not of stays (73,181 / 50,920 = 1.44). Its modalities - ICD codes, drugs,
  demographics, temporal readings, discharge note - are present or not per record (``has_*`` columns); a missing
  one is masked later, never zero-filled into the record's mean.
- Imaging source (MIMIC-CXR): one record per study, at the study's date and time, with its first frontal image
  (AP/PA, lowest record id) and the report text of notebook 01 (FINDINGS + IMPRESSION).

The patient-level split is notebook 01's, shared with MEDBind. As in the paper, CXR studies of patients absent
from the EHR source are not pre-training records: a seeded ``holdout_fraction`` of them is the text->image
retrieval hold-out (never seen in pre-training), the rest is unused and counted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ehr_records", "icu_admissions", "cxr_records", "split_sources", "cross_source_gaps", "source_overlap",
           "RECORD_TIMES", "EHR_POPULATIONS"]

RECORD_TIMES = ("admittime", "dischtime")
EHR_POPULATIONS = ("icu", "all")


def ehr_records(admissions: pd.DataFrame, *, icd_hadm=(), drug_hadm=(), temporal_hadm=(), note_hadm=(),
                record_time: str = "admittime") -> pd.DataFrame:
    """One row per admission: ``record_id`` (``ehr-<hadm_id>``), ids, ``time``, ``split`` and the ``has_*``
    flags of its modalities (demographics: always)."""
    if record_time not in RECORD_TIMES:
        raise ValueError(f"ehr_record_time must be one of {RECORD_TIMES}, got {record_time!r}")
    a = admissions
    out = pd.DataFrame({"record_id": "ehr-" + a["hadm_id"].astype("int64").astype(str),
                        "source": "ehr", "subject_id": a["subject_id"].astype("int64"),
                        "hadm_id": a["hadm_id"].astype("int64"), "time": pd.to_datetime(a[record_time]),
                        "split": a["split"].astype(str)})
    for name, ids in (("icd", icd_hadm), ("drug", drug_hadm), ("temporal", temporal_hadm), ("note", note_hadm)):
        out[f"has_{name}"] = out["hadm_id"].isin(set(np.asarray(list(ids), dtype=np.int64)))
    out["has_demo"] = True
    return out.reset_index(drop=True)


def icu_admissions(frame: pd.DataFrame, stays: pd.DataFrame, population: str, quality=None,
                   what: str = "ehr_source") -> pd.DataFrame:
    """The rows of ``frame`` (one per admission, ``hadm_id``) in the EHR ``population``: ``"icu"`` keeps the
    admissions with an ICU stay (the paper's FIDDLE-processed source), ``"all"`` every row. The others are
    counted in ``quality`` (stage ``what``), never dropped silently."""
    if population not in EHR_POPULATIONS:
        raise ValueError(f"EHR population must be one of {EHR_POPULATIONS}, got {population!r}")
    if population == "all":
        return frame.reset_index(drop=True)
    icu = frame["hadm_id"].astype("int64").isin(set(stays["hadm_id"].astype("int64")))
    if quality is not None:
        label = frame["record_id"] if "record_id" in frame else frame["hadm_id"].astype(str)
        quality.exclude("medcsp", what, "admission without an ICU stay (not in the ICU EHR source; "
                        "medcsp_ehr_population: icu)", records=label[~icu])
    return frame[icu].reset_index(drop=True)


def cxr_records(cxr: pd.DataFrame, views=("AP", "PA")) -> pd.DataFrame:
    """One row per study with a frontal image: ``record_id`` (``cxr-<study_id>``), ids, ``time``, ``split``,
    the image's ``image_record_id``/``path`` and the report ``text`` (``has_image``, ``has_report``)."""
    c = cxr[cxr["view"].astype(str).str.upper().isin(views)] if "view" in cxr else cxr
    c = c.sort_values(["study_id", "record_id"], kind="stable").drop_duplicates("study_id")
    text = c["text"] if "text" in c else pd.Series(pd.NA, index=c.index)
    out = pd.DataFrame({"record_id": "cxr-" + c["study_id"].astype("int64").astype(str), "source": "cxr",
                        "subject_id": c["subject_id"].astype("int64"), "study_id": c["study_id"].astype("int64"),
                        "time": pd.to_datetime(c["time"]), "split": c["split"].astype(str),
                        "image_record_id": c["record_id"].astype(str), "path": c["path"].astype(str),
                        "text": text.astype("string")})
    out["has_image"] = True
    out["has_report"] = out["text"].notna() & (out["text"].str.len() > 0)
    return out.reset_index(drop=True)


def split_sources(ehr: pd.DataFrame, cxr: pd.DataFrame, holdout_fraction: float = 1.0, seed: int = 0,
                  quality=None) -> dict:
    """``ehr`` (every EHR record), ``cxr`` (studies of patients the EHR source has: pre-training and
    downstream), ``holdout`` (a seeded ``holdout_fraction`` of the other patients' studies, whole patients:
    text->image retrieval only). The remaining studies are counted, not used."""
    if not 0 <= holdout_fraction <= 1:
        raise ValueError(f"medcsp_holdout_fraction must be in [0, 1], got {holdout_fraction}")
    in_ehr = cxr["subject_id"].isin(set(ehr["subject_id"]))
    outside = cxr.loc[~in_ehr, "subject_id"].drop_duplicates().sort_values()
    rng = np.random.default_rng(seed)
    chosen = set(outside.to_numpy()[rng.random(len(outside)) < holdout_fraction])
    hold = ~in_ehr & cxr["subject_id"].isin(chosen)
    if quality is not None:
        quality.seen("medcsp", "sources", len(cxr))
        quality.exclude("medcsp", "sources", "CXR study of a patient absent from the EHR source, not sampled "
                        "into the retrieval hold-out", records=cxr.loc[~in_ehr & ~hold, "record_id"])
    return {"ehr": ehr.reset_index(drop=True), "cxr": cxr[in_ehr].reset_index(drop=True),
            "holdout": cxr[hold].reset_index(drop=True)}


def cross_source_gaps(ehr: pd.DataFrame, cxr: pd.DataFrame) -> pd.DataFrame:
    """Every same-patient (EHR record, CXR record) pair with ``gap_days`` = |t_ehr - t_cxr| (what L_P's
    theta window selects from). Pairs are per patient, so the frame grows with records per patient, not with
    the product of the sources."""
    m = ehr[["record_id", "subject_id", "time", "split"]].merge(
        cxr[["record_id", "subject_id", "time"]], on="subject_id", suffixes=("_ehr", "_cxr"))
    m["gap_days"] = (m["time_ehr"] - m["time_cxr"]).abs().dt.total_seconds() / 86400.0
    return m.rename(columns={"record_id_ehr": "ehr_record_id", "record_id_cxr": "cxr_record_id"})


def source_overlap(ehr: pd.DataFrame, cxr_all: pd.DataFrame) -> dict:
    """Patients per source and in both (the paper: 45.19 % of the processed MIMIC-IV patients and 22.36 % of
    MIMIC-CXR's, 14,620 of 32,355 and of 65,379; its introduction swaps the two)."""
    e, c = set(ehr["subject_id"]), set(cxr_all["subject_id"])
    both = e & c
    return {"ehr_patients": len(e), "cxr_patients": len(c), "both": len(both),
            "pct_of_ehr": 100.0 * len(both) / max(len(e), 1), "pct_of_cxr": 100.0 * len(both) / max(len(c), 1)}
