"""The pre-training loop of every system (MEDBind_BD / _NM, ECG-CLIP, CXR-CLIP, MedCLIP-style).

``train(cfg, variant, out_dir=None, resume=True) -> dict`` and the CLI::

    python -m medbind_lib.train --profile P --variant V
    torchrun --standalone --nproc_per_node N -m medbind_lib.train --profile P --variant V

One loop for every variant (data: :mod:`medbind_lib.data`; which samples a variant sees is documented
there).  Protocol (METHOD.md 1 and 3, open_clip): AdamW (``model.param_groups``: no weight decay on norms,
biases, positions, CLS tokens, temperature; fused on CUDA), per-step linear warm-up then cosine decay to
0, gradient clipping, bf16 autocast on CUDA only (``amp``), optional ``torch.compile``.  DDP: torchrun,
gloo on CPU / nccl on GPU, GLOBAL batch ``batch_size`` sharded by the batch sampler, embeddings gathered
with gradient inside the loss; logged terms are ``all_reduce_mean`` of the per-rank shares.

Seeding (CONVENTIONS 17): ``seed`` before model init, ``seed + rank`` after.  Augmentations are seeded
per item by the sampler; dropout uses torch's global RNG, whose state (python / numpy / torch / CUDA, per
rank) is checkpointed with the sampler position, so on CPU a resumed run ends with exactly the weights of
an uninterrupted one.

Outputs in ``out_dir`` (default ``runs/<profile>/02/<variant>/``), all written atomically:
``last.pt`` (after every epoch, every ``checkpoint_every_steps`` and on interruption: the full state for an
exact resume; once the run has finished it is rewritten without optimizer, scheduler and sampler state, a
third of the size), ``best.pt`` (lowest validation ``select_on`` criterion - by default the TMCL of the
variant's modalities, the same for every variant; weights and metadata only), ``steps.parquet`` (per step: loss
terms, m, n, samples/s, data wait, lr, grad norm), ``epochs.csv`` (validation per epoch), ``metrics.json`` (results + params + env).
A non-finite loss or gradient norm stops training with :class:`NonFiniteLoss` naming the step and terms,
before the optimizer step (the last checkpoint stays clean).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import data as mdata
from . import distributed as D
from .io import atomic_path, write_csv_atomic, write_json_atomic, write_parquet_atomic
from .losses import EMCL_SCALES, REDUCTIONS, VARIANTS, MEDBindLoss
from .replicates import parse_run, with_run_seed
from .runtime import env_info, log_line, progress, seed_everything

__all__ = ["train", "NonFiniteLoss", "Embedder", "embed_batch", "model_for_variant", "build_optimizer",
           "cosine_lambda", "save_checkpoint", "load_checkpoint", "validate", "retrieval_check", "main"]

CKPT_VERSION = 1
RETRIEVAL_KS = (1, 5, 10)


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss or gradient norm."""


# ----------------------------------------------------------------------------------------------------
# model pieces
# ----------------------------------------------------------------------------------------------------
def model_modalities(variant: str) -> tuple[str, ...]:
    return mdata.modalities_of(variant) + ("text",)


def model_for_variant(cfg, variant: str):
    """The variant's MEDBindModel (only the encoders its loss uses), built from the profile keys."""
    from .models import build_model

    return build_model(cfg, modalities=model_modalities(variant))


