"""MEDCSP pre-training batches on hand-made data (no generated cohort): records and their presence masks
(unavailable inputs masked, empty records dropped and counted), cross-source pairs against a brute force,
the sampler (fixed pairs per batch, determinism, ranks, resume, no duplicates), items and the collate."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from medbind_lib.losses.medcsp import SOURCE_CXR, SOURCE_EHR
from medbind_lib.medcsp.batches import (MEDCSP_MODALITIES, TIME_ORIGIN, CrossSourceBatchSampler, MEDCSPCollator,
                                        MEDCSPDataset, RecordSet, cross_source_pairs, holdout_records)

T0 = pd.Timestamp("2150-01-01")
CFG = {"cxr_size": 64, "cxr_cache_size": 96}
COL = {m: j for j, m in enumerate(MEDCSP_MODALITIES)}
N_T, N_F = 4, 3


def day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def make_data(ehr: list[dict], cxr: list[dict], stays: list[dict] = (), notes: dict | None = None,
              history: dict | None = None, n_icd: int = 6, n_drug: int = 4, n_demo: int = 3,
              holdout: list[dict] = ()) -> dict:
    """``features.load``-shaped dict.  ehr rows: subject, hadm, t (days), split, icd/drug (token lists),
    has_* flags; cxr rows: subject, study, t, split, text, image (cached or not)."""
    def ehr_frame(rows):
        return pd.DataFrame({
            "record_id": [f"ehr-{r['hadm']}" for r in rows], "source": "ehr",
            "subject_id": pd.Series([r["subject"] for r in rows], dtype="int64"),
            "hadm_id": pd.Series([r["hadm"] for r in rows], dtype="int64"),
            "time": pd.to_datetime([day(r["t"]) for r in rows]), "split": [r.get("split", "train") for r in rows],
            **{f"has_{m}": [bool(r.get(f"has_{m}", m == "demo")) for r in rows]
               for m in ("icd", "drug", "temporal", "note", "demo")}})

    def cxr_frame(rows):
        return pd.DataFrame({
            "record_id": [f"cxr-{r['study']}" for r in rows], "source": "cxr",
            "subject_id": pd.Series([r["subject"] for r in rows], dtype="int64"),
            "study_id": pd.Series([r["study"] for r in rows], dtype="int64"),
            "time": pd.to_datetime([day(r["t"]) for r in rows]), "split": [r.get("split", "train") for r in rows],
            "image_record_id": [f"img-{r['study']}" for r in rows], "path": [f"p{r['study']}" for r in rows],
            "text": pd.Series([r.get("text") for r in rows], dtype="string"),
            "has_image": True, "has_report": [bool(r.get("text")) for r in rows]})

    def multi_hot(rows, key, n):
        m = np.zeros((len(rows), n), np.float32)
        for i, r in enumerate(rows):
            m[i, r.get(key, [])] = 1
        return sparse.csr_matrix(m)

    st = pd.DataFrame(list(stays), columns=["subject_id", "hadm_id", "stay_id", "intime"])
    st["intime"] = pd.to_datetime(st["intime"])
    st["row"] = np.arange(len(st), dtype=np.int64)
    subs = sorted((history or {}).keys())
    hist = np.zeros((len(subs), n_icd), np.float32)
    for i, s in enumerate(subs):
        hist[i, history[s]] = 1
    rng = np.random.default_rng(0)
    allc = list(cxr) + list(holdout)
    cached = [r["study"] for r in allc if r.get("image", True)]
    return {
        "ehr_records": ehr_frame(ehr), "cxr_records": cxr_frame(cxr), "holdout_records": cxr_frame(list(holdout)),
        "stays": st, "history_subjects": pd.DataFrame({"subject_id": pd.Series(subs, dtype="int64")}),
        "icd": multi_hot(ehr, "icd", n_icd), "drug": multi_hot(ehr, "drug", n_drug),
        "histories": sparse.csr_matrix(hist),
        "demographics": rng.normal(size=(len(ehr), n_demo)).astype(np.float32),
        "temporal_values": rng.normal(size=(len(st), N_T, N_F)).astype(np.float32),
        "temporal_mask": (rng.random((len(st), N_T, N_F)) < 0.5).astype(np.uint8),
        "notes": pd.DataFrame({"hadm_id": pd.Series(list((notes or {}).keys()), dtype="int64"),
                               "text": list((notes or {}).values())}),
        "_cache": SimpleNamespace(  # manifest-like: record_id -> index into array (shuffled order)
            manifest=pd.DataFrame({"record_id": [f"img-{s}" for s in cached],
                                   "index": rng.permutation(len(cached)).astype(np.int64)}),
            array=rng.integers(0, 256, size=(len(cached), 96, 96), dtype=np.uint8)),
    }


def small():
    """Hand-checked records: patient 1 has two admissions and two studies, patient 2 one of each."""
    ehr = [dict(subject=1, hadm=10, t=0, icd=[0, 2], drug=[1], has_icd=1, has_drug=1, has_temporal=1, has_note=1),
           dict(subject=1, hadm=11, t=100, has_icd=1, has_temporal=1),       # icd row empty, no stays: demo only
           dict(subject=2, hadm=20, t=5, icd=[3], has_icd=1, has_demo=0),
           dict(subject=3, hadm=30, t=0, has_demo=0),                        # nothing at all: dropped
           dict(subject=1, hadm=12, t=0, split="valid", has_note=1)]
    cxr = [dict(subject=1, study=100, t=10, text="clear lungs"),
           dict(subject=1, study=101, t=50, text="effusion", image=False),   # report only
           dict(subject=2, study=200, t=5, text=None),                       # image only
           dict(subject=2, study=201, t=6, text=None, image=False),          # nothing: dropped
           dict(subject=4, study=400, t=0, text="clear lungs", split="valid")]
    stays = [dict(subject_id=1, hadm_id=10, stay_id=3, intime=day(2)), dict(subject_id=1, hadm_id=10, stay_id=1,
             intime=day(0.5)), dict(subject_id=1, hadm_id=10, stay_id=2, intime=day(1)),
             dict(subject_id=1, hadm_id=12, stay_id=9, intime=day(0))]
    hold = [dict(subject=7, study=700, t=0, text="rib fracture"), dict(subject=8, study=800, t=0, text=None),
            dict(subject=9, study=900, t=0, text="mass", image=False)]
    return make_data(ehr, cxr, stays, notes={10: "discharge: stable", 12: "other"}, history={1: [0, 1], 4: [2]},
                     holdout=hold)


def random_data(seed=0, n_patients=60, span=200.0, split_valid=0.0):
    rng = np.random.default_rng(seed)
    ehr, cxr, stays, hadm, study = [], [], [], 0, 0
    for p in range(n_patients):
        split = "valid" if rng.random() < split_valid else "train"
        for _ in range(rng.integers(0, 4)):
            hadm += 1
            ehr.append(dict(subject=p, hadm=hadm, t=float(rng.uniform(0, span)), icd=[int(rng.integers(6))],
                            has_icd=1, split=split))
        for _ in range(rng.integers(0, 4)):
            study += 1
            cxr.append(dict(subject=p, study=study, t=float(rng.uniform(0, span)), text=f"r{rng.integers(5)}",
                            split=split))
    return make_data(ehr, cxr, stays)


def disjoint_pairs_data(n_pairs=80, n_single=80):
    """Each paired patient: one EHR and one CXR record on the same day (pairs share no record)."""
    ehr = [dict(subject=p, hadm=p, t=float(p)) for p in range(n_pairs + n_single)]
    cxr = [dict(subject=p, study=p, t=float(p), text="r") for p in range(n_pairs)] + \
          [dict(subject=p, study=p, t=float(p), text="r") for p in range(n_pairs + n_single, n_pairs + 2 * n_single)]
    return make_data(ehr, cxr)


def build(d, split="train", **kw):
    kw.setdefault("max_stays", 2)
    return RecordSet.build(d, split, d["_cache"], **kw)


def brute_pairs(rs: RecordSet, theta: float) -> set:
    """Every (EHR row, CXR row) of the same patient within theta: a plain double loop."""
    f = rs.records
    src, sub, t = f["source"].tolist(), f["subject_id"].tolist(), f["time_days"].tolist()
    out = set()
    for i in range(len(f)):
        for j in range(len(f)):
            if src[i] == SOURCE_EHR and src[j] == SOURCE_CXR and sub[i] == sub[j] and abs(t[i] - t[j]) <= theta:
                out.add((i, j))
    return out


def brute_positives(pairs: set, rows) -> int:
    rows = set(rows)
    return sum(1 for i, j in pairs if i in rows and j in rows)


# ----------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------
def test_records_masks_drops_and_order():
    d = small()
    rs = build(d)
    f = rs.records
    assert f["record_id"].tolist() == ["ehr-10", "ehr-11", "ehr-20", "cxr-100", "cxr-101", "cxr-200"]
    assert f["source"].tolist() == [SOURCE_EHR] * 3 + [SOURCE_CXR] * 3
    assert f["ehr_row"].tolist() == [0, 1, 2, -1, -1, -1]                      # rows of icd/drug/demographics
    assert f["time_days"].tolist()[:2] == [(T0 - TIME_ORIGIN).days, (T0 - TIME_ORIGIN).days + 100.0]
    m = pd.DataFrame(rs.mask, columns=MEDCSP_MODALITIES, index=f["record_id"])
    assert m.loc["ehr-10"].tolist() == [True, True, True, True, True, False, False]
    assert m.loc["ehr-11"].tolist() == [False, False, True, False, False, False, False]   # flags without data
    assert m.loc["ehr-20"].tolist() == [True, False, False, False, False, False, False]
    assert m.loc["cxr-100", ["image", "report"]].tolist() == [True, True]
    assert m.loc["cxr-101", ["image", "report"]].tolist() == [False, True]
    assert m.loc["cxr-200", ["image", "report"]].tolist() == [True, False]
    assert not m.loc[f["source"].eq(SOURCE_CXR).to_numpy(), list(MEDCSP_MODALITIES[:5])].any().any()
    assert rs.dropped == {"EHR admission with no available modality": 1,
                          "CXR study with neither a cached image nor a report": 1}
    assert rs.unavailable == {"icd: flagged but an all-zero row": 1, "temporal: flagged but no ICU stay rows": 1,
                              "image: not in the CXR cache": 2}
    # stays: first max_stays by intime; history row of the patient (-1 = none)
    assert f["stay_rows"].tolist()[:3] == [(1, 2), (), ()]
    assert rs.history_row.tolist() == [0, 0, -1, 0, 0, -1]
    assert f["note_text"].tolist()[0] == "discharge: stable" and f["report_text"].tolist()[3] == "clear lungs"
    idx = dict(zip(d["_cache"].manifest["record_id"], d["_cache"].manifest["index"]))
    assert f["image_index"].tolist() == [-1, -1, -1, idx["img-100"], -1, idx["img-200"]]
    s = rs.summary()
    assert (s["records"], s["ehr"], s["cxr"], s["patients"], s["patients_both"]) == (6, 3, 3, 2, 2)
    assert s["n_icd"] == 2 and s["n_image"] == 2 and s["n_report"] == 2 and s["n_temporal"] == 1
    # other splits and the single-source variant
    va = build(d, "valid")
    assert va.records["record_id"].tolist() == ["ehr-12", "cxr-400"] and va.history_row.tolist() == [0, 1]
    one = build(d, sources=("cxr",))
    assert (one.source == SOURCE_CXR).all() and len(one) == 3 and one.dropped[
        "EHR admission with no available modality"] == 0
    with pytest.raises(ValueError, match="sources"):
        build(d, sources=("ecg",))
    # no cache at all: every image is unavailable, image-only studies are dropped
    nocache = RecordSet.build(d, "train", None, max_stays=2)
    assert nocache.mask[:, COL["image"]].sum() == 0
    assert nocache.dropped["CXR study with neither a cached image nor a report"] == 2


def test_holdout_records_need_image_and_report():
    d = small()
    h = holdout_records(d, d["_cache"])
    assert h.records["record_id"].tolist() == ["cxr-700"] and h.split == "holdout"
    assert h.dropped["hold-out study without both a cached image and a report"] == 2
    assert h.history_row.tolist() == [-1]


def test_cross_source_pairs_match_brute_force():
    for seed in range(4):
        rs = build(random_data(seed))
        for theta in (0.0, 10.0, 30.0, 1e9):
            p = cross_source_pairs(rs, theta)
            assert p.dtype == np.int64 and p.shape[1] == 2
            assert set(map(tuple, p.tolist())) == brute_pairs(rs, theta) and len(p) == len(set(map(tuple, p.tolist())))
    assert cross_source_pairs(build(small()), 30.0).tolist() == [[0, 3], [2, 5]]


# ----------------------------------------------------------------------------------------------------
# sampler
# ----------------------------------------------------------------------------------------------------
def rows_of(batch):
    return [r for r, _ in batch]


def test_sampler_fixed_pairs_no_duplicates_deterministic():
    rs = build(disjoint_pairs_data())
    n = len(rs)                                                          # 160 EHR + 160 CXR
    P = brute_pairs(rs, 30.0)
    s = CrossSourceBatchSampler(rs, 32, pair_rate=0.5, theta_days=30.0, seed=3)
    assert s.expected_pairs_per_batch == 8 and s.batches_per_epoch == n // 32 and len(s) == n // 32
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == s.batches_per_epoch and s.forced_pairs(epoch) == [8] * len(batches)
        for b in batches:
            rows = rows_of(b)
            assert len(rows) == 32 and len(set(rows)) == 32             # no record twice in a batch
            assert brute_positives(P, rows) >= 8                  # the promised pairs (brute force)
            assert s.positives_per_batch(b) == brute_positives(P, rows)
    # pure function of (seed, epoch); another epoch or seed differs
    s2 = CrossSourceBatchSampler(rs, 32, pair_rate=0.5, theta_days=30.0, seed=3)
    assert s2.global_batches(1) == s.global_batches(1)
    assert s.global_batches(0) != s.global_batches(1)
    assert CrossSourceBatchSampler(rs, 32, 0.5, 30.0, seed=4).global_batches(0) != s.global_batches(0)


def test_sampler_on_overlapping_pairs():
    rs = build(random_data(1, n_patients=120, span=60.0))
    P = brute_pairs(rs, 30.0)
    s = CrossSourceBatchSampler(rs, 24, pair_rate=0.25, theta_days=30.0, seed=0)
    assert s.expected_pairs_per_batch == 3 and len(s.pairs) > 20
    for b, m in zip(s.global_batches(0), s.forced_pairs(0)):
        rows = rows_of(b)
        assert m == 3 and len(set(rows)) == len(rows) == 24
        assert brute_positives(P, rows) >= 3


def test_sampler_natural_rate_without_pairing():
    rs = build(disjoint_pairs_data())
    n = len(rs)
    P = brute_pairs(rs, 30.0)
    for rate in (None, 0.0):
        s = CrossSourceBatchSampler(rs, 32, pair_rate=rate, theta_days=30.0, seed=0)
        assert s.expected_pairs_per_batch == 0
        pos = []
        for epoch in range(10):
            bs = s.global_batches(epoch)
            assert sorted(r for b in bs for r in rows_of(b)) == list(range(n))   # one plain shuffle per epoch
            assert s.forced_pairs(epoch) == [0] * len(bs)
            pos += [brute_positives(P, rows_of(b)) for b in bs]
        # a random batch of 32 of 320 records holds ~80 * 32*31/(320*319) ~ 0.78 pairs, far below 8
        assert np.mean(pos) < 2.0 and abs(np.mean(pos) - s.natural_pairs_per_batch) < 0.5


def test_sampler_ranks_partition_and_resume():
    rs = build(disjoint_pairs_data())
    world = 3
    ranks = [CrossSourceBatchSampler(rs, 30, 0.4, 30.0, seed=7, rank=r, world=world) for r in range(world)]
    glob = ranks[0].global_batches(2)
    for r in ranks:
        r.set_epoch(2)
    shards = [list(r) for r in ranks]
    assert all(len(sh) == len(glob) for sh in shards)                          # equal batch counts
    for i, g in enumerate(glob):
        got = [it for sh in shards for it in sh[i]]
        assert sorted(got) == sorted(g) and len(set(rows_of(got))) == len(got)  # partition, no overlap
        assert all(len(sh[i]) == 10 for sh in shards)
    # resume: the remaining batches of an epoch from the saved position
    s = CrossSourceBatchSampler(rs, 30, 0.4, 30.0, seed=7)
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(1, start=4)
    state = s.state_dict()
    fresh = CrossSourceBatchSampler(rs, 30, 0.4, 30.0, seed=7)
    fresh.load_state_dict(state)
    assert list(fresh) == full[4:] and len(fresh) == len(full) - 4
    with pytest.raises(ValueError, match="does not match"):
        CrossSourceBatchSampler(rs, 30, 0.2, 30.0, seed=7).load_state_dict(state)
    with pytest.raises(ValueError):
        CrossSourceBatchSampler(rs, 2, 0.4, 30.0, rank=0, world=3)


def test_sampler_small_pool_and_tiny_sets():
    d = small()
    rs = build(d)                                                         # 6 records, 2 disjoint pairs
    P = brute_pairs(rs, 30.0)
    s = CrossSourceBatchSampler(rs, 8, pair_rate=1.0, theta_days=30.0, seed=0)
    assert s.batches_per_epoch == 1 and s.expected_pairs_per_batch == 3   # capped at min(B, n) // 2
    (b,) = s.global_batches(0)
    assert sorted(rows_of(b)) == list(range(6)) and s.forced_pairs(0) == [2]   # the pool ran short: counted
    assert brute_positives(P, rows_of(b)) == 2


# ----------------------------------------------------------------------------------------------------
# items and collate
# ----------------------------------------------------------------------------------------------------
class CountingTokenizer:
    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        ids = torch.tensor([[len(t), i] for i, t in enumerate(texts)], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_items_and_collate_contract():
    d = small()
    rs = build(d)
    ds = MEDCSPDataset(rs, d, d["_cache"].array, CFG, train=True)
    assert ds.dims == {"icd": 6, "drug": 4, "demo": 3, "temporal": (2, N_T, 2 * N_F), "image": (3, 64, 64),
                       "history": 6}
    it = ds[0]
    assert it["icd"].tolist() == [1, 0, 1, 0, 0, 0] and it["drug"].tolist() == [0, 1, 0, 0]
    assert torch.equal(it["demo"], torch.from_numpy(d["demographics"][0]))
    # temporal: stays 1 and 2 (earliest intime), values then missingness, no renormalisation
    assert it["temporal"].shape == (2, N_T, 2 * N_F) and it["temporal_stays"].tolist() == [True, True]
    assert torch.equal(it["temporal"][0, :, :N_F], torch.from_numpy(d["temporal_values"][1]))
    assert torch.equal(it["temporal"][1, :, N_F:], torch.from_numpy(d["temporal_mask"][2]).float())
    assert "image" not in ds[1] and "icd" not in ds[1] and "note" not in ds[1] and set(ds[3]) >= {"image", "report"}
    x = MEDCSPDataset(build(d, max_stays=4), d, d["_cache"].array, CFG, train=True)[0]       # 3 stays, S = 4
    assert x["temporal_stays"].tolist() == [True, True, True, False] and not x["temporal"][3].any()  # absent: 0
    assert torch.equal(x["temporal"][2, :, :N_F], torch.from_numpy(d["temporal_values"][0]))   # latest intime last

    tok = CountingTokenizer()
    col = MEDCSPCollator(tok, dims=ds.dims)
    rows = [5, 0, 3, 1, 4, 2]
    batch = col([ds[(r, 100 + r)] for r in rows])
    mask = batch["mask"]
    assert mask.dtype == torch.bool and mask.shape == (6, 7)
    assert torch.equal(mask, torch.from_numpy(rs.mask[rows]))
    for m in ("icd", "drug", "demo", "temporal", "image"):
        assert batch[m].shape[0] == int(mask[:, COL[m]].sum()), m
    assert batch["icd"].shape == (2, 6) and torch.equal(batch["icd"][0], ds[0]["icd"])   # present rows, in order
    assert torch.equal(batch["icd"][1], ds[2]["icd"])
    assert batch["temporal_stays"].shape == (1, 2) and batch["image"].shape == (2, 3, 64, 64)
    assert batch["sources"].tolist() == rs.source[rows].tolist() and batch["patients"].tolist() == [2, 1, 1, 1, 1, 2]
    assert batch["times"].dtype == torch.float64 and batch["record_rows"].tolist() == rows and batch["n_records"] == 6
    # histories: the patient's row (zeros without one)
    H = d["histories"].toarray()
    want = np.stack([H[h] if h >= 0 else np.zeros(6, np.float32) for h in rs.history_row[rows]])
    assert batch["histories"].dtype == torch.float32 and np.array_equal(batch["histories"].numpy(), want)
    # texts: notes then reports, distinct ones tokenized once, indices map back
    notes = [ds[r]["note"] for r in rows if "note" in ds[r]]
    reports = [ds[r]["report"] for r in rows if "report" in ds[r]]
    assert len(tok.calls) == 1 and tok.calls[0] == batch["texts"] and len(set(batch["texts"])) == len(batch["texts"])
    assert [batch["texts"][i] for i in batch["note_index"]] == notes
    assert [batch["texts"][i] for i in batch["report_index"]] == reports
    assert batch["text_tokens"]["input_ids"].shape[0] == len(batch["texts"])
    dup = col([ds[3], ds[4], ds[(3, 1)]])  # "clear lungs" twice, "effusion" once
    assert dup["texts"] == ["clear lungs", "effusion"] and dup["report_index"].tolist() == [0, 1, 0]
    nodedup = MEDCSPCollator(tok, text_dedup=False, dims=ds.dims)([ds[3], ds[(3, 1)]])
    assert nodedup["texts"] == ["clear lungs"] * 2 and nodedup["report_index"].tolist() == [0, 1]
    # no text / no items: None tokens and [0, ...] tensors of the right width
    ehr_only = col([ds[1], ds[2]])
    assert ehr_only["text_tokens"] is None and ehr_only["image"].shape == (0, 3, 64, 64)
    assert ehr_only["temporal"].shape == (0, 2, N_T, 2 * N_F) and ehr_only["temporal_stays"].shape == (0, 2)
    empty = col([])
    assert empty["mask"].shape == (0, 7) and empty["icd"].shape == (0, 6) and empty["histories"].shape == (0, 6)


def test_image_augmentation_depends_only_on_row_and_seed():
    d = small()
    rs = build(d)
    a = MEDCSPDataset(rs, d, d["_cache"].array, CFG, train=True)
    b = MEDCSPDataset(rs, d, d["_cache"].array, CFG, train=True)
    torch.manual_seed(123)                                               # the global RNG plays no part
    x1 = a[(3, 42)]["image"]
    _ = a[(5, 7)], torch.rand(10)
    torch.manual_seed(999)
    assert torch.equal(x1, b[(3, 42)]["image"])
    assert not torch.equal(x1, a[(3, 43)]["image"])
    ev = MEDCSPDataset(rs, d, d["_cache"].array, CFG, train=False)
    assert torch.equal(ev[(3, 42)]["image"], ev[(3, 43)]["image"]) and torch.equal(ev[3]["image"], a[3]["image"])
    assert ev[3]["image"].shape == (3, 64, 64)


def test_loader_batches_feed_the_loss():
    """Sampler + dataset + collate through ``data.make_loader``; the batch's metadata is what MEDCSPLoss reads."""
    from medbind_lib.loading import make_loader
    from medbind_lib.losses.medcsp import MEDCSPLoss

    d = random_data(2, n_patients=30, span=40.0)
    rs = build(d)
    ds = MEDCSPDataset(rs, d, d["_cache"].array, CFG, train=True)
    s = CrossSourceBatchSampler(rs, 16, 0.5, 30.0, seed=1)
    loader = make_loader(ds, s, MEDCSPCollator(CountingTokenizer(), dims=ds.dims), n_workers=0, seed=1)
    batches = list(loader)
    assert len(batches) == s.batches_per_epoch
    g = torch.Generator().manual_seed(0)
    for batch, b in zip(batches, s.global_batches(0)):
        assert batch["record_rows"].tolist() == rows_of(b)
        n = batch["n_records"]
        emb = {m: torch.randn(n, 8, generator=g) for m in MEDCSP_MODALITIES}
        out = MEDCSPLoss(theta=30.0, distributed=False)(
            {"embeddings": emb, **{k: batch[k] for k in ("mask", "sources", "patients", "times", "histories")}})
        assert torch.isfinite(out["loss"]) and out["lp_anchors"] >= 2 * s.expected_pairs_per_batch


def test_load_records_opens_the_cxr_cache_like_load_pretrain(monkeypatch):
    from medbind_lib import cohort
    from medbind_lib.medcsp import batches, features

    d = small()
    seen = {}
    monkeypatch.setattr(features, "load", lambda cfg: d)
    monkeypatch.setattr(cohort, "load_linked", lambda cfg: {"cxr": "linked-cxr"})

    def fake_cache(cfg, name, manifest, q):
        seen.update(name=name, manifest=manifest)
        return d["_cache"]

    monkeypatch.setattr(cohort, "cxr_cache", fake_cache)
    out = batches.load_records({"medcsp_max_stays": 2}, splits=("train", "valid"))
    assert seen == {"name": "mimic_cxr", "manifest": "linked-cxr"} and out["cxr_cached"] is d["_cache"]
    assert out["data"] is d and set(out["records"]) == {"train", "valid"}
    assert out["records"]["train"].records["record_id"].tolist() == build(d).records["record_id"].tolist()
    single = batches.load_records({"medcsp_max_stays": 2}, splits=("train",), sources=("cxr",))
    assert (single["records"]["train"].source == SOURCE_CXR).all()
