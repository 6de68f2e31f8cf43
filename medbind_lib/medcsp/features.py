"""MEDCSP's data, built once per parameter set (notebook 08) and read by pre-training and evaluation.

``build(cfg)`` reads notebook 01's linked frames (the shared patient-level split, CXR studies with their
report text, admissions with labels) and the MIMIC-IV tables, and writes ``runs/<profile>/08/`` atomically:

- ``ehr_records.parquet`` / ``cxr_records.parquet`` / ``holdout_records.parquet`` (``medcsp.records``);
- ``icd.npz`` / ``drug.npz`` (sparse multi-hot rows in EHR-record order), ``histories.npz`` (sparse, one row
  per subject of ``history_subjects.parquet``), ``demographics.npy`` (dense);
- ``temporal.npz``: values and missingness [n_stays, n_bins, n_items] of every ICU stay an EHR record or a
  task uses (``stays.parquet`` gives each stay's row and its admission; an EHR record reads up to
  ``medcsp_max_stays`` of its stays);
- ``cohort_<task>.parquet`` for ``arf``, ``shock``, ``mortality`` (FIDDLE rules, ``ehr.cohorts``) and
  ``readmission`` (notebook 01's label), with ``cohort_counts.parquet``;
- with ``medcsp_task_subjects`` (the task population, the paper's MIMIC-III role): ``task_records.parquet`` and
  ``task_{icd,drug}.npz`` / ``task_demographics.npy``, the same features of that population's admissions, which
  are never EHR records (nothing pre-trains on them: vocabularies and statistics come from the EHR source's
  training split only); the cohorts then hold that population only, split by ``medcsp_task_split_fractions``;
- ``quality.csv``: every record excluded or flagged while building, and why;
- ``vocab.json`` (ICD, drug, demographic features, temporal items and their training statistics) and
  ``params.json`` (every key below plus the input files' signatures). ``params.json`` is written LAST: a
  folder without it, or with other parameters, is rebuilt, never half-read.

Which modalities a downstream task may use is ``TASK_MODALITIES``: no text written after the prediction time
(a discharge note or discharge codes would reveal an in-ICU outcome).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from ..cache import file_signature
from ..io import atomic_path, write_csv_atomic, write_json_atomic, write_parquet_atomic
from ..layout import RunLayout
from ..quality import QualityLog
from . import records as R

__all__ = ["PARAM_KEYS", "TASK_MODALITIES", "params_of", "build", "load", "out_dir"]

PARAM_KEYS = ("seed", "medcsp_prediction_hours", "medcsp_bin_hours", "medcsp_item_min_stay_frac",
              "medcsp_max_items", "medcsp_temporal_sources", "medcsp_max_stays", "medcsp_icd_level",
              "medcsp_code_min_count", "medcsp_drug_key", "medcsp_demo_max_categories", "medcsp_ehr_record_time",
              "medcsp_holdout_fraction", "medcsp_min_age", "medcsp_onset_before_prediction",
              "medcsp_onset_outside_window", "medcsp_lab_join", "cxr_views", "medcsp_ehr_population",
              "medcsp_readmission_population", "medcsp_icd_version", "medcsp_task_split_fractions")
# bumped when the code changes what is built, so older folders are rebuilt, never reused
# (2: diagnosis histories keyed by integer subject ids; 1 built them empty from the linked text ids)
FEATURES_VERSION = 4     # 3: the ICU EHR source and readmission population (medcsp_ehr_population, ...)
#                          4: the task population (medcsp_task_subjects: task_* files, cohorts of it only)
TASK_FILES = ("task_records.parquet", "task_icd.npz", "task_drug.npz", "task_demographics.npy")
TASK_MODALITIES = {"arf": ("temporal", "demo"), "shock": ("temporal", "demo"), "mortality": ("temporal", "demo"),
                   "readmission": ("temporal", "note", "demo", "icd", "drug")}
_INPUTS = ("hosp/admissions", "hosp/patients", "hosp/diagnoses_icd", "hosp/prescriptions", "icu/icustays",
           "icu/chartevents", "icu/inputevents", "icu/procedureevents", "icu/outputevents", "hosp/labevents")


def out_dir(cfg) -> Path:
    return RunLayout(cfg).medcsp_data


def params_of(cfg) -> dict:
    """The parameters that define the built data (recorded with it and compared before reuse)."""
    p = {"version": FEATURES_VERSION, **{k: cfg[k] for k in PARAM_KEYS}}
    root = Path(cfg["mimic_iv_root"])
    p["inputs"] = {t: file_signature(_table(root, t)) for t in _INPUTS}
    p["linked"] = file_signature(RunLayout(cfg).link_params)
    p["task_subjects"] = file_signature(Path(cfg["medcsp_task_subjects"])) if cfg.get("medcsp_task_subjects") else None
    return json.loads(json.dumps(p, default=str))


def _table(root: Path, t: str) -> Path:
    for ext in (".csv.gz", ".csv"):
        if (root / f"{t}{ext}").exists():
            return root / f"{t}{ext}"
    return root / f"{t}.csv.gz"


def _first_stays(stays: pd.DataFrame, hadm_ids, max_stays: int) -> pd.DataFrame:
    s = stays[stays["hadm_id"].isin(set(hadm_ids))].sort_values(["hadm_id", "intime", "stay_id"])
    return s.groupby("hadm_id", sort=False).head(int(max_stays))


def _admissions(linked: dict, tables: dict) -> pd.DataFrame:
    """Notebook 01's admissions (split, age, labels) with the demographic columns it did not keep."""
    adm = linked["admissions"].copy()
    extra = [c for c in ("insurance", "race", "admission_type", "admission_location")
             if c in tables["admissions"] and c not in adm]
    if extra:
        adm = adm.merge(tables["admissions"][["hadm_id", *extra]], on="hadm_id", how="left")
    return adm.sort_values("hadm_id").reset_index(drop=True)


