"""Which patients MEDCSP's case studies (paper Figures 8 and 9) show, and the CXR rows notebook 09 exports for them.

The paper takes "two patients with the highest number of radiological records in the MIMIC-CXR dataset". This suite
reads them as PRE-TRAINING patients, whose records L_A, L_P and L_D trained on (the claim is that pre-training
groups a patient's points): ``medcsp_case_population: pretraining``, our interpretation. The test split's patients,
never pre-trained on (``test``, the suite's earlier choice), are the figures' second row, so a grouping seen only on
trained patients is told apart from one that generalises. A radiological record is a MEDCSP CXR record: one study
of a patient the EHR source has (``medcsp.records.cxr_records``, notebook 08's frame), so both populations are
patients of both sources and differ only in whether pre-training saw them.

The export (``mimic_cxr_cases.npz``) holds, for the ``medcsp_case_top`` patients of each population, every cached
frontal image of each of their studies with the study's ``study_id`` and report: an image point per image, one
report point per study (``reports.case_studies.cxr_points``).
"""
from __future__ import annotations

import pandas as pd

__all__ = ["POPULATIONS", "CASES_FILE", "populations", "top_patients", "case_images"]

POPULATIONS = {"pretraining": "train", "test": "test"}     # population -> split of notebook 08's records
CASES_FILE = "mimic_cxr_cases"


def populations(primary: str) -> tuple[str, ...]:
    """Every population, the profile's (``medcsp_case_population``) first: the figures' rows in order."""
    if primary not in POPULATIONS:
        raise ValueError(f"medcsp_case_population must be one of {tuple(POPULATIONS)}, got {primary!r}")
    return (primary, *(p for p in POPULATIONS if p != primary))


def top_patients(cxr_records: pd.DataFrame, population: str, n: int) -> list[int]:
    """The ``n`` subjects with the most CXR records (distinct studies) in the population's split, most first;
    ties go to the smaller subject id so the figures are the same on every run. Fewer when the split has fewer."""
    r = cxr_records[cxr_records["split"].astype(str) == POPULATIONS[population]]
    counts = r.groupby(r["subject_id"].astype("int64"))["study_id"].nunique()
    return [int(s) for s in sorted(counts.index, key=lambda s: (-counts[s], s))[:n]]


def case_images(cxr_records: pd.DataFrame, images: pd.DataFrame, n: int) -> pd.DataFrame:
    """One row per image of ``images`` (the MIMIC-CXR cache manifest: record_id, study_id, index) in a study of
    a population's top ``n`` patients: record_id, study_id, index, subject_id, split, ``text`` (the study's report,
    from the records frame), ``population`` and ``rank`` (the patient's place, 0 = most records). A study whose
    image is not cached has no row. Ordered by population, rank, study, image."""
    parts = []
    for pop, split in POPULATIONS.items():
        top = top_patients(cxr_records, pop, n)
        rec = cxr_records[(cxr_records["split"].astype(str) == split)
                          & cxr_records["subject_id"].astype("int64").isin(top)]
        rec = rec.assign(study_id=rec["study_id"].astype("int64"),
                         subject_id=rec["subject_id"].astype("int64")).drop_duplicates("study_id")
        img = images[["record_id", "study_id", "index"]].astype({"study_id": "int64"})
        m = img.merge(rec[["study_id", "subject_id", "split", "text"]], on="study_id")
        m = m.assign(population=pop, rank=m["subject_id"].map({s: i for i, s in enumerate(top)}).astype("int64"))
        parts.append(m.sort_values(["rank", "study_id", "record_id"], kind="stable"))
    return pd.concat(parts, ignore_index=True)[["record_id", "study_id", "index", "subject_id", "split", "text",
                                                "population", "rank"]]
