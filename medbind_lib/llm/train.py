"""Seeded fine-tuning of the Table 4 model, one (task, system, seed) at a time, with results on disk.

Per fit: ``seed_everything(seed)`` before the model is built (LoRA, projection and head initialisation, dropout
and the batch order all follow the seed); AdamW on the trainable tensors only (no weight decay on 1-d ones);
loss = class-weighted binary cross-entropy on the TRAIN split; after every epoch the VALID split is scored and
the trainable tensors of the best epoch (``llm_select``, ``selection_key``; every epoch runs, no early stop) are
kept - the epoch loop is the one ``medbind_lib.finetune.train_epochs`` shared with MEDCSP's EHR tasks, given this
module's collate, loss and key; the decision threshold follows
``llm_threshold`` (recorded with the fit; Table 4 re-applies the current rule to the stored validation
predictions, ``table.seed_thresholds``, so the rule is not in the fingerprint); the TEST split is predicted
once, with the selected weights.

Results go to ``runs/<profile>/07/predictions/<task>/<system>/seed<k>.{parquet,json}`` (atomic writes; the
JSON, written last, holds the settings and a fingerprint of settings + data + frozen embeddings + checkpoints),
and are reused when the fingerprint matches, so an interrupted notebook resumes instead of restarting.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..finetune import Epoch, train_epochs
from ..io import write_json_atomic, write_parquet_atomic
from ..layout import RunLayout
from ..runtime import progress, seed_everything
from .metrics import auroc_rows, choose_threshold
from .model import PromptTunedClassifier

CODE_VERSION = 1  # bump when a change here alters results in a way the settings do not show


# ----------------------------------------------------------------------------------------------- tokens
def encode_texts(tokenizer, texts: Sequence[str], pair_texts: Sequence[str | None] | None, max_length: int
                 ) -> list[list[int]]:
    """Token ids per row (``[CLS] text [SEP] (pair [SEP])``), at most ``max_length``; with a pair the longer
    segment is truncated first, so a long discharge note cannot crowd out the reports."""
    out = []
    for i, t in enumerate(texts):
        pair = pair_texts[i] if pair_texts is not None else None
        enc = tokenizer(str(t), pair if pair else None, truncation="longest_first" if pair else True,
                        max_length=int(max_length), return_token_type_ids=False, return_attention_mask=False)
        out.append(list(enc["input_ids"]))
    return out


def collate(rows: np.ndarray, ids: Sequence[list[int]], pad_id: int, modalities: Mapping, device) -> dict:
    """Right-padded ``input_ids``/``attention_mask`` of ``rows`` and their modality embeddings and masks."""
    length = max(len(ids[i]) for i in rows)
    x = torch.full((len(rows), length), int(pad_id), dtype=torch.long)
    m = torch.zeros((len(rows), length), dtype=torch.long)
    for j, i in enumerate(rows):
        x[j, :len(ids[i])] = torch.tensor(ids[i])
        m[j, :len(ids[i])] = 1
    return {"input_ids": x.to(device), "attention_mask": m.to(device),
            "modality_emb": {k: torch.from_numpy(e[rows]).to(device) for k, (e, _) in modalities.items()},
            "modality_mask": {k: torch.from_numpy(mk[rows]).to(device) for k, (_, mk) in modalities.items()}}


# ----------------------------------------------------------------------------------------------- one fit
def class_weights(y_train: np.ndarray, rule: str) -> np.ndarray:
    """[2] loss weights: ``balanced`` = n / (2 n_c) (scikit-learn's), ``none`` or a missing class = ones."""
    y = np.asarray(y_train).astype(int)
    n = np.bincount(y, minlength=2).astype(np.float64)
    if rule == "none" or (n == 0).any():
        return np.ones(2)
    if rule != "balanced":
        raise ValueError(f"llm_class_weighting must be 'balanced' or 'none', got {rule!r}")
    return len(y) / (2 * n)


@torch.no_grad()
def predict(model, rows, ids, pad_id, modalities, device, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(rows), batch_size):
        b = collate(rows[s:s + batch_size], ids, pad_id, modalities, device)
        out.append(torch.sigmoid(model(**b).float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _weighted_bce(prob: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    if len(y) == 0:
        return math.nan
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    ww = w[y]
    return float(-(ww * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / ww.sum())


def fit_predict(lm, ids: Sequence[list[int]], pad_id: int, labels, splits, modalities: Mapping, settings,
                seed: int, device="cpu") -> dict:
    """Fine-tune one model (module docstring) and return ``prob`` [N] (valid and test rows, with the selected
    weights; NaN for training rows), ``threshold``, ``best_epoch``, ``selected_by`` and the per-epoch
    ``history``. ``lm`` is copied, never modified. ``modalities``: ``{m: (emb [N, d], mask [N])}``."""
    y = np.asarray(labels).astype(int)
    splits = np.asarray(splits)
    tr, va = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "valid")
    if len(tr) == 0:
        raise ValueError("no training rows for this task")
    seed_everything(seed)
    model = PromptTunedClassifier(copy.deepcopy(lm), {m: e.shape[1] for m, (e, _) in modalities.items()},
                                  settings.modality_tokens, settings.pool,
                                  dict(r=settings.lora_r, alpha=settings.lora_alpha, dropout=settings.lora_dropout,
                                       targets=settings.lora_targets)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=settings.lr)
    w = class_weights(y[tr], settings.class_weighting)
    wt = torch.tensor(w, dtype=torch.float32, device=device)
    bs = int(settings.batch_size)

    def loss_fn(b: torch.Tensor) -> torch.Tensor:      # b: positions in the training rows (one shuffled batch)
        rows = tr[b.numpy()]
        batch = collate(rows, ids, pad_id, modalities, device)
        yt = torch.from_numpy(y[rows]).to(device)
        logit = model(**batch).float()
        return (torch.nn.functional.binary_cross_entropy_with_logits(logit, yt.float(), reduction="none")
                * wt[yt]).sum() / wt[yt].sum()

    def evaluate(ep: Epoch) -> dict:
        pv = predict(model, va, ids, pad_id, modalities, device, 2 * bs)
        auc = float(auroc_rows(y[va], pv[None])[0]) if len(va) else math.nan
        return {"epoch": ep.number, "train_loss": ep.train_loss, "valid_loss": _weighted_bce(pv, y[va], w),
                "valid_auroc": 100 * auc if np.isfinite(auc) else math.nan,
                "seconds": round(time.time() - ep.started, 2)}

    loop = train_epochs(model, opt, loss_fn, n_train=len(tr), batch_size=bs, epochs=settings.epochs, seed=seed,
                        evaluate=evaluate, key=lambda h: selection_key(h, settings.select, len(va)),
                        snapshot=model.trainable_state, restore=model.load_trainable_state,
                        grad_clip=settings.grad_clip, clip_params=params)
    history = loop.history
    prob = np.full(len(y), np.nan)                  # training rows are not scored (not needed, saves time)
    scored = np.flatnonzero(splits != "train")
    prob[scored] = predict(model, scored, ids, pad_id, modalities, device, 2 * bs)
    thr = choose_threshold(settings.threshold, y[va], prob[va])
    sel = settings.select if len(va) else "last (no validation rows)"
    if (settings.select == "valid_auroc" and len(va)
            and not np.isfinite(history[loop.best_epoch - 1]["valid_auroc"])):
        sel = "valid_loss (validation AUROC undefined: one class)"
    return {"prob": prob, "threshold": thr, "best_epoch": int(loop.best_epoch), "selected_by": sel,
            "history": history, "class_weights": w.tolist(), "n_trainable": int(sum(p.numel() for p in params))}


def selection_key(h: dict, rule: str, n_valid: int) -> tuple:
    """Larger is better; ties keep the earlier epoch."""
    if rule == "last" or n_valid == 0:
        return (h["epoch"],)
    if rule == "valid_auroc" and np.isfinite(h["valid_auroc"]):
        return (1, h["valid_auroc"], -h["valid_loss"])
    if rule not in ("valid_loss", "valid_auroc"):
        raise ValueError(f"llm_select must be valid_loss, valid_auroc or last, got {rule!r}")
    return (0 if rule == "valid_auroc" else 1, -h["valid_loss"])


# ----------------------------------------------------------------------------------------------- all fits
def data_fingerprint(frame: pd.DataFrame, ids, modalities: Mapping) -> str:
    h = hashlib.sha1()
    h.update(pd.util.hash_pandas_object(frame[["hadm_id", "subject_id", "split", "label"]].astype(str),
                                        index=False).to_numpy().tobytes())
    h.update(json.dumps(ids).encode())
    for m in sorted(modalities):
        e, mk = modalities[m]
        h.update(m.encode() + np.ascontiguousarray(e).tobytes() + np.ascontiguousarray(mk).tobytes())
    return h.hexdigest()[:16]


def prediction_paths(cfg, task: str, system: str, seed: int) -> tuple[Path, Path]:
    d = RunLayout(cfg).llm_predictions(task, system)
    return d / f"seed{seed}.parquet", d / f"seed{seed}.json"


def load_prediction(cfg, task: str, system: str, seed: int, fingerprint: str | None = None):
    """``(frame, meta)`` of a finished fit, or None (absent, or made under another fingerprint)."""
    pq, js = prediction_paths(cfg, task, system, seed)
    if not (pq.is_file() and js.is_file()):
        return None
    meta = json.loads(js.read_text())
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        return None
    return pd.read_parquet(pq), meta


def run_fits(cfg, settings, frame: pd.DataFrame, system: str, inputs: Mapping, lm, tokenizer, device="cpu",
             bar=None, position_limit: int = 512) -> list[tuple[pd.DataFrame, dict]]:
    """Every seed of one (task, system): reuse finished fits with the same fingerprint, fit the rest."""
    task = str(frame["task"].iloc[0])
    mods = inputs["modalities"]
    n_extra = settings.modality_tokens * len(mods)
    budget = min(int(settings.max_length), int(position_limit) - n_extra)
    ids = encode_texts(tokenizer, frame["text"].tolist(), inputs["pair_text"], budget)
    fp = settings.fingerprint(task, system, CODE_VERSION, data_fingerprint(frame, ids, mods),
                              inputs.get("checkpoints", {}), str(getattr(lm, "name_or_path", "")))
    out = []
    for seed in settings.seeds:
        got = load_prediction(cfg, task, system, seed, fp)
        if got is None:
            t0 = time.time()
            r = fit_predict(lm, ids, tokenizer.pad_token_id, frame["label"].to_numpy(), frame["split"].to_numpy(),
                            mods, settings, seed, device)
            pred = frame[["hadm_id", "subject_id", "split", "label"]].assign(prob=r.pop("prob"))
            meta = {**r, "task": task, "system": system, "seed": seed, "fingerprint": fp,
                    "seconds": round(time.time() - t0, 1), "device": str(device), "text_tokens_budget": budget,
                    "n_extra_tokens": n_extra, "truncated_rows": int(sum(len(i) >= budget for i in ids)),
                    "settings": settings.as_dict()}
            pq, js = prediction_paths(cfg, task, system, seed)
            write_parquet_atomic(pred.astype({"hadm_id": "int64"}), pq)
            write_json_atomic(js, meta)
            got = (pred, meta)
        out.append(got)
        if bar is not None:
            bar.update(1)
    return out


def resolve_device(device=None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_bar(total: int, settings):
    return progress(total=total, enabled=settings.show_progress, desc="Table 4 fine-tuning (task x row x seed)")
