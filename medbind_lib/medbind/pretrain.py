"""MEDBind's pre-training (MEDBind_BD / _NM, ECG-CLIP, CXR-CLIP, MedCLIP-style) on the suite's one loop.

``train(cfg, variant, out_dir=None, resume=True) -> dict`` and the CLI::

    python -m medbind_lib.medbind.pretrain --profile P --variant V
    torchrun --standalone --nproc_per_node N -m medbind_lib.medbind.pretrain --profile P --variant V

:class:`MEDBindMethod` is MEDBind's model + loss + batch sampler; the loop itself (optimiser, schedule,
checkpoints and exact resume, AMP, DDP, progress, per-step logs, NaN stop, ``best.pt`` selection) is
:func:`medbind_lib.trainer.fit`, shared with MEDCSP.  Data: :mod:`medbind_lib.medbind.data` (which samples a variant
sees is documented there).  Protocol (METHOD.md 1 and 3, open_clip): AdamW with the profile's ``lr``,
``weight_decay``, ``text_lr_scale``; per-step warm-up then cosine; GLOBAL batch ``batch_size`` sharded by
:class:`~medbind_lib.medbind.data.PairBatchSampler`, embeddings gathered with gradient inside the loss.

Augmentations are seeded per item by the sampler; dropout uses torch's global RNG, checkpointed with the
sampler position, so on CPU a resumed run ends with exactly the weights of an uninterrupted one.

Outputs in ``out_dir`` (default ``runs/<profile>/02/<variant>/``): see :mod:`medbind_lib.trainer`;
``best.pt`` is chosen on the validation ``select_on`` criterion - by default the TMCL of the variant's
modalities, the same for every variant.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import data as mdata
from ..layout import RunLayout
from ..loading import EvalArrayDataset, TokenizeFn, make_loader
from .. import distributed as D
from ..losses import EMCL_SCALES, REDUCTIONS, VARIANTS, MEDBindLoss
from ..replicates import parse_run, with_run_seed
from ..trainer import (CKPT_VERSION, Method, NonFiniteLoss, build_optimizer, cli, cosine_lambda, fit,
                      load_checkpoint, save_checkpoint)

__all__ = ["train", "MEDBindMethod", "NonFiniteLoss", "Embedder", "embed_batch", "model_for_variant",
           "build_optimizer", "cosine_lambda", "save_checkpoint", "load_checkpoint", "validate", "retrieval_check",
           "main", "CKPT_VERSION"]

RETRIEVAL_KS = (1, 5, 10)


# ----------------------------------------------------------------------------------------------------
# model pieces
# ----------------------------------------------------------------------------------------------------
def model_modalities(variant: str) -> tuple[str, ...]:
    return mdata.modalities_of(variant) + ("text",)


def model_for_variant(cfg, variant: str):
    """The variant's MEDBindModel (only the encoders its loss uses), built from the profile keys."""
    from ..models import build_model

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


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def embed_records(model, tables, dataset_cls_args, cfg, device, batch_size: int, amp_ctx) -> dict:
    """Embeddings of every record of a split (deterministic view): cxr, ecg and their texts."""
    cxr_cached_array, ecg_cached_array, ecg_stats = dataset_cls_args
    out = {}
    for mod, frame, arr in (("cxr", tables.cxr, cxr_cached_array), ("ecg", tables.ecg, ecg_cached_array)):
        if mod not in model.encoders or len(frame) == 0:
            continue
        ds = EvalArrayDataset(arr, frame, mod, cfg, ecg_stats)
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
    from ..metrics.retrieval import rank_summary, target_ranks

    res = {}
    for mod, frame in (("cxr", tables.cxr), ("ecg", tables.ecg)):
        if mod not in emb:
            continue
        keys = mdata.text_keys(frame["text"].astype(str).tolist(), text_identity).numpy()
        uk, first, code = np.unique(keys, return_index=True, return_inverse=True)
        g = emb[f"{mod}_text"][torch.as_tensor(first)]
        res.update(rank_summary(f"{mod}_text", target_ranks(emb[mod], g, code), len(uk), ks))
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
            res.update(rank_summary("cxr_ecg", first_hit, len(ecg_rows), ks))
    return res


SELECT_ON = ("tmcl", "loss")


def selection_loss(batch: Mapping, modalities, tau: float) -> torch.Tensor:
    """The criterion every variant's ``best.pt`` is chosen on (``select_on: tmcl``): TMCL (mean reduction,
    fixed ``tau``) summed over the variant's modalities, whatever loss the variant trains with. Selecting on
    each variant's own loss would favour cross-modal alignment for MEDBind_BD (its loss holds EMCL) and
    nothing of the kind for the others."""
    from ..losses import tmcl

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
# the method on the shared loop
# ----------------------------------------------------------------------------------------------------
def default_out_dir(cfg, variant: str) -> Path:
    return RunLayout(cfg).checkpoint_dir("medbind", variant)


