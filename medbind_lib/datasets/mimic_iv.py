"""MIMIC-IV 2.x/3.x hosp + icu tables and MIMIC-IV-Note discharge notes (tables, not a manifest).

``read_tables(mimic_iv_root, note_root=None, tables=DEFAULT_TABLES, quality=None) -> dict[str, DataFrame]``

* Tables are found under ``hosp/``, ``icu/`` (and ``note/`` of ``note_root``) as ``.csv`` or ``.csv.gz``.
* Known tables (``SPECS``) are read by column NAME: required columns must exist (DataError listing the
  missing ones), optional columns are kept when present (version drift 2.0/2.2/3.1: ``admit_provider_id``,
  ``form_rx``, ... optional; ``ethnicity`` (v1) is renamed ``race``). Other table names are read whole.
* Datetimes parsed to datetime64[ns]: admittime, dischtime, deathtime, edregtime, edouttime, intime,
  outtime, charttime, storetime, starttime, stoptime, chartdate, transfertime, ...; ``dod`` is a date
  (datetime64[ns] at midnight). A non-empty value that does not parse is a DataError naming the column.
* IDs: subject_id, hadm_id, stay_id as nullable Int64; icd_code, ndc, gsn, formulary_drug_cd, poe_id,
  note_id, drg_code as str (leading zeros kept); icd_version Int64.
* Uniqueness checked: admissions.hadm_id, patients.subject_id, icustays.stay_id, discharge.note_id.

Discharge notes (``discharge``) are optional. Policy: ``note_root=None`` -> ``discharge`` is returned as an
EMPTY frame with its columns (and a ``UserWarning``) when it is requested; a ``note_root`` that is given but
does not exist or lacks ``note/discharge.csv[.gz]`` is a DataError naming the expected path. The default
``tables`` include ``discharge`` only when ``note_root`` is given.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..io import check_unique, find_table, read_table
from ..quality import QualityLog
from ._common import quality_or_new, require_dir

DATETIME_COLS = {"admittime", "dischtime", "deathtime", "edregtime", "edouttime", "intime", "outtime",
                 "charttime", "storetime", "starttime", "stoptime", "endtime", "chartdate", "storedate",
                 "transfertime", "dod"}
DATE_ONLY = {"dod", "chartdate", "storedate"}
INT_IDS = ("subject_id", "hadm_id", "stay_id", "icd_version", "seq_num", "hospital_expire_flag", "anchor_age",
           "anchor_year", "note_seq", "itemid", "poe_seq", "pharmacy_id", "transfer_id")
STR_IDS = ("icd_code", "ndc", "gsn", "formulary_drug_cd", "poe_id", "note_id", "drg_code", "order_provider_id",
           "admit_provider_id", "dose_val_rx", "form_val_disp", "value", "text")

# name: (folder, required, optional, unique key)
SPECS = {
    "admissions": ("hosp", ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                            "admission_location", "discharge_location", "hospital_expire_flag"],
                   ["admit_provider_id", "insurance", "language", "marital_status", "race", "ethnicity",
                    "edregtime", "edouttime"], "hadm_id"),
    "patients": ("hosp", ["subject_id", "gender", "anchor_age", "anchor_year", "dod"], ["anchor_year_group"],
                 "subject_id"),
    "diagnoses_icd": ("hosp", ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"], [], None),
    "d_icd_diagnoses": ("hosp", ["icd_code", "icd_version", "long_title"], [], ["icd_code", "icd_version"]),
    "procedures_icd": ("hosp", ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"], ["chartdate"], None),
    "prescriptions": ("hosp", ["subject_id", "hadm_id", "starttime", "stoptime", "drug_type", "drug"],
                      ["pharmacy_id", "poe_id", "poe_seq", "order_provider_id", "formulary_drug_cd", "gsn", "ndc",
                       "prod_strength", "form_rx", "dose_val_rx", "dose_unit_rx", "form_val_disp",
                       "form_unit_disp", "doses_per_24_hrs", "route"], None),
    "icustays": ("icu", ["subject_id", "hadm_id", "stay_id", "intime", "outtime"],
                 ["first_careunit", "last_careunit", "los"], "stay_id"),
    "discharge": ("note", ["note_id", "subject_id", "hadm_id", "charttime", "text"],
                  ["note_type", "note_seq", "storetime"], "note_id"),
}
DEFAULT_TABLES = ("admissions", "patients", "diagnoses_icd", "d_icd_diagnoses", "prescriptions", "icustays")


def _convert(df: pd.DataFrame, path) -> pd.DataFrame:
    for c in df.columns:
        if c in DATETIME_COLS:
            raw = df[c]
            fmt = "%Y-%m-%d" if c in DATE_ONLY else "ISO8601"
            v = pd.to_datetime(raw, format=fmt, errors="coerce")
            if c in DATE_ONLY:
                bad = v.isna() & raw.notna()
                if bad.any():  # tolerate a date written with a time of day
                    v[bad] = pd.to_datetime(raw[bad], format="ISO8601", errors="coerce").dt.normalize()
            bad = v.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
            if bad.any():
                raise DataError(path, f"column {c!r}: unparseable datetime value(s) "
                                      f"{raw[bad].astype(str).head(3).tolist()}")
            df[c] = v.astype("datetime64[ns]")
        elif c in INT_IDS:
            v = pd.to_numeric(df[c], errors="coerce")
            bad = v.isna() & df[c].notna()
            if bad.any():
                raise DataError(path, f"column {c!r}: non-integer value(s) {df.loc[bad, c].head(3).tolist()}")
            df[c] = v.round().astype("Int64")
    return df


def _read_one(name: str, path: Path) -> pd.DataFrame:
    if name in SPECS:
        _, req, opt, key = SPECS[name]
        dtype = {c: str for c in STR_IDS}
        df = read_table(path, req, opt, dtype=dtype)
        if "ethnicity" in df and "race" not in df:
            df = df.rename(columns={"ethnicity": "race"})
    else:
        try:
            header = pd.read_csv(path, nrows=0).columns
        except Exception as e:
            raise DataError(path, f"cannot read CSV header ({type(e).__name__}: {e})") from e
        df = read_table(path, list(header), dtype={c: str for c in STR_IDS})
        key = None
    df = _convert(df, path)
    if key is not None:
        check_unique(df, key, path, what=str(key))
    return df


def empty_table(name: str) -> pd.DataFrame:
    _, req, opt, _ = SPECS[name]
    return _convert(pd.DataFrame({c: pd.Series(dtype=object) for c in req + [o for o in opt if o != "ethnicity"]}),
                    name)


def read_tables(mimic_iv_root, note_root=None, tables=None, quality: QualityLog | None = None) -> dict:
    """Read the requested MIMIC-IV tables; see the module docstring for the conventions."""
    root = require_dir(mimic_iv_root, "MIMIC-IV")
    q = quality_or_new(quality)
    if tables is None:
        tables = DEFAULT_TABLES + (("discharge",) if note_root is not None else ())
    out = {}
    for name in tables:
        folder = SPECS[name][0] if name in SPECS else None
        if folder == "note":
            if note_root is None:
                warnings.warn("MIMIC-IV-Note root not given: 'discharge' notes are empty (texts unavailable)")
                q.seen("mimic_iv", "discharge", 0)
                out[name] = empty_table(name)
                continue
            nroot = require_dir(note_root, "MIMIC-IV-Note")
            path = find_table(nroot / "note", name)
        elif folder is not None:
            path = find_table(root / folder, name)
        else:
            found = [p for p in (root / "hosp", root / "icu")
                     if (p / f"{name}.csv").exists() or (p / f"{name}.csv.gz").exists()]
            if not found:
                raise DataError(root / "hosp" / f"{name}.csv[.gz]",
                                "table not found under hosp/ or icu/ (looked for .csv and .csv.gz)")
            path = find_table(found[0], name)
        df = _read_one(name, path)
        q.seen("mimic_iv", name, len(df))
        out[name] = df
    return out
