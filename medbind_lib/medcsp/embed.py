"""Embeddings of a MEDCSP model for every evaluation set, in the suite's one format (notebook 09).

``export_medcsp_embeddings(cfg, run, checkpoint="best")`` writes ``runs/<profile>/embeddings/<run>/``
(``<run>_untrained/`` for ``checkpoint="untrained"``: the architecture initialised with ``seed`` exactly as
the training run was at step 0):

* ``mimic_cxr``, ``chexpert_5x200``, ``covid``, ``rsna``, ``openi``: the files MEDBind's systems write
  (:func:`medbind_lib.export.write_embeddings`, through :class:`CXRView`: image embedding = ``emb``,
  report embedding = ``text_emb``), so every table and figure reads MEDCSP and MEDBind rows alike;
* ``mimic_cxr_holdout``: the retrieval hold-out (CXR studies of patients absent from the EHR source, never
  in pre-training): ``emb`` (the study's record image), ``text_emb`` (report), ``text``, ``record_id``,
  ``study_id``, ``subject_id``, and the ``extra_*`` gallery of :func:`medbind_lib.export.study_gallery` (the
  studies' other images, lateral views included: MEDCSP's retrieval ranks every image of a report's study);
* ``mimic_cxr_cases``: the case studies' patients (:mod:`medbind_lib.medcsp.cases`: the ``medcsp_case_top``
  patients with most CXR studies among the pre-training and among the test patients), one row per cached
  frontal image of their studies: ``emb`` (image), ``text_emb`` (the study's report), ``text``, ``record_id``,
  ``study_id``, ``subject_id``, ``split``, ``population``, ``rank`` (the patient's place in its population);
* ``ehr_records`` (variants with the EHR encoders): every EHR record of every split, one ``<modality>_emb``
  [N, d] per EHR modality (zeros where absent) with ``mask`` [N, 5], the record embedding ``emb`` (masked
  mean, Eq. 2), ``hadm_id``, ``subject_id``, ``split`` - the EHR task cohorts select their rows by
  ``hadm_id``.
Every file holds ``variant``, ``checkpoint`` and ``step``; writes are atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import registry
from ..layout import RunLayout
from ..loading import TokenizeFn
from ..export import as_str, embed_arrays, embed_texts, save_embeddings, study_gallery, write_embeddings
from ..models.text import save_text_cache
from ..losses.medcsp import record_embeddings
from ..replicates import parse_run, with_run_seed
from ..runtime import seed_everything
from . import batches as B
from . import cases
from .encode import embed_rows
from .pretrain import default_out_dir, model_modalities

__all__ = ["CXRView", "load_medcsp_model", "embed_rows", "export_medcsp_embeddings", "export_untrained_reference",
           "CXR_SETS", "SEED_SETS"]

CXR_SETS = ("mimic_cxr", "chexpert_5x200", "covid", "rsna", "openi")
SEED_SETS = ("mimic_cxr", "covid", "openi")      # what notebooks 11-12 and the mechanism table read of a replicate
EHR_MODALITIES = ("icd", "drug", "demo", "temporal", "note")


class CXRView(nn.Module):
    """MEDCSP's image and report towers under the names MEDBind's evaluation calls (``cxr``, ``cxr`` text)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        self.encoders = {"cxr": model.encoders["image"], "text": model.encoders["text"]}

    def encode_cxr(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode("image", x)

    def encode_text(self, tokens, modality: str = "cxr") -> torch.Tensor:
        if modality != "cxr":
            raise ValueError(f"MEDCSP embeds CXR reports only, not {modality!r} texts")
        return self.model.encode_text(tokens, "report")

    def tokenize(self, texts, device=None) -> dict:
        return self.model.tokenize(texts, device=device)


def load_medcsp_model(cfg, run: str, checkpoint: str = "best", device="cpu", input_dims: Optional[dict] = None):
    """(model in eval mode, step, checkpoint name).  ``untrained``: built from ``input_dims`` (notebook 08's
    feature widths) with the run's seed, as :func:`medbind_lib.trainer.fit` builds it before step 0."""
    from ..models.medcsp import build_medcsp_model, medcsp_model_from_config
    from ..trainer import load_checkpoint, load_weights

    variant, _ = parse_run(run)
    seed_everything(with_run_seed(cfg, run).seed)
    if checkpoint == "untrained":
        if input_dims is None:
            raise ValueError("an untrained MEDCSP model needs input_dims (MEDCSPMethod.input_dims())")
        model = build_medcsp_model(cfg, input_dims=input_dims, medcsp_modalities=list(model_modalities(variant)))
        return model.to(device).eval(), 0, "untrained"
    p = Path(checkpoint) if checkpoint not in ("best", "last") else default_out_dir(cfg, run) / f"{checkpoint}.pt"
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} not found: train the variant first "
                                f"(python -m medbind_lib.medcsp.pretrain --profile {cfg.profile} --variant {run})")
    ck = load_checkpoint(p)
    model = medcsp_model_from_config(ck["model_config"])
    load_weights(model, ck, p)
    return model.to(device).eval(), int(ck["step"]), p.name


