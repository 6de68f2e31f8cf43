"""Collated MEDCSP batches on a device and dataset rows through a model: what validation during pre-training
(``pretrain``) and the embedding export (``embed``) both do, in one place below both."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

__all__ = ["to_device", "embed_rows"]


def to_device(batch: Mapping, device) -> dict:
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, Mapping):
            out[k] = {kk: vv.to(device, non_blocking=True) if torch.is_tensor(vv) else vv for kk, vv in v.items()}
        else:
            out[k] = v
    return out


@torch.no_grad()
def embed_rows(model, ds, collate, rows, device="cpu", batch_size: int = 64) -> dict:
    """{modality: [n, d] float32} and ``mask`` [n, 7] for dataset rows ``rows`` (deterministic view)."""
    out, masks = {}, []
    for s in range(0, len(rows), batch_size):
        batch = to_device(collate([ds[int(i)] for i in rows[s:s + batch_size]]), device)
        emb = model(batch)
        for m, z in emb.items():
            out.setdefault(m, []).append(z.float().cpu())
        masks.append(batch["mask"].cpu())
    d = model.embed_dim
    res = {m: torch.cat(v).numpy() for m, v in out.items()}
    res["mask"] = torch.cat(masks).numpy() if masks else np.zeros((0, 7), bool)
    return res if len(rows) else {**{m: np.zeros((0, d), np.float32) for m in model.modalities}, "mask": res["mask"]}
