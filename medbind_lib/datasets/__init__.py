"""One reader per real dataset: its on-disk layout (docs/DATASETS.md) -> a tidy pandas manifest.

Every manifest has the common columns ``dataset, record_id, subject_id, path, time, split``
(``constants.MANIFEST_COLUMNS``, checked by ``schema.validate_manifest``) plus the dataset's own columns,
documented in each module's docstring. Every reader is ``read(root, quality=None, **options)``; records
skipped on purpose are counted in the ``QualityLog``; bad input is a ``DataError`` naming file, record and
problem.

``READERS`` maps a dataset name to its reader; ``load_manifest(name, cfg, quality=None, **overrides)``
calls it with the profile's root and options (COVID: ``classes=covid.PAPER_CLASSES`` = Normal vs COVID,
the only class set whose 80/20 split gives the paper's 11,028 / 2,780; override with ``classes=...``). MIMIC-IV is tables, not a manifest:
``mimic_iv.read_tables`` / :func:`load_tables`. MEDCSP's ICU event tables (chartevents, labevents, inputevents,
procedureevents, outputevents, icustays, d_items, d_labitems) are read in chunks, filtered by item/stay ids:
``mimic_icu.read_events`` / ``mimic_icu.read_icustays``.

ECG manifests carry ``signal_format`` (``wfdb``, ``challenge_mat``, ``cpsc_mat``);
``ecgio.load_signal(path, signal_format)`` returns the physical signal (mV), fs and canonical lead names.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..quality import QualityLog
from . import (challenge, chexpert, covid, ecgio, icbeb, mimic_cxr, mimic_ecg, mimic_icu, mimic_iv, nih, openi,
               ptbxl, rsna)

READERS = {
    "mimic_cxr": mimic_cxr.read,
    "mimic_ecg": mimic_ecg.read,
    "ptbxl": ptbxl.read,
    "icbeb": icbeb.read,
    "chexpert": chexpert.read,
    "chexpert_5x200": chexpert.read_5x200,
    "covid": covid.read,
    "rsna": rsna.read,
    "openi": openi.read,
    "nih": nih.read,
    "challenge": challenge.read,
}

# name -> (profile key of the root, function(cfg) -> options)
_PROFILE = {
    "mimic_cxr": ("mimic_cxr_root", lambda c: {"reports_root": c.get("mimic_cxr_reports_root")}),
    "mimic_ecg": ("mimic_ecg_root", lambda c: {}),
    "ptbxl": ("ptbxl_root", lambda c: {}),
    "icbeb": ("icbeb_root", lambda c: {"seed": c.get("seed", 0)}),
    "chexpert": ("chexpert_root", lambda c: {}),
    "chexpert_5x200": ("chexpert_root", lambda c: {"seed": c.get("seed", 0),
                                                   "per_class": c.get("chexpert_5x200_per_class", 200)}),
    # Paper sizes (11,028 / 2,780 = 80/20 of 13,808 = 3,616 COVID + 10,192 Normal) imply the binary task.
    "covid": ("covid_root", lambda c: {"seed": c.get("seed", 0), "classes": covid.PAPER_CLASSES}),
    "rsna": ("rsna_root", lambda c: {"seed": c.get("seed", 0)}),
    "openi": ("openi_root", lambda c: {}),
    "nih": ("nih_root", lambda c: {}),
    "challenge": ("challenge_root", lambda c: {}),
}


def load_manifest(name: str, cfg, quality: QualityLog | None = None, **overrides):
    """Read dataset ``name`` from the root the profile ``cfg`` names, with the profile's options."""
    if name == "mimic_iv":
        raise ConfigError("mimic_iv is a set of tables, not a manifest: use datasets.load_tables(cfg)")
    if name not in READERS:
        raise ConfigError(f"unknown dataset {name!r}; known: {sorted(READERS)} (+ mimic_iv via load_tables)")
    key, opts = _PROFILE[name]
    if key not in cfg:
        raise ConfigError(f"dataset {name!r} needs profile key {key!r}, which this profile does not have")
    options = {**opts(cfg), **overrides}
    return READERS[name](cfg[key], quality=quality, **options)


def load_tables(cfg, tables=None, quality: QualityLog | None = None) -> dict:
    """MIMIC-IV tables from the profile's ``mimic_iv_root`` (+ ``mimic_note_root`` when it exists)."""
    from pathlib import Path
    note = cfg.get("mimic_note_root")
    note = note if note and Path(note).is_dir() else None
    return mimic_iv.read_tables(cfg["mimic_iv_root"], note_root=note, tables=tables, quality=quality)


__all__ = ["READERS", "load_manifest", "load_tables", "challenge", "chexpert", "covid", "ecgio", "icbeb",
           "mimic_cxr", "mimic_ecg", "mimic_icu", "mimic_iv", "nih", "openi", "ptbxl", "rsna"]
