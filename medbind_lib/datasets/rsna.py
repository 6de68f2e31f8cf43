"""RSNA Pneumonia Detection Challenge (stage 2): labels aggregated per patientId.

``read(root, quality=None, seed=0, fractions=(0.7, 0.1, 0.2), check_files=False)`` reads
``stage_2_train_labels.csv`` (patientId, x, y, width, height, Target; one row per box, negatives one row
with empty box) and ``stage_2_detailed_class_info.csv`` (patientId, class; repeated per box row). One row
per patient/image:

| column | meaning |
|---|---|
| dataset, record_id (= patientId), subject_id (= patientId), path (``stage_2_train_images/<patientId>.dcm``), time (NaT), split | common; split = seeded stratified 70/10/20 train/valid/test by target |
| target (int 0/1: any box), label ('Pneumonia'/'Normal' = ``constants.RSNA_CLASSES[target]``) | class |
| n_boxes (int), boxes (list of (x, y, width, height) floats) | boxes in 1024x1024 pixels |
| detailed_class | 'Lung Opacity', 'Normal', 'No Lung Opacity / Not Normal' (None when absent) |

Bad input: Target values disagreeing within one patient, a Target=1 row without a box, or two different
classes for one patient are DataErrors naming the patientId. A patient whose detailed class disagrees with
its target (Target=1 but class not 'Lung Opacity' or the reverse) is kept and counted (stage ``labels``).
With ``check_files`` patients whose DICOM is missing are excluded and counted (stage ``files``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import RSNA_CLASSES
from ..errors import DataError
from ..io import read_table
from ..quality import QualityLog
from ._common import finish_manifest, quality_or_new, require_dir, require_file, seeded_split

DATASET = "rsna"


def read(root, quality: QualityLog | None = None, seed: int = 0, fractions=(0.7, 0.1, 0.2),
         check_files: bool = False) -> pd.DataFrame:
    root = require_dir(root, "RSNA Pneumonia")
    q = quality_or_new(quality)
    lab_path = require_file(root / "stage_2_train_labels.csv", "RSNA stage_2_train_labels.csv")
    lab = read_table(lab_path, ["patientId", "x", "y", "width", "height", "Target"], dtype={"patientId": str})
    tgt = pd.to_numeric(lab["Target"], errors="coerce")
    if tgt.isna().any() or not tgt.isin([0, 1]).all():
        bad = lab.loc[tgt.isna() | ~tgt.isin([0, 1]), "patientId"].iloc[0]
        raise DataError(lab_path, "Target must be 0 or 1", record=bad)
    lab["Target"] = tgt.astype(int)
    box = lab[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce")
    has_box = box.notna().all(axis=1)
    nobox = (lab["Target"] == 1) & ~has_box
    if nobox.any():
        raise DataError(lab_path, "Target=1 row without a complete box (x, y, width, height)",
                        record=lab.loc[nobox, "patientId"].iloc[0])
    g = lab.groupby("patientId", sort=True)
    nuniq = g["Target"].nunique()
    if (nuniq > 1).any():
        raise DataError(lab_path, "conflicting Target values for one patient", record=nuniq[nuniq > 1].index[0])
    lab["_box"] = [tuple(map(float, b)) if h else None for b, h in zip(box.values.tolist(), has_box)]
    agg = g.agg(target=("Target", "max")).reset_index()
    boxes = lab[has_box].groupby("patientId")["_box"].agg(list)
    agg["boxes"] = agg["patientId"].map(boxes).map(lambda v: v if isinstance(v, list) else [])
    agg["n_boxes"] = agg["boxes"].map(len).astype(int)
    q.seen(DATASET, "read", len(agg))

    cls_path = root / "stage_2_detailed_class_info.csv"
    agg["detailed_class"] = None
    if cls_path.is_file():
        ci = read_table(cls_path, ["patientId", "class"], dtype={"patientId": str, "class": str}).drop_duplicates()
        dup = ci["patientId"].duplicated(keep=False)
        if dup.any():
            raise DataError(cls_path, "two different classes for one patient", record=ci.loc[dup, "patientId"].iloc[0])
        agg["detailed_class"] = agg["patientId"].map(dict(zip(ci["patientId"], ci["class"]))).astype(object)
        agg["detailed_class"] = agg["detailed_class"].where(agg["detailed_class"].notna(), None)
        known = agg["detailed_class"].notna()
        mismatch = known & ((agg["target"] == 1) != (agg["detailed_class"] == "Lung Opacity"))
        q.flag(DATASET, "labels", "detailed class disagrees with Target (kept; label from Target)",
                  records=agg.loc[mismatch, "patientId"])
        q.flag(DATASET, "labels", "patient missing from detailed_class_info (kept)",
                  records=agg.loc[~known, "patientId"])

    df = pd.DataFrame({"record_id": agg["patientId"], "subject_id": agg["patientId"],
                       "path": [str(root / "stage_2_train_images" / f"{p}.dcm") for p in agg["patientId"]],
                       "time": pd.NaT, "target": agg["target"].astype(int),
                       "label": [RSNA_CLASSES[t] for t in agg["target"]], "n_boxes": agg["n_boxes"],
                       "boxes": agg["boxes"], "detailed_class": agg["detailed_class"]})
    if check_files:
        ok = np.array([Path(p).is_file() for p in df["path"]], dtype=bool)
        q.exclude(DATASET, "files", "DICOM file missing", records=df.loc[~ok, "record_id"])
        df = df[ok].reset_index(drop=True)
    df["split"] = seeded_split(df["record_id"], seed, list(fractions), ["train", "valid", "test"],
                               strata=df["target"]).values
    return finish_manifest(df, DATASET)
