"""Shared normalisation for every linking step: ids as str, times as datetime64, hadm_id as Int64, admissions.

It exists so that the record, pair, label and split modules all read their inputs the same way (a silent
int/str id mismatch would make every join empty) and share the one chunked per-subject join.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import DataError

HOUR = pd.Timedelta(hours=1)

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


def as_datetime(s: pd.Series, what: str) -> pd.Series:
    """Parse a time column (MIMIC strings 'YYYY-MM-DD HH:MM:SS') to datetime64; bad values are a DataError."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    try:
        return pd.to_datetime(s, errors="raise")
    except (ValueError, TypeError) as e:
        raise DataError(None, f"column {what!r} is not a datetime ({e})") from e


def as_int64(s: pd.Series) -> pd.Series:
    """Nullable integer ids (hadm_id); str/float input is accepted."""
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64")
    return pd.to_numeric(s, errors="raise").astype("Int64")


def require_columns(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(what, f"missing column(s) {missing}; found {list(map(str, df.columns))}")


def merge_by_subject(left: pd.DataFrame, right: pd.DataFrame, keep, max_rows: int = 4_000_000) -> pd.DataFrame:
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
    require_columns(admissions, _ADM_REQUIRED, "admissions")
    adm = admissions.copy()
    adm["subject_id"] = normalize_ids(adm["subject_id"])
    adm["hadm_id"] = as_int64(adm["hadm_id"])
    for c in ("admittime", "dischtime", "deathtime", "edregtime", "edouttime"):
        if c in adm.columns:
            adm[c] = as_datetime(adm[c], c)
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


def record_frame(records: pd.DataFrame, what: str) -> pd.DataFrame:
    """record_id, subject_id (str), time (datetime64) of a manifest, row order kept."""
    require_columns(records, ("record_id", "subject_id", "time"), what)
    return pd.DataFrame({"record_id": normalize_ids(records["record_id"], strip_decimal=False).to_numpy(),
                         "subject_id": normalize_ids(records["subject_id"]).to_numpy(),
                         "time": as_datetime(records["time"], "time").to_numpy()})
