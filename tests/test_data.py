"""Pre-training data: samples per variant, the pair-aware sampler (proportion, m variation, determinism,
DDP sharding), the collate contract (run through MEDBindLoss) and the evaluation dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medbind_lib import cohort
from medbind_lib.loading import EvalArrayDataset, label_matrix
from medbind_lib.medbind import data as mdata
from medbind_lib.config import load_profile
from medbind_lib.losses import MEDBindLoss


def ensure_smoke_artifacts(cfg) -> None:
    """The smoke cohort and notebook 01's outputs (built here when missing, ~20 s)."""
    if (Path(cfg.runs_dir) / "01" / "pairs.parquet").exists():
        return
    from medbind_lib.quality import QualityLog
    from medbind_lib.synth import write_cohort

    write_cohort(cfg)
    q = QualityLog()
    linked = cohort.mimic_cohort(cfg, q)
    external = cohort.external_cohort(cfg, q)
    t1 = cohort.table1(linked, external)
    cohort.build_caches(cfg, {"mimic_cxr": linked["cxr"], "mimic_ecg": linked["ecg"], **external}, q)
    cohort.save_linked(cfg, linked, external, q, t1)


@pytest.fixture(scope="session")
def cfg():
    c = load_profile("smoke", overrides={"progress": False})
    ensure_smoke_artifacts(c)
    return c


@pytest.fixture(scope="session")
def bd(cfg):
    return mdata.load_pretrain(cfg, "medbind_bd")


def test_samples_per_variant(cfg, bd):
    linked = cohort.load_linked(cfg)
    tr = bd["tables"]["train"]
    s = tr.summary()
    assert s["pairs"] > 0 and s["cxr_only"] > 0 and s["ecg_only"] > 0
    # every train CXR appears exactly once (through its pair or alone); pairs reference real rows
    c_rows = tr.samples[:, 0][tr.samples[:, 0] >= 0]
    assert sorted(c_rows.tolist()) == list(range(len(tr.cxr)))
    n_train_pairs = int(linked["pairs"]["split"].eq("train").sum())
    assert s["pairs"] == n_train_pairs
    # texts present, cache index valid
    assert tr.cxr["text"].notna().all() and tr.ecg["text"].notna().all()
    assert tr.cxr["index"].max() < len(bd["cxr_cached"].array)
    # single-modality variants: every record of their modality once, no pairs
    ecg_only = mdata.load_pretrain(cfg, "ecg_clip", splits=("train",))["tables"]["train"]
    assert ecg_only.n_pairs == 0 and len(ecg_only) == len(tr.ecg) and (ecg_only.samples[:, 0] < 0).all()
    cxr_only = mdata.load_pretrain(cfg, "cxr_clip", splits=("train",))["tables"]["train"]
    assert cxr_only.n_pairs == 0 and len(cxr_only) == len(tr.cxr)
    # splits do not share patients
    va = bd["tables"]["valid"]
    assert not set(tr.cxr["subject_id"]) & set(va.cxr["subject_id"])


def test_sampler_pair_fraction_and_m_varies():
    is_pair = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    s = mdata.PairBatchSampler(is_pair, 50, pair_fraction=0.4, seed=1)
    ms = []
    for epoch in range(5):
        s.set_epoch(epoch)
        for b in s:
            assert len(b) == 50
            ms.append(sum(is_pair[i] for i, _ in b))
    ms = np.array(ms)
    assert abs(ms.mean() / 50 - 0.4) < 0.03, ms.mean()
    assert ms.std() > 1.0 and len(set(ms.tolist())) > 4  # m varies per batch
    # default (None) = natural share; 0 = no pairs
    s0 = mdata.PairBatchSampler(is_pair, 50, pair_fraction=None, seed=1)
    assert s0.pair_fraction == pytest.approx(0.3)
    s1 = mdata.PairBatchSampler(is_pair, 50, pair_fraction=0.0, seed=1)
    assert all(not is_pair[i] for b in s1 for i, _ in b)
    with pytest.raises(ValueError):
        mdata.PairBatchSampler(is_pair, 50, pair_fraction=1.5)