def _holdout(model, loaded, cfg, collate, device, batch_size) -> dict:
    recs = B.holdout_records(loaded["data"], loaded["cxr_cached"])
    arr = loaded["cxr_cached"].array
    ds = B.MEDCSPDataset(recs, loaded["data"], arr, cfg, train=False)
    z = embed_rows(model, ds, collate, np.arange(len(recs)), device, batch_size)
    f = recs.records
    out = {"emb": z["image"], "text_emb": z["report"], "text": as_str(f["report_text"]),
           "record_id": as_str(f["record_id"]), "subject_id": as_str(f["subject_id"]),
           "study_id": as_str(f["record_id"].str.removeprefix("cxr-")), "split": as_str(["holdout"] * len(f))}
    image = loaded["data"]["holdout_records"].set_index("record_id")["image_record_id"]
    rows = pd.DataFrame({"study": out["study_id"], "image_id": as_str(image.loc[f["record_id"]]),
                         "split": out["split"], "subject_id": out["subject_id"]})
    return {**out, **study_gallery(CXRView(model), cfg, "mimic_cxr", rows, "mimic_cxr_holdout_extra", device,
                                   batch_size)}


@torch.no_grad()
def _cases(view: CXRView, loaded, cfg, device, batch_size) -> dict:
    """Figures 8-9's patients. Images and reports go through ``mimic_cxr.npz``'s path (``embed_arrays``,
    ``embed_texts``), so a test image embeds here as it does there; pre-training patients are in no other file."""
    cached = loaded["cxr_cached"]
    rows = cases.case_images(loaded["data"]["cxr_records"], cached.manifest, cfg.medcsp_case_top)
    text = as_str(rows["text"])
    return {"emb": embed_arrays(view, cached, rows, "cxr", cfg, None, device, batch_size),
            "text_emb": embed_texts(view, text.tolist(), "cxr", device, batch_size), "text": text,
            **{k: as_str(rows[k]) for k in ("record_id", "study_id", "subject_id", "split", "population")},
            "rank": rows["rank"].to_numpy(np.int64)}


