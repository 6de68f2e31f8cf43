"""MEDCSP data built from the smoke cohort: rows aligned across files, features from the training split, the
tasks' cohorts, reuse when the parameters match, a rebuild when they do not, and a clear error before 08 ran."""
from __future__ import annotations

import numpy as np
import pytest

from medbind_lib.config import load_profile
from medbind_lib.errors import DataError
from medbind_lib.medcsp import features

from test_data import ensure_smoke_artifacts


@pytest.fixture(scope="module")
def built():
    cfg = load_profile("smoke", overrides={"progress": False})
    ensure_smoke_artifacts(cfg)
    return cfg, features.build(cfg)


def test_rows_align_and_features_come_from_training(built):
    cfg, d = built
    ehr = d["ehr_records"]
    assert d["icd"].shape[0] == d["drug"].shape[0] == len(d["demographics"]) == len(ehr)
    assert d["histories"].shape == (len(d["history_subjects"]), d["icd"].shape[1])
    assert d["histories"].nnz > 0                     # patients with training admissions have a history
    assert d["temporal_values"].shape[:2] == (len(d["stays"]), 48) and d["temporal_mask"].shape == \
        d["temporal_values"].shape
    # every vocabulary token occurs in a training admission's row
    train = (ehr["split"] == "train").to_numpy()
    assert (np.asarray(d["icd"][train].sum(0)).ravel() > 0).all()
    assert (np.asarray(d["drug"][train].sum(0)).ravel() > 0).all()
    # has_icd / has_temporal agree with the matrices and the stays
    assert (np.asarray(d["icd"].sum(1)).ravel() > 0).tolist() == ehr["has_icd"].tolist()
    assert set(ehr.loc[ehr["has_temporal"], "hadm_id"]) == set(d["stays"]["hadm_id"])
    assert d["stays"].groupby("hadm_id").size().max() <= cfg.medcsp_max_stays
    # CXR records: patients of the EHR source only; the hold-out never shares a patient with them
    assert set(d["cxr_records"]["subject_id"]) <= set(ehr["subject_id"])
    assert not set(d["holdout_records"]["subject_id"]) & set(ehr["subject_id"])


def test_cohorts_and_allowed_inputs(built):
    _, d = built
    assert set(d["cohorts"]) == {"arf", "shock", "mortality", "readmission"}
    for task, f in d["cohorts"].items():
        assert f["label"].isin([0, 1]).all() and f["split"].notna().all(), task
    for task in ("arf", "shock", "mortality"):
        assert "note" not in features.TASK_MODALITIES[task]          # no text written after the prediction time
        f = d["cohorts"][task]
        assert f["stay_id"].is_unique and f["subject_id"].is_unique   # first ICU stay per patient
        assert ((f["prediction_time"] - f["intime"]).dt.total_seconds() == 48 * 3600).all()
    assert not d["quality"].empty


def test_reuse_rebuild_and_missing(built, tmp_path):
    cfg, d = built
    stamp = (features.out_dir(cfg) / "params.json").stat().st_mtime_ns
    features.build(cfg)
    assert (features.out_dir(cfg) / "params.json").stat().st_mtime_ns == stamp        # reused, not rebuilt
    assert features.params_of(load_profile("smoke", overrides={"medcsp_bin_hours": 2.0})) != d["params"]
    with pytest.raises(DataError, match="08_medcsp_data"):
        features.load(load_profile("smoke", overrides={"runs_dir": str(tmp_path)}))


def test_features_out_of_step_with_records_are_an_error(tmp_path):
    """Record features are indexed by record position: a folder whose matrices have other row counts (e.g. built
    before the EHR source was restricted to ICU admissions) must not be read."""
    import pandas as pd
    from scipy import sparse

    d = {"ehr_records": pd.DataFrame({"hadm_id": [1, 2]}), "icd": sparse.csr_matrix((3, 4)),
         "drug": sparse.csr_matrix((2, 4)), "demographics": np.zeros((2, 3))}
    with pytest.raises(DataError, match="re-run notebook 08"):
        features._check_rows(tmp_path, d)
    features._check_rows(tmp_path, {**d, "icd": sparse.csr_matrix((2, 4))})
