"""Yang and Wu's eight (models.yang_wu): the eight named as their code names them, the gate checked by hand and per
row, stays and missing notes masked, and the rows' place in notebook 10 (readmission only)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medbind_lib import registry
from medbind_lib.medcsp import task_models as TM
from medbind_lib.medcsp.task_inputs import TaskInputs, TaskSettings, yang_wu_inputs
from medbind_lib.models.yang_wu import VARIANTS, Gate, StarTransformer, YangWu
from medbind_lib.reports.ehr_tasks import _rows_for

N, S, T, C, DS, DN = 4, 3, 5, 6, 3, 7


def _x(seed=0):
    g = torch.Generator().manual_seed(seed)
    stays = torch.tensor([[True, True, False], [True, False, False], [False, False, False], [True, True, True]])
    return (torch.randn(N, S, T, C, generator=g), stays, torch.randn(N, DS, generator=g),
            torch.randn(N, DN, generator=g), torch.tensor([True, False, True, True]))


def test_the_eight_are_their_models():
    assert sorted(VARIANTS) == sorted(["MBertLstm", "MLstmBert", "MBertStar", "MStarBert", "MBertEncoder",
                                       "MEncoderBert", "MBertCnn", "MCnnBert"])
    assert VARIANTS["MBertStar"] == ("star", "note") and VARIANTS["MCnnBert"] == ("cnn", "ts")
    assert sorted(TM.YANG_WU_ROWS.values()) == sorted(VARIANTS)
    assert set(TM.YANG_WU_ROWS) <= set(registry.table_rows("ehr_tasks"))
    rows = registry.table_rows("ehr_tasks")
    assert set(TM.YANG_WU_ROWS) <= set(_rows_for("readmission", rows))
    assert not set(TM.YANG_WU_ROWS) & set(_rows_for("mortality", rows))
    with pytest.raises(ValueError):
        YangWu("MBertGru", C, DS, DN)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_model_runs_and_masks(name):
    torch.manual_seed(0)
    m = YangWu(name, C, DS, DN, hidden=16, head_hidden=8, dropout=0.0).eval()
    x = _x()
    y = m(x)
    assert y.shape == (N,) and torch.isfinite(y).all()
    # row 2 has no stay: its time-series summary is zeros whatever its tensor holds
    t = x[0].clone()
    t[2] = 1e3
    assert torch.equal(m.encode_series(t, x[1])[2], torch.zeros(16))
    # row 1 has no note: its note features never reach the output
    note = x[3].clone()
    note[1] = 1e3
    assert torch.allclose(m(x)[1], m((x[0], x[1], x[2], note, x[4]))[1])
    # a row's output does not depend on the other rows of its batch
    alone = m(tuple(v[3:4] for v in x))
    assert torch.allclose(alone, y[3:4], atol=1e-5)


def test_mean_over_stays():
    torch.manual_seed(1)
    m = YangWu("MLstmBert", C, DS, DN, hidden=8).eval()
    one = torch.randn(1, S, T, C)
    one[0, 1] = one[0, 0]
    a = m.encode_series(one, torch.tensor([[True, False, False]]))
    b = m.encode_series(one, torch.tensor([[True, True, False]]))
    assert torch.allclose(a, b, atol=1e-6)                     # two identical stays = that stay


def test_gate_by_hand():
    torch.manual_seed(2)
    g = Gate(4, dropout=0.0).eval()
    with torch.no_grad():
        g.beta.fill_(0.3)
    m, a, b = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    P = {k: v.detach().numpy().astype(np.float64) for k, v in g.named_parameters()}
    M, A, B = (v.numpy().astype(np.float64) for v in (m, a, b))
    sig = lambda z: 1 / (1 + np.exp(-z))                                                   # noqa: E731
    ga = sig(np.concatenate([M, A], 1) @ P["w_a.weight"].T + P["w_a.bias"])
    gb = sig(np.concatenate([M, B], 1) @ P["w_b.weight"].T + P["w_b.bias"])
    H = np.concatenate([ga * A, gb * B], 1) @ P["w_h.weight"].T + P["w_h.bias"]
    alpha = np.minimum(0.3 * np.linalg.norm(M, axis=1, keepdims=True) / np.linalg.norm(H, axis=1, keepdims=True), 1)
    z = M + alpha * H
    ref = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-5) * P["norm.weight"] + P["norm.bias"]
    np.testing.assert_allclose(g(m, a, b).detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_star_transformer_relay_and_shape():
    torch.manual_seed(3)
    st = StarTransformer(8, 2, cycles=2).eval()
    e = torch.randn(2, 5, 8)
    out = st(e)
    assert out.shape == (2, 8) and torch.isfinite(out).all()
    assert not torch.allclose(st(e.flip(1)), out)               # order matters (neighbours), not a bag of steps


def test_yang_wu_inputs_keep_the_note_apart():
    frame = pd.DataFrame({"subject_id": ["1", "2"], "hadm_id": [10, 11], "label": [0, 1], "split": ["train"] * 2})
    arrays = {"temporal": np.zeros((2, S, T, C), np.float32), "demo": np.ones((2, 2), np.float32),
              "icd": np.zeros((2, 3), np.float32), "drug": np.ones((2, 1), np.float32)}
    present = {"temporal": np.array([True, False]), "note": np.array([True, False]), "demo": np.ones(2, bool),
               "icd": np.array([False, False]), "drug": np.array([True, True])}
    ti = TaskInputs("readmission", frame, ("temporal", "note", "demo", "icd", "drug"), arrays,
                    np.array([[True, False, False], [False, False, False]]), ["a note", None], present)
    t, stays, static, note, has = yang_wu_inputs(ti, np.full((2, 4), 0.5, np.float32))
    assert static.shape == (2, 2 + 3 + 1 + 4) and note.shape == (2, 4) and has.tolist() == [True, False]
    s = TaskSettings(fiddle_hidden=8, head_hidden=4, star_cycles=1)
    m, params = TM.yang_wu("yw_bert_star", (t, stays, static, note, has), s, seed=0)
    assert isinstance(m, YangWu) and params is None and m.series.net.cycles == 1
