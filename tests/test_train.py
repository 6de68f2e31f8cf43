"""The training loop: a short run (finite logs, both checkpoints, metrics), learning on a fixed batch,
exact resume equivalence on CPU, NaN stop, atomic checkpoints and the embedding export."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medbind_lib.loading import TokenizeFn
from medbind_lib.medbind import data as mdata
from medbind_lib.medbind import pretrain as T
from medbind_lib.config import load_profile
from medbind_lib.export import load_embeddings
from medbind_lib.medbind.embed import export_embeddings

from test_data import ensure_smoke_artifacts


def _cfg(**kw):
    base = dict(progress=False, batch_size=16, epochs=1, max_steps=3, warmup_steps=1, lr=1e-3)
    base.update(kw)
    return load_profile("smoke", overrides=base)


@pytest.fixture(scope="module")
def data_bd():
    cfg = _cfg()
    ensure_smoke_artifacts(cfg)
    return mdata.load_pretrain(cfg, "medbind_bd")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, data_bd):
    out = tmp_path_factory.mktemp("run")
    m = T.train(_cfg(), "medbind_bd", out_dir=out, resume=False, data=data_bd)
    return out, m


def test_short_run_writes_logs_checkpoints_metrics(short_run):
    out, m = short_run
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    steps = pd.read_parquet(out / "steps.parquet")
    assert steps["step"].tolist() == [1, 2, 3]
    for col in ("loss", "tmcl_cxr", "tmcl_ecg", "emcl", "m_pairs", "n_samples", "samples_per_s", "data_wait_s",
                "lr", "grad_norm"):
        assert col in steps and np.isfinite(steps[col]).all(), col
    assert (steps["n_samples"] == 16).all()
    assert steps["lr"].iloc[1] == pytest.approx(1e-3)  # warm-up of 1 step, then cosine
    assert steps["lr"].iloc[2] == pytest.approx(5e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["params"]["batch_size"] == 16
    assert metrics["env"]["params"]["profile"] == "smoke" and "packages" in metrics["env"]
    for key in ("val_loss", "r1_cxr_text", "r1_ecg_text", "r1_cxr_ecg"):
        assert key in metrics["final_valid"] and key in metrics["untrained_valid"]
    ck = T.load_checkpoint(out / "last.pt")
    assert ck["step"] == 3 and ck["variant"] == "medbind_bd" and ck["cfg"]["batch_size"] == 16
    assert {"python", "numpy", "torch"} <= set(ck["rng"][0]) and ck["finished"]
    # finished run and best weights: no optimizer state (AdamW's moments are 2x the model's size)
    best = T.load_checkpoint(out / "best.pt")
    assert "optimizer" not in ck and "scheduler" not in ck and "optimizer" not in best
    n_model = sum(v.numel() * v.element_size() for v in best["model"].values())
    assert (out / "best.pt").stat().st_size < 1.2 * n_model
    assert set(best["model"]) == set(ck["model"]) and best["step"] in {h["step"] for h in ck["history"]}
    # best.pt = the lowest validation TMCL (the criterion common to every variant), not BD's own loss with EMCL
    hist = [h for h in ck["history"] if "val_select" in h]
    assert metrics["select_on"] == "tmcl" and hist
    assert best["step"] == min(hist, key=lambda h: h["val_select"])["step"]
    assert metrics["best_val_criterion"] == pytest.approx(min(h["val_select"] for h in hist))
    # a finished run is not retrained on resume; asking it for more steps is a clear error, not a silent restart
    m2 = T.train(_cfg(), "medbind_bd", out_dir=out, resume=True, data=None)
    assert m2["steps"] == 3 and len(pd.read_parquet(out / "steps.parquet")) == 3
    with pytest.raises(ValueError, match="slim checkpoint of a run that finished at step 3"):
        T.train(_cfg(max_steps=5), "medbind_bd", out_dir=out, resume=True, data=None)


def test_selection_loss_is_tmcl_of_the_variants_modalities():
    from medbind_lib.losses import tmcl

    g = torch.Generator().manual_seed(0)
    z = {k: torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
         for k in ("cxr", "cxr_text", "ecg", "ecg_text")}
    batch = {**z, "cxr_text_keys": torch.tensor([0, 0, 1, 2, 3, 4]), "ecg_text_keys": torch.arange(6)}
    both = T.selection_loss(batch, ("cxr", "ecg"), 0.07)
    ref = tmcl(z["cxr"], z["cxr_text"], batch["cxr_text_keys"], 0.07) + tmcl(z["ecg"], z["ecg_text"],
                                                                               batch["ecg_text_keys"], 0.07)
    assert float(both) == pytest.approx(float(ref))
    assert float(T.selection_loss(batch, ("cxr",), 0.07)) == pytest.approx(
        float(tmcl(z["cxr"], z["cxr_text"], batch["cxr_text_keys"], 0.07)))


def test_seed_replicate_run_trains_with_its_own_seed(tmp_path, data_bd):
    """``medbind_bd@seed1``: the base variant's data, model and loss, seed + 1, its own checkpoint name."""
    m = T.train(_cfg(max_steps=1), "medbind_bd@seed1", out_dir=tmp_path, resume=False, data=data_bd)
    ck = T.load_checkpoint(tmp_path / "last.pt")
    assert m["variant"] == "medbind_bd@seed1" and ck["variant"] == "medbind_bd@seed1"
    assert m["params"]["seed"] == _cfg().seed + 1
    assert T.default_out_dir(_cfg(), "medbind_bd@seed1").name == "medbind_bd@seed1"


