"""Primitives both methods' contrastive losses share: the temperature, the reduction names, float32-or-wider
compute, and ``Group``, the local-vs-gathered row bookkeeping that makes a DDP loss equal the one-process loss."""
from __future__ import annotations

from typing import Optional, Union

import torch

from .. import distributed as D

__all__ = ["REDUCTIONS", "Scale", "Group", "check_reduction", "compute_dtype", "resolve_logit_scale"]

REDUCTIONS = ("mean", "sum", "batch")
Scale = Union[float, torch.Tensor]


def resolve_logit_scale(tau: Optional[Scale], logit_scale: Optional[Scale]) -> Scale:
    if logit_scale is not None:
        return logit_scale.to(compute_dtype(logit_scale)) if torch.is_tensor(logit_scale) else float(logit_scale)
    if tau is None:
        raise ValueError("give tau or logit_scale")
    if torch.is_tensor(tau):
        return 1.0 / tau.to(compute_dtype(tau))
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return 1.0 / float(tau)


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


class Group:
    """Row bookkeeping for one set of aligned items: local rows vs the gathered (global) rows."""

    def __init__(self, n_local: int, device: torch.device, distributed: Optional[bool]):
        use = D.active() if distributed is None else (bool(distributed) and D.active())
        self.dist = use
        self.sizes = D.gather_sizes(n_local, device=device) if use else [int(n_local)]
        self.rank = D.rank() if use else 0
        self.world = len(self.sizes)
        self.offset = sum(self.sizes[: self.rank])
        self.total = sum(self.sizes)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return D.gather_with_grad(x, sizes=self.sizes) if self.dist else x

    def nograd(self, x: torch.Tensor) -> torch.Tensor:
        return D.gather_no_grad(x, sizes=self.sizes) if self.dist else x

    def local_ids(self, device) -> torch.Tensor:
        return torch.arange(self.sizes[self.rank], device=device) + self.offset


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 kept (the loop references in the tests use it)."""
    return torch.promote_types(x.dtype, torch.float32)
