"""COVID-19 Radiography Database (Kaggle, v4+): ``<root>/<Class>/images/<Class>-N.png``.

``read(root, quality=None, classes=COVID_CLASSES, seed=0, test_fraction=0.2)`` -> one row per image:

| column | meaning |
|---|---|
| dataset, record_id ('<Class>/<file name>'), subject_id (= record_id: no patient ids), path, time (NaT), split | common; split = seeded 80/20 train/test stratified by class (paper: 11,028 / 2,780) |
| label (folder name, e.g. 'Viral Pneumonia' with its space), target (index in ``classes``) | class |

Older releases without the ``images/`` level (``<Class>/<Class>-N.png``) are read too. Masks and
``*.metadata.xlsx`` are ignored. A missing class folder is a DataError naming the expected path (pass
``classes=`` to read a subset, e.g. ``("Normal", "COVID")`` for the MedCLIP binary task). Files in an
images folder that are not PNG/JPG are counted (stage ``files``), never silently dropped.
"""
from __future__ import annotations

import pandas as pd

from ..constants import COVID_CLASSES
from ..errors import DataError
from ..quality import QualityLog
from ._common import finish_manifest, quality_or_new, require_dir, seeded_split

DATASET = "covid"
# MedCLIP's binary COVID task; 80/20 of 3,616 COVID + 10,192 Normal = 11,046 / 2,762 ~ the paper's 11,028 / 2,780.
PAPER_CLASSES = ("Normal", "COVID")
IMAGE_EXT = (".png", ".jpg", ".jpeg")


def read(root, quality: QualityLog | None = None, classes=COVID_CLASSES, seed: int = 0,
         test_fraction: float = 0.2) -> pd.DataFrame:
    root = require_dir(root, "COVID-19 Radiography")
    q = quality_or_new(quality)
    rows = []
    for target, cls in enumerate(classes):
        cdir = root / cls
        if not cdir.is_dir():
            raise DataError(cdir, f"class folder {cls!r} not found")
        idir = cdir / "images" if (cdir / "images").is_dir() else cdir
        files = sorted(p for p in idir.iterdir() if p.is_file())
        other = [p.name for p in files if p.suffix.lower() not in IMAGE_EXT]
        q.exclude(DATASET, "files", "not an image file", records=[f"{cls}/{n}" for n in other])
        for p in files:
            if p.suffix.lower() in IMAGE_EXT:
                rid = f"{cls}/{p.name}"
                rows.append(dict(record_id=rid, subject_id=rid, path=str(p), label=cls, target=target))
    df = pd.DataFrame(rows, columns=["record_id", "subject_id", "path", "label", "target"])
    q.seen(DATASET, "read", len(df))
    df["time"] = pd.NaT
    df["split"] = seeded_split(df["record_id"], seed, [1 - test_fraction, test_fraction], ["train", "test"],
                               strata=df["label"]).values
    df["target"] = df["target"].astype(int)
    return finish_manifest(df, DATASET)