def build(cfg, quality: QualityLog | None = None, force: bool = False) -> dict:
    """Build (or reuse, when ``params.json`` matches) ``runs/<profile>/08``; returns ``load(cfg)``."""
    from ..cohort import load_linked, task_subjects

    q = quality if quality is not None else QualityLog()
    out = out_dir(cfg)
    params = params_of(cfg)
    if not force and (out / "params.json").is_file() and json.loads((out / "params.json").read_text()) == params:
        return load(cfg)
    linked = load_linked(cfg)
    tables = _read_tables(cfg, q)
    adm = _task_split(cfg, _admissions(linked, tables), task_subjects(cfg))
    temporal = _temporal(cfg, adm, q)
    source, task = _source_admissions(cfg, adm, temporal["all_stays"], q)
    feats = _code_features(cfg, source, tables, q, task=task)   # record features: rows = the source's admissions
    notes = tables["discharge"]
    note_hadm = notes.loc[notes["text"].fillna("").str.len() > 0, "hadm_id"] if len(notes) else []
    flags = dict(icd_hadm=feats["icd_hadm"], drug_hadm=feats["drug_hadm"], temporal_hadm=temporal["stays"]["hadm_id"],
                 note_hadm=note_hadm, record_time=cfg.medcsp_ehr_record_time)
    ehr = R.ehr_records(source, **flags)
    if task is not None:
        feats["task"]["records"] = R.ehr_records(task, **flags).assign(source="task")
    cxr = R.cxr_records(linked["cxr"], views=tuple(cfg.cxr_views))
    if task is not None:                         # neither a pre-training record nor a retrieval query
        mine = cxr["subject_id"].astype("int64").isin(set(pd.to_numeric(adm.loc[adm["task"], "subject_id"])))
        q.exclude("medcsp", "cxr_source", "study of a patient of the EHR-task population (medcsp_task_subjects)",
                  records=cxr.loc[mine, "record_id"])
        cxr = cxr[~mine].reset_index(drop=True)
    src = R.split_sources(ehr, cxr, cfg.medcsp_holdout_fraction, cfg.seed, q)
    cohorts = _cohorts(cfg, adm, temporal["all_stays"], tables, q)
    _write(out, src, feats, temporal, cohorts, notes, params, q)
    return load(cfg)


