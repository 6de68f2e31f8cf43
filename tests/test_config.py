"""Profiles: every shipped profile loads, unknown keys and bad values are errors naming the key."""
from pathlib import Path

import pytest
import yaml

from medbind_lib import ROOT
from medbind_lib.config import SCHEMA, available_profiles, describe, load_profile
from medbind_lib.errors import ConfigError


@pytest.mark.parametrize("name", ["smoke", "default", "gpu", "paper"])
def test_shipped_profiles_load(name):
    cfg = load_profile(name)
    assert cfg.profile == name
    for key in ("data_root", "mimic_cxr_root", "runs_dir", "cache_dir"):
        assert Path(cfg[key]).is_absolute(), key
    assert cfg.runs_dir == str(ROOT / "runs" / name)
    assert set(cfg) == set(SCHEMA)


def test_available_profiles_lists_the_four():
    assert {"smoke", "default", "gpu", "paper"} <= set(available_profiles())


def test_templates_resolve_from_repo_root():
    cfg = load_profile("smoke")
    assert cfg.mimic_cxr_root == str(ROOT / "data" / "smoke" / "mimic-cxr-jpg")
    assert cfg.cache_dir == str(ROOT / "runs" / "smoke" / "cache")
    assert load_profile("paper").mimic_cxr_root == "/data/physionet/mimic-cxr-jpg/2.1.0"


def test_unknown_key_lists_valid_keys(tmp_path):
    (tmp_path / "p.yaml").write_text("seed: 1\nlerning_rate: 3\n")
    with pytest.raises(ConfigError) as e:
        load_profile("p", params_dir=tmp_path)
    msg = str(e.value)
    assert "lerning_rate" in msg and "p.yaml" in msg and "ecg_fs" in msg


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="bogus"):
        load_profile("smoke", overrides={"bogus": 1})


@pytest.mark.parametrize("key,value", [("seed", "zero"), ("synthetic", 1), ("ecg_fs", 1.5), ("datasets", "all")])
def test_wrong_types(key, value):
    with pytest.raises(ConfigError, match=key):
        load_profile("smoke", overrides={key: value})


def test_float_keys_accept_ints():
    assert load_profile("smoke", overrides={"pair_window_hours": 12}).pair_window_hours == 12


@pytest.mark.parametrize("key,value", [("ecg_norm", "zscore"), ("split_fractions", [0.5, 0.5, 0.5]),
                                       ("pair_policy", "first"), ("n_patients", 3)])
def test_bad_values(key, value):
    with pytest.raises(ConfigError, match=key.split("_")[0]):
        load_profile("smoke", overrides={key: value})


def test_notebook_layer_and_precedence(tmp_path):
    (tmp_path / "p.yaml").write_text("seed: 1\nn_patients: 50\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "02.yaml").write_text("seed: 2\n")
    assert load_profile("p", params_dir=tmp_path).seed == 1
    cfg = load_profile("p", notebook="02", params_dir=tmp_path)
    assert (cfg.seed, cfg.n_patients) == (2, 50)
    assert load_profile("p", notebook="02", overrides={"seed": 3}, params_dir=tmp_path).seed == 3


def test_missing_profile_names_available(tmp_path):
    (tmp_path / "a.yaml").write_text("seed: 1\n")
    with pytest.raises(ConfigError, match=r"\['a'\]"):
        load_profile("nope", params_dir=tmp_path)


def test_unresolvable_reference(tmp_path):
    (tmp_path / "p.yaml").write_text("data_root: '{nowhere}/x'\n")
    with pytest.raises(ConfigError, match="nowhere"):
        load_profile("p", params_dir=tmp_path)


def test_invalid_yaml(tmp_path):
    (tmp_path / "p.yaml").write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_profile("p", params_dir=tmp_path)


def test_shipped_yaml_keys_are_documented():
    for p in (ROOT / "params").glob("*.yaml"):
        assert set(yaml.safe_load(p.read_text())) <= set(SCHEMA), p
    table = describe()
    assert all(f"`{k}`" in table for k in SCHEMA)
