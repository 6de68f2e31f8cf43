"""WFDB header parsing and signal loading that survive the real files' oddities.

Why not only ``wfdb.rdheader``: on the real sample files (../shared/realdata) wfdb 4.3

* fails with ``HeaderSyntaxError`` on the Challenge 2020 Georgia headers, whose record line names the
  record ``E00009.mat`` (extension included);
* silently mis-parses the Challenge date ``12-May-2020 12:33:59`` (``base_time`` becomes 00:00:12,
  ``base_date`` None);
* accepts a header that lists fewer signal lines than it declares, and ``rdrecord`` then fails with a bare
  ``IndexError`` (the loaders name the file, record and counts instead).

:func:`parse_header` reads the text itself (record line, signal lines, ``#Key: value`` comments with or
without a space after ``#``) and raises a :class:`DataError` naming the file and the problem.
:func:`load_signal` returns physical signals (mV) for the three on-disk forms the readers produce:

* ``wfdb``          a standard WFDB record (``path`` without extension) -> ``wfdb.rdrecord``
* ``challenge_mat`` PhysioNet/CinC Challenge ``X.hea`` + ``X.mat`` (``val`` int16, leads x samples);
  physical = (digital - baseline) / gain from OUR header parse (works for the Georgia 2020 files)
* ``cpsc_mat``      original CPSC2018 ``A0001.mat`` (MATLAB struct ``ECG{sex,age,data}``, mV, 500 Hz)

This module is the suite's only ECG file reader; ``preprocess.ecg`` (pure signal transforms and the
preprocessing chain) imports it, never the other way round.

PTB-XL copies inside the PhysioNet/CinC Challenge 2020 (records ``HR00001``...) hold PTB-XL's samples
(1000 adu/mV) under headers that declare 200 adu/mV, so read as declared they are 5x too large. The loaders
and :func:`medbind_lib.datasets.challenge.read` correct them by default (``fix_ptbxl_gain``; see
:func:`ptbxl_copy_gain`); Challenge 2021 copies declare 1000 and are left as they are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import wfdb

from ..constants import LEADS
from ..errors import DataError
from ..quality import QualityLog

_CANON = {name.upper(): name for name in LEADS}
_GAIN = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(\S+))?$")
_NUM = re.compile(r"^[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_EXTS = (".mat", ".dat", ".hea")
# Physical-unit factors to mV (WFDB headers state units per signal; ECG databases use mV, a few uV).
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}
# Challenge 2020 names its PTB-XL copies HR + the 5-digit ecg_id (folder names vary between releases:
# WFDB_PTBXL, ptb-xl, ...), so the record name, not the folder, identifies them.
PTBXL_COPY_NAME = re.compile(r"^HR\d{5}$")
PTBXL_COPY_DECLARED_GAIN = 200.0   # what the Challenge 2020 headers say
PTBXL_GAIN = 1000.0                # what PTB-XL's own headers say, for the same samples
PTBXL_GAIN_REASON = "PTB-XL copy declares 200 adu/mV for 1000 adu/mV samples: gain corrected (kept)"


def canonical_lead(name: str) -> str:
    """Lead name in the suite's canonical spelling (AVR -> aVR); unknown names unchanged."""
    return _CANON.get(str(name).strip().upper(), str(name).strip())


@dataclass
class Header:
    path: str                       # the .hea file
    record_name: str                # as written on the record line, extension stripped
    name_had_extension: bool        # record line named e.g. 'E00009.mat' (Challenge 2020 Georgia)
    n_sig: int
    fs: float
    sig_len: int | None
    base_time: str | None
    base_date: str | None
    base_datetime: datetime | None  # None when absent or not parseable
    files: list = field(default_factory=list)
    fmts: list = field(default_factory=list)
    gains: list = field(default_factory=list)      # adu per physical unit (0 in the file -> 200, WFDB rule)
    baselines: list = field(default_factory=list)
    units: list = field(default_factory=list)
    init_values: list = field(default_factory=list)
    sig_names: list = field(default_factory=list)
    comments: list = field(default_factory=list)
    fields: dict = field(default_factory=dict)     # 'Age' -> '74', 'Dx' -> '59118001,...'

    @property
    def lead_names(self) -> list[str]:
        return [canonical_lead(n) for n in self.sig_names]


def _parse_datetime(t: str | None, d: str | None) -> datetime | None:
    if d is None:
        return None
    tt = (t or "00:00:00").split(".")[0]
    if tt.count(":") == 1:
        tt = "00:" + tt
    for fmt in ("%d/%m/%Y", "%d-%b-%Y", "%Y-%m-%d"):
        if d is None:
            break
        try:
            return datetime.strptime(f"{d} {tt}", f"{fmt} %H:%M:%S")
        except ValueError:
            continue
    return None


