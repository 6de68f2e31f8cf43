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
    with pytest.raises(ConfigError):
        load_profile("smoke", overrides={"seed_replicates": 0})
    with pytest.raises(ConfigError):
        load_profile("smoke", overrides={"seed_replicate_variants": ["medbind_xx"]})


def test_replicate_systems_resolve_to_replicate_runs():
    cfg = load_profile("smoke", overrides={"seed_replicates": 2})
    keys = tables.replicate_systems(cfg, ("untrained", "clip", "medbind_bd", "cxr_clip+ecg_clip"))
    assert keys == ["medbind_bd@seed1", "cxr_clip+ecg_clip@seed1"]
    from medbind_lib.reports.artifacts import row_systems

    zoo = row_systems()["cxr_clip+ecg_clip@seed1"]
    assert (zoo.cxr, zoo.ecg, zoo.tag("cxr")) == ("cxr_clip@seed1", "ecg_clip@seed1", "cxr_clip@seed1")
    with pytest.raises(KeyError):
        row_systems()["untrained@seed1"]


def test_seed_paired_differences_hand_computed():
    pq: dict = {}
    g = np.array(["p1", "p2", "p3", "p4"])
    hits = {"a": [100, 100, 0, 100], "b": [0, 100, 0, 100], "a@seed1": [100, 0, 0, 100], "b@seed1": [100, 0, 0, 0]}
    for k, v in hits.items():
        record(pq, "R@1", k, np.array(v, float), kind="mean", groups=g)
    df = tables.seed_paired_differences(pq, [("a", "b")], n_seeds=2, n_boot=200, seed=0)
    r = df.iloc[0]
    # seed 0: 75 - 50 = +25; seed 1: 50 - 25 = +25 -> mean 25, SD 0
    assert r["n_seeds"] == 2 and r["a_minus_b"] == pytest.approx(25) and r["seed_sd"] == pytest.approx(0)
    assert r["per_seed"] == "+25.0 +25.0" and r["lo"] <= 25 <= r["hi"]
    # the joint CI is the mean of the per-seed replicates: seed-0 hits differ on p1, seed-1 on p4 -> per
    # replicate the mean difference is 25 * (count(p1) + count(p4)) / 4 averaged -> within [0, 50]
    assert 0 <= r["lo"] and r["hi"] <= 50
    one = tables.seed_paired_differences(pq, [("a", "b")], n_seeds=1, n_boot=200, seed=0).iloc[0]
    assert one["n_seeds"] == 1 and np.isnan(one["seed_sd"])
    assert tables.seed_paired_differences(pq, [("a", "zz")], n_seeds=2).empty
