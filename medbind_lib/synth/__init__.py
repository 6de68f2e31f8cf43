"""Synthetic cohort in the real on-disk layouts of all nine datasets (docs/DATASETS.md).

``write_cohort(cfg)`` draws latent patients (latent.py), renders their chest films (cxr.py) and
12-lead ECGs (ecg.py), writes reports (reports.py), EHR tables and notes (ehr.py) into the MIMIC
layouts (mimic.py) and draws the external datasets with a domain shift (external.py). Everything is
generated into a fresh staging directory beside ``data_root`` and renamed into place; the stamp
``<data_root>/.synth_stamp.json`` is written last, so an interrupted run never looks complete.
The latent ground truth goes to ``<data_root>/_synth_truth/{patients,admissions,visits,records}.parquet``.
Besides the ``n_patients`` base patients, ``synth_ehr_only_fraction`` / ``synth_cxr_only_fraction`` of that many
EHR-only / CXR-only patients are appended (latent.make_sources): MEDCSP's two sources overlap only in part; then
``synth_task_patients`` ICU patients of the task population (the paper's MIMIC-III role: MEDCSP's EHR tasks are
scored on them, nothing pre-trains on them), listed in ``<data_root>/_synth_truth/medcsp_task_subjects.csv``.

Safety: the generator only ever replaces what it wrote. It refuses a profile with ``synthetic: false``
(whose roots are a user's real downloads), and before generating anything it refuses every existing root
that is neither empty nor marked by a ``.medbind-synthetic`` file (each generated root carries one).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pandas as pd

from ..constants import STAMP_NAME
from ..errors import ConfigError
from ..io import write_json_atomic
from ..runtime import pid_alive
from . import external, latent, mimic
from .common import rng_for

GENERATOR_VERSION = "1.6.0"          # 1.1.0: every generated root carries MARKER_NAME (data unchanged)
#                                      1.2.0: MIMIC-IV ICU events and labs (icu.py, stream "mimic_icu"): icu/{chart,
#                                      input,procedure,output}events, icu/d_items, hosp/{labevents,d_labitems};
#                                      every table written by 1.1.0 is byte-identical
#                                      1.3.0: EHR-only and CXR-only patients (synth_ehr_only_fraction,
#                                      synth_cxr_only_fraction; latent.make_sources, own streams), appended: every
#                                      row, file and image written by 1.2.0 is byte-identical, tables gain rows
#                                      1.4.0: fewer sick-only ICU admissions (latent.ICU_LOGIT; FIDDLE mortality
#                                      ~14 %, was ~25 %), icustays drawn from the mimic_icu stream, ARF/shock
#                                      intercepts re-solved; notes re-drawn once; CXR, ECG, external data unchanged
#                                      1.5.0: ARF/shock intercepts re-solved to MEDCSP's Table 4 prevalences (8.0 /
#                                      9.6 %, were FIDDLE's 4 h 18.3 / 14.9 %): only ICU event tables change
#                                      1.6.0: the task population (synth_task_patients; latent.make_task_population,
#                                      streams task / task_iv / task_icu), appended after the EHR-only rows: every
#                                      row written by 1.5.0 is byte-identical; TASK_SUBJECTS lists the patients
MARKER_NAME = ".medbind-synthetic"
STAGING_MARK = ".medbind-synth-staging"
TRUTH_DIR = "_synth_truth"
TASK_SUBJECTS = "medcsp_task_subjects.csv"   # in TRUTH_DIR: the task population (subject_id), for medcsp_task_subjects
ROOT_KEYS = ("mimic_cxr_root", "mimic_cxr_reports_root", "mimic_ecg_root", "mimic_iv_root", "mimic_note_root",
             "ptbxl_root", "icbeb_root", "chexpert_root", "covid_root", "rsna_root", "openi_root")

__all__ = ["write_cohort", "write_mimic", "external_sizes", "truth_paths", "foreign_roots", "GENERATOR_VERSION",
           "STAMP_NAME", "MARKER_NAME", "TASK_SUBJECTS"]


def external_sizes(n_patients: int) -> dict:
    """Record counts of the external datasets: proportional to n_patients, with per-class minimums."""
    n = int(n_patients)
    return {"ptbxl": max(n, 150), "icbeb": max(n // 2, 90), "chexpert": max(n, 150),
            "chexpert_valid": max(n // 10, 20), "covid": max(n // 2, 80), "rsna": max(n // 2, 80),
            "openi": max(n // 4, 40)}


def truth_paths(cfg) -> dict:
    """Paths of the ground-truth tables for a profile."""
    d = Path(cfg.data_root) / TRUTH_DIR
    return {k: d / f"{k}.parquet" for k in ("patients", "admissions", "visits", "records")}


def _params(cfg) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": int(cfg.seed), "n_patients": int(cfg.n_patients),
            "synth_image_size": int(cfg.synth_image_size),
            "synth_ehr_only_fraction": float(cfg.synth_ehr_only_fraction),
            "synth_cxr_only_fraction": float(cfg.synth_cxr_only_fraction),
            "synth_task_patients": int(cfg.synth_task_patients)}


def _hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _progress(enabled: bool, desc: str):
    try:
        from ..runtime import progress
        return progress(None, enabled=enabled, desc=desc, unit="rec")
    except ImportError:                                                   # runtime.py not present
        from tqdm.auto import tqdm
        return tqdm(disable=not enabled, desc=desc, unit="rec")


def _targets(cfg) -> dict[str, Path]:
    """Every directory the generator owns, refusing roots that would swallow data_root."""
    data_root = Path(cfg.data_root).resolve()
    out = {k: Path(cfg[k]).resolve() for k in ROOT_KEYS}
    out["truth"] = data_root / TRUTH_DIR
    for k, p in out.items():
        if p == data_root or p in data_root.parents:
            raise ConfigError(f"{k} = {p} is data_root or one of its parents; the generator replaces its roots "
                              f"wholesale, so each must be a sub-directory (e.g. '{{data_root}}/name')")
    return out


def _stamp_ok(stamp: Path, h: str, targets: dict) -> dict | None:
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if data.get("hash") != h or not all(p.is_dir() for p in targets.values()):
        return None
    return data


def _is_ours(path: Path, data_root: Path) -> bool:
    """A root the generator may replace: absent, an empty directory, or one it marked when it wrote it.

    Cohorts of generator 1.0.0 predate the marker: their roots count as ours when they lie inside a
    ``data_root`` whose stamp says 1.0.0 (under a newer stamp an unmarked root is not ours)."""
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    if (path / MARKER_NAME).is_file() or next(path.iterdir(), None) is None:
        return True
    legacy = (_read_stamp(data_root / STAMP_NAME) or {}).get("params", {}).get("generator_version") == "1.0.0"
    return legacy and data_root in path.parents


def _read_stamp(stamp: Path) -> dict | None:
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "generator_version" in data.get("params", {}) else None


def foreign_roots(cfg) -> dict[str, Path]:
    """Roots of ``cfg`` that exist and were not written by this generator (it must never replace them)."""
    data_root = Path(cfg.data_root).resolve()
    out = {k: p for k, p in _targets(cfg).items() if not _is_ours(p, data_root)}
    stamp = data_root / STAMP_NAME
    if stamp.exists() and _read_stamp(stamp) is None:
        out["stamp"] = stamp
    return out


def _refuse_foreign(cfg) -> None:
    if not cfg.synthetic:
        raise ConfigError(f"profile {cfg.profile!r} has synthetic: false: its roots are real datasets, which the "
                          f"synthetic generator never writes to. Check them with `python -m medbind_lib.check "
                          f"--profile {cfg.profile}`; to generate a cohort use a synthetic profile (smoke, default, gpu)")
    foreign = foreign_roots(cfg)
    if foreign:
        lines = "\n".join(f"  {k} = {p}" for k, p in foreign.items())
        raise ConfigError(f"profile {cfg.profile!r}: refusing to write the synthetic cohort over path(s) it did not "
                          f"create (not empty, no {MARKER_NAME} marker):\n{lines}\nPoint these keys at new "
                          f"folders (e.g. data_root), or move the folders away yourself.")


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:                     # another file system: copy + delete (still before the stamp)
        shutil.move(str(src), str(dst))


def _install(staging: Path, staged: dict[Path, Path]) -> None:
    """Swap each staged directory into place, shallowest target first (nested roots stay correct)."""
    for i, target in enumerate(sorted(staged, key=lambda p: len(p.parts))):
        if target.exists():
            _move(target, staging / "old" / str(i))
        _move(staged[target], target)


def _make_staging(data_root: Path) -> Path:
    """A fresh staging folder beside data_root, marked with its owner; stale ones of dead runs are removed."""
    parent, prefix = data_root.parent, f".{data_root.name}.synth-staging-"
    parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for old in parent.glob(prefix + "*"):
        try:
            owner = json.loads((old / STAGING_MARK).read_text())
        except (OSError, ValueError):
            continue                                      # not ours: never touched
        if owner.get("host") == host and not pid_alive(int(owner.get("pid", -1))):
            shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (staging / STAGING_MARK).write_text(json.dumps({"host": host, "pid": os.getpid()}))
    return staging


def write_mimic(paths: dict, seed: int, n_patients: int, size: int, ehr_only_fraction: float = 0.0,
                cxr_only_fraction: float = 0.0, progress: bool = False,
                task_patients: int = 0) -> tuple[latent.Sources, pd.DataFrame, dict]:
    """MIMIC-CXR (+ reports), MIMIC-IV-ECG, MIMIC-IV and MIMIC-IV-Note into ``paths`` (the ``mimic_*`` root
    keys): the base patients, then the EHR-only, CXR-only and task-population ones (latent.make_sources),
    appended. Returns the latent sources, the ground-truth records (CXR + ECG) and the MIMIC-IV row counts."""
    src = latent.make_sources(seed, n_patients, ehr_only_fraction, cxr_only_fraction, task_patients)
    truth = []
    with _progress(progress, "MIMIC-CXR images") as bar:
        truth.append(mimic.write_mimic_cxr(src.base, paths["mimic_cxr_root"], paths["mimic_cxr_reports_root"], size,
                                           rng_for(seed, "mimic_cxr"), bar, extra=src.cxr_only,
                                           extra_rng=rng_for(seed, "cxr_only_cxr")))
    with _progress(progress, "MIMIC-IV-ECG records") as bar:          # neither extra group has an ECG
        truth.append(mimic.write_mimic_ecg(src.base, paths["mimic_ecg_root"], rng_for(seed, "mimic_ecg"), bar))
    iv = mimic.write_mimic_iv(src.base, paths["mimic_iv_root"], paths["mimic_note_root"], rng_for(seed, "mimic_iv"),
                              rng_for(seed, "mimic_icu"), extra=src.ehr_only, extra_rng=rng_for(seed, "ehr_only_iv"),
                              extra_icu_rng=rng_for(seed, "ehr_only_icu"), task=src.task,
                              task_rng=rng_for(seed, "task_iv"), task_icu_rng=rng_for(seed, "task_icu"))
    return src, pd.concat(truth, ignore_index=True), iv


def _generate(cfg, paths: dict[str, Path]) -> dict:
    """Write every dataset into ``paths`` (staged roots); returns the counts."""
    seed, n, size = int(cfg.seed), int(cfg.n_patients), int(cfg.synth_image_size)
    on = bool(cfg.progress)
    sizes = external_sizes(n)
    src, mimic_truth, iv = write_mimic(paths, seed, n, size, float(cfg.synth_ehr_only_fraction),
                                       float(cfg.synth_cxr_only_fraction), on, int(cfg.synth_task_patients))
    truth = [mimic_truth]
    jobs = [("PTB-XL", external.write_ptbxl, "ptbxl", (sizes["ptbxl"],)),
            ("ICBEB", external.write_icbeb, "icbeb", (sizes["icbeb"],)),
            ("CheXpert", external.write_chexpert, "chexpert", (sizes["chexpert"], sizes["chexpert_valid"], size)),
            ("COVID", external.write_covid, "covid", (sizes["covid"], size)),
            ("RSNA", external.write_rsna, "rsna", (sizes["rsna"], size)),
            ("Open-I", external.write_openi, "openi", (sizes["openi"], size))]
    for desc, fn, key, args in jobs:
        with _progress(on, desc) as bar:
            truth.append(fn(paths[f"{key}_root"], *args, rng_for(seed, key), bar))
    records = pd.concat(truth, ignore_index=True)
    _write_truth(src, records, paths["truth"])
    counts = records.groupby("dataset").size().to_dict()
    counts["mimic_cxr_studies"] = int(records.loc[records.dataset == "mimic_cxr", "study_id"].nunique())
    counts["mimic_patients"] = n
    counts["mimic_ehr_only_patients"] = 0 if src.ehr_only is None else len(src.ehr_only.patients)
    counts["mimic_cxr_only_patients"] = 0 if src.cxr_only is None else len(src.cxr_only.patients)
    counts["mimic_task_patients"] = 0 if src.task is None else len(src.task.patients)
    counts.update({f"mimic_iv_{k}": v for k, v in iv.items()})
    return {k: int(v) for k, v in counts.items()}


def _write_truth(src: latent.Sources, records: pd.DataFrame, out: Path) -> None:
    """Latent state for notebooks and tests (parquet, one table per level). ``patients.source`` says which
    group a patient belongs to (base, ehr_only, cxr_only, task); the CXR-only patients' latent encounters are not
    admissions (their visits carry the state). ``TASK_SUBJECTS`` lists the task population (empty without)."""
    out.mkdir(parents=True, exist_ok=True)
    groups = [(g, c) for g, c in (("base", src.base), ("ehr_only", src.ehr_only), ("cxr_only", src.cxr_only),
                                  ("task", src.task)) if c is not None]
    task_ids = src.task.patients.subject_id if src.task is not None else pd.Series([], dtype="int64")
    pd.DataFrame({"subject_id": task_ids.astype("int64")}).to_csv(out / TASK_SUBJECTS, index=False)
    cat = lambda frames: pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]  # noqa: E731
    adm = cat([c.admissions for _, c in groups if len(c.admissions)])
    visits = cat([c.visits for _, c in groups if len(c.visits)])
    per = adm.groupby("subject_id").agg(n_admissions=("hadm_id", "size"), died=("hospital_expire_flag", "max"),
                                        max_severity=("severity", "max"))
    patients = cat([c.patients.assign(source=g) for g, c in groups])
    patients = patients.merge(per, left_on="subject_id", right_index=True, how="left")
    for c in ("n_admissions", "died"):                                  # CXR-only patients: none
        patients[c] = patients[c].fillna(0).astype(int)
    patients.to_parquet(out / "patients.parquet", index=False)
    adm.to_parquet(out / "admissions.parquet", index=False)
    visits.to_parquet(out / "visits.parquet", index=False)
    rec = records.copy()
    for c in ("visit_id", "hadm_id"):
        rec[c] = pd.array(rec[c].astype("Float64").round(), dtype="Int64")
    for c in ("invalid_samples",):
        if c in rec:
            rec[c] = rec[c].astype("boolean").fillna(False).astype(bool)
    for c in ("fold", "n_boxes"):
        if c in rec:
            rec[c] = pd.array(rec[c].astype("Float64"), dtype="Int64")
    for c in ("split", "single_class", "study_id", "view", "labels", "findings"):
        if c in rec:
            rec[c] = rec[c].fillna("").astype(str)
    rec["time"] = pd.to_datetime(rec["time"])
    rec.to_parquet(out / "records.parquet", index=False)


def write_cohort(cfg, force: bool = False) -> dict:
    """Write (or reuse) the synthetic cohort for profile ``cfg``; returns a summary dict.

    Reuse: skipped when ``<data_root>/.synth_stamp.json`` matches the generator parameters (seed,
    n_patients, synth_image_size, synth_ehr_only_fraction, synth_cxr_only_fraction, synth_task_patients,
    GENERATOR_VERSION) and every
    root exists, unless ``force``.
    Raises ``ConfigError`` for a non-synthetic profile and for roots it did not create (``foreign_roots``).
    """
    _refuse_foreign(cfg)
    data_root = Path(cfg.data_root).resolve()
    params, targets = _params(cfg), _targets(cfg)
    h = _hash(params)
    stamp = data_root / STAMP_NAME
    if not force and (old := _stamp_ok(stamp, h, targets)):
        return {**old["summary"], "reused": True}
    stamp.unlink(missing_ok=True)                        # from here on the cohort is not complete
    staging = _make_staging(data_root)
    distinct = {p: staging / "new" / str(i) for i, p in enumerate(dict.fromkeys(targets.values()))}
    t0 = time.perf_counter()
    try:
        for p in distinct.values():
            p.mkdir(parents=True)
        counts = _generate(cfg, {k: distinct[p] for k, p in targets.items()})
        for key, p in targets.items():
            write_json_atomic(distinct[p] / MARKER_NAME, {"generator": "medbind_lib.synth", "key": key, **params})
        _refuse_foreign(cfg)                             # nothing appeared at a root while generating
        _install(staging, distinct)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    secs = time.perf_counter() - t0
    summary = {"counts": counts, "seconds": round(secs, 2), "patients_per_s": round(params["n_patients"] / secs, 2),
               "data_root": str(data_root), "params": params, "reused": False}
    write_json_atomic(stamp, {"hash": h, "params": params, "summary": summary})
    return summary