def header_path(path) -> Path:
    p = Path(path)
    return p if p.suffix == ".hea" else p.with_name(p.name + ".hea")


def parse_header(path, text: str | None = None) -> Header:
    """Parse ``path`` (the record path with or without ``.hea``).

    Anything malformed is a DataError naming the file, the record (the file's stem) and the problem.
    """
    hea = header_path(path)
    rec = hea.stem

    def bad(problem: str) -> DataError:
        return DataError(hea, problem, record=rec)

    if text is None:
        if not hea.is_file():
            raise bad("WFDB header file not found")
        raw = hea.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad("WFDB header is not UTF-8/ASCII text") from None
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln.split("#")[0].strip() for ln in lines if ln and not ln.startswith("#")]
    body = [ln for ln in body if ln]
    if not body:
        raise bad("malformed WFDB header: no record line")
    tok = body[0].split()
    if len(tok) < 2:
        raise bad(f"malformed WFDB header record line {body[0]!r}")
    name = tok[0]
    if "/" in name:
        raise bad(f"multi-segment WFDB records are not supported ({name!r})")
    had_ext = name.lower().endswith(_EXTS)
    if had_ext:
        name = name[:-4]
    try:
        n_sig = int(tok[1])
        fs = float(_NUM.match(tok[2]).group(0)) if len(tok) > 2 else 250.0
        sig_len = int(tok[3]) if len(tok) > 3 else None
    except (ValueError, AttributeError):
        raise bad(f"malformed WFDB header record line {body[0]!r}") from None
    if n_sig < 0 or fs <= 0:
        raise bad(f"malformed WFDB header record line {body[0]!r} (signals {n_sig}, fs {fs})")
    base_time = tok[4] if len(tok) > 4 else None
    base_date = tok[5] if len(tok) > 5 else None
    if base_time is not None and ":" not in base_time and (base_date is None or ":" in base_date):
        base_time, base_date = base_date, base_time   # Challenge 2020 writes 'DD-Mon-YYYY HH:MM:SS'
    h = Header(path=str(hea), record_name=name, name_had_extension=had_ext, n_sig=n_sig, fs=fs,
               sig_len=sig_len, base_time=base_time, base_date=base_date,
               base_datetime=_parse_datetime(base_time, base_date), comments=comments)
    sig_lines = body[1:]
    if len(sig_lines) < n_sig:
        raise bad(f"header declares {n_sig} signals but lists {len(sig_lines)} signal lines")
    for i, ln in enumerate(sig_lines[:n_sig]):
        t = ln.split()
        if len(t) < 2:
            raise bad(f"malformed WFDB header signal line {i + 1}: {ln!r}")
        gain, baseline, units = 200.0, 0, "mV"
        if len(t) > 2:
            m = _GAIN.match(t[2])
            if not m:
                raise bad(f"malformed WFDB header signal line {i + 1}: gain field {t[2]!r}")
            try:
                gain = float(m.group(1))
            except ValueError:
                raise bad(f"malformed WFDB header signal line {i + 1}: gain {t[2]!r}") from None
            gain = gain if gain != 0 else 200.0
            adc_zero = int(t[4]) if len(t) > 4 and t[4].lstrip("-").isdigit() else 0
            baseline = int(m.group(2)) if m.group(2) is not None else adc_zero
            units = m.group(3) or "mV"
        h.files.append(t[0])
        h.fmts.append(t[1])
        h.gains.append(gain)
        h.baselines.append(baseline)
        h.units.append(units)
        h.init_values.append(int(t[5]) if len(t) > 5 and t[5].lstrip("-").isdigit() else None)
        h.sig_names.append(" ".join(t[8:]) if len(t) > 8 else f"ch{i + 1}")
    for c in comments:
        if ":" in c:
            k, v = c.split(":", 1)
            h.fields[k.strip()] = v.strip()
    return h


def check_leads(h: Header, expected=LEADS) -> str | None:
    """None when the header's leads (by canonical name) are exactly ``expected``; else the problem."""
    names = h.lead_names
    if len(set(names)) != len(names):
        return f"duplicate lead names {names}"
    if set(names) != set(expected):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        return f"unexpected lead set {names} (missing {missing}, unexpected {extra})"
    return None


def ptbxl_copy_gain(record: str, gains) -> float | None:
    """PTB-XL's true gain (1000 adu/mV) for a Challenge 2020 PTB-XL copy, else None (header gain is right).

    A copy is a record named ``HR`` + 5 digits whose header declares 200 adu/mV for every lead: the
    Challenge 2020 conversion kept PTB-XL's samples but wrote the WFDB default gain, which makes the signal
    5x too large. Challenge 2021 copies declare 1000 and need nothing.
    """
    gains = [float(g) for g in gains]
    if PTBXL_COPY_NAME.match(str(record)) and gains and all(g == PTBXL_COPY_DECLARED_GAIN for g in gains):
        return PTBXL_GAIN
    return None


