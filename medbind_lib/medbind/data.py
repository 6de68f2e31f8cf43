"""Torch datasets, the pair-aware batch sampler and the collate of MEDBind pre-training.

Samples (MIMIC pre-training set, one split at a time, from notebook 01's frames and caches)
-----------------------------------------------------------------------------------------
A *sample* is a CXR (image + report text), an ECG (signal + Table A.2 text) or a MIMIC-PAIR pair
(both, with both texts).  Which samples a variant sees (its ``registry.Variant.modalities``):

* ``medbind_bd`` / ``medbind_nm``: every pair is one sample; CXRs and ECGs that belong to no pair are
  single-modality samples.  Paired records therefore appear once per epoch through their pair (an ECG
  linked to two CXRs, possible with ``pair_policy: nearest``, appears in both pairs).  NM sees the very
  same batches as BD; only its loss ignores the pairing.
* ``cxr_clip`` / ``medclip``: every CXR of the split is one sample (pairs contribute their CXR side,
  once per record); no pairs.  ``ecg_clip``: every ECG once; no pairs.
So every system trains on the same records and splits.

Batches (:class:`PairBatchSampler`)
----------------------------------
The sampler draws GLOBAL batches of ``batch_size`` samples: per batch the number of pairs is
Binomial(batch_size, pair_fraction) (``pair_fraction`` null = the pairs' share of the samples), so m
varies from batch to batch as in the paper; pairs and single samples come from two independently
shuffled streams (reshuffled when exhausted).  ``batches per epoch = n_samples // batch_size`` (at
least 1).  Everything is a pure function of ``(seed, epoch)``: each item also carries its own
augmentation seed, so augmentations do not depend on worker count, rank or resumption.  Under DDP rank
r takes items ``r::world`` of every global batch (equal batch counts on every rank, no overlap) and the
loss gathers the ranks' embeddings, so a DDP step sees the same global batch as a 1-process step.
``state_dict()`` / ``load_state_dict()`` hold (epoch, batches already consumed) for exact resumption.

Collate (:class:`Collator`) -> the :class:`medbind_lib.losses.MEDBindLoss` batch contract
-----------------------------------------------------------------------------------------
``cxr`` [n_c, 3, S, S], ``ecg`` [n_e, 12, T] (always tensors, [0, ...] when absent), ``cxr_texts`` /
``ecg_texts`` (lists of str), ``cxr_text_keys`` / ``ecg_text_keys`` (int64, from
``hash_texts(normalize_for_identity(text, text_identity))``), ``pairs`` [m, 2] (cxr row, ecg row),
``n_samples``, ``cxr_labels`` [n_c, 14] multi-hot CheXpert labels (1.0 = positive; 0, -1 and missing
= 0), the texts tokenized ONCE per batch: ``text_tokens`` (distinct texts of the batch, both
modalities; ``text_dedup: false`` keeps one row per text) with ``cxr_text_index`` / ``ecg_text_index``
(rows into it), and record ids.  :func:`medbind_lib.medbind.pretrain.embed_batch` turns this into the loss input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from .. import registry
from ..loading import LABEL_COLUMNS, label_matrix, tokenize_once
from ..losses import hash_texts
from ..preprocess import cxr as pcxr
from ..preprocess import ecg as pecg
from ..preprocess.text import normalize_for_identity

__all__ = ["modalities_of", "PretrainTables", "load_pretrain", "PretrainDataset", "PairBatchSampler",
           "fixed_batches", "Collator", "text_keys"]



def modalities_of(variant: str) -> tuple[str, ...]:
    """The modalities a MEDBind variant's samples carry (``registry.Variant.modalities``)."""
    if not registry.is_variant(variant, "medbind"):
        raise ValueError(f"variant must be one of {registry.variant_names('medbind')}, got {variant!r}")
    return registry.variant(variant).modalities


def text_keys(texts: Sequence[str], mode: str = "lower_ws") -> torch.Tensor:
    """Stable int64 identity keys of texts (equal <=> identical under ``text_identity``)."""
    return hash_texts([normalize_for_identity(str(t), mode) for t in texts], normalize=False)


