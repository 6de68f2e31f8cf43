"""RAIM and DCMN (models.ehr_baselines): shapes, a stay-less row, RAIM's causal multi-channel guided attention checked
by hand, DCMN's memory read checked by hand, and the rows' place in notebook 10 (in-ICU tasks only)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medbind_lib import registry
from medbind_lib.medcsp import task_models as TM
from medbind_lib.medcsp.task_inputs import ICU_TASKS, TaskSettings
from medbind_lib.models.ehr_baselines import DCMN, RAIM, first_stay, memory_read
from medbind_lib.reports.ehr_tasks import _rows_for

N, S, T, C, DS = 5, 1, 6, 8, 3          # C = 4 values + 4 observed flags


def _x(seed=0, stays=None):
    g = torch.Generator().manual_seed(seed)
    temporal = torch.randn(N, S, T, C, generator=g)
    temporal[..., C // 2:] = (temporal[..., C // 2:] > 0).float()               # observed flags are 0/1
    st = torch.ones(N, S, dtype=torch.bool) if stays is None else stays
    return temporal, st, torch.randn(N, DS, generator=g)


@pytest.mark.parametrize("cls", [RAIM, DCMN])
def test_shapes_gradients_and_a_row_without_a_stay(cls):
    torch.manual_seed(0)
    m = cls(C, DS, hidden=7, head_hidden=5, dropout=0.0)
    temporal, stays, static = _x()
    y = m((temporal, stays, static))
    assert y.shape == (N,) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    stays[0, 0] = False                                # a row without a stay reads an all-missing (zero) stay
    garbage = temporal.clone()
    garbage[0] = 1e3
    m.eval()
    a, b = m((temporal, stays, static)), m((garbage, stays, static))
    assert torch.allclose(a, b)
    assert torch.equal(first_stay(garbage, stays)[0], torch.zeros(T, C))


def test_raim_is_causal():
    torch.manual_seed(1)
    m = RAIM(C, DS, hidden=6).eval()
    temporal, stays, _ = _x(1)
    later = temporal.clone()
    later[:, :, -1] += 5.0                                  # change the last step only
    h1, h2 = m.states(first_stay(temporal, stays)), m.states(first_stay(later, stays))
    assert torch.allclose(h1[:, :-1], h2[:, :-1]) and not torch.allclose(h1[:, -1], h2[:, -1])


def test_raim_attention_step_by_hand():
    """One step of the guided multi-channel attention, recomputed with numpy from the module's weights."""
    torch.manual_seed(2)
    m = RAIM(C, DS, hidden=4).eval()
    with torch.no_grad():
        m.att_w.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    seq = first_stay(*_x(2)[:2])
    h = torch.randn(N, 4)
    i = 3
    e, pre = m.embed(seq)
    ctx, alpha = m.attend(e, pre, h, i)
    P = {k: v.detach().numpy().astype(np.float64) for k, v in m.named_parameters()}
    v, f = seq[..., :C // 2].numpy(), seq[..., C // 2:].numpy()
    relu = lambda z: np.maximum(z, 0)                                                  # noqa: E731
    e_np = relu(v @ P["embed_v.weight"].T + P["embed_v.bias"]) + relu(f @ P["embed_m.weight"].T + P["embed_m.bias"])
    u = np.tanh(e_np @ P["att_x.weight"].T + f @ P["att_g.weight"].T
                + (h.numpy() @ P["att_h.weight"].T + P["att_h.bias"])[:, None])[:, :i + 1]
    s = u * P["att_w"]
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)                                # softmax over steps 0..i, per channel
    np.testing.assert_allclose(alpha.detach().numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ctx.detach().numpy(), (w * e_np[:, :i + 1]).sum(1), rtol=1e-5, atol=1e-6)
    assert np.allclose(w.sum(1), 1.0) and not np.allclose(w[:, :, 0], w[:, :, 1])   # one softmax per channel


def test_raim_guidance_moves_the_attention():
    """The discrete-event (observed flag) channels enter every score: flipping a past step's flags changes the
    weights even where the values stay the same."""
    torch.manual_seed(3)
    m = RAIM(C, DS, hidden=4).eval()
    seq = first_stay(*_x(3)[:2])
    other = seq.clone()
    other[:, 1, C // 2:] = 1 - other[:, 1, C // 2:]
    h = torch.zeros(N, 4)
    a1 = m.attend(*m.embed(seq), h, 4)[1]
    a2 = m.attend(*m.embed(other), h, 4)[1]
    assert not torch.allclose(a1, a2)


def test_memory_read_by_hand():
    torch.manual_seed(4)
    k, v = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    mem, q = torch.randn(2, 4, 3), torch.randn(2, 3)
    out = memory_read(mem, q, k, v).detach().numpy()
    K, V = k(mem).detach().numpy(), v(mem).detach().numpy()
    sc = np.einsum("njd,nd->nj", K, q.numpy()) / math.sqrt(3)
    p = np.exp(sc - sc.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("nj,njd->nd", p, V), rtol=1e-5, atol=1e-6)


def test_dcmn_static_memory_and_hops():
    torch.manual_seed(5)
    m = DCMN(C, DS, hidden=4, hops=2).eval()
    temporal, stays, static = _x(5)
    mem_t, q_t, mem_s = m.memories(temporal, stays, static)
    assert mem_t.shape == (N, T, 4) and q_t.shape == (N, 4) and mem_s.shape == (N, DS, 4)
    # slot j = x_j E_j + b_j: a zero static feature leaves only its bias
    z = static.clone()
    z[:, 1] = 0
    assert torch.allclose(m.memories(temporal, stays, z)[2][:, 1], m.slot_b[1].expand(N, 4))
    one = DCMN(C, DS, hidden=4, hops=1).eval()
    one.load_state_dict(m.state_dict())
    assert not torch.allclose(one((temporal, stays, static)), m((temporal, stays, static)))   # hops matter
    with pytest.raises(ValueError, match="hops"):
        DCMN(C, DS, hops=0)


def test_rows_registered_for_the_in_icu_tasks_only():
    assert {"raim", "dcmn"} <= set(registry.table_rows("ehr_tasks"))
    rows = registry.table_rows("ehr_tasks")
    for t in ICU_TASKS:
        assert {"raim", "dcmn"} <= set(_rows_for(t, rows))
    assert not {"raim", "dcmn"} & set(_rows_for("readmission", rows))
    s = TaskSettings(fiddle_hidden=6, head_hidden=5, dcmn_hops=2)
    x = _x()
    m, params = TM.icu_baseline("dcmn", x, s, seed=0)
    assert isinstance(m, DCMN) and m.hops == 2 and params is None
    a, _ = TM.icu_baseline("raim", x, s, seed=3)
    b, _ = TM.icu_baseline("raim", x, s, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))     # the seed decides the init
    with pytest.raises(ValueError):
        TM.icu_baseline("retain", x, s, seed=0)