def _ehr(model, loaded, cfg, collate, device, batch_size) -> dict:
    from ..models.medcsp import MEDCSP_MODALITIES

    parts = []
    for split, recs in loaded["records"].items():
        ehr_rows = np.flatnonzero(recs.source == 0)
        ds = B.MEDCSPDataset(recs, loaded["data"], loaded["cxr_cached"].array, cfg, train=False)
        z = embed_rows(model, ds, collate, ehr_rows, device, batch_size)
        f = recs.records.iloc[ehr_rows]
        parts.append((split, f, z))
    cols = [MEDCSP_MODALITIES.index(m) for m in EHR_MODALITIES]
    mask = np.concatenate([z["mask"][:, cols] for _, _, z in parts]).astype(bool)
    emb = {m: np.concatenate([z[m] for _, _, z in parts]) for m in EHR_MODALITIES}
    _, _, c = record_embeddings({m: torch.from_numpy(v) for m, v in emb.items()}, torch.from_numpy(mask), EHR_MODALITIES)
    ehr = loaded["data"]["ehr_records"]
    hadm = np.concatenate([ehr["hadm_id"].to_numpy()[f["ehr_row"].to_numpy()] for _, f, _ in parts])
    return {**{f"{m}_emb": v for m, v in emb.items()}, "mask": mask, "mask_names": np.array(EHR_MODALITIES),
            "emb": c.numpy().astype(np.float32), "hadm_id": hadm.astype(np.int64),
            "subject_id": as_str(np.concatenate([f["subject_id"].to_numpy() for _, f, _ in parts])),
            "record_id": as_str(np.concatenate([f["record_id"].to_numpy() for _, f, _ in parts])),
            "split": as_str(np.concatenate([[s] * len(f) for s, f, _ in parts]))}


def export_medcsp_embeddings(cfg, run: str, checkpoint: str = "best", *, device=None, batch_size: int = 64,
                             loaded: Optional[dict] = None, datasets=None) -> dict:
    """Write the files of the module docstring; returns {name: path}. A seed replicate (``<variant>@seed<k>``)
    writes only what the seed comparisons read (``SEED_SETS``, the hold-out and the EHR records; no case-study
    file): its export is ~30 % of its notebook otherwise."""
    from .pretrain import MEDCSPMethod

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    variant, k = parse_run(run)
    datasets = datasets if datasets is not None else (SEED_SETS if k else CXR_SETS)
    loaded = loaded if loaded is not None else B.load_records(cfg, splits=("train", "valid", "test"))
    dims = MEDCSPMethod.input_dims_of(loaded["data"])
    model, step, name = load_medcsp_model(cfg, run, checkpoint, device, input_dims=dims)
    tag = run + ("_untrained" if checkpoint == "untrained" else "")
    out = RunLayout(cfg).embeddings(tag)
    view = CXRView(model)
    written = write_embeddings(cfg, run, out_dir=out, datasets=datasets, device=device, batch_size=batch_size,
                                loaded=(view, step, name))
    meta = {"variant": np.array(run), "checkpoint": np.array(name), "step": np.array(step)}
    collate = B.MEDCSPCollator(TokenizeFn.from_model(model), text_dedup=True,
                               dims=B.MEDCSPDataset(loaded["records"]["train"], loaded["data"],
                                                    loaded["cxr_cached"].array, cfg, train=False).dims)
    written["mimic_cxr_holdout"] = save_embeddings(out / "mimic_cxr_holdout.npz",
                                         {**_holdout(model, loaded, cfg, collate, device, batch_size), **meta})
    if not k:                                                    # Figures 8-9 read the first seed's
        written[cases.CASES_FILE] = save_embeddings(out / f"{cases.CASES_FILE}.npz",
                                                    {**_cases(view, loaded, cfg, device, batch_size), **meta})
    if "ehr" in registry.variant(variant).sources:
        written["ehr_records"] = save_embeddings(out / "ehr_records.npz", {**_ehr(model, loaded, cfg, collate, device,
                                                                         batch_size), **meta})
    save_text_cache()
    return written


def export_untrained_reference(cfg, run: str, *, loaded: Optional[dict] = None, device=None) -> Path:
    """Export ``run``'s untrained initialisation (``<run>_untrained/``) unless it is there already. Two notebook
    lanes may reach this at once (each MEDCSP run of a seed exports its reference if absent): an exclusive lock on
    a file beside the embeddings makes the second wait and then find it, instead of exporting it again."""
    import fcntl

    root = RunLayout(cfg).embeddings()
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{run}_untrained"
    with open(root / f".{run}_untrained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "ehr_records.npz").exists():           # written last by export_medcsp_embeddings
            export_medcsp_embeddings(cfg, run, "untrained", device=device, loaded=loaded)
    return out
