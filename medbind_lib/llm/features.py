"""What each Table 4 row adds to the task text: frozen CXR/ECG embeddings, or the expert report texts.

Rows (``SYSTEMS``): ``task_text`` (the task text alone: our reference for "do the extra inputs help"),
``text_only`` (the paper's row: the task text plus the linked CXR report (FINDINGS + IMPRESSION) and ECG
text (Table A.2) as a second segment), the encoder zoo (a CXR baseline's CXR encoder with ECG-CLIP's ECG
encoder: two separately trained models) and MEDBind_NM / MEDBind_BD (one model for both modalities).

Embeddings are the variant's joint-space outputs (L2-normalised, ``embed_dim``) of the records linked to the
task admissions, computed from ``runs/<profile>/02/<variant>/<checkpoint>.pt`` through the same caches and
``embeddings.embed_arrays`` as notebook 02's export (all splits: the export holds only valid/test), and
cached in ``runs/<profile>/07/features/`` keyed by the checkpoint file's signature.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .. import registry
from ..cache import file_signature
from ..errors import DataError
from ..io import atomic_path
from ..layout import RunLayout
from ..quality import QualityLog

SYSTEMS = {k: registry.system(k) for k in registry.table_rows("table4")}   # Table 4's rows (registry)


def checkpoint_path(cfg, variant: str, checkpoint: str = "best") -> Path:
    """The checkpoint file, or a DataError naming it and the notebook that writes it."""
    p = RunLayout(cfg).checkpoint("medbind", variant, checkpoint)
    if not p.is_file():
        raise DataError(p, f"checkpoint of {variant!r} missing: run notebook 02 for it first "
                           f"(python -m medbind_lib.run --profile {cfg['profile']} --only 02)")
    return p


def required_checkpoints(cfg, systems, checkpoint: str = "best") -> list[Path]:
    """Every checkpoint the rows need; fails before any training with the first missing one named."""
    variants = dict.fromkeys(v for s in systems for v in (SYSTEMS[s].cxr, SYSTEMS[s].ecg) if v)
    return [checkpoint_path(cfg, v, checkpoint) for v in variants]


def _stamp(path: Path) -> str:
    return f"{path.name}:{file_signature(path)}"


def report_texts(frame: pd.DataFrame, linked: Mapping[str, pd.DataFrame]) -> list[str | None]:
    """Second text segment of the text-only row: ``"Chest X-ray report: ... ECG report: ..."`` for the
    linked records present; None when the admission has neither."""
    cxr = dict(zip(linked["cxr"]["record_id"].astype(str), linked["cxr"]["text"]))
    ecg = dict(zip(linked["ecg"]["record_id"].astype(str), linked["ecg"]["text"]))
    out = []
    for c, e in frame[["cxr_record_id", "ecg_record_id"]].itertuples(index=False):
        parts = []
        if isinstance(cxr.get(c), str):
            parts.append(f"Chest X-ray report: {cxr[c]}")
        if isinstance(ecg.get(e), str):
            parts.append(f"ECG report: {ecg[e]}")
        out.append(" ".join(parts) or None)
    return out


def embed_records(cfg, variant: str, modality: str, record_ids, checkpoint: str = "best", device="cpu",
                  linked: Mapping | None = None, quality: QualityLog | None = None) -> dict:
    """``{record_id: embedding}`` of MIMIC ``record_ids`` with ``variant``'s frozen ``modality`` encoder
    (cached per checkpoint signature). Records the cache excluded (unreadable file) are absent and counted."""
    from .. import cohort
    from ..export import embed_arrays, load_embeddings
    from ..medbind.embed import load_model

    ck = checkpoint_path(cfg, variant, checkpoint)
    ids = sorted({str(r) for r in record_ids if r is not None})
    store = RunLayout(cfg).llm_features(variant, modality, checkpoint)

    def log(excluded):
        if quality is not None:
            quality.flag(f"table4_{modality}", f"embedding ({variant})", "record not in the preprocessed cache "
                         "(unreadable or excluded in notebook 01): masked", records=excluded)

    if store.is_file():
        z = load_embeddings(store)
        gone = set(z["excluded"].tolist())
        if str(z["stamp"]) == _stamp(ck) and set(ids) <= set(z["record_id"].tolist()) | gone:
            have = dict(zip(z["record_id"].tolist(), z["emb"]))
            log([r for r in ids if r in gone])
            return {r: have[r] for r in ids if r in have}
    linked = linked if linked is not None else cohort.load_linked(cfg)
    q = QualityLog()
    frame = linked[modality]
    cached = (cohort.cxr_cache if modality == "cxr" else cohort.ecg_cache)(cfg, f"mimic_{modality}", frame, q)
    man = cached.manifest.assign(record_id=cached.manifest["record_id"].astype(str)).set_index("record_id")
    present = [r for r in ids if r in man.index]
    excluded = sorted(set(ids) - set(present))
    log(excluded)
    stats = cohort.ecg_norm_stats(cfg, cached) if modality == "ecg" else None
    model = load_model(cfg, variant, ck, device)[0]
    emb = embed_arrays(model, cached, man.loc[present].reset_index(), modality, cfg, stats, device)
    store.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(store, suffix=".npz") as tmp:
        np.savez(tmp, emb=emb.astype(np.float32), record_id=np.array(present, dtype=str),
                 excluded=np.array(excluded, dtype=str), stamp=np.array(_stamp(ck)), variant=np.array(variant))
    return dict(zip(present, emb))


def modality_inputs(frame: pd.DataFrame, embeddings: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """Row-aligned ``{modality: (emb [N, d] float32, mask [N] bool)}``: rows without a linked (or an
    embeddable) record get zeros and mask False."""
    out = {}
    for m, table in embeddings.items():
        d = len(next(iter(table.values()))) if table else 1
        emb = np.zeros((len(frame), d), np.float32)
        mask = np.zeros(len(frame), bool)
        for i, r in enumerate(frame[f"{m}_record_id"].tolist()):
            if r is not None and r in table:
                emb[i], mask[i] = table[r], True
        out[m] = (emb, mask)
    return out


def system_inputs(cfg, system: str, frame: pd.DataFrame, linked: Mapping, checkpoint: str = "best", device="cpu",
                  quality: QualityLog | None = None) -> dict:
    """Everything a row adds to ``frame``: ``{"pair_text": list | None, "modalities": modality_inputs}``."""
    s = SYSTEMS[system]
    # embed every record linked to any admission (not only this frame's), so one cached file serves all tasks
    emb = {m: embed_records(cfg, s.variant(m), m, linked["admissions"][f"{m}_record_id"].dropna().astype(str),
                            checkpoint, device, linked, quality) for m in s.modalities}
    return {"pair_text": report_texts(frame, linked) if s.reports else None,
            "modalities": modality_inputs(frame, emb),
            "checkpoints": {m: _stamp(checkpoint_path(cfg, s.variant(m), checkpoint)) for m in s.modalities}}
