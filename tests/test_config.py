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


def test_unknown_key_suggests_the_nearest(tmp_path):
    (tmp_path / "p.yaml").write_text("seed: 1\nepoch: 3\nlerning_rate: 3\n")
    with pytest.raises(ConfigError) as e:
        load_profile("p", params_dir=tmp_path)
    msg = str(e.value)
    assert "p.yaml" in msg and "'epoch' (did you mean 'epochs'?)" in msg and "'lerning_rate'" in msg
    assert "ecg_fs" not in msg and "describe()" in msg            # no dump of ~120 names, a pointer instead


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


@pytest.mark.parametrize("key,value", [
    ("lr", 0), ("lr", -1e-3), ("epochs", 0), ("batch_size", 0), ("tau", 0.0), ("weight_decay", -0.1),
    ("pair_fraction", 1.5), ("ecg_dropout", 1.2), ("warmup_steps", -1), ("max_steps", 0), ("llm_lr", 0.0),
    ("notebook_timeout", 0), ("notebook_timeout", "soon"), ("ecg_heads", 3)])
def test_ranges_are_checked_at_load(key, value):
    with pytest.raises(ConfigError, match=key):
        load_profile("smoke", overrides={key: value})


@pytest.mark.parametrize("key,value", [
    ("variants", ["medbind_bd", "medbind_xx"]), ("variants", []), ("variants", ["ecg_clip", "ecg_clip"]),
    ("amp", "fp16"), ("emcl_scale", "n_over_m"), ("loss_reduction", "avg"), ("cxr_pool", "cls"),
    ("datasets", ["mimic"]), ("medcsp_fiddle_input", "early"), ("medcsp_fig7_drop_unit", "ratio")])
def test_choices_are_checked_at_load(key, value):
    with pytest.raises(ConfigError, match=key):
        load_profile("smoke", overrides={key: value})


def test_config_choices_match_the_library():
    """The loader's choice lists are the ones the library enforces later (they cannot drift apart)."""
    from medbind_lib import losses
    from medbind_lib.config import CHOICES
    from medbind_lib.models import text

    assert CHOICES["emcl_scale"] == losses.EMCL_SCALES and CHOICES["loss_reduction"] == losses.REDUCTIONS
    assert CHOICES["text_pool"] == text.POOLS
    from medbind_lib.medbind import pretrain as train

    assert CHOICES["select_on"] == train.SELECT_ON
    from medbind_lib import linking

    assert CHOICES["readmission_no_next"] == linking.READMISSION_NO_NEXT
    from medbind_lib.losses import medcsp

    assert CHOICES["medcsp_la_negatives"] == medcsp.LA_NEGATIVES and CHOICES["medcsp_ld_target"] == medcsp.LD_TARGETS
    assert CHOICES["medcsp_lp_direction"] == CHOICES["medcsp_ld_direction"] == medcsp.LP_DIRECTIONS
    from medbind_lib.metrics.protocol import RETRIEVAL_GALLERIES

    assert CHOICES["medcsp_retrieval_gallery"] == RETRIEVAL_GALLERIES
    from medbind_lib.models.fiddle import FIDDLE_INPUTS
    from medbind_lib.reports.ablations import DROP_UNITS

    assert CHOICES["medcsp_fiddle_input"] == FIDDLE_INPUTS and CHOICES["medcsp_fig7_drop_unit"] == DROP_UNITS


def test_parse_overrides():
    from medbind_lib.config import parse_overrides

    assert parse_overrides(["lr=0.001", "variants=[medbind_bd, ecg_clip]", "max_steps=null"]) == \
        {"lr": 0.001, "variants": ["medbind_bd", "ecg_clip"], "max_steps": None}
    for bad in (["lr"], ["=3"], ["variants=[a,"]):
        with pytest.raises(ConfigError):
            parse_overrides(bad)


def test_profiles_help_lists_every_profile():
    from medbind_lib.config import profiles_help

    text = profiles_help()
    for name in available_profiles():
        assert name in text
    assert "the papers' setting" in text


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
