"""Small helpers shared by the evaluation modules: array conversion, key factorisation, balanced accuracy.

Everything here works on plain arrays (numpy or torch) so the evaluation never depends on how the
embeddings were exported.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..preprocess.text import normalize_for_identity


def resolve_device(device=None) -> torch.device:
    """``None`` = CPU (evaluation must not silently move to a GPU another job is using)."""
    return torch.device("cpu") if device is None else torch.device(device)


def as_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor:
    """numpy / torch / list -> torch tensor on ``device`` (no copy for a matching numpy float array on CPU)."""
    dev = resolve_device(device)
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=dev, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype).to(dev)


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def factorize(*key_arrays: Sequence) -> list[np.ndarray]:
    """Integer codes for hashable keys, shared across the arrays (equal key -> equal code, in any array)."""
    table: dict = {}
    out = []
    for keys in key_arrays:
        out.append(np.fromiter((table.setdefault(k, len(table)) for k in keys), dtype=np.int64,
                               count=len(keys)))
    return out


def text_keys(texts: Sequence[str], identity: str = "lower_ws") -> list:
    """The identity key of each text (``preprocess.text.normalize_for_identity``): identical key = same text."""
    return [normalize_for_identity(t, identity) for t in texts]


def encode_labels(y, classes: Sequence) -> np.ndarray:
    """Labels given as class names (or already as indices) -> int indices into ``classes``."""
    y = as_numpy(y)
    if y.dtype.kind in "iu":
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"label index out of range for {len(classes)} classes")
        return y.astype(np.int64)
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([index[v] for v in y], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]!r} not among classes {tuple(classes)}") from None


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean per-class recall over the classes PRESENT in ``y_true`` (sklearn's ``balanced_accuracy_score``,
    ``adjusted=False``), as a fraction in [0, 1]."""
    return float(balanced_accuracy_batched(y_true, as_numpy(y_pred)[None], n_classes)[0])


def balanced_accuracy_batched(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Balanced accuracy of many prediction rows at once: ``y_pred`` [S, N] against ``y_true`` [N] or
    [S, N] -> [S] (used by the few-shot probe, one row per support set)."""
    yt = torch.as_tensor(as_numpy(y_true), dtype=torch.long)
    yp = torch.as_tensor(as_numpy(y_pred), dtype=torch.long)
    if yp.ndim == 1:
        yp = yp[None]
    if yt.ndim == 1:
        yt = yt[None].expand_as(yp)
    c = int(n_classes if n_classes is not None else max(int(yt.max()), int(yp.max())) + 1)
    onehot = torch.nn.functional.one_hot(yt, c).to(torch.float64)          # [S, N, C]
    correct = (yp == yt).to(torch.float64).unsqueeze(-1)                   # [S, N, 1]
    tot = onehot.sum(1)                                                    # [S, C]
    hit = (onehot * correct).sum(1)
    present = tot > 0
    rec = torch.where(present, hit / tot.clamp_min(1), torch.zeros_like(hit))
    return (rec.sum(1) / present.sum(1).clamp_min(1)).numpy()
