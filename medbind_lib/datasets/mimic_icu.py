"""MIMIC-IV 2.2 event tables for MEDCSP's ICU tasks: icu/{icustays, chartevents, inputevents, procedureevents,
outputevents, d_items} and hosp/{labevents, d_labitems}.

``read_events(root, table, *, itemids=None, hadm_ids=None, stay_ids=None, unlinked_subject_ids=None,
check_stays=False, columns=None, chunksize=None, quality=None, progress=None) -> DataFrame`` and
``read_icustays(root, quality=None) -> DataFrame``.

* ``root`` is the MIMIC-IV root holding ``hosp/`` and ``icu/``; a table is ``name.csv`` or ``name.csv.gz``
  (``.csv`` first). A missing table is a DataError naming the table and both paths looked at.
* Columns are selected by NAME (header matched case-insensitively: the demo writes ``ORIGINALAMOUNT``) and
  returned lower-case, in the order asked. ``columns=None`` reads the table's minimal default
  (``TABLES[table].default``); a requested column the file lacks is a DataError listing what it has.
* Always read in chunks of ``chunksize`` rows (default ``DEFAULT_CHUNKSIZE``) with ``usecols``: chartevents
  and labevents are tens of GB. Filters (``itemids``, ``hadm_ids``, ``stay_ids``) are applied per chunk
  BEFORE the costly conversions, so a filtered read only parses the rows it keeps. A progress bar
  (``runtime.progress``) is shown for chartevents / labevents (``progress=True/False`` overrides).
  ``unlinked_subject_ids`` (with ``hadm_ids``) also keeps the rows whose hadm_id is EMPTY and whose subject_id is
  among them: labevents rows without an admission (real MIMIC-IV has many) that a caller wants to count or join
  by time; a plain ``hadm_ids`` filter never returns a row without hadm_id.
* ``check_stays`` (ICU event tables): rows whose stay_id is empty or in no ``icustays`` row are EXCLUDED and
  counted (stage = table; among the rows of the requested ``itemids``, whatever the stay/admission filters: a
  stay filter would otherwise drop them unseen). The check reads icustays' stay_id column.
* Text is UTF-8; a stray non-UTF-8 byte in a field (one bad byte in tens of GB of chartevents) is read as
  latin-1 (0xE9 -> 'é', as ``io.decode_text`` does for the reports) and the rows holding such a field are
  counted, kept, under ``io.LATIN1_FALLBACK_REASON`` (stage = table, examples name file and row). Only the
  columns read are decoded; a stray byte in an id or time column still ends in that column's DataError.
* Types: ids (subject_id, hadm_id, stay_id, itemid, ...) nullable Int64 (labevents.hadm_id is often empty);
  charttime, storetime, starttime, endtime, intime, outtime datetime64[ns] (a non-empty value that does not
  parse is a DataError naming file, column and data row, 1-based); numeric value columns (valuenum, value of
  procedure/output events, amount, rate, ...) float64; text columns str.
* Counted, never fatal (``QualityLog``, dataset ``mimic_iv``, stage = table): a numeric value that does not
  parse is kept as NaN and flagged; rows whose itemid is not in ``d_items`` / ``d_labitems`` are kept and
  flagged, as are requested item ids absent from the dictionary or with no rows; rows with
  endtime < starttime (input/procedure events) are EXCLUDED and counted (a negative duration is an entry
  error, and its starttime cannot be trusted as an onset). ``seen`` counts the rows that matched the filters.
* icustays: a duplicated stay_id is a DataError (a silent merge would double-count a stay); stays with
  outtime < intime, or without intime/outtime, are excluded and counted; ``read_icustays`` adds
  ``los_hours`` (outtime - intime).
"""
from __future__ import annotations

import codecs
import warnings
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import LATIN1_FALLBACK_REASON, check_unique
from ..quality import QualityLog
from ..runtime import progress as progress_bar
from ._common import quality_or_new, require_dir

DATASET = "mimic_iv"
DEFAULT_CHUNKSIZE = 2_000_000

ID_COLS = frozenset({"subject_id", "hadm_id", "stay_id", "itemid", "caregiver_id", "labevent_id",
                     "specimen_id", "orderid", "linkorderid"})