class Embedder(nn.Module):
    """Wraps the model so that one ``forward`` (what DDP hooks) embeds a collated batch: images, ECGs and
    the batch's distinct texts (each encoded once, then indexed back to rows)."""

    def __init__(self, model, modalities: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.modalities = tuple(modalities)

    def forward(self, cxr, ecg, input_ids, attention_mask, cxr_text_index, ecg_text_index) -> dict:
        m = self.model
        out = {}
        feats = m.encoders["text"](input_ids, attention_mask) if input_ids is not None else None
        for mod, x, idx in (("cxr", cxr, cxr_text_index), ("ecg", ecg, ecg_text_index)):
            if mod not in self.modalities:
                continue
            out[mod] = (m.encode_cxr(x) if mod == "cxr" else m.encode_ecg(x)) if x.shape[0] else \
                m.projections[mod].weight.new_zeros(0, m.embed_dim)
            proj = m.projections["text" if m.shared_text_projection else f"{mod}_text"]
            out[f"{mod}_text"] = F.normalize(proj(feats[idx]), dim=-1) if idx.shape[0] else \
                proj.weight.new_zeros(0, m.embed_dim)
        return out


def embed_batch(embedder, batch: Mapping, device, modalities: tuple[str, ...], channels_last: bool = False) -> dict:
    """Collated batch -> the :class:`MEDBindLoss` input (embeddings + keys, pairs, counts, labels)."""
    nb = dict(non_blocking=True)
    cxr, ecg = batch["cxr"], batch["ecg"]
    if "cxr" in modalities:
        cxr = cxr.to(device, **nb)
        if channels_last and cxr.ndim == 4:
            cxr = cxr.contiguous(memory_format=torch.channels_last)
    if "ecg" in modalities:
        ecg = ecg.to(device, **nb)
    tok = batch["text_tokens"]
    ids = None if tok is None else tok["input_ids"].to(device, **nb)
    mask = None if tok is None else tok["attention_mask"].to(device, **nb)
    emb = embedder(cxr, ecg, ids, mask, batch["cxr_text_index"].to(device), batch["ecg_text_index"].to(device))
    out = dict(emb)
    for mod in modalities:
        out[f"{mod}_text_keys"] = batch[f"{mod}_text_keys"].to(device)
    out["pairs"] = batch["pairs"].to(device) if len(modalities) == 2 else torch.zeros((0, 2), dtype=torch.long,
                                                                                    device=device)
    out["n_samples"] = int(batch["n_samples"])
    out["cxr_labels"] = batch["cxr_labels"].to(device)
    return out


def build_optimizer(model, cfg, device) -> torch.optim.Optimizer:
    scales = {"encoders.text": float(cfg.text_lr_scale)} if cfg.text_lr_scale != 1.0 else None
    groups = [g for g in model.param_groups(cfg.weight_decay, cfg.lr, scales) if g["params"]]
    kw = {}
    if torch.device(device).type == "cuda":
        kw["fused"] = True
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, **kw)


def cosine_lambda(total_steps: int, warmup_steps: int):
    """LR multiplier per step: linear warm-up (step+1)/warmup, then cosine from 1 to 0 at ``total_steps``."""
    total, warm = max(1, int(total_steps)), max(0, int(warmup_steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if total <= warm:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))
    return f


# ----------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------
def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Mapping) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path, state: Mapping) -> Path:
    """``torch.save`` to a temporary file beside ``path``, renamed onto it only when complete: a crash
    during the save leaves the previous checkpoint intact."""
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(dict(state), tmp)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------
def _rank_summary(prefix: str, ranks: np.ndarray, n_gallery: int, ks=RETRIEVAL_KS) -> dict:
    """R@K (%) and the median 1-based rank of the first hit, from 0-based ranks."""
    out = {f"r{k}_{prefix}": 100.0 * float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}
    out[f"medr_{prefix}"] = float(np.median(ranks) + 1) if len(ranks) else float("nan")
    out[f"n_gallery_{prefix}"] = int(n_gallery)
    return out


@torch.no_grad()
def embed_records(model, tables, dataset_cls_args, cfg, device, batch_size: int, amp_ctx) -> dict:
    """Embeddings of every record of a split (deterministic view): cxr, ecg and their texts."""
    cxr_cached_array, ecg_cached_array, ecg_stats = dataset_cls_args
    out = {}
    for mod, frame, arr in (("cxr", tables.cxr, cxr_cached_array), ("ecg", tables.ecg, ecg_cached_array)):
        if mod not in model.encoders or len(frame) == 0:
            continue
        ds = mdata.EvalArrayDataset(arr, frame, mod, cfg, ecg_stats)
        embs = []
        for s in range(0, len(ds), batch_size):
            x = torch.stack([ds[i][0] for i in range(s, min(len(ds), s + batch_size))]).to(device)
            with amp_ctx():
                embs.append((model.encode_cxr(x) if mod == "cxr" else model.encode_ecg(x)).float().cpu())
        out[mod] = torch.cat(embs)
        texts = frame["text"].astype(str).tolist()
        uniq = list(dict.fromkeys(texts))
        tz = []
        for s in range(0, len(uniq), batch_size):
            tok = model.tokenize(uniq[s:s + batch_size], device=device)
            with amp_ctx():
                tz.append(model.encode_text(tok, modality=mod).float().cpu())
        tz = torch.cat(tz)
        pos = {t: i for i, t in enumerate(uniq)}
        out[f"{mod}_text"] = tz[[pos[t] for t in texts]]
    return out