def _task_split(cfg, adm: pd.DataFrame, reserved) -> pd.DataFrame:
    """``adm`` with ``task`` (the admission's patient is in the task population) and, for those patients, the
    population's own patient-level split (``medcsp_task_split_fractions``, hash based as the shared split)."""
    from ..linking.splits import patient_splits

    sid = pd.to_numeric(adm["subject_id"]).astype("int64")
    adm = adm.assign(task=sid.isin(reserved or ()).to_numpy())
    if reserved is not None and not adm["task"].any():
        from ..errors import DataError

        raise DataError(cfg["medcsp_task_subjects"], f"none of its {len(reserved)} patients has a MIMIC-IV admission "
                                                     "(notebook 01's admissions): the EHR tasks would have no rows")
    if reserved is not None:
        sp = patient_splits({"task": sid[adm["task"]].astype(str)}, fractions=cfg.medcsp_task_split_fractions,
                            seed=int(cfg.seed)).set_index("subject_id")["split"]
        adm.loc[adm["task"], "split"] = sid[adm["task"]].astype(str).map(sp).to_numpy()
    return adm


def _source_admissions(cfg, adm: pd.DataFrame, stays: pd.DataFrame, q) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The EHR source's admissions (``medcsp_ehr_population``, outside the task population) and the task
    population's (same rule; None without ``medcsp_task_subjects``), the others counted. Task rows read their
    features from these records, so the readmission rows cannot reach beyond them."""
    if cfg.medcsp_readmission_population == "all" and cfg.medcsp_ehr_population != "all":
        from ..errors import ConfigError

        raise ConfigError("medcsp_readmission_population: all needs medcsp_ehr_population: all (readmission rows "
                          "read their ICD, drug and demographic features from the EHR source's records)")
    q.seen("medcsp", "ehr_source", len(adm))
    pop = R.icu_admissions(adm, stays, cfg.medcsp_ehr_population, q)
    if pop["task"].any():
        q.exclude("medcsp", "ehr_source", "admission of the EHR-task population (medcsp_task_subjects): scored by "
                  "notebook 10, never a pre-training record", records=pop.loc[pop["task"], "hadm_id"].astype(str))
    source = pop[~pop["task"]].reset_index(drop=True)
    task = pop[pop["task"]].reset_index(drop=True) if cfg.get("medcsp_task_subjects") else None
    return source, task


def _read_tables(cfg, q) -> dict:
    from ..datasets import mimic_iv

    note_root = cfg.get("mimic_note_root")
    names = ("admissions", "patients", "diagnoses_icd", "prescriptions") + (("discharge",) if note_root else ())
    t = mimic_iv.read_tables(cfg.mimic_iv_root, note_root, tables=names, quality=q)
    t.setdefault("discharge", mimic_iv.empty_table("discharge"))
    return t


def _code_features(cfg, adm: pd.DataFrame, tables: dict, q, task: pd.DataFrame | None = None) -> dict:
    """ICD / drug multi-hot, demographics and diagnosis histories of the source's admissions ``adm``; with
    ``task``, the same matrices of the task population's admissions under ``["task"]``, encoded with the
    vocabularies and categories of the source's training split (the task population fits nothing here)."""
    from ..ehr import codes as C

    train = adm.loc[adm["split"] == "train", "hadm_id"]
    icd = C.icd_tokens(tables["diagnoses_icd"], cfg.medcsp_icd_level, cfg.medcsp_icd_version, q)
    drug = C.drug_tokens(tables["prescriptions"], cfg.medcsp_drug_key, q)
    v_icd = C.build_vocab(icd, train, cfg.medcsp_code_min_count)
    v_drug = C.build_vocab(drug, train, cfg.medcsp_code_min_count)
    both = adm if task is None else pd.concat([adm, task], ignore_index=True)
    n, keys = len(adm), both["hadm_id"].tolist()
    fit = (both["split"] == "train").to_numpy() & (np.arange(len(both)) < n)
    demo, names = C.demographics_matrix(both, fit, cfg.medcsp_demo_max_categories, q)
    m_icd = C.multi_hot(icd, keys, v_icd, quality=q, what="icd")          # csr: row slices below
    m_drug = C.multi_hot(drug, keys, v_drug, quality=q, what="drugs")
    subjects = sorted(adm["subject_id"].astype("int64").unique().tolist())    # linked ids may be text
    out = {"icd": m_icd[:n], "drug": m_drug[:n],
           "histories": C.diagnosis_histories(icd, train, subjects, v_icd), "history_subjects": subjects,
           "demographics": demo[:n], "vocab": {"icd": v_icd, "drug": v_drug, "demographics": names},
           "icd_hadm": icd["hadm_id"].unique(), "drug_hadm": drug["hadm_id"].unique()}
    if task is not None:
        out["task"] = {"icd": m_icd[n:], "drug": m_drug[n:], "demographics": demo[n:]}
    return out