TIME_COLS = frozenset({"charttime", "storetime", "starttime", "endtime", "intime", "outtime"})
# numeric columns wherever they occur (the per-table ``numeric`` adds the value column of that table)
NUMERIC_COLS = frozenset({"valuenum", "amount", "rate", "los", "patientweight", "totalamount", "originalamount",
                          "originalrate", "ref_range_lower", "ref_range_upper", "lownormalvalue",
                          "highnormalvalue", "warning", "isopenbag", "continueinnextdept"})


@dataclass(frozen=True)
class TableSpec:
    folder: str
    default: tuple                      # minimal columns read when ``columns`` is None
    numeric: tuple = ()                 # value columns parsed to float (``value`` is text in chart/lab events)
    big: bool = False                   # tens of GB on the real data: progress bar by default
    dictionary: str | None = None       # item dictionary the itemids are checked against
    span: tuple | None = None           # (start, end) columns: end < start is a counted exclusion


_ICU_IDS = ("subject_id", "hadm_id", "stay_id")
TABLES = {
    "icustays": TableSpec("icu", _ICU_IDS + ("first_careunit", "last_careunit", "intime", "outtime", "los"),
                          ("los",)),
    "chartevents": TableSpec("icu", _ICU_IDS + ("charttime", "itemid", "value", "valuenum", "valueuom"),
                             ("valuenum",), big=True, dictionary="d_items"),
    "inputevents": TableSpec("icu", _ICU_IDS + ("starttime", "endtime", "itemid", "amount", "amountuom", "rate",
                                                "rateuom"), ("amount", "rate"), dictionary="d_items",
                             span=("starttime", "endtime")),
    "procedureevents": TableSpec("icu", _ICU_IDS + ("starttime", "endtime", "itemid", "value", "valueuom"),
                                 ("value",), dictionary="d_items", span=("starttime", "endtime")),
    "outputevents": TableSpec("icu", _ICU_IDS + ("charttime", "itemid", "value", "valueuom"), ("value",),
                              dictionary="d_items"),
    "d_items": TableSpec("icu", ("itemid", "label", "abbreviation", "linksto", "category", "unitname",
                                 "param_type")),
    "labevents": TableSpec("hosp", ("subject_id", "hadm_id", "itemid", "charttime", "value", "valuenum",
                                    "valueuom"), ("valuenum",), big=True, dictionary="d_labitems"),
    "d_labitems": TableSpec("hosp", ("itemid", "label", "fluid", "category")),
}


# ------------------------------------------------------------------------------------------------ locating
def table_path(root, table: str) -> Path:
    """``root/<folder>/<table>.csv`` or ``.csv.gz``; a DataError naming the table and both paths otherwise."""
    spec = _spec(table)
    root = require_dir(root, "MIMIC-IV")
    folder = root / spec.folder
    tried = [folder / f"{table}.csv", folder / f"{table}.csv.gz"]
    for p in tried:
        if p.is_file():
            return p
    raise DataError(folder / f"{table}.csv[.gz]",
                    f"MIMIC-IV table {table!r} not found (looked for {tried[0]} and {tried[1]})")


def _spec(table: str) -> TableSpec:
    if table not in TABLES:
        raise ValueError(f"unknown MIMIC-IV event table {table!r}; known: {sorted(TABLES)}")
    return TABLES[table]


def _header(path: Path) -> dict:
    """lower-case column name -> the file's spelling (the demo's procedureevents writes ORIGINALAMOUNT)."""
    try:
        cols = pd.read_csv(path, nrows=0).columns
    except Exception as e:  # empty or undecodable file
        raise DataError(path, f"cannot read CSV header ({type(e).__name__}: {e})") from e
    return {str(c).lower(): str(c) for c in cols}


