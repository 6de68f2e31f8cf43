"""Notebook 10's progress bar moves with every optimizer step (not once per fit), and ends exactly at its total:
a fine-tuned encoder's fit takes minutes on a CPU, and a bar over fits showed the heads' "00:10 left" meanwhile."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from medbind_lib import finetune as FT
from medbind_lib.models.fiddle import HeadOnly
from medbind_lib.reports import ehr_tasks as ET


class _Bar:
    def __init__(self):
        self.n, self.ticks, self.labels = 0, 0, []

    def update(self, k=1):
        self.n += k
        self.ticks += k == 1

    def set_postfix_str(self, s, refresh=True):
        self.labels.append(s)


def _problem(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] > 0).numpy().astype(np.float32)
    return x, y


def test_on_step_is_called_once_per_optimizer_step():
    x, y = _problem()
    calls = []
    r = FT.fit_classifier(HeadOnly(3, 8, 0.0), x, y, np.arange(30), np.arange(30, 40), lr=0.01, batch_size=8,
                          epochs=3, patience=3, on_step=lambda: calls.append(1))
    assert len(calls) == r.epochs_run * math.ceil(30 / 8)


def test_fit_row_bar_ticks_per_step_and_ends_at_the_budget():
    x, y = _problem(60)
    ti = SimpleNamespace(y=y, rows_of=lambda split: {"train": np.arange(40), "valid": np.arange(40, 50),
                                                     "test": np.arange(50, 60)}[split])
    s = SimpleNamespace(epochs=4, patience=1, weight_decay=0.0, early_stop="valid_loss", seed=0, runs=2,
                        grid=[(0.01, 8), (0.01, 16)])

    def make(seed):
        torch.manual_seed(seed)
        return HeadOnly(3, 8, 0.0), None

    spec = ET._Row(x, make, "x")
    bar = _Bar()
    ET._fit_row("t", "r", spec, ti, s, bar)
    budget = ET._step_budget(40, 8, s) + ET._step_budget(40, 16, s) + ET._step_budget(40, 8, s)
    assert bar.n == budget                                   # early-stopped steps are added at each fit's end
    assert bar.ticks >= 3 * math.ceil(40 / 16)               # at least one epoch of single-step ticks per fit
    assert bar.labels[0] == "t r grid lr=0.01 bs=8" and bar.labels[-1] == "t r run 2/2"
