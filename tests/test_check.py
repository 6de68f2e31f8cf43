"""Pre-flight checks at the user's edge: every missing dataset path at once (check), and every missing
output of an earlier notebook named with the notebook to run first (prereq)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from medbind_lib import check, prereq
from medbind_lib.config import load_profile
from medbind_lib.synth import write_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    cfg = load_profile("smoke", overrides={"data_root": str(tmp_path_factory.mktemp("chk") / "data"),
                                           "n_patients": 12, "synth_image_size": 48, "progress": False})
    write_cohort(cfg)
    return cfg


def test_synthetic_cohort_passes(cohort):
    assert check.missing(cohort) == []
    assert check.main(["--profile", "smoke", "--set", f"data_root={cohort.data_root}"]) == 0


def test_paper_without_data_lists_every_root_at_once_in_seconds(tmp_path, capsys):
    t0 = time.perf_counter()
    assert check.main(["--profile", "paper", "--set", f"data_root={tmp_path / 'none'}"]) == 1
    assert time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    cfg = load_profile("paper")
    for key in ("mimic_cxr_root", "mimic_cxr_reports_root", "mimic_ecg_root", "mimic_iv_root", "mimic_note_root",
                "ptbxl_root", "icbeb_root", "chexpert_root", "covid_root", "rsna_root", "openi_root"):
        assert f"{key} = " in err, key
    assert "11 missing" in err and "physionet.org/content/mimic-cxr-jpg" in err and "1.0.3" in err
    assert "kaggle.com" in err and "docs/DATASETS.md" in err and cfg.profile in err


def test_partial_roots_name_each_missing_file(cohort, tmp_path):
    root = tmp_path / "copy"
    for key in ("mimic_cxr_root", "ptbxl_root", "openi_root", "mimic_iv_root"):
        shutil.copytree(cohort[key], root / Path(cohort[key]).name)
    cfg = load_profile("smoke", overrides={"data_root": str(root), "progress": False})
    (Path(cfg.mimic_cxr_root) / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    (Path(cfg.ptbxl_root) / "scp_statements.csv").unlink()
    shutil.rmtree(Path(cfg.openi_root) / "ecgen-radiology")                 # the synthetic Open-I has both forms
    (Path(cfg.openi_root) / "indiana_reports.csv").unlink()
    gz = Path(cfg.mimic_iv_root) / "hosp" / "admissions.csv.gz"
    if gz.exists():                                           # .csv is as good as .csv.gz
        gz.rename(gz.with_suffix(""))
    rows = check.missing(cfg)
    what = {(r["key"], r["what"].split(":")[0]) for r in rows}
    assert ("mimic_cxr_root", "official split") in what
    assert ("ptbxl_root", "SCP statements") in what
    assert ("openi_root", "reports and images") in what
    assert not any(r["key"] == "mimic_iv_root" for r in rows)
    for key in ("mimic_ecg_root", "icbeb_root", "chexpert_root", "covid_root", "rsna_root"):
        assert [r["what"] for r in rows if r["key"] == key] == ["root folder"], key
    text = check.report(cfg, rows)
    assert "mimic-cxr-2.0.0-split.csv[.gz]" in text and "synth --profile smoke" in text


def test_missing_local_weights_are_listed(cohort, tmp_path):
    cfg = load_profile("smoke", overrides={"data_root": cohort.data_root, "text_model_path": str(tmp_path / "bert")})
    rows = check.missing(cfg)
    assert [r["key"] for r in rows] == ["text_model_path"]


@pytest.mark.realdata
def test_real_excerpts_satisfy_their_checks(realdata):
    cfg = load_profile("paper", overrides={
        "datasets": ["ptbxl", "mimic_iv", "icbeb"], "ptbxl_root": str(realdata / "ptbxl"),
        "mimic_iv_root": str(realdata / "mimic-iv-clinical-database-demo-2.2"),
        "mimic_note_root": str(realdata / "no-notes-in-the-demo"),
        "icbeb_root": str(realdata / "challenge2020" / "cpsc_2018")})
    rows = check.missing(cfg)
    assert [(r["key"], r["what"]) for r in rows] == [("mimic_note_root", "root folder")]


# --- prereq -----------------------------------------------------------------------------------------------
def test_notebooks_name_the_notebook_to_run_first(tmp_path):
    cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs"), "variants": ["medbind_bd", "ecg_clip"]})
    prereq.require(cfg, "00")
    prereq.require(cfg, "01")
    with pytest.raises(prereq.MissingArtifacts, match=r"--profile smoke --only 01$"):
        prereq.require(cfg, "02")
    with pytest.raises(prereq.MissingArtifacts) as e:
        prereq.require(cfg, "05")
    assert "--only 01,02" in str(e.value) and "medbind_bd" in str(e.value)
    runs = Path(cfg.runs_dir)
    (runs / "01").mkdir(parents=True)
    (runs / "01" / "link_params.json").write_text("{}")
    prereq.require(cfg, "02")
    for tag in ("medbind_bd", "ecg_clip", "medbind_bd_untrained"):     # the untrained reference: BD's alone
        (runs / "embeddings" / tag).mkdir(parents=True)
        (runs / "embeddings" / tag / "mimic_ecg.npz").write_bytes(b"")
    for v in cfg.variants:
        (runs / "02" / v).mkdir(parents=True)
        (runs / "02" / v / "best.pt").write_bytes(b"")
    (runs / "embeddings" / "medbind_bd_untrained" / "mimic_ecg.npz").unlink()    # export interrupted
    with pytest.raises(prereq.MissingArtifacts, match=r"medbind_bd_untrained[\s\S]*--only 02$"):
        prereq.require(cfg, "07")
    (runs / "embeddings" / "medbind_bd_untrained" / "mimic_ecg.npz").write_bytes(b"")
    for nb in ("03", "04", "05", "06", "07"):
        prereq.require(cfg, nb)


def test_medcsp_evaluation_needs_every_pretrained_variant(tmp_path):
    cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs"),
                                           "medcsp_variants": ["medcsp", "medcsp_a"]})
    runs = Path(cfg.runs_dir)
    (runs / "08").mkdir(parents=True)
    (runs / "08" / "params.json").write_text("{}")
    with pytest.raises(prereq.MissingArtifacts, match=r"--only 09$"):
        prereq.require(cfg, "12")
    for tag in ("medcsp", "medcsp_a", "medcsp_untrained"):
        (runs / "embeddings" / tag).mkdir(parents=True)
        (runs / "embeddings" / tag / "covid.npz").write_bytes(b"")
    (runs / "09" / "medcsp").mkdir(parents=True)
    (runs / "09" / "medcsp" / "best.pt").write_bytes(b"")
    with pytest.raises(prereq.MissingArtifacts, match=r"medcsp_a[\s\S]*--only 09$"):   # one variant not trained
        prereq.require(cfg, "12")
    (runs / "09" / "medcsp_a").mkdir(parents=True)
    (runs / "09" / "medcsp_a" / "best.pt").write_bytes(b"")
    prereq.require(cfg, "12")
    with pytest.raises(prereq.MissingArtifacts, match=r"--only 01,02$"):               # 11 also reads MEDBind's
        prereq.require(cfg, "11")