# ------------------------------------------------------------------------------------------------ reading
def _id_set(values, name: str):
    if values is None:
        return None
    if np.isscalar(values):
        values = [values]
    try:
        return pd.Index(np.asarray(list(values), dtype="int64"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be integers, got {list(values)[:3]}...") from e


# Stray bytes: the C parser decodes each field of a read column and calls this handler on bytes that are not
# UTF-8. Each becomes a private-use SENTINEL (U+F700 + byte: never in MIMIC-IV text, and unlike the latin-1
# letters never written as valid UTF-8 next to it), so the rows touched are found exactly; they are then turned
# into the latin-1 letters. ``_RECODE_CALLS`` tells which chunks to look at (any thread's call only costs a look).
_ENCODING_ERRORS = "medbind_mimic_icu_sentinel"
_SENTINEL = 0xF700
_SENTINELS = "[\uf780-\uf7ff]"
_TO_LATIN1 = {_SENTINEL + b: b for b in range(0x80, 0x100)}
_RECODE_CALLS = [0]


def _sentinel_bytes(err: UnicodeDecodeError):
    _RECODE_CALLS[0] += 1
    return "".join(chr(_SENTINEL + b) for b in err.object[err.start:err.end]), err.end


codecs.register_error(_ENCODING_ERRORS, _sentinel_bytes)


def _chunks(path: Path, usecols: list, header: dict, chunksize: int, q: QualityLog, table: str):
    """Raw chunks (ids Int64, everything else text), columns renamed lower-case, index = row number."""
    dtype = {header[c]: ("Int64" if c in ID_COLS else str) for c in usecols}
    reader = pd.read_csv(path, usecols=[header[c] for c in usecols], dtype=dtype, chunksize=chunksize,
                         keep_default_na=True, encoding="utf-8", encoding_errors=_ENCODING_ERRORS)
    start = 0
    while True:
        calls = _RECODE_CALLS[0]
        try:
            chunk = next(reader)
        except StopIteration:
            return
        except (ValueError, pd.errors.ParserError) as e:
            raise _bad_chunk(path, usecols, header, start, chunksize, e) from e
        start += len(chunk)
        chunk = chunk.rename(columns={header[c]: c for c in usecols})
        yield _recode(chunk, path, q, table) if _RECODE_CALLS[0] != calls else chunk


def _recode(chunk: pd.DataFrame, path: Path, q: QualityLog, table: str) -> pd.DataFrame:
    """Sentinels -> latin-1 letters; the rows holding one are counted (kept, the file and rows named)."""
    hit = np.zeros(len(chunk), dtype=bool)
    for c in chunk.columns:
        if c in ID_COLS:
            continue
        m = chunk[c].str.contains(_SENTINELS, regex=True, na=False).to_numpy(dtype=bool)
        if m.any():
            chunk.loc[m, c] = chunk.loc[m, c].str.translate(_TO_LATIN1)
            hit |= m
    q.flag(DATASET, table, LATIN1_FALLBACK_REASON, n=int(hit.sum()),
           records=[f"{path.name} row {int(i) + 1}" for i in chunk.index[hit][:3]])
    return chunk


def _bad_chunk(path, usecols, header, start, chunksize, err) -> DataError:
    """Re-read the failing chunk as text to name the line and column of the first non-integer id."""
    ids = [c for c in usecols if c in ID_COLS]
    try:
        raw = pd.read_csv(path, usecols=[header[c] for c in ids], dtype=str, skiprows=range(1, start + 1),
                          nrows=chunksize, encoding="utf-8", encoding_errors=_ENCODING_ERRORS)
    except Exception:
        return DataError(path, f"cannot parse rows {start + 1}-{start + chunksize} ({type(err).__name__}: {err})")
    for c in ids:
        col = raw[header[c]]
        bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            return DataError(path, f"column {c!r}: non-integer id {col.iloc[i]!r}", record=f"row {start + i + 1}")
    return DataError(path, f"cannot parse rows {start + 1}-{start + chunksize} ({type(err).__name__}: {err})")


def _isin(col: pd.Series, ids) -> np.ndarray:
    return col.isin(ids).fillna(False).to_numpy(dtype=bool)


def _filter(chunk: pd.DataFrame, filters: dict, unlinked=None) -> pd.DataFrame:
    """Rows matching every filter; ``unlinked`` (subject ids) widens the hadm_id filter to the rows of those
    subjects whose hadm_id is empty."""
    keep = None
    for col, ids in filters.items():
        if ids is None:
            continue
        m = _isin(chunk[col], ids)
        if col == "hadm_id" and unlinked is not None:
            m |= chunk["hadm_id"].isna().to_numpy(dtype=bool) & _isin(chunk["subject_id"], unlinked)
        keep = m if keep is None else keep & m
    return chunk if keep is None else chunk[keep]


def _known_stays(root) -> pd.Index:
    """Every stay_id of icustays (stays the icustays reader later excludes included: their events are theirs)."""
    st = read_events(root, "icustays", columns=["stay_id"], quality=QualityLog(), progress=False)
    return pd.Index(st["stay_id"].dropna().astype("int64"))


def _drop_unknown_stays(chunk: pd.DataFrame, known: pd.Index | None, itemids, path: Path, q: QualityLog,
                        table: str) -> pd.DataFrame:
    """Rows (of the requested items) with an empty stay_id or one in no icustays row: excluded and counted."""
    if known is None:
        return chunk
    asked = np.ones(len(chunk), bool) if itemids is None else _isin(chunk["itemid"], itemids)
    empty = chunk["stay_id"].isna().to_numpy(dtype=bool) & asked
    unknown = ~empty & asked & ~_isin(chunk["stay_id"], known)
    rows = lambda m: [f"{path.name} row {int(i) + 1}" for i in chunk.index[m][:3]]  # noqa: E731
    q.exclude(DATASET, table, "stay_id empty (in no ICU stay)", n=int(empty.sum()), records=rows(empty))
    q.exclude(DATASET, table, "stay_id in no icustays row (in no ICU stay)", n=int(unknown.sum()),
              records=[f"{r}: stay_id {v}" for r, v in zip(rows(unknown), chunk.loc[unknown, "stay_id"][:3])])
    return chunk[~(empty | unknown)]


def _convert(chunk: pd.DataFrame, spec: TableSpec, path: Path, q: QualityLog, table: str) -> pd.DataFrame:
    """Datetimes (DataError on a bad value) and numeric values (bad ones -> NaN, flagged)."""
    out = chunk
    for c in out.columns:
        if c in TIME_COLS:
            raw = out[c]
            v = pd.to_datetime(raw, format="ISO8601", errors="coerce")
            bad = v.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
            if bad.any():
                i = bad.to_numpy().nonzero()[0][0]
                raise DataError(path, f"column {c!r}: unparseable datetime {raw.iloc[i]!r}",
                                record=f"row {int(out.index[i]) + 1}")
            out[c] = v.astype("datetime64[ns]")
        elif c in spec.numeric or c in NUMERIC_COLS:
            raw = out[c]
            v = pd.to_numeric(raw, errors="coerce").astype("float64")
            bad = v.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
            if bad.any():
                q.flag(DATASET, table, f"{c} not numeric (kept as NaN)", n=int(bad.sum()),
                       records=[f"{path.name} row {int(i) + 1}: {raw[i]!r}" for i in out.index[bad][:3]])
            out[c] = v
    return out


def _drop_negative_spans(df: pd.DataFrame, spec: TableSpec, path: Path, q: QualityLog, table: str):
    if spec.span is None:
        return df
    start, end = spec.span
    neg = (df[end] < df[start]).fillna(False).to_numpy(dtype=bool)
    if neg.any():
        q.exclude(DATASET, table, f"{end} before {start} (negative duration)", n=int(neg.sum()),
                  records=[f"{path.name} row {int(i) + 1}" for i in df.index[neg][:3]])
    return df[~neg]


def _item_dictionary(root, spec: TableSpec) -> pd.Index | None:
    """Item ids of the table's dictionary; None (with a warning) when the dictionary is absent."""
    if spec.dictionary is None:
        return None
    try:
        d = read_events(root, spec.dictionary, columns=["itemid"], progress=False)
    except DataError as e:
        warnings.warn(f"item ids not checked against {spec.dictionary}: {e}")
        return None
    return pd.Index(d["itemid"].dropna().astype("int64").unique())


def _check_items(df, table, spec, known, itemids, q: QualityLog) -> None:
    """Flag rows whose itemid is unknown, and requested ids unknown or without rows (counted, not fatal)."""
    if known is not None and "itemid" in df:
        unknown = ~df["itemid"].isin(known).fillna(False).to_numpy(dtype=bool)
        if unknown.any():
            q.flag(DATASET, table, f"itemid not in {spec.dictionary} (kept)", n=int(unknown.sum()),
                   records=[str(i) for i in df.loc[unknown, "itemid"].unique()[:3]])
    if itemids is not None:
        if known is not None:
            missing = [int(i) for i in itemids if i not in known]
            q.flag(DATASET, table, f"requested itemid not in {spec.dictionary}", records=missing)
        present = set(df["itemid"].dropna().astype("int64"))
        absent = [int(i) for i in itemids if i not in present]
        q.flag(DATASET, table, "requested itemid has no rows", records=absent)


def read_events(root, table: str, *, itemids=None, hadm_ids=None, stay_ids=None, unlinked_subject_ids=None,
                check_stays: bool = False, columns=None, chunksize: int | None = None,
                quality: QualityLog | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Rows of one MIMIC-IV table, filtered and typed chunk by chunk (conventions: module docstring)."""
    spec = _spec(table)
    path = table_path(root, table)
    q = quality_or_new(quality)
    chunksize = DEFAULT_CHUNKSIZE if chunksize is None else int(chunksize)
    if chunksize < 1:
        raise ValueError(f"chunksize must be >= 1, got {chunksize}")
    header = _header(path)
    want = [c.lower() for c in (columns if columns is not None else spec.default)]
    filters = {"itemid": _id_set(itemids, "itemids"), "hadm_id": _id_set(hadm_ids, "hadm_ids"),
               "stay_id": _id_set(stay_ids, "stay_ids")}
    unlinked = _id_set(unlinked_subject_ids, "unlinked_subject_ids")
    if unlinked is not None and filters["hadm_id"] is None:
        raise ValueError("unlinked_subject_ids widens a hadm_ids filter: give hadm_ids too")
    needed = [c for c, ids in filters.items() if ids is not None]
    needed += (["subject_id"] if unlinked is not None else []) + (["stay_id"] if check_stays else [])
    needed += list(spec.span or ()) + (["itemid"] if spec.dictionary else [])
    for c in needed:
        if c not in header:
            raise DataError(path, f"cannot filter/check by {c!r}: {table} has no such column "
                                  f"(columns: {sorted(header)})")
    missing = [c for c in want if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {sorted(header)}")
    usecols = want + [c for c in dict.fromkeys(needed) if c not in want]

    known = _known_stays(root) if check_stays else None
    parts, matched = [], 0
    show = spec.big if progress is None else progress
    with progress_bar(None, enabled=show, desc=f"read {table}", unit="rows", unit_scale=True) as bar:
        for chunk in _chunks(path, usecols, header, chunksize, q, table):
            bar.update(len(chunk))
            chunk = _drop_unknown_stays(chunk, known, filters["itemid"], path, q, table)
            kept = _filter(chunk, filters, unlinked)
            matched += len(kept)
            if len(kept) or not parts:          # keep one (possibly empty) chunk as the dtype template
                kept = _convert(kept, spec, path, q, table)
                parts.append(_drop_negative_spans(kept, spec, path, q, table))
    df = pd.concat(parts) if len(parts) > 1 else parts[0]
    q.seen(DATASET, table, matched)
    _check_items(df, table, spec, _item_dictionary(root, spec), filters["itemid"], q)
    if table == "icustays":
        df = _check_stays(df, path, q)
    if table in ("d_items", "d_labitems"):
        check_unique(df, "itemid", path, what="itemid")
    return df[want].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ icustays
def _check_stays(df: pd.DataFrame, path: Path, q: QualityLog) -> pd.DataFrame:
    """Duplicated stay_id: DataError; no intime/outtime or outtime < intime: excluded and counted."""
    if "stay_id" in df:
        check_unique(df, "stay_id", path, what="stay_id")
    if not {"intime", "outtime"} <= set(df.columns):
        return df
    no_time = (df["intime"].isna() | df["outtime"].isna()).to_numpy()
    back = (df["outtime"] < df["intime"]).fillna(False).to_numpy(dtype=bool)
    ids = df["stay_id"].astype(str) if "stay_id" in df else pd.Series(df.index.astype(str), index=df.index)
    q.exclude(DATASET, "icustays", "no intime or outtime", records=ids[no_time].tolist())
    q.exclude(DATASET, "icustays", "outtime before intime", records=ids[back].tolist())
    return df[~(no_time | back)]


_STAY_OPTIONAL = ("first_careunit", "last_careunit", "los")     # read when present (not needed by the tasks)


def read_icustays(root, quality: QualityLog | None = None) -> pd.DataFrame:
    """ICU stays with their times and ``los_hours``; bad stays counted in ``quality`` (module docstring)."""
    header = _header(table_path(root, "icustays"))
    cols = [c for c in TABLES["icustays"].default if c in header or c not in _STAY_OPTIONAL]
    df = read_events(root, "icustays", columns=cols, quality=quality, progress=False)
    df["los_hours"] = (df["outtime"] - df["intime"]).dt.total_seconds() / 3600.0
    return df