def retrieval_check(emb: dict, tables, text_identity: str = "lower_ws", ks=RETRIEVAL_KS) -> dict:
    """Validation retrieval (exact): CXR->text and ECG->text over the split's DISTINCT texts (a hit = the
    retrieved text is identical to the query's own), CXR->ECG over the split's pairs (a hit = an ECG paired
    with the query CXR; gallery = the ECGs of the pairs). Per direction: R@K for ``ks``, the median rank
    and the gallery size (chance R@K = K / gallery).

    Image-blind baselines for the text directions (``blind_r{K}_*``): the share of queries whose text is
    among the K most frequent texts of the split - what an encoder that ignores its input scores at best
    (R@1 of a collapsed encoder whose single point lands on the most common text). Paraphrased reports
    make R@1 hinge on which of several equivalent texts ranks first, so R@10 and the median rank are the
    steadier signal on small validation splits."""
    from .evaluate.retrieval import target_ranks

    res = {}
    for mod, frame in (("cxr", tables.cxr), ("ecg", tables.ecg)):
        if mod not in emb:
            continue
        keys = mdata.text_keys(frame["text"].astype(str).tolist(), text_identity).numpy()
        uk, first, code = np.unique(keys, return_index=True, return_inverse=True)
        g = emb[f"{mod}_text"][torch.as_tensor(first)]
        res.update(_rank_summary(f"{mod}_text", target_ranks(emb[mod], g, code), len(uk), ks))
        share = np.sort(np.bincount(code))[::-1] / len(code)
        for k in ks:
            res[f"blind_r{k}_{mod}_text"] = 100.0 * float(share[:k].sum())
    if "cxr" in emb and "ecg" in emb:
        pr = tables.samples[tables.is_pair]
        if len(pr):
            ecg_rows, col = np.unique(pr[:, 1], return_inverse=True)
            qc, qi = np.unique(pr[:, 0], return_inverse=True)
            ranks = target_ranks(emb["cxr"][torch.as_tensor(pr[:, 0])], emb["ecg"][torch.as_tensor(ecg_rows)], col)
            first_hit = np.full(len(qc), np.iinfo(np.int64).max)
            np.minimum.at(first_hit, qi, ranks)          # a CXR paired with two ECGs: its best-ranked partner
            res.update(_rank_summary("cxr_ecg", first_hit, len(ecg_rows), ks))
    return res


SELECT_ON = ("tmcl", "loss")


def selection_loss(batch: Mapping, modalities, tau: float) -> torch.Tensor:
    """The criterion every variant's ``best.pt`` is chosen on (``select_on: tmcl``): TMCL (mean reduction,
    fixed ``tau``) summed over the variant's modalities, whatever loss the variant trains with. Selecting on
    each variant's own loss would favour cross-modal alignment for MEDBind_BD (its loss holds EMCL) and
    nothing of the kind for the others."""
    from .losses import tmcl

    return sum(tmcl(batch[m], batch[f"{m}_text"], batch[f"{m}_text_keys"], tau, reduction="mean")
               for m in modalities)


