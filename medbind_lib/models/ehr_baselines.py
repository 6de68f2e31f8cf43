"""MEDCSP's supervised baselines of the in-ICU tasks beside F-LSTM / F-CNN (MEDCSP 4.2.2, Figure 5): RAIM and DCMN,
trained from scratch on the same inputs (the stay's time-binned tensor: values, then observed flags; and the
demographics). X is ``task_inputs.fiddle_inputs``'s (temporal [n, S, T, C], stays [n, S] bool, static [n, d_s]);
an in-ICU row has one stay (its first ICU stay), and a row without one reads an all-missing stay (zeros).

RAIM (Xu et al., KDD 2018, "RAIM: Recurrent Attentive and Intensive Model of Multimodal Patient Monitoring Data"):
an LSTM whose input at step i is an attention summary of the steps up to i. The attention is multi-channel (one
softmax over time per embedding channel) and guided by the discrete clinical events: the paper's continuous
monitoring stream is our value channels, its discrete events (lab tests, interventions) our observed-indicator
channels, which enter every attention score (``W_g m_t``). Score of channel c at step t, state h:
``u = tanh(W_x e_t + W_g m_t + W_h h)``, ``s[t, c] = w_c u[c]``, ``alpha[:, c] = softmax over t <= i``, context
``sum_t alpha[t, c] e_t[c]`` with ``e_t = ReLU(W_v v_t) + ReLU(W_m m_t)``. Open choices: the embedding and hidden size
(``medcsp_task_fiddle_hidden``, as the F-models), attention over the whole prefix (the paper attends over a window
of recent steps; 48 hourly bins are short), static data by late fusion (ReLU(Linear(static)) joined to the last state
before the shared head: RAIM has no static input). Where the MEDCSP/MedHMP group's implementation
(XiaochenWang-PSU/MedHMP, ``stay_admission/baseline.py``, ``Raim``) differs: a GRU cell, one softmax over time (not
per channel) whose scores also cover the zero-padded future steps, guidance from a zero-sum test on an embedded
channel of the second stream, the static vector added to the last state. Ours keeps the paper's LSTM, per-channel
attention and guidance, and never attends to the future.

DCMN (Feng et al., ICDM 2019, "DCMN: Double Core Memory Network for Patient Outcome Prediction with Multimodal
Data"): two memories, one of the temporal stream (the LSTM states of the stay) and one of the static data (one slot
per static feature, ``x_j E_j + b_j``), each read by a query from the OTHER stream (their interaction: the static
summary queries the temporal memory, the last LSTM state the static memory), with scaled dot-product attention and
a gated residual ``o = g * read + (1 - g) * q``, ``g = sigmoid(W q)``; ``medcsp_dcmn_hops`` hops, each stream's next
query being what it read. Summary ``[o_T ; o_S]`` into the shared head. Where MedHMP's ``DCMN`` differs: both memories
are LSTM outputs of two time-series streams (per-step conv embeddings), unscaled dot products, one hop, static data
added at the output; ours gives the static data its memory, as the paper's "double core" of temporal and static data.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .fiddle import MLPHead

__all__ = ["RAIM", "DCMN", "first_stay"]


def first_stay(temporal: torch.Tensor, stays: torch.Tensor) -> torch.Tensor:
    """[n, T, C]: each row's first present stay, zeros (all missing) for a row without one."""
    return temporal[:, 0].masked_fill(~stays[:, 0, None, None], 0.0)


class _Static(nn.Module):
    """ReLU(Linear(static)) (a zero column where there is no static input)."""

    def __init__(self, static_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(max(int(static_dim), 1), hidden), nn.ReLU())

    def forward(self, static: torch.Tensor) -> torch.Tensor:
        return self.net(static if static.shape[1] else static.new_zeros(len(static), 1))