def test_sampler_deterministic_and_epochs_differ():
    is_pair = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    a = mdata.PairBatchSampler(is_pair, 10, seed=3)
    b = mdata.PairBatchSampler(is_pair, 10, seed=3)
    assert list(a) == list(b)
    c = mdata.PairBatchSampler(is_pair, 10, seed=4)
    assert list(a) != list(c)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    # resume: starting at batch k yields the tail of the same epoch
    a.set_epoch(1)
    full = list(a)
    a.set_epoch(1, start=4)
    assert list(a) == full[4:] and len(a) == len(full) - 4
    st = a.state_dict()
    b.load_state_dict(st)
    assert list(b) == full[4:]


def test_sampler_ddp_shards_cover_without_overlap():
    is_pair = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    one = mdata.PairBatchSampler(is_pair, 10, seed=7)
    ranks = [mdata.PairBatchSampler(is_pair, 10, seed=7, rank=r, world_size=2) for r in range(2)]
    for ep in range(2):
        for s in [one, *ranks]:
            s.set_epoch(ep)
        b1 = list(one)
        br = [list(s) for s in ranks]
        assert len(br[0]) == len(br[1]) == len(b1)  # equal batch counts per rank
        for g, r0, r1 in zip(b1, *br):
            assert not set(r0) & set(r1)  # no overlap
            assert sorted(r0 + r1) == sorted(g)  # the ranks together = the global batch
    # within an epoch, a sample is not repeated while the pools last (cover without duplicates)
    one.set_epoch(0)
    items = [i for b in one for i, _ in b]
    assert len(items) == len(set(items)) == 100


def test_fixed_batches_cover():
    bs = mdata.fixed_batches(23, 5, seed=0)
    assert sorted(i for b in bs for i in b) == list(range(23))
    r = [mdata.fixed_batches(23, 5, seed=0, rank=k, world_size=2) for k in range(2)]
    assert sorted(i for rr in r for b in rr for i in b) == list(range(23))


def _dataset(cfg, bd, split="train", train=True):
    return mdata.PretrainDataset(bd["tables"][split], bd["cxr_cached"].array, bd["ecg_cached"].array,
                                 bd["ecg_stats"], cfg, train=train)


def test_dataset_items_and_augmentation(cfg, bd):
    ds = _dataset(cfg, bd)
    tr = bd["tables"]["train"]
    pair_i = int(np.flatnonzero(tr.is_pair)[0])
    a = ds[(pair_i, 123)]
    assert a["cxr"].shape == (3, cfg.cxr_size, cfg.cxr_size) and a["ecg"].shape == (12, 1000)
    assert isinstance(a["cxr_text"], str) and isinstance(a["ecg_text"], str)
    b = ds[(pair_i, 123)]
    c = ds[(pair_i, 124)]
    assert torch.equal(a["cxr"], b["cxr"]) and torch.equal(a["ecg"], b["ecg"])  # seeded
    assert not torch.equal(a["cxr"], c["cxr"]) and not torch.equal(a["ecg"], c["ecg"])  # augmented
    ev = _dataset(cfg, bd, train=False)
    e1, e2 = ev[(pair_i, 1)], ev[(pair_i, 2)]
    assert torch.equal(e1["cxr"], e2["cxr"]) and torch.equal(e1["ecg"], e2["ecg"])  # eval: deterministic
    # ECG normalised with the training statistic: train-split ECGs are ~zero-mean, unit-std per lead
    x = torch.stack([ev[int(i)]["ecg"] for i in np.flatnonzero(tr.samples[:, 1] >= 0)[:40]])
    assert abs(float(x.mean())) < 0.3 and 0.5 < float(x.std()) < 1.5