@torch.no_grad()
def validate(model, embedder, loss_fn, ds_valid, tables, collate, cfg, device, modalities, amp_ctx,
             batch_size: int, rank: int = 0, world: int = 1, retrieval: bool = True) -> dict:
    """Validation loss (fixed batches, no augmentation; sample-weighted mean over batches) and retrieval."""
    was = model.training
    model.eval()
    tot, n_tot = {}, 0
    for b in mdata.fixed_batches(len(ds_valid), batch_size, cfg.seed, rank, world):
        batch = collate([ds_valid[i] for i in b])
        with amp_ctx():
            li = embed_batch(embedder, batch, device, modalities, cfg.cxr_channels_last)
            terms = loss_fn(li)
            terms["select"] = selection_loss(li, modalities, cfg.tau)
        n = int(terms["n_samples"])
        vals = {k: float(D.all_reduce_mean(v)) for k, v in terms.items()
                if torch.is_tensor(v) and v.ndim == 0 and not k.startswith(("n_", "m_"))}
        for k, v in vals.items():
            tot[k] = tot.get(k, 0.0) + v * n
        n_tot += n
    out = {f"val_{k}": v / max(n_tot, 1) for k, v in tot.items()}
    if retrieval and rank == 0:
        emb = embed_records(model, tables, (ds_valid.cxr_array, ds_valid.ecg_array, ds_valid.ecg_stats), cfg,
                            device, batch_size, amp_ctx)
        out.update(retrieval_check(emb, tables, cfg.text_identity))
    model.train(was)
    return out


