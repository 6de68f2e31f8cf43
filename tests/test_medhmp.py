"""MedHMP (models/medhmp.py, medcsp/medhmp.py): shapes, masking of absent stays and notes, the masked-code tokens,
both pre-training losses against hand computations, a pre-training that learns and is reproducible, and its cache."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import sparse

from medbind_lib.medcsp import medhmp as M
from medbind_lib.models.medhmp import (AdmissionEncoder, MedHMPAdmissionTask, MedHMPStayTask, StayAutoencoder,
                                       StayEncoder, _max_pool, leave_one_out_infonce, mcm_loss)

pytestmark = pytest.mark.usefixtures("one_thread")
N, S, T, C, SD, VI, VD, DN, D = 6, 3, 8, 10, 5, 12, 7, 9, 16


def _x(seed=0, note_dim=DN):
    g = torch.Generator().manual_seed(seed)
    stays = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    return {"temporal": torch.randn(N, S, T, C, generator=g), "stays": stays, "demo": torch.randn(N, SD, generator=g),
            "icd": (torch.rand(N, VI, generator=g) < 0.4).float(),
            "drug": (torch.rand(N, VD, generator=g) < 0.4).float(),
            "note": torch.randn(N, note_dim, generator=g), "note_present": torch.tensor([1, 0, 1, 1, 0, 1]).bool()}


def _enc(note_dim=DN, seed=0):
    torch.manual_seed(seed)
    return AdmissionEncoder(StayEncoder(C, SD, D, 0.1), VI, VD, note_dim, S, 0.1).eval()


def test_shapes_and_no_static_input():
    enc = _enc()
    x = _x()
    assert enc.stay(x["temporal"][:, 0], x["demo"]).shape == (N, D)
    assert StayEncoder(C, 0, D).eval()(x["temporal"][:, 0], torch.zeros(N, 0)).shape == (N, D)
    tok = enc.tokens(x)
    assert set(tok) == {"stays", "icd", "drug", "note"} and all(v.shape == (N, D) for v in tok.values())
    assert set(_enc(note_dim=0).tokens(_x(note_dim=0))) == {"stays", "icd", "drug"}      # a task without notes
    ae = StayAutoencoder(enc.stay, C).eval()
    assert ae(x["temporal"][:, 0], x["demo"]).shape == (N, T, C)


def test_absent_stays_and_missing_notes_are_masked():
    enc, x = _enc(), _x()
    base = enc.tokens(x)
    y = {k: v.clone() for k, v in x.items()}
    y["temporal"][~x["stays"]] += 100.0                      # absent stays' values change
    y["note"][~x["note_present"]] += 100.0                   # absent notes' features change
    moved = enc.tokens(y)
    for k in ("stays", "note"):
        torch.testing.assert_close(moved[k], base[k])
    assert torch.all(base["note"][~x["note_present"]] == 0)
    y["temporal"][0, 0] += 1.0                                # a present stay does count
    assert not torch.allclose(enc.tokens(y)["stays"][0], base["stays"][0])


def test_masked_code_token_by_hand():
    enc, x = _enc(), _x()
    masked = torch.zeros(N, VI, dtype=torch.bool)
    masked[:, :4] = True
    tok = enc.tokens(x, {"icd": masked})["icd"]
    want = enc.icd(x["icd"] * (~masked).float()) + enc.masked_count["icd"](x["icd"][:, :4].sum(1, keepdim=True))
    torch.testing.assert_close(tok, want)
    torch.testing.assert_close(enc.tokens(x, {"drug": masked[:, :VD]})["icd"], enc.tokens(x)["icd"])


def test_max_pool_ignores_padding():
    t = torch.tensor([[[1.0, 5.0], [3.0, 2.0]]])
    torch.testing.assert_close(_max_pool(t), torch.tensor([[3.0, 5.0]]))
    torch.testing.assert_close(_max_pool(t, torch.tensor([[False, True]])), torch.tensor([[1.0, 5.0]]))


def test_losses_by_hand():
    logits, target = torch.tensor([[0.0, 2.0], [-1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = 1 / (1 + np.exp(-logits.numpy()))
    assert float(mcm_loss(logits, target, "mse")) == pytest.approx(((p - target.numpy()) ** 2).mean(), rel=1e-6)
    bce = -(target.numpy() * np.log(p) + (1 - target.numpy()) * np.log(1 - p)).mean()
    assert float(mcm_loss(logits, target, "bce")) == pytest.approx(bce, rel=1e-6)
    a, f = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    r = 1 / math.sqrt(2)
    s = np.array([[1.0, r], [0.0, r]])                                       # cos(a_i, f_j)
    want = np.mean([-np.log(np.exp(s[i, i] / 0.1) / np.exp(s[i] / 0.1).sum()) for i in range(2)])
    assert float(leave_one_out_infonce(a, f, 0.1)) == pytest.approx(want, rel=1e-5)


def test_task_modules_read_the_first_stay_and_every_token():
    enc, x = _enc(), _x()
    st = MedHMPStayTask(enc.stay, 8, 0.0).eval()
    keys = MedHMPAdmissionTask.KEYS
    xt = (x["temporal"], x["stays"], x["demo"])
    out = st(xt)
    assert out.shape == (N,)
    later = x["temporal"].clone()
    later[:, 1:] += 5.0
    torch.testing.assert_close(st((later, x["stays"], x["demo"])), out)
    ad = MedHMPAdmissionTask(enc, 8, 0.0).eval()
    xa = tuple(x[k] for k in keys)
    assert ad(xa).shape == (N,)
    icd = x["icd"].clone()
    icd[0] = 1 - icd[0]
    assert not torch.allclose(ad(tuple(icd if k == "icd" else x[k] for k in keys))[0], ad(xa)[0])


def _source(n_rec=20, seed=0):
    """A features.load-like dict: EHR records with stays, codes, demographics, notes."""
    rng = np.random.default_rng(seed)
    n_stays = 30
    stays = pd.DataFrame({"hadm_id": rng.integers(0, n_rec, n_stays), "stay_id": np.arange(n_stays),
                          "intime": pd.Timestamp("2150-01-01") + pd.to_timedelta(rng.integers(0, 100, n_stays), "h"),
                          "row": np.arange(n_stays)})
    recs = pd.DataFrame({"hadm_id": np.arange(n_rec), "split": ["train"] * 14 + ["valid"] * 3 + ["test"] * 3})
    return {"ehr_records": recs, "stays": stays,
            "temporal_values": rng.normal(size=(n_stays, T, C // 2)).astype(np.float32),
            "temporal_mask": rng.random((n_stays, T, C // 2)) < 0.5,
            "demographics": rng.normal(size=(n_rec, SD)).astype(np.float32),
            "icd": sparse.csr_matrix((rng.random((n_rec, VI)) < 0.3).astype(np.float32)),
            "drug": sparse.csr_matrix((rng.random((n_rec, VD)) < 0.3).astype(np.float32)),
            "notes": pd.DataFrame({"hadm_id": np.arange(0, n_rec, 2), "text": ["note"] * (n_rec // 2)}),
            "params": {"x": 1}}


def _encode(notes):
    return np.array([[float(len(t or ""))] * DN for t in notes], np.float32).reshape(len(notes), DN)


def test_pretraining_data_reads_training_records_only():
    xs = M.pretraining_data(_source(), _encode, max_stays=2)
    assert len(xs["icd"]) == 14 and xs["temporal"].shape == (14, 2, T, C)
    assert int(xs["stays"].sum()) == len(xs["stay_temporal"]) == len(xs["stay_demo"])
    assert xs["note_present"].tolist() == [i % 2 == 0 for i in range(14)]


def test_pretrain_learns_and_is_reproducible():
    xs = M.pretraining_data(_source(), _encode, max_stays=S)
    s = M.MedHMPSettings(dim=D, stay_epochs=15, stay_lr=5e-3, stay_batch_size=8, admission_epochs=3,
                         admission_lr=1e-3, admission_batch_size=8, max_stays=S)
    enc, hist = M.pretrain(xs, s, show=False, log=lambda m: None)
    stay = [h["loss"] for h in hist if h["level"] == "stay"]
    adm = [h for h in hist if h["level"] == "admission"]
    assert len(stay) == 15 and len(adm) == 3 and stay[-1] < stay[0]
    assert all(np.isfinite([h["mcm_icd"], h["mcm_drug"], h["cl"]]).all() for h in adm)
    enc2, _ = M.pretrain(xs, s, show=False, log=lambda m: None)
    for (k, a), b in zip(enc.state_dict().items(), enc2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_cache_is_reused_while_settings_match(tmp_path, monkeypatch):
    from medbind_lib.config import load_profile

    cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path), "medhmp_dim": D, "medhmp_stay_epochs": 1,
                                           "medhmp_admission_epochs": 1, "medcsp_max_stays": S})
    enc, _ = M.load_or_pretrain(cfg, _source(), _encode, log=lambda m: None)
    monkeypatch.setattr(M, "pretrain", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pre-trained again")))
    said = []
    enc2, _ = M.load_or_pretrain(cfg, _source(), _encode, log=said.append)
    assert "reused" in said[0]
    for a, b in zip(enc.state_dict().values(), enc2.state_dict().values()):
        torch.testing.assert_close(a, b)
    same = ("runs_dir", "medhmp_dim", "medhmp_stay_epochs", "medcsp_max_stays")
    cfg2 = load_profile("smoke", overrides={**{k: cfg[k] for k in same}, "medhmp_admission_epochs": 2})
    with pytest.raises(AssertionError, match="pre-trained again"):
        M.load_or_pretrain(cfg2, _source(), _encode, log=lambda m: None)
