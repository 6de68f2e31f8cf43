"""Small shared helpers of the generator: seeded RNG streams, MIMIC-style ids, deterministic writers."""
from __future__ import annotations

import gzip
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# One integer per RNG stream, so adding a dataset never shifts the draws of another one. The EHR-only and
# CXR-only patients (generator 1.3.0) have streams of their own: latent state ("ehr_only", "cxr_only"), their
# MIMIC-IV tables ("ehr_only_iv"), ICU events ("ehr_only_icu") and MIMIC-CXR studies ("cxr_only_cxr"); the task
# population (generator 1.6.0) latent state ("task"), MIMIC-IV tables ("task_iv") and ICU events ("task_icu").
STREAMS = {"latent": 1, "mimic_cxr": 2, "mimic_ecg": 3, "mimic_iv": 4, "ptbxl": 5, "icbeb": 6,
           "chexpert": 7, "covid": 8, "rsna": 9, "openi": 10, "ids": 11, "mimic_icu": 12,
           "ehr_only": 13, "cxr_only": 14, "ehr_only_iv": 15, "ehr_only_icu": 16, "cxr_only_cxr": 17,
           "task": 18, "task_iv": 19, "task_icu": 20}


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent, reproducible generator per (seed, stream)."""
    return np.random.default_rng([int(seed), STREAMS[stream]])


def unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """``n`` distinct integers in [low, high), in random order (MIMIC-style ids)."""
    return low + rng.choice(high - low, size=n, replace=False)


def disjoint_ids(rng: np.random.Generator, ids, taken, low: int, high: int) -> np.ndarray:
    """``ids`` with every value that is also in ``taken`` replaced by a fresh one from [low, high) that is in
    neither; by value, so a repeated id (a specimen on several rows) stays one id. Draws from ``rng`` only
    when something collides, so the ids of appended patients never clash with those written before."""
    ids = np.asarray(ids, dtype=np.int64)
    taken = np.unique(np.asarray(taken, dtype=np.int64))
    uniq = np.unique(ids)
    bad = uniq[np.isin(uniq, taken)]
    if not len(bad):
        return ids
    used, fresh = np.union1d(taken, uniq), np.zeros(0, np.int64)
    while len(fresh) < len(bad):
        cand = pd.unique(rng.integers(low, high, 2 * len(bad) + 8))
        cand = cand[~np.isin(cand, used)][: len(bad) - len(fresh)]
        fresh, used = np.concatenate([fresh, cand]), np.union1d(used, cand)
    pos = np.searchsorted(bad, ids).clip(max=len(bad) - 1)
    return np.where(bad[pos] == ids, fresh[pos], ids)


def dicom_ids(rng: np.random.Generator, n: int) -> list[str]:
    """MIMIC-CXR dicom_id: 5 groups of 8 lowercase hex joined by '-'."""
    raw = rng.bytes(20 * n).hex()
    return ["-".join(raw[i * 40 + k * 8: i * 40 + (k + 1) * 8] for k in range(5)) for i in range(n)]


def fmt_dt(t) -> str:
    """MIMIC datetime string ``YYYY-MM-DD HH:MM:SS`` (empty for NaT)."""
    return "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def study_time_str(t: pd.Timestamp, ms: int) -> str:
    """MIMIC-CXR StudyTime: unpadded float text ``HHMMSS.fff`` (e.g. ``80556.875``, ``0.187``)."""
    return f"{t.hour * 10000 + t.minute * 100 + t.second}.{ms:03d}"


def csv_bytes(df: pd.DataFrame, **kw) -> bytes:
    """CSV text of ``df`` (no index; empty field for missing values), as bytes."""
    return df.to_csv(index=False, lineterminator="\n", **kw).encode("utf-8")


def write_csv(df: pd.DataFrame, path: Path, **kw) -> None:
    """Plain or gzip CSV by suffix; gzip with mtime 0 and no file name so bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = csv_bytes(df, **kw)
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if path.name.endswith(".gz") else data)


def write_csv_appended(df: pd.DataFrame, more, path: Path, **kw) -> None:
    """``df`` then the rows of ``more`` (a frame or a list of frames, same columns, no second header), as
    ``write_csv``: the bytes of ``df`` and of each earlier frame are exactly what they were without the later
    ones, whatever the dtypes of ``more`` (appended patients never change the rows written before)."""
    more = [m for m in ([more] if isinstance(more, pd.DataFrame) else (more or [])) if m is not None]
    if not more:
        return write_csv(df, path, **kw)
    for m in more:
        if list(m.columns) != list(df.columns):
            raise ValueError(f"{path.name}: appended columns {list(m.columns)} differ from {list(df.columns)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = csv_bytes(df, **kw) + b"".join(csv_bytes(m, header=False, **kw) for m in more if len(m))
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if path.name.endswith(".gz") else data)


def save_gray(img: np.ndarray, path: Path, fmt: str = "JPEG") -> None:
    """Save a uint8 (H, W) array as mode-L JPEG/PNG (deterministic encoders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    if fmt == "JPEG":
        im.save(path, format="JPEG", quality=92)
    else:
        im.save(path, format="PNG", compress_level=3)


def wrap_report(paragraphs: list[str], width: int = 78) -> list[str]:
    """MIMIC report lines: each wrapped to <= ``width`` chars and prefixed by one space."""
    out = []
    for p in paragraphs:
        out += [" " + ln for ln in textwrap.wrap(p, width=width, break_on_hyphens=False)] or [" "]
    return out


def write_wfdb(directory: Path, name: str, d: np.ndarray, fs: int, gain: float, sig_names, base=None,
               comments=()) -> None:
    """WFDB format-16 record (.hea + interleaved int16 .dat) byte-identical to ``wfdb.wrsamp``.

    Hand-written because wrsamp costs ~14 ms per record; the test suite checks the bytes against wrsamp.
    """
    directory.mkdir(parents=True, exist_ok=True)
    d = np.ascontiguousarray(d, dtype="<i2")
    head = f"{name} {d.shape[1]} {fs} {d.shape[0]}"
    if base is not None:
        head += f" {base:%H:%M:%S} {base:%d/%m/%Y}"
    init, cks = d[0].astype(int), d.astype(np.int64).sum(0) % 65536
    lines = [head] + [f"{name}.dat 16 {float(gain)}(0)/mV 16 0 {i} {c} 0 {s}"
                      for i, c, s in zip(init, cks, sig_names)]
    lines += [f"# {c}" for c in comments]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
    (directory / f"{name}.dat").write_bytes(d.tobytes())


def write_challenge(directory: Path, name: str, d: np.ndarray, fs: int, sig_names, when: datetime,
                    comments: list[str]) -> None:
    """PhysioNet/CinC Challenge 2020 record: MATLAB v4 ``val`` (12 x N int16) + a '16+24' header."""
    from scipy.io import savemat

    directory.mkdir(parents=True, exist_ok=True)
    d = np.ascontiguousarray(d, dtype="<i2")
    savemat(directory / f"{name}.mat", {"val": np.ascontiguousarray(d.T)}, format="4")
    cks = ((d.astype(np.int64).sum(0) + 32768) % 65536) - 32768
    month = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[when.month - 1]   # locale-independent
    lines = [f"{name} {d.shape[1]} {fs} {d.shape[0]} {when:%d}-{month}-{when:%Y %H:%M:%S}"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {i} {c} 0 {s}" for i, c, s in zip(d[0].astype(int), cks, sig_names)]
    lines += [f"#{c}" for c in comments]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
