"""Zero-shot classification: cosine between an image/ECG embedding and each class's prompt embeddings.

``prompt_pool`` decides how a class's P prompts become one score:

- ``mean_cosine`` (default): the mean of the P cosines. This is "mean over a class's prompts" read
  literally (METHOD.md) and what MedCLIP's ``PromptClassifier`` does (mean of the per-prompt logits).
- ``mean_embedding``: cosine to the re-normalised mean prompt embedding (CLIP prompt ensembling).

The two differ only by the per-class norm of the mean prompt embedding, so they agree whenever a class has
one prompt. Binary sets with ``binary_rule='positive_only'`` predict positive iff the pooled score > 0.

Multi-label datasets (PTB-XL superclasses, ICBEB) - our protocol (``zero_shot_multilabel``):
the headline balanced accuracy is on the SINGLE-LABEL subset (records with exactly one class; argmax over
all classes), and the macro one-vs-rest AUROC of the class scores is reported on every labelled record.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .common import as_numpy, as_tensor, balanced_accuracy, encode_labels, l2_normalize
from .bootstrap import bootstrap_balanced_accuracy
from .prompts import PromptSet

PROMPT_POOLS = ("mean_cosine", "mean_embedding")


def embed_prompts(prompt_set: PromptSet, encode_text: Callable[[list[str]], object]) -> dict:
    """class -> [P, d] L2-normalised prompt embeddings from ``encode_text(list_of_str) -> [P, d]``."""
    return {c: l2_normalize(as_tensor(encode_text(list(p)))) for c, p in prompt_set.prompts.items()}


@torch.no_grad()
def class_scores(x, prompt_embeddings: dict | Sequence, classes: Sequence | None = None,
                 prompt_pool: str = "mean_cosine", device=None) -> np.ndarray:
    """[N, C] pooled scores of embeddings ``x`` against each class's prompt embeddings (class order =
    ``classes`` or the dict/list order). Inputs are re-normalised, so raw encoder outputs are fine."""
    if prompt_pool not in PROMPT_POOLS:
        raise ValueError(f"prompt_pool must be one of {PROMPT_POOLS}, got {prompt_pool!r}")
    if isinstance(prompt_embeddings, dict):
        keys = list(classes) if classes is not None else list(prompt_embeddings)
        embs = [prompt_embeddings[c] for c in keys]
    else:
        embs = list(prompt_embeddings)
    xt = l2_normalize(as_tensor(x, device))
    cols = []
    for e in embs:
        p = l2_normalize(as_tensor(e, device).reshape(-1, xt.shape[1]))
        if prompt_pool == "mean_cosine":
            cols.append((xt @ p.T).mean(1))
        else:
            cols.append(xt @ l2_normalize(p.mean(0)))
    return torch.stack(cols, 1).cpu().numpy()


def predict(scores: np.ndarray, binary_rule: str | None = None) -> np.ndarray:
    """Class index per row: ``positive_only`` -> 1 iff the single positive score > 0; else argmax."""
    if binary_rule == "positive_only":
        return (scores[:, -1] > 0).astype(np.int64)
    return scores.argmax(1).astype(np.int64)


def _prompt_embeddings(prompt_set, encode_text, prompt_embeddings):
    if prompt_embeddings is None:
        if encode_text is None:
            raise ValueError("pass encode_text or prompt_embeddings")
        prompt_embeddings = embed_prompts(prompt_set, encode_text)
    missing = [c for c in prompt_set.prompts if c not in prompt_embeddings]
    if missing:
        raise ValueError(f"prompt embeddings missing for classes {missing}")
    return prompt_embeddings


def binary_auroc(y, score) -> float:
    """AUROC (fraction) of a score for class 1; NaN when a class is absent (a bootstrap replicate can be)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def binary_class_score(scores: np.ndarray, binary_rule: str | None) -> np.ndarray:
    """One score per row for the positive class of a binary set: positive minus negative pooled score, or the
    positive score alone (``positive_only``). Its AUROC does not depend on the decision offset that balanced
    accuracy reads."""
    return scores[:, -1] if binary_rule == "positive_only" or scores.shape[1] == 1 else scores[:, 1] - scores[:, 0]


