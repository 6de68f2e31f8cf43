"""The suite never deletes, moves or overwrites what it did not create (a user's real datasets above all),
and a run leaves the checkout clean."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medbind_lib import ROOT
from medbind_lib.config import available_profiles, load_profile
from medbind_lib.errors import ConfigError
from medbind_lib.synth import MARKER_NAME, STAMP_NAME, foreign_roots, write_cohort
from medbind_lib.synth.__main__ import main as synth_main

TINY = {"n_patients": 12, "synth_image_size": 48, "progress": False}


def _plant(root: Path) -> Path:
    """A real-looking MIMIC-CXR-JPG file of a user's download."""
    f = root / "files" / "p10" / "p10000032" / "s50414267" / "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"\xff\xd8\xff\xe0 user's image")
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(b"user's table")
    return f


def _untouched(f: Path) -> bool:
    return f.is_file() and f.read_bytes() == b"\xff\xd8\xff\xe0 user's image"


def _no_staging(parent: Path) -> bool:
    return not any("synth-staging" in p.name for p in parent.iterdir())


@pytest.mark.parametrize("profile", available_profiles())
def test_user_root_survives_synth_under_every_profile(tmp_path, profile, capsys):
    data_root = tmp_path / "physionet"
    cfg = load_profile(profile, overrides={"data_root": str(data_root), **TINY})
    planted = _plant(Path(cfg.mimic_cxr_root))
    with pytest.raises(ConfigError, match="synthetic: false" if not cfg.synthetic else "did not create"):
        write_cohort(cfg)
    with pytest.raises(ConfigError):
        write_cohort(cfg, force=True)
    assert synth_main(["--profile", profile, "--data-root", str(data_root), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert _untouched(planted) and (planted.parents[4] / "mimic-cxr-2.0.0-metadata.csv.gz").read_bytes() == \
        b"user's table"
    assert not (data_root / STAMP_NAME).exists() and _no_staging(tmp_path)


def test_paper_profile_is_refused_before_anything_is_written(tmp_path, capsys):
    cfg = load_profile("paper", overrides={"data_root": str(tmp_path / "empty")})
    with pytest.raises(ConfigError, match="python -m medbind_lib.check --profile paper"):
        write_cohort(cfg)
    assert not (tmp_path / "empty").exists()
    assert synth_main(["--profile", "paper", "--data-root", str(tmp_path / "empty"), "--if-synthetic"]) == 0
    assert "no synthetic cohort is written" in capsys.readouterr().out and not (tmp_path / "empty").exists()


def test_make_data_paper_leaves_user_files_and_fails(tmp_path):
    if shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs make and the project's .venv (make setup)")
    data_root = tmp_path / "physionet"
    planted = _plant(Path(load_profile("paper", overrides={"data_root": str(data_root)}).mimic_cxr_root))
    r = subprocess.run(["make", "-s", "data", "PROFILE=paper", f"SET=data_root={data_root}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "synthetic: false" in r.stderr
    assert _untouched(planted)


def test_synthetic_profile_pointing_at_foreign_files(tmp_path):
    foreign = tmp_path / "my-mimic-iv"
    (foreign / "hosp").mkdir(parents=True)
    (foreign / "hosp" / "admissions.csv.gz").write_bytes(b"user's admissions")
    cfg = load_profile("smoke", overrides={"data_root": str(tmp_path / "d"), "mimic_iv_root": str(foreign), **TINY})
    assert list(foreign_roots(cfg)) == ["mimic_iv_root"]
    with pytest.raises(ConfigError, match=r"mimic_iv_root = .*my-mimic-iv"):
        write_cohort(cfg)
    assert (foreign / "hosp" / "admissions.csv.gz").read_bytes() == b"user's admissions"
    assert not (tmp_path / "d").exists() and _no_staging(tmp_path)        # refused before generating anything


def test_own_roots_and_empty_folders_are_replaced(tmp_path):
    data_root = tmp_path / "d"
    cfg = load_profile("smoke", overrides={"data_root": str(data_root), **TINY})
    Path(cfg.ptbxl_root).mkdir(parents=True)                               # an empty folder the user made
    write_cohort(cfg)
    for key in ("mimic_cxr_root", "mimic_iv_root", "ptbxl_root", "openi_root"):
        marker = json.loads((Path(cfg[key]) / MARKER_NAME).read_text())
        assert marker["generator"] == "medbind_lib.synth" and marker["n_patients"] == 12
    assert foreign_roots(cfg) == {}
    assert not write_cohort(cfg, force=True)["reused"] and _no_staging(tmp_path)
    for key in ("mimic_cxr_root", "ptbxl_root"):                         # unmarked under a 1.1.0 stamp: not ours
        (Path(cfg[key]) / MARKER_NAME).unlink()
    assert set(foreign_roots(cfg)) == {"mimic_cxr_root", "mimic_cxr_reports_root", "ptbxl_root"}
    stamp = json.loads((data_root / STAMP_NAME).read_text())               # a cohort of generator 1.0.0 (no
    stamp["params"]["generator_version"] = "1.0.0"                          # markers yet) is recognised as ours
    (data_root / STAMP_NAME).write_text(json.dumps(stamp))
    assert foreign_roots(cfg) == {}
    (data_root / STAMP_NAME).write_text("not a stamp of ours")
    assert set(foreign_roots(cfg)) == {"mimic_cxr_root", "mimic_cxr_reports_root", "ptbxl_root", "stamp"}
    with pytest.raises(ConfigError):
        write_cohort(cfg)
    assert (data_root / STAMP_NAME).read_text() == "not a stamp of ours"


def test_stale_staging_of_a_dead_run_is_removed_foreign_one_kept(tmp_path):
    import socket

    cfg = load_profile("smoke", overrides={"data_root": str(tmp_path / "d"), **TINY})
    dead = tmp_path / ".d.synth-staging-dead"
    (dead / "new").mkdir(parents=True)
    (dead / ".medbind-synth-staging").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 17}))
    lookalike = tmp_path / ".d.synth-staging-users"
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    write_cohort(cfg)
    assert not dead.exists() and (lookalike / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("profile", available_profiles())
def test_run_outputs_are_git_ignored(profile):
    """Everything a run writes lies under git-ignored paths, so `make reproduce` leaves the checkout clean."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    cfg = load_profile(profile)
    keys = ["runs_dir", "figures_dir", "cache_dir"] + (["data_root"] if cfg.synthetic else [])
    paths = [Path(cfg[k]) / "probe.file" for k in keys]
    inside = [p for p in paths if ROOT in p.parents]
    r = subprocess.run(["git", "check-ignore", "--no-index", *map(str, inside)], cwd=ROOT, capture_output=True,
                       text=True)
    ignored = set(r.stdout.split())
    assert all(str(p) in ignored for p in inside), [str(p) for p in inside if str(p) not in ignored]
    for p in inside:
        assert os.path.relpath(p, ROOT).split(os.sep)[0] != "figures", "runs must not write the committed figures/"
