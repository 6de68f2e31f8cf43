"""Helper for tests/test_ddp.py: a fixed tri-modal problem, its per-rank split, and the gloo worker.

A *problem* is a fixed random batch of samples (CXR only, ECG only, or both = a pair), raw features
per modality and integer text keys with duplicates (also across ranks).  Embeddings come from a tiny
shared module (one Linear per input kind + a learnable logit scale), so parameter gradients exist.
A MEDCSP problem (records of two sources with missing modalities, patients shared across sources and
ranks, times, diagnosis histories) runs through MEDCSPLoss the same way.
"""
from __future__ import annotations

import datetime
import math
import os
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RAW, DIM = 5, 8

# (name, kwargs for MEDBindLoss, split); split "even" = halves, "uneven" = rank 0 gets the 3 CXR-only samples
# (no ECG rows, no pairs on rank 0), "uneven_const" = the same, with rank 0's empty ECG inputs passed as
# constant zeros(0, d) tensors that do not require grad (must not deadlock the backward collectives)
CONFIGS = [
    ("bd_constant_even", dict(variant="medbind_bd", emcl_scale="constant"), "even"),
    ("bd_negatives_uneven", dict(variant="medbind_bd", emcl_scale="negatives"), "uneven"),
    ("bd_none_batch_uneven", dict(variant="medbind_bd", emcl_scale="none", reduction="batch"), "uneven"),
    ("nm_sum_even", dict(variant="medbind_nm", reduction="sum"), "even"),
    ("ecg_clip_even", dict(variant="ecg_clip"), "even"),
    ("nm_uneven_const_empty", dict(variant="medbind_nm"), "uneven_const"),
    ("cxr_clip_even", dict(variant="cxr_clip"), "even"),
    ("medclip_cosine_uneven", dict(variant="medclip", medclip_label_sim="cosine"), "uneven"),
]


# MEDCSP: 12 records, the first 3 EHR (the uneven split gives rank 0 EHR records only, hence no imaging
# record at all for medcsp_single on rank 0)
MEDCSP_MODS = ("icd", "note", "image", "report")
MEDCSP_CONFIGS = [
    ("medcsp_even", dict(variant="medcsp"), "even"),
    ("medcsp_keys_uneven", dict(variant="medcsp", la_negatives="batch", lp_direction="ehr_to_cxr",
                                ld_target="softmax", ld_same_patient=True, ld_direction="cxr_to_ehr",
                                lp_negatives="source", reduction="mean"), "uneven"),
    ("medcsp_raw_sum_uneven", dict(variant="medcsp", ld_target="raw", reduction="sum"), "uneven"),
    ("medcsp_a_p_uneven", dict(variant="medcsp_a_p", lp_direction="cxr_to_ehr"), "uneven"),
    ("medcsp_single_uneven", dict(variant="medcsp_single", la_negatives="batch"), "uneven"),
]
COUNT_KEYS = {"n_samples", "n_cxr", "n_ecg", "m_pairs",
              "n_records", "n_ehr", "la_anchors", "lp_anchors", "lp_positives_mean", "ld_anchors"}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.ModuleDict({k: nn.Linear(RAW, DIM) for k in ("cxr", "cxr_text", "ecg", "ecg_text")})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, raw: dict) -> dict:
        return {k: F.normalize(self.proj[k](raw[k]), dim=-1) for k in self.proj}


def make_problem(seed: int = 0, n_samples: int = 12) -> dict:
    g = torch.Generator().manual_seed(seed)
    # kinds: 0 = CXR only, 1 = ECG only, 2 = both.  First 3 samples CXR-only (uneven split gives them to rank 0).
    kinds = [0, 0, 0] + [2, 1, 2, 0, 2, 1, 2, 2, 1][: n_samples - 3]
    return {
        "kinds": kinds,
        "x": {k: torch.randn(n_samples, RAW, generator=g) for k in ("cxr", "cxr_text", "ecg", "ecg_text")},
        "keys": {k: torch.randint(0, 4, (n_samples,), generator=g) for k in ("cxr", "ecg")},
        "labels": (torch.rand(n_samples, 4, generator=g) < 0.4).float(),
    }


def batch_for(problem: dict, sample_ids: list[int], model: Tiny, const_empty: bool = False) -> dict:
    """Compact batch (the MEDBindLoss contract) for the given samples."""
    kinds = problem["kinds"]
    ci = [s for s in sample_ids if kinds[s] in (0, 2)]
    ei = [s for s in sample_ids if kinds[s] in (1, 2)]
    raw = {k: problem["x"][k][ci if k.startswith("cxr") else ei] for k in problem["x"]}
    emb = model(raw)
    if const_empty:
        emb = {k: (torch.zeros(0, DIM) if v.shape[0] == 0 else v) for k, v in emb.items()}
    pairs = [(ci.index(s), ei.index(s)) for s in sample_ids if kinds[s] == 2]
    return {
        **emb,
        "cxr_text_keys": problem["keys"]["cxr"][ci],
        "ecg_text_keys": problem["keys"]["ecg"][ei],
        "cxr_labels": problem["labels"][ci],
        "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
        "n_samples": len(sample_ids),
    }


