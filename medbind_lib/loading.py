"""What both methods' data pipelines share: CheXpert label vectors, a deterministic view of any cache for
embedding export, the picklable tokenizer call, tokenising each distinct text of a batch once, and the seeded
DataLoader. MEDBind's (``medbind.data``) and MEDCSP's (``medcsp.batches``) datasets and collators build on it."""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .constants import CHEXPERT_LABELS
from .preprocess import cxr as pcxr
from .preprocess import ecg as pecg
from .runtime import seed_worker

__all__ = ["LABEL_COLUMNS", "label_matrix", "EvalArrayDataset", "TokenizeFn", "tokenize_once", "make_loader"]

LABEL_COLUMNS = CHEXPERT_LABELS


def label_matrix(df: pd.DataFrame, columns: Sequence[str] = LABEL_COLUMNS) -> np.ndarray:
    """CheXpert multi-hot [n, K] float32: 1.0 where the label is 1.0 (uncertain -1, 0 and missing -> 0).
    Columns absent from ``df`` are all-zero."""
    out = np.zeros((len(df), len(columns)), np.float32)
    for j, c in enumerate(columns):
        if c in df.columns:
            out[:, j] = (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan) == 1.0)
    return out


class EvalArrayDataset(Dataset):
    """Deterministic view of any cache (CXR uint8 [N, S, S] or ECG float [N, 12, T]) for embedding export:
    ``manifest`` rows (with the cache ``index`` column) in order; item = (tensor, row).  ``transform``: a model's
    own CXR preprocessing of the cached uint8 image (a pre-trained row's), instead of the suite's."""

    def __init__(self, cached_array, manifest: pd.DataFrame, modality: str, cfg, ecg_stats: dict | None = None,
                 transform=None):
        if modality not in ("cxr", "ecg"):
            raise ValueError(f"modality must be 'cxr' or 'ecg', got {modality!r}")
        self.array, self.modality = cached_array, modality
        self.index = manifest["index"].to_numpy(np.int64)
        self.tf = None if modality != "cxr" else transform or pcxr.eval_transform(cfg["cxr_size"])
        self.ecg_stats, self.ecg_method = ecg_stats or {"method": "none"}, cfg["ecg_norm"]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        a = np.asarray(self.array[self.index[i]])
        if self.modality == "cxr":
            return self.tf(a), i
        x = torch.from_numpy(np.array(a, dtype=np.float32))
        return pecg.apply_norm(x, self.ecg_stats, self.ecg_method).float(), i


class TokenizeFn:
    """Picklable tokenizer call equal to ``TextEncoder.tokenize`` (for DataLoader workers)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, int(max_length)

    @classmethod
    def from_model(cls, model) -> "TokenizeFn":
        enc = model.encoders["text"]
        return cls(enc.tokenizer, enc.max_length)

    def __call__(self, texts: Sequence[str]) -> dict:
        enc = self.tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def tokenize_once(groups: Sequence[Sequence[str]], tokenize: Optional[Callable], dedup: bool = True):
    """(texts, one long index tensor per group into ``texts``, ``tokenize(texts)`` or None): each distinct
    text of the batch is tokenised (and later encoded) once; ``dedup=False`` keeps one row per text."""
    all_texts = [t for g in groups for t in g]
    if dedup:
        uniq: dict = {}
        inv = [uniq.setdefault(t, len(uniq)) for t in all_texts]
        texts = list(uniq)
    else:
        texts, inv = all_texts, list(range(len(all_texts)))
    inv = torch.tensor(inv, dtype=torch.long)
    bounds = np.cumsum([0] + [len(g) for g in groups])
    index = tuple(inv[bounds[k]:bounds[k + 1]] for k in range(len(groups)))
    return texts, index, (tokenize(texts) if (tokenize is not None and texts) else None)


def make_loader(dataset: Dataset, batch_sampler, collate: Callable, n_workers: int = 0, seed: int = 0,
                device: str | torch.device = "cpu") -> DataLoader:
    """DataLoader with the conventions: ``seed_worker`` + a seeded ``torch.Generator``, pinned memory on
    CUDA, persistent workers when ``n_workers > 0``."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    kw = {}
    if n_workers > 0:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        kw.update(persistent_workers=True, prefetch_factor=4)
    return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=int(n_workers),
                      worker_init_fn=seed_worker, generator=g,
                      pin_memory=torch.device(device).type == "cuda", **kw)