def _temporal(cfg, adm: pd.DataFrame, q) -> dict:
    from ..datasets.mimic_icu import read_icustays
    from ..ehr import temporal as T

    spec = T.TemporalSpec(cfg.medcsp_prediction_hours, cfg.medcsp_bin_hours, cfg.medcsp_item_min_stay_frac,
                          cfg.medcsp_max_items)
    all_stays = read_icustays(cfg.mimic_iv_root, quality=q)
    stays = _first_stays(all_stays, adm["hadm_id"], cfg.medcsp_max_stays).reset_index(drop=True)
    events = T.stay_events(cfg.mimic_iv_root, stays, tuple(cfg.medcsp_temporal_sources), quality=q,
                           lab_join=cfg.medcsp_lab_join)
    binned = T.bin_events(events, stays, spec)
    q.seen("medcsp", "temporal", len(events))
    q.flag("medcsp", "temporal", f"event outside the first {spec.hours:g} h of its stay (not in the tensor)",
           n=int(len(events) - len(binned)))
    fit = adm["split"] == "train"                               # the task population fits nothing here
    if "task" in adm:
        fit &= ~adm["task"]
    train_stays = stays.loc[stays["hadm_id"].isin(adm.loc[fit, "hadm_id"]), "stay_id"]
    items = T.select_items(binned, train_stays, spec)
    stats = T.fit_stats(binned, train_stays, items)
    values, mask = T.temporal_tensor(binned, stays["stay_id"].tolist(), stats, spec)
    stays = stays.assign(row=np.arange(len(stays)))
    return {"stays": stays, "all_stays": all_stays, "values": values, "mask": mask, "stats": stats,
            "spec": {"hours": spec.hours, "bin_hours": spec.bin_hours, "n_bins": spec.n_bins}}


def _cohorts(cfg, adm: pd.DataFrame, stays: pd.DataFrame, tables: dict, q) -> dict:
    """The task cohorts; with ``medcsp_task_subjects``, of the task population only (others counted)."""
    from ..ehr.cohorts import build_cohorts
    from ..ehr.onsets import task_onsets

    if cfg.get("medcsp_task_subjects"):
        mine = stays["hadm_id"].isin(adm.loc[adm["task"], "hadm_id"])
        q.seen("medcsp", "task_population", len(stays))
        q.exclude("medcsp", "task_population", "ICU stay outside the EHR-task population (medcsp_task_subjects: "
                  "the tasks are scored on it only, as the paper's on MIMIC-III)",
                  records=stays.loc[~mine, "stay_id"].astype(str))
        stays, adm = stays[mine].reset_index(drop=True), adm[adm["task"]]
    onsets = task_onsets(cfg.mimic_iv_root, stays, outside_window=cfg.medcsp_onset_outside_window, quality=q)
    c = build_cohorts(stays, tables["patients"], tables["admissions"], onsets,
                      prediction_hours=cfg.medcsp_prediction_hours, min_age=cfg.medcsp_min_age,
                      onset_before_prediction=cfg.medcsp_onset_before_prediction, quality=q)
    split = adm.set_index("hadm_id")["split"]
    frames = {t: f.assign(split=f["hadm_id"].map(split).fillna("unassigned")) for t, f in c.frames.items()}
    lab = adm[adm["readmission"].notna()]
    q.seen("medcsp", "readmission", len(lab))
    lab = R.icu_admissions(lab, stays, cfg.medcsp_readmission_population, q, what="readmission")
    frames["readmission"] = pd.DataFrame({"subject_id": lab["subject_id"], "hadm_id": lab["hadm_id"],
                                          "prediction_time": lab["dischtime"],
                                          "label": lab["readmission"].astype("int64"), "split": lab["split"]})
    return {"frames": frames, "counts": c.counts, "params": c.params}


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def _save_sparse(path: Path, m) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        sparse.save_npz(tmp, sparse.csr_matrix(m))


