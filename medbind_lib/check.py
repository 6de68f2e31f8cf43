"""Pre-flight check of a profile's data: ``python -m medbind_lib.check --profile P``.

Lists EVERY missing root, table and folder of the profile's datasets at once, each with the dataset, the
version the loaders expect and where to obtain it, so that the ``paper`` profile without data fails in
seconds instead of in cell 5 of notebook 01. The runner calls it before any notebook. It looks only at the
paths the readers open first (tables, image and waveform folders); the readers still validate contents.
Local weight paths named in the profile (``cxr_pretrained_path``, ``text_model_path``, ``llm_model_path``)
are checked too. The dataset guide is ``docs/DATASETS.md``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .config import load_profile, parse_overrides, profiles_help
from .datasets import mimic_iv
from .errors import ConfigError

__all__ = ["Need", "SOURCES", "missing", "report", "main"]


@dataclass(frozen=True)
class Need:
    """Something a reader opens under ``root_key``: satisfied when every path of ANY alternative exists.

    ``name.csv[.gz]`` matches either file (the MIMIC readers accept both; the others read plain ``.csv``
    only); a path ending in ``/`` must be a folder; ``*`` and ``**`` are globs. ``when`` (a predicate on the
    profile) makes a need conditional, e.g. discharge notes only for the readmission task."""
    root_key: str
    what: str
    alternatives: tuple[tuple[str, ...], ...]
    when: Callable[[Mapping], bool] | None = None


@dataclass(frozen=True)
class Source:
    name: str
    version: str
    where: str
    needs: tuple[Need, ...]


def _one(root_key: str, what: str, *paths: str, when=None) -> Need:
    return Need(root_key, what, (tuple(paths),), when)


_CXR_PREFIX = "mimic-cxr-2.0.0-"
SOURCES: dict[str, Source] = {
    "mimic_cxr": Source(
        "MIMIC-CXR-JPG (+ MIMIC-CXR reports)", "2.0.0 or 2.1.0; reports from MIMIC-CXR 2.0.0",
        "https://physionet.org/content/mimic-cxr-jpg/ (credentialed); reports: mimic-cxr-reports.zip from "
        "https://physionet.org/content/mimic-cxr/ unzipped so that files/pXX/pSID/sSTUDY.txt sit under "
        "mimic_cxr_reports_root",
        (_one("mimic_cxr_root", "metadata table", f"{_CXR_PREFIX}metadata.csv[.gz]"),
         _one("mimic_cxr_root", "official split", f"{_CXR_PREFIX}split.csv[.gz]"),
         _one("mimic_cxr_root", "CheXpert labels", f"{_CXR_PREFIX}chexpert.csv[.gz]"),
         _one("mimic_cxr_root", "JPG images", "files/"),
         _one("mimic_cxr_reports_root", "free-text reports", "files/"))),
    "mimic_ecg": Source(
        "MIMIC-IV-ECG", "1.0", "https://physionet.org/content/mimic-iv-ecg/1.0/ (open access)",
        (_one("mimic_ecg_root", "record list", "record_list.csv[.gz]"),
         _one("mimic_ecg_root", "machine measurements (report_0..17)", "machine_measurements.csv[.gz]"),
         _one("mimic_ecg_root", "WFDB records", "files/"))),
    "mimic_iv": Source(
        "MIMIC-IV (+ MIMIC-IV-Note)", "MIMIC-IV 2.2, MIMIC-IV-Note 2.2",
        "https://physionet.org/content/mimiciv/2.2/ and https://physionet.org/content/mimic-iv-note/2.2/ "
        "(credentialed)",
        tuple(_one("mimic_iv_root", f"table {t}", f"{mimic_iv.SPECS[t][0]}/{t}.csv[.gz]")
              for t in mimic_iv.DEFAULT_TABLES)
        + (_one("mimic_note_root", "discharge notes (the Table 4 readmission text)", "note/discharge.csv[.gz]",
                when=lambda cfg: "readmission" in cfg.get("llm_tasks", ())),)),
    "ptbxl": Source(
        "PTB-XL", "1.0.3", "https://physionet.org/content/ptb-xl/1.0.3/ (open access)",
        (_one("ptbxl_root", "database table", "ptbxl_database.csv"),
         _one("ptbxl_root", "SCP statements", "scp_statements.csv"),
         _one("ptbxl_root", "records at 100 Hz (filename_lr) and 500 Hz (filename_hr)", "records100/",
              "records500/"))),
    "icbeb": Source(
        "ICBEB 2018 / CPSC2018", "the PTB-XL benchmark form, the PhysioNet Challenge 2020 form or the original",
        "PTB-XL benchmark repository (icbeb_database.csv + records100/), https://physionet.org/content/"
        "challenge-2020/ (training/cpsc_2018/), or http://2018.icbeb.org/Challenge.html",
        (Need("icbeb_root", "records in one of three forms", (
            ("icbeb_database.csv", "records500/"), ("REFERENCE.csv", "**/*.mat"), ("**/*.hea", "**/*.mat"))),)),
    "chexpert": Source(
        "CheXpert", "v1.0 (CheXpert-v1.0-small or the full CheXpert-v1.0)",
        "https://stanfordmlgroup.github.io/competitions/chexpert/ (registration)",
        (Need("chexpert_root", "training table", (("CheXpert-v1.0-small/train.csv",),
                                                  ("CheXpert-v1.0/train.csv",))),)),
    "covid": Source(
        "COVID-19 Radiography Database", "the release with COVID/ and Normal/ class folders (2021+)",
        "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database (Kaggle account)",
        (_one("covid_root", "COVID images", "COVID/"), _one("covid_root", "Normal images", "Normal/"))),
    "rsna": Source(
        "RSNA Pneumonia Detection Challenge", "stage 2",
        "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data (Kaggle account, accept the rules)",
        (_one("rsna_root", "labels", "stage_2_train_labels.csv"),
         _one("rsna_root", "DICOM images", "stage_2_train_images/"))),
    "openi": Source(
        "Open-I (Indiana University chest X-rays)", "the NLM ecgen-radiology XML + PNGs, or the Kaggle CSV form",
        "https://openi.nlm.nih.gov/faq (NLMCXR_reports.tgz + NLMCXR_png.tgz), or Kaggle "
        "'chest-xrays-indiana-university' (indiana_reports.csv, indiana_projections.csv, images/)",
        (Need("openi_root", "reports and images", (
            ("ecgen-radiology/*.xml", "images/*.png"), ("ecgen-radiology/*.xml", "NLMCXR_png/*.png"),
            ("ecgen-radiology/*.xml", "*.png"), ("*.xml", "*.png"),
            ("indiana_reports.csv", "indiana_projections.csv", "images/images_normalized/"))),)),
}
WEIGHT_KEYS = {"cxr_pretrained_path": "local timm checkpoint of the CXR encoder",
               "text_model_path": "local Hugging Face BERT folder of the text encoder",
               "llm_model_path": "local Hugging Face BERT folder of the Table 4 language model"}


def _exists(root: Path, rel: str) -> bool:
    if rel.endswith(".csv[.gz]"):
        stem = rel[:-len("[.gz]")]
        return (root / stem).is_file() or (root / (stem + ".gz")).is_file()
    if any(ch in rel for ch in "*?["):
        return next(root.glob(rel.rstrip("/")), None) is not None
    return (root / rel).is_dir() if rel.endswith("/") else (root / rel).is_file()


def missing(cfg) -> list[dict]:
    """One row per unmet need of the profile's datasets (empty list = ready)."""
    rows, absent_roots = [], set()
    for name in cfg.datasets:
        src = SOURCES[name]
        for need in src.needs:
            if need.when is not None and not need.when(cfg):
                continue
            root = Path(cfg[need.root_key])
            if not root.is_dir():                      # a missing root is reported once, not once per file
                if (need.root_key, root) not in absent_roots:
                    absent_roots.add((need.root_key, root))
                    rows.append({"dataset": name, "key": need.root_key, "path": str(root), "what": "root folder"})
                continue
            if any(all(_exists(root, rel) for rel in alt) for alt in need.alternatives):
                continue
            alts = " or ".join(" + ".join(alt) for alt in need.alternatives)
            rows.append({"dataset": name, "key": need.root_key, "path": str(root), "what": f"{need.what}: {alts}"})
    for key, what in WEIGHT_KEYS.items():
        if cfg.get(key) and not Path(cfg[key]).expanduser().exists():
            rows.append({"dataset": None, "key": key, "path": str(cfg[key]), "what": what})
    return rows


