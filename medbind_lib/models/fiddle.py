"""Task heads shared by the EHR-task rows (notebook 10) and FIDDLE's supervised baselines F-LSTM / F-CNN
(Tang et al., JAMIA 2020: a recurrent or convolutional net over the time-binned tensor), trained from scratch on the
same inputs as the pre-trained rows.

How the F-models read the static inputs is ``medcsp_fiddle_input``: ``concat`` (default; MEDCSP App. C.1's
"concatenated demographic and clinical temporal features", FIDDLE's fused input: the static vector repeated at every
time bin after the temporal channels, one sequence into the net) or ``late_fusion`` (the net reads the temporal
tensor alone; its summary is joined with ReLU(Linear(static)) before the head)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPHead", "HeadOnly", "FIDDLENet", "FIDDLE_INPUTS", "fuse_static"]

FIDDLE_INPUTS = ("concat", "late_fusion")


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


def fuse_static(temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """FIDDLE's fused input: temporal [n, S, T, C] and static [n, d] -> [n, S, T, C + d], the row's static vector
    repeated at every time bin of each of its stays, after the temporal channels (values, then observed flags)."""
    n, s, t, _ = temporal.shape
    rep = static.to(temporal.dtype)[:, None, None, :].expand(n, s, t, static.shape[1])
    return torch.cat([temporal, rep], -1)


class FIDDLENet(nn.Module):
    """F-LSTM (``kind="lstm"``: last hidden state) or F-CNN (``"cnn"``: two Conv1d + ReLU, max over time) over
    each present stay, mean over a row's stays, then the MLP head. X = (temporal [n, S, T, C], stays [n, S] bool,
    static [n, d_s]). ``fusion`` (module docstring): ``concat`` feeds ``fuse_static``'s [T, C + d_s] sequences (a row
    without a stay reads one all-missing stay, zeros, so its static inputs still reach the net); ``late_fusion``
    feeds [T, C] (zeros without a stay) and concatenates ReLU(Linear(static)) to the summary."""

    def __init__(self, kind: str, in_features: int, static_dim: int, hidden: int = 64, head_hidden: int = 64,
                 dropout: float = 0.1, kernel: int = 3, fusion: str = "concat"):
        super().__init__()
        if kind not in ("lstm", "cnn"):
            raise ValueError(f"kind must be 'lstm' or 'cnn', got {kind!r}")
        if fusion not in FIDDLE_INPUTS:
            raise ValueError(f"fusion must be one of {FIDDLE_INPUTS}, got {fusion!r}")
        self.kind, self.fusion, self.hidden = kind, fusion, int(hidden)
        c = int(in_features) + (int(static_dim) if fusion == "concat" else 0)
        if kind == "lstm":
            self.seq = nn.LSTM(c, self.hidden, batch_first=True)
        else:
            self.seq = nn.Sequential(nn.Conv1d(c, self.hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                     nn.Conv1d(self.hidden, self.hidden, kernel, padding=kernel // 2), nn.ReLU())
        if fusion == "late_fusion":
            self.static = nn.Sequential(nn.Linear(max(int(static_dim), 1), self.hidden), nn.ReLU())
        self.head = MLPHead((2 if fusion == "late_fusion" else 1) * self.hidden, head_hidden, dropout)

    def _stay(self, seq: torch.Tensor) -> torch.Tensor:
        if self.kind == "lstm":
            return self.seq(seq)[1][0][-1]
        return self.seq(seq.transpose(1, 2)).amax(-1)

    def sequences(self, temporal: torch.Tensor, stays: torch.Tensor, static: torch.Tensor):
        """(the sequences the net reads [m, T, C'], the row of each [m]): one per present stay; under ``concat`` a
        row without a stay gets one all-zero stay (all missing) carrying its static vector."""
        if self.fusion == "late_fusion":
            return temporal[stays], stays.nonzero(as_tuple=True)[0]
        temporal = temporal.masked_fill(~stays[:, :, None, None], 0.0)
        read = stays.clone()
        read[:, 0] |= ~stays.any(1)
        return fuse_static(temporal, static)[read], read.nonzero(as_tuple=True)[0]

    def forward(self, x) -> torch.Tensor:
        temporal, stays, static = x
        n = temporal.shape[0]
        seq, rec = self.sequences(temporal, stays, static)
        total = temporal.new_zeros(n, self.hidden)
        if len(rec):
            total = total.index_add(0, rec, self._stay(seq))
        t = total / torch.bincount(rec, minlength=n).clamp_min(1)[:, None].to(total.dtype)
        if self.fusion == "concat":
            return self.head(t)
        if static.shape[1] == 0:
            static = static.new_zeros(n, 1)
        return self.head(torch.cat([t, self.static(static)], 1))
