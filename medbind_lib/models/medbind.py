"""MEDBind: modality-keyed encoders (ImageBind style) -> modality-specific Linear projection -> L2 norm.

Keys: ``cxr`` (timm image model), ``ecg`` (ECG transformer), ``text`` (one BERT for CXR reports AND ECG
texts, as in the paper).  Batch inputs: ``cxr`` [B, 3, H, W], ``ecg`` [B, 12, T], ``cxr_text`` /
``ecg_text`` (tokenized dicts ``{'input_ids', 'attention_mask'}`` or lists of strings).  Both text inputs
go through the same text encoder; with ``shared_text_projection=True`` (default, the paper's "modality
-specific projection" read as one per encoder) they also share one text projection, else each text kind
has its own (``cxr_text`` / ``ecg_text`` projections).

Temperature: fixed tau (paper 0.07) is a buffer ``log_logit_scale = log(1/tau)``; learnable makes the same
name a Parameter (CLIP style, clamped at ``max_logit_scale``).  ``model.logit_scale`` (= 1/tau) goes to
the loss: ``MEDBindLoss(...)(batch, logit_scale=model.logit_scale)``.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Temperature, param_groups

ENCODER_KEYS = ("cxr", "ecg", "text")
TEXT_INPUTS = ("cxr_text", "ecg_text")
INPUT_KEYS = ("cxr", "ecg") + TEXT_INPUTS


class MEDBindModel(Temperature, nn.Module):
    """``forward(batch) -> {modality: [n, embed_dim] unit-norm}`` for the modalities present in ``batch``."""

    def __init__(self, encoders: Mapping[str, nn.Module], embed_dim: int = 256, learnable_temperature: bool = False,
                 init_tau: float = 0.07, shared_text_projection: bool = True, max_logit_scale: float = 100.0):
        super().__init__()
        unknown = sorted(set(encoders) - set(ENCODER_KEYS))
        if unknown:
            raise ValueError(f"encoder keys must be among {ENCODER_KEYS}, got {unknown}")
        if not encoders:
            raise ValueError("MEDBindModel needs at least one encoder")
        if init_tau <= 0:
            raise ValueError(f"tau must be > 0, got {init_tau}")
        self.encoders = nn.ModuleDict({k: encoders[k] for k in ENCODER_KEYS if k in encoders})
        self.embed_dim = int(embed_dim)
        self.shared_text_projection = bool(shared_text_projection)
        self.projections = nn.ModuleDict()
        for k, enc in self.encoders.items():
            names = [k] if k != "text" or self.shared_text_projection else list(TEXT_INPUTS)
            for name in names:
                self.projections[name] = nn.Linear(encoder_out_dim(enc, k), self.embed_dim)
        self._init_temperature(init_tau, learnable_temperature, max_logit_scale)

    # ---------------------------------------------------------------- keys
    @property
    def modalities(self) -> tuple[str, ...]:
        """Input keys this model can embed."""
        out = [k for k in ("cxr", "ecg") if k in self.encoders]
        return tuple(out + (list(TEXT_INPUTS) if "text" in self.encoders else []))

    # ---------------------------------------------------------------- encoders
    def _need(self, key: str) -> nn.Module:
        if key not in self.encoders:
            raise ValueError(f"this model has no {key!r} encoder (built: {list(self.encoders)}); "
                             f"drop {key!r} inputs from the batch or build the model with it")
        return self.encoders[key]

    def _project(self, name: str, feats: torch.Tensor, normalize: bool) -> torch.Tensor:
        z = self.projections[name](feats)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_cxr(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[B, C, H, W] -> [B, embed_dim]."""
        return self._project("cxr", self._need("cxr")(x), normalize)

    def encode_ecg(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """[B, leads, T] -> [B, embed_dim]."""
        return self._project("ecg", self._need("ecg")(x), normalize)

    def tokenize(self, texts: Sequence[str], device=None) -> dict:
        return self._need("text").tokenize(texts, device=device)

    def encode_text(self, text, modality: str = "cxr", normalize: bool = True) -> torch.Tensor:
        """Tokenized dict (or list of strings) -> [B, embed_dim].  ``modality`` ('cxr' | 'ecg') picks the text
        projection when projections are not shared (prompts for ECG zero-shot use 'ecg')."""
        enc = self._need("text")
        if modality not in ("cxr", "ecg"):
            raise ValueError(f"modality must be 'cxr' or 'ecg', got {modality!r}")
        if isinstance(text, (list, tuple)) or isinstance(text, str):
            dev = next(self.parameters()).device
            text = enc.tokenize(list(text) if not isinstance(text, str) else [text], device=dev)
        if not isinstance(text, Mapping) or "input_ids" not in text:
            raise ValueError("text input must be a tokenized dict with 'input_ids' (and 'attention_mask') "
                             "or a list of strings")
        feats = enc(text["input_ids"], text.get("attention_mask"))
        return self._project("text" if self.shared_text_projection else f"{modality}_text", feats, normalize)

    # ---------------------------------------------------------------- forward
    def forward(self, batch: Mapping, modalities: Optional[Iterable[str]] = None) -> dict:
        """Embed each of ``cxr``, ``ecg``, ``cxr_text``, ``ecg_text`` present (and not None) in ``batch``.

        ``modalities`` restricts which keys are embedded (others are ignored, e.g. the CXR of an ECG-CLIP
        batch).  An input with 0 rows gives a [0, embed_dim] tensor.  Other batch keys are not returned.
        """
        keys = INPUT_KEYS if modalities is None else tuple(modalities)
        bad = sorted(set(keys) - set(INPUT_KEYS))
        if bad:
            raise ValueError(f"modalities must be among {INPUT_KEYS}, got {bad}")
        out = {}
        for k in keys:
            v = batch.get(k)
            if v is None:
                continue
            if k == "cxr":
                out[k] = self.encode_cxr(v) if _rows(v) else self._empty("cxr", "cxr")
            elif k == "ecg":
                out[k] = self.encode_ecg(v) if _rows(v) else self._empty("ecg", "ecg")
            else:
                out[k] = self.encode_text(v, modality=k.split("_")[0]) if _rows(v) else \
                    self._empty("text" if self.shared_text_projection else k, "text")
        return out

    def _empty(self, proj: str, encoder: str) -> torch.Tensor:
        self._need(encoder)
        return self.projections[proj].weight.new_zeros(0, self.embed_dim)

    # ---------------------------------------------------------------- optimisation helpers
    def param_groups(self, weight_decay: float, lr: float | None = None,
                     lr_scales: Mapping[str, float] | None = None) -> list[dict]:
        """Optimiser groups by :func:`._common.param_groups` (no weight decay on biases, norms, positions,
        CLS tokens and the temperature; ``lr_scales``: parameter-name prefix -> multiplier of ``lr``)."""
        return param_groups(self, weight_decay, lr, lr_scales)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, tau={self.tau:.4g}, learnable_temperature={self.learnable_temperature}, "
                f"shared_text_projection={self.shared_text_projection}")


def encoder_out_dim(enc: nn.Module, key: str) -> int:
    d = getattr(enc, "out_dim", None)
    if d is None:
        raise ValueError(f"encoder {key!r} ({type(enc).__name__}) must expose .out_dim")
    return int(d)


def _rows(v) -> int:
    if torch.is_tensor(v):
        return int(v.shape[0])
    if isinstance(v, Mapping):
        return int(v["input_ids"].shape[0])
    return len(v)
