"""MedHMP (Wang et al., EMNLP 2023, "Hierarchical Pretraining on Multimodal Electronic Health Records"), MEDCSP's
pre-trained EHR baseline (Figures 5 and 6): a stay encoder pre-trained by reconstruction, then an admission encoder
over the stays, codes and note pre-trained by masked code modelling and leave-one-out contrast. Built from the paper
and read against the authors' code (XiaochenWang-PSU/MedHMP, ``stay_admission/``); never copied.

* Stay (``StayEncoder``): the time-binned tensor (values, then observed flags: FIDDLE's layout, ours ``2F`` wide)
  through LSTM(C, d) -> dropout -> LayerNorm -> LSTM(d, d, 2 layers), the last layer's final CELL state (as
  released); the static vector through Linear(s, 64) -> ReLU -> Linear(64, d); the two tokens through one
  self-attention block (4 heads, bias-free projections, residual + LayerNorm), a feed-forward block (d -> 4d -> d,
  residual + LayerNorm) and a max-pool over the two tokens. Pre-training (``StayAutoencoder``): the stay vector
  through a feed-forward block, placed at step 0 of an otherwise zero sequence, decoded by LSTM(d, C); MSE with the
  input tensor (no masking; the static vector is not reconstructed).
* Admission (``AdmissionEncoder``): tokens [note, ICD, drugs, stays]: codes by multi-hot MLPs (V -> d -> d, LayerNorm
  + ReLU after each), the note's frozen text features by Linear -> LayerNorm -> ReLU, the admission's first K stays by
  the shared stay encoder, concatenated and projected (K d -> d); one self-attention block over the tokens, max-pool,
  a feed-forward block per view. Pre-training: masked code modelling (each code of the vocabulary masked with
  probability ``mask_rate``; the visible codes embedded, plus Linear(1, d) of the number masked; predict the masked
  codes with a sigmoid; loss ``mcm_loss``: MSE as released, or BCE) for ICD and drugs, and a leave-one-out InfoNCE
  for note, ICD and drugs (each modality's token against the fusion of the other three, in-batch negatives,
  temperature ``cl_tau``), total ``mean(mcm_icd, mcm_drug) + cl_weight * mean(cl)`` (as released).

Where ours differs from the released code, and why: the stay encoder's LSTM and static weights reach the admission
encoder (the release's key renaming drops them: only attention and feed-forward weights transfer, which the paper
does not intend); stays that do not exist, and a missing note, are zero tokens (the release assumes exactly three
stays and a note); the fine-tuning head is the suite's shared MLP head, trained by the shared loop (grid, early
stopping) like every row, where the release uses SGD + StepLR and a linear head. The patient level of the paper has
no pre-training objective in the release and none here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ehr_baselines import first_stay
from .fiddle import MLPHead

__all__ = ["StayEncoder", "StayAutoencoder", "AdmissionEncoder", "mcm_loss", "leave_one_out_infonce",
           "MedHMPStayTask", "MedHMPAdmissionTask", "VIEWS"]

VIEWS = ("mcm_icd", "mcm_drug", "cl_note", "cl_icd", "cl_drug")    # the admission encoder's pre-training views


class _Attention(nn.Module):
    """Self-attention over tokens [n, k, d]: bias-free projections, dropout, residual, post-LayerNorm."""

    def __init__(self, d: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, dropout=dropout, bias=False, batch_first=True)
        self.drop, self.norm = nn.Dropout(dropout), nn.LayerNorm(d)

    def forward(self, x, pad=None):
        h, _ = self.mha(x, x, x, key_padding_mask=pad, need_weights=False)
        return self.norm(x + self.drop(h))


class _FFN(nn.Module):
    def __init__(self, d: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.net(x))


def _max_pool(tokens: torch.Tensor, pad=None) -> torch.Tensor:
    if pad is not None:
        tokens = tokens.masked_fill(pad[..., None], float("-inf"))
    return tokens.max(dim=1).values


class StayEncoder(nn.Module):
    """One ICU stay [n, T, C] + its static vector [n, s] -> [n, d] (module docstring)."""

    def __init__(self, in_features: int, static_dim: int, d: int = 256, dropout: float = 0.1):
        super().__init__()
        self.lstm1 = nn.LSTM(in_features, d, batch_first=True)
        self.drop, self.norm = nn.Dropout(dropout), nn.LayerNorm(d)
        self.lstm2 = nn.LSTM(d, d, num_layers=2, batch_first=True)
        self.static = nn.Sequential(nn.Linear(max(static_dim, 1), 64), nn.ReLU(), nn.Linear(64, d))
        self.attn, self.ffn = _Attention(d, dropout=dropout), _FFN(d, dropout)
        self.d = d

    def forward(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm1(temporal)
        _, (_, cell) = self.lstm2(self.norm(self.drop(h)))
        s = static if static.shape[1] else static.new_zeros(len(static), 1)
        tokens = torch.stack([cell[-1], self.static(s)], 1)
        return _max_pool(self.ffn(self.attn(tokens)))


class StayAutoencoder(nn.Module):
    """Stay-level pre-training: reconstruct the stay tensor from the stay vector (module docstring)."""

    def __init__(self, encoder: StayEncoder, in_features: int, dropout: float = 0.1):
        super().__init__()
        self.encoder, self.ffn = encoder, _FFN(encoder.d, dropout)
        self.decoder = nn.LSTM(encoder.d, in_features, batch_first=True)

    def forward(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        z = self.ffn(self.encoder(temporal, static))
        seq = z.new_zeros(len(z), temporal.shape[1], z.shape[1])
        seq[:, 0] = z
        return self.decoder(seq)[0]

    def loss(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(temporal, static), temporal)


def _codes(v: int, d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(max(v, 1), d), nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, d), nn.LayerNorm(d),
                         nn.ReLU())


class AdmissionEncoder(nn.Module):
    """Tokens [note, ICD, drugs, stays] of an admission, fused by attention (module docstring). ``note_dim`` 0 = no
    note token (a task without notes)."""

    def __init__(self, stay: StayEncoder, icd_dim: int, drug_dim: int, note_dim: int, n_stays: int,
                 dropout: float = 0.1):
        super().__init__()
        d = stay.d
        self.stay, self.n_stays, self.d = stay, int(n_stays), d
        self.icd, self.drug = _codes(icd_dim, d), _codes(drug_dim, d)
        self.note = nn.Sequential(nn.Linear(note_dim, d), nn.LayerNorm(d), nn.ReLU()) if note_dim else None
        self.stays = nn.Sequential(nn.Linear(self.n_stays * d, d), nn.LayerNorm(d), nn.ReLU())
        self.masked_count = nn.ModuleDict({m: nn.Linear(1, d) for m in ("icd", "drug")})
        self.attn = _Attention(d, dropout=dropout)
        self.ffn = nn.ModuleDict({v: _FFN(d, dropout) for v in VIEWS})
        self.predict = nn.ModuleDict({"icd": nn.Linear(d, max(icd_dim, 1)), "drug": nn.Linear(d, max(drug_dim, 1))})

    def stay_token(self, temporal: torch.Tensor, stays: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """[n, S, T, C] (S >= n_stays), [n, S] present -> [n, d]: each present stay encoded (only those: most
        admissions have one), absent ones zero."""
        n, k = len(temporal), self.n_stays
        on = stays[:, :k]
        z = temporal.new_zeros(n, k, self.d)
        if bool(on.any()):
            z[on] = self.stay(temporal[:, :k][on], static[:, None].expand(n, k, static.shape[1])[on]).to(z.dtype)
        return self.stays(z.reshape(n, k * self.d))

    def code_token(self, codes: torch.Tensor, m: str, masked: torch.Tensor | None = None) -> torch.Tensor:
        """ICD or drug token [n, d]; ``masked`` [n, V] bool hides those codes and adds the embedded count of the
        hidden ones (masked code modelling)."""
        if masked is None:
            return getattr(self, m)(codes)
        hidden = (codes * masked.float()).sum(1, keepdim=True)
        return getattr(self, m)(codes * (~masked).float()) + self.masked_count[m](hidden)

    def tokens(self, x: dict, masked: dict | None = None) -> dict:
        """Each modality's token [n, d]; ``masked``: {"icd"|"drug": [n, V] bool} (``code_token``)."""
        out = {"stays": self.stay_token(x["temporal"], x["stays"], x["demo"])}
        for m in ("icd", "drug"):
            out[m] = self.code_token(x[m], m, (masked or {}).get(m))
        if self.note is not None:
            out["note"] = self.note(x["note"]) * x["note_present"][:, None].float()
        return out

    def fuse(self, tokens: dict, names, ffn: nn.Module) -> torch.Tensor:
        return ffn(_max_pool(self.attn(torch.stack([tokens[k] for k in names], 1))))