# ----------------------------------------------------------------------------------------------------
# tables: which records / pairs / samples a split has
# ----------------------------------------------------------------------------------------------------
@dataclass
class PretrainTables:
    """The records of one split and the samples built from them.

    ``cxr`` / ``ecg``: one row per record (``record_id``, ``text``, ``index`` into the cache array, ...);
    ``samples``: int64 [S, 2] of (cxr row or -1, ecg row or -1); a row with both is a pair.
    """

    split: str
    variant: str
    cxr: pd.DataFrame
    ecg: pd.DataFrame
    samples: np.ndarray
    cxr_labels: np.ndarray

    @property
    def is_pair(self) -> np.ndarray:
        return (self.samples[:, 0] >= 0) & (self.samples[:, 1] >= 0)

    @property
    def n_pairs(self) -> int:
        return int(self.is_pair.sum())

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> dict:
        return {"split": self.split, "variant": self.variant, "samples": len(self), "pairs": self.n_pairs,
                "cxr_only": int(((self.samples[:, 0] >= 0) & (self.samples[:, 1] < 0)).sum()),
                "ecg_only": int(((self.samples[:, 1] >= 0) & (self.samples[:, 0] < 0)).sum())}


def _in_cache(frame: pd.DataFrame, cached, split: str) -> pd.DataFrame:
    idx = dict(zip(cached.manifest["record_id"].astype(str), cached.manifest["index"].astype(int)))
    df = frame[frame["split"].eq(split)].copy()
    df["record_id"] = df["record_id"].astype(str)
    df["index"] = df["record_id"].map(idx)
    df = df[df["index"].notna() & df["text"].notna()].copy()
    df["index"] = df["index"].astype(np.int64)
    return df.reset_index(drop=True)


def build_tables(cxr: pd.DataFrame, ecg: pd.DataFrame, pairs: pd.DataFrame, cxr_cached, ecg_cached,
                 split: str, variant: str) -> PretrainTables:
    """Samples of ``split`` for ``variant`` (see the module docstring); records missing from a cache are
    left out, and so are pairs with a side missing."""
    mods = modalities_of(variant)
    c = _in_cache(cxr, cxr_cached, split) if "cxr" in mods else cxr.iloc[:0].assign(index=pd.Series(dtype="int64"))
    e = _in_cache(ecg, ecg_cached, split) if "ecg" in mods else ecg.iloc[:0].assign(index=pd.Series(dtype="int64"))
    crow = {r: i for i, r in enumerate(c["record_id"])}
    erow = {r: i for i, r in enumerate(e["record_id"])}
    rows = []
    if len(mods) == 2:
        p = pairs[pairs["split"].eq(split)]
        pc = p["cxr_record_id"].astype(str).map(crow)
        pe = p["ecg_record_id"].astype(str).map(erow)
        ok = pc.notna() & pe.notna()
        pair_rows = np.stack([pc[ok].astype(np.int64), pe[ok].astype(np.int64)], 1) if ok.any() \
            else np.zeros((0, 2), np.int64)
        rows.append(pair_rows)
        paired_c, paired_e = set(pair_rows[:, 0].tolist()), set(pair_rows[:, 1].tolist())
        single_c = [i for i in range(len(c)) if i not in paired_c]
        single_e = [i for i in range(len(e)) if i not in paired_e]
    else:
        single_c, single_e = list(range(len(c))), list(range(len(e)))
    rows.append(np.stack([np.asarray(single_c, np.int64), -np.ones(len(single_c), np.int64)], 1).reshape(-1, 2))
    rows.append(np.stack([-np.ones(len(single_e), np.int64), np.asarray(single_e, np.int64)], 1).reshape(-1, 2))
    samples = np.concatenate(rows, 0).astype(np.int64)
    return PretrainTables(split, variant, c, e, samples, label_matrix(c))


def load_pretrain(cfg, variant: str, splits=("train", "valid"), linked: dict | None = None,
                  caches: dict | None = None) -> dict:
    """``{'tables': {split: PretrainTables}, 'cxr_cached', 'ecg_cached', 'ecg_stats'}`` from notebook 01's
    outputs (``cohort.load_linked``) and the caches (reused; rebuilt only if notebook 01's were removed).
    The ECG normalisation statistic is fit on the TRAINING split (``cohort.ecg_norm_stats``)."""
    from .. import cohort
    from ..quality import QualityLog

    linked = linked if linked is not None else cohort.load_linked(cfg)
    q = QualityLog()
    caches = dict(caches or {})
    if "mimic_cxr" not in caches:
        caches["mimic_cxr"] = cohort.cxr_cache(cfg, "mimic_cxr", linked["cxr"], q)
    if "mimic_ecg" not in caches:
        caches["mimic_ecg"] = cohort.ecg_cache(cfg, "mimic_ecg", linked["ecg"], q)
    stats = cohort.ecg_norm_stats(cfg, caches["mimic_ecg"])
    tables = {s: build_tables(linked["cxr"], linked["ecg"], linked["pairs"], caches["mimic_cxr"],
                              caches["mimic_ecg"], s, variant) for s in splits}
    return {"tables": tables, "cxr_cached": caches["mimic_cxr"], "ecg_cached": caches["mimic_ecg"],
            "ecg_stats": stats}


