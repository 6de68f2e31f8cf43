"""Small torch.distributed helpers for the contrastive losses (open_clip ``gather_features`` pattern).

* ``gather_with_grad(x)`` concatenates every rank's ``x`` along dim 0 through
  ``torch.distributed.nn.functional.all_gather`` (autograd-aware: the backward sums the gradients
  that every rank's loss sends to this rank's rows; DDP's gradient averaging then divides by the
  world size).  Identity when not distributed.
* ``gather_no_grad(x)`` does the same for tensors that carry no gradient (int/bool text keys,
  pair masks, label vectors, counts).

Variable batch sizes per rank ARE supported (pad-and-mask): the row counts are all-gathered first
(one tiny int64 collective), every rank pads its rows to the largest count, gathers, and the padding
rows are sliced off again.  Padding rows receive zero gradient.  Every rank must call these helpers
the same number of times in the same order (as for any collective).

Pitfalls handled here:
* ``import torch.distributed.nn`` is explicit (``torch.distributed.nn`` is not imported by
  ``import torch.distributed``; CONVENTIONS.md item 14).
* If autograd is recording but a rank's local tensor does not require grad (e.g. a rank whose batch
  had no CXR passes a constant ``zeros(0, d)``), the tensor is turned into a grad-requiring leaf so
  that this rank still takes part in the collective of the backward pass; otherwise the other ranks
  would wait forever in their backward all-to-all.
* gloo cannot all-gather bool tensors and zero-element tensors are avoided: bools travel as uint8,
  and a gather where every rank has zero rows is answered locally.

``launch(module, args, nproc, overrides)`` starts a module's CLI under ``torchrun`` (one process per GPU), as the
pre-training notebooks (02, 09) do when they see several GPUs; with ``nnodes``/``rdzv_endpoint`` the same call on
every machine starts one multi-node job (c10d rendezvous; README "Several machines").
"""
from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
from typing import Mapping, Optional, Sequence

import torch
import torch.distributed as dist
import torch.distributed.nn  # noqa: F401  (explicit: registers torch.distributed.nn.functional)
import torch.distributed.nn.functional as dist_fn

__all__ = [
    "is_dist",
    "rank",
    "world_size",
    "gather_sizes",
    "gather_with_grad",
    "gather_no_grad",
    "all_reduce_mean",
    "torchrun_command",
    "launch",
]


def is_dist() -> bool:
    """True when torch.distributed is available and a process group is initialised (world > 1 or not)."""
    return dist.is_available() and dist.is_initialized()


def rank(group: Optional[object] = None) -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank(group=group) if is_dist() else 0


def world_size(group: Optional[object] = None) -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size(group=group) if is_dist() else 1


def active(group: Optional[object] = None) -> bool:
    return is_dist() and dist.get_world_size(group=group) > 1


def gather_sizes(n: int, device: Optional[torch.device] = None, group: Optional[object] = None) -> list[int]:
    """All-gather one integer per rank (e.g. a local row count); ``[n]`` when not distributed."""
    if not active(group):
        return [int(n)]
    t = torch.tensor([int(n)], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size(group=group))]
    dist.all_gather(out, t, group=group)
    return [int(o.item()) for o in out]


def _pad_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[0] == n:
        return x.contiguous()
    pad = x.new_zeros((n - x.shape[0],) + tuple(x.shape[1:]))
    return torch.cat([x, pad], dim=0)