# ----------------------------------------------------------------------------------------------------
# distributed setup
# ----------------------------------------------------------------------------------------------------
def _init_distributed() -> tuple[int, int, int, bool]:
    """(rank, world, local_rank, created) from torchrun's environment; initialises the process group."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return D.rank(), D.world_size(), 0, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local, False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return dist.get_rank(), dist.get_world_size(), local, True


def _amp_dtype(cfg, device) -> Optional[torch.dtype]:
    mode = cfg.amp
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be auto | bf16 | off, got {mode!r}")
    if mode == "off" or (mode == "auto" and torch.device(device).type != "cuda"):
        return None
    return torch.bfloat16


# ----------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------
def default_out_dir(cfg, variant: str) -> Path:
    return Path(cfg["runs_dir"]) / "02" / variant


def train(cfg, variant: str, out_dir=None, resume: bool = True, *, stop_after_steps: Optional[int] = None,
          device=None, data: Optional[dict] = None, log=None) -> dict:
    """Train ``variant`` with profile ``cfg``; returns the metrics dict (also written to metrics.json).

    ``resume``: continue from ``out_dir/last.pt`` when it exists (same profile and variant); a finished
    run is not retrained.  ``stop_after_steps``: stop (writing ``last.pt``) once this many optimizer
    steps are done, without changing the schedule (simulates an interruption; tests).  ``data``: the
    output of :func:`medbind_lib.data.load_pretrain` (reused between variants by the caller).
    """
    run = variant                                   # "<variant>@seed<k>" = a seed replicate (replicates.py)
    variant, _ = parse_run(run)
    cfg = with_run_seed(cfg, run)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if cfg.emcl_scale not in EMCL_SCALES:
        raise ValueError(f"emcl_scale must be one of {EMCL_SCALES}, got {cfg.emcl_scale!r}")
    if cfg.select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {cfg.select_on!r}")
    if cfg.loss_reduction not in REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {REDUCTIONS}, got {cfg.loss_reduction!r}")
    rank, world, local, created = _init_distributed()
    is_main = rank == 0
    log = log or (lambda msg: log_line(msg) if is_main else None)
    if device is None:
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg, run)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    amp_dtype = _amp_dtype(cfg, device)

    def amp_ctx():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    modalities = mdata.modalities_of(variant)
    try:
        # ---- model: seed before init, seed + rank after (CONVENTIONS 17)
        seed_everything(cfg.seed)
        model = model_for_variant(cfg, variant).to(device)
        seed_everything(cfg.seed + rank)
        # ---- data
        data = data if data is not None else mdata.load_pretrain(cfg, variant)
        if any(t.variant != variant for t in data["tables"].values()):
            raise ValueError("data was built for another variant")
        tr, va = data["tables"]["train"], data["tables"]["valid"]
        ds_tr = mdata.PretrainDataset(tr, data["cxr_cached"].array, data["ecg_cached"].array, data["ecg_stats"],
                                      cfg, train=True)
        ds_va = mdata.PretrainDataset(va, data["cxr_cached"].array, data["ecg_cached"].array, data["ecg_stats"],
                                      cfg, train=False)
        tokenize = mdata.TokenizeFn.from_model(model)
        shapes = dict(cxr_shape=(3, cfg.cxr_size, cfg.cxr_size),
                      ecg_shape=(12, int(model.model_config.get("ecg_samples") or 1000)))
        collate = mdata.Collator(tokenize, cfg.text_identity, cfg.text_dedup, **shapes)
        sampler = mdata.PairBatchSampler(tr.is_pair, cfg.batch_size, cfg.pair_fraction, cfg.seed, rank, world)
        loader = mdata.make_loader(ds_tr, sampler, collate, cfg.n_workers, cfg.seed + rank, device)
        bpe = sampler.batches_per_epoch
        total = cfg.epochs * bpe if cfg.max_steps is None else min(cfg.epochs * bpe, int(cfg.max_steps))
        # ---- wrappers, optimiser, schedule
        embedder = Embedder(model, modalities)
        if world > 1:
            embedder = nn.parallel.DistributedDataParallel(
                embedder, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=len(modalities) == 2)
        fwd = embedder
        if cfg.compile:
            try:
                fwd = torch.compile(embedder, dynamic=True)
            except Exception as e:  # pragma: no cover - depends on the toolchain
                log(f"torch.compile unavailable ({type(e).__name__}: {e}); running eagerly")
        opt = build_optimizer(model, cfg, device)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(total, cfg.warmup_steps))
        loss_fn = MEDBindLoss(variant, tau=cfg.tau, emcl_scale=cfg.emcl_scale, reduction=cfg.loss_reduction,
                              emcl_weight=cfg.emcl_weight)
        loss_fn_eval = loss_fn

        step, epoch, start = 0, 0, 0
        best_val, history, untrained = float("inf"), [], None
        steps_log: list[dict] = []
        t_prev_total = 0.0
        if resume and last_path.exists():
            ck = load_checkpoint(last_path)
            if ck.get("variant") != run:
                raise ValueError(f"{last_path} holds variant {ck.get('variant')!r}, not {run!r}")
            model.load_state_dict(ck["model"])
            if "optimizer" in ck:
                opt.load_state_dict(ck["optimizer"])
                sched.load_state_dict(ck["scheduler"])
            elif ck["step"] < total:
                raise ValueError(f"{last_path} is the slim checkpoint of a run that finished at step {ck['step']}; "
                                 f"the settings now ask for {total} steps and no optimizer state is left to "
                                 f"continue exactly: move {last_path.parent} away to train afresh")
            sampler.load_state_dict(ck["sampler"])
            step, epoch, start = ck["step"], ck["epoch"], ck["sampler"]["start"]
            best_val, history, untrained = ck["best_val"], ck["history"], ck.get("untrained")
            t_prev_total = ck.get("train_seconds", 0.0)
            rng_all = ck["rng"]
            set_rng_state(rng_all[rank] if isinstance(rng_all, list) and rank < len(rng_all) else rng_all[0])
            sp = out / "steps.parquet"
            if sp.exists():
                steps_log = [r for r in pd.read_parquet(sp).to_dict("records") if r["step"] <= step]
            log(f"[{run}] resumed from {last_path.name} at step {step} (epoch {epoch}, batch {start})")
        # ---- helpers that close over the state
        def gather_rng():
            st = rng_state()
            if world > 1:
                import torch.distributed as dist
                allst = [None] * world
                dist.all_gather_object(allst, st)
                return allst
            return [st]

        def write_logs():
            if is_main and steps_log:
                write_parquet_atomic(pd.DataFrame(steps_log), out / "steps.parquet")
            if is_main and history:
                write_csv_atomic(pd.DataFrame(history), out / "epochs.csv")

        def save(path, weights_only: bool = False, finished: bool = False):
            """Full state for an exact resume, or (best.pt, a finished last.pt) weights + metadata only: the
            AdamW moments are twice the model's size and nothing reads them once training stops."""
            rng_all = gather_rng()
            if not is_main:
                return
            state = {"version": CKPT_VERSION, "variant": run, "model": model.state_dict(), "step": step,
                     "epoch": epoch, "total_steps": total, "cfg": dict(cfg), "model_config": model.model_config,
                     "best_val": best_val, "history": history, "untrained": untrained, "finished": finished,
                     "train_seconds": t_prev_total + (time.perf_counter() - t_start), "rng": rng_all,
                     "sampler": {**sampler.state_dict(), "epoch": epoch, "start": start}}
            if not (weights_only or finished):
                state.update(optimizer=opt.state_dict(), scheduler=sched.state_dict())
            save_checkpoint(path, state)

        def validate_and_keep_best(label: str) -> None:
            """Validate, log, and write best.pt (recording the new best_val) when the validation loss improves."""
            nonlocal best_val
            v = validate(model, embedder, loss_fn_eval, ds_va, va, collate, cfg, device, modalities, amp_ctx,
                         cfg.batch_size, rank, world)
            history.append({"epoch": epoch, "step": step, **v})
            log(f"[{run}] {label}: " + _fmt(v))
            crit = v.get("val_select" if cfg.select_on == "tmcl" else "val_loss", float("inf"))
            if crit < best_val:
                best_val = crit
                save(best_path, weights_only=True)

        if untrained is None and step == 0:
            untrained = validate(model, embedder, loss_fn_eval, ds_va, va, collate, cfg, device, modalities,
                                 amp_ctx, cfg.batch_size, rank, world)
            log(f"[{run}] untrained valid: " + _fmt(untrained))

        # ---- loop
        t_start = time.perf_counter()
        model.train()
        bar = progress(total=total, initial=step, enabled=bool(cfg.progress) and is_main, desc=run)
        interrupted = False
        t_last = time.perf_counter()
        while step < total and not interrupted:
            sampler.set_epoch(epoch, start)
            it = iter(loader)
            while step < total:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                t_data = time.perf_counter() - t0
                with amp_ctx():
                    li = embed_batch(fwd, batch, device, modalities, cfg.cxr_channels_last)
                    terms = loss_fn(li, logit_scale=model.logit_scale if model.learnable_temperature else None)
                loss = terms["loss"]
                names = [k for k, v in terms.items() if torch.is_tensor(v) and v.ndim == 0]
                vals = D.all_reduce_mean(torch.stack([terms[k].detach().float().reshape(()) for k in names]))
                logged = {k: float(v) for k, v in zip(names, vals.tolist())}
                if not math.isfinite(logged["loss"]):
                    raise NonFiniteLoss(f"[{run}] non-finite loss at step {step} (epoch {epoch}, batch "
                                        f"{start}): " + ", ".join(f"{k}={v:.4g}" for k, v in logged.items()))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip else
                                                    float("inf"))
                if not torch.isfinite(gn):
                    raise NonFiniteLoss(f"[{run}] non-finite gradient norm at step {step} (epoch {epoch}): "
                                        + ", ".join(f"{k}={v:.4g}" for k, v in logged.items()))
                lr = opt.param_groups[0]["lr"]
                opt.step()
                sched.step()
                step += 1
                start += 1
                now = time.perf_counter()
                dt, t_last = now - t_last, now
                n_glob = logged.get("n_samples", float(batch["n_samples"]))
                # the loss reports global counts; terms under the m_/n_ names are counts, not losses
                steps_log.append({"step": step, "epoch": epoch, "lr": lr, "grad_norm": float(gn),
                                  "samples_per_s": n_glob / dt if dt > 0 else float("nan"),
                                  "step_s": dt, "data_wait_s": t_data, **logged})
                bar.update(1)
                bar.set_postfix(loss=f"{logged['loss']:.3f}", sps=f"{n_glob / max(dt, 1e-9):.1f}")
                if cfg.checkpoint_every_steps and step % int(cfg.checkpoint_every_steps) == 0:
                    write_logs()
                    save(last_path)
                if stop_after_steps is not None and step >= stop_after_steps:
                    interrupted = True
                    break
            if interrupted:
                break
            if start >= bpe:  # epoch complete
                epoch, start = epoch + 1, 0
                if epoch % max(1, int(cfg.eval_every_epochs)) == 0 or step >= total:
                    validate_and_keep_best(f"epoch {epoch} step {step}")
                write_logs()
                save(last_path, finished=step >= total)
                t_last = time.perf_counter()
        bar.close()
        if interrupted:
            write_logs()
            save(last_path)
            log(f"[{run}] stopped after step {step} (stop_after_steps); resume with resume=True")
            return {"variant": run, "step": step, "interrupted": True, "out_dir": str(out)}
        # the run ended mid-epoch (max_steps): validate once more at the final step
        if not history or history[-1]["step"] != step:
            validate_and_keep_best(f"final step {step}")
            write_logs()
            save(last_path, finished=True)
        if best_val == float("inf"):           # no finite validation loss: keep the final weights (every rank
            save(best_path, weights_only=True)  # takes this branch, as save gathers RNG states collectively)
        train_seconds = t_prev_total + (time.perf_counter() - t_start)
        metrics = None
        if is_main:
            metrics = _metrics(cfg, run, out, data, steps_log, history, untrained, best_val, total, bpe, step,
                               world, device, amp_dtype, train_seconds)
            write_json_atomic(out / "metrics.json", metrics)
        return metrics or {"variant": run, "step": step, "rank": rank}
    finally:
        if created:
            import torch.distributed as dist
            dist.destroy_process_group()