class RAIM(nn.Module):
    """RAIM (module docstring): ``in_features`` = values + observed flags (the first half are the values)."""

    def __init__(self, in_features: int, static_dim: int, hidden: int = 64, head_hidden: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        c, d = int(in_features) // 2, int(hidden)
        self.n_values, self.hidden = c, d
        self.embed_v, self.embed_m = nn.Linear(c, d), nn.Linear(int(in_features) - c, d)
        self.att_x, self.att_g = nn.Linear(d, d, bias=False), nn.Linear(int(in_features) - c, d, bias=False)
        self.att_h = nn.Linear(d, d)
        self.att_w = nn.Parameter(torch.ones(d))
        self.cell = nn.LSTMCell(d, d)
        self.static = _Static(static_dim, d)
        self.head = MLPHead(2 * d, head_hidden, dropout)

    def embed(self, seq: torch.Tensor):
        """(e [n, T, d], the step-dependent part of every score W_x e_t + W_g m_t [n, T, d])."""
        v, m = seq[..., :self.n_values], seq[..., self.n_values:]
        e = torch.relu(self.embed_v(v)) + torch.relu(self.embed_m(m))
        return e, self.att_x(e) + self.att_g(m)

    def attend(self, e: torch.Tensor, pre: torch.Tensor, h: torch.Tensor, i: int):
        """(context [n, d], weights [n, i + 1, d]) at step ``i``: one softmax over steps 0..i per channel."""
        u = torch.tanh(pre[:, :i + 1] + self.att_h(h)[:, None])
        alpha = torch.softmax(u * self.att_w, dim=1)
        return (alpha * e[:, :i + 1]).sum(1), alpha

    def states(self, seq: torch.Tensor) -> torch.Tensor:
        """[n, T, d]: the LSTM state after each step (step i reads steps <= i only)."""
        e, pre = self.embed(seq)
        h = c = seq.new_zeros(len(seq), self.hidden)
        out = []
        for i in range(seq.shape[1]):
            ctx, _ = self.attend(e, pre, h, i)
            h, c = self.cell(ctx, (h, c))
            out.append(h)
        return torch.stack(out, 1)

    def forward(self, x) -> torch.Tensor:
        temporal, stays, static = x
        h = self.states(first_stay(temporal, stays))[:, -1]
        return self.head(torch.cat([h, self.static(static)], 1))


def memory_read(memory: torch.Tensor, query: torch.Tensor, keys: nn.Module, values: nn.Module) -> torch.Tensor:
    """sum_j softmax_j(q . K m_j / sqrt(d)) V m_j: [n, J, d] memory, [n, d] query -> [n, d]."""
    k, v = keys(memory), values(memory)
    p = torch.softmax((k @ query[:, :, None]).squeeze(-1) / math.sqrt(query.shape[-1]), dim=1)
    return (p[:, :, None] * v).sum(1)


class DCMN(nn.Module):
    """DCMN (module docstring): a temporal and a static memory, read across, gated, ``hops`` times."""

    def __init__(self, in_features: int, static_dim: int, hidden: int = 64, head_hidden: int = 64,
                 dropout: float = 0.1, hops: int = 1):
        super().__init__()
        d, s = int(hidden), max(int(static_dim), 1)
        if int(hops) < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        self.hops = int(hops)
        self.lstm = nn.LSTM(int(in_features), d, batch_first=True)
        self.slot_e = nn.Parameter(torch.randn(s, d) / math.sqrt(d))
        self.slot_b = nn.Parameter(torch.zeros(s, d))
        self.static_query = _Static(static_dim, d)
        self.k_t, self.v_t, self.k_s, self.v_s = (nn.Linear(d, d) for _ in range(4))
        self.g_t, self.g_s = nn.Linear(d, d), nn.Linear(d, d)
        self.head = MLPHead(2 * d, head_hidden, dropout)

    def memories(self, temporal: torch.Tensor, stays: torch.Tensor, static: torch.Tensor):
        """(temporal memory [n, T, d], last LSTM state [n, d], static memory [n, d_s, d])."""
        mem_t, (h, _) = self.lstm(first_stay(temporal, stays))
        st = static if static.shape[1] else static.new_zeros(len(static), 1)
        return mem_t, h[-1], st[:, :, None] * self.slot_e + self.slot_b

    def forward(self, x) -> torch.Tensor:
        temporal, stays, static = x
        mem_t, q_t, mem_s = self.memories(temporal, stays, static)
        q_s = self.static_query(static)
        for _ in range(self.hops):
            g_t, g_s = torch.sigmoid(self.g_t(q_s)), torch.sigmoid(self.g_s(q_t))
            o_t = g_t * memory_read(mem_t, q_s, self.k_t, self.v_t) + (1 - g_t) * q_s    # temporal, static query
            o_s = g_s * memory_read(mem_s, q_t, self.k_s, self.v_s) + (1 - g_s) * q_t    # static, temporal query
            q_s, q_t = o_t, o_s
        return self.head(torch.cat([o_t, o_s], 1))
