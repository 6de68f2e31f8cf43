"""MIMIC linking: admission links, MIMIC-PAIR, readmission / mortality labels, patient-level splits.

Everything here is plain vectorised pandas on small id/time columns, so the same code runs on the
synthetic cohort and on full MIMIC (hundreds of thousands of records).

Conventions (each one a documented choice, see the function docstrings for the reasons):

- ``subject_id`` is accepted as int, float (``10000032.0`` from a CSV with gaps) or str, and is
  normalised to ``str`` ("10000032") everywhere it leaves this module (:func:`normalize_ids`), because
  the CXR/ECG manifests carry it as str and MIMIC-IV tables as int; a silent int/str mismatch would
  make every join empty.
- ``hadm_id`` is a nullable ``Int64`` column (NA = no admission).
- Time comparisons are done on ``Timedelta`` values (never on rounded hours), so the documented
  boundaries are exact: two records exactly ``window`` apart are linked, one minute more is not.
- Records excluded on purpose from a link or a label set are counted in the :class:`QualityLog`
  (``dataset, stage, reason``); nothing is dropped silently.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .constants import ECG_SUPERCLASSES, MIMIC_CXR_CLASSES, SPLITS
from .errors import DataError

HOUR = pd.Timedelta(hours=1)

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

_ADM_REQUIRED = ("subject_id", "hadm_id", "admittime", "dischtime")


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def normalize_ids(values, strip_decimal: bool = True) -> pd.Series:
    """Return ids as ``str`` objects ("10000032"), keeping missing values as None (object dtype).

    Why: MIMIC-IV tables give ``subject_id`` as int, manifests as str, and a CSV column with gaps
    comes back as float (``10000032.0``); all three must join. ``strip_decimal`` also turns the string
    "10000032.0" into "10000032" (use False for free-form ids such as DICOM ids).
    """
    if isinstance(values, pd.Series):
        s = values
    elif isinstance(values, (pd.Index, np.ndarray, list, tuple)):
        s = pd.Series(values)
    else:
        s = pd.Series(list(values))
    if pd.api.types.is_bool_dtype(s):
        raise DataError(None, "ids must be integers or strings, got booleans")
    na = s.isna().to_numpy()
    v = s[~na]
    if pd.api.types.is_float_dtype(v):
        frac = v != np.floor(v)
        if frac.any():
            raise DataError(None, f"non-integer id(s), e.g. {v[frac].head(3).tolist()}")
        v = v.astype("int64")
    # normalise each distinct value once (ids repeat a lot: subjects over records)
    codes, uniques = pd.factorize(v)
    norm = np.array([_norm_id(x, strip_decimal) for x in uniques], dtype=object)
    arr = np.full(len(s), None, dtype=object)
    arr[~na] = norm[codes] if len(codes) else []
    return pd.Series(arr, index=s.index, name=s.name, dtype=object)


_DECIMAL_ZERO = re.compile(r"(\d+)\.0+")


def _norm_id(x, strip_decimal: bool) -> str:
    if isinstance(x, (bool, np.bool_)):
        raise DataError(None, f"ids must be integers or strings, got {x!r}")
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if x != np.floor(x):
            raise DataError(None, f"non-integer id {x!r}")
        return str(int(x))
    t = str(x).strip()
    if strip_decimal:
        m = _DECIMAL_ZERO.fullmatch(t)
        if m:
            t = m.group(1)
    return t


def _as_datetime(s: pd.Series, what: str) -> pd.Series:
    """Parse a time column (MIMIC strings 'YYYY-MM-DD HH:MM:SS') to datetime64; bad values are a DataError."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    try:
        return pd.to_datetime(s, errors="raise")
    except (ValueError, TypeError) as e:
        raise DataError(None, f"column {what!r} is not a datetime ({e})") from e


def _as_int64(s: pd.Series) -> pd.Series:
    """Nullable integer ids (hadm_id); str/float input is accepted."""
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64")
    return pd.to_numeric(s, errors="raise").astype("Int64")


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(what, f"missing column(s) {missing}; found {list(map(str, df.columns))}")


