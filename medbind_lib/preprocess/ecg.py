"""ECG preprocessing: WFDB record -> canonical 12 x (fs * seconds) array in mV (MEDBind "Data preparation").

Chain (``preprocess_record``): load (``datasets.ecgio.load_record``: physical units from the header
gains) -> map leads BY NAME to ``constants.LEADS`` -> handle NaN/inf samples -> anti-aliased polyphase
resampling -> first N seconds -> zero-pad. Normalisation is a separate step because ``zscore_lead_train``
needs training-set statistics (``fit_norm_stats`` / ``apply_norm``), as in the PTB-XL benchmark's global
scaler. Files are read only by ``datasets.ecgio``, which imports nothing from ``preprocess`` (one loading
path, one import direction); ``load_record`` is re-exported here for existing callers.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Mapping

import numpy as np
from scipy.signal import resample_poly

from ..constants import LEADS
from ..datasets.ecgio import load_record
from ..datasets.ecgio import record_name as _record_name
from ..datasets.ecgio import strip_ext as _strip_ext
from ..errors import DataError

# Defaults of the profile keys this module reads (the same as medbind_lib.config.SCHEMA, plus
# ecg_fix_ptbxl_gain, read with this default where a profile does not set it).
_DEFAULTS = {"ecg_fs": 100, "ecg_seconds": 10.0, "ecg_nan_policy": "interpolate",
             "ecg_max_nan_frac": 0.05, "ecg_gain_override": {}, "ecg_fix_ptbxl_gain": True}
NORM_METHODS = ("zscore_lead_train", "zscore_record", "none")
EPS = 1e-6


class InvalidSignal(DataError):
    """Too many NaN/inf samples (or an all-invalid lead): the record is excluded and counted by the caller."""


def to_canonical_leads(signal: np.ndarray, lead_names, record=None) -> np.ndarray:
    """Reorder columns BY NAME (case-insensitive, so AVR == aVR) into ``constants.LEADS``.

    MIMIC-IV-ECG stores aVF before aVL; PTB-XL/CPSC do not, so indices are never trusted. Extra leads
    (PTB Diagnostic's Frank vx, vy, vz) are dropped; a missing or duplicated standard lead is a DataError.
    """
    keys = [str(n).strip().lower() for n in lead_names]
    if len(keys) != signal.shape[1]:
        raise DataError(None, f"{signal.shape[1]} signal columns but {len(keys)} lead names", record=record)
    dup = sorted({k for k in keys if keys.count(k) > 1 and k in {l.lower() for l in LEADS}})
    if dup:
        raise DataError(None, f"duplicated leads {dup}", record=record)
    missing = [l for l in LEADS if l.lower() not in keys]
    if missing:
        raise DataError(None, f"unexpected lead set {list(lead_names)}: missing {missing}", record=record)
    idx = [keys.index(l.lower()) for l in LEADS]
    return np.ascontiguousarray(signal[:, idx])


def handle_invalid(signal: np.ndarray, policy: str = "interpolate", max_frac: float = 0.05,
                   record=None) -> np.ndarray:
    """Replace NaN/inf samples by per-lead linear interpolation (MERL), or exclude the record.

    The fraction is judged per lead (the WORST lead counts), so one half-empty lead cannot hide in an
    otherwise clean record. A lead that is entirely invalid, a worst-lead fraction above ``max_frac``,
    or any invalid sample under ``policy="exclude"`` raises ``InvalidSignal`` (a DataError) for the
    caller to count in the QualityLog. Leading/trailing gaps take the nearest valid value (np.interp).
    """
    if policy not in ("interpolate", "exclude"):
        raise ValueError(f"ecg_nan_policy must be interpolate or exclude, got {policy!r}")
    bad = ~np.isfinite(signal)
    if not bad.any():
        return signal
    frac = bad.mean(axis=0)
    if np.any(frac == 1.0):
        leads = [LEADS[i] if signal.shape[1] == 12 else str(i) for i in np.flatnonzero(frac == 1.0)]
        raise InvalidSignal(None, f"all samples invalid (NaN/inf) in lead(s) {leads}", record=record)
    if policy == "exclude":
        raise InvalidSignal(None, f"{int(bad.sum())} invalid (NaN/inf) samples and ecg_nan_policy=exclude",
                            record=record)
    if frac.max() > max_frac:
        raise InvalidSignal(None, f"invalid (NaN/inf) fraction {frac.max():.3f} in the worst lead "
                                  f"> ecg_max_nan_frac {max_frac}", record=record)
    out = signal.copy()
    t = np.arange(signal.shape[0])
    for j in np.flatnonzero(bad.any(axis=0)):
        ok = ~bad[:, j]
        out[bad[:, j], j] = np.interp(t[bad[:, j]], t[ok], signal[ok, j])
    return out


def resample_ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> Fraction:
    """up/down = fs_out/fs_in as a small rational (257 Hz -> 100/257; float rates approximated)."""
    if not (np.isfinite(fs_in) and np.isfinite(fs_out)) or fs_in <= 0 or fs_out <= 0:
        raise DataError(None, f"sampling rates must be > 0, got fs_in={fs_in!r}, fs_out={fs_out!r}")
    return (Fraction(fs_out) / Fraction(fs_in)).limit_denominator(max_denominator)


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Anti-aliased polyphase resampling along time (axis 0) with ``scipy.signal.resample_poly``.

    resample_poly applies a Kaiser-windowed FIR low-pass at the new Nyquist (paper: 500 -> 100 Hz "with
    a low-pass filter") and compensates the filter delay, so waveforms keep their phase. Odd rates use
    a rational approximation (``Fraction.limit_denominator(1000)``): the achieved rate differs from
    fs_out by < 0.1 %. Equal rates return the input unchanged.
    """
    r = resample_ratio(fs_in, fs_out)
    if r == 1:
        return signal
    y = resample_poly(np.asarray(signal, dtype=np.float64), r.numerator, r.denominator, axis=0)
    return y.astype(np.float32)


def fix_length(signal: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` samples (time axis 0); shorter records are zero-padded at the END (MERL/CPSC practice)."""
    n = int(n)
    if signal.shape[0] >= n:
        return signal[:n]
    pad = np.zeros((n - signal.shape[0],) + signal.shape[1:], dtype=signal.dtype)
    return np.concatenate([signal, pad], axis=0)


def _cfg(cfg_or_kwargs) -> dict:
    cfg = dict(_DEFAULTS)
    if cfg_or_kwargs:
        cfg.update({k: v for k, v in dict(cfg_or_kwargs).items() if k in _DEFAULTS})
    return cfg


def preprocess_record(path, cfg_or_kwargs: Mapping | None = None, dataset: str | None = None,
                      signal_format: str = "wfdb", quality=None) -> np.ndarray:
    """The whole ECG chain for one record -> float32 [12, ecg_fs * ecg_seconds], in mV, NOT normalised.

    Order: load -> canonical leads -> invalid samples -> resample -> first N seconds -> zero-pad.
    ``cfg_or_kwargs`` is a profile (or any mapping) with ecg_fs, ecg_seconds, ecg_nan_policy,
    ecg_max_nan_frac, ecg_gain_override (dataset -> adu/mV; ``dataset`` selects it) and
    ecg_fix_ptbxl_gain (default True: Challenge 2020 PTB-XL copies read at their true gain, each counted
    in ``quality``). Raises DataError (unreadable / wrong leads) or its subclass InvalidSignal (too many NaN).
    """
    cfg = _cfg(cfg_or_kwargs)
    name = _record_name(path)
    gain = (cfg["ecg_gain_override"] or {}).get(dataset) if dataset is not None else None
    sig, fs, names = load_record(path, gain_override=gain, signal_format=signal_format,
                                 fix_ptbxl_gain=bool(cfg["ecg_fix_ptbxl_gain"]), quality=quality,
                                 dataset=dataset or "ecg")
    try:
        sig = to_canonical_leads(sig, names, record=name)
        sig = handle_invalid(sig, cfg["ecg_nan_policy"], cfg["ecg_max_nan_frac"], record=name)
    except DataError as e:
        if e.file is None:  # add the file name the helpers do not know
            raise type(e)(_strip_ext(path), e.problem, record=name) from e
        raise
    sig = resample(sig, fs, cfg["ecg_fs"])
    n = int(round(float(cfg["ecg_fs"]) * float(cfg["ecg_seconds"])))
    return np.ascontiguousarray(fix_length(sig, n).T, dtype=np.float32)


def preprocess_many(paths: Iterable, cfg_or_kwargs=None, dataset: str | None = None, quality=None,
                    stage: str = "ecg_preprocess", record_ids: Iterable | None = None):
    """Preprocess several records; failures are counted in ``quality`` (a QualityLog), never dropped silently.

    Returns ``(array float32 [n_kept, 12, T], kept_ids)``; reasons are "invalid samples (NaN/inf)" for
    InvalidSignal and "unreadable record or lead set" for other DataErrors. Without ``quality`` errors raise.
    """
    paths = list(paths)
    ids = [str(i) for i in (record_ids if record_ids is not None else (_record_name(p) for p in paths))]
    cfg = _cfg(cfg_or_kwargs)
    out, kept = [], []
    for p, rid in zip(paths, ids):
        try:
            out.append(preprocess_record(p, cfg, dataset, quality=quality))
            kept.append(rid)
        except InvalidSignal:
            if quality is None:
                raise
            quality.exclude(dataset or "ecg", stage, "invalid samples (NaN/inf)", records=[rid])
        except DataError:
            if quality is None:
                raise
            quality.exclude(dataset or "ecg", stage, "unreadable record or lead set", records=[rid])
    if quality is not None:
        quality.seen(dataset or "ecg", stage, len(paths))
    n = int(round(float(cfg["ecg_fs"]) * float(cfg["ecg_seconds"])))
    arr = np.stack(out) if out else np.zeros((0, len(LEADS), n), np.float32)
    return arr, kept


# ----------------------------------------------------------------------------------------------------
# Normalisation (needs training-split statistics for zscore_lead_train)

def fit_norm_stats(arrays, method: str = "zscore_lead_train", chunk: int = 256) -> dict:
    """Per-lead mean/std over the TRAINING split (PTB-XL benchmark: one scaler fit on training data).

    ``arrays``: an array/memmap [N, 12, T] (read in chunks of ``chunk`` records) or an iterable of
    [12, T] arrays. Sums are accumulated in float64; every sample counts, zero padding included (it is
    what the model sees). For ``zscore_record``/``none`` nothing is fit and only the method is stored.
    """
    if method not in NORM_METHODS:
        raise ValueError(f"ecg_norm must be one of {NORM_METHODS}, got {method!r}")
    if method != "zscore_lead_train":
        return {"method": method}
    s = s2 = None
    n = 0

    def blocks():
        if isinstance(arrays, np.ndarray) and arrays.ndim == 3:
            for i in range(0, arrays.shape[0], chunk):
                yield np.asarray(arrays[i:i + chunk], dtype=np.float64)
        else:
            for a in arrays:
                a = np.asarray(a, dtype=np.float64)
                yield a[None] if a.ndim == 2 else a

    for b in blocks():
        bs, bs2 = b.sum(axis=(0, 2)), np.square(b).sum(axis=(0, 2))
        s, s2 = (bs, bs2) if s is None else (s + bs, s2 + bs2)
        n += b.shape[0] * b.shape[2]
    if not n:
        raise ValueError("fit_norm_stats: no training arrays")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    return {"method": method, "mean": mean.astype(np.float32), "std": std.astype(np.float32), "n": int(n)}


def apply_norm(x, stats: Mapping | None, method: str | None = None):
    """Normalise ``x`` [..., 12, T] (numpy or torch). Flat leads (std < 1e-6) are only centred, never /0.

    zscore_lead_train uses ``stats`` from fit_norm_stats; zscore_record uses each record's own per-lead
    mean/std; none is the identity.
    """
    method = method or (stats or {}).get("method", "none")
    if method not in NORM_METHODS:
        raise ValueError(f"ecg_norm must be one of {NORM_METHODS}, got {method!r}")
    if method == "none":
        return x
    is_torch = not isinstance(x, np.ndarray) and hasattr(x, "detach")
    if method == "zscore_lead_train":
        mean = np.asarray(stats["mean"], dtype=np.float32)[:, None]
        std = np.asarray(stats["std"], dtype=np.float32)[:, None]
        std = np.where(std < EPS, 1.0, std).astype(np.float32)
        if is_torch:
            import torch
            mean, std = torch.as_tensor(mean, device=x.device), torch.as_tensor(std, device=x.device)
        return (x - mean) / std
    if is_torch:
        import torch
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.where(std < EPS, torch.ones_like(std), std)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return ((x - mean) / np.where(std < EPS, 1.0, std)).astype(x.dtype, copy=False)


def gaussian_noise(x, std: float = 0.01, generator=None):
    """ECG augmentation of the paper: add N(0, std^2) noise (torch tensor in, tensor out; numpy accepted).

    Pass a ``torch.Generator`` (or ``numpy.random.Generator`` for arrays) for reproducible noise; ``std``
    is in the units of ``x`` (after normalisation: fractions of a lead's std).
    """
    if std <= 0:
        return x
    if isinstance(x, np.ndarray):
        rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
        return (x + rng.normal(0.0, std, size=x.shape)).astype(x.dtype, copy=False)
    import torch
    dev = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=dev)
    return x + std * noise.to(x.device)
