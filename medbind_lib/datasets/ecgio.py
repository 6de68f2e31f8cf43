"""WFDB header parsing and signal loading that survive the real files' oddities.

Why not only ``wfdb.rdheader``: on the real sample files (../shared/realdata) wfdb 4.3

* fails with ``HeaderSyntaxError`` on the Challenge 2020 Georgia headers, whose record line names the
  record ``E00009.mat`` (extension included);
* silently mis-parses the Challenge date ``12-May-2020 12:33:59`` (``base_time`` becomes 00:00:12,
  ``base_date`` None).

:func:`parse_header` reads the text itself (record line, signal lines, ``#Key: value`` comments with or
without a space after ``#``) and raises a :class:`DataError` naming the file and the problem.
:func:`load_signal` returns physical signals (mV) for the three on-disk forms the readers produce:

* ``wfdb``          a standard WFDB record (``path`` without extension) -> ``wfdb.rdrecord``
* ``challenge_mat`` PhysioNet/CinC Challenge ``X.hea`` + ``X.mat`` (``val`` int16, leads x samples);
  physical = (digital - baseline) / gain from OUR header parse (works for the Georgia 2020 files)
* ``cpsc_mat``      original CPSC2018 ``A0001.mat`` (MATLAB struct ``ECG{sex,age,data}``, mV, 500 Hz)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..constants import LEADS
from ..errors import DataError

_CANON = {name.upper(): name for name in LEADS}
_GAIN = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(\S+))?$")
_NUM = re.compile(r"^[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_EXTS = (".mat", ".dat", ".hea")


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
    """Parse ``path`` (the record path with or without ``.hea``). DataError on anything malformed."""
    hea = header_path(path)
    if text is None:
        if not hea.is_file():
            raise DataError(hea, "WFDB header file not found")
        raw = hea.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(hea, "WFDB header is not UTF-8/ASCII text") from None
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln.split("#")[0].strip() for ln in lines if ln and not ln.startswith("#")]
    body = [ln for ln in body if ln]
    if not body:
        raise DataError(hea, "malformed WFDB header: no record line")
    tok = body[0].split()
    if len(tok) < 2:
        raise DataError(hea, f"malformed WFDB header record line {body[0]!r}")
    name = tok[0]
    if "/" in name:
        raise DataError(hea, f"multi-segment WFDB records are not supported ({name!r})")
    had_ext = name.lower().endswith(_EXTS)
    if had_ext:
        name = name[:-4]
    try:
        n_sig = int(tok[1])
        fs = float(_NUM.match(tok[2]).group(0)) if len(tok) > 2 else 250.0
        sig_len = int(tok[3]) if len(tok) > 3 else None
    except (ValueError, AttributeError):
        raise DataError(hea, f"malformed WFDB header record line {body[0]!r}") from None
    if n_sig < 0 or fs <= 0:
        raise DataError(hea, f"malformed WFDB header record line {body[0]!r} (signals {n_sig}, fs {fs})")
    base_time = tok[4] if len(tok) > 4 else None
    base_date = tok[5] if len(tok) > 5 else None
    if base_time is not None and ":" not in base_time and (base_date is None or ":" in base_date):
        base_time, base_date = base_date, base_time   # Challenge 2020 writes 'DD-Mon-YYYY HH:MM:SS'
    h = Header(path=str(hea), record_name=name, name_had_extension=had_ext, n_sig=n_sig, fs=fs,
               sig_len=sig_len, base_time=base_time, base_date=base_date,
               base_datetime=_parse_datetime(base_time, base_date), comments=comments)
    sig_lines = body[1:]
    if len(sig_lines) < n_sig:
        raise DataError(hea, f"malformed WFDB header: declares {n_sig} signals but has {len(sig_lines)} "
                             "signal lines")
    for i, ln in enumerate(sig_lines[:n_sig]):
        t = ln.split()
        if len(t) < 2:
            raise DataError(hea, f"malformed WFDB header signal line {i + 1}: {ln!r}")
        gain, baseline, units = 200.0, 0, "mV"
        if len(t) > 2:
            m = _GAIN.match(t[2])
            if not m:
                raise DataError(hea, f"malformed WFDB header signal line {i + 1}: gain field {t[2]!r}")
            try:
                gain = float(m.group(1))
            except ValueError:
                raise DataError(hea, f"malformed WFDB header signal line {i + 1}: gain {t[2]!r}") from None
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


def load_signal(path, signal_format: str = "wfdb", gain_override: float | None = None):
    """Physical signal ``float32 [n_samples, n_leads]`` (mV), sampling rate and canonical lead names.

    ``gain_override`` replaces the header gain (adu/mV) for copies that declare a wrong one
    (Challenge 2020 PTB-XL copies declare 200 where the original PTB-XL says 1000; same samples).
    """
    path = Path(path)
    if signal_format == "wfdb":  # one WFDB reading path for the whole suite (units, gains, bad files)
        from ..preprocess.ecg import load_record

        sig, fs, names = load_record(path, gain_override=gain_override)
        return sig, fs, [canonical_lead(n) for n in names]
    if signal_format == "challenge_mat":
        import scipy.io as sio
        h = parse_header(path)
        mat = path.with_name(path.name + ".mat") if path.suffix != ".mat" else path
        try:
            val = sio.loadmat(str(mat))["val"]
        except Exception as e:
            raise DataError(mat, f"cannot read Challenge .mat ({type(e).__name__}: {e})") from e
        if val.shape[0] != h.n_sig:
            raise DataError(mat, f"'val' has {val.shape[0]} rows but the header declares {h.n_sig} signals")
        gains = np.asarray(h.gains, float) if gain_override is None else np.full(h.n_sig, float(gain_override))
        sig = (val.astype(np.float64) - np.asarray(h.baselines, float)[:, None]) / gains[:, None]
        return sig.T.astype(np.float32), h.fs, h.lead_names
    if signal_format == "cpsc_mat":
        ecg = read_cpsc_mat(path)
        return ecg["data"].T.astype(np.float32), 500.0, list(LEADS)
    raise ValueError(f"unknown signal_format {signal_format!r}; expected wfdb, challenge_mat or cpsc_mat")


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