def mcm_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Masked code modelling: sigmoid predictions against the multi-hot of the masked codes (MSE as released)."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(torch.sigmoid(logits), target)


def leave_one_out_infonce(anchor: torch.Tensor, fused: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE of each row's own-modality token against the fusion of its other modalities, in-batch negatives,
    one direction (the ``info-nce-pytorch`` defaults the release uses)."""
    logits = F.normalize(anchor, dim=-1) @ F.normalize(fused, dim=-1).T / tau
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))


class MedHMPStayTask(nn.Module):
    """In-ICU tasks: the (pre-trained) stay encoder on the row's stay and demographics -> the shared head. X is
    (temporal [n, S, T, C], stays [n, S], demo [n, s])."""

    def __init__(self, stay: StayEncoder, head_hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.stay, self.head = stay, MLPHead(stay.d, head_hidden, dropout)

    def forward(self, x) -> torch.Tensor:
        temporal, stays, demo = x
        return self.head(self.stay(first_stay(temporal, stays), demo))


class MedHMPAdmissionTask(nn.Module):
    """Readmission: the (pre-trained) admission encoder's tokens fused by its attention, a fresh feed-forward block
    (as released: the fine-tuning view is not a pre-training one) -> the shared head. X is (temporal, stays, demo,
    icd, drug, note, note_present)."""

    KEYS = ("temporal", "stays", "demo", "icd", "drug", "note", "note_present")

    def __init__(self, enc: AdmissionEncoder, head_hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.enc, self.ffn = enc, _FFN(enc.d, dropout)
        self.head = MLPHead(enc.d, head_hidden, dropout)

    def forward(self, x) -> torch.Tensor:
        tokens = self.enc.tokens(dict(zip(self.KEYS, x)))
        return self.head(self.enc.fuse(tokens, list(tokens), self.ffn))