def test_collate_contract_runs_the_loss(cfg, bd):
    ds = _dataset(cfg, bd)
    tr = bd["tables"]["train"]
    idx = [int(i) for i in np.flatnonzero(tr.is_pair)[:3]] + \
          [int(i) for i in np.flatnonzero((tr.samples[:, 0] >= 0) & ~tr.is_pair)[:2]] + \
          [int(i) for i in np.flatnonzero((tr.samples[:, 1] >= 0) & ~tr.is_pair)[:2]]
    items = [ds[(i, 10 + k)] for k, i in enumerate(idx)]
    calls = []

    def tok(texts):
        calls.append(list(texts))
        return {"input_ids": torch.zeros(len(texts), 4, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 4, dtype=torch.long)}

    b = mdata.Collator(tok, cfg.text_identity)(items)
    assert b["cxr"].shape[0] == 5 and b["ecg"].shape[0] == 5 and b["n_samples"] == 7
    assert b["pairs"].shape == (3, 2) and b["pairs"].dtype == torch.long
    for ci, ei in b["pairs"].tolist():  # pair rows point at the same sample's CXR and ECG
        assert b["cxr_ids"][ci] in set(bd["tables"]["train"].cxr["record_id"])
    assert len(calls) == 1 and len(calls[0]) == len(set(b["cxr_texts"] + b["ecg_texts"]))  # tokenized once
    assert [b["unique_texts"][j] for j in b["cxr_text_index"]] == b["cxr_texts"]
    assert [b["unique_texts"][j] for j in b["ecg_text_index"]] == b["ecg_texts"]
    assert b["cxr_text_keys"].dtype == torch.int64 and b["cxr_text_keys"].shape == (5,)
    assert b["cxr_labels"].shape == (5, 14) and set(b["cxr_labels"].unique().tolist()) <= {0.0, 1.0}
    # identical texts <=> equal keys
    same = [b["cxr_texts"][i].lower() == b["cxr_texts"][j].lower() for i in range(5) for j in range(5)]
    keq = [bool(b["cxr_text_keys"][i] == b["cxr_text_keys"][j]) for i in range(5) for j in range(5)]
    assert same == keq
    # the loss accepts it (embeddings stand in for the model's)
    g = torch.Generator().manual_seed(0)
    emb = {k: torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
           for k in ("cxr", "cxr_text", "ecg", "ecg_text")}
    for variant in ("medbind_bd", "medbind_nm", "ecg_clip", "cxr_clip", "medclip"):
        out = MEDBindLoss(variant)({**b, **emb})
        assert torch.isfinite(out["loss"])
    out = MEDBindLoss("medbind_bd")({**b, **emb})
    assert float(out["m_pairs"]) == 3 and float(out["n_samples"]) == 7


def test_collate_empty_modality(cfg, bd):
    ds = _dataset(cfg, bd)
    tr = bd["tables"]["train"]
    idx = np.flatnonzero((tr.samples[:, 1] >= 0) & ~tr.is_pair)[:3]
    b = mdata.Collator(None, cfg.text_identity, cxr_shape=(3, 8, 8))([ds[int(i)] for i in idx])
    assert b["cxr"].shape == (0, 3, 8, 8) and b["pairs"].shape == (0, 2) and b["cxr_labels"].shape == (0, 14)


def test_label_matrix_positive_only():
    import pandas as pd
    df = pd.DataFrame({"Atelectasis": [1.0, 0.0, -1.0, np.nan], "Edema": [np.nan, 1.0, 1.0, 0.0]})
    m = label_matrix(df, ["Atelectasis", "Edema", "Fracture"])
    assert m.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_eval_dataset(cfg, bd):
    man = bd["cxr_cached"].manifest.iloc[:5]
    ds = EvalArrayDataset(bd["cxr_cached"].array, man, "cxr", cfg)
    x, i = ds[2]
    assert x.shape == (3, cfg.cxr_size, cfg.cxr_size) and i == 2
    de = EvalArrayDataset(bd["ecg_cached"].array, bd["ecg_cached"].manifest.iloc[:3], "ecg", cfg, bd["ecg_stats"])
    assert de[0][0].shape == (12, 1000)


@pytest.mark.parametrize("policy,kept", [("exclude", ["e1"]), ("keep", ["e1", "e3"])])
def test_mimic_ecg_unlabelled_policy(policy, kept):
    """Table A.3: a disallowed phrase always drops the ECG; one no rule labels is dropped and counted by default
    (the paper's MIMIC-ECG is the labelled ECGs), or kept for pre-training with ``labelled`` False."""
    from medbind_lib.cohort import attach_ecg_text
    from medbind_lib.quality import QualityLog

    cfg = load_profile("smoke", overrides={"mimic_ecg_unlabelled": policy})
    ecg = pd.DataFrame({"record_id": ["e1", "e2", "e3", "e4"],
                        "machine_reports": [["Sinus rhythm", "Normal ECG"], ["Poor quality", "Normal ECG"],
                                            ["Sinus rhythm"], []]})
    q = QualityLog()
    out = attach_ecg_text(ecg, cfg, q)
    assert out["record_id"].tolist() == kept
    assert out["labelled"].tolist() == [r == "e1" for r in kept]
    assert q.count("mimic_ecg", reason="disallowed phrase (Table A.3)") == 1
    assert q.count("mimic_ecg", reason="no machine statement") == 1
    assert q.count("mimic_ecg", reason="no Table A.3 class (mimic_ecg_unlabelled: exclude)") == (policy == "exclude")