def _gain_to_use(record: str, path, declared, gain_override, fix_ptbxl_gain: bool,
                 quality: QualityLog | None, dataset: str) -> float | None:
    """The adu/mV gain replacing the header's (None: keep the header's). An explicit override wins; a
    corrected PTB-XL copy is counted in ``quality`` (stage ``signal``) so the fix is never silent."""
    if gain_override is not None:
        if not float(gain_override) > 0:
            raise DataError(path, f"gain_override must be > 0, got {gain_override!r}", record=record)
        return float(gain_override)
    fixed = ptbxl_copy_gain(record, declared) if fix_ptbxl_gain else None
    if fixed is not None and quality is not None:
        quality.flag(dataset, "signal", PTBXL_GAIN_REASON, records=[record])
    return fixed


def record_name(path) -> str:
    """The record name of a path with or without extension (``.../00001_hr.hea`` -> ``00001_hr``)."""
    return Path(strip_ext(path)).name


def strip_ext(path) -> str:
    """wfdb wants the record path without extension; accept ``x``, ``x.hea``, ``x.dat`` or ``x.mat``."""
    p = str(path)
    for ext in (".hea", ".dat", ".mat"):
        if p.endswith(ext):
            return p[: -len(ext)]
    return p


def _read_named_with_extension(rec_path: str):
    """Challenge 2020 Georgia headers name the record ``E00009.mat`` on the record line, which wfdb
    rejects. Read such a record through a temporary corrected header (the signal file is linked, not
    copied); any other header error is re-raised unchanged."""
    import os
    import tempfile

    hea = Path(rec_path + ".hea")
    lines = hea.read_text(errors="replace").splitlines()
    first = lines[0].split() if lines else []
    if not first or not first[0].lower().endswith((".mat", ".dat")):
        raise wfdb.io.header.HeaderSyntaxError("invalid syntax in record line")
    lines[0] = " ".join([first[0].rsplit(".", 1)[0]] + first[1:])
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / hea.stem
        stem.with_suffix(".hea").write_text("\n".join(lines) + "\n")
        for f in {ln.split()[0] for ln in lines[1:] if ln.strip() and not ln.startswith("#")}:
            src = hea.parent / f
            if src.exists():
                os.symlink(src.resolve(), Path(tmp) / f)
        return wfdb.rdrecord(str(stem), physical=True)


def _rdrecord(rec_path: str, name: str):
    """``wfdb.rdrecord`` with every failure a DataError naming the record. When wfdb fails, our own header
    parser names the actual problem where it can (wfdb 4.3 says only "list index out of range" for a
    header that lists fewer signal lines than it declares)."""
    try:
        try:
            return wfdb.rdrecord(rec_path, physical=True)
        except wfdb.io.header.HeaderSyntaxError:
            return _read_named_with_extension(rec_path)
    except FileNotFoundError as e:
        raise DataError(getattr(e, "filename", None) or rec_path, "file not found", record=name) from e
    except Exception as e:  # wfdb raises ValueError, HeaderSyntaxError, IndexError ... on bad files
        try:
            parse_header(rec_path)
        except DataError as why:
            raise DataError(why.file, why.problem, record=name) from e
        raise DataError(rec_path, f"unreadable WFDB record ({type(e).__name__}: {e})", record=name) from e


def _load_wfdb(path, gain_override, fix_ptbxl_gain, quality, dataset):
    rec_path = strip_ext(path)
    name = record_name(rec_path)
    rec = _rdrecord(rec_path, name)
    sig = rec.p_signal
    if sig is None or sig.ndim != 2 or sig.shape[0] == 0:
        raise DataError(rec_path, "record has no samples", record=name)
    if rec.fs is None or not np.isfinite(rec.fs) or rec.fs <= 0:
        raise DataError(rec_path, f"invalid sampling frequency {rec.fs!r}", record=name)
    sig = sig.astype(np.float64, copy=False)
    gain = _gain_to_use(name, rec_path, rec.adc_gain, gain_override, fix_ptbxl_gain, quality, dataset)
    if gain is not None:
        # p = (d - baseline) / g_header  =>  (d - baseline) / g_new = p * g_header / g_new
        sig = sig * (np.asarray(rec.adc_gain, dtype=np.float64) / gain)
    units = [str(u or "").strip().lower() for u in (rec.units or [""] * sig.shape[1])]
    unknown = sorted({u for u in units if u not in _UNIT_TO_MV})
    if unknown:
        raise DataError(rec_path, f"unsupported physical units {unknown} (expected mV)", record=name)
    factors = np.array([_UNIT_TO_MV[u] for u in units])
    if np.any(factors != 1.0):
        sig = sig * factors
    return sig.astype(np.float32), float(rec.fs), list(rec.sig_name)


