"""MEDCSP pre-training on the suite's one loop: model + loss + cross-source batch sampler (notebook 09).

``train_medcsp(cfg, variant, out_dir=None, resume=True) -> dict`` and the CLI::

    python -m medbind_lib.medcsp.pretrain --profile P --variant medcsp
    torchrun --standalone --nproc_per_node N -m medbind_lib.medcsp.pretrain --profile P --variant medcsp

Shared with MEDBind (``medbind_lib.medbind.pretrain``): the loop (:func:`medbind_lib.trainer.fit`: AdamW, warm-up +
cosine, checkpoints and exact resume, AMP, DDP, progress, per-step logs, NaN stop), the text encoder class,
the MIMIC-CXR image cache and the retrieval ranks.  MEDCSP's own: :class:`~medbind_lib.models.medcsp.MEDCSPModel`,
:class:`~medbind_lib.losses.MEDCSPLoss` and :class:`~medbind_lib.medcsp.batches.CrossSourceBatchSampler` over
notebook 08's records.

Variants (Figure 7): ``medcsp`` (L_A + lambda_P L_P + lambda_D L_D), ``medcsp_a``, ``medcsp_a_p``,
``medcsp_a_d`` (the same batches, fewer terms) and ``medcsp_single`` (imaging records only, image + report
encoders).  ``best.pt`` = lowest validation loss of the variant (``val_loss``; with few epochs on CPU this
is usually the last epoch).  Validation also scores report->image retrieval on the validation CXR studies
(R@K, median rank, hit = the report's own study; chance R@K = K / studies).  Every step logs the terms,
the global record counts, L_P's anchors and the number of L_P positive pairs in the batch (``n_lp_pairs``,
counted for every variant, so the sampler's pairing is visible in ``medcsp_a`` too; under DDP the mean of the
ranks' shares, pairs across ranks not counted).  Validation ``val_ld`` is 0 by construction: diagnosis
histories come from training admissions only (MEDCSP.md), so validation patients have none.

Outputs: ``runs/<profile>/09/<run>/`` with the files of :mod:`medbind_lib.trainer`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch

from .. import registry
from ..loading import TokenizeFn, make_loader
from ..layout import RunLayout
from ..losses import MEDCSPLoss
from ..losses.medcsp import MEDCSP_VARIANTS, SOURCE_CXR
from ..replicates import parse_run, with_run_seed
from ..trainer import Method, cli, fit
from . import batches as B
from .encode import embed_rows, to_device

__all__ = ["MEDCSPMethod", "train_medcsp", "default_out_dir", "loss_from_profile", "model_modalities", "to_device",
           "LOSS_KEYS", "main"]

LOSS_KEYS = ("medcsp_tau", "medcsp_lambda_p", "medcsp_lambda_d", "medcsp_theta_days", "medcsp_la_negatives",
             "medcsp_lp_direction", "medcsp_ld_target", "medcsp_ld_same_patient", "medcsp_ld_direction",
             "medcsp_lp_negatives", "medcsp_loss_reduction")
SAMPLER_KEYS = ("medcsp_pair_rate", "medcsp_batch_size")
RETRIEVAL_KS = (1, 5, 10)


def default_out_dir(cfg, run: str) -> Path:
    return RunLayout(cfg).checkpoint_dir("medcsp", run)


def model_modalities(variant: str) -> tuple[str, ...]:
    """Encoders a variant trains: the imaging-only variant never builds the EHR encoders."""
    from ..models.medcsp import MEDCSP_MODALITIES

    return registry.variant(variant).modalities or tuple(MEDCSP_MODALITIES)


def loss_from_profile(cfg, variant: str) -> MEDCSPLoss:
    """The variant's loss with the profile's keys; its mask columns are the variant's modalities."""
    return MEDCSPLoss(variant, tau=cfg.medcsp_tau, lambda_p=cfg.medcsp_lambda_p, lambda_d=cfg.medcsp_lambda_d,
                      theta=cfg.medcsp_theta_days, la_negatives=cfg.medcsp_la_negatives,
                      lp_direction=cfg.medcsp_lp_direction, ld_target=cfg.medcsp_ld_target,
                      ld_same_patient=cfg.medcsp_ld_same_patient, ld_direction=cfg.medcsp_ld_direction,
                      lp_negatives=cfg.medcsp_lp_negatives, reduction=cfg.medcsp_loss_reduction,
                      modalities=model_modalities(variant))


