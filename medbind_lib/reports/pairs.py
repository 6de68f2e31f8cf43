"""MIMIC-PAIR for Fig. 2 and Table 3: the pairs of a split with their labels (HYP from the ECG,
Cardiomegaly from the CXR) and each system's row-aligned CXR and ECG embeddings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.protocol import EvalSettings
from ..registry import System
from .artifacts import Artifacts


def pair_labels(art: Artifacts, split: str, s: EvalSettings | None = None) -> pd.DataFrame:
    """The MIMIC-PAIR pairs of ``split`` (notebook 01) with the Table 3 labels: ``hyp`` (1 = the ECG's
    Table A.3 labels include HYP, NaN = unlabelled ECG) and ``cardiomegaly`` (1 = CheXpert 1.0; uncertain
    -1.0 excluded (NaN) or negative per ``cardiomegaly_uncertain``; NaN = unlabelled study), plus the ECG's
    primary superclass for colouring."""
    s = s or EvalSettings()
    linked = art.linked()
    p = linked["pairs"]
    p = p[p["split"] == split].copy()
    p["cxr_record_id"], p["ecg_record_id"] = p["cxr_record_id"].astype(str), p["ecg_record_id"].astype(str)
    ecg = linked["ecg"].set_index(linked["ecg"]["record_id"].astype(str))
    cxr = linked["cxr"].set_index(linked["cxr"]["record_id"].astype(str))
    e = ecg.reindex(p["ecg_record_id"])
    c = cxr.reindex(p["cxr_record_id"])
    labs = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in e["labels"]]
    e_lab = e["labelled"].fillna(False).astype(bool).to_numpy()
    p["hyp"] = np.where(e_lab, [float("HYP" in v) for v in labs], np.nan)
    p["ecg_class"] = [("unlabelled" if not ok else (v[0] if len(v) == 1 else "multiple"))
                      for ok, v in zip(e_lab, labs)]
    cm = pd.to_numeric(c["Cardiomegaly"], errors="coerce").to_numpy()
    c_lab = c["labelled"].fillna(False).astype(bool).to_numpy() if "labelled" in c else np.ones(len(c), bool)
    unc = np.nan if s.cardiomegaly_uncertain == "exclude" else 0.0
    p["cardiomegaly"] = np.where(~c_lab, np.nan, np.where(cm == 1.0, 1.0, np.where(cm == -1.0, unc, 0.0)))
    return p.reset_index(drop=True)


def _lookup_or_embed(art: Artifacts, variant: str, checkpoint: str, modality: str, record_ids: np.ndarray,
                     split: str, cache_dir: Path | None) -> np.ndarray:
    """Embeddings of MIMIC ``record_ids`` of one modality: from the exported ``mimic_<modality>.npz`` when it
    holds them (valid/test), else embedded from the checkpoint (training split; cached under ``cache_dir``)."""
    tag = variant + ("_untrained" if checkpoint == "untrained" else "")
    ds = f"mimic_{modality}"
    if art.has(tag, ds):
        d = art.load(tag, ds)
        pos = {r: i for i, r in enumerate(d["record_id"].tolist())}
        if all(r in pos for r in record_ids):
            return d["emb"][[pos[r] for r in record_ids]]
    cache = None if cache_dir is None else Path(cache_dir) / tag / f"{ds}_{split}.npz"
    if cache is not None and cache.is_file():
        from ..export import load_embeddings

        z = load_embeddings(cache)
        pos = {r: i for i, r in enumerate(z["record_id"].tolist())}
        if all(r in pos for r in record_ids):
            return z["emb"][[pos[r] for r in record_ids]]
    emb = _embed_records(art, variant, checkpoint, modality, record_ids)
    if cache is not None:
        from ..io import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, emb=emb, record_id=np.array(record_ids, dtype=str))
    return emb


def _embed_records(art: Artifacts, variant: str, checkpoint: str, modality: str, record_ids) -> np.ndarray:
    """Embed MIMIC records with a variant's encoder through the same cache and path as the export."""
    from .. import cohort
    from ..export import embed_arrays
    from ..quality import QualityLog

    cfg, q = art.cfg, QualityLog()
    linked = art.linked()
    frame = linked["cxr"] if modality == "cxr" else linked["ecg"]
    cached = (cohort.cxr_cache if modality == "cxr" else cohort.ecg_cache)(cfg, f"mimic_{modality}", frame, q)
    man = cached.manifest.set_index(cached.manifest["record_id"].astype(str)).loc[list(record_ids)].reset_index(
        drop=True)
    stats = cohort.ecg_norm_stats(cfg, cached) if modality == "ecg" else None
    model = art.model(variant, checkpoint)
    return embed_arrays(model, cached, man, modality, cfg, stats, art.device)


def pair_embeddings(art: Artifacts, system: System, split: str = "test", s: EvalSettings | None = None,
                    cache_dir=None) -> dict:
    """Row-aligned CXR and ECG embeddings of the MIMIC-PAIR pairs of ``split`` for ``system`` (its CXR
    encoder's CXR embedding, its ECG encoder's ECG embedding) with the pair labels (``pair_labels``)."""
    pl = pair_labels(art, split, s)
    out = {"pairs": pl}
    for modality in ("cxr", "ecg"):
        v = system.variant(modality)
        if v is None:
            raise ValueError(f"system {system.key} has no {modality} encoder")
        out[modality] = _lookup_or_embed(art, v, system.checkpoint, modality,
                                         pl[f"{modality}_record_id"].to_numpy(str), split, cache_dir)
    return out
