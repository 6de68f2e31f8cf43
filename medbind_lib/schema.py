"""The manifest contract between readers, linking, cache and training."""
from __future__ import annotations

import pandas as pd

from .constants import MANIFEST_COLUMNS, SPLITS
from .errors import DataError


def validate_manifest(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check the common columns, unique record ids and split values; return ``df`` unchanged."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(name, f"manifest lacks column(s) {missing}")
    dup = df["record_id"].duplicated()
    if dup.any():
        raise DataError(name, f"duplicate record_id, e.g. {df.loc[dup, 'record_id'].head(3).tolist()}")
    bad = set(df["split"].dropna().unique()) - set(SPLITS)
    if bad:
        raise DataError(name, f"unknown split value(s) {sorted(bad)}; expected {SPLITS}")
    if len(df) and not pd.api.types.is_datetime64_any_dtype(df["time"]):
        raise DataError(name, f"column 'time' must be datetime64, got {df['time'].dtype}")
    return df
