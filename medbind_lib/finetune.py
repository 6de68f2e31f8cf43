"""Supervised fine-tuning with the best epoch chosen on the validation split: ONE epoch loop
(``train_epochs``) shared by MEDCSP's EHR-task heads (notebook 10, ``fit_classifier`` below) and Table 4's LoRA
fits (notebook 07, ``llm.train.fit_predict``), plus the EHR tasks' grid search over (lr, batch size).

Why a module of its own, beside ``trainer`` (the pre-training loop): the two downstream fits are the same
procedure - shuffle, mini-batch steps, score the validation split after every epoch, keep the best epoch's
weights - and were two copies of it. It imports only torch / numpy / pandas and ``metrics``; the callers own
everything task-specific and hand it in.

``train_epochs`` holds the shared skeleton: per epoch ``module.train()``, ONE ``torch.randperm`` of the training
rows from a ``torch.Generator`` seeded with ``seed`` (the batch order; independent of the global RNG),
mini-batches of ``batch_size`` in that order, each ``loss_fn(batch)`` -> ``zero_grad`` / ``backward`` /
(``clip_grad_norm_``) / ``step``; then ``evaluate(epoch)`` scores the validation rows (None: nothing to select
on, e.g. no validation rows), ``key(record)`` ranks the epoch (strict improvement only: a tie keeps the earlier
epoch), ``snapshot()`` keeps the best epoch's weights, and ``patience`` epochs without improvement end the fit;
at the end ``restore(best)``. Without any evaluated epoch the last epoch is kept.

What each caller passes (the parts that differ; kept there so each keeps its own random stream and arithmetic
bit for bit):

- the model, built AND seeded by the caller before the loop: MEDCSP seeds torch only (``torch.manual_seed``,
  ``medcsp.task_models``), Table 4 seeds everything (``runtime.seed_everything``: Python, numpy, torch), so one
  shared seeding call would change one of the two streams;
- the optimizer (AdamW over one parameter list vs. two weight-decay groups) and ``grad_clip`` (Table 4 only);
- ``loss_fn``: the batching/collate and the loss (BCE on tensor rows vs. class-weighted BCE on padded tokens;
  the class weights live in the caller's closure);
- ``evaluate`` and ``key``: MEDCSP ranks by ``valid_criterion`` (lower is better, ``minimize=True``), Table 4 by
  ``llm.train.selection_key`` (larger is better); ``snapshot`` / ``restore``: the full state dict vs. the
  trainable tensors only; ``patience``: MEDCSP stops early, Table 4 runs every epoch (``patience=None``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .metrics.binary import binary_metrics

__all__ = ["Epoch", "LoopResult", "train_epochs", "state_snapshot", "take", "predict", "FitResult",
           "valid_criterion", "fit_classifier", "select_setting", "grid_search"]


# ----------------------------------------------------------------------------------------------------
# the shared epoch loop
# ----------------------------------------------------------------------------------------------------
@dataclass
class Epoch:
    """One finished training epoch, as ``evaluate`` sees it: its number (1-based), its start (``time.time()``)
    and the detached loss of every step."""

    number: int
    started: float
    losses: list = field(default_factory=list)

    @property
    def train_loss(self) -> float:
        """Mean step loss (each step's loss as a Python float, as ``loss.item()`` gives it)."""
        return float(np.mean([v.item() for v in self.losses]))


@dataclass
class LoopResult:
    """``best_epoch`` (the restored one; the last epoch run when none was evaluated), ``epochs_run``,
    ``best_key`` and ``history`` (every non-None record of ``evaluate``, in epoch order)."""

    best_epoch: int
    epochs_run: int
    best_key: Any = None
    history: list = field(default_factory=list)


def state_snapshot(module: nn.Module) -> dict:
    """A detached copy of the full state dict (restore with ``module.load_state_dict``)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _improves(key, best, minimize: bool) -> bool:
    if best is None:
        return True
    return key < best if minimize else key > best


def train_epochs(module: nn.Module, optimizer, loss_fn: Callable[[torch.Tensor], torch.Tensor], *, n_train: int,
                 batch_size: int, epochs: int, seed: int, evaluate: Callable[[Epoch], Any],
                 key: Callable[[Any], Any], snapshot: Callable[[], Any], restore: Callable[[Any], Any],
                 minimize: bool = False, patience: Optional[int] = None, grad_clip: Optional[float] = None,
                 clip_params: Optional[Sequence] = None, on_step: Optional[Callable[[], Any]] = None) -> LoopResult:
    """Train ``module`` for at most ``epochs`` epochs and end with its best epoch's weights (module docstring).

    ``loss_fn(batch)`` gets a LongTensor of positions ``0..n_train-1`` (one slice of the epoch's permutation)
    and returns the batch loss; ``evaluate(epoch)`` returns the epoch's record or None; ``key(record)`` its rank
    (``minimize``: lower is better; else larger); ``patience=None`` never stops early; ``grad_clip`` (truthy)
    clips the norm of ``clip_params`` before each step; ``on_step()`` is called after every optimizer step (a
    progress bar that moves during a long fit, not only at its end)."""
    gen = torch.Generator().manual_seed(int(seed))
    best_key, best_state, best_epoch, stale, epoch, history = None, None, 0, 0, 0, []
    for epoch in range(1, int(epochs) + 1):
        module.train()
        ep = Epoch(epoch, time.time())
        for b in torch.randperm(int(n_train), generator=gen).split(int(batch_size)):
            loss = loss_fn(b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
            optimizer.step()
            ep.losses.append(loss.detach())
            if on_step is not None:
                on_step()
        record = evaluate(ep)
        if record is None:
            continue
        history.append(record)
        k = key(record)
        if _improves(k, best_key, minimize):
            best_key, best_epoch, stale = k, epoch, 0
            best_state = snapshot()
        else:
            stale += 1
            if patience is not None and stale >= patience:
                break
    if best_state is not None:
        restore(best_state)
    else:
        best_epoch = epoch
    return LoopResult(best_epoch, epoch, best_key, history)


# ----------------------------------------------------------------------------------------------------
# MEDCSP's task heads: a binary classifier on rows of tensors (or of a row container such as TaskInputs)
# ----------------------------------------------------------------------------------------------------
def take(x, idx):
    """Rows ``idx`` of a row model's input: a tensor, a tuple of tensors or a row container with a ``take``
    method (``medcsp.task_inputs.TaskInputs``, given numpy positions)."""
    if not isinstance(x, (tuple, torch.Tensor, np.ndarray)):
        return x.take(idx.numpy() if torch.is_tensor(idx) else idx)
    if not torch.is_tensor(idx):
        idx = torch.as_tensor(np.asarray(idx, np.int64))
    if isinstance(x, tuple):
        return tuple(v[idx] for v in x)
    return x[idx]


def _n(x) -> int:
    if isinstance(x, tuple):
        return len(x[0])
    return x.shape[0] if isinstance(x, (torch.Tensor, np.ndarray)) else len(x)


@torch.no_grad()
def predict(module: nn.Module, x, batch_size: int = 512) -> np.ndarray:
    """Probabilities [n] in eval mode (batched: a fine-tuned row encodes its inputs)."""
    was = module.training
    module.eval()
    n = _n(x)
    out = [torch.sigmoid(module(take(x, np.arange(s, min(s + batch_size, n))))).float().cpu()
           for s in range(0, n, batch_size)]
    module.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return float("nan")
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass
class FitResult:
    """One fit: its setting, the epoch kept and its validation scores (AUROC NaN when one class)."""

    lr: float
    batch_size: int
    seed: int
    best_epoch: int
    epochs_run: int
    valid_auroc: float
    valid_loss: float
    seconds: float
    module: Optional[nn.Module] = field(default=None, repr=False)


def valid_criterion(p: np.ndarray, y: np.ndarray, early_stop: str) -> tuple:
    """Lower is better: (-AUROC, loss) for valid_auroc (loss alone where AUROC is undefined), (loss,) else."""
    loss = _bce(p, y)
    if early_stop == "valid_auroc":
        auc = binary_metrics(y, p)[0]
        return (-auc if np.isfinite(auc) else 0.0, loss)
    return (loss,)


def fit_classifier(module: nn.Module, x, y: np.ndarray, train_idx, valid_idx, *, lr: float, batch_size: int,
                   epochs: int, patience: int, weight_decay: float = 0.01, seed: int = 0,
                   early_stop: str = "valid_loss", params: Optional[list] = None,
                   on_step: Optional[Callable[[], Any]] = None) -> FitResult:
    """AdamW + BCE on the training rows, shuffled by ``seed``; after every epoch the validation rows are scored
    and the best epoch's weights are kept (``early_stop``: ``valid_criterion``); training stops after
    ``patience`` epochs without improvement. Without validation rows the last epoch is kept. ``module`` ends
    with the kept weights (``train_epochs`` with the full state dict). ``on_step``: ``train_epochs``'."""
    t0 = time.perf_counter()
    y = np.asarray(y, np.float32)
    xt, yt = take(x, train_idx), torch.from_numpy(y[np.asarray(train_idx, np.int64)])
    xv, yv = take(x, valid_idx), y[np.asarray(valid_idx, np.int64)]
    params = params if params is not None else [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def loss_fn(b: torch.Tensor) -> torch.Tensor:
        logits = module(take(xt, b))
        return F.binary_cross_entropy_with_logits(logits, yt[b].to(logits.device))

    def evaluate(_: Epoch) -> Optional[tuple]:
        return valid_criterion(predict(module, xv), yv, early_stop) if len(yv) else None

    loop = train_epochs(module, opt, loss_fn, n_train=len(yt), batch_size=batch_size, epochs=epochs, seed=seed,
                        evaluate=evaluate, key=lambda score: score, minimize=True, patience=patience,
                        snapshot=lambda: state_snapshot(module), restore=module.load_state_dict, on_step=on_step)
    pv = predict(module, xv) if len(yv) else np.zeros(0)
    auc = binary_metrics(yv, pv)[0] if len(yv) else float("nan")
    return FitResult(float(lr), int(batch_size), int(seed), loop.best_epoch, loop.epochs_run, float(auc),
                     _bce(pv, yv), time.perf_counter() - t0, module)


# ----------------------------------------------------------------------------------------------------
# the EHR tasks' grid over (lr, batch size)
# ----------------------------------------------------------------------------------------------------
def select_setting(grid: pd.DataFrame) -> tuple[float, int]:
    """The (lr, batch_size) with the highest validation AUROC; validation loss breaks ties and decides where
    every AUROC is undefined (a validation split with one class); then the grid's order."""
    g = grid.reset_index(drop=True)
    auc = g["valid_auroc"].astype(float).fillna(-np.inf)
    loss = g["valid_loss"].astype(float).fillna(np.inf)
    order = np.lexsort((np.arange(len(g)), loss.to_numpy(), -auc.to_numpy()))
    i = int(order[0])
    return float(g.loc[i, "lr"]), int(g.loc[i, "batch_size"])


def grid_search(fit_fn: Callable[[float, int, int], FitResult], grid: Sequence[tuple[float, int]],
                seed: int) -> tuple[pd.DataFrame, dict]:
    """``fit_fn(lr, batch_size, seed)`` for every setting (seed fixed); returns the grid's validation scores and
    the fits by setting (the chosen one is reused as run 0)."""
    fits, rows = {}, []
    for lr, bs in grid:
        r = fit_fn(lr, bs, seed)
        fits[(float(lr), int(bs))] = r
        rows.append({"lr": float(lr), "batch_size": int(bs), "valid_auroc": r.valid_auroc,
                     "valid_loss": r.valid_loss, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                     "seconds": r.seconds})
    return pd.DataFrame(rows), fits