class MEDBindMethod(Method):
    """A MEDBind-paper system on :func:`medbind_lib.trainer.fit`: its model (the encoders its loss uses),
    :class:`MEDBindLoss`, the pair-aware sampler over notebook 01's MIMIC records, validation loss (with the
    ``select_on`` criterion) and exact retrieval on the validation split."""

    def __init__(self, cfg, run: str, data: Optional[dict] = None):
        self.run = run
        self.variant, _ = parse_run(run)
        self.cfg = cfg
        self.modalities = mdata.modalities_of(self.variant)
        self.find_unused_parameters = len(self.modalities) == 2
        self.criterion = "val_select" if cfg.select_on == "tmcl" else "val_loss"
        self.hparams = {k: cfg[k] for k in ("lr", "weight_decay", "epochs", "batch_size", "warmup_steps",
                                            "text_lr_scale")}
        self.data = data
        self.loss_fn = MEDBindLoss(self.variant, tau=cfg.tau, emcl_scale=cfg.emcl_scale,
                                   reduction=cfg.loss_reduction, emcl_weight=cfg.emcl_weight)

    def build_model(self, cfg):
        return model_for_variant(cfg, self.variant)

    def setup(self, model, rank: int, world: int, device) -> None:
        cfg = self.cfg
        self.model = model
        data = self.data if self.data is not None else mdata.load_pretrain(cfg, self.variant)
        if any(t.variant != self.variant for t in data["tables"].values()):
            raise ValueError("data was built for another variant")
        self.data = data
        tr, va = data["tables"]["train"], data["tables"]["valid"]
        arrays = (data["cxr_cached"].array, data["ecg_cached"].array, data["ecg_stats"])
        ds_tr = mdata.PretrainDataset(tr, *arrays, cfg, train=True)
        self.ds_valid = mdata.PretrainDataset(va, *arrays, cfg, train=False)
        self.valid_tables = va
        shapes = dict(cxr_shape=(3, cfg.cxr_size, cfg.cxr_size),
                      ecg_shape=(12, int(model.model_config.get("ecg_samples") or 1000)))
        self.collate = mdata.Collator(TokenizeFn.from_model(model), cfg.text_identity, cfg.text_dedup, **shapes)
        self.sampler = mdata.PairBatchSampler(tr.is_pair, cfg.batch_size, cfg.pair_fraction, cfg.seed, rank, world)
        self.loader = make_loader(ds_tr, self.sampler, self.collate, cfg.n_workers, cfg.seed + rank, device)
        self.forward_module = Embedder(model, self.modalities)

    def loss_terms(self, fwd, model, batch) -> dict:
        li = embed_batch(fwd, batch, self.device, self.modalities, self.cfg.cxr_channels_last)
        return self.loss_fn(li, logit_scale=model.logit_scale if model.learnable_temperature else None)

    def batch_samples(self, batch, logged: Mapping) -> float:
        return logged.get("n_samples", float(batch["n_samples"]))     # the loss reports the global count

    def validate(self, model, fwd, amp_ctx, rank: int, world: int) -> dict:
        return validate(model, fwd, self.loss_fn, self.ds_valid, self.valid_tables, self.collate, self.cfg,
                        self.device, self.modalities, amp_ctx, self.cfg.batch_size, rank, world)

    def metrics(self, steps: pd.DataFrame) -> dict:
        cfg = self.cfg
        return {"data": {s: t.summary() for s, t in self.data["tables"].items()},
                "m_pairs_mean": float(steps["m_pairs"].mean()) if "m_pairs" in steps else None,
                "select_on": cfg.select_on,
                "params": {k: cfg[k] for k in ("emcl_scale", "emcl_weight", "loss_reduction", "select_on",
                                               "pair_fraction", "ecg_noise_std", "tau", "text_dedup")}}


def train(cfg, variant: str, out_dir=None, resume: bool = True, *, stop_after_steps: Optional[int] = None,
          device=None, data: Optional[dict] = None, log=None) -> dict:
    """Train ``variant`` with profile ``cfg``; returns the metrics dict (also written to metrics.json).

    ``resume``: continue from ``out_dir/last.pt`` when it exists (same profile and variant); a finished
    run is not retrained.  ``stop_after_steps``: stop (writing ``last.pt``) once this many optimizer
    steps are done, without changing the schedule (simulates an interruption; tests).  ``data``: the
    output of :func:`medbind_lib.medbind.data.load_pretrain` (reused between variants by the caller).
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
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg, run)
    return fit(MEDBindMethod(cfg, run, data), cfg, out, resume, stop_after_steps=stop_after_steps, device=device,
               log=log)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    return cli(argv, __doc__.split("\n")[0], "02", "variants",
               f"one of {VARIANTS} (or a seed replicate <variant>@seed<k>)", train)


if __name__ == "__main__":
    sys.exit(main())
