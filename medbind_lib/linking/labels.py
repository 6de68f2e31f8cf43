"""Admission labels (docs/DATASETS.md, MIMIC-IV): in-hospital mortality and 30-day readmission.

Each label rule is a documented choice (cross-checks kept, died / empty flag excluded, no-next negative or
censored, planned admissions skipped as events); they are kept together so that the rules read side by side.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import DataError
from .common import as_datetime, as_int64, normalize_ids, prepare_admissions, require_columns

# Admission types treated as planned (elective) or observation stays when ``exclude_elective`` is on:
# they are not counted as readmission EVENTS (an index admission skips them to the next qualifying
# admission). MIMIC-IV 2.x values (docs/DATASETS.md, MIMIC-IV). SURGICAL SAME DAY ADMISSION is a planned
# surgery (it was coded ELECTIVE in MIMIC-IV 1.0), so it is included.
PLANNED_ADMISSION_TYPES = (
    "ELECTIVE", "SURGICAL SAME DAY ADMISSION",
    "EU OBSERVATION", "OBSERVATION ADMIT", "DIRECT OBSERVATION", "AMBULATORY OBSERVATION",
)

# What an index admission with no later (qualifying) admission is labelled (``readmission_labels(no_next=)``,
# profile key ``readmission_no_next``): "negative" (the paper's rule) or "censor" (dropped, counted).
READMISSION_NO_NEXT = ("negative", "censor")


# --------------------------------------------------------------------------------------------------
# labels (docs/DATASETS.md, MIMIC-IV)
# --------------------------------------------------------------------------------------------------
def mortality_labels(admissions: pd.DataFrame, quality=None) -> pd.DataFrame:
    """In-hospital mortality per admission: ``mortality = hospital_expire_flag`` (docs/DATASETS.md, MIMIC-IV).

    The flag is the label; ``deathtime`` not null and ``discharge_location == 'DIED'`` are cross-checks.
    Disagreements are KEPT (label from the flag) and reported: as columns ``deathtime_set``,
    ``discharge_died``, ``consistent`` and, with a ``quality`` log, under stage ``mortality_crosscheck``
    as flagged (kept) rows. Admissions with an empty flag are excluded and counted (stage ``mortality``).

    Returns ``subject_id, hadm_id, mortality (int 0/1), deathtime_set, discharge_died, consistent``.
    """
    require_columns(admissions, ("subject_id", "hadm_id", "hospital_expire_flag"), "admissions")
    adm = admissions.copy()
    adm["subject_id"] = normalize_ids(adm["subject_id"])
    adm["hadm_id"] = as_int64(adm["hadm_id"])
    flag = pd.to_numeric(adm["hospital_expire_flag"], errors="coerce")
    missing = flag.isna()
    if not flag[~missing].isin([0, 1]).all():
        raise DataError("admissions", f"hospital_expire_flag must be 0/1, got {sorted(flag[~missing].unique())}")
    dt = (as_datetime(adm["deathtime"], "deathtime").notna() if "deathtime" in adm.columns
          else pd.Series(False, index=adm.index))
    dl = (adm["discharge_location"].astype(object).fillna("").astype(str).str.strip().str.upper() == "DIED"
          if "discharge_location" in adm.columns else pd.Series(False, index=adm.index))
    out = pd.DataFrame({"subject_id": adm["subject_id"], "hadm_id": adm["hadm_id"],
                        "mortality": flag.fillna(-1).astype(int), "deathtime_set": dt.to_numpy(),
                        "discharge_died": dl.to_numpy()})
    out = out[~missing.to_numpy()].reset_index(drop=True)
    y = out["mortality"] == 1
    out["consistent"] = (y == out["deathtime_set"]) & (y == out["discharge_died"])
    if quality is not None:
        quality.seen("mimic_iv", "mortality", len(adm))
        quality.exclude("mimic_iv", "mortality", "hospital_expire_flag empty",
                        records=adm.loc[missing, "hadm_id"].astype(str))
        checks = {
            "kept (label = flag): hospital_expire_flag=1 but deathtime empty": y & ~out["deathtime_set"],
            "kept (label = flag): hospital_expire_flag=0 but deathtime set": ~y & out["deathtime_set"],
            "kept (label = flag): hospital_expire_flag=1 but discharge_location != DIED": y & ~out["discharge_died"],
            "kept (label = flag): hospital_expire_flag=0 but discharge_location == DIED": ~y & out["discharge_died"],
        }
        quality.seen("mimic_iv", "mortality_crosscheck", len(out))
        for reason, mask in checks.items():
            quality.flag("mimic_iv", "mortality_crosscheck", reason, records=out.loc[mask, "hadm_id"].astype(str))
    return out


def readmission_labels(admissions: pd.DataFrame, days: float = 30, exclude_elective: bool = False, quality=None,
                       *, no_next: str = "negative",
                       planned_types: Iterable[str] = PLANNED_ADMISSION_TYPES) -> pd.DataFrame:
    """30-day readmission per index admission (docs/DATASETS.md, MIMIC-IV).

    A subject's admissions are ordered by (admittime, hadm_id). For an index admission i with
    ``hospital_expire_flag == 0``: ``readmission = 1`` iff the NEXT admission j satisfies
    ``0 < admittime_j - dischtime_i <= days`` (both in exact time, so exactly 30 days is 1 and 30 days
    plus one minute is 0); otherwise 0.

    Choices:
    - Index admissions that died in hospital (flag 1) are excluded and counted; an empty flag too.
    - ``no_next`` (profile key ``readmission_no_next``), an index admission with no later admission:
      ``"negative"`` (default, the paper's definition: positive iff a later visit starts within ``days``
      of discharge, so no later visit is a negative; kept and counted as flagged) or ``"censor"``
      (dropped and counted: we cannot see a readmission after the data end; this changes the task to
      "given a later admission, is it within ``days``?" and raises the prevalence). ``dod`` is not used.
    - Overlapping admissions: if the next admission starts before (or exactly at) the index discharge,
      the gap is <= 0 so the index is NOT a readmission (label 0, no look-ahead past the next
      admission). Ties in admittime are ordered by hadm_id, giving the same outcome.
    - ``exclude_elective``: admissions whose ``admission_type`` is in ``planned_types`` are not
      readmission events: the index looks ahead to the next QUALIFYING admission (which defines both
      the label and ``no_next``). They still serve as index admissions themselves.

    Returns ``subject_id, hadm_id, admittime, dischtime, next_hadm_id, next_admittime, gap_days,
    readmission (int 0/1)``; ``next_*`` and ``gap_days`` are NA/NaN when there is no later admission.
    """
    if no_next not in READMISSION_NO_NEXT:
        raise ValueError(f"readmission_no_next must be one of {READMISSION_NO_NEXT}, got {no_next!r}")
    adm = prepare_admissions(admissions, quality, stage="readmission")
    require_columns(adm, ("hospital_expire_flag",), "admissions")
    adm = adm.sort_values(["subject_id", "admittime", "hadm_id"], kind="mergesort").reset_index(drop=True)
    has_next, j = _next_event(adm, exclude_elective, planned_types)
    out = adm[["subject_id", "hadm_id", "admittime", "dischtime"]].copy()
    out["next_hadm_id"] = pd.array(adm["hadm_id"].to_numpy(dtype="int64")[j], dtype="Int64")
    out.loc[~has_next, "next_hadm_id"] = pd.NA
    out["next_admittime"] = adm["admittime"].to_numpy()[j]
    out["next_admittime"] = out["next_admittime"].where(has_next)
    gap = out["next_admittime"] - out["dischtime"]
    out["gap_days"] = (gap / pd.Timedelta(days=1)).astype(float)
    out["readmission"] = ((gap > pd.Timedelta(0)) & (gap <= pd.Timedelta(days=float(days)))).fillna(False).astype(int)
    flag = pd.to_numeric(adm["hospital_expire_flag"], errors="coerce")
    died, noflag = (flag == 1).to_numpy(), flag.isna().to_numpy()
    last = ~has_next & ~died & ~noflag
    censored = last if no_next == "censor" else np.zeros(len(out), dtype=bool)
    if quality is not None:
        quality.exclude("mimic_iv", "readmission", "index admission died in hospital",
                        records=out.loc[died, "hadm_id"].astype(str))
        quality.exclude("mimic_iv", "readmission", "hospital_expire_flag empty",
                        records=out.loc[noflag, "hadm_id"].astype(str))
        if no_next == "censor":
            quality.exclude("mimic_iv", "readmission", "censored: no later (qualifying) admission",
                            records=out.loc[last, "hadm_id"].astype(str))
        else:
            quality.flag("mimic_iv", "readmission", "no later (qualifying) admission: labelled 0 (kept)",
                         records=out.loc[last, "hadm_id"].astype(str))
    keep = ~died & ~noflag & ~censored
    out = out[keep].reset_index(drop=True)
    out["next_hadm_id"] = out["next_hadm_id"].astype("Int64")
    return out


def _next_event(adm: pd.DataFrame, exclude_elective: bool, planned_types: Iterable[str]):
    """(has_next bool [n], row position of the next readmission-event admission [n]) within each subject of
    ``adm`` (sorted by subject, admittime, hadm_id); planned types are skipped as events when asked."""
    if exclude_elective:
        require_columns(adm, ("admission_type",), "admissions")
        planned = {t.upper() for t in planned_types}
        event = ~adm["admission_type"].astype(object).fillna("").astype(str).str.strip().str.upper().isin(planned)
    else:
        event = pd.Series(True, index=adm.index)
    pos = pd.Series(np.where(event, np.arange(len(adm)), np.nan), index=adm.index)
    nxt = pos.groupby(adm["subject_id"]).shift(-1).groupby(adm["subject_id"]).bfill()
    return nxt.notna().to_numpy(), nxt.fillna(0).astype(int).to_numpy()