def _fmt(d: Mapping) -> str:
    """Log line: losses, R@1, R@10 and median ranks (the rest is in epochs.csv / metrics.json)."""
    keep = ("val_", "r1_", "r10_", "medr_")
    return ", ".join(f"{k}={v:.3f}" for k, v in d.items() if isinstance(v, float) and k.startswith(keep))


def _metrics(cfg, variant, out, data, steps_log, history, untrained, best_val, total, bpe, step, world, device,
             amp_dtype, train_seconds) -> dict:
    sl = pd.DataFrame(steps_log)
    warm = sl.iloc[min(len(sl) - 1, 2):] if len(sl) else sl  # skip the first (warm-up) steps
    final = history[-1] if history else {}
    return {
        "variant": variant, "out_dir": str(out), "steps": step, "total_steps": total, "batches_per_epoch": bpe,
        "epochs": cfg.epochs, "world_size": world, "device": str(device),
        "amp": None if amp_dtype is None else str(amp_dtype),
        "data": {s: t.summary() for s, t in data["tables"].items()},
        "train_seconds": train_seconds,
        "samples_per_s_median": float(warm["samples_per_s"].median()) if len(warm) else None,
        "data_wait_fraction": float(warm["data_wait_s"].sum() / max(warm["step_s"].sum(), 1e-9)) if len(warm) else None,
        "m_pairs_mean": float(sl["m_pairs"].mean()) if "m_pairs" in sl else None,
        "first_loss": float(sl["loss"].iloc[0]) if len(sl) else None,
        "last_loss": float(sl["loss"].iloc[-1]) if len(sl) else None,
        "best_val_criterion": best_val, "select_on": cfg.select_on, "final_valid": final, "untrained_valid": untrained, "history": history,
        "checkpoints": {"last": str(out / "last.pt"), "best": str(out / "best.pt")},
        "params": {k: cfg[k] for k in ("seed", "lr", "weight_decay", "epochs", "batch_size", "warmup_steps",
                                       "grad_clip", "emcl_scale", "emcl_weight", "loss_reduction", "select_on",
                                       "pair_fraction",
                                       "ecg_noise_std", "tau", "amp", "compile", "max_steps", "text_dedup")},
        "env": env_info(cfg),
    }


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    from .config import load_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--variant", default=None, help=f"one of {VARIANTS} (or a seed replicate <variant>@seed<k>); "
                                                   "default: every variant of the profile")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="profile overrides")
    args = ap.parse_args(argv)
    import yaml

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = yaml.safe_load(v)
    cfg = load_profile(args.profile, notebook="02", overrides=overrides or None)
    variants = [args.variant] if args.variant else list(cfg.variants)
    for v in variants:
        m = train(cfg, v, out_dir=args.out_dir if len(variants) == 1 else None, resume=not args.no_resume)
        if m and "samples_per_s_median" in m:
            print(json.dumps({k: m[k] for k in ("variant", "steps", "train_seconds", "samples_per_s_median",
                                                 "best_val_criterion")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