def gather_with_grad(
    x: torch.Tensor, group: Optional[object] = None, sizes: Optional[list[int]] = None
) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] of every rank along dim 0, keeping the autograd graph.

    Rows are ordered by rank (rank 0's rows first), so this rank's rows start at
    ``sum(sizes[:rank])``.  ``sizes`` (the per-rank row counts, from :func:`gather_sizes`) may be
    passed to save one collective.  Not distributed: returns ``x`` itself.
    """
    if not active(group):
        return x
    if sizes is None:
        sizes = gather_sizes(x.shape[0], device=x.device, group=group)
    if x.shape[0] != sizes[dist.get_rank(group=group)]:
        raise ValueError(f"gather_with_grad: local rows {x.shape[0]} != sizes[rank] {sizes}")
    n_max = max(sizes)
    if n_max == 0:  # nothing anywhere: answer locally (zero-element collectives are avoided)
        return x
    if torch.is_grad_enabled() and not x.requires_grad and x.is_floating_point():
        # keep this rank inside the backward collective (see module docstring)
        x = x.detach().requires_grad_(True)
    parts = dist_fn.all_gather(_pad_rows(x, n_max), group=group) if group is not None \
        else dist_fn.all_gather(_pad_rows(x, n_max))
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)


def gather_no_grad(
    x: torch.Tensor, group: Optional[object] = None, sizes: Optional[list[int]] = None
) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] of every rank along dim 0 without gradient (keys, masks, labels).

    Any dtype (bool travels as uint8).  Variable row counts per rank are fine.  Not distributed:
    returns ``x`` itself.
    """
    if not active(group):
        return x
    if sizes is None:
        sizes = gather_sizes(x.shape[0], device=x.device, group=group)
    n_max = max(sizes)
    if n_max == 0:
        return x.detach()
    is_bool = x.dtype == torch.bool
    y = x.detach().to(torch.uint8) if is_bool else x.detach()
    y = _pad_rows(y, n_max)
    out = [torch.empty_like(y) for _ in sizes]
    dist.all_gather(out, y, group=group)
    res = torch.cat([o[:s] for o, s in zip(out, sizes)], dim=0)
    return res.to(torch.bool) if is_bool else res


def all_reduce_mean(x: torch.Tensor, group: Optional[object] = None) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, for logging; identity when not distributed."""
    if not active(group):
        return x.detach()
    y = x.detach().clone().float()
    dist.all_reduce(y, group=group)
    return y / dist.get_world_size(group=group)


# ------------------------------------------------------------------------------------------------ launching
def shutdown() -> None:
    """Destroy the default process group, then collect garbage while the interpreter is whole.

    Why: autograd graphs of the gathers above form reference cycles that can still hold tensors a gloo
    work object points to; freed only at interpreter finalisation, they abort the process ("terminate
    called without an active exception", exit -6) after all work is done. Measured on torch 2.14 CPU,
    2 gloo ranks running tests/ddp_worker.py: 5 of 86 runs aborted a rank without the collection, 0 of
    120 with it. No-op when no process group is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def torchrun_command(module: str, args: Sequence[str] = (), nproc: Optional[int] = None,
                     overrides: Optional[Mapping] = None, *, nnodes: int | str = 1,
                     rdzv_endpoint: Optional[str] = None, rdzv_id: Optional[str] = None,
                     rdzv_backend: str = "c10d", node_rank: Optional[int] = None,
                     local_addr: Optional[str] = None) -> list[str]:
    """``python -m torch.distributed.run <rendezvous> --nproc_per_node=N -m <module> <args> [--set K=V ...]``.

    One machine (``nnodes=1``, no endpoint): ``--standalone``. Several machines: the SAME command on each,
    ``--nnodes=M --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT --rdzv_id=ID``; c10d numbers the nodes itself (the
    machine that is HOST serves the rendezvous), so no node rank is needed (``node_rank`` is passed when given, for
    the ``static`` backend). ``nnodes`` may be a ``"MIN:MAX"`` range. ``rdzv_id`` defaults to a digest of the
    module, its arguments and overrides, which every machine computes alike. ``local_addr``: the address this
    node advertises (default: its host name; give an IP where names do not resolve between machines).
    ``nproc`` defaults to the visible GPUs; ``overrides`` (profile keys) travel as ``--set`` with JSON values
    (JSON is YAML, so every CLI's ``config.parse_overrides`` reads back the same values)."""
    nproc = torch.cuda.device_count() if nproc is None else int(nproc)
    sets = [f"{k}={json.dumps(v)}" for k, v in (overrides or {}).items()]
    cli = [*map(str, args), *(["--set", *sets] if sets else [])]
    if str(nnodes) == "1" and rdzv_endpoint is None:
        rdzv = ["--standalone"]
    else:
        if not rdzv_endpoint:
            raise ValueError(f"torchrun over nnodes={nnodes}: give rdzv_endpoint='HOST:PORT' (a machine of the job "
                             f"every node can reach; the same on every node)")
        if rdzv_id is None:
            rdzv_id = "medbind-" + hashlib.sha256(json.dumps([module, cli]).encode()).hexdigest()[:12]
        rdzv = [f"--nnodes={nnodes}", f"--rdzv_backend={rdzv_backend}", f"--rdzv_endpoint={rdzv_endpoint}",
                f"--rdzv_id={rdzv_id}", *([f"--node_rank={int(node_rank)}"] if node_rank is not None else []),
                *([f"--local_addr={local_addr}"] if local_addr else [])]
    return [sys.executable, "-m", "torch.distributed.run", *rdzv, f"--nproc_per_node={nproc}", "-m", module, *cli]


def launch(module: str, args: Sequence[str] = (), nproc: Optional[int] = None,
           overrides: Optional[Mapping] = None, **multinode) -> subprocess.CompletedProcess:
    """Run ``module``'s CLI under torchrun (``torchrun_command``; ``multinode``: its ``nnodes``, ``rdzv_*``,
    ``node_rank``, ``local_addr``) and wait; a failing rank raises ``subprocess.CalledProcessError``."""
    return subprocess.run(torchrun_command(module, args, nproc, overrides, **multinode), check=True)
