"""MEDCSP's EHR-task population (the paper's MIMIC-III role): synthetic ICU patients appended without moving a
byte of the other groups, kept out of every pre-training record, and the only rows of the task cohorts."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from medbind_lib.cohort import task_subjects
from medbind_lib.config import load_profile
from medbind_lib.errors import ConfigError, DataError
from medbind_lib.layout import RunLayout
from medbind_lib.llm import tasks as llm_tasks
from medbind_lib.medcsp import features
from medbind_lib.medcsp import task_inputs as TI
from medbind_lib.quality import QualityLog
from medbind_lib.synth import latent, mimic
from medbind_lib.synth.common import rng_for

from test_data import ensure_smoke_artifacts


# --- the generator --------------------------------------------------------------------------------------------
def test_task_population_is_appended_icu_only_and_disjoint():
    a = latent.make_sources(4, 40, 0.5, 0.3)
    b = latent.make_sources(4, 40, 0.5, 0.3, task_patients=25)
    for g in ("base", "ehr_only", "cxr_only"):                       # the earlier groups never move
        for name in ("patients", "admissions", "visits"):
            pd.testing.assert_frame_equal(getattr(getattr(a, g), name), getattr(getattr(b, g), name))
    assert a.task is None and len(b.task.patients) == 25
    t = b.task
    assert t.admissions["icu"].all() and len(t.visits) == 0 and (t.patients["modalities"] == "task").all()
    earlier = set().union(*(set(getattr(b, g).patients.subject_id) for g in ("base", "ehr_only", "cxr_only")))
    assert not set(t.patients.subject_id) & earlier
    hadm = set(b.base.admissions.hadm_id) | set(b.ehr_only.admissions.hadm_id)
    assert not set(t.admissions.hadm_id) & hadm and t.admissions.hadm_id.is_unique


def test_task_intercepts_move_only_their_outcomes():
    """Same draws, other intercepts: death and readmission rates move the way the constants say (the task
    population's reference prevalences), from one latent model."""
    p = latent.make_patients(rng_for(0, "task"), 2000)
    base = latent.make_admissions(rng_for(1, "task"), p)
    task = latent.make_admissions(rng_for(1, "task"), p, latent.TASK_DEATH_LOGIT, latent.TASK_READMIT_LOGIT)
    alive = lambda a: a[a.hospital_expire_flag == 0]                               # noqa: E731
    assert task.hospital_expire_flag.mean() < base.hospital_expire_flag.mean()
    assert alive(task).readmit_30d.mean() > alive(base).readmit_30d.mean() + 0.02


def _gunzip(path):
    return gzip.decompress(path.read_bytes())


def test_mimic_iv_rows_of_earlier_groups_are_byte_identical(tmp_path):
    a = latent.make_sources(2, 16, 0.5, 0.0)
    b = latent.make_sources(2, 16, 0.5, 0.0, task_patients=8)
    rngs = lambda: dict(rng=rng_for(2, "mimic_iv"), icu_rng=rng_for(2, "mimic_icu"),        # noqa: E731
                        extra_rng=rng_for(2, "ehr_only_iv"), extra_icu_rng=rng_for(2, "ehr_only_icu"))
    mimic.write_mimic_iv(a.base, tmp_path / "a" / "iv", tmp_path / "a" / "note", extra=a.ehr_only, **rngs())
    n = mimic.write_mimic_iv(b.base, tmp_path / "b" / "iv", tmp_path / "b" / "note", extra=b.ehr_only,
                             task=b.task, task_rng=rng_for(2, "task_iv"), task_icu_rng=rng_for(2, "task_icu"),
                             **rngs())
    for f in sorted((tmp_path / "a").rglob("*.csv.gz")):
        old, new = _gunzip(f), _gunzip(tmp_path / "b" / f.relative_to(tmp_path / "a"))
        assert new.startswith(old), f.name
    adm = pd.read_csv(tmp_path / "b" / "iv" / "hosp" / "admissions.csv.gz")
    stays = pd.read_csv(tmp_path / "b" / "iv" / "icu" / "icustays.csv.gz")
    mine = adm[adm.subject_id.isin(b.task.patients.subject_id)]
    assert len(mine) == len(b.task.admissions) == n["admissions"] - len(b.base.admissions) - len(b.ehr_only.admissions)
    assert set(mine.hadm_id) <= set(stays.hadm_id)                    # every task admission has an ICU stay
    assert stays.stay_id.is_unique
    lab = pd.read_csv(tmp_path / "b" / "iv" / "hosp" / "labevents.csv.gz", usecols=["labevent_id"])
    assert lab.labevent_id.is_unique


# --- the subject list -------------------------------------------------------------------------------------------
def test_task_subjects_reads_the_list_and_names_bad_files(tmp_path):
    cfg = {"medcsp_task_subjects": None}
    assert task_subjects(cfg) is None
    ok = tmp_path / "ok.csv"
    pd.DataFrame({"subject_id": [10000032, 10000033]}).to_csv(ok, index=False)
    assert task_subjects({"medcsp_task_subjects": str(ok)}) == frozenset({10000032, 10000033})
    with pytest.raises(DataError, match="names no file"):
        task_subjects({"medcsp_task_subjects": str(tmp_path / "absent.csv")})
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"patient": [1]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="no subject_id column"):
        task_subjects({"medcsp_task_subjects": str(bad)})
    bad.write_text("subject_id\n12\nabc\n")
    with pytest.raises(DataError, match="not integers"):
        task_subjects({"medcsp_task_subjects": str(bad)})


