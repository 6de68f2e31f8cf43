"""Helpers shared by the dataset readers: roots, manifest finishing, seeded splits, text decoding."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..constants import MANIFEST_COLUMNS
from ..errors import DataError
from ..io import decode_text as io_decode_text
from ..quality import QualityLog, quality_or_new  # noqa: F401 (quality_or_new: for the readers)
from ..schema import validate_manifest


def require_dir(root, what: str) -> Path:
    """``root`` as a Path; a DataError naming the expected path when it is not a directory."""
    if root is None:
        raise DataError(None, f"no data root given for {what}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, f"{what} root not found (expected a directory)")
    return root


def require_file(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    return path


def id_str(values) -> pd.Series:
    """Integer-like ids as strings without decimals (10000032, 15709.0 -> '15709'); others unchanged."""
    s = pd.Series(values)

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return str(int(v)) if float(v).is_integer() else str(v)
        t = str(v).strip()
        m = re.fullmatch(r"(-?\d+)(?:\.0*)?", t)
        if m and not (m.group(1).lstrip("-").startswith("0") and len(m.group(1).lstrip("-")) > 1):
            return str(int(m.group(1)))
        return t

    return s.map(one).astype(object)


def to_datetime_ns(values, fmt: str | None = "ISO8601") -> pd.Series:
    s = pd.to_datetime(pd.Series(values), format=fmt, errors="coerce")
    return s.astype("datetime64[ns]")


def finish_manifest(df: pd.DataFrame, dataset: str, extra_order: Sequence[str] = ()) -> pd.DataFrame:
    """Put the common columns first with their dtypes, reset the index and validate."""
    df = df.copy()
    df["dataset"] = dataset
    for c in ("record_id", "subject_id", "path"):
        df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        df[c] = df[c].astype(object)
    if "time" not in df:
        df["time"] = pd.NaT
    df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
    if "split" not in df:
        df["split"] = None
    df["split"] = df["split"].astype(object).where(df["split"].notna(), None)
    rest = [c for c in extra_order if c in df.columns and c not in MANIFEST_COLUMNS]
    rest += [c for c in df.columns if c not in MANIFEST_COLUMNS and c not in rest]
    df = df[list(MANIFEST_COLUMNS) + rest].reset_index(drop=True)
    return validate_manifest(df, dataset)


def empty_manifest(dataset: str, columns: Iterable[str] = ()) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in list(MANIFEST_COLUMNS) + list(columns)})
    return finish_manifest(df, dataset)


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder allocation of n items to fractions (sums exactly to n)."""
    raw = np.asarray(fractions, dtype=float) * n
    base = np.floor(raw).astype(int)
    left = n - base.sum()
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:left]] += 1
    return base.tolist()


def seeded_split(keys, seed: int, fractions: Sequence[float], names: Sequence[str],
                 strata=None) -> pd.Series:
    """Assign each distinct key to a split name, seeded; stratified by ``strata`` (one value per key row).

    ``keys`` may repeat (e.g. patient ids): all rows of a key share its split (group-level split).
    Returns a Series aligned with ``keys``.
    """
    keys = pd.Series(list(keys)).astype(str)
    if len(keys) == 0:
        return pd.Series([], dtype=object)
    if strata is None:
        strata = pd.Series(["_"] * len(keys))
    strata = pd.Series(list(strata)).astype(str)
    first = pd.DataFrame({"key": keys, "stratum": strata}).drop_duplicates("key")
    rng = np.random.default_rng(seed)
    assign = {}
    for stratum in sorted(first["stratum"].unique()):
        ks = np.array(sorted(first.loc[first["stratum"] == stratum, "key"]))
        ks = ks[rng.permutation(len(ks))]
        counts = _allocate(len(ks), fractions)
        start = 0
        for name, c in zip(names, counts):
            for k in ks[start:start + c]:
                assign[k] = name
            start += c
    return keys.map(assign).astype(object)


def decode_text(raw: bytes, path, quality: QualityLog | None, dataset: str, strict: bool = False) -> str:
    """UTF-8 text with a counted latin-1 fallback for stray bytes (stage ``text``); see ``io.decode_text``."""
    return io_decode_text(raw, path, quality, dataset, "text", strict=strict)
