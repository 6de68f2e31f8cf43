"""Task heads shared by the EHR-task rows (notebook 10) and FIDDLE's supervised baselines F-LSTM / F-CNN
(Tang et al., JAMIA 2020: a recurrent or convolutional net over the time-binned tensor, joined with the static
inputs), trained from scratch on the same inputs as the pre-trained rows."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPHead", "HeadOnly", "FIDDLENet"]


class MLPHead(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear(1): one logit per row; the same head ends every row."""

    def __init__(self, in_dim: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(int(in_dim), int(hidden)), nn.ReLU(), nn.Dropout(float(dropout)),
                                 nn.Linear(int(hidden), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class HeadOnly(nn.Module):
    """The head on precomputed features (frozen MEDCSP rows, MEDBind_BD): X is a [n, d] tensor."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.head = MLPHead(in_dim, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class FIDDLENet(nn.Module):
    """F-LSTM (``kind="lstm"``: last hidden state) or F-CNN (``"cnn"``: two Conv1d + ReLU, max over time) over
    each present stay [T, C], mean over a row's stays (zeros without one), concatenated with ReLU(Linear(static)),
    then the MLP head. X = (temporal [n, S, T, C], stays [n, S] bool, static [n, d_s])."""

    def __init__(self, kind: str, in_features: int, static_dim: int, hidden: int = 64, head_hidden: int = 64,
                 dropout: float = 0.1, kernel: int = 3):
        super().__init__()
        if kind not in ("lstm", "cnn"):
            raise ValueError(f"kind must be 'lstm' or 'cnn', got {kind!r}")
        self.kind, self.hidden = kind, int(hidden)
        if kind == "lstm":
            self.seq = nn.LSTM(int(in_features), self.hidden, batch_first=True)
        else:
            self.seq = nn.Sequential(nn.Conv1d(int(in_features), self.hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                     nn.Conv1d(self.hidden, self.hidden, kernel, padding=kernel // 2), nn.ReLU())
        self.static = nn.Sequential(nn.Linear(max(int(static_dim), 1), self.hidden), nn.ReLU())
        self.head = MLPHead(2 * self.hidden, head_hidden, dropout)

    def _stay(self, seq: torch.Tensor) -> torch.Tensor:
        if self.kind == "lstm":
            return self.seq(seq)[1][0][-1]
        return self.seq(seq.transpose(1, 2)).amax(-1)

    def forward(self, x) -> torch.Tensor:
        temporal, stays, static = x
        n = temporal.shape[0]
        rec, _ = stays.nonzero(as_tuple=True)
        total = temporal.new_zeros(n, self.hidden)
        if len(rec):
            total = total.index_add(0, rec, self._stay(temporal[stays]))
        t = total / stays.sum(1, keepdim=True).clamp_min(1).to(total.dtype)
        if static.shape[1] == 0:
            static = static.new_zeros(n, 1)
        return self.head(torch.cat([t, self.static(static)], 1))
