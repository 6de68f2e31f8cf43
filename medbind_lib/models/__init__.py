"""Encoders and the MEDBind model: ``build_model(profile_or_config) -> MEDBindModel``.

* :class:`CXREncoder` (timm; paper Swin-T, global average pool), :class:`ECGTransformer` (CLS token, SDPA),
  :class:`TextEncoder` (local BERT: BioBERT path or the packaged all-MiniLM-L6-v2).
* :class:`MEDBindModel`: modality-keyed encoders, one Linear projection per modality, L2 norm, temperature.
* :class:`ModelConfig`: every model option; :func:`build_model` reads the keys a profile has and uses the
  defaults below for the others.  One model class serves every variant (MEDBind_BD / _NM, ECG-CLIP,
  CXR-CLIP, MedCLIP-style): the loss picks the modalities, ``ModelConfig.modalities`` may leave an unused
  encoder out (a DDP run then has no unused parameters).
* :func:`count_parameters`, :func:`flops_per_sample` (torch FlopCounterMode, for model FLOPs utilisation).

Weights are never downloaded: a profile naming a local checkpoint that is not on disk fails at build time
with :class:`MissingWeightsError` (a ``ConfigError``) naming the path and the profile key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

from ._common import MissingWeightsError, profile_fields
from .cxr import CXREncoder
from .ecg import ECGTransformer
from .medbind import MEDBindModel
from .medcsp import (MEDCSP_MODALITIES, MEDCSPConfig, MEDCSPModel, MLPEncoder, TemporalLSTM, build_medcsp_model,
                     medcsp_model_from_config)
from .text import TextEncoder, packaged_minilm_path

__all__ = ["CXREncoder", "ECGTransformer", "TextEncoder", "MEDBindModel", "ModelConfig", "MissingWeightsError",
           "build_model", "build_encoders", "packaged_minilm_path", "count_parameters", "parameter_summary",
           "flops_per_sample", "MEDCSP_MODALITIES", "MEDCSPConfig", "MEDCSPModel", "MLPEncoder", "TemporalLSTM",
           "build_medcsp_model", "medcsp_model_from_config"]


@dataclass
class ModelConfig:
    """Model options.  The names are profile keys (``build_model`` reads those present in a profile)."""

    #: encoders to build, among cxr / ecg / text (e.g. ("ecg", "text") for ECG-CLIP only)
    modalities: tuple = ("cxr", "ecg", "text")
    # --- CXR (timm)
    cxr_model: str = "swin_tiny_patch4_window7_224"   #: timm model name (paper: Swin-T)
    cxr_pretrained_path: Optional[str] = None         #: local timm checkpoint (file or folder); None = random init
    cxr_pool: str = "avg"                             #: avg | max | avgmax | catavgmax (| token | map for ViTs)
    cxr_size: int = 224                               #: input side, pixels (passed to timm as img_size)
    cxr_in_chans: int = 3                             #: input channels (grey CXRs are replicated to 3)
    cxr_drop_path: float = 0.0                        #: stochastic depth rate
    cxr_channels_last: bool = False                   #: NHWC memory format for weights and inputs
    cxr_model_kwargs: dict = field(default_factory=dict)  #: extra timm.create_model kwargs (e.g. window_size)
    # --- ECG transformer
    ecg_leads: int = 12
    ecg_samples: Optional[int] = None                 #: samples per record; None = ecg_fs * ecg_seconds (1000)
    ecg_patch: int = 1                                #: samples per token (paper 1: each 12-vector is a token)
    ecg_dim: int = 256
    ecg_depth: int = 4
    ecg_heads: int = 4
    ecg_mlp_ratio: float = 4.0
    ecg_dropout: float = 0.1
    # --- text
    text_model_path: Optional[str] = None             #: local HF folder (BioBERT); None = packaged MiniLM
    text_pool: str = "cls"                            #: cls (paper) | mean
    text_max_length: Optional[int] = None             #: word-piece truncation; None = tokenizer max (512)
    text_freeze: bool = False                         #: frozen text BERT, pooled outputs cached per text
    # --- joint space
    embed_dim: int = 256
    tau: float = 0.07
    learnable_temperature: bool = False
    shared_text_projection: bool = True               #: CXR reports and ECG texts share the text projection
    max_logit_scale: float = 100.0                    #: clamp of a learnable 1/tau

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any]) -> "ModelConfig":
        """Take the keys of ``profile`` that are fields here (others are ignored); defaults otherwise.

        ``ecg_samples`` absent or None -> round(ecg_fs * ecg_seconds) when the profile has them.  Path keys
        expand ``{key}`` references to other profile keys and resolve relative paths from the repo root.
        """
        kw = profile_fields(cls, profile, ("cxr_pretrained_path", "text_model_path"))
        if kw.get("ecg_samples") is None and "ecg_fs" in profile and "ecg_seconds" in profile:
            kw["ecg_samples"] = int(round(float(profile["ecg_fs"]) * float(profile["ecg_seconds"])))
        if "modalities" in kw:
            kw["modalities"] = tuple(kw["modalities"])
        return cls(**kw)

    def validate(self) -> "ModelConfig":
        bad = sorted(set(self.modalities) - {"cxr", "ecg", "text"})
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of ('cxr', 'ecg', 'text'), got {self.modalities}")
        if self.text_pool not in ("cls", "mean"):
            raise ValueError(f"text_pool must be 'cls' or 'mean', got {self.text_pool!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["modalities"] = list(self.modalities)
        return d


def build_encoders(cfg: ModelConfig) -> dict[str, nn.Module]:
    enc: dict[str, nn.Module] = {}
    if "cxr" in cfg.modalities:
        enc["cxr"] = CXREncoder(cfg.cxr_model, pretrained_path=cfg.cxr_pretrained_path, pool=cfg.cxr_pool,
                                img_size=cfg.cxr_size, in_chans=cfg.cxr_in_chans, drop_path=cfg.cxr_drop_path,
                                channels_last=cfg.cxr_channels_last, model_kwargs=cfg.cxr_model_kwargs)
    if "ecg" in cfg.modalities:
        enc["ecg"] = ECGTransformer(n_leads=cfg.ecg_leads, n_samples=cfg.ecg_samples or 1000, patch=cfg.ecg_patch,
                                    dim=cfg.ecg_dim, depth=cfg.ecg_depth, heads=cfg.ecg_heads,
                                    mlp_ratio=cfg.ecg_mlp_ratio, dropout=cfg.ecg_dropout)
    if "text" in cfg.modalities:
        enc["text"] = TextEncoder(cfg.text_model_path, pool=cfg.text_pool, max_length=cfg.text_max_length)
        if cfg.text_freeze:
            enc["text"].freeze()
    return enc


def build_model(cfg: "ModelConfig | Mapping[str, Any] | None" = None, **overrides) -> MEDBindModel:
    """MEDBindModel from a :class:`ModelConfig` or a profile dict (only the keys it has; defaults otherwise).

    Missing local weights raise :class:`MissingWeightsError` here, before any training starts.  The config
    used is kept as ``model.model_config`` (a dict, for checkpoints).
    """
    if cfg is None:
        cfg = ModelConfig()
    elif not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_profile(cfg)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    model = MEDBindModel(build_encoders(cfg), embed_dim=cfg.embed_dim, learnable_temperature=cfg.learnable_temperature,
                         init_tau=cfg.tau, shared_text_projection=cfg.shared_text_projection,
                         max_logit_scale=cfg.max_logit_scale)
    model.model_config = cfg.to_dict()
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


def parameter_summary(model: MEDBindModel) -> dict[str, int]:
    """Parameters per encoder, projections and total."""
    out = {k: count_parameters(v) for k, v in model.encoders.items()}
    out["projections"] = count_parameters(model.projections)
    out["total"] = count_parameters(model)
    return out


def _batch_size(batch: Mapping) -> int:
    n = 0
    for v in batch.values():
        if torch.is_tensor(v) and v.ndim > 0:
            n = max(n, int(v.shape[0]))
        elif isinstance(v, Mapping) and torch.is_tensor(v.get("input_ids")):
            n = max(n, int(v["input_ids"].shape[0]))
    return n


def flops_per_sample(model: nn.Module, batch: Mapping, backward: bool = False, n_samples: Optional[int] = None,
                     breakdown: bool = False):
    """FLOPs of one forward (``backward=True``: forward + backward of the sum of the outputs) per sample,
    counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convs, attention; elementwise ops are
    not counted, as in the usual MFU convention).  ``n_samples``: divisor, default the largest first
    dimension in ``batch``.  ``breakdown=True`` also returns {module name: flops per sample} for the top
    three levels (``MEDBindModel``, ``MEDBindModel.encoders.cxr``, ``MEDBindModel.projections.text``...).
    """
    from torch.utils.flop_counter import FlopCounterMode

    n = int(n_samples or _batch_size(batch))
    if n <= 0:
        raise ValueError("flops_per_sample: the batch holds no samples")
    counter = FlopCounterMode(display=False)
    with counter:
        if backward:
            out = model(batch)
            loss = sum(v.float().sum() for v in out.values()) if isinstance(out, Mapping) else out.float().sum()
            loss.backward()
        else:
            with torch.no_grad():
                model(batch)
    total = counter.get_total_flops() / n
    if not breakdown:
        return total
    per = {name: sum(c.values()) / n for name, c in counter.get_flop_counts().items()
           if name != "Global" and name.count(".") <= 2}
    return total, per
