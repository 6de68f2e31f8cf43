"""Seed replicates: run names, which runs a profile trains, the seed each one uses, the table rows they
resolve to, and the seed-averaged paired differences against a hand computation."""
from __future__ import annotations

import numpy as np
import pytest

from medbind_lib.config import load_profile
from medbind_lib.errors import ConfigError
from medbind_lib.reports import tables
from medbind_lib.metrics.paired import record
from medbind_lib.replicates import parse_run, replicate_runs, run_name, with_run_seed


def test_run_names_round_trip_and_errors():
    assert run_name("medbind_bd", 0) == "medbind_bd" and run_name("medbind_bd", 2) == "medbind_bd@seed2"
    assert parse_run("medbind_bd@seed2") == ("medbind_bd", 2) and parse_run("ecg_clip") == ("ecg_clip", 0)
    for bad in ("medbind_bd@seed0", "medbind_bd@seedx", "medbind_bd@seed"):
        with pytest.raises(ValueError, match="replicate index"):
            parse_run(bad)


def test_profile_replicates_and_seeds():
    cfg = load_profile("smoke", overrides={"seed": 5, "seed_replicates": 3, "variants": ["medbind_bd", "ecg_clip"],
                                           "seed_replicate_variants": ["medbind_bd", "medbind_nm"]})
    assert replicate_runs(cfg) == ["medbind_bd@seed1", "medbind_bd@seed2"]      # only variants the profile trains
    assert with_run_seed(cfg, "medbind_bd@seed2").seed == 7 and cfg.seed == 5   # a copy, the profile unchanged
    assert with_run_seed(cfg, "medbind_bd") is cfg
    assert replicate_runs(load_profile("smoke")) == []                            # default: no replicates
    both = load_profile("smoke", overrides={"seed_replicates": 3, "medcsp_variants": ["medcsp_a", "medcsp"],
                                            "seed_replicate_variants": ["medcsp", "medbind_bd"]})
    assert replicate_runs(both, "medcsp_variants") == ["medcsp@seed1", "medcsp@seed2"]
    assert with_run_seed(both, "medcsp@seed2").seed == both.seed + 2
    with pytest.raises(ConfigError):
        load_profile("smoke", overrides={"seed_replicates": 0})
    with pytest.raises(ConfigError):
        load_profile("smoke", overrides={"seed_replicate_variants": ["medbind_xx"]})


def test_replicate_systems_resolve_to_replicate_runs():
    cfg = load_profile("smoke", overrides={"seed_replicates": 2})
    keys = tables.replicate_systems(cfg, ("untrained", "clip", "medbind_bd", "cxr_clip+ecg_clip", "medcsp_untrained",
                                          "medcsp", "f_lstm"))
    # MEDCSP's untrained row follows its variant (the initialisation from seed + 1); MEDBind's untrained row is seed
    # 0's only (notebook 02 exports no replicate's initialisation); paper / per-task rows have none
    assert keys == ["medbind_bd@seed1", "cxr_clip+ecg_clip@seed1", "medcsp_untrained@seed1", "medcsp@seed1"]
    only_bd = load_profile("smoke", overrides={"seed_replicates": 2, "seed_replicate_variants": ["medbind_bd"]})
    assert tables.replicate_systems(only_bd, ("untrained", "medbind_bd", "medcsp_untrained")) == ["medbind_bd@seed1"]
    assert tables.replicate_systems(load_profile("smoke"), ("untrained", "medbind_bd")) == []
    from medbind_lib.reports.artifacts import row_systems

    zoo = row_systems()["cxr_clip+ecg_clip@seed1"]
    assert (zoo.cxr, zoo.ecg, zoo.tag("cxr")) == ("cxr_clip@seed1", "ecg_clip@seed1", "cxr_clip@seed1")
    u = row_systems()["untrained@seed1"]
    assert (u.tag("cxr"), u.tag("ecg"), u.checkpoint) == ("medbind_bd@seed1_untrained",) * 2 + ("untrained",)
    assert row_systems()["medcsp_untrained@seed2"].tag("cxr") == "medcsp@seed2_untrained"
    # a profile whose untrained row is another variant's initialisation: its replicates follow that variant
    assert row_systems("medbind_nm")["untrained@seed1"].tag("ecg") == "medbind_nm@seed1_untrained"


def test_seed_paired_differences_hand_computed():
    pq: dict = {}
    g = np.array(["p1", "p2", "p3", "p4"])
    hits = {"a": [100, 100, 0, 100], "b": [0, 100, 0, 100], "a@seed1": [100, 0, 0, 100], "b@seed1": [100, 0, 0, 0]}
    for k, v in hits.items():
        record(pq, "R@1", k, np.array(v, float), kind="mean", groups=g)
    df = tables.seed_paired_differences(pq, [("a", "b")], n_seeds=2, n_boot=200, seed=0)
    r = df.iloc[0]
    # seed 0: 75 - 50 = +25; seed 1: 50 - 25 = +25 -> mean 25, SD 0
    assert r["n_pretrain_seeds"] == 2 and r["n_patients"] == 4
    assert r["a_minus_b"] == pytest.approx(25) and r["seed_sd"] == pytest.approx(0)
    assert r["per_seed"] == "+25.0 +25.0" and r["lo"] <= 25 <= r["hi"]
    # the joint CI is the mean of the per-seed replicates: seed-0 hits differ on p1, seed-1 on p4 -> per
    # replicate the mean difference is 25 * (count(p1) + count(p4)) / 4 averaged -> within [0, 50]
    assert 0 <= r["lo"] and r["hi"] <= 50
    one = tables.seed_paired_differences(pq, [("a", "b")], n_seeds=1, n_boot=200, seed=0).iloc[0]
    assert one["n_pretrain_seeds"] == 1 and np.isnan(one["seed_sd"])
    assert tables.seed_paired_differences(pq, [("a", "zz")], n_seeds=2).empty