def _merge_by_subject(left: pd.DataFrame, right: pd.DataFrame, keep, max_rows: int = 4_000_000) -> pd.DataFrame:
    """Inner join on ``subject_id`` followed by the row filter ``keep(merged) -> bool mask``.

    Why chunked: the join is a per-subject cartesian product (records x admissions, CXR x ECG); on
    full MIMIC a few heavy subjects make it large. Subjects are grouped into chunks whose product stays
    below ``max_rows`` so memory is bounded, while each chunk is still one vectorised merge.
    """
    nl = left["subject_id"].value_counts()
    nr = right["subject_id"].value_counts()
    both = nl.index.intersection(nr.index)
    if len(both) == 0:
        m = left.iloc[:0].merge(right.iloc[:0], on="subject_id")
        return m
    prod = nl[both] * nr[both]
    if int(prod.sum()) <= max_rows:
        m = left.merge(right, on="subject_id")
        return m[keep(m).to_numpy(dtype=bool)].reset_index(drop=True)
    chunk = ((prod.cumsum() - 1) // max_rows).astype(int)
    lc, rc = left["subject_id"].map(chunk), right["subject_id"].map(chunk)
    parts = []
    for cid in np.unique(chunk.to_numpy()):
        m = left[lc == cid].merge(right[rc == cid], on="subject_id")
        parts.append(m[keep(m).to_numpy(dtype=bool)])
    return pd.concat(parts, ignore_index=True)


def prepare_admissions(admissions: pd.DataFrame, quality=None, stage: str = "admissions") -> pd.DataFrame:
    """Normalised copy of MIMIC-IV ``admissions``: str subject_id, Int64 hadm_id, datetime columns.

    Admissions without admittime or dischtime cannot be placed on the timeline: they are dropped and
    counted (``mimic_iv / <stage>``). Duplicate hadm_id is a DataError (a merge would double-count).
    Extra columns (admission_type, discharge_location, ...) are kept.
    """
    _require(admissions, _ADM_REQUIRED, "admissions")
    adm = admissions.copy()
    adm["subject_id"] = normalize_ids(adm["subject_id"])
    adm["hadm_id"] = _as_int64(adm["hadm_id"])
    for c in ("admittime", "dischtime", "deathtime", "edregtime", "edouttime"):
        if c in adm.columns:
            adm[c] = _as_datetime(adm[c], c)
    if adm["hadm_id"].isna().any() or adm["subject_id"].isna().any():
        raise DataError("admissions", "subject_id / hadm_id must not be empty")
    dup = adm["hadm_id"].duplicated()
    if dup.any():
        raise DataError("admissions", f"duplicate hadm_id, e.g. {adm.loc[dup, 'hadm_id'].head(3).tolist()}")
    bad = adm["admittime"].isna() | adm["dischtime"].isna()
    if quality is not None:
        quality.seen("mimic_iv", stage, len(adm))
        quality.exclude("mimic_iv", stage, "admission without admittime or dischtime",
                        records=adm.loc[bad, "hadm_id"].astype(str))
    return adm[~bad].reset_index(drop=True)


def _records(records: pd.DataFrame, what: str) -> pd.DataFrame:
    """record_id, subject_id (str), time (datetime64) of a manifest, row order kept."""
    _require(records, ("record_id", "subject_id", "time"), what)
    return pd.DataFrame({"record_id": normalize_ids(records["record_id"], strip_decimal=False).to_numpy(),
                         "subject_id": normalize_ids(records["subject_id"]).to_numpy(),
                         "time": _as_datetime(records["time"], "time").to_numpy()})


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
    rec = _records(records, dataset)
    out["subject_id"] = rec["subject_id"].to_numpy()
    adm = prepare_admissions(admissions)
    start = adm["admittime"]
    if use_edregtime and "edregtime" in adm.columns:
        start = adm[["admittime", "edregtime"]].min(axis=1)
    right = pd.DataFrame({"subject_id": adm["subject_id"], "hadm_id": adm["hadm_id"], "_start": start,
                          "_end": adm["dischtime"]})
    left = pd.DataFrame({"_pos": np.arange(len(rec)), "subject_id": rec["subject_id"], "time": rec["time"]})
    nat = left["time"].isna().to_numpy()
    cand = _merge_by_subject(left[~nat], right,
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
        rec = _records(df, m)
        rec = rec[rec["time"].notna()]
        cand = _merge_by_subject(
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


# --------------------------------------------------------------------------------------------------
# MIMIC-PAIR
# --------------------------------------------------------------------------------------------------
def mimic_pairs(cxr: pd.DataFrame, ecg: pd.DataFrame, window_hours: float = 24.0, policy: str = "nearest",
                quality=None, one_to_one: bool = False, hadm_decides: bool = True) -> pd.DataFrame:
    """MIMIC-PAIR: CXR-ECG pairs of the same visit.

    Candidate pairs (same subject):
    - ``link="hadm"``: both records carry the same hadm_id (from :func:`assign_admissions`); no time
      bound (the admission defines the visit).
    - ``link="time"``: ``|t_ecg - t_cxr| <= window_hours`` (inclusive). With ``hadm_decides`` (default,
      METHOD.md "link by hadm_id when both carry one; else ... within 24 h") a time link is only made
      when at most one of the two records has a hadm_id; two records of DIFFERENT admissions are never
      paired. ``hadm_decides=False`` follows the looser reading "same hadm_id, otherwise within the
      window" and also pairs records of different admissions taken within the window.
    ``hadm_id`` column in the inputs is optional (absent = time links only). NaT times never time-link.

    ``policy``:
    - ``"nearest"``: each CXR record keeps only its nearest candidate ECG (smallest |dt|; ties -> hadm
      link first, then the smaller ecg record_id). An ECG may serve several CXRs (e.g. the images of
      one study, or a study a few hours later) unless ``one_to_one=True``, which instead computes a
      greedy one-to-one matching in increasing |dt| (each CXR and each ECG used at most once; the
      same result as greedy matching on the sorted candidate list, computed by rounds of mutual
      nearest neighbours).
    - ``"all"``: every candidate pair (``one_to_one`` ignored).

    The pairing unit is the CXR record as given (one row of ``cxr``): pass one row per study if pairs
    should be per study.

    Returns ``cxr_record_id, ecg_record_id, subject_id, hadm_id (Int64, NA for time links), link,
    dt_hours`` (= t_ecg - t_cxr, signed), ``cxr_time, ecg_time``, sorted by subject, cxr, ecg.
    CXR/ECG records without a pair are counted in ``quality`` (dataset ``mimic_pair``) and by
    :func:`pair_counts`.
    """
    if policy not in ("nearest", "all"):
        raise ValueError(f"pair_policy must be 'nearest' or 'all', got {policy!r}")
    c = _records(cxr, "cxr").rename(columns={"record_id": "cxr_record_id", "time": "cxr_time"})
    e = _records(ecg, "ecg").rename(columns={"record_id": "ecg_record_id", "time": "ecg_time"})
    c["_hc"] = _as_int64(cxr["hadm_id"]).to_numpy() if "hadm_id" in cxr.columns else pd.NA
    e["_he"] = _as_int64(ecg["hadm_id"]).to_numpy() if "hadm_id" in ecg.columns else pd.NA
    c["_hc"], e["_he"] = c["_hc"].astype("Int64"), e["_he"].astype("Int64")
    window = pd.Timedelta(hours=float(window_hours))

    def keep(m):
        hc, he = m["_hc"], m["_he"]
        same = (hc.notna() & he.notna() & (hc == he)).fillna(False).astype(bool)
        within = ((m["ecg_time"] - m["cxr_time"]).abs() <= window).fillna(False).astype(bool)
        blocked = (hc.notna() & he.notna()) if hadm_decides else same
        return same | (within & ~blocked.fillna(False).astype(bool))

    cand = _merge_by_subject(c, e, keep)
    same = (cand["_hc"].notna() & cand["_he"].notna() & (cand["_hc"] == cand["_he"])).fillna(False).astype(bool)
    cand["link"] = np.where(same, "hadm", "time")
    cand["hadm_id"] = cand["_hc"].where(same, pd.NA).astype("Int64")
    delta = cand["ecg_time"] - cand["cxr_time"]
    cand["dt_hours"] = (delta / HOUR).astype(float)
    cand["_abs"] = delta.abs()
    cand["_lr"] = (~same).astype(int)
    cand = cand.sort_values(["_abs", "_lr", "cxr_record_id", "ecg_record_id"], kind="mergesort", na_position="last")
    if policy == "nearest":
        cand = _one_to_one(cand) if one_to_one else cand.drop_duplicates("cxr_record_id", keep="first")
    cols = ["cxr_record_id", "ecg_record_id", "subject_id", "hadm_id", "link", "dt_hours", "cxr_time", "ecg_time"]
    pairs = cand[cols].sort_values(["subject_id", "cxr_record_id", "ecg_record_id"]).reset_index(drop=True)
    if quality is not None:
        c_only = ~c["cxr_record_id"].isin(pairs["cxr_record_id"])
        e_only = ~e["ecg_record_id"].isin(pairs["ecg_record_id"])
        quality.seen("mimic_pair", "pairing (CXR)", len(c))
        quality.flag("mimic_pair", "pairing (CXR)", "CXR without a paired ECG (kept in MIMIC-CXR)",
                        records=c.loc[c_only, "cxr_record_id"])
        quality.seen("mimic_pair", "pairing (ECG)", len(e))
        quality.flag("mimic_pair", "pairing (ECG)", "ECG without a paired CXR (kept in MIMIC-ECG)",
                        records=e.loc[e_only, "ecg_record_id"])
    return pairs


def _one_to_one(cand: pd.DataFrame) -> pd.DataFrame:
    """Greedy one-to-one matching of a candidate list already sorted best-first.

    Rounds of mutual best matches: in each round every remaining CXR's best ECG and every ECG's best
    CXR are found; pairs that choose each other are kept and both records leave the pool. With a strict
    total order on candidates this equals sequential greedy matching but stays vectorised.
    """
    rem, chosen = cand, []
    while len(rem):
        bc = rem.drop_duplicates("cxr_record_id", keep="first")
        be = rem.drop_duplicates("ecg_record_id", keep="first")
        mutual = bc[bc.index.isin(be.index)]
        chosen.append(mutual)
        rem = rem[~rem["cxr_record_id"].isin(mutual["cxr_record_id"]) & ~rem["ecg_record_id"].isin(mutual["ecg_record_id"])]
    return pd.concat(chosen) if chosen else cand.iloc[:0]


def pair_counts(cxr: pd.DataFrame, ecg: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Counts for the MIMIC-PAIR report: pairs by link, CXR-only and ECG-only records."""
    cp = normalize_ids(cxr["record_id"], strip_decimal=False).isin(pairs["cxr_record_id"])
    ep = normalize_ids(ecg["record_id"], strip_decimal=False).isin(pairs["ecg_record_id"])
    return {"pairs": len(pairs), "pairs_hadm": int((pairs["link"] == "hadm").sum()),
            "pairs_time": int((pairs["link"] == "time").sum()),
            "cxr": len(cxr), "cxr_paired": int(cp.sum()), "cxr_only": int((~cp).sum()),
            "ecg": len(ecg), "ecg_paired": int(ep.sum()), "ecg_only": int((~ep).sum())}


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
    _require(admissions, ("subject_id", "hadm_id", "hospital_expire_flag"), "admissions")
    adm = admissions.copy()
    adm["subject_id"] = normalize_ids(adm["subject_id"])
    adm["hadm_id"] = _as_int64(adm["hadm_id"])
    flag = pd.to_numeric(adm["hospital_expire_flag"], errors="coerce")
    missing = flag.isna()
    if not flag[~missing].isin([0, 1]).all():
        raise DataError("admissions", f"hospital_expire_flag must be 0/1, got {sorted(flag[~missing].unique())}")
    dt = (_as_datetime(adm["deathtime"], "deathtime").notna() if "deathtime" in adm.columns
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
    _require(adm, ("hospital_expire_flag",), "admissions")
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
        _require(adm, ("admission_type",), "admissions")
        planned = {t.upper() for t in planned_types}
        event = ~adm["admission_type"].astype(object).fillna("").astype(str).str.strip().str.upper().isin(planned)
    else:
        event = pd.Series(True, index=adm.index)
    pos = pd.Series(np.where(event, np.arange(len(adm)), np.nan), index=adm.index)
    nxt = pos.groupby(adm["subject_id"]).shift(-1).groupby(adm["subject_id"]).bfill()
    return nxt.notna().to_numpy(), nxt.fillna(0).astype(int).to_numpy()


# --------------------------------------------------------------------------------------------------
# patient-level splits
# --------------------------------------------------------------------------------------------------
def _unit_hash(ids: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per id, a pure function of (seed, id)."""
    out = np.empty(len(ids), dtype=np.float64)
    for k, s in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).digest()
        out[k] = int.from_bytes(h, "big") / 2.0 ** 64
    return out


def _normalize_split(values: pd.Series) -> pd.Series:
    v = values.astype(object).where(values.notna(), None)
    v = v.map(lambda x: None if x is None else {"validate": "valid", "val": "valid"}.get(str(x).strip().lower(),
                                                                                          str(x).strip().lower()))
    bad = set(v.dropna().unique()) - set(SPLITS)
    if bad:
        raise DataError("official split", f"unknown split value(s) {sorted(bad)}; expected {SPLITS} or 'validate'")
    return v


def patient_splits(subject_ids_by_source: Mapping[str, Iterable], fractions=(0.7, 0.1, 0.2), seed: int = 0,
                   official=None) -> pd.DataFrame:
    """ONE patient-level split for all MIMIC sources (CXR, ECG, MIMIC-IV): a subject is in one split only.

    Assignment is hash based: ``u = blake2b(f"{seed}:{subject_id}")`` mapped to [0, 1), then train if
    ``u < f_train``, valid if ``u < f_train + f_valid``, else test. Why not a seeded permutation: a
    subject's split depends only on (seed, subject_id), so adding a source or more patients never moves
    existing patients between splits (caches and trained models stay valid), and every source agrees
    without coordination. Cost: fractions are met in expectation (binomial noise), not exactly.

    ``official``: optional subject -> split (a Series indexed by subject, a dict, or a DataFrame with
    ``subject_id, split``, e.g. the MIMIC-CXR manifest). Subjects with a non-empty official split keep
    it ('validate' -> 'valid'); the rest are assigned by hash. A subject with two different official
    splits is a DataError (the official split is patient-disjoint).

    Returns ``subject_id (str), split, assigned ('official' | 'random'), in_<source> (bool)`` sorted
    by subject_id.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers (train, valid, test), got {fractions}")
    f = f / f.sum()
    per_source = {name: set(normalize_ids(pd.Series(list(ids))).dropna()) for name, ids in subject_ids_by_source.items()}
    subjects = sorted(set().union(*per_source.values())) if per_source else []
    out = pd.DataFrame({"subject_id": pd.Series(subjects, dtype=object)})
    u = _unit_hash(out["subject_id"], seed)
    out["split"] = np.where(u < f[0], "train", np.where(u < f[0] + f[1], "valid", "test"))
    out["assigned"] = "random"
    if official is not None:
        if isinstance(official, pd.DataFrame):
            off = pd.DataFrame({"subject_id": normalize_ids(official["subject_id"]).to_numpy(),
                                "split": _normalize_split(official["split"]).to_numpy()})
        else:
            off = pd.Series(official) if not isinstance(official, pd.Series) else official
            off = pd.DataFrame({"subject_id": normalize_ids(pd.Series(off.index)).to_numpy(),
                                "split": _normalize_split(off.reset_index(drop=True)).to_numpy()})
        off = off.dropna().drop_duplicates()
        dup = off["subject_id"].duplicated(keep=False)
        if dup.any():
            raise DataError("official split", f"subject(s) in two official splits, e.g. "
                                              f"{off.loc[dup, 'subject_id'].head(3).tolist()}")
        m = out["subject_id"].map(off.set_index("subject_id")["split"])
        has = m.notna()
        out.loc[has, "split"] = m[has]
        out.loc[has, "assigned"] = "official"
    for name, ids in per_source.items():
        out[f"in_{name}"] = out["subject_id"].isin(ids)
    return out


def apply_splits(df: pd.DataFrame, splits: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame:
    """Copy of ``df`` with ``split`` set (added or overridden) from the patient-level ``splits``.

    A subject missing from ``splits`` is a DataError: every MIMIC record must get the shared split,
    a silent NA would drop it from all splits.
    """
    out = df.copy()
    sid = normalize_ids(out[column])
    m = sid.map(splits.assign(subject_id=normalize_ids(splits["subject_id"])).set_index("subject_id")["split"])
    if m.isna().any():
        raise DataError("splits", f"{int(m.isna().sum())} row(s) whose subject has no split, e.g. "
                                  f"{sid[m.isna()].head(3).tolist()}")
    out["split"] = m.to_numpy()
    return out


# --------------------------------------------------------------------------------------------------
# orchestration and Table 1
# --------------------------------------------------------------------------------------------------
def _cfg(cfg, key):
    from .config import SCHEMA

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