class TinyMEDCSP(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.ModuleDict({k: nn.Linear(RAW, DIM) for k in MEDCSP_MODS})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.1)))

    def forward(self, raw: dict) -> dict:
        return {k: self.proj[k](raw[k]) for k in self.proj}


def make_medcsp_problem(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    sources = torch.tensor([0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1])
    n = len(sources)
    mask = torch.rand(n, len(MEDCSP_MODS), generator=g) < 0.6
    mask[:, 0] |= (sources == 0) & ~mask.any(1)
    mask[:, 2] |= (sources == 1) & ~mask.any(1)
    patients = torch.tensor([0, 1, 2, 0, 1, 1, 2, 0, 0, 3, 3, 2])
    hist = (torch.rand(4, 6, generator=g) < 0.5).float()
    hist[3] = 0.0  # a patient without diagnosis history
    return {"x": {k: torch.randn(n, RAW, generator=g) for k in MEDCSP_MODS}, "mask": mask, "sources": sources,
            "patients": patients, "times": torch.tensor([0., 5, 40, 20, 8, 30, 70, 90, 10, 3, 60, 45]),
            "histories": hist[patients]}


def run_medcsp_config(problem, record_ids, kwargs, seed: int = 0):
    """MEDCSPLoss dict and parameter grads for one (possibly per-rank) set of records."""
    from medbind_lib.losses import MEDCSPLoss

    torch.manual_seed(seed)
    model = TinyMEDCSP()
    ids = torch.tensor(record_ids, dtype=torch.long)
    batch = {"embeddings": model({k: v[ids] for k, v in problem["x"].items()}),
             **{k: problem[k][ids] for k in ("mask", "sources", "patients", "times", "histories")}}
    out = MEDCSPLoss(**kwargs)(batch, logit_scale=model.logit_scale.exp())
    out["loss"].backward()
    grads = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    return out, grads


def split(n: int, world: int, rank: int, how: str) -> list[int]:
    if how == "even":
        per = n // world
        return list(range(rank * per, (rank + 1) * per))
    assert world == 2
    assert how in ("uneven", "uneven_const")
    return list(range(0, 3)) if rank == 0 else list(range(3, n))


def run_config(problem, sample_ids, kwargs, seed: int = 0, const_empty: bool = False):
    """Loss dict (floats) and parameter grads for one (possibly per-rank) batch."""
    from medbind_lib.losses import MEDBindLoss

    torch.manual_seed(seed)
    model = Tiny()
    out = MEDBindLoss(**kwargs)(batch_for(problem, sample_ids, model, const_empty), logit_scale=model.logit_scale.exp())
    out["loss"].backward()
    grads = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    return out, grads


def compute(rank: int, world: int, outdir: str) -> None:
    """Every config on this rank's share of the problems (the process group is up); rank 0 saves results.pt."""
    import torch.distributed as dist

    from medbind_lib import distributed as D

    problem = make_problem()
    n = len(problem["kinds"])
    results = {}
    for name, kwargs, how in CONFIGS:
        out, grads = run_config(problem, split(n, world, rank, how), kwargs,
                                const_empty=how == "uneven_const")
        for g in grads.values():  # what DDP does: average the gradients over ranks
            dist.all_reduce(g)
            g /= world
        terms = {k: float(D.all_reduce_mean(v)) if k not in COUNT_KEYS else float(v) for k, v in out.items()}
        results[name] = {"terms": terms, "grads": grads}
    mproblem = make_medcsp_problem()
    for name, kwargs, how in MEDCSP_CONFIGS:
        out, grads = run_medcsp_config(mproblem, split(len(mproblem["sources"]), world, rank, how), kwargs)
        for g in grads.values():
            dist.all_reduce(g)
            g /= world
        terms = {k: float(D.all_reduce_mean(v)) if k not in COUNT_KEYS else float(v) for k, v in out.items()}
        results[name] = {"terms": terms, "grads": grads}
    if rank == 0:
        torch.save(results, Path(outdir) / "results.pt")
    dist.barrier()


def worker(rank: int, world: int, port: int, outdir: str) -> None:
    from medbind_lib import distributed as D

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=40))
        compute(rank, world, outdir)
        D.shutdown()
    except Exception:  # leave the traceback where the test can show it
        (Path(outdir) / f"error_rank{rank}.txt").write_text(traceback.format_exc())
        raise


def main(outdir: str) -> None:
    """Under torchrun (one process per node in tests/test_ddp.py's two-node run): the process group comes from
    the trainer's ``init_distributed`` (torchrun's environment only), and each rank records what it was given."""
    import json

    import torch.distributed as dist

    from medbind_lib import distributed as D
    from medbind_lib.trainer import init_distributed

    torch.set_num_threads(1)
    rank = os.environ.get("RANK", "?")
    try:
        rank, world, local, created = init_distributed()
        env = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                              "MASTER_ADDR", "TORCHELASTIC_RUN_ID")}
        (Path(outdir) / f"env_rank{rank}.json").write_text(json.dumps(
            {**env, "init": [rank, world, local, created], "group": [dist.get_rank(), dist.get_world_size()]}))
        compute(rank, world, outdir)
        D.shutdown()
    except Exception:
        (Path(outdir) / f"error_rank{rank}.txt").write_text(traceback.format_exc())
        raise


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