def report(cfg, rows: list[dict]) -> str:
    """The message a user reads: every gap, grouped by dataset, with version and where to get it."""
    if not rows:
        return f"profile {cfg.profile!r}: every dataset root and table the loaders read is present"
    lines = [f"profile {cfg.profile!r}: {len(rows)} missing path(s); nothing was run. Fix the roots in "
             f"params/{cfg.profile}.yaml (or --set KEY=PATH); the dataset guide is docs/DATASETS.md."]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == name]
        if name is None:
            lines.append("- local weights named in the profile:")
        else:
            src = SOURCES[name]
            lines.append(f"- {src.name} ({name}); expected: {src.version}; get it at {src.where}")
        for r in group:
            where = r["path"] if r["what"] == "root folder" else f"{r['path']}/"
            lines.append(f"    {r['key']} = {where}  missing: {r['what']}")
    if cfg.synthetic:
        lines.append(f"(profile {cfg.profile!r} is synthetic: `python -m medbind_lib.synth --profile {cfg.profile}` "
                     f"writes these)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m medbind_lib.check", description=__doc__, epilog=profiles_help(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="profile overrides")
    args = ap.parse_args(argv)
    try:
        cfg = load_profile(args.profile, overrides=parse_overrides(args.set) or None)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = missing(cfg)
    print(report(cfg, rows), file=sys.stderr if rows else sys.stdout)
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