def _write(out: Path, src: dict, feats: dict, temporal: dict, cohorts: dict, notes: pd.DataFrame,
           params: dict, quality: QualityLog) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.json").unlink(missing_ok=True)               # the completion marker goes first and last
    write_parquet_atomic(src["ehr"], out / "ehr_records.parquet")
    write_parquet_atomic(src["cxr"], out / "cxr_records.parquet")
    write_parquet_atomic(src["holdout"], out / "holdout_records.parquet")
    for k in ("icd", "drug", "histories"):
        _save_sparse(out / f"{k}.npz", feats[k])
    write_parquet_atomic(pd.DataFrame({"subject_id": feats["history_subjects"]}), out / "history_subjects.parquet")
    with atomic_path(out / "demographics.npy", suffix=".npy") as tmp:
        np.save(tmp, feats["demographics"])
    _save_npz(out / "temporal.npz", values=temporal["values"], mask=temporal["mask"])
    write_parquet_atomic(temporal["stays"], out / "stays.parquet")
    for f in TASK_FILES:
        (out / f).unlink(missing_ok=True)
    if "task" in feats:
        write_parquet_atomic(feats["task"]["records"], out / "task_records.parquet")
        for k in ("icd", "drug"):
            _save_sparse(out / f"task_{k}.npz", feats["task"][k])
        with atomic_path(out / "task_demographics.npy", suffix=".npy") as tmp:
            np.save(tmp, feats["task"]["demographics"])
    keep = notes[["hadm_id", "text"]] if len(notes) else pd.DataFrame({"hadm_id": [], "text": []})
    write_parquet_atomic(keep.drop_duplicates("hadm_id"), out / "notes.parquet")
    for task, f in cohorts["frames"].items():
        write_parquet_atomic(f, out / f"cohort_{task}.parquet")
    write_parquet_atomic(cohorts["counts"], out / "cohort_counts.parquet")
    write_csv_atomic(quality.to_frame(), out / "quality.csv")
    write_json_atomic(out / "vocab.json", {**feats["vocab"], "temporal_items": temporal["stats"]["items"],
                                           "temporal_stats": temporal["stats"], "temporal_spec": temporal["spec"],
                                           "cohort_params": cohorts["params"]})
    write_json_atomic(out / "params.json", params)


def load(cfg) -> dict:
    """What ``build`` wrote (raises, naming notebook 08, when it has not run or did not finish)."""
    out = out_dir(cfg)
    if not (out / "params.json").is_file():
        from ..errors import DataError

        raise DataError(out, "MEDCSP data missing or incomplete: run notebook 08_medcsp_data first "
                             "(python -m medbind_lib.run --only 08)")
    t = np.load(out / "temporal.npz")
    d = {k: pd.read_parquet(out / f"{k}.parquet") for k in ("ehr_records", "cxr_records", "holdout_records",
                                                           "stays", "history_subjects", "notes", "cohort_counts")}
    d.update({k: sparse.load_npz(out / f"{k}.npz") for k in ("icd", "drug", "histories")})
    d["demographics"] = np.load(out / "demographics.npy")
    d["temporal_values"], d["temporal_mask"] = t["values"], t["mask"]
    d["cohorts"] = {p.stem.removeprefix("cohort_"): pd.read_parquet(p) for p in sorted(out.glob("cohort_*.parquet"))
                    if p.stem != "cohort_counts"}
    d["vocab"] = json.loads((out / "vocab.json").read_text())
    d["params"] = json.loads((out / "params.json").read_text())
    d["quality"] = pd.read_csv(out / "quality.csv")
    if (out / "task_records.parquet").is_file():
        d["task"] = {"records": pd.read_parquet(out / "task_records.parquet"),
                     **{k: sparse.load_npz(out / f"task_{k}.npz") for k in ("icd", "drug")},
                     "demographics": np.load(out / "task_demographics.npy")}
    _check_rows(out, d)
    if "task" in d:
        _check_rows(out, {"ehr_records": d["task"]["records"], **{k: d["task"][k] for k in ("icd", "drug",
                                                                                            "demographics")}})
    return d


def _check_rows(out: Path, d: dict) -> None:
    """Record features are indexed by EHR-record position: a row count that differs would pair a record with
    another admission's codes silently, so it is an error."""
    n = {"ehr_records": len(d["ehr_records"]), "icd": d["icd"].shape[0], "drug": d["drug"].shape[0],
         "demographics": len(d["demographics"])}
    if len(set(n.values())) != 1:
        from ..errors import DataError

        raise DataError(out, f"MEDCSP record features out of step with the records {n}: re-run notebook 08")
