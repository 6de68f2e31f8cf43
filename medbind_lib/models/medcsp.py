"""MEDCSP ("Unity in Diversity"): cross-source pre-training over EHR records and chest X-ray records.

Seven modalities, ``MEDCSP_MODALITIES`` (also the column order of the batch's presence mask): an EHR
record has ``icd``, ``drug``, ``demo`` (multi-hot / one-hot vectors), ``temporal`` (hourly ICU series)
and ``note`` (discharge note); a CXR record has ``image`` and ``report``.  Encoders are keyed as in
ImageBind / :class:`.medbind.MEDBindModel`: ``icd`` / ``drug`` / ``demo`` (:class:`MLPEncoder`),
``temporal`` (:class:`TemporalLSTM`), ``text`` (ONE :class:`.text.TextEncoder` for notes AND reports, as
in the paper's shared language model) and ``image`` (:class:`.cxr.CXREncoder`).  Projections are one
Linear per MODALITY, so notes and reports share the text tower but not the projection.

Batch (N records; inputs hold only the PRESENT rows, in row order, so no encoder runs on padding):

* ``mask``           [N, 7] bool, columns ``MEDCSP_MODALITIES``
* ``icd`` / ``drug`` / ``demo``  [n_m, dim] float
* ``temporal``       [n_t, S, T, C] float (S stays, T hourly bins, C = values + missingness channels)
  and ``temporal_stays`` [n_t, S] bool (absent stays may hold anything, NaN included)
* ``image``          [n_i, 3, H, W]
* ``text_tokens``    {input_ids, attention_mask} of the batch's DISTINCT texts (or None), with
  ``note_index`` / ``report_index`` long [n_note] / [n_report] rows into it: a text shared by several
  records (a copied note, a templated report) is encoded once per step.

``forward(batch) -> {modality: [N, embed_dim]}`` for every modality of the model: L2-normalised in the
present rows, zeros in the absent rows (the loss masks them; :func:`..losses.record_embeddings` ignores
absent rows).  Inputs of modalities the model does not have are ignored (the single-source variant gets
mixed batches; its loss drops the EHR rows); pass ``mask[:, model.mask_columns]`` to a loss of such a model.

Temperature as in MEDBind: fixed tau (paper 0.1) is the buffer ``log_logit_scale``; learnable makes it a
Parameter (clamped at ``max_logit_scale``); ``model.logit_scale`` (1/tau) goes to ``MEDCSPLoss``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Temperature, param_groups, profile_fields
from .cxr import CXREncoder
from .medbind import encoder_out_dim
from .text import TextEncoder

__all__ = ["MEDCSP_MODALITIES", "MEDCSP_ENCODER_KEYS", "MLPEncoder", "TemporalLSTM", "MEDCSPModel", "MEDCSPConfig",
           "build_medcsp_model", "medcsp_model_from_config"]

MEDCSP_MODALITIES = ("icd", "drug", "demo", "temporal", "note", "image", "report")
MEDCSP_ENCODER_KEYS = ("icd", "drug", "demo", "temporal", "text", "image")
#: modality -> encoder key (notes and reports share the text encoder)
ENCODER_OF = {"icd": "icd", "drug": "drug", "demo": "demo", "temporal": "temporal", "note": "text",
              "image": "image", "report": "text"}
VECTOR_MODALITIES = ("icd", "drug", "demo")
TEXT_MODALITIES = ("note", "report")
#: input_dims keys the builder needs per modality
INPUT_DIM_KEYS = ("icd", "drug", "demo", "temporal")


# ----------------------------------------------------------------------------------------------------
# EHR encoders
# ----------------------------------------------------------------------------------------------------
class MLPEncoder(nn.Module):
    """``layers`` x (Linear -> GELU -> Dropout), then LayerNorm: [n, in_dim] -> [n, hidden].

    For the sparse code vectors (ICD, drugs) and demographics; the final LayerNorm puts every EHR
    tower on one scale before its projection."""

    def __init__(self, in_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        if in_dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"MLPEncoder needs in_dim, hidden, layers >= 1, got {in_dim}, {hidden}, {layers}")
        blocks, d = [], int(in_dim)
        for _ in range(int(layers)):
            blocks += [nn.Linear(d, int(hidden)), nn.GELU(), nn.Dropout(float(dropout))]
            d = int(hidden)
        self.net = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(d)
        self.in_dim, self.out_dim = int(in_dim), d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPEncoder input must be [n, {self.in_dim}], got {tuple(x.shape)}")
        return self.norm(self.net(x.to(self.norm.weight.dtype)))

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}"


class TemporalLSTM(nn.Module):
    """LSTM over each present ICU stay, last layer's final hidden state, mean over the record's stays.

    ``forward(x [n, S, T, C], stays [n, S] bool) -> [n, hidden]``.  Only present stays are gathered
    (absent ones, often NaN-filled, never reach the LSTM) and run as one batch; the per-record mean is an
    index_add over the stays (the official code averages up to 3 stays).  Every record needs >= 1 stay."""

    def __init__(self, in_features: int, hidden: int = 128, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        if in_features < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"TemporalLSTM needs in_features, hidden, layers >= 1, "
                             f"got {in_features}, {hidden}, {layers}")
        # inter-layer dropout only: nn.LSTM warns (and does nothing) with dropout on a single layer
        self.lstm = nn.LSTM(int(in_features), int(hidden), num_layers=int(layers), batch_first=True,
                            dropout=float(dropout) if layers > 1 else 0.0)
        self.in_features, self.out_dim = int(in_features), int(hidden)

    def forward(self, x: torch.Tensor, stays: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != self.in_features:
            raise ValueError(f"temporal input must be [n, S, T, {self.in_features}], got {tuple(x.shape)}")
        if stays is None or tuple(stays.shape) != tuple(x.shape[:2]):
            raise ValueError(f"temporal_stays must be [n, S] = {list(x.shape[:2])}, "
                             f"got {None if stays is None else tuple(stays.shape)}")
        stays = stays.to(device=x.device, dtype=torch.bool)
        count = stays.sum(1)
        if x.shape[0] and not bool((count > 0).all()):
            empty = (count == 0).nonzero().flatten().tolist()
            raise ValueError(f"temporal records without a present stay: rows {empty}")
        rec, _ = stays.nonzero(as_tuple=True)
        seq = x[stays].to(self.lstm.weight_ih_l0.dtype)                    # [P, T, C], present stays only
        _, (h, _) = self.lstm(seq)
        last = h[-1]                                                       # [P, hidden]
        total = last.new_zeros(x.shape[0], self.out_dim).index_add(0, rec, last)
        return total / count.clamp_min(1).unsqueeze(1).to(total.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_dim={self.out_dim}"


# ----------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------
class MEDCSPModel(Temperature, nn.Module):
    """``forward(batch) -> {modality: [N, embed_dim]}``: unit norm in present rows, zeros in absent rows.

    ``encoders``: keys among ``MEDCSP_ENCODER_KEYS`` (each with ``.out_dim``).  ``modalities``: those to
    embed (default: every modality whose encoder is given), kept in ``MEDCSP_MODALITIES`` order; an
    encoder serving none of them is an error (its parameters would never get a gradient under DDP).
    """

    def __init__(self, encoders: Mapping[str, nn.Module], embed_dim: int = 512,
                 modalities: Optional[Sequence[str]] = None, init_tau: float = 0.1,
                 learnable_temperature: bool = False, max_logit_scale: float = 100.0):
        super().__init__()
        unknown = sorted(set(encoders) - set(MEDCSP_ENCODER_KEYS))
        if unknown:
            raise ValueError(f"encoder keys must be among {MEDCSP_ENCODER_KEYS}, got {unknown}")
        if modalities is None:
            modalities = [m for m in MEDCSP_MODALITIES if ENCODER_OF[m] in encoders]
        bad = sorted(set(modalities) - set(MEDCSP_MODALITIES))
        if bad or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MEDCSP_MODALITIES}, got {list(modalities)}")
        self.modalities = tuple(m for m in MEDCSP_MODALITIES if m in set(modalities))
        need = {ENCODER_OF[m] for m in self.modalities}
        missing = sorted(need - set(encoders))
        if missing:
            raise ValueError(f"modalities {self.modalities} need encoders {missing}, which were not given")
        unused = sorted(set(encoders) - need)
        if unused:
            raise ValueError(f"encoders {unused} serve none of the modalities {self.modalities}")
        if init_tau <= 0:
            raise ValueError(f"tau must be > 0, got {init_tau}")
        self.encoders = nn.ModuleDict({k: encoders[k] for k in MEDCSP_ENCODER_KEYS if k in need})
        self.embed_dim = int(embed_dim)
        self.projections = nn.ModuleDict({m: nn.Linear(encoder_out_dim(self.encoders[ENCODER_OF[m]], ENCODER_OF[m]),
                                                       self.embed_dim) for m in self.modalities})
        self._init_temperature(init_tau, learnable_temperature, max_logit_scale)

    # ---------------------------------------------------------------- bookkeeping
    @property
    def mask_columns(self) -> list[int]:
        """Columns of the [N, 7] batch mask for ``self.modalities`` (the mask of this model's embeddings)."""
        return [MEDCSP_MODALITIES.index(m) for m in self.modalities]

    def param_groups(self, weight_decay: float, lr: float | None = None,
                     lr_scales: Mapping[str, float] | None = None) -> list[dict]:
        """Optimiser groups by :func:`._common.param_groups`, the convention MEDBind uses (no weight decay
        on biases, norms, positions and the temperature; ``lr_scales``: name prefix -> multiplier of lr)."""
        return param_groups(self, weight_decay, lr, lr_scales)

    def _need(self, modality: str) -> nn.Module:
        if modality not in self.modalities:
            raise ValueError(f"this model does not embed {modality!r} (modalities: {self.modalities})")
        return self.encoders[ENCODER_OF[modality]]

    def _project(self, modality: str, feats: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.projections[modality](feats)
        return F.normalize(z, dim=-1) if normalize else z

    # ---------------------------------------------------------------- per-modality encoding (present rows)
    def tokenize(self, texts: Sequence[str], device=None) -> dict:
        if "text" not in self.encoders:
            raise ValueError(f"this model has no text encoder (modalities: {self.modalities})")
        return self.encoders["text"].tokenize(texts, device=device)

    def encode(self, modality: str, x: torch.Tensor, stays: Optional[torch.Tensor] = None,
               normalize: bool = True) -> torch.Tensor:
        """Rows of one non-text modality -> [n, embed_dim] (``stays`` for ``temporal``)."""
        enc = self._need(modality)
        if modality in TEXT_MODALITIES:
            return self.encode_text(x, modality, normalize)
        if not torch.is_tensor(x):
            raise ValueError(f"{modality!r} input must be a tensor, got {type(x).__name__}")
        if modality in VECTOR_MODALITIES:
            if x.ndim != 2 or x.shape[1] != enc.in_dim:
                raise ValueError(f"{modality!r} input must be [n, {enc.in_dim}], got {tuple(x.shape)}")
            feats = enc(x)
        elif modality == "temporal":
            if x.ndim != 4 or x.shape[-1] != enc.in_features:
                raise ValueError(f"'temporal' input must be [n, S, T, {enc.in_features}], got {tuple(x.shape)}")
            if stays is None or not torch.is_tensor(stays) or tuple(stays.shape) != tuple(x.shape[:2]):
                got = None if stays is None or not torch.is_tensor(stays) else tuple(stays.shape)
                raise ValueError(f"'temporal_stays' must be [n, S] = {list(x.shape[:2])}, got {got}")
            feats = enc(x, stays)
        else:  # image
            if x.ndim != 4:
                raise ValueError(f"'image' input must be [n, C, H, W], got {tuple(x.shape)}")
            feats = enc(x)
        return self._project(modality, feats, normalize)

    def encode_text(self, text, modality: str = "report", normalize: bool = True) -> torch.Tensor:
        """Tokenized dict (or list of strings) -> [n, embed_dim] with the ``note`` or ``report`` projection."""
        if modality not in TEXT_MODALITIES:
            raise ValueError(f"text modality must be one of {TEXT_MODALITIES}, got {modality!r}")
        enc = self._need(modality)
        tok = self._tokens(text)
        return self._project(modality, enc(tok["input_ids"], tok.get("attention_mask")), normalize)

    def _tokens(self, text) -> dict:
        if isinstance(text, str) or isinstance(text, (list, tuple)):
            text = self.tokenize([text] if isinstance(text, str) else list(text),
                                 device=self.projections[self.modalities[0]].weight.device)
        if not isinstance(text, Mapping) or not torch.is_tensor(text.get("input_ids")) or text["input_ids"].ndim != 2:
            raise ValueError("'text_tokens' must be a tokenized dict with 'input_ids' [n_texts, L] "
                             "(and 'attention_mask') or a list of strings")
        return text

    # ---------------------------------------------------------------- forward
    def forward(self, batch: Mapping) -> dict:
        """Embed every modality of the model; see the module docstring for the batch keys."""
        mask = batch.get("mask")
        if not torch.is_tensor(mask) or mask.ndim != 2 or mask.shape[1] != len(MEDCSP_MODALITIES):
            got = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
            raise ValueError(f"'mask' must be [N, {len(MEDCSP_MODALITIES)}] bool (columns {MEDCSP_MODALITIES}), "
                             f"got {got}")
        ref = self.projections[self.modalities[0]].weight
        mask = mask.to(device=ref.device, dtype=torch.bool)
        n = mask.shape[0]
        rows = {m: mask[:, MEDCSP_MODALITIES.index(m)].nonzero().flatten() for m in self.modalities}
        out = {}
        for m in self.modalities:
            if m in TEXT_MODALITIES:
                continue
            x = batch.get(m)
            k = int(rows[m].numel())
            if k == 0:
                if x is not None and torch.is_tensor(x) and x.shape[0] != 0:
                    raise ValueError(f"{m!r} input has {x.shape[0]} rows but mask column {m!r} has none present")
                continue
            if x is None:
                raise ValueError(f"mask column {m!r} has {k} present rows but the batch has no {m!r} input")
            if not torch.is_tensor(x) or x.ndim < 1 or x.shape[0] != k:
                got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
                raise ValueError(f"{m!r} input must hold one row per present {m!r} record ({k}), got {got}")
            stays = batch.get("temporal_stays") if m == "temporal" else None
            out[m] = self.encode(m, x, stays)
        out.update(self._encode_texts(batch, rows))
        return {m: self._scatter(out.get(m), rows[m], n, ref) for m in self.modalities}

    def _encode_texts(self, batch: Mapping, rows: Mapping[str, torch.Tensor]) -> dict:
        """Note / report embeddings of the present rows; each distinct text index used is encoded once."""
        used = [m for m in TEXT_MODALITIES if m in self.modalities and rows[m].numel()]
        idx = {}
        for m in TEXT_MODALITIES:
            if m not in self.modalities:
                continue
            i = batch.get(f"{m}_index")
            k = int(rows[m].numel())
            if i is None:
                if k:
                    raise ValueError(f"mask column {m!r} has {k} present rows but the batch has no '{m}_index'")
                continue
            i = torch.as_tensor(i)
            if i.ndim != 1 or i.shape[0] != k or (i.numel() and i.is_floating_point()):
                raise ValueError(f"'{m}_index' must be a long [{k}] tensor (one text row per present {m!r} "
                                 f"record), got {tuple(i.shape)} {i.dtype}")
            idx[m] = i.long()
        if not used:
            return {}
        tok = self._tokens(batch.get("text_tokens"))
        n_texts = tok["input_ids"].shape[0]
        dev = tok["input_ids"].device
        for m in used:
            if bool(((idx[m] < 0) | (idx[m] >= n_texts)).any()):
                raise ValueError(f"'{m}_index' out of range for {n_texts} texts in 'text_tokens': {idx[m].tolist()}")
        cat = torch.cat([idx[m].to(dev) for m in used])
        uniq, inv = torch.unique(cat, return_inverse=True)
        am = tok.get("attention_mask")
        feats = self.encoders["text"](tok["input_ids"][uniq], None if am is None else am[uniq])
        out, start = {}, 0
        for m in used:
            k = idx[m].shape[0]
            out[m] = self._project(m, feats[inv[start:start + k]])
            start += k
        return out

    def _scatter(self, z: Optional[torch.Tensor], rows: torch.Tensor, n: int, ref: torch.Tensor) -> torch.Tensor:
        """[n_present, d] -> [N, d] with zeros in the absent rows (index_copy: differentiable in z)."""
        if z is None:
            return ref.new_zeros(n, self.embed_dim)
        return z.new_zeros(n, self.embed_dim).index_copy(0, rows.to(z.device), z)

    def extra_repr(self) -> str:
        return (f"modalities={self.modalities}, embed_dim={self.embed_dim}, tau={self.tau:.4g}, "
                f"learnable_temperature={self.learnable_temperature}")


# ----------------------------------------------------------------------------------------------------
# configuration and builders
# ----------------------------------------------------------------------------------------------------
@dataclass
class MEDCSPConfig:
    """MEDCSP model options; the names are profile keys (``from_profile`` reads those a profile has)."""

    medcsp_embed_dim: int = 512
    medcsp_image_model: str = "vit_base_patch16_224"   #: timm model name
    medcsp_image_pretrained_path: Optional[str] = None  #: local timm checkpoint; None = random init
    medcsp_image_model_kwargs: dict = field(default_factory=dict)  #: extra timm.create_model kwargs
    medcsp_image_pool: str = "token"                   #: ViT CLS token (CXREncoder pool)
    cxr_size: int = 224                                #: image side (shared with MEDBind)
    medcsp_text_model_path: Optional[str] = None       #: None -> the profile's text_model_path (None = MiniLM)
    medcsp_text_max_length: int = 256
    medcsp_text_freeze: bool = False                   #: frozen text tower, pooled outputs cached per text (CPU)
    text_pool: str = "cls"
    medcsp_mlp_hidden: int = 256
    medcsp_mlp_layers: int = 2
    medcsp_lstm_hidden: int = 128
    medcsp_lstm_layers: int = 1
    medcsp_dropout: float = 0.1
    medcsp_tau: float = 0.1
    medcsp_learnable_temperature: bool = False
    medcsp_modalities: list = field(default_factory=lambda: list(MEDCSP_MODALITIES))

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> "MEDCSPConfig":
        """Keys of ``profile`` that are fields here, defaults otherwise.  ``medcsp_text_model_path`` absent or
        None falls back to ``text_model_path``; paths expand ``{key}`` references and resolve from the repo root."""
        text = profile.get("medcsp_text_model_path")
        text = profile.get("text_model_path") if text is None else text
        kw = profile_fields(cls, {**profile, "medcsp_text_model_path": text},
                            ("medcsp_image_pretrained_path", "medcsp_text_model_path"))
        if "medcsp_modalities" in kw:
            kw["medcsp_modalities"] = list(kw["medcsp_modalities"])
        return cls(**kw)

    def validate(self) -> "MEDCSPConfig":
        mods = list(self.medcsp_modalities)
        bad = sorted(set(mods) - set(MEDCSP_MODALITIES))
        if bad or not mods:
            raise ValueError(f"medcsp_modalities must be a non-empty subset of {MEDCSP_MODALITIES}, got {mods}")
        if self.text_pool not in ("cls", "mean"):
            raise ValueError(f"text_pool must be 'cls' or 'mean', got {self.text_pool!r}")
        if self.medcsp_tau <= 0:
            raise ValueError(f"medcsp_tau must be > 0, got {self.medcsp_tau}")
        for k in ("medcsp_embed_dim", "medcsp_mlp_hidden", "medcsp_mlp_layers", "medcsp_lstm_hidden",
                  "medcsp_lstm_layers", "medcsp_text_max_length", "cxr_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0.0 <= float(self.medcsp_dropout) < 1.0:
            raise ValueError(f"medcsp_dropout must be in [0, 1), got {self.medcsp_dropout}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["medcsp_modalities"] = [m for m in MEDCSP_MODALITIES if m in set(self.medcsp_modalities)]
        return d


def build_medcsp_model(cfg: "MEDCSPConfig | Mapping[str, Any] | None" = None,
                       input_dims: Optional[Mapping[str, int]] = None, **overrides) -> MEDCSPModel:
    """MEDCSPModel from a :class:`MEDCSPConfig` or a profile dict (plus field ``overrides``).

    ``input_dims``: sizes the data decides - ``icd`` / ``drug`` / ``demo`` vector lengths and ``temporal``
    channels C - required for each of those modalities that is built (extra keys are kept, unused).
    Missing local weights raise :class:`MissingWeightsError` here.  ``model.model_config`` keeps the config
    and the input dims (a JSON-able dict) for :func:`medcsp_model_from_config`.
    """
    if cfg is None:
        cfg = MEDCSPConfig()
    elif not isinstance(cfg, MEDCSPConfig):
        cfg = MEDCSPConfig.from_profile(cfg)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    dims = {str(k): int(v) for k, v in (input_dims or {}).items()}
    mods = [m for m in MEDCSP_MODALITIES if m in set(cfg.medcsp_modalities)]
    lacking = [m for m in mods if m in INPUT_DIM_KEYS and m not in dims]
    if lacking:
        raise ValueError(f"build_medcsp_model needs input_dims for {lacking} (vector sizes of icd / drug / demo, "
                         f"channels C of temporal), got {sorted(dims)}")
    small = [m for m in mods if m in INPUT_DIM_KEYS and dims[m] < 1]
    if small:
        raise ValueError(f"input_dims must be >= 1, got { {m: dims[m] for m in small} }")

    enc: dict[str, nn.Module] = {}
    for m in mods:
        if m in VECTOR_MODALITIES:
            enc[m] = MLPEncoder(dims[m], cfg.medcsp_mlp_hidden, cfg.medcsp_mlp_layers, cfg.medcsp_dropout)
        elif m == "temporal":
            enc[m] = TemporalLSTM(dims[m], cfg.medcsp_lstm_hidden, cfg.medcsp_lstm_layers, cfg.medcsp_dropout)
        elif m == "image":
            enc[m] = CXREncoder(cfg.medcsp_image_model, pretrained_path=cfg.medcsp_image_pretrained_path,
                                pool=cfg.medcsp_image_pool, img_size=cfg.cxr_size,
                                model_kwargs=cfg.medcsp_image_model_kwargs,
                                pretrained_key="medcsp_image_pretrained_path")
        elif "text" not in enc:  # note / report: one shared text encoder
            enc["text"] = TextEncoder(cfg.medcsp_text_model_path, pool=cfg.text_pool,
                                      max_length=cfg.medcsp_text_max_length)
            if cfg.medcsp_text_freeze:
                enc["text"].freeze()
    model = MEDCSPModel(enc, embed_dim=cfg.medcsp_embed_dim, modalities=mods, init_tau=cfg.medcsp_tau,
                        learnable_temperature=cfg.medcsp_learnable_temperature)
    model.model_config = {**cfg.to_dict(), "input_dims": dict(dims)}
    return model


def medcsp_model_from_config(model_config: Mapping[str, Any]) -> MEDCSPModel:
    """Rebuild the (untrained) model of ``model.model_config`` - e.g. from a checkpoint - to load its state dict."""
    names = {f.name for f in fields(MEDCSPConfig)}
    unknown = sorted(set(model_config) - names - {"input_dims"})
    if unknown:
        raise ValueError(f"model_config has keys that are not MEDCSPConfig fields: {unknown}")
    cfg = MEDCSPConfig(**{k: model_config[k] for k in names if k in model_config})
    return build_medcsp_model(cfg, model_config.get("input_dims") or {})
