"""The shared fine-tuning loop (medbind_lib.finetune.train_epochs) on tiny problems: the best epoch's weights are
restored, patience stops the fit, ties keep the earlier epoch, the batch order follows the seed only, and the
two callers' selection keys (MEDCSP's ``valid_criterion``, lower is better; Table 4's ``selection_key``, larger
is better) pick the epochs they should. Scripted validation records are the references; runs in seconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from medbind_lib import finetune as FT
from medbind_lib.llm import train as llm_train

pytestmark = pytest.mark.usefixtures("one_thread")


def scripted(records, *, n=12, batch_size=4, epochs=None, patience=None, minimize=True, key=None, seed=0,
             lr=0.1, grad_clip=None):
    """A 1-weight linear model trained with SGD on random rows; ``evaluate`` returns ``records[epoch - 1]`` and
    remembers the weights of every epoch. Returns (loop result, weights per epoch, final weights, batches)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(n, 3), torch.randn(n)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    weights, batches = {}, []

    def loss_fn(b):
        batches.append(b.clone())
        return ((model(x[b]).squeeze(1) - y[b]) ** 2).mean()

    def evaluate(ep):
        weights[ep.number] = model.weight.detach().clone()
        return records[ep.number - 1]

    res = FT.train_epochs(model, opt, loss_fn, n_train=n, batch_size=batch_size,
                          epochs=len(records) if epochs is None else epochs, seed=seed, evaluate=evaluate,
                          key=key or (lambda r: r), minimize=minimize, patience=patience,
                          snapshot=lambda: FT.state_snapshot(model), restore=model.load_state_dict,
                          grad_clip=grad_clip, clip_params=list(model.parameters()))
    return res, weights, model.weight.detach().clone(), batches


def test_best_epoch_restored_and_patience_stops():
    losses = [(0.5,), (0.3,), (0.4,), (0.35,), (0.2,), (0.1,)]
    r, w, final, _ = scripted(losses, patience=2)
    assert (r.best_epoch, r.epochs_run) == (2, 4)                   # epochs 3 and 4 no better: stop after 4
    assert torch.equal(final, w[2]) and not torch.equal(final, w[4])  # epoch 2's weights, not the last ones
    assert r.best_key == (0.3,) and r.history == losses[:4]
    r, w, final, _ = scripted(losses, patience=None)                # no early stop: every epoch runs
    assert (r.best_epoch, r.epochs_run) == (6, 6) and torch.equal(final, w[6])


def test_ties_keep_the_earlier_epoch_in_both_directions():
    r, w, final, _ = scripted([(1.0,), (0.5,), (0.5,)], minimize=True)
    assert r.best_epoch == 2 and torch.equal(final, w[2])
    r, w, final, _ = scripted([(1.0,), (2.0,), (2.0,)], minimize=False)
    assert r.best_epoch == 2 and torch.equal(final, w[2])


def test_no_evaluated_epoch_keeps_the_last():
    r, w, final, _ = scripted([None, None, None], patience=1)
    assert (r.best_epoch, r.epochs_run, r.best_key, r.history) == (3, 3, None, [])
    assert torch.equal(final, w[3])


def test_batch_order_follows_the_seed_only():
    _, _, _, a = scripted([(1.0,), (0.5,)], n=10, batch_size=4, seed=7)
    torch.manual_seed(123)                                           # the global RNG does not matter
    _, _, _, b = scripted([(1.0,), (0.5,)], n=10, batch_size=4, seed=7)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and len(a) == len(b) == 6
    gen = torch.Generator().manual_seed(7)
    expected = [c for _ in range(2) for c in torch.randperm(10, generator=gen).split(4)]
    assert all(torch.equal(u, v) for u, v in zip(a, expected))
    for epoch in (a[:3], a[3:]):                                     # every row once per epoch
        assert sorted(torch.cat(epoch).tolist()) == list(range(10))
    _, _, _, c = scripted([(1.0,), (0.5,)], n=10, batch_size=4, seed=8)
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_grad_clip_bounds_each_step():
    _, w, _, _ = scripted([(1.0,)], n=4, batch_size=4, lr=1.0, grad_clip=1e-3)
    torch.manual_seed(0)
    w0 = nn.Linear(3, 1).weight.detach()                             # the same initialisation as ``scripted``
    assert 0 < (w[1] - w0).norm() <= 1e-3 + 1e-7