def test_medcsp_untrained_reference_per_seed():
    from medbind_lib.pipeline import untrained_reference_run

    cfg = load_profile("smoke", overrides={"seed_replicates": 3, "medcsp_variants": ["medcsp_a", "medcsp"],
                                           "seed_replicate_variants": ["medcsp_a", "medcsp"]})
    assert [untrained_reference_run(cfg, r) for r in ("medcsp_a", "medcsp_a@seed2", "medcsp@seed1")] == \
        ["medcsp", "medcsp@seed2", "medcsp@seed1"]
    # medcsp not replicated: its seed-k untrained reference would pair with nothing
    only_a = load_profile("smoke", overrides={"seed_replicates": 2, "medcsp_variants": ["medcsp_a", "medcsp"],
                                              "seed_replicate_variants": ["medcsp_a"]})
    assert untrained_reference_run(only_a, "medcsp_a@seed1") is None
    assert untrained_reference_run(only_a, "medcsp") == "medcsp"


def test_paired_radiology_averages_over_seeds_by_hand():
    """Two seeds of (a, b) on 4 queries of 4 patients: seed 0 a - b = +50, seed 1 = 0 -> mean +25, SD 35.4; a
    row whose b has no replicate rests on seed 0 alone."""
    from medbind_lib.metrics.protocol import EvalSettings
    from medbind_lib.reports.radiology import paired_radiology

    g = np.array(["p1", "p2", "p3", "p4"])
    hits = {"a": [100, 100, 0, 0], "b": [0, 0, 0, 0], "a@seed1": [100, 0, 0, 0], "b@seed1": [100, 0, 0, 0],
            "c": [0, 0, 0, 0]}
    pq = {("set", k): {"R@10": np.array(v, float), "groups": g} for k, v in hits.items()}
    df = paired_radiology(pq, {}, [("a", "b"), ("a", "c")], EvalSettings(n_boot=300), n_seeds=2)
    ab, ac = df.iloc[0], df.iloc[1]
    assert ab["n_pretrain_seeds"] == 2 and ab["a_minus_b"] == pytest.approx(25)
    assert ab["seed_sd"] == pytest.approx(np.std([50, 0], ddof=1)) and ab["per_seed"] == "+50.0 +0.0"
    assert (ab["value_a"], ab["value_b"], ab["n"], ab["n_patients"]) == (pytest.approx(37.5), pytest.approx(12.5), 4, 4)
    assert 0 <= ab["lo"] <= 25 <= ab["hi"] <= 50       # replicate-wise: 25 x (count p1 + count p2) / 4 averaged
    assert ac["n_pretrain_seeds"] == 1 and ac["a_minus_b"] == pytest.approx(50) and np.isnan(ac["seed_sd"])


def test_ehr_task_paired_rows_average_over_medcsp_seeds():
    """MEDCSP at seeds 0 and 1 against its untrained reference seed by seed and against F-LSTM (one fit)."""
    from medbind_lib.medcsp.task_inputs import TaskSettings
    from medbind_lib.reports.ehr_tasks import _paired_rows

    def boot(v, shift=0.0):
        reps = np.linspace(v - 0.05, v + 0.05, 200) + shift
        return {"auroc": {"value": v, "reps": reps}}

    b = {"medcsp": boot(0.80), "medcsp@seed1": boot(0.70), "medcsp_untrained": boot(0.60),
         "medcsp_untrained@seed1": boot(0.65), "f_lstm": boot(0.75)}
    rows = {r["b"]: r for r in _paired_rows("arf", b, TaskSettings(n_boot=200), n_patients=40)}
    u, f = rows["medcsp_untrained"], rows["f_lstm"]
    # untrained: seed 0 +20, seed 1 +5 -> +12.5; F-LSTM: +5 and -5 -> 0 (the same F-LSTM fit for both seeds)
    assert u["n_pretrain_seeds"] == 2 and u["a_minus_b"] == pytest.approx(12.5) and u["per_seed"] == "+20.0 +5.0"
    assert f["a_minus_b"] == pytest.approx(0.0) and f["seed_sd"] == pytest.approx(np.std([5, -5], ddof=1))
    assert u["lo"] == pytest.approx(12.5) and u["hi"] == pytest.approx(12.5)   # replicate-wise differences constant
    assert u["n_patients"] == 40 and u["a_value"] == pytest.approx(75.0)
    one = _paired_rows("arf", {k: v for k, v in b.items() if "@" not in k}, TaskSettings(n_boot=200), 40)
    assert {r["n_pretrain_seeds"] for r in one} == {1}
