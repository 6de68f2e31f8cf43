"""CheXpert v1.0(-small): ``<root>/CheXpert-v1.0-small/{train,valid}.csv`` (``Path`` relative to ``<root>``).

``read(root, quality=None, folder=None, check_files=False)`` -> one row per image:

| column | meaning |
|---|---|
| dataset, record_id (= Path as written), subject_id ('patient00001' from Path), path (root / Path), time (NaT), split ('train' from train.csv, 'valid' from valid.csv) | common |
| study ('study1'), sex, age (float), frontal_lateral ('Frontal'/'Lateral'), ap_pa ('AP'/'PA'/'LL'/'RL'/''), view (ap_pa, or 'LATERAL' for laterals without one), frontal (bool) | image |
| the 14 labels (``constants.CHEXPERT_LABELS``) | float 1.0 / 0.0 / -1.0 / NaN (never filled) |

``folder`` defaults to the first of ``CheXpert-v1.0-small``, ``CheXpert-v1.0`` found under root.

``build_5x200(df, per_class=200, seed=0, quality=None)`` implements the GLoRIA rule: frontal images only;
after ``fillna(0)``, a row belongs to class t (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural
Effusion) when t == 1 and all 13 other labels except No Finding are 0 (so any -1 excludes it); ``per_class``
rows sampled per class with ``seed`` (fewer when not enough; counted in quality). Output = the manifest
rows + ``label`` (class name) + ``target`` (index in ``CHEXPERT_5X200_CLASSES``), split 'test'.

``read_5x200(root, quality=None, per_class=200, seed=0, folder=None)`` uses a user-supplied
``chexpert_5x200.csv`` (GLoRIA's file: Path, 5 class columns, optionally ``Report Impression``) found in
``root`` or ``root/<folder>`` when present, else ``build_5x200`` on train.csv.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import CHEXPERT_5X200_CLASSES, CHEXPERT_LABELS
from ..errors import DataError
from ..io import check_unique, read_table
from ..quality import QualityLog
from ._common import finish_manifest, quality_or_new, require_dir

DATASET = "chexpert"
FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
META = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]


def find_folder(root: Path, folder: str | None) -> Path:
    if folder is not None:
        return require_dir(root / folder, "CheXpert")
    for f in FOLDERS:
        if (root / f).is_dir():
            return root / f
    raise DataError(root / FOLDERS[0], f"CheXpert folder not found under the root (looked for {list(FOLDERS)})")


def _read_csv(path: Path, root: Path, split: str) -> pd.DataFrame:
    t = read_table(path, ["Path", *CHEXPERT_LABELS], ["Sex", "Age", "Frontal/Lateral", "AP/PA"],
                   dtype={"Path": str, "Sex": str, "Frontal/Lateral": str, "AP/PA": str})
    if t["Path"].isna().any():
        raise DataError(path, f"empty Path in {int(t['Path'].isna().sum())} row(s)")
    parts = t["Path"].str.split("/")
    short = parts.map(len) < 3
    if short.any():
        raise DataError(path, f"Path does not look like .../patientNNNNN/studyN/viewN.jpg: "
                              f"{t.loc[short, 'Path'].head(3).tolist()}")
    df = pd.DataFrame({"record_id": t["Path"].values, "subject_id": parts.str[-3].values,
                       "path": [str(root / p) for p in t["Path"]], "time": pd.NaT, "split": split,
                       "study": parts.str[-2].values})
    df["sex"] = t["Sex"].astype(object).where(t["Sex"].notna(), None).values if "Sex" in t else None
    df["age"] = pd.to_numeric(t["Age"], errors="coerce").astype(float).values if "Age" in t else np.nan
    fl = t["Frontal/Lateral"].fillna("").astype(str) if "Frontal/Lateral" in t else pd.Series([""] * len(t))
    ap = t["AP/PA"].fillna("").astype(str) if "AP/PA" in t else pd.Series([""] * len(t))
    df["frontal_lateral"] = fl.values
    df["ap_pa"] = ap.values
    df["frontal"] = (fl == "Frontal").values
    df["view"] = np.where(ap.values != "", ap.values, np.where(fl.values == "Lateral", "LATERAL", ""))
    for c in CHEXPERT_LABELS:
        v = pd.to_numeric(t[c], errors="coerce")
        bad = t[c].notna() & ~v.isin([1.0, 0.0, -1.0])
        if bad.any():
            raise DataError(path, f"label column {c!r} has values other than 1.0/0.0/-1.0/empty, e.g. "
                                  f"{t.loc[bad, c].head(3).tolist()}", record=t.loc[bad, "Path"].iloc[0])
        df[c] = v.astype(float).values
    return df


def read(root, quality: QualityLog | None = None, folder: str | None = None,
         check_files: bool = False) -> pd.DataFrame:
    root = require_dir(root, "CheXpert")
    q = quality_or_new(quality)
    base = find_folder(root, folder)
    parts = [_read_csv(base / "train.csv", root, "train")]
    if (base / "valid.csv").is_file():
        parts.append(_read_csv(base / "valid.csv", root, "valid"))
    df = pd.concat(parts, ignore_index=True)
    check_unique(df, "record_id", base / "train.csv", what="Path")
    q.seen(DATASET, "read", len(df))
    if check_files:
        ok = np.array([Path(p).is_file() for p in df["path"]], dtype=bool)
        q.exclude(DATASET, "files", "image file missing", records=df.loc[~ok, "record_id"])
        df = df[ok]
    return finish_manifest(df, DATASET)


def eligible_5x200(df: pd.DataFrame) -> pd.Series:
    """Class name per row under the GLoRIA rule, or None (frontal only; -1 anywhere relevant excludes)."""
    lab = df[list(CHEXPERT_LABELS)].fillna(0)
    frontal = df["frontal"] if "frontal" in df else df.get("Frontal/Lateral", pd.Series("", index=df.index)) == "Frontal"
    out = pd.Series([None] * len(df), index=df.index, dtype=object)
    for cls in CHEXPERT_5X200_CLASSES:
        others = [c for c in CHEXPERT_LABELS if c not in (cls, "No Finding")]
        ok = frontal.astype(bool) & (lab[cls] == 1) & (lab[others] == 0).all(axis=1)
        out[ok] = cls
    return out


def build_5x200(df: pd.DataFrame, per_class: int = 200, seed: int = 0,
                quality: QualityLog | None = None) -> pd.DataFrame:
    q = quality_or_new(quality)
    df = df[df["split"] == "train"] if "split" in df and (df["split"] == "train").any() else df
    cls = eligible_5x200(df)
    picks = []
    for i, c in enumerate(CHEXPERT_5X200_CLASSES):
        pool = df[cls == c]
        n = min(per_class, len(pool))
        if n < per_class:
            q.flag("chexpert_5x200", "sample", f"only {len(pool)} eligible {c} images (< {per_class})",
                      n=per_class - n)
        s = pool.sample(n=n, random_state=seed + i).copy() if n else pool.copy()
        s["label"], s["target"] = c, i
        picks.append(s)
    out = pd.concat(picks).copy()
    out["split"] = "test"
    return finish_manifest(out, "chexpert_5x200")


def read_5x200(root, quality: QualityLog | None = None, per_class: int = 200, seed: int = 0,
               folder: str | None = None) -> pd.DataFrame:
    root = require_dir(root, "CheXpert")
    q = quality_or_new(quality)
    base = find_folder(root, folder)
    for cand in (root / "chexpert_5x200.csv", base / "chexpert_5x200.csv"):
        if cand.is_file():
            t = read_table(cand, ["Path", *CHEXPERT_5X200_CLASSES], ["Report Impression"], dtype={"Path": str})
            check_unique(t, "Path", cand, what="Path")
            onehot = t[list(CHEXPERT_5X200_CLASSES)].apply(pd.to_numeric, errors="coerce").fillna(0) == 1
            n_pos = onehot.sum(axis=1)
            if (n_pos != 1).any():
                raise DataError(cand, "each row must have exactly one of the 5 classes == 1",
                                record=t.loc[n_pos != 1, "Path"].iloc[0])
            target = onehot.values.argmax(axis=1)
            df = pd.DataFrame({"record_id": t["Path"].values,
                               "subject_id": t["Path"].str.split("/").str[-3].values,
                               "path": [str(root / p) for p in t["Path"]], "time": pd.NaT, "split": "test",
                               "label": [CHEXPERT_5X200_CLASSES[i] for i in target], "target": target})
            if "Report Impression" in t:
                df["report"] = t["Report Impression"].fillna("").astype(str).values
            df["source_file"] = str(cand)
            return finish_manifest(df, "chexpert_5x200")
    return build_5x200(read(root, q, folder=folder), per_class=per_class, seed=seed, quality=q)