class MEDCSPMethod(Method):
    """A MEDCSP variant on :func:`medbind_lib.trainer.fit` (see the module docstring)."""

    def __init__(self, cfg, run: str, loaded: Optional[dict] = None):
        self.run = run
        self.variant, _ = parse_run(run)
        if self.variant not in MEDCSP_VARIANTS:
            raise ValueError(f"MEDCSP variant must be one of {MEDCSP_VARIANTS}, got {self.variant!r}")
        self.cfg = cfg
        self.criterion = "val_loss"
        self.find_unused_parameters = True        # a batch may hold no record of a modality
        self.hparams = {"lr": cfg.medcsp_lr, "weight_decay": cfg.medcsp_weight_decay, "epochs": cfg.medcsp_epochs,
                        "batch_size": cfg.medcsp_batch_size, "warmup_steps": cfg.medcsp_warmup_steps,
                        "text_lr_scale": 1.0}
        self.sources = registry.variant(self.variant).sources
        self.loaded = loaded if loaded is not None else B.load_records(cfg, sources=self.sources)
        self.loss_fn = loss_from_profile(cfg, self.variant)

    # ---------------------------------------------------------------- model and data
    @staticmethod
    def input_dims_of(data: Mapping) -> dict:
        """Encoder input widths from notebook 08's data (temporal: values + missingness channels)."""
        return {"icd": int(data["icd"].shape[1]), "drug": int(data["drug"].shape[1]),
                "demo": int(data["demographics"].shape[1]), "temporal": 2 * int(data["temporal_values"].shape[-1])}

    def input_dims(self) -> dict:
        return self.input_dims_of(self.loaded["data"])

    def build_model(self, cfg):
        from ..models.medcsp import build_medcsp_model

        return build_medcsp_model(cfg, input_dims=self.input_dims(),
                                  medcsp_modalities=list(model_modalities(self.variant)))

    def _records(self, split: str):
        recs = self.loaded["records"][split]
        if self.sources == ("cxr",) and (recs.records["source"] != SOURCE_CXR).any():
            raise ValueError("medcsp_single was given EHR records")
        return recs

    def _dataset(self, split: str, train: bool):
        arr = self.loaded["cxr_cached"].array if self.loaded.get("cxr_cached") is not None else None
        return B.MEDCSPDataset(self._records(split), self.loaded["data"], arr, self.cfg, train=train)

    def setup(self, model, rank: int, world: int, device) -> None:
        cfg = self.cfg
        self.model = model
        ds_tr = self._dataset("train", True)
        self.ds_valid = self._dataset("valid", False)
        self.collate = B.MEDCSPCollator(TokenizeFn.from_model(model), text_dedup=cfg.text_dedup, dims=ds_tr.dims)
        self.sampler = B.CrossSourceBatchSampler(self._records("train"), cfg.medcsp_batch_size, cfg.medcsp_pair_rate,
                                                 cfg.medcsp_theta_days, cfg.seed, rank, world)
        self.valid_sampler = B.CrossSourceBatchSampler(self._records("valid"), cfg.medcsp_batch_size,
                                                       cfg.medcsp_pair_rate, cfg.medcsp_theta_days, cfg.seed,
                                                       rank, world)
        self.loader = make_loader(ds_tr, self.sampler, self.collate, cfg.n_workers, cfg.seed + rank, device)
        self.forward_module = model

    # ---------------------------------------------------------------- steps
    def _terms(self, fwd, model, batch, records) -> dict:
        b = to_device(batch, self.device)
        emb = fwd(b)
        li = {"embeddings": emb, "mask": b["mask"][:, model.mask_columns], "sources": b["sources"], "patients": b["patients"],
              "times": b["times"], "histories": b["histories"]}
        terms = self.loss_fn(li, logit_scale=model.logit_scale if model.learnable_temperature else None)
        rows = batch["record_rows"].numpy()          # L_P positives among this rank's records (every variant)
        terms["n_lp_pairs"] = torch.tensor(float(B.count_positive_pairs(records, rows, self.cfg.medcsp_theta_days)))
        return terms

    def loss_terms(self, fwd, model, batch) -> dict:
        return self._terms(fwd, model, batch, self._records("train"))

    def batch_samples(self, batch, logged: Mapping) -> float:
        return logged.get("n_records", float(batch["n_records"]))

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, model, fwd, amp_ctx, rank: int, world: int) -> dict:
        """Validation loss over the validation split's batches (the training sampler's rule, epoch 0, no
        augmentation; record-weighted mean) and, on rank 0, report->image retrieval on its CXR studies."""
        from .. import distributed as D

        was = model.training
        model.eval()
        tot, n_tot = {}, 0
        self.valid_sampler.set_epoch(0, 0)
        for rows in self.valid_sampler:
            batch = self.collate([self.ds_valid[i] for i in rows])
            with amp_ctx():
                terms = self._terms(fwd, model, batch, self._records("valid"))
            n = float(terms["n_records"])
            vals = {k: float(D.all_reduce_mean(v)) for k, v in terms.items()
                    if torch.is_tensor(v) and v.ndim == 0 and k in ("loss", "la", "lp", "ld")}
            for k, v in vals.items():
                tot[k] = tot.get(k, 0.0) + v * n
            n_tot += n
        out = {f"val_{k}": v / max(n_tot, 1) for k, v in tot.items()}
        if rank == 0:
            out.update(self.retrieval(model, amp_ctx))
        model.train(was)
        return out

    def embed_cxr(self, model, ds, rows, amp_ctx, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, report) embeddings of CXR records ``rows`` of dataset ``ds`` (deterministic view)."""
        with amp_ctx():
            z = embed_rows(model, ds, self.collate, rows, self.device, batch_size)
        return torch.from_numpy(z["image"]), torch.from_numpy(z["report"])

    def retrieval(self, model, amp_ctx) -> dict:
        """Report->image on the validation CXR studies with both modalities: hit = the report's own study."""
        from ..metrics.retrieval import rank_summary, target_ranks
        from ..models.medcsp import MEDCSP_MODALITIES

        recs = self._records("valid")
        m = recs.mask
        ci, cr = MEDCSP_MODALITIES.index("image"), MEDCSP_MODALITIES.index("report")
        rows = np.flatnonzero(m[:, ci] & m[:, cr])
        if len(rows) == 0:
            return {}
        img, rep = self.embed_cxr(model, self.ds_valid, rows, amp_ctx, self.cfg.medcsp_batch_size)
        ranks = target_ranks(rep, img, np.arange(len(rows)))
        return rank_summary("report_image", ranks, len(rows), RETRIEVAL_KS)

    def metrics(self, steps: pd.DataFrame) -> dict:
        cfg = self.cfg
        col = lambda c: float(steps[c].mean()) if c in steps else None   # noqa: E731
        return {"data": {s: r.summary() for s, r in self.loaded["records"].items()},
                "n_lp_pairs_mean": col("n_lp_pairs"), "lp_anchors_mean": col("lp_anchors"),
                "sampler": {"expected_pairs_per_batch": getattr(self.sampler, "expected_pairs_per_batch", None)},
                "params": {"variant": self.variant, **{k: cfg[k] for k in LOSS_KEYS + SAMPLER_KEYS},
                           "model": getattr(self.model, "model_config", None)}}


def train_medcsp(cfg, variant: str, out_dir=None, resume: bool = True, *, stop_after_steps: Optional[int] = None,
                 device=None, loaded: Optional[dict] = None, log=None) -> dict:
    """Train a MEDCSP ``variant`` (or ``<variant>@seed<k>``); returns the metrics (also metrics.json).
    ``loaded``: :func:`medbind_lib.medcsp.batches.load_records` output, reused between variants."""
    run = variant
    cfg = with_run_seed(cfg, run)
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg, run)
    return fit(MEDCSPMethod(cfg, run, loaded), cfg, out, resume, stop_after_steps=stop_after_steps, device=device,
               log=log)


def main(argv=None) -> int:
    return cli(argv, __doc__.split("\n")[0], "09", "medcsp_variants", f"one of {MEDCSP_VARIANTS}", train_medcsp)


if __name__ == "__main__":
    sys.exit(main())