# ----------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------
class PretrainDataset(Dataset):
    """Items of a :class:`PretrainTables`.  Index with ``i`` or ``(i, aug_seed)``: the seed drives this
    item's augmentation (CXR MedCLIP-style transform, ECG Gaussian noise) through a private
    ``torch.Generator``; ``train=False`` (or no seed) gives the deterministic evaluation view."""

    def __init__(self, tables: PretrainTables, cxr_array, ecg_array, ecg_stats: dict | None, cfg,
                 train: bool = True):
        self.t = tables
        self.cxr_array, self.ecg_array = cxr_array, ecg_array
        self.ecg_stats = ecg_stats or {"method": "none"}
        self.ecg_method = cfg["ecg_norm"]
        self.train = bool(train)
        self.noise_std = float(cfg.get("ecg_noise_std", 0.0) or 0.0)
        self.train_tf = pcxr.train_transform(cfg["cxr_size"], cfg["cxr_cache_size"])
        self.eval_tf = pcxr.eval_transform(cfg["cxr_size"])
        self._ctext = tables.cxr["text"].astype(str).tolist()
        self._etext = tables.ecg["text"].astype(str).tolist()
        self._cidx = tables.cxr["index"].to_numpy(np.int64)
        self._eidx = tables.ecg["index"].to_numpy(np.int64)
        self._cid = tables.cxr["record_id"].astype(str).tolist()
        self._eid = tables.ecg["record_id"].astype(str).tolist()

    def __len__(self) -> int:
        return len(self.t.samples)

    def __getitem__(self, key):
        i, seed = (key if isinstance(key, tuple) else (key, None))
        ci, ei = (int(v) for v in self.t.samples[int(i)])
        aug = self.train and seed is not None
        g = torch.Generator().manual_seed(int(seed)) if aug else None
        item = {"sample": int(i)}
        if ci >= 0:
            img = np.asarray(self.cxr_array[self._cidx[ci]])
            item["cxr"] = (self.train_tf(img, generator=g) if aug else self.eval_tf(img))
            item["cxr_text"] = self._ctext[ci]
            item["cxr_label"] = self.t.cxr_labels[ci]
            item["cxr_id"] = self._cid[ci]
        if ei >= 0:
            x = torch.from_numpy(np.array(self.ecg_array[self._eidx[ei]], dtype=np.float32))
            x = pecg.apply_norm(x, self.ecg_stats, self.ecg_method).float()
            if aug and self.noise_std > 0:
                x = pecg.gaussian_noise(x, self.noise_std, generator=g)
            item["ecg"] = x
            item["ecg_text"] = self._etext[ei]
            item["ecg_id"] = self._eid[ei]
        return item


