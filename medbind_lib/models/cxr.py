"""CXR encoder: any timm image model, pooled to one vector (paper: Swin-T, global average pooling).

Swin has no CLS token, so the paper's pooling is the global average of the last stage (``pool="avg"``).
timm's pools: ``avg`` | ``max`` | ``avgmax`` | ``catavgmax`` (2x width) for every model, plus ``token``
(CLS) and ``map`` (attention pool) for ViTs.  Sizes that work on CPU (measured, timm 1.0.31):

* ``swin_tiny_patch4_window7_224`` at ``img_size`` 64 or 112: works; timm clamps the 7x7 window to the
  smaller late-stage maps (64 px: stage maps 16/8/4/2).  27.5 M parameters whatever the size.  Pass
  ``model_kwargs=dict(window_size=4)`` at 64 px for windows that tile every stage exactly.
* ``resnet18`` / ``resnet10t``: any size >= 32 (global pool).
* ``vit_tiny_patch16_224`` at 64 / 112: works (4x4 / 7x7 patches), 5.5 M parameters; ``pool="token"``.
* ``test_vit`` / ``test_resnet`` / ``test_convnext``: timm's tiny test nets, for unit tests.

A checkpoint is a local file (``.pth``/``.bin``/``.safetensors``, raw state dict or one wrapped in
``state_dict``/``model``) or a local timm/HF-style folder (``model.safetensors`` / ``pytorch_model.bin``).
It goes through timm's own pretrained loader, so its filter (position-embedding / relative-bias
resizing for another ``img_size``), ``in_chans`` adaptation and classifier removal apply.
"""
from __future__ import annotations

from typing import Optional

import timm
import torch
from torch import nn

from ._common import require_path

POOLS = ("avg", "max", "avgmax", "catavgmax", "token", "map")


class CXREncoder(nn.Module):
    """``timm.create_model(name, pretrained=False, num_classes=0, global_pool=pool)`` -> [B, out_dim].

    ``pretrained_path``: local checkpoint (file or folder); missing -> :class:`MissingWeightsError`
    naming the path and ``pretrained_key``.  ``img_size=None`` keeps the model's default.
    ``channels_last``: convert weights and inputs to NHWC memory format (faster convs on GPU / oneDNN).
    """

    def __init__(self, name: str = "swin_tiny_patch4_window7_224", pretrained_path: Optional[str] = None,
                 pool: str = "avg", img_size: Optional[int] = None, in_chans: int = 3, drop_path: float = 0.0,
                 channels_last: bool = False, model_kwargs: Optional[dict] = None,
                 pretrained_key: str = "cxr_pretrained_path"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"cxr pool must be one of {POOLS}, got {pool!r}")
        kw = dict(model_kwargs or {})
        if img_size is not None:
            kw["img_size"] = int(img_size)
        if drop_path:
            kw["drop_path_rate"] = float(drop_path)
        if pretrained_path:
            p = require_path(pretrained_path, pretrained_key, f"CXR encoder weights for {name!r}")
            overlay = dict(source="local-dir", file=str(p)) if p.is_dir() else dict(file=str(p))
            kw.update(pretrained=True, pretrained_cfg_overlay=overlay)
        else:
            kw["pretrained"] = False
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r} (profile key 'cxr_model')")
        try:
            try:
                self.model = timm.create_model(name, num_classes=0, global_pool=pool, in_chans=in_chans, **kw)
            except TypeError as e:  # CNNs take any input size and have no img_size argument
                if "img_size" not in str(e) or "img_size" not in kw:
                    raise
                kw.pop("img_size")
                self.model = timm.create_model(name, num_classes=0, global_pool=pool, in_chans=in_chans, **kw)
        except (AssertionError, ValueError, TypeError) as e:
            if "pool" in str(e).lower():
                raise ValueError(f"timm model {name!r} does not support cxr_pool={pool!r}: {e}") from e
            raise
        self.name, self.pool, self.img_size, self.pretrained_path = name, pool, img_size, pretrained_path
        self.out_dim = int(self.model.num_features) * (2 if pool == "catavgmax" else 1)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"CXR input must be [B, C, H, W], got shape {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def extra_repr(self) -> str:
        return f"name={self.name}, pool={self.pool}, img_size={self.img_size}, out_dim={self.out_dim}"