def test_split_fractions_are_checked():
    with pytest.raises(ConfigError, match="medcsp_task_split_fractions"):
        load_profile("smoke", overrides={"medcsp_task_split_fractions": [0.5, 0.5, 0.5]})
    cfg = load_profile("default")
    assert cfg.medcsp_task_subjects.endswith("_synth_truth/medcsp_task_subjects.csv") and "{" not in \
        cfg.medcsp_task_subjects


# --- notebook 08 and 10 on a reserved population ----------------------------------------------------------------
@pytest.fixture(scope="module")
def reserved(tmp_path_factory):
    """The smoke cohort with half of its EHR-only ICU patients reserved for the tasks (notebook 01's outputs
    copied into a run folder of its own, so the shared smoke run is untouched)."""
    base = load_profile("smoke", overrides={"progress": False})
    ensure_smoke_artifacts(base)
    tmp = tmp_path_factory.mktemp("task_population")
    stays = pd.read_csv(f"{base.mimic_iv_root}/icu/icustays.csv.gz")
    icu = np.array(sorted(set(stays.subject_id)))
    ids = icu[::2]
    pd.DataFrame({"subject_id": ids}).to_csv(tmp / "subjects.csv", index=False)
    cfg = load_profile("smoke", overrides={"progress": False, "runs_dir": str(tmp / "runs"),
                                           "medcsp_task_subjects": str(tmp / "subjects.csv"),
                                           "medcsp_task_split_fractions": [0.4, 0.1, 0.5]})
    shutil.copytree(RunLayout(base).linked, RunLayout(cfg).linked)
    return cfg, set(int(x) for x in ids), features.build(cfg)


def test_reserved_patients_are_never_pretraining_records(reserved):
    cfg, ids, d = reserved
    for k in ("ehr_records", "cxr_records", "holdout_records"):
        assert not set(d[k]["subject_id"].astype(int)) & ids, k
    assert not set(d["history_subjects"]["subject_id"]) & ids
    q = d["quality"]
    assert (q["reason"].str.contains("EHR-task population") & (q["records"] > 0)).any()
    # the task records carry the same features, in their own files, row-aligned
    t = d["task"]
    assert set(t["records"]["subject_id"]) <= ids and len(t["records"])
    assert t["icd"].shape[0] == t["drug"].shape[0] == len(t["demographics"]) == len(t["records"])
    assert t["icd"].shape[1] == d["icd"].shape[1] and t["demographics"].shape[1] == d["demographics"].shape[1]
    # vocabularies come from the EHR source's training split only: every token occurs in one of its rows
    train = (d["ehr_records"]["split"] == "train").to_numpy()
    assert (np.asarray(d["icd"][train].sum(0)).ravel() > 0).all()


def test_task_cohorts_hold_the_reserved_population_only(reserved):
    cfg, ids, d = reserved
    for task, f in d["cohorts"].items():
        assert len(f) and set(f["subject_id"].astype(int)) <= ids, task
        assert f["split"].isin(["train", "valid", "test"]).all(), task
    # the population's own split: a pure function of (seed, subject), the fractions of the key
    f = pd.concat(d["cohorts"].values())
    per = f.groupby("subject_id")["split"].nunique()
    assert (per == 1).all()
    ti = TI.task_inputs(d, "readmission", cfg.medcsp_max_stays)
    assert len(ti) == len(d["cohorts"]["readmission"])
    assert ti.arrays["icd"].shape[1] == d["icd"].shape[1] and ti.present["demo"].all()
    assert TI.record_features(d)["file"] == "task_records.parquet"
    s = TI.task_settings(cfg)
    assert "task population" in s.cohort and "40/10/50" in s.cohort


def test_a_list_of_unknown_patients_is_an_error(reserved, tmp_path):
    cfg, _, _ = reserved
    (tmp_path / "nobody.csv").write_text("subject_id\n1\n2\n")
    other = load_profile("smoke", overrides={"progress": False, "runs_dir": cfg.runs_dir,
                                             "medcsp_task_subjects": str(tmp_path / "nobody.csv")})
    with pytest.raises(DataError, match="none of its 2 patients"):
        features.build(other)


def test_table4_drops_and_counts_reserved_patients():
    adm = pd.DataFrame({"hadm_id": [1, 2, 3], "subject_id": ["7", "8", "9"], "split": ["train", "test", "test"],
                        "mortality": [0, 1, 0], "cxr_record_id": ["c1", None, "c3"], "ecg_record_id": [None] * 3,
                        "demographics_text": ["a", "b", "c"]})
    q = QualityLog()
    f = llm_tasks.build_task_frame("mortality", adm, None, (), "all", q, reserved=frozenset({8}))
    assert f["hadm_id"].tolist() == [1, 3]
    qf = q.to_frame()
    assert int(qf.loc[qf["reason"].str.contains("EHR-task population"), "records"].sum()) == 1
