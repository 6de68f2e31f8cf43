"""The registry is the one declaration of every system: what reads it must build exactly what it declares."""
import pytest
import torch

from medbind_lib import registry
from medbind_lib.config import ConfigError, load_profile
from medbind_lib.losses import MEDBindLoss, MEDCSPLoss


def _medbind_batch(n=4, d=8):
    g = torch.Generator().manual_seed(0)
    z = lambda: torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)  # noqa: E731
    return {"cxr": z(), "cxr_text": z(), "cxr_text_keys": torch.arange(n), "ecg": z(), "ecg_text": z(),
            "ecg_text_keys": torch.arange(n), "pairs": torch.stack([torch.arange(n), torch.arange(n)], 1),
            "cxr_labels": torch.eye(n, 14)}


@pytest.mark.parametrize("name", registry.variant_names("medbind"))
def test_medbind_loss_computes_exactly_the_declared_terms(name):
    v = registry.VARIANTS[name]
    out = MEDBindLoss(name)(_medbind_batch())
    produced = {"tmcl" if k.startswith("tmcl_") else k.split("_")[0]
                for k in out if k.split("_")[0] in ("tmcl", "clip", "medclip", "emcl") and not k.endswith(("2z", "2t",
                                                                                                         "2e", "2c"))}
    assert produced == set(v.terms)
    assert {k[len("tmcl_"):] for k in out if k in ("tmcl_cxr", "tmcl_ecg")} == (
        set(v.modalities) if "tmcl" in v.terms else set())
    assert MEDBindLoss(name).modalities == v.modalities


@pytest.mark.parametrize("name", registry.variant_names("medcsp"))
def test_medcsp_loss_carries_the_declared_terms_and_sources(name):
    v = registry.VARIANTS[name]
    loss = MEDCSPLoss(name)
    assert loss.terms == v.terms and loss.sources == v.sources
    assert ("ehr" in v.sources) == (v.modalities is None)     # an imaging-only variant builds no EHR encoder


def test_every_table_row_is_declared_and_its_variants_exist():
    for table, rows in registry.TABLES.items():
        for key in rows:
            s = registry.system(key)
            for m in s.modalities:
                if s.kind == "pretrained":      # public weights: the row's own embeddings folder, CXR side only
                    assert (m, s.tag(m), s.method) == ("cxr", key, None) and key in registry.PRETRAINED, key
                    continue
                assert registry.variant(s.variant(m)).name == s.variant(m), (table, key)


def test_replicate_rows_resolve_to_the_replicate_runs():
    s = registry.system("medbind_nm@seed2")
    assert (s.cxr, s.ecg, s.label) == ("medbind_nm@seed2", "medbind_nm@seed2", "MEDBind_NM (seed +2)")
    assert registry.system("untrained@seed1").tag("cxr") == "medbind_bd@seed1_untrained"
    for bad in ("pretrained_clip@seed1", "f_lstm@seed1", "medbind_nm@seed0", "nope@seed1"):
        with pytest.raises(KeyError):
            registry.system(bad)


def test_untrained_row_follows_the_evaluation_setting():
    from medbind_lib.reports.artifacts import row_systems

    assert row_systems()["untrained"] == registry.SYSTEMS["untrained"]
    other = row_systems("medbind_nm")["untrained"]
    assert (other.cxr, other.ecg, other.checkpoint) == ("medbind_nm", "medbind_nm", "untrained")
    assert row_systems("medbind_nm")["medbind_bd@seed1"].cxr == "medbind_bd@seed1"


def test_profile_choices_come_from_the_registry():
    with pytest.raises(ConfigError, match="variants"):
        load_profile("smoke", overrides={"variants": ["medbind_bd", "medbind_xx"]})
    with pytest.raises(ConfigError, match="medcsp_task_variant"):
        load_profile("smoke", overrides={"medcsp_task_variant": "medcsp_single"})   # no EHR encoders
    cfg = load_profile("smoke", overrides={"medcsp_variants": ["medcsp_single"]})
    assert list(cfg.medcsp_variants) == ["medcsp_single"]


def test_variant_lookup_errors_name_the_known_variants():
    with pytest.raises(ValueError, match="medbind_bd"):
        registry.variant("medbind_xx")
    assert registry.variant("medcsp_a@seed3").name == "medcsp_a"