def _load_challenge_mat(path, gain_override, fix_ptbxl_gain, quality, dataset):
    import scipy.io as sio
    base = Path(strip_ext(path))
    h = parse_header(base)
    mat = base.with_name(base.name + ".mat")
    try:
        val = sio.loadmat(str(mat))["val"]
    except Exception as e:
        raise DataError(mat, f"cannot read Challenge .mat ({type(e).__name__}: {e})", record=h.record_name) from e
    if val.shape[0] != h.n_sig:
        raise DataError(mat, f"'val' has {val.shape[0]} rows but the header declares {h.n_sig} signals",
                        record=h.record_name)
    gain = _gain_to_use(h.record_name, h.path, h.gains, gain_override, fix_ptbxl_gain, quality, dataset)
    gains = np.asarray(h.gains, float) if gain is None else np.full(h.n_sig, gain)
    sig = (val.astype(np.float64) - np.asarray(h.baselines, float)[:, None]) / gains[:, None]
    return sig.T.astype(np.float32), h.fs, list(h.sig_names)


def load_record(path, gain_override: float | None = None, signal_format: str = "wfdb",
                fix_ptbxl_gain: bool = True, quality: QualityLog | None = None, dataset: str = "ecg"):
    """Physical signal ``float32 [n_samples, n_leads]`` (mV), sampling rate and lead names AS WRITTEN.

    ``signal_format`` is the manifest's: ``wfdb`` (any WFDB record, including Challenge ``.hea`` + ``.mat``,
    read with wfdb), ``challenge_mat`` (Challenge records through our header parser) or ``cpsc_mat``.
    Samples the format marks invalid come back as NaN. ``gain_override`` (adu/mV) replaces the header's
    gain for every signal. ``fix_ptbxl_gain`` (default True) corrects Challenge 2020 PTB-XL copies from
    their declared 200 to PTB-XL's 1000 adu/mV (:func:`ptbxl_copy_gain`), counting each in ``quality``
    under ``dataset``. Any failure (missing file, malformed header, truncated signal) is a DataError
    naming the file and record.
    """
    if signal_format == "wfdb":
        return _load_wfdb(path, gain_override, fix_ptbxl_gain, quality, dataset)
    if signal_format == "challenge_mat":
        return _load_challenge_mat(path, gain_override, fix_ptbxl_gain, quality, dataset)
    if signal_format == "cpsc_mat":
        ecg = read_cpsc_mat(path)
        return ecg["data"].T.astype(np.float32), 500.0, list(LEADS)
    raise ValueError(f"unknown signal_format {signal_format!r}; expected wfdb, challenge_mat or cpsc_mat")


def load_signal(path, signal_format: str = "wfdb", gain_override: float | None = None,
                fix_ptbxl_gain: bool = True, quality: QualityLog | None = None, dataset: str = "challenge"):
    """:func:`load_record` with canonical lead names (AVR -> aVR); the readers' manifests use this spelling."""
    sig, fs, names = load_record(path, gain_override, signal_format, fix_ptbxl_gain, quality, dataset)
    return sig, fs, [canonical_lead(n) for n in names]


def read_cpsc_mat(path) -> dict:
    """Original CPSC2018 ``A0001.mat``: {'sex': 'Male'|'Female'|None, 'age': float, 'data': [12, N] mV}."""
    import scipy.io as sio
    path = Path(path)
    try:
        m = sio.loadmat(str(path))
        e = m["ECG"][0, 0]
        data = np.asarray(e["data"], dtype=np.float64)
    except Exception as ex:
        raise DataError(path, f"not an original CPSC2018 .mat with struct ECG{{sex,age,data}} "
                              f"({type(ex).__name__}: {ex})") from ex
    if data.ndim != 2 or data.shape[0] != 12:
        raise DataError(path, f"ECG.data has shape {data.shape}; expected 12 x N")

    def scalar(x):
        x = np.asarray(x).ravel()
        return x[0] if x.size else None

    sex = scalar(e["sex"]) if "sex" in e.dtype.names else None
    age = scalar(e["age"]) if "age" in e.dtype.names else None
    try:
        age = float(age) if age is not None else np.nan
    except (TypeError, ValueError):
        age = np.nan
    return {"sex": str(sex).strip().capitalize() if sex is not None else None, "age": age, "data": data}