def test_medcsp_key_valid_criterion():
    """MEDCSP: lower is better; valid_auroc ranks by -AUROC then loss, loss alone where AUROC is undefined."""
    y = np.array([0, 1, 0, 1])
    good, bad = np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.6, 0.4, 0.7, 0.3])
    assert FT.valid_criterion(good, y, "valid_auroc")[0] == -1.0
    assert FT.valid_criterion(good, y, "valid_auroc") < FT.valid_criterion(bad, y, "valid_auroc")
    assert len(FT.valid_criterion(good, y, "valid_loss")) == 1
    one = np.zeros(4, int)                                           # one class: AUROC undefined -> 0.0, loss decides
    a = FT.valid_criterion(np.full(4, 0.1), one, "valid_auroc")
    b = FT.valid_criterion(np.full(4, 0.4), one, "valid_auroc")
    assert a[0] == b[0] == 0.0 and a < b
    recs = [FT.valid_criterion(p, y, "valid_auroc") for p in (bad, good, good, bad)]
    r, w, final, _ = scripted(recs, minimize=True, patience=2)
    assert (r.best_epoch, r.epochs_run) == (2, 4) and torch.equal(final, w[2])


def test_table4_key_selection_key():
    """Table 4: larger is better; valid_auroc (then -loss), valid_loss, last; undefined AUROC falls to the loss."""
    hist = [{"epoch": e, "valid_auroc": a, "valid_loss": v}
            for e, a, v in ((1, 70.0, 0.60), (2, 80.0, 0.65), (3, 80.0, 0.55), (4, 75.0, 0.50))]
    for rule, best in (("valid_auroc", 3), ("valid_loss", 4), ("last", 4)):
        r, w, final, _ = scripted(hist, minimize=False, key=lambda h, rule=rule: llm_train.selection_key(h, rule, 8))
        assert r.best_epoch == best and r.epochs_run == 4 and torch.equal(final, w[best]), rule
    nan = [dict(h, valid_auroc=math.nan) for h in hist[:3]]
    r, *_ = scripted(nan, minimize=False, key=lambda h: llm_train.selection_key(h, "valid_auroc", 8))
    assert r.best_epoch == 3                                         # lowest loss
    r, *_ = scripted(hist, minimize=False, key=lambda h: llm_train.selection_key(h, "valid_auroc", 0))
    assert r.best_epoch == 4                                         # no validation rows: the last epoch
    with pytest.raises(ValueError, match="llm_select"):
        llm_train.selection_key(hist[0], "accuracy", 8)


def test_fit_predict_runs_through_the_shared_loop(monkeypatch):
    from transformers import BertConfig, BertModel

    from medbind_lib.config import load_profile
    from medbind_lib.llm import llm_settings

    calls = []

    def spy(*a, **kw):
        calls.append(kw)
        return FT.train_epochs(*a, **kw)

    monkeypatch.setattr(llm_train, "train_epochs", spy)
    torch.manual_seed(0)
    lm = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=16, max_position_embeddings=16), add_pooling_layer=False).eval()
    n = 16
    y = np.arange(n) % 2
    splits = np.array(["train"] * 8 + ["valid"] * 4 + ["test"] * 4)
    s = llm_settings(load_profile("smoke"), epochs=2, batch_size=4, lr=1e-2, lora_r=2, lora_alpha=4, seeds=(0,))
    r = llm_train.fit_predict(lm, [[1, 5, 2]] * n, 0, y, splits, {}, s, seed=0)
    assert len(calls) == 1 and calls[0].get("patience") is None and calls[0]["n_train"] == 8
    assert len(r["history"]) == 2 and r["best_epoch"] in (1, 2)
