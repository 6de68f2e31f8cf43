"""Shared helpers of the model package: the missing-weights error, local-path checks, optimiser
parameter groups and the contrastive temperature (one convention for every model of the suite)."""
from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError


class MissingWeightsError(ConfigError, FileNotFoundError):
    """A profile names local weights that are not on disk.  Nothing is ever downloaded instead."""


def require_path(path, key: str, what: str) -> Path:
    """Return ``path`` as a Path if it exists, else raise :class:`MissingWeightsError` naming it and ``key``."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise MissingWeightsError(
            f"{what} not found at {str(p)!r} (profile key {key!r}). Weights are never downloaded: put the "
            f"checkpoint there, point {key!r} at a local copy, or set it to null for random initialisation"
            + (" / the packaged MiniLM." if key == "text_model_path" else "."))
    return p


def resolve_path(value: str, profile: Mapping) -> str:
    """A path key's value with ``{key}`` references to other profile keys expanded, relative paths from the repo
    root (``packaged`` / ``minilm`` names of the packaged text model pass unchanged)."""
    pattern = re.compile(r"\{(\w+)\}")
    for _ in range(10):
        new = pattern.sub(lambda m: str(profile[m.group(1)]) if m.group(1) in profile else m.group(0), value)
        if new == value:
            break
        value = new
    if value.strip().lower() in ("packaged", "minilm", "all-minilm-l6-v2"):
        return value
    from .. import ROOT

    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (ROOT / p).resolve())


def profile_fields(cls, profile: Mapping, path_keys=()) -> dict:
    """The keys of ``profile`` that are fields of dataclass ``cls``; set ``path_keys`` resolved (:func:`resolve_path`)."""
    kw = {f.name: profile[f.name] for f in fields(cls) if f.name in profile}
    for k in path_keys:
        if kw.get(k):
            kw[k] = resolve_path(str(kw[k]), profile)
    return kw


#: parameter-name fragments without weight decay (besides every 1-d / 0-d tensor)
NO_DECAY_NAMES = ("pos_embed", "cls_token", "relative_position_bias_table", "absolute_pos_embed",
                  "log_logit_scale", "position_embeddings", "token_type_embeddings")


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                 lr_scales: Mapping[str, float] | None = None) -> list[dict]:
    """open_clip convention: no weight decay on biases, norms (any 1-d / 0-d tensor), positions, CLS
    tokens, relative-position tables and the temperature. ``lr_scales`` maps a parameter-name prefix
    (e.g. ``encoders.text``) to a multiplier of ``lr`` (a pretrained encoder next to random ones)."""
    scales = dict(lr_scales or {})
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or any(s in name for s in NO_DECAY_NAMES)
        scale = next((v for k, v in scales.items() if name.startswith(k)), 1.0)
        groups.setdefault((no_decay, scale), []).append(p)
    out = []
    for (no_decay, scale), params in sorted(groups.items()):
        g = {"params": params, "weight_decay": 0.0 if no_decay else float(weight_decay)}
        if lr is not None:
            g["lr"] = float(lr) * scale
        out.append(g)
    return out


class Temperature:
    """Mixin: the contrastive temperature as ``log_logit_scale`` = log(1/tau), a buffer (fixed tau, the papers')
    or a Parameter (learnable, CLIP style, clamped at ``max_logit_scale``); call :meth:`_init_temperature` in
    ``__init__``.  ``logit_scale`` (1/tau, a 0-d tensor) goes to the losses."""

    def _init_temperature(self, init_tau: float, learnable: bool, max_logit_scale: float) -> None:
        if init_tau <= 0:
            raise ValueError(f"tau must be > 0, got {init_tau}")
        self.learnable_temperature = bool(learnable)
        self.max_logit_scale = float(max_logit_scale)
        init = torch.tensor(math.log(1.0 / init_tau), dtype=torch.float32)
        if self.learnable_temperature:
            self.log_logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_logit_scale", init)

    @property
    def logit_scale(self) -> torch.Tensor:
        """1/tau as a 0-d tensor (learnable: exp of the log scale, clamped at ``max_logit_scale``)."""
        if self.learnable_temperature:
            return self.log_logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()
        return self.log_logit_scale.exp()

    @property
    def tau(self) -> float:
        return float(1.0 / self.logit_scale.detach())
