"""MEDBind's checkpoints as models (``load_model``) and their embedding export (``export_embeddings``): the
evaluation sets' ``.npz`` files under ``runs/<profile>/embeddings/<variant>[_untrained]/`` (what each file holds:
:mod:`medbind_lib.export`). ``checkpoint="untrained"`` is the architecture initialised with ``seed`` exactly as the
training run was at step 0, never trained."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import torch

from ..export import write_embeddings
from ..replicates import parse_run, with_run_seed
from ..runtime import seed_everything
from ..trainer import load_weights
from .pretrain import default_out_dir, load_checkpoint, model_for_variant

__all__ = ["load_model", "export_embeddings", "SEED_DATASETS"]


def load_model(cfg, variant: str, checkpoint, device):
    """``(model, step, checkpoint file name)`` of a MEDBind variant (or seed replicate) at ``checkpoint``:
    ``best`` | ``last`` (of ``runs/<profile>/02/<variant>/``), a path, or ``untrained`` (its initialisation)."""
    seed_everything(with_run_seed(cfg, variant).seed)          # a replicate run's own seed (its untrained init)
    model = model_for_variant(cfg, parse_run(variant)[0])
    step, name = 0, "untrained"
    if checkpoint != "untrained":
        p = Path(checkpoint) if checkpoint not in ("best", "last") else default_out_dir(cfg, variant) / f"{checkpoint}.pt"
        if not p.exists():
            raise FileNotFoundError(f"checkpoint {p} not found: train the variant first "
                                    f"(python -m medbind_lib.medbind.pretrain --profile {cfg.profile} --variant {variant})")
        ck = load_checkpoint(p)
        load_weights(model, ck, p)
        step, name = int(ck["step"]), str(p.name)
    return model.to(device).eval(), step, name


# what notebooks 04-06 and 11 read of a MEDBind seed replicate (Figs. 2-3, Table 3, MEDCSP's head to head)
SEED_DATASETS = ("mimic_cxr", "mimic_pair", "ptbxl", "icbeb", "covid", "rsna", "openi")


def export_embeddings(cfg, variant: str, checkpoint: str = "best", out_dir=None, datasets: Optional[Iterable[str]] = None,
                      splits=("valid", "test"), device=None, batch_size: int = 64, linked: dict | None = None) -> dict:
    """Write one ``.npz`` per evaluation dataset for a MEDBind variant at ``checkpoint`` (``load_model``);
    returns {dataset: path}. A seed replicate (``<variant>@seed<k>``) writes only what the seed comparisons read
    (``SEED_DATASETS``: Table 2's CheXpert 5x200 and MIMIC-ECG rows are the first seed's)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if datasets is None and parse_run(variant)[1]:
        datasets = SEED_DATASETS
    return write_embeddings(cfg, variant, checkpoint, out_dir, datasets, splits, device, batch_size, linked,
                            loaded=load_model(cfg, variant, checkpoint, device))
