"""Table 3, cross-modality zero-shot on MIMIC-PAIR: classify one modality with prototypes of the other.

- CXR query vs ECG support -> Hypertrophy vs other: prototypes = mean ECG embedding per class of the
  support set (MIMIC-PAIR TRAINING pairs' ECGs, labelled by their ECG's HYP label); each test CXR is
  assigned the class of the most cosine-similar prototype; truth = its paired ECG's HYP label.
- ECG query vs CXR support -> Cardiomegaly vs other, the same way with CXR prototypes.

Prototypes are re-normalised means (cosine to the prototype, so a class's support size does not scale
its score). Metric: balanced accuracy (percent) with a patient-level bootstrap CI.
"""
from __future__ import annotations

import numpy as np
import torch

from .common import as_numpy, as_tensor, balanced_accuracy, l2_normalize
from .bootstrap import bootstrap_balanced_accuracy


@torch.no_grad()
def class_prototypes(support_emb, support_labels, n_classes: int = 2, device=None) -> torch.Tensor:
    """[C, d] L2-normalised mean embedding of each class's support rows (a class without rows is an error)."""
    x = l2_normalize(as_tensor(support_emb, device))
    y = torch.as_tensor(as_numpy(support_labels).astype(np.int64), device=x.device)
    counts = torch.bincount(y, minlength=n_classes)
    if bool((counts == 0).any()):
        raise ValueError(f"support set has no rows for classes {torch.nonzero(counts == 0).flatten().tolist()}")
    sums = torch.zeros(n_classes, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, y, x)
    return l2_normalize(sums / counts[:, None])


@torch.no_grad()
def prototype_predict(query_emb, prototypes, device=None) -> np.ndarray:
    q = l2_normalize(as_tensor(query_emb, device))
    return (q @ as_tensor(prototypes, q.device).T).argmax(1).cpu().numpy()


def cross_modal_zero_shot(query_emb, query_labels, support_emb, support_labels, *, task: str = "",
                          query_modality: str = "", support_modality: str = "", groups=None,
                          n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, device=None,
                          return_predictions: bool = False) -> dict:
    """Binary (label 1 = the finding, 0 = other) prototype classification of queries from one modality
    against support prototypes of the other. Returns balanced accuracy (percent), CI and the setup (and the
    per-query ``predictions`` when asked)."""
    protos = class_prototypes(support_emb, support_labels, 2, device)
    pred = prototype_predict(query_emb, protos, device)
    y = as_numpy(query_labels).astype(np.int64)
    out = {"balanced_accuracy": 100 * balanced_accuracy(y, pred, 2)}
    if n_boot:
        ci = bootstrap_balanced_accuracy(y, pred, groups, 2, n_boot=n_boot, seed=seed, alpha=alpha)
        out["balanced_accuracy_lo"], out["balanced_accuracy_hi"] = 100 * ci["lo"], 100 * ci["hi"]
    sl = as_numpy(support_labels).astype(np.int64)
    out.update(task=task, query_modality=query_modality, support_modality=support_modality, n_queries=len(y),
               n_query_positive=int(y.sum()), n_support=len(sl), n_support_positive=int(sl.sum()),
               n_boot=n_boot, seed=seed, groups="patients" if groups is not None else "rows")
    if return_predictions:
        out["predictions"] = pred
    return out


def hypertrophy_from_cxr(test_cxr, test_hyp, train_ecg, train_hyp, **kw) -> dict:
    """Table 3 row 1: test CXRs vs prototypes of training ECGs (HYP vs other)."""
    return cross_modal_zero_shot(test_cxr, test_hyp, train_ecg, train_hyp, task="Hypertrophy vs other",
                                 query_modality="CXR", support_modality="ECG", **kw)


def cardiomegaly_from_ecg(test_ecg, test_cardiomegaly, train_cxr, train_cardiomegaly, **kw) -> dict:
    """Table 3 row 2: test ECGs vs prototypes of training CXRs (Cardiomegaly vs other)."""
    return cross_modal_zero_shot(test_ecg, test_cardiomegaly, train_cxr, train_cardiomegaly,
                                 task="Cardiomegaly vs other", query_modality="ECG", support_modality="CXR", **kw)
