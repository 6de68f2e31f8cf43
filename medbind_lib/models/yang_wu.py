"""Yang and Wu's eight multimodal EHR baselines (EMNLP 2021, "How to leverage the multimodal EHR data for better
medical prediction?"; code: emnlp-mimic/mimic), which MEDCSP compares with on 30-day readmission (Figure 6).

Each model encodes three inputs and fuses them with a gate around one MAIN modality:

- notes: BERT's pooled [CLS] vector in the paper (ClinicalBERT weights, fine-tuned). Here: the note features of the
  F-models (``task_inputs.fiddle_inputs``: the off-the-shelf text encoder's pooled embedding, frozen; offline, the
  packaged MiniLM; the ``paper`` profile names its own text encoder), then a trainable Linear + ReLU. Frozen because a
  fine-tuned BERT per fit is beyond the CPU budget; the trainable projection stands in for BERT's last layers;
- time series: an LSTM (last hidden state), a Star-Transformer (Guo et al., NAACL 2019: satellite nodes over the
  time steps and one relay node, ``yang_wu_star_cycles`` cycles; 0.5 (max over satellites + relay)), a Transformer
  encoder (no positional encoding, first step's output, as their code) or a CNN (Conv1d + max-pool(2) blocks, then a
  fully connected layer) over each stay's [T, C] tensor, mean over the admission's stays (zeros without one);
- static inputs: one Linear layer, no activation (their ``ti`` branch); here demographics + ICD + drug multi-hot +
  presence flags (the F-models' static vector without the note part).

The gate (their ``Gate``, the Multimodal Adaptation Gate): with main m and the other two a, b:
``g_a = sigmoid(W_a [m; a])``, ``g_b = sigmoid(W_b [m; b])`` (one scalar each), ``H = W_h [g_a a; g_b b]``,
``alpha = min(beta |m| / |H|, 1)`` with a learned beta, ``out = Dropout(LayerNorm(m + alpha H))``. Their norms are
over the whole batch tensor; ours per row (a row's output must not depend on its batch). ``MBert<X>`` has the note as
main, ``M<X>Bert`` the time series. Output: the suite's shared MLP head (theirs: one Linear).

The eight (``VARIANTS``: their class names): MBertLstm, MLstmBert, MBertStar, MStarBert, MBertEncoder,
MEncoderBert, MBertCnn, MCnnBert. Sizes: one hidden size for every branch (``medcsp_task_fiddle_hidden``; theirs 512-
1024 on GPUs), heads = hidden / 16 (theirs hidden / 64 at 1024), 1 Transformer layer, 1 CNN block with 3-wide kernels.
Their repository evaluates these models on FIDDLE's ARF / shock / mortality and a diagnosis task, never readmission:
the readmission inputs above follow MEDCSP's description (notes, time series, codes and demographics).
"""
from __future__ import annotations

import torch
from torch import nn

from .fiddle import MLPHead

__all__ = ["VARIANTS", "ENCODERS", "StarTransformer", "Gate", "YangWu"]

ENCODERS = ("lstm", "star", "encoder", "cnn")
#: class name -> (time-series encoder, main modality)
VARIANTS = {f"M{'Bert' + e.capitalize() if main == 'note' else e.capitalize() + 'Bert'}": (e, main)
            for e in ENCODERS for main in ("note", "ts")}


class StarTransformer(nn.Module):
    """Star-Transformer encoder: learned position embeddings added to the inputs e (attention over a set of keys has
    no order otherwise), satellites h_i attend over [h_{i-1}, h_i, h_{i+1}, e_i, s], the relay s over [s; H], each
    update followed by ReLU and LayerNorm; returns 0.5 (max_i h_i + s) [n, d]."""

    def __init__(self, d: int, heads: int, cycles: int = 2, max_len: int = 512):
        super().__init__()
        self.cycles = int(cycles)
        self.pos = nn.Parameter(torch.randn(int(max_len), d) * 0.02)
        self.sat = nn.MultiheadAttention(d, heads, batch_first=True)
        self.rel = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_s, self.norm_r = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        n, t, d = e.shape
        e = e + self.pos[:t]
        h, s = e, e.mean(1)
        pad = e.new_zeros(n, 1, d)
        for _ in range(self.cycles):
            left, right = torch.cat([pad, h[:, :-1]], 1), torch.cat([h[:, 1:], pad], 1)
            ctx = torch.stack([left, h, right, e, s[:, None].expand(n, t, d)], 2).reshape(n * t, 5, d)
            h = self.sat(h.reshape(n * t, 1, d), ctx, ctx, need_weights=False)[0].reshape(n, t, d)
            h = self.norm_s(torch.relu(h))
            both = torch.cat([s[:, None], h], 1)
            s = self.norm_r(torch.relu(self.rel(s[:, None], both, both, need_weights=False)[0][:, 0]))
        return 0.5 * (h.amax(1) + s)


