"""Assemble the cohort a profile describes: manifests -> texts/labels -> linking -> Table 1 -> caches.

Notebook 01 calls these and writes their outputs under ``runs/<profile>/01/``; later notebooks read
those files (``load_linked``) instead of recomputing. Every record dropped here is counted in the
QualityLog with its reason.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache, linking
from .constants import ECG_SUPERCLASSES, ICBEB_CLASSES, LEADS
from .datasets import load_manifest, load_tables
from .errors import DataError
from .io import write_csv_atomic, write_json_atomic, write_parquet_atomic
from .layout import RunLayout
from .preprocess import cxr as pcxr
from .preprocess import ecg as pecg
from .preprocess import text as ptext
from .quality import QualityLog

CACHE_VERSION = 1  # bump when preprocessing code changes in a way the params do not show
ECG_DATASETS = ("mimic_ecg", "ptbxl", "icbeb")
CXR_DATASETS = ("mimic_cxr", "chexpert_5x200", "covid", "rsna", "openi")


# --------------------------------------------------------------------------------------------- texts
def attach_cxr_text(cxr: pd.DataFrame, cfg, quality: QualityLog) -> pd.DataFrame:
    """Add ``text`` (FINDINGS + IMPRESSION, first ``text_max_words`` words) per study; count and drop
    images whose report is missing, empty, unreadable or has neither section (stray non-UTF-8 bytes are
    read as latin-1 and counted, not dropped)."""
    texts, reasons = {}, {}
    for study, path in cxr.drop_duplicates("study_id")[["study_id", "report_path"]].itertuples(index=False):
        try:
            t = ptext.cxr_report_text(ptext.read_report(path, quality), sections=tuple(cfg.cxr_text_sections))
        except DataError as e:
            reasons[study] = "report missing, empty or unreadable" if "not found" not in e.problem \
                else "report file missing"
            continue
        if t is None:
            reasons[study] = "report without FINDINGS/IMPRESSION"
        else:
            texts[study] = ptext.truncate_words(t, cfg.text_max_words)
    out = cxr.assign(text=cxr["study_id"].map(texts))
    quality.seen("mimic_cxr", "report text", len(out))
    for reason in sorted(set(reasons.values())):
        bad = out["study_id"].isin([s for s, r in reasons.items() if r == reason])
        quality.exclude("mimic_cxr", "report text", reason, records=out.loc[bad, "record_id"])
    return out[out["text"].notna()].reset_index(drop=True)


def attach_ecg_text(ecg: pd.DataFrame, cfg, quality: QualityLog) -> pd.DataFrame:
    """Add the Table A.2 ``text`` (from the machine statements: MIMIC-IV-ECG's free-text notes are not public)
    and Table A.3 labels. ECGs with a disallowed phrase (Table A.3) or no statement at all are dropped and
    counted; so are ECGs the Table A.3 rules cannot label when ``mimic_ecg_unlabelled`` is ``exclude`` (the
    paper: Table A.4's labelled counts make up Table 1's MIMIC-ECG), else they stay for pre-training and
    retrieval with ``labelled`` False."""
    text = [ptext.ecg_text(r, None, "machine") for r in ecg["machine_reports"]]
    out = ecg.assign(text=[ptext.truncate_words(t, cfg.text_max_words) for t in text])
    labels = ptext.ecg_label_frame(pd.Series(text, index=out.index))
    out = pd.concat([out, labels], axis=1)
    out["labels"] = [[c for c in ECG_SUPERCLASSES if row[c]] for _, row in labels.iterrows()]
    quality.seen("mimic_ecg", "ECG text", len(out))
    no_text = out["text"].isna()
    quality.exclude("mimic_ecg", "ECG text", "no machine statement", records=out.loc[no_text, "record_id"])
    dropped = out["dropped"] & ~no_text
    quality.exclude("mimic_ecg", "ECG text", "disallowed phrase (Table A.3)", records=out.loc[dropped, "record_id"])
    unlabelled = ~out["labelled"].astype(bool) & ~no_text & ~dropped
    if cfg.mimic_ecg_unlabelled == "exclude":
        quality.exclude("mimic_ecg", "ECG text", "no Table A.3 class (mimic_ecg_unlabelled: exclude)",
                        records=out.loc[unlabelled, "record_id"])
    else:
        unlabelled[:] = False
    return out[~(no_text | dropped | unlabelled)].drop(columns="dropped").reset_index(drop=True)


# ------------------------------------------------------------------------------------------- cohort
def mimic_cohort(cfg, quality: QualityLog) -> dict:
    """MIMIC-CXR (AP/PA, with text), MIMIC-ECG (with text), MIMIC-IV tables, linked and split."""
    cxr = load_manifest("mimic_cxr", cfg, quality)
    cxr = pcxr.filter_views(cxr, tuple(cfg.cxr_views), quality, dataset="mimic_cxr")
    cxr = attach_cxr_text(cxr, cfg, quality)
    ecg = attach_ecg_text(load_manifest("mimic_ecg", cfg, quality), cfg, quality)
    tables = load_tables(cfg, tables=("patients", "admissions"), quality=quality)
    linked = linking.link_cohort(cfg, cxr, ecg, tables, quality)
    adm = linked["admissions"]
    adm["demographics_text"] = [ptext.demographics_text(*r) for r in
                                adm[["gender", "anchor_age", "admission_type", "admission_location"]]
                                .itertuples(index=False)]
    return linked


def external_cohort(cfg, quality: QualityLog) -> dict:
    """Evaluation datasets; PTB-XL/ICBEB records without a class are counted and dropped."""
    out = {}
    for name in ("ptbxl", "icbeb", "chexpert_5x200", "covid", "rsna", "openi"):
        df = load_manifest(name, cfg, quality)
        if "labels" in df.columns and name in ("ptbxl", "icbeb"):
            empty = df["labels"].map(len) == 0
            quality.exclude(name, "labels", "no diagnostic class", records=df.loc[empty, "record_id"])
            df = df[~empty].reset_index(drop=True)
        out[name] = df
    return out


_EXTERNAL_ROWS = {  # dataset -> (Table 1 name, task, classes)
    "ptbxl": ("PTB-XL", "ECG superclasses; folds 1-8 / 9 / 10", len(ECG_SUPERCLASSES)),
    "icbeb": ("ICBEB", "ECG 9 classes; 80/20", len(ICBEB_CLASSES)),
    "chexpert_5x200": ("CheXpert 5x200", "CXR 5 classes (GLoRIA rule)", 5),
    "covid": ("COVID", "CXR COVID vs Normal; 80/20", 2),
    "rsna": ("RSNA", "CXR pneumonia vs normal; 70/10/20", 2),
    "openi": ("Open-I", "CXR-report retrieval (test only)", None),
}


def table1(linked: dict, external: dict) -> pd.DataFrame:
    """The paper's Table 1 for this profile: per dataset, task, link, classes and split counts."""
    mimic = linking.table1(linked).rename(columns={"link": "link / rule"})
    mimic.insert(1, "task", ["CXR-text pre-training", "ECG-text pre-training", "CXR-ECG binding",
                             "30-day readmission", "in-hospital mortality"][: len(mimic)])
    rows = []
    for key, df in external.items():
        name, task, classes = _EXTERNAL_ROWS[key]
        split = df["split"].fillna("test").value_counts()
        rows.append({"dataset": name, "task": task, "link / rule": "external (no link)", "classes": classes,
                     "train": int(split.get("train", 0)), "valid": int(split.get("valid", 0)),
                     "test": int(split.get("test", 0)), "total": len(df), "positives": pd.NA})
    out = pd.concat([mimic, pd.DataFrame(rows)], ignore_index=True)
    out = out.astype({"classes": "Int64", "positives": "Int64"})
    return out[["dataset", "task", "classes", "train", "valid", "test", "total", "positives", "link / rule"]]


# ------------------------------------------------------------------------------------------- caches
def _ecg_params(cfg) -> dict:
    return {k: cfg[k] for k in ("ecg_fs", "ecg_seconds", "ecg_nan_policy", "ecg_max_nan_frac",
                                "ecg_gain_override", "ecg_fix_ptbxl_gain")}


def load_ecg_row(row: dict, params: dict, dataset: str) -> np.ndarray:
    """Cache loader (module level so worker processes can pickle it)."""
    return pecg.preprocess_record(row["path"], params, dataset, row.get("signal_format") or "wfdb")


def load_cxr_row(row: dict, size: int, mode: str) -> np.ndarray:
    return pcxr.preprocess_image(row["path"], size, mode)


def ecg_cache(cfg, name: str, manifest: pd.DataFrame, quality: QualityLog):
    params = {**_ecg_params(cfg), "version": CACHE_VERSION}
    n = int(round(cfg.ecg_fs * cfg.ecg_seconds))
    return cache.build(f"ecg-{name}", manifest, functools.partial(load_ecg_row, params=params, dataset=name),
                       (len(LEADS), n), np.float32, params, cfg.cache_dir, quality, cfg.n_workers,
                       cfg.progress, dataset=name)


def cxr_cache(cfg, name: str, manifest: pd.DataFrame, quality: QualityLog):
    params = {"size": cfg.cxr_cache_size, "mode": cfg.cxr_resize, "version": CACHE_VERSION}
    return cache.build(f"cxr-{name}", manifest,
                       functools.partial(load_cxr_row, size=cfg.cxr_cache_size, mode=cfg.cxr_resize),
                       (cfg.cxr_cache_size, cfg.cxr_cache_size), np.uint8, params, cfg.cache_dir, quality,
                       cfg.n_workers, cfg.progress, dataset=name)


def build_caches(cfg, manifests: dict, quality: QualityLog) -> dict:
    """Preprocessed arrays of every dataset, written once (reused while params and files are unchanged)."""
    out = {}
    for name, df in manifests.items():
        if name in ECG_DATASETS:
            out[name] = ecg_cache(cfg, name, df, quality)
        elif name in CXR_DATASETS:
            out[name] = cxr_cache(cfg, name, df, quality)
    return out


# ------------------------------------------------------------------------------------- retrieval galleries
def all_study_images(cfg, name: str, quality: QualityLog) -> pd.DataFrame:
    """Every image of ``name`` (``mimic_cxr`` | ``openi``) whatever its view, with ``study`` (the report it belongs
    to: MIMIC study, Open-I report) and ``view``. Why: the manifests above keep the frontal views (``cxr_views``,
    Open-I's Kaggle ``Frontal``), while MEDCSP's retrieval gallery holds every image of a report's study."""
    if name == "mimic_cxr":
        df = load_manifest(name, cfg, quality, label_source=None)
        return df.assign(study=df["study_id"].astype(str))
    if name == "openi":
        df = load_manifest(name, cfg, quality, frontal_only=False)      # the XML form keeps every image anyway
        return df.assign(study=df["report_id"].astype(str), view=df["projection"].fillna("").astype(str))
    raise ValueError(f"no study images for {name!r}: mimic_cxr or openi")


def extra_study_images(images: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The ``images`` (``all_study_images``) of the studies of ``rows`` (columns ``study``, ``image_id``, ``split``,
    ``subject_id``) that are not ``rows``' own images: lateral views and further frontal ones, carrying the study's
    split and patient from ``rows`` (the reader's split is MIMIC-CXR's official one, not the cohort's)."""
    by_study = rows.drop_duplicates("study").set_index("study")
    own = set(rows["image_id"].astype(str))
    out = images[images["study"].isin(by_study.index) & ~images["record_id"].astype(str).isin(own)]
    out = out.drop(columns=["split", "subject_id"]).reset_index(drop=True)
    return out.assign(split=out["study"].map(by_study["split"]).astype(str).values,
                      subject_id=out["study"].map(by_study["subject_id"]).astype(str).values)


def ecg_norm_stats(cfg, ecg_cached) -> dict:
    """Normalisation statistic named by ``ecg_norm``, fit on the TRAINING split only (methods that fit
    nothing read no data)."""
    if cfg.ecg_norm != "zscore_lead_train":
        return pecg.fit_norm_stats((), cfg.ecg_norm)
    train = ecg_cached.manifest["split"].eq("train").to_numpy()
    idx = ecg_cached.manifest.loc[train, "index"].to_numpy()
    return pecg.fit_norm_stats(ecg_cached.array[np.sort(idx)], cfg.ecg_norm)


# ------------------------------------------------------------------------------------------ outputs
def save_linked(cfg, linked: dict, external: dict, quality: QualityLog, t1: pd.DataFrame) -> Path:
    """Write everything later notebooks need under runs/<profile>/01/ (atomically)."""
    out = RunLayout(cfg).linked
    for key in ("cxr", "ecg", "pairs", "admissions", "splits"):
        write_parquet_atomic(_parquet_safe(linked[key]), out / f"{key}.parquet")
    for key, df in external.items():
        write_parquet_atomic(_parquet_safe(df), out / f"external_{key}.parquet")
    write_csv_atomic(t1, out / "table1.csv")
    write_csv_atomic(quality.to_frame(), out / "quality.csv")
    write_json_atomic(RunLayout(cfg).link_params, {**linked["params"], "pair_counts": linked["pair_counts"]})
    return out


def load_linked(cfg) -> dict:
    """What notebook 01 wrote: the MIMIC frames and the external manifests."""
    d = RunLayout(cfg).linked
    if not d.is_dir():
        raise DataError(d, "run notebook 01_linking first (python -m medbind_lib.run --only 01)")
    return {p.stem: pd.read_parquet(p) for p in sorted(d.glob("*.parquet"))}


def task_subjects(cfg) -> frozenset | None:
    """The patients of ``medcsp_task_subjects`` (MEDCSP's EHR-task population, kept out of every pre-training
    record), or None when the key is null. A missing file or a file without integer ``subject_id`` values is a
    DataError naming it."""
    path = cfg.get("medcsp_task_subjects")
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "medcsp_task_subjects names no file (synthetic profiles: the cohort writes it when "
                              "synth_task_patients > 0; real data: a CSV with a subject_id column)")
    df = pd.read_csv(path)
    if "subject_id" not in df:
        raise DataError(path, f"no subject_id column (columns: {list(df.columns)})")
    ids = pd.to_numeric(df["subject_id"], errors="coerce")
    if ids.isna().any():
        bad = df.loc[ids.isna(), "subject_id"].head(3).tolist()
        raise DataError(path, f"{int(ids.isna().sum())} subject_id value(s) that are not integers, e.g. {bad}")
    return frozenset(ids.astype("int64").tolist())


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding dicts (PTB-XL scp_codes, RSNA boxes) become JSON-ish strings for parquet."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and out[c].map(lambda v: isinstance(v, dict)).any():
            out[c] = out[c].map(lambda v: None if v is None else repr(v))
    return out
