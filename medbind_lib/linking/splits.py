"""The one patient-level split shared by all MIMIC sources (hash based, official CXR split optional).

Separate from the links and labels: a subject's split depends only on (seed, subject_id), never on them.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..constants import SPLITS
from ..errors import DataError
from .common import normalize_ids


# --------------------------------------------------------------------------------------------------
# patient-level splits
# --------------------------------------------------------------------------------------------------
def _unit_hash(ids: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per id, a pure function of (seed, id)."""
    out = np.empty(len(ids), dtype=np.float64)
    for k, s in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).digest()
        out[k] = int.from_bytes(h, "big") / 2.0 ** 64
    return out


def _normalize_split(values: pd.Series) -> pd.Series:
    v = values.astype(object).where(values.notna(), None)
    v = v.map(lambda x: None if x is None else {"validate": "valid", "val": "valid"}.get(str(x).strip().lower(),
                                                                                          str(x).strip().lower()))
    bad = set(v.dropna().unique()) - set(SPLITS)
    if bad:
        raise DataError("official split", f"unknown split value(s) {sorted(bad)}; expected {SPLITS} or 'validate'")
    return v


def patient_splits(subject_ids_by_source: Mapping[str, Iterable], fractions=(0.7, 0.1, 0.2), seed: int = 0,
                   official=None) -> pd.DataFrame:
    """ONE patient-level split for all MIMIC sources (CXR, ECG, MIMIC-IV): a subject is in one split only.

    Assignment is hash based: ``u = blake2b(f"{seed}:{subject_id}")`` mapped to [0, 1), then train if
    ``u < f_train``, valid if ``u < f_train + f_valid``, else test. Why not a seeded permutation: a
    subject's split depends only on (seed, subject_id), so adding a source or more patients never moves
    existing patients between splits (caches and trained models stay valid), and every source agrees
    without coordination. Cost: fractions are met in expectation (binomial noise), not exactly.

    ``official``: optional subject -> split (a Series indexed by subject, a dict, or a DataFrame with
    ``subject_id, split``, e.g. the MIMIC-CXR manifest). Subjects with a non-empty official split keep
    it ('validate' -> 'valid'); the rest are assigned by hash. A subject with two different official
    splits is a DataError (the official split is patient-disjoint).

    Returns ``subject_id (str), split, assigned ('official' | 'random'), in_<source> (bool)`` sorted
    by subject_id.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers (train, valid, test), got {fractions}")
    f = f / f.sum()
    per_source = {name: set(normalize_ids(pd.Series(list(ids))).dropna()) for name, ids in subject_ids_by_source.items()}
    subjects = sorted(set().union(*per_source.values())) if per_source else []
    out = pd.DataFrame({"subject_id": pd.Series(subjects, dtype=object)})
    u = _unit_hash(out["subject_id"], seed)
    out["split"] = np.where(u < f[0], "train", np.where(u < f[0] + f[1], "valid", "test"))
    out["assigned"] = "random"
    if official is not None:
        if isinstance(official, pd.DataFrame):
            off = pd.DataFrame({"subject_id": normalize_ids(official["subject_id"]).to_numpy(),
                                "split": _normalize_split(official["split"]).to_numpy()})
        else:
            off = pd.Series(official) if not isinstance(official, pd.Series) else official
            off = pd.DataFrame({"subject_id": normalize_ids(pd.Series(off.index)).to_numpy(),
                                "split": _normalize_split(off.reset_index(drop=True)).to_numpy()})
        off = off.dropna().drop_duplicates()
        dup = off["subject_id"].duplicated(keep=False)
        if dup.any():
            raise DataError("official split", f"subject(s) in two official splits, e.g. "
                                              f"{off.loc[dup, 'subject_id'].head(3).tolist()}")
        m = out["subject_id"].map(off.set_index("subject_id")["split"])
        has = m.notna()
        out.loc[has, "split"] = m[has]
        out.loc[has, "assigned"] = "official"
    for name, ids in per_source.items():
        out[f"in_{name}"] = out["subject_id"].isin(ids)
    return out


def apply_splits(df: pd.DataFrame, splits: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame:
    """Copy of ``df`` with ``split`` set (added or overridden) from the patient-level ``splits``.

    A subject missing from ``splits`` is a DataError: every MIMIC record must get the shared split,
    a silent NA would drop it from all splits.
    """
    out = df.copy()
    sid = normalize_ids(out[column])
    m = sid.map(splits.assign(subject_id=normalize_ids(splits["subject_id"])).set_index("subject_id")["split"])
    if m.isna().any():
        raise DataError("splits", f"{int(m.isna().sum())} row(s) whose subject has no split, e.g. "
                                  f"{sid[m.isna()].head(3).tolist()}")
    out["split"] = m.to_numpy()
    return out
