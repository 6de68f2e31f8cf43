"""The embeddings of every evaluation dataset for a model of either method, and their ``.npz`` store.

``export_embeddings(cfg, variant, checkpoint="best")`` writes
``runs/<profile>/embeddings/<variant>/<dataset>.npz`` (``checkpoint="untrained"`` ->
``.../embeddings/<variant>_untrained/``: same architecture, initialised with ``seed`` exactly as the
training run was at step 0, never trained).  Datasets (only those whose modality the variant's model
has; ECG-CLIP has no CXR encoder, the CXR baselines no ECG encoder):

* ``mimic_cxr``, ``mimic_ecg`` (``splits``, default valid + test): ``emb`` and ``text_emb`` (the record's
  report / Table A.2 text), ``labels`` (CheXpert 14 multi-hot, 1.0 = positive / ECG superclasses),
* ``mimic_pair``: ``cxr_emb``, ``ecg_emb`` row-aligned per pair, ``cxr_labels`` / ``ecg_labels``,
* ``ptbxl``, ``icbeb`` (ECG; every split, for few-shot), ``chexpert_5x200``, ``covid``, ``rsna``, ``openi``
  (CXR): ``emb``, ``labels`` + ``label_names`` (multi-hot) or ``target`` + ``label`` (single label),
  ``text`` / ``text_emb`` where the dataset has texts (PTB-XL reports, Open-I reports).
* ``mimic_cxr`` and ``openi`` also hold MEDCSP's text->image retrieval gallery (``study_gallery``): ``study_id``
  per row (MIMIC study, Open-I report) and ``extra_emb``, ``extra_record_id``, ``extra_study_id``,
  ``extra_subject_id``, ``extra_split``, ``extra_view``: the other images of the rows' studies (lateral views,
  further frontal ones), which the rows' view filter leaves out.

Every file holds ``record_id``, ``split`` (str arrays), ``variant``, ``checkpoint``, ``step``.  ECGs are
normalised with the MIMIC training-split statistic (the model's input convention) for every dataset.
Files are written atomically (temporary file + rename).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd
import torch

from . import cohort, registry
from .constants import CHEXPERT_LABELS, ECG_SUPERCLASSES, ICBEB_CLASSES
from .io import atomic_path, write_json_atomic
from .layout import RunLayout
from .loading import EvalArrayDataset, label_matrix
from .models._common import MissingWeightsError
from .models.text import save_text_cache
from .quality import QualityLog
from .runtime import progress

__all__ = ["DATASETS", "CXR_SETS", "ECG_SETS", "STUDY_COLUMNS", "embed_arrays", "embed_texts", "as_str",
           "save_embeddings", "load_embeddings", "study_gallery", "write_embeddings", "pretrained_spec",
           "export_pretrained"]

ECG_SETS = ("mimic_ecg", "ptbxl", "icbeb")
CXR_SETS = ("mimic_cxr", "chexpert_5x200", "covid", "rsna", "openi")
DATASETS = ("mimic_cxr", "mimic_ecg", "mimic_pair", "ptbxl", "icbeb", "chexpert_5x200", "covid", "rsna", "openi")
MULTI_LABELS = {"mimic_cxr": CHEXPERT_LABELS, "mimic_ecg": ECG_SUPERCLASSES, "ptbxl": ECG_SUPERCLASSES,
                "icbeb": ICBEB_CLASSES}
STUDY_COLUMNS = {"mimic_cxr": "study_id", "openi": "report_id"}   # retrieval sets: the report each image belongs to


def _amp(device):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def embed_arrays(model, cached, manifest: pd.DataFrame, modality: str, cfg, ecg_stats=None, device="cpu",
                 batch_size: int = 64, show: bool = False) -> np.ndarray:
    """[N, d] float32 embeddings of the ``manifest`` rows (with cache ``index``) in order."""
    ds = EvalArrayDataset(cached.array, manifest, modality, cfg, ecg_stats, getattr(model, "cxr_transform", None))
    out = []
    for s in progress(range(0, len(ds), batch_size), enabled=show, desc=f"embed {modality}"):
        x = torch.stack([ds[i][0] for i in range(s, min(len(ds), s + batch_size))]).to(device)
        with _amp(device):
            z = model.encode_cxr(x) if modality == "cxr" else model.encode_ecg(x)
        out.append(z.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.embed_dim), np.float32)


@torch.no_grad()
def embed_texts(model, texts: Iterable[str], modality: str = "cxr", device="cpu", batch_size: int = 64) -> np.ndarray:
    """[N, d] text embeddings; each distinct text is encoded once."""
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    uniq = list(dict.fromkeys(texts))
    embs = []
    for s in range(0, len(uniq), batch_size):
        tok = model.tokenize(uniq[s:s + batch_size], device=device)
        with _amp(device):
            embs.append(model.encode_text(tok, modality=modality).float().cpu().numpy())
    if not embs:
        return np.zeros((0, model.embed_dim), np.float32)
    z = np.concatenate(embs)
    pos = {t: i for i, t in enumerate(uniq)}
    return z[[pos[t] for t in texts]]


def _labels(df: pd.DataFrame, names) -> np.ndarray:
    if "labels" in df.columns and df["labels"].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).all():
        return np.array([[float(c in set(v)) for c in names] for v in df["labels"]], np.float32).reshape(-1, len(names))
    return label_matrix(df, names)


def study_gallery(model, cfg, dataset: str, rows: pd.DataFrame, cache_name: str, device="cpu",
                  batch_size: int = 64, quality: QualityLog | None = None) -> dict:
    """``extra_*`` arrays: the images of ``rows``' studies that are not rows (``cohort.extra_study_images``),
    embedded as the rows are. Why: MEDCSP's retrieval relevance is "the corresponding X-ray images" (every image
    of the report's study, frontal and lateral); only the missing images are cached and embedded, so the frontal
    cache is not copied."""
    q = quality if quality is not None else QualityLog()
    man = cohort.extra_study_images(cohort.all_study_images(cfg, dataset, q), rows)
    emb = np.zeros((0, model.embed_dim), np.float32)
    if len(man):
        cached = cohort.cxr_cache(cfg, cache_name, man, q)
        man = cached.manifest
        emb = embed_arrays(model, cached, man, "cxr", cfg, None, device, batch_size)
    return {"extra_emb": emb, "extra_record_id": as_str(man["record_id"]), "extra_study_id": as_str(man["study"]),
            "extra_subject_id": as_str(man["subject_id"]), "extra_split": as_str(man["split"]),
            "extra_view": as_str(man["view"])}


def as_str(a) -> np.ndarray:
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in a], dtype=str)


def save_embeddings(path: Path, arrays: dict) -> Path:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_embeddings(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_embeddings(cfg, variant: str, checkpoint: str = "best", out_dir=None, datasets: Optional[Iterable[str]] = None,
                      splits=("valid", "test"), device=None, batch_size: int = 64, linked: dict | None = None,
                      *, loaded: tuple) -> dict:
    """Write one ``.npz`` per dataset (module docstring); returns {dataset: path}.

    ``loaded``: ``(model, step, checkpoint name)`` of the caller's model: any model with ``encoders``,
    ``embed_dim``, ``encode_cxr`` / ``encode_ecg``, ``tokenize`` and ``encode_text(tokens, modality)`` (MEDBind's,
    or MEDCSP's through :class:`medbind_lib.medcsp.embed.CXRView`); ``checkpoint`` names the export folder
    (``untrained`` -> ``<variant>_untrained``).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, step, ck_name = loaded
    tag = variant + ("_untrained" if checkpoint == "untrained" else "")
    out = Path(out_dir) if out_dir is not None else RunLayout(cfg).embeddings(tag)
    linked = linked if linked is not None else cohort.load_linked(cfg)
    q = QualityLog()
    has = set(model.encoders)
    wanted = [d for d in (datasets or DATASETS) if d in DATASETS]
    meta = {"variant": np.array(variant), "checkpoint": np.array(ck_name), "step": np.array(step)}
    frames = {"mimic_cxr": linked["cxr"], "mimic_ecg": linked["ecg"],
              **{k[len("external_"):]: v for k, v in linked.items() if k.startswith("external_")}}
    caches, stats = {}, None

    def cache_of(name):
        if name not in caches:
            mod = "ecg" if name in ECG_SETS else "cxr"
            fn = cohort.ecg_cache if mod == "ecg" else cohort.cxr_cache
            caches[name] = fn(cfg, name, frames[name], q)
        return caches[name]

    def ecg_stats():
        nonlocal stats
        if stats is None:
            stats = cohort.ecg_norm_stats(cfg, cache_of("mimic_ecg"))
        return stats

    written = {}
    for name in wanted:
        if name == "mimic_pair":
            if not {"cxr", "ecg"} <= has:
                continue
            cc, ec = cache_of("mimic_cxr"), cache_of("mimic_ecg")
            pr = linked["pairs"][linked["pairs"]["split"].isin(splits)].copy()
            cm = cc.manifest.set_index(cc.manifest["record_id"].astype(str))
            em = ec.manifest.set_index(ec.manifest["record_id"].astype(str))
            pr = pr[pr["cxr_record_id"].astype(str).isin(cm.index) & pr["ecg_record_id"].astype(str).isin(em.index)]
            cman = cm.loc[pr["cxr_record_id"].astype(str)].reset_index(drop=True)
            eman = em.loc[pr["ecg_record_id"].astype(str)].reset_index(drop=True)
            arrays = {"cxr_emb": embed_arrays(model, cc, cman, "cxr", cfg, None, device, batch_size),
                      "ecg_emb": embed_arrays(model, ec, eman, "ecg", cfg, ecg_stats(), device, batch_size),
                      "cxr_record_id": as_str(pr["cxr_record_id"]), "ecg_record_id": as_str(pr["ecg_record_id"]),
                      "subject_id": as_str(pr["subject_id"]), "split": as_str(pr["split"]),
                      "cxr_labels": _labels(cman, CHEXPERT_LABELS), "ecg_labels": _labels(eman, ECG_SUPERCLASSES),
                      "cxr_label_names": np.array(CHEXPERT_LABELS), "ecg_label_names": np.array(ECG_SUPERCLASSES),
                      "cxr_text": as_str(cman.get("text", pd.Series([""] * len(cman)))),
                      "ecg_text": as_str(eman.get("text", pd.Series([""] * len(eman))))}
            written[name] = save_embeddings(out / f"{name}.npz", {**arrays, **meta})
            continue
        mod = "ecg" if name in ECG_SETS else "cxr"
        if mod not in has or name not in frames:
            continue
        cached = cache_of(name)
        man = cached.manifest.copy()
        if name.startswith("mimic_"):
            man = man[man["split"].isin(splits)]
        man = man.reset_index(drop=True)
        arrays = {"emb": embed_arrays(model, cached, man, mod, cfg, ecg_stats() if mod == "ecg" else None, device,
                                      batch_size),
                  "record_id": as_str(man["record_id"]), "split": as_str(man["split"].fillna("test"))}
        if "subject_id" in man:
            arrays["subject_id"] = as_str(man["subject_id"])
        if name in MULTI_LABELS:
            arrays["labels"] = _labels(man, MULTI_LABELS[name])
            arrays["label_names"] = np.array(MULTI_LABELS[name])
        if "target" in man:
            arrays["target"] = man["target"].to_numpy(np.int64)
        if "label" in man:
            arrays["label"] = as_str(man["label"])
        if "labelled" in man:
            arrays["labelled"] = man["labelled"].to_numpy(bool)
        text_col = "text" if "text" in man else ("report" if "report" in man else None)
        if text_col is not None:
            arrays["text"] = as_str(man[text_col])
            arrays["text_emb"] = embed_texts(model, arrays["text"].tolist(), mod, device, batch_size)
        if name in STUDY_COLUMNS:
            arrays["study_id"] = as_str(man[STUDY_COLUMNS[name]])
            rows = pd.DataFrame({"study": arrays["study_id"], "image_id": arrays["record_id"],
                                 "split": arrays["split"], "subject_id": arrays["subject_id"]})
            arrays.update(study_gallery(model, cfg, name, rows, f"{name}_extra", device, batch_size, q))
        written[name] = save_embeddings(out / f"{name}.npz", {**arrays, **meta})
    save_text_cache()
    return written


# ------------------------------------------------------------------------------------------------ pre-trained rows
def pretrained_spec(cfg, row: str) -> dict | None:
    """``row``'s weights as ``models.pretrained.load`` takes them (family from the registry, the profile's entry,
    relative paths under ``pretrained_dir``: the rebuilt families' sources, ``local-dir:`` folders, an open_clip
    weights file, and a Hugging Face folder that exists there); None when the profile names none."""
    entry = (cfg.get("pretrained_models") or {}).get(row)
    if not entry:
        return None
    spec = {**entry, "family": registry.PRETRAINED[row]["family"]}
    base = cfg.get("pretrained_dir")
    if not base:
        return spec
    for key in ("source", "pretrained"):
        val = spec.get(key)
        if not isinstance(val, str):
            continue
        prefix = "local-dir:" if val.startswith("local-dir:") else ""
        path = Path(val[len(prefix):])
        here = Path(base) / path
        if not path.is_absolute() and (prefix or here.exists() or (key == "source" and spec["family"] in
                                                                   ("medclip_release", "cxr_clip_release"))):
            spec[key] = prefix + str(here)
    return spec


def _signature(cfg, spec: dict, datasets) -> dict:
    """What a pre-trained row's embeddings depend on: its weights, the linked cohort (notebook 01's link_params.json)
    and the image cache's settings."""
    link = RunLayout(cfg).linked / "link_params.json"
    return {"spec": spec, "datasets": list(datasets), "cxr_cache_size": cfg.get("cxr_cache_size"),
            "cxr_resize": cfg.get("cxr_resize"),
            "link_params": hashlib.sha256(link.read_bytes()).hexdigest() if link.is_file() else None}


def export_pretrained(cfg, rows: Iterable[str] = registry.PRETRAINED_ROWS, device=None,
                      datasets: Iterable[str] = CXR_SETS) -> pd.DataFrame:
    """Every CXR evaluation set's embeddings (``write_embeddings``) for each pre-trained row the profile names, with
    that model's own preprocessing; one status row per row: scored, reused, or why not (not named: "needs
    pre-trained weights (paper profile)"; weights not on this machine: what to fetch; a checkpoint that does not
    load: the error, naming the file and keys). Reused when the folder's ``pretrained.json`` (written last, so a crash
    leaves no stale marker) holds the same ``_signature``; anything else there is removed first, so embeddings of
    another model or cohort never stand for this one."""
    from .models.pretrained import load

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    datasets = list(datasets)
    status = []
    for row in rows:
        spec = pretrained_spec(cfg, row)
        base = {"row": row, "label": registry.system(row).label, "family": registry.PRETRAINED[row]["family"],
                "source": "" if spec is None else spec["source"]}
        out = RunLayout(cfg).embeddings(row)
        marker = out / "pretrained.json"
        sig = None if spec is None else _signature(cfg, spec, datasets)
        if sig is not None and marker.is_file() and json.loads(marker.read_text()) == sig:
            status.append({**base, "status": "scored (embeddings reused)"})
            continue
        for old in [marker, *out.glob("*.npz")]:
            old.unlink(missing_ok=True)
        if spec is None:
            status.append({**base, "status": registry.NEEDS_WEIGHTS})
            continue
        try:
            model = load(spec, bool(cfg.get("pretrained_allow_download"))).to(device)
        except MissingWeightsError as e:
            status.append({**base, "status": f"weights missing: {e}"})
            continue
        except (ValueError, RuntimeError, OSError) as e:      # a file that is not the model it claims to be
            status.append({**base, "status": f"failed to load: {type(e).__name__}: {e}"})
            continue
        written = write_embeddings(cfg, row, datasets=datasets, device=device, loaded=(model, 0, spec["source"]))
        write_json_atomic(marker, sig)
        status.append({**base, "status": f"scored: {len(written)} datasets ({', '.join(written)})"})
    return pd.DataFrame(status, columns=["row", "label", "family", "source", "status"])