def zero_shot(x, y, prompt_set: PromptSet, *, encode_text: Callable | None = None,
              prompt_embeddings: dict | None = None, prompt_pool: str = "mean_cosine", groups=None,
              n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, device=None,
              return_predictions: bool = False) -> dict:
    """Single-label zero-shot balanced accuracy (percent) with a patient-level bootstrap CI; for a binary set
    also the AUROC of ``binary_class_score`` (percent, same CI).

    ``y``: class indices into ``prompt_set.classes`` or class names. Give ``encode_text`` (list of str ->
    [P, d]) or precomputed ``prompt_embeddings`` (class -> [P, d])."""
    pe = _prompt_embeddings(prompt_set, encode_text, prompt_embeddings)
    yi = encode_labels(y, prompt_set.classes)
    scored = list(prompt_set.prompts) if prompt_set.binary_rule == "positive_only" else list(prompt_set.classes)
    scores = class_scores(x, pe, scored, prompt_pool, device)
    pred = predict(scores, prompt_set.binary_rule)
    c = len(prompt_set.classes)
    out = {"balanced_accuracy": 100 * balanced_accuracy(yi, pred, c)}
    if n_boot:
        ci = bootstrap_balanced_accuracy(yi, pred, groups, c, n_boot=n_boot, seed=seed, alpha=alpha)
        out["balanced_accuracy_lo"], out["balanced_accuracy_hi"] = 100 * ci["lo"], 100 * ci["hi"]
    if c == 2:
        out.update(_auroc_with_ci(yi, binary_class_score(scores, prompt_set.binary_rule), groups, n_boot, seed,
                                  alpha))
    out.update(n=len(yi), classes=list(prompt_set.classes), prompt_pool=prompt_pool, n_boot=n_boot, seed=seed,
               groups="patients" if groups is not None else "rows", **prompt_set.meta())
    if return_predictions:
        out["scores"], out["predictions"] = scores, pred
    return out


def _auroc_with_ci(y, score, groups, n_boot: int, seed: int, alpha: float) -> dict:
    from .binary import auroc_replicates
    from .bootstrap import percentile_ci

    out = {"auroc": 100 * binary_auroc(y, score)}
    if n_boot:
        lo, hi = percentile_ci(auroc_replicates(y, score, groups, n_boot, seed), alpha)
        out.update(auroc_lo=100 * lo, auroc_hi=100 * hi)
    return out


def zero_shot_multilabel(x, y_multi, prompt_set: PromptSet, *, encode_text: Callable | None = None,
                         prompt_embeddings: dict | None = None, prompt_pool: str = "mean_cosine", groups=None,
                         n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, device=None,
                         return_predictions: bool = False) -> dict:
    """Multi-label zero-shot (PTB-XL superclasses, ICBEB): ``y_multi`` [N, C] multi-hot in
    ``prompt_set.classes`` order. Balanced accuracy on rows with exactly one label (argmax over all
    classes); macro one-vs-rest AUROC over every row with >= 1 label (classes with both outcomes only).
    ``return_predictions``: the single-label rows' mask, true classes and predictions."""
    from sklearn.metrics import roc_auc_score

    pe = _prompt_embeddings(prompt_set, encode_text, prompt_embeddings)
    ym = as_numpy(y_multi).astype(bool)
    scores = class_scores(x, pe, prompt_set.classes, prompt_pool, device)
    n_lab = ym.sum(1)
    single = n_lab == 1
    yi = ym[single].argmax(1)
    pred = scores[single].argmax(1)
    c = len(prompt_set.classes)
    out = {"balanced_accuracy": 100 * balanced_accuracy(yi, pred, c) if single.any() else float("nan")}
    if n_boot and single.any():
        g = None if groups is None else as_numpy(groups)[single]
        ci = bootstrap_balanced_accuracy(yi, pred, g, c, n_boot=n_boot, seed=seed, alpha=alpha)
        out["balanced_accuracy_lo"], out["balanced_accuracy_hi"] = 100 * ci["lo"], 100 * ci["hi"]
    lab = n_lab > 0
    aucs = {cls: float(roc_auc_score(ym[lab, j], scores[lab, j]))
            for j, cls in enumerate(prompt_set.classes) if 0 < ym[lab, j].sum() < lab.sum()}
    out.update(macro_auroc=100 * float(np.mean(list(aucs.values()))) if aucs else float("nan"),
               auroc_per_class={k: 100 * v for k, v in aucs.items()}, n_single_label=int(single.sum()),
               n_labelled=int(lab.sum()), protocol="balanced acc on single-label rows; macro OvR AUROC on all",
               classes=list(prompt_set.classes), prompt_pool=prompt_pool, n_boot=n_boot, seed=seed,
               groups="patients" if groups is not None else "rows", **prompt_set.meta())
    if return_predictions:
        out["single_label"], out["y_single"], out["predictions"] = single, yi, pred
    return out
