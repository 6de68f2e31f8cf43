"""PhysioNet/CinC Challenge 2020/2021 folders (any source: CPSC, CPSC-extra, Georgia, PTB-XL, Chapman, Ningbo, ...).

Layout: directories (searched recursively) of ``X.hea`` + ``X.mat`` (``val`` int16, leads x samples) with
comment lines ``#Age: 74``, ``#Sex: Male``, ``#Dx: 59118001,...`` (2021: ``# Age:`` with a space).

``read(root, quality=None, strict=False, expected_leads=LEADS, expected_fs=None, dataset="challenge",
require_mat=True, fix_ptbxl_gain=True)`` returns one row per header:

| column | meaning |
|---|---|
| dataset, record_id, subject_id, path, time, split | common columns; record_id = subject_id = record name (no patient ids in the Challenge data); path = record path without extension; time = NaT (the header date is the file-conversion date, e.g. all CPSC records say 12-May-2020, not an acquisition time); split = NA |
| source | first folder under ``root`` (e.g. ``cpsc_2018``, ``georgia``) or '' |
| signal_format | ``challenge_mat`` (load with :func:`medbind_lib.datasets.ecgio.load_signal`) |
| wfdb_readable | whether ``wfdb.rdheader`` accepts the header (False for Challenge 2020 Georgia) |
| fs, n_samples, n_leads, lead_names | from the header; lead_names canonical (aVR, aVL, aVF) in file order |
| gain, units | adu per unit of the first lead as loaded, and its units string as written (2021 PTB-XL: ``mv``) |
| gains | list of per-lead gains as loaded |
| gain_corrected | True for a Challenge 2020 PTB-XL copy whose declared 200 adu/mV is replaced by 1000 |
| age (float, NaN unknown), sex ('Male'/'Female'/None) | header comments |
| dx | list of SNOMED-CT code strings (empty list for a blank ``#Dx:``) |
| header_date | the date/time text of the record line ('' if absent); header_datetime parsed (NaT if absent) |

Bad input: a malformed header, an unexpected lead set or sampling rate (when ``expected_fs`` is set) or a
missing ``.mat`` is a DataError naming the record when ``strict``; otherwise the record is excluded and
counted in ``quality`` (stage ``header``). A non-UTF-8 header counts as malformed.

PTB-XL copies (``HR00001``...) in Challenge 2020 declare 200 adu/mV for samples stored at PTB-XL's 1000
adu/mV, so they would load 5x too large. With ``fix_ptbxl_gain`` (default) their gains are 1000, the
loaders (``ecgio.load_signal``) apply the same fix, and each is counted in ``quality`` (stage ``header``,
kept). Challenge 2021 copies declare 1000 and are unchanged. See :func:`ecgio.ptbxl_copy_gain`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import LEADS
from ..errors import DataError
from ..io import check_unique
from ..quality import QualityLog
from ._common import finish_manifest, quality_or_new, require_dir
from .ecgio import PTBXL_GAIN_REASON, Header, check_leads, parse_header, ptbxl_copy_gain

COLUMNS = ("source", "signal_format", "wfdb_readable", "fs", "n_samples", "n_leads", "lead_names", "gain",
           "units", "gains", "gain_corrected", "age", "sex", "dx", "header_date",
           "header_datetime")


def _age(v) -> float:
    try:
        a = float(str(v).strip())
        return a if np.isfinite(a) and a >= 0 else np.nan
    except (TypeError, ValueError):
        return np.nan


def _sex(v) -> str | None:
    s = str(v or "").strip().lower()
    return {"male": "Male", "m": "Male", "female": "Female", "f": "Female"}.get(s)


def parse_dx(v) -> list[str]:
    return [c.strip() for c in str(v or "").split(",") if c.strip()]


def _wfdb_ok(path: Path) -> bool:
    import wfdb
    try:
        wfdb.rdheader(str(path))
        return True
    except Exception:
        return False


def record_row(h: Header, rec_path: Path, source: str, fix_ptbxl_gain: bool = True) -> dict:
    fixed = ptbxl_copy_gain(h.record_name, h.gains) if fix_ptbxl_gain else None
    gains = [fixed] * len(h.gains) if fixed is not None else list(h.gains)
    return dict(record_id=h.record_name, subject_id=h.record_name, path=str(rec_path), time=pd.NaT,
                split=None, source=source, signal_format="challenge_mat", wfdb_readable=_wfdb_ok(rec_path),
                fs=h.fs, n_samples=h.sig_len, n_leads=h.n_sig, lead_names=h.lead_names,
                gain=gains[0] if gains else np.nan, units=h.units[0] if h.units else "",
                gains=gains, gain_corrected=fixed is not None, age=_age(h.fields.get("Age")),
                sex=_sex(h.fields.get("Sex")), dx=parse_dx(h.fields.get("Dx")),
                header_date=" ".join(x for x in (h.base_date, h.base_time) if x),
                header_datetime=h.base_datetime)


def read(root, quality: QualityLog | None = None, strict: bool = False, expected_leads=LEADS,
         expected_fs: float | None = None, dataset: str = "challenge", require_mat: bool = True,
         fix_ptbxl_gain: bool = True) -> pd.DataFrame:
    """Read every ``*.hea`` under ``root`` (recursively) into a manifest; see the module docstring."""
    root = require_dir(root, "Challenge")
    q = quality_or_new(quality)
    heads = sorted(root.rglob("*.hea"))
    q.seen(dataset, "header", len(heads))
    rows = []

    def bad(rec, file, reason, detail):
        if strict:
            raise DataError(file, detail, record=rec)
        q.exclude(dataset, "header", reason, records=[rec])

    for hea in heads:
        rec_path = hea.with_suffix("")
        rel = hea.relative_to(root)
        source = rel.parts[0] if len(rel.parts) > 1 else ""
        try:
            h = parse_header(hea)
        except DataError as e:
            bad(rec_path.name, hea, "malformed header", e.problem)
            continue
        if h.record_name != rec_path.name:
            bad(rec_path.name, hea, "record name differs from file name",
                f"record line names {h.record_name!r}, file is {hea.name!r}")
            continue
        if expected_leads is not None:
            problem = check_leads(h, expected_leads)
            if problem:
                bad(rec_path.name, hea, "unexpected lead set", problem)
                continue
        if expected_fs is not None and float(h.fs) != float(expected_fs):
            bad(rec_path.name, hea, "unexpected sampling rate", f"sampling rate {h.fs} Hz, expected {expected_fs}")
            continue
        missing = sorted(f for f in set(h.files) if not (hea.parent / f).is_file())
        if require_mat and missing:
            bad(rec_path.name, hea, "signal file missing", f"signal file(s) {missing} not found")
            continue
        rows.append(record_row(h, rec_path, source, fix_ptbxl_gain))
    df = pd.DataFrame(rows, columns=["record_id", "subject_id", "path", "time", "split", *COLUMNS])
    check_unique(df, "record_id", root, what="record name (two folders hold the same record)")
    df["header_datetime"] = pd.to_datetime(df["header_datetime"]).astype("datetime64[ns]")
    for c in ("fs", "age", "gain"):
        df[c] = df[c].astype(float)
    df["n_samples"] = df["n_samples"].astype("Int64")
    df["n_leads"] = df["n_leads"].astype("Int64")
    df["gain_corrected"] = df["gain_corrected"].astype(bool)
    q.flag(dataset, "header", PTBXL_GAIN_REASON, records=df.loc[df["gain_corrected"], "record_id"])
    return finish_manifest(df, dataset)
