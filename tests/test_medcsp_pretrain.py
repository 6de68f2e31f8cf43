"""MEDCSP pre-training on the shared loop (medcsp/pretrain.py + trainer.py) on the smoke cohort's notebook 08 data:
a resumed run ends with exactly the weights of an uninterrupted one (with a trained text encoder: a frozen one's
feature cache is refilled after a resume from other batch compositions, equal only to float rounding), the sampler's pairs reach L_P, the
single-source variant never builds or sees the EHR side, and a finished run is reused, not retrained."""
from __future__ import annotations

import json

import pytest
import torch

from medbind_lib.config import load_profile
from medbind_lib.medcsp import batches as B
from medbind_lib.medcsp import features
from medbind_lib.medcsp.pretrain import MEDCSPMethod, train_medcsp
from medbind_lib.trainer import load_checkpoint

from test_data import ensure_smoke_artifacts

TINY = {"progress": False, "medcsp_batch_size": 16, "medcsp_epochs": 1, "max_steps": 3, "medcsp_text_max_length": 16,
        "medcsp_text_freeze": False, "medcsp_embed_dim": 16, "medcsp_mlp_hidden": 16, "medcsp_lstm_hidden": 8, "medcsp_pair_rate": 0.5,
        "medcsp_image_model_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 1.0}}


@pytest.fixture(scope="module")
def setup():
    cfg = load_profile("smoke", overrides=TINY)
    ensure_smoke_artifacts(cfg)
    features.build(cfg)
    return cfg, B.load_records(cfg), B.load_records(cfg, sources=("cxr",))


def _weights(path):
    return load_checkpoint(path)["model"]


def test_resume_is_exact_and_pairs_reach_lp(setup, tmp_path):
    cfg, loaded, _ = setup
    full = train_medcsp(cfg, "medcsp", out_dir=tmp_path / "full", loaded=loaded)
    part = train_medcsp(cfg, "medcsp", out_dir=tmp_path / "part", loaded=loaded, stop_after_steps=1)
    assert part["interrupted"] and part["step"] == 1
    resumed = train_medcsp(cfg, "medcsp", out_dir=tmp_path / "part", loaded=loaded)
    assert full["steps"] == resumed["steps"] == 3
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "part" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    m = json.loads((tmp_path / "full" / "metrics.json").read_text())
    # pair_rate 0.5 of 16 records = 4 forced same-patient pairs per batch: L_P has anchors in every step
    assert m["n_lp_pairs_mean"] >= 4 and m["lp_anchors_mean"] >= 8
    assert m["params"]["medcsp_lambda_p"] == 0.5 and m["params"]["variant"] == "medcsp"
    assert "r1_report_image" in m["final_valid"] and m["final_valid"]["n_gallery_report_image"] > 0
    # a finished run is reused, not retrained
    again = train_medcsp(cfg, "medcsp", out_dir=tmp_path / "full", loaded=loaded)
    assert again["steps"] == 3 and again["train_seconds"] == pytest.approx(m["train_seconds"], rel=0.5)


def test_single_source_variant_builds_and_sees_no_ehr(setup, tmp_path):
    cfg, _, cxr_only = setup
    method = MEDCSPMethod(cfg, "medcsp_single", cxr_only)
    model = method.build_model(cfg)
    assert set(model.encoders) == {"image", "text"} and set(model.projections) == {"image", "report"}
    assert (cxr_only["records"]["train"].source == 1).all()
    out = train_medcsp(cfg, "medcsp_single", out_dir=tmp_path / "single", loaded=cxr_only)
    # the imaging source's training records alone (the ICU source's patients: a batch or two in smoke)
    assert out["steps"] == min(3, out["batches_per_epoch"]) >= 1 and out["data"]["train"]["ehr"] == 0
    assert out["data"]["train"]["cxr"] > 0
    with pytest.raises(ValueError, match="MEDCSP variant"):
        MEDCSPMethod(cfg, "medbind_bd", cxr_only)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_torchrun_two_process_gloo_matches_one_process(setup, tmp_path):
    """MEDCSP's CLI under torchrun (2 gloo processes, the loss gathering embeddings, patients, times and
    histories across ranks): it trains, and its validation loss and terms at step 0 equal one process on the
    whole batches."""
    import subprocess
    import sys
    from pathlib import Path

    cfg, loaded, _ = setup
    one = train_medcsp(cfg, "medcsp", out_dir=tmp_path / "one", loaded=loaded)
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not found beside the interpreter")
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "medbind_lib.medcsp.pretrain", "--profile",
           "smoke", "--variant", "medcsp", "--out-dir", str(tmp_path / "two"), "--no-resume", "--set", *sets]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["world_size"] == 2 and two["steps"] == one["steps"] == 3
    for k in ("val_loss", "val_la", "val_lp", "val_ld"):
        assert two["untrained_valid"][k] == pytest.approx(one["untrained_valid"][k], rel=1e-4, abs=1e-6), k
    assert (tmp_path / "two" / "best.pt").exists()
