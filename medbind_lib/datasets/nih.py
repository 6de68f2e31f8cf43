"""NIH ChestX-ray14: ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``) + PNG images.

``read(root, quality=None, check_files=True)`` -> one row per image:

| column | meaning |
|---|---|
| dataset, record_id (Image Index), subject_id (Patient ID as str), path, time (NaT), split | common; split from ``train_val_list.txt`` (train) / ``test_list.txt`` (test) when present, else NA |
| labels (list of findings from ``Finding Labels`` split on '|', 'No Finding' -> []), finding_labels (raw string) | labels |
| age (float), sex ('M'/'F'), view ('PA'/'AP'), follow_up (int), width, height | metadata (columns selected by name; v2020 and 2017 headers both work) |

Images are looked up in ``<root>/images/`` and ``<root>/images_*/images/`` (the Kaggle release's 12 folders).
With ``check_files`` (default) images not found are excluded and counted (stage ``files``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import check_unique, read_table
from ..quality import QualityLog
from ._common import finish_manifest, id_str, quality_or_new, require_dir

DATASET = "nih"
TABLES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


def _read_list(path: Path) -> set:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()} if path.is_file() else set()


def read(root, quality: QualityLog | None = None, check_files: bool = True) -> pd.DataFrame:
    root = require_dir(root, "NIH ChestX-ray14")
    q = quality_or_new(quality)
    table = next((root / t for t in TABLES if (root / t).is_file()), None)
    if table is None:
        raise DataError(root / TABLES[0], f"file not found (also looked for {TABLES[1]})")
    t = read_table(table, ["Image Index", "Finding Labels", "Patient ID"],
                   ["Follow-up #", "Patient Age", "Patient Gender", "View Position",
                    "OriginalImage[Width", "Height]"], dtype={"Image Index": str, "Finding Labels": str})
    check_unique(t, "Image Index", table, what="Image Index")
    q.seen(DATASET, "read", len(t))
    where = {}
    for d in [root / "images", *sorted(root.glob("images_*/images"))]:
        if d.is_dir():
            for p in d.glob("*.png"):
                where.setdefault(p.name, p)
    df = pd.DataFrame({"record_id": t["Image Index"].values, "subject_id": id_str(t["Patient ID"]).values})
    df["path"] = [str(where.get(n, root / "images" / n)) for n in df["record_id"]]
    df["time"] = pd.NaT
    train, test = _read_list(root / "train_val_list.txt"), _read_list(root / "test_list.txt")
    df["split"] = [("train" if n in train else "test" if n in test else None) for n in df["record_id"]]
    df["finding_labels"] = t["Finding Labels"].fillna("").astype(str).values
    df["labels"] = [sorted(x for x in s.split("|") if x and x != "No Finding") for s in df["finding_labels"]]
    if "Patient Age" in t:
        df["age"] = pd.to_numeric(t["Patient Age"].astype(str).str.extract(r"(\d+)")[0], errors="coerce").values
    if "Patient Gender" in t:
        df["sex"] = t["Patient Gender"].astype(object).where(t["Patient Gender"].notna(), None).values
    if "View Position" in t:
        df["view"] = t["View Position"].fillna("").astype(str).values
    if "Follow-up #" in t:
        df["follow_up"] = pd.to_numeric(t["Follow-up #"], errors="coerce").astype("Int64").values
    for src, dst in (("OriginalImage[Width", "width"), ("Height]", "height")):
        if src in t:
            df[dst] = pd.to_numeric(t[src], errors="coerce").astype("Int64").values
    if check_files:
        ok = np.array([Path(p).is_file() for p in df["path"]], dtype=bool)
        q.exclude(DATASET, "files", "image file missing", records=df.loc[~ok, "record_id"])
        df = df[ok]
    return finish_manifest(df, DATASET)