def test_cosine_schedule_with_warmup():
    f = T.cosine_lambda(110, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert all(f(i) >= f(i + 1) for i in range(10, 110))


def test_loss_decreases_on_fixed_batch(data_bd):
    cfg = _cfg(ecg_dropout=0.0, lr=1e-4)
    torch.manual_seed(0)
    model = T.model_for_variant(cfg, "medbind_bd")
    tr = data_bd["tables"]["train"]
    ds = mdata.PretrainDataset(tr, data_bd["cxr_cached"].array, data_bd["ecg_cached"].array,
                               data_bd["ecg_stats"], cfg, train=False)
    collate = mdata.Collator(TokenizeFn.from_model(model), cfg.text_identity)
    batch = collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 16))][:16])
    emb = T.Embedder(model, ("cxr", "ecg"))
    loss_fn = T.MEDBindLoss("medbind_bd")
    opt = T.build_optimizer(model, cfg, "cpu")
    model.eval()  # no dropout: the same function before and after

    def loss():
        return loss_fn(T.embed_batch(emb, batch, "cpu", ("cxr", "ecg")))["loss"]

    with torch.no_grad():
        first = float(loss())
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < first - 1e-2


def _state_equal(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_resume_equals_uninterrupted(tmp_path, data_bd):
    # 3 batches per epoch, 4 steps: the resumed part crosses an epoch end (validation + checkpoint)
    cfg = _cfg(batch_size=40, epochs=2, max_steps=4)
    a = T.train(cfg, "medbind_bd", out_dir=tmp_path / "a", resume=False, data=data_bd)
    b1 = T.train(cfg, "medbind_bd", out_dir=tmp_path / "b", resume=False, data=data_bd, stop_after_steps=2)
    assert b1["interrupted"] and b1["step"] == 2
    mid = T.load_checkpoint(tmp_path / "b" / "last.pt")
    assert mid["step"] == 2 and mid["sampler"]["start"] == 2
    # optimizer state at step 4 (full checkpoints): uninterrupted vs resumed from step 2
    T.train(cfg, "medbind_bd", out_dir=tmp_path / "a4", resume=False, data=data_bd, stop_after_steps=4)
    T.train(cfg, "medbind_bd", out_dir=tmp_path / "b", resume=True, data=data_bd, stop_after_steps=4)
    sa = T.load_checkpoint(tmp_path / "a4" / "last.pt")["optimizer"]["state"]
    sb = T.load_checkpoint(tmp_path / "b" / "last.pt")["optimizer"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    b = T.train(cfg, "medbind_bd", out_dir=tmp_path / "b", resume=True, data=data_bd)
    assert a["steps"] == b["steps"] == 4
    ca, cb = T.load_checkpoint(tmp_path / "a" / "last.pt"), T.load_checkpoint(tmp_path / "b" / "last.pt")
    assert _state_equal(ca["model"], cb["model"]) == []
    la = pd.read_parquet(tmp_path / "a" / "steps.parquet")
    lb = pd.read_parquet(tmp_path / "b" / "steps.parquet")
    assert la["loss"].tolist() == lb["loss"].tolist() and la["m_pairs"].tolist() == lb["m_pairs"].tolist()
    assert [h["epoch"] for h in ca["history"]] == [h["epoch"] for h in cb["history"]] == [1, 1]
    # the comparison can fail: the interrupted state differs from the final one
    assert _state_equal(ca["model"], mid["model"]) != []


def test_nan_loss_stops_with_clear_message(tmp_path, data_bd, monkeypatch):
    class Bad(T.MEDBindLoss):
        calls = 0

        def forward(self, batch, logit_scale=None):
            out = super().forward(batch, logit_scale)
            Bad.calls += 1
            if Bad.calls >= 2:
                out["loss"] = out["loss"] * float("nan")
            return out

    monkeypatch.setattr(T, "MEDBindLoss", Bad)
    cfg = _cfg(max_steps=4)
    # the first forward call is the untrained validation's; training step 0 is the second call
    with pytest.raises(T.NonFiniteLoss, match=r"non-finite loss at step \d+ .*tmcl_cxr=.*emcl="):
        T.train(cfg, "medbind_bd", out_dir=tmp_path, resume=False, data=data_bd)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "last.pt"
    T.save_checkpoint(p, {"w": torch.arange(3)})

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        T.save_checkpoint(p, {"w": torch.arange(5)})
    monkeypatch.undo()
    assert torch.equal(T.load_checkpoint(p)["w"], torch.arange(3))
    assert [q.name for q in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_embeddings_export(short_run, tmp_path):
    out, _ = short_run
    cfg = _cfg()
    w = export_embeddings(cfg, "medbind_bd", checkpoint=str(out / "best.pt"), out_dir=tmp_path / "t",
                          datasets=("mimic_cxr", "mimic_pair", "ptbxl", "covid"))
    assert set(w) == {"mimic_cxr", "mimic_pair", "ptbxl", "covid"}
    z = load_embeddings(w["mimic_cxr"])
    linked_cxr = pd.read_parquet(f"{cfg.runs_dir}/01/cxr.parquet")
    exp = linked_cxr[linked_cxr["split"].isin(["valid", "test"])]["record_id"].astype(str)
    assert sorted(z["record_id"].tolist()) == sorted(exp.tolist())
    assert z["emb"].shape == (len(exp), cfg.embed_dim) == z["text_emb"].shape
    assert np.allclose(np.linalg.norm(z["emb"], axis=1), 1, atol=1e-4)
    assert z["labels"].shape == (len(exp), 14) and set(np.unique(z["split"])) <= {"valid", "test"}
    p = load_embeddings(w["mimic_pair"])
    assert p["cxr_emb"].shape == p["ecg_emb"].shape and len(p["cxr_record_id"]) == len(p["cxr_emb"])
    px = load_embeddings(w["ptbxl"])
    assert px["labels"].shape[1] == 5 and "train" in set(px["split"])
    assert int(px["step"]) == 3
    # untrained reference: same architecture, different weights; ECG-CLIP has no CXR encoder
    u = export_embeddings(cfg, "medbind_bd", checkpoint="untrained", out_dir=tmp_path / "u", datasets=("covid",))
    zu, zt = load_embeddings(u["covid"]), load_embeddings(w["covid"])
    assert zu["emb"].shape == zt["emb"].shape and not np.allclose(zu["emb"], zt["emb"])
    assert (zu["record_id"] == zt["record_id"]).all() and str(zu["checkpoint"]) == "untrained"
    e = export_embeddings(cfg, "ecg_clip", checkpoint="untrained", out_dir=tmp_path / "e",
                          datasets=("mimic_cxr", "ptbxl"))
    assert set(e) == {"ptbxl"}


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_torchrun_two_process_gloo(tmp_path, short_run):
    """The CLI under torchrun (2 gloo processes): trains, writes metrics, and its validation loss at step 0
    (gathered over ranks) equals the single-process value."""
    import subprocess
    import sys
    from pathlib import Path

    _, m1 = short_run
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not found beside the interpreter")
    sets = ["progress=false", "batch_size=16", "epochs=1", "max_steps=2", "warmup_steps=1", "lr=0.001"]
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "medbind_lib.medbind.pretrain", "--profile", "smoke",
           "--variant", "medbind_bd", "--out-dir", str(tmp_path), "--no-resume", "--set", *sets]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 2
    assert m["untrained_valid"]["val_loss"] == pytest.approx(m1["untrained_valid"]["val_loss"], rel=1e-4)
    assert (tmp_path / "last.pt").exists()


def test_retrieval_check_hand_computed():
    """Ranks worked out by hand (no ties except the one noted): text directions over distinct texts,
    CXR->ECG over pairs with a CXR paired twice (its best partner counts)."""
    from types import SimpleNamespace

    e = torch.eye(3)
    q = torch.tensor([[1, .9, .1], [.9, .1, .8], [.3, .1, .5], [.2, .1, .9]])
    cxr = pd.DataFrame({"text": ["a", "b", "a", "c"]})
    ecg = pd.DataFrame({"text": ["x", "y", "x"]})
    samples = np.array([[0, 1], [1, 0], [1, 2], [2, -1], [3, -1]])
    tables = SimpleNamespace(cxr=cxr, ecg=ecg, samples=samples, is_pair=(samples >= 0).all(1))
    emb = {"cxr": q, "cxr_text": e[[0, 1, 0, 2]], "ecg": e, "ecg_text": e[[0, 1, 0]]}
    r = T.retrieval_check(emb, tables)
    # CXR->text ranks (0-based) [0, 2, 1, 0]
    assert r["r1_cxr_text"] == 50 and r["r5_cxr_text"] == 100 and r["medr_cxr_text"] == 1.5
    assert r["n_gallery_cxr_text"] == 3 and r["blind_r1_cxr_text"] == 50 and r["blind_r5_cxr_text"] == 100
    # ECG->text: ecg2 = e2 ties x and y at 0 -> pessimistic rank 1
    assert r["r1_ecg_text"] == pytest.approx(200 / 3) and r["n_gallery_ecg_text"] == 2
    # CXR->ECG: cxr0 -> ecg1 rank 1; cxr1 -> ecg0 rank 0 (ecg2 rank 1)
    assert r["r1_cxr_ecg"] == 50 and r["r5_cxr_ecg"] == 100 and r["medr_cxr_ecg"] == 1.5
    assert r["n_gallery_cxr_ecg"] == 3