# ----------------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------------
class PairBatchSampler(Sampler):
    """Pair-aware, seeded, DDP-sharded batch sampler (see the module docstring).

    Yields lists of ``(sample index, augmentation seed)`` for this rank.  ``pair_fraction`` None = the
    pairs' share of the samples; 0 = no pairs; tables without pairs ignore it.
    """

    def __init__(self, is_pair: np.ndarray, batch_size: int, pair_fraction: Optional[float] = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        is_pair = np.asarray(is_pair, bool)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} / world_size {world_size}")
        if batch_size < world_size:
            raise ValueError(f"global batch_size {batch_size} < world size {world_size}")
        self.pairs = np.flatnonzero(is_pair)
        self.singles = np.flatnonzero(~is_pair)
        self.n = len(is_pair)
        if self.n == 0:
            raise ValueError("no samples to batch")
        if pair_fraction is None:
            pair_fraction = len(self.pairs) / self.n
        if not 0.0 <= pair_fraction <= 1.0:
            raise ValueError(f"pair_fraction must be in [0, 1], got {pair_fraction}")
        if len(self.pairs) == 0:
            pair_fraction = 0.0
        if len(self.singles) == 0:
            pair_fraction = 1.0
        self.pair_fraction = float(pair_fraction)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.batches_per_epoch = max(1, self.n // self.batch_size)
        self.epoch, self.start = 0, 0

    # -------- state (resume)
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on (batches before it were consumed)."""
        self.epoch, self.start = int(epoch), int(start)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed, "batch_size": self.batch_size,
                "pair_fraction": self.pair_fraction, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        for k in ("seed", "batch_size", "n"):
            if state.get(k) != getattr(self, k):
                raise ValueError(f"sampler state does not match this sampler: {k} {state.get(k)} != "
                                 f"{getattr(self, k)} (a resumed run must use the same data and batch size)")
        self.set_epoch(state["epoch"], state["start"])

    # -------- batches
    def global_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Every global batch of ``epoch`` (all ranks), each a list of (sample, aug seed)."""
        rng = np.random.default_rng([self.seed, int(epoch), 0x5EED])
        streams = {"p": [self.pairs, rng.permutation(self.pairs), 0],
                   "s": [self.singles, rng.permutation(self.singles), 0]}

        def take(name, k):
            pool, perm, pos = streams[name]
            out = []
            while k > 0 and len(pool):
                if pos >= len(perm):
                    perm, pos = rng.permutation(pool), 0
                got = perm[pos: pos + k]
                out.extend(got.tolist())
                pos += len(got)
                k -= len(got)
            streams[name][1], streams[name][2] = perm, pos
            return out

        batches = []
        for _ in range(self.batches_per_epoch):
            m = int(rng.binomial(self.batch_size, self.pair_fraction))
            items = take("p", m) + take("s", self.batch_size - m)
            items = [items[j] for j in rng.permutation(len(items))]
            seeds = rng.integers(0, 2**62, size=len(items))
            batches.append(list(zip(items, seeds.tolist())))
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in self.global_batches(self.epoch)[self.start:]:
            yield b[self.rank::self.world_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


def fixed_batches(n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """Evaluation batches: one seeded shuffle of all ``n`` samples cut into batches (the last may be
    smaller); rank r takes items ``r::world`` of each batch.  The same for every epoch."""
    perm = np.random.default_rng([int(seed), 0xE7A1]).permutation(n)
    out = [perm[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    return [b[rank::world_size] for b in out]


# ----------------------------------------------------------------------------------------------------
# collate
# ----------------------------------------------------------------------------------------------------
class Collator:
    """List of :class:`PretrainDataset` items -> one batch dict (module docstring).  ``tokenize`` None
    leaves the texts untokenized (``text_tokens`` None)."""

    def __init__(self, tokenize: Optional[Callable] = None, text_identity: str = "lower_ws",
                 dedup: bool = True, cxr_shape: tuple | None = None, ecg_shape: tuple | None = None):
        self.tokenize, self.text_identity, self.dedup = tokenize, text_identity, bool(dedup)
        self.cxr_shape, self.ecg_shape = cxr_shape, ecg_shape

    def __call__(self, items: list[dict]) -> dict:
        c_items = [it for it in items if "cxr" in it]
        e_items = [it for it in items if "ecg" in it]
        c_pos = {id(it): j for j, it in enumerate(c_items)}
        e_pos = {id(it): j for j, it in enumerate(e_items)}
        pairs = [(c_pos[id(it)], e_pos[id(it)]) for it in items if "cxr" in it and "ecg" in it]

        def stack(its, key, shape):
            if its:
                return torch.stack([it[key] for it in its])
            return torch.zeros((0,) + tuple(shape or ()), dtype=torch.float32)

        ctexts = [it["cxr_text"] for it in c_items]
        etexts = [it["ecg_text"] for it in e_items]
        batch = {
            "cxr": stack(c_items, "cxr", self.cxr_shape),
            "ecg": stack(e_items, "ecg", self.ecg_shape),
            "cxr_texts": ctexts, "ecg_texts": etexts,
            "cxr_text_keys": text_keys(ctexts, self.text_identity) if ctexts else torch.zeros(0, dtype=torch.long),
            "ecg_text_keys": text_keys(etexts, self.text_identity) if etexts else torch.zeros(0, dtype=torch.long),
            "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
            "n_samples": len(items),
            "cxr_labels": torch.from_numpy(np.stack([it["cxr_label"] for it in c_items]).astype(np.float32))
            if c_items else torch.zeros((0, len(LABEL_COLUMNS))),
            "cxr_ids": [it["cxr_id"] for it in c_items], "ecg_ids": [it["ecg_id"] for it in e_items],
            "samples": torch.tensor([it["sample"] for it in items], dtype=torch.long),
        }
        texts, (batch["cxr_text_index"], batch["ecg_text_index"]), batch["text_tokens"] = tokenize_once(
            (ctexts, etexts), self.tokenize, self.dedup)
        batch["unique_texts"] = texts
        return batch