class Gate(nn.Module):
    """The Multimodal Adaptation Gate around a main vector (module docstring), per-row norms."""

    def __init__(self, d: int, dropout: float = 0.1):
        super().__init__()
        self.w_a, self.w_b, self.w_h = nn.Linear(2 * d, 1), nn.Linear(2 * d, 1), nn.Linear(2 * d, d)
        self.beta = nn.Parameter(torch.ones(()))
        self.norm, self.drop = nn.LayerNorm(d), nn.Dropout(float(dropout))

    def forward(self, m: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        g_a, g_b = torch.sigmoid(self.w_a(torch.cat([m, a], 1))), torch.sigmoid(self.w_b(torch.cat([m, b], 1)))
        h = self.w_h(torch.cat([g_a * a, g_b * b], 1))
        alpha = (self.beta * m.norm(dim=1, keepdim=True) / h.norm(dim=1, keepdim=True).clamp_min(1e-6)).clamp(max=1)
        return self.drop(self.norm(m + alpha * h))


class _Series(nn.Module):
    """One time-series encoder over a stay's [T, C] sequence -> [d]."""

    def __init__(self, kind: str, c: int, d: int, heads: int, star_cycles: int):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"time-series encoder must be one of {ENCODERS}, got {kind!r}")
        self.kind = kind
        if kind == "lstm":
            self.net = nn.LSTM(c, d, batch_first=True)
        else:
            self.proj = nn.Sequential(nn.Linear(c, d), nn.ReLU())
            if kind == "star":
                self.net = StarTransformer(d, heads, star_cycles)
            elif kind == "encoder":
                self.net = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, 2 * d, 0.1, batch_first=True), 1,
                                                 enable_nested_tensor=False)
            else:
                self.net = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2))
                self.fc = nn.Sequential(nn.Linear(d, d), nn.ReLU())

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if self.kind == "lstm":
            return self.net(seq)[1][0][-1]
        x = self.proj(seq)
        if self.kind == "star":
            return self.net(x)
        if self.kind == "encoder":
            return self.net(x)[:, 0]
        return self.fc(self.net(x.transpose(1, 2)).amax(-1))


class YangWu(nn.Module):
    """One of the eight (``VARIANTS``). X = (temporal [n, S, T, C], stays [n, S] bool, static [n, d_s],
    note features [n, d_note], note present [n] bool)."""

    def __init__(self, name: str, in_features: int, static_dim: int, note_dim: int, hidden: int = 64,
                 head_hidden: int = 64, dropout: float = 0.1, star_cycles: int = 2):
        super().__init__()
        if name not in VARIANTS:
            raise ValueError(f"Yang and Wu model must be one of {tuple(VARIANTS)}, got {name!r}")
        kind, self.main = VARIANTS[name]
        d = int(hidden)
        self.hidden = d
        self.series = _Series(kind, int(in_features), d, max(1, d // 16), star_cycles)
        self.note = nn.Sequential(nn.Linear(max(int(note_dim), 1), d), nn.ReLU())
        self.static = nn.Linear(max(int(static_dim), 1), d)
        self.gate = Gate(d, dropout)
        self.head = MLPHead(d, head_hidden, dropout)

    def encode_series(self, temporal: torch.Tensor, stays: torch.Tensor) -> torch.Tensor:
        """Mean over each row's present stays of the encoder's summary (zeros for a row without a stay)."""
        n = temporal.shape[0]
        rec = stays.nonzero(as_tuple=True)[0]
        total = temporal.new_zeros(n, self.hidden)
        if len(rec):
            total = total.index_add(0, rec, self.series(temporal[stays]))
        return total / torch.bincount(rec, minlength=n).clamp_min(1)[:, None].to(total.dtype)

    def forward(self, x) -> torch.Tensor:
        temporal, stays, static, note, has_note = x
        ts = self.encode_series(temporal, stays)
        nt = self.note(note if note.shape[1] else note.new_zeros(len(note), 1)) * has_note[:, None].to(ts.dtype)
        st = self.static(static if static.shape[1] else static.new_zeros(len(static), 1))
        fused = self.gate(nt, ts, st) if self.main == "note" else self.gate(ts, nt, st)
        return self.head(fused)
