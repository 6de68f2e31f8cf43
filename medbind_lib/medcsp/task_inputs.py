"""MEDCSP's EHR downstream tasks and their inputs (notebook 10; MEDCSP.md "Downstream tasks").

Why a module of its own: like PyHealth's task functions, this is the one place that says what a task is (its
cohort rows, label, split and the modalities it may read) and which rows of the table exist (``ROWS``,
``ROW_LABELS``, ``MEDBIND_TASKS``: the row constants live here and nowhere else). The models (``task_models``),
the training loop (``medbind_lib.finetune``) and the table (``reports.ehr_tasks``) only consume what it builds.

Tasks and inputs (notebook 08's cohorts; only the modalities of ``features.TASK_MODALITIES``, so no text written
after the prediction time reaches an in-ICU task):

- ``arf``, ``shock``, ``mortality`` (FIDDLE, one row per first ICU stay): the stay's temporal tensor (the first
  ``medcsp_prediction_hours``, as notebook 08 built it: values then the observed-indicator channels) and its
  admission's demographics;
- ``readmission`` (one row per admission): the admission's EHR record - temporal tensors of its first
  ``medcsp_max_stays`` ICU stays (absent without a stay), discharge note, demographics, ICD and drug multi-hot.

Rows (``ROWS``), every one trained and evaluated on the same cohort rows and splits:

- ``medcsp``: the pre-trained encoders of ``medcsp_task_variant`` (notebook 09's ``best.pt``);
- ``medcsp_untrained``: the same architecture with the same seed, no pre-training (what pre-training adds);
- ``f_lstm`` / ``f_cnn``: FIDDLE's F-LSTM / F-CNN trained from scratch: an LSTM / a two-layer 1-D CNN (max over
  time) over each stay's tensor (mean over the admission's stays). ``medcsp_fiddle_input: concat`` (the paper's
  "concatenated demographic and clinical temporal features", FIDDLE's fused input) repeats the static vector at
  every time bin after the temporal channels; ``late_fusion`` joins a ReLU layer over it to the net's summary
  (``models.fiddle``). Static = demographics (ICU tasks); demographics + ICD + drug multi-hot + the OFF-THE-SHELF
  text encoder's pooled note embedding (the untrained model's text tower, so no MEDCSP pre-training reaches a
  baseline) + presence flags (readmission). An admission without an ICU stay has an all-zero (all-missing)
  temporal part (``fiddle_inputs``).
- ``raim`` / ``dcmn`` (in-ICU tasks only, as MEDCSP's Figure 5 pairs them): RAIM (Xu et al. 2018) and DCMN (Feng et
  al. 2019) trained from scratch on the F-models' inputs (``models.ehr_baselines`` says how each paper maps onto
  them and where the MedHMP group's implementations differ);
- ``yw_*`` (readmission only, as MEDCSP's Figure 6): Yang and Wu's eight multimodal models (``models.yang_wu``) on
  the F-models' inputs, the note features as a branch of their own;
- ``medbind_bd`` (readmission and mortality only; DIFFERENT inputs): MEDBind_BD's frozen CXR and ECG embeddings
  of the admission (mean over the records of Table 4's window, zeros + a presence flag when none) +
  demographics (``medbind_features``). It asks whether MEDBind's imaging embeddings carry the outcome; it is not
  a same-input baseline.

The paper pre-trains on MIMIC-IV and evaluates the tasks on MIMIC-III split 80/10/10. With ``medcsp_task_subjects``
the cohorts hold a task population that nothing pre-trains on (the synthetic profiles' ICU patients of
``synth_task_patients``: MIMIC-III's role), split by ``medcsp_task_split_fractions``; without it every task cohort
keeps the patient-level split of notebook 08, so the test rows are patients held out of pre-training. Which one
is ``TaskSettings.cohort``, beside every number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from .. import registry
from ..ehr.items import REFERENCE_PREVALENCE as _REFERENCE
from ..errors import ConfigError, DataError
from ..models.fiddle import FIDDLE_INPUTS
from .batches import stays_of_admissions, texts_or_none
from .features import TASK_MODALITIES

__all__ = ["ICU_TASKS", "TASKS", "ROWS", "ROW_LABELS", "MEDBIND_ROW", "MEDBIND_TASKS", "SPLITS", "POOLS", "EARLY_STOP",
           "REFERENCE_PREVALENCE", "PAPER_EHR_NUMBERS", "COHORT_NOTE", "TASK_POPULATION_NOTE", "TASK_MODALITIES",
           "TaskSettings", "task_settings", "TaskInputs", "record_features", "task_inputs", "yang_wu_inputs",
           "cohort_summary", "note_features", "note_inputs", "admission_stay_rows", "fiddle_inputs", "window_records",
           "medbind_features"]

ICU_TASKS = ("arf", "shock", "mortality")
TASKS = ICU_TASKS + ("readmission",)
ROWS = registry.table_rows("ehr_tasks")
ROW_LABELS = {k: registry.label(k, "ehr_tasks") for k in ROWS}
MEDBIND_ROW = registry.HEADLINE["medbind"]        # MEDBind's row: its frozen CXR + ECG embeddings + demographics
MEDBIND_TASKS = ("readmission", "mortality")      # the tasks Table 4 links CXR/ECG to (admission level)
SPLITS = ("train", "valid", "test")
POOLS = ("concat", "mean")
EARLY_STOP = ("valid_loss", "valid_auroc")
#: reference prevalences (%) at 48 h: MEDCSP's Table 4 (ARF, shock, readmission), FIDDLE's (mortality); ehr.items
REFERENCE_PREVALENCE = {t: round(100 * p, 1) for t, p in _REFERENCE.items()}
#: MEDCSP's published EHR-task numbers: MEDCSP.md "Published numbers" gives none (never invented here)
PAPER_EHR_NUMBERS: dict = {}
COHORT_NOTE = ("ours: MIMIC-IV (synthetic) test patients held out of pre-training; paper: MIMIC-III split "
               "80/10/10")
TASK_POPULATION_NOTE = ("ours: the task population (medcsp_task_subjects: patients no pre-training record comes from, "
                        "MIMIC-III's role), split {split}; paper: MIMIC-III split 80/10/10")


# ----------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSettings:
    """Every choice of notebook 10, recorded with each result row (profile keys ``medcsp_task_*``)."""

    variant: str = registry.HEADLINE["medcsp"]
    rows: tuple = ROWS
    tasks: tuple = TASKS
    finetune: bool = False
    pool: str = "concat"
    head_hidden: int = 64
    head_dropout: float = 0.1
    lrs: tuple = (2e-5, 2e-4, 2e-3, 2e-2)
    batch_sizes: tuple = (32, 64, 128, 256)
    epochs: int = 30
    patience: int = 5
    early_stop: str = "valid_loss"
    weight_decay: float = 0.01
    runs: int = 5
    n_boot: int = 1000
    fiddle_hidden: int = 64
    fiddle_input: str = "concat"
    dcmn_hops: int = 1
    star_cycles: int = 2
    max_stays: int = 3
    seed: int = 0
    alpha: float = 0.05
    cohort: str = COHORT_NOTE

    def __post_init__(self):
        bad = [(k, v) for k, v, ok in (("rows", self.rows, set(self.rows) <= set(ROWS)),
                                       ("tasks", self.tasks, set(self.tasks) <= set(TASKS)),
                                       ("pool", self.pool, self.pool in POOLS),
                                       ("fiddle_input", self.fiddle_input, self.fiddle_input in FIDDLE_INPUTS),
                                       ("early_stop", self.early_stop, self.early_stop in EARLY_STOP),
                                       ("lrs", self.lrs, bool(self.lrs) and all(float(x) > 0 for x in self.lrs)),
                                       ("batch_sizes", self.batch_sizes, bool(self.batch_sizes) and all(
                                           isinstance(b, int) and b >= 1 for b in self.batch_sizes)),
                                       ("runs", self.runs, self.runs >= 1), ("epochs", self.epochs, self.epochs >= 1),
                                       ("patience", self.patience, self.patience >= 1))
               if not ok]
        if bad:
            raise ConfigError(f"medcsp_task settings: bad value(s) {bad}")

    @property
    def grid(self) -> list[tuple[float, int]]:
        return [(float(lr), int(b)) for lr in self.lrs for b in self.batch_sizes]

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def task_settings(cfg, **overrides) -> TaskSettings:
    """The settings of profile ``cfg`` (keys ``medcsp_task_*``; the bootstrap's seed and alpha from the
    evaluation protocol, so notebook 10 resamples as notebooks 03-09 do)."""
    from ..metrics.protocol import eval_settings

    ev = eval_settings(cfg)
    kw = dict(variant=cfg["medcsp_task_variant"], rows=tuple(cfg["medcsp_task_rows"]),
              tasks=tuple(cfg["medcsp_tasks"]), finetune=bool(cfg["medcsp_task_finetune"]),
              pool=cfg["medcsp_task_pool"], head_hidden=int(cfg["medcsp_task_head_hidden"]),
              head_dropout=float(cfg["medcsp_task_head_dropout"]), lrs=tuple(float(x) for x in cfg["medcsp_task_lrs"]),
              batch_sizes=tuple(cfg["medcsp_task_batch_sizes"]), epochs=int(cfg["medcsp_task_epochs"]),
              patience=int(cfg["medcsp_task_patience"]), early_stop=cfg["medcsp_task_early_stop"],
              weight_decay=float(cfg["medcsp_task_weight_decay"]), runs=int(cfg["medcsp_task_runs"]),
              n_boot=int(cfg["medcsp_task_n_boot"]), fiddle_hidden=int(cfg["medcsp_task_fiddle_hidden"]),
              fiddle_input=cfg["medcsp_fiddle_input"], dcmn_hops=int(cfg["medcsp_dcmn_hops"]),
              star_cycles=int(cfg["medcsp_yang_wu_star_cycles"]), max_stays=int(cfg["medcsp_max_stays"]),
              seed=int(ev.seed),
              alpha=float(ev.alpha),
              cohort=TASK_POPULATION_NOTE.format(split="/".join(f"{100 * float(x):g}" for x in
                                                                cfg["medcsp_task_split_fractions"]))
              if cfg.get("medcsp_task_subjects") else COHORT_NOTE)
    kw.update(overrides)
    return TaskSettings(**kw)


# ----------------------------------------------------------------------------------------------------
# inputs of a task's rows
# ----------------------------------------------------------------------------------------------------
@dataclass
class TaskInputs:
    """One task's cohort rows and their inputs, for the task's modalities ONLY (``arrays`` has no key for a
    modality the task may not use, so nothing downstream can read it).

    ``frame``: subject_id, hadm_id, (stay_id), label, split; ``arrays``: ``temporal`` [n, S, T, 2F] float32
    (values, then observed indicators; absent stays zero) with ``stays`` [n, S] bool, ``demo`` / ``icd`` /
    ``drug`` [n, d] float32; ``notes``: text or None per row; ``present``: modality -> [n] bool."""

    task: str
    frame: pd.DataFrame
    modalities: tuple
    arrays: dict
    stays: Optional[np.ndarray]
    notes: Optional[list]
    present: dict

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def y(self) -> np.ndarray:
        return self.frame["label"].to_numpy(np.int64)

    def rows_of(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.frame["split"].astype(str).to_numpy() == split)

    def take(self, idx) -> "TaskInputs":
        idx = np.asarray(idx, np.int64)
        return TaskInputs(self.task, self.frame.iloc[idx].reset_index(drop=True), self.modalities,
                          {m: a[idx] for m, a in self.arrays.items()},
                          None if self.stays is None else self.stays[idx],
                          None if self.notes is None else [self.notes[i] for i in idx],
                          {m: p[idx] for m, p in self.present.items()})


def _temporal(data: Mapping, rows: np.ndarray) -> np.ndarray:
    """[n, S] temporal-tensor rows (-1 = no stay) -> [n, S, T, 2F] values then observed indicators."""
    tv, tm = data["temporal_values"], data["temporal_mask"]
    n, s = rows.shape
    x = np.zeros((n, s, tv.shape[1], 2 * tv.shape[2]), np.float32)
    on = rows >= 0
    x[on] = np.concatenate([tv[rows[on]], tm[rows[on]].astype(np.float32)], axis=-1)
    return x


def _stay_matrix(data: Mapping, frame: pd.DataFrame, task: str, max_stays: int) -> np.ndarray:
    """ICU tasks: the cohort stay's own row ([n, 1]); readmission: the admission's first ``max_stays`` stays
    (the pre-training record's rule, ``batches.stays_of_admissions``), -1 padded."""
    stays = data["stays"]
    if task in ICU_TASKS:
        row = stays.drop_duplicates("stay_id").set_index("stay_id")["row"]
        r = frame["stay_id"].map(row)
        if r.isna().any():
            raise DataError("runs/<profile>/08/stays.parquet", f"{int(r.isna().sum())} {task} cohort stay(s) have "
                            "no temporal tensor row: re-run notebook 08")
        return r.to_numpy(np.int64)[:, None]
    return admission_stay_rows(stays, frame["hadm_id"].astype(np.int64).to_numpy(), max_stays)


def admission_stay_rows(stays: pd.DataFrame, hadm_ids: np.ndarray, max_stays: int) -> np.ndarray:
    """[n, max_stays] temporal rows of each admission's first stays (``batches.stays_of_admissions``), -1 padded."""
    per = stays_of_admissions(stays, max_stays)
    out = np.full((len(hadm_ids), int(max_stays)), -1, np.int64)
    for i, h in enumerate(np.asarray(hadm_ids, np.int64).tolist()):
        r = per.get(h, ())
        out[i, :len(r)] = r
    return out


def record_features(data: Mapping) -> dict:
    """Where the task rows' record features live: the task population's (``medcsp_task_subjects``: the cohorts
    hold it only) or the EHR source's records."""
    if "task" in data:
        return {"file": "task_records.parquet", **data["task"]}
    return {"file": "ehr_records.parquet", "records": data["ehr_records"],
            **{k: data[k] for k in ("icd", "drug", "demographics")}}


def task_inputs(data: Mapping, task: str, max_stays: int = 3, quality=None) -> TaskInputs:
    """The inputs of ``task``'s cohort rows from ``features.load`` output (module docstring). Rows outside
    train/valid/test are dropped and counted in ``quality``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    f = data["cohorts"][task]
    keep = f["split"].astype(str).isin(SPLITS).to_numpy()
    if quality is not None:
        quality.seen("medcsp_tasks", task, len(f))
        quality.exclude("medcsp_tasks", task, "cohort row without a train/valid/test split",
                        records=f.loc[~keep, "hadm_id"].astype(str))
    cols = [c for c in ("subject_id", "hadm_id", "stay_id", "label", "split") if c in f]
    frame = f.loc[keep, cols].reset_index(drop=True)
    frame["split"] = frame["split"].astype(str)
    frame["subject_id"] = frame["subject_id"].astype(str)      # ICU cohorts hold integers, readmission linked text
    feats = record_features(data)
    ehr_pos = pd.Series(np.arange(len(feats["records"])), index=feats["records"]["hadm_id"].astype(np.int64))
    erow = frame["hadm_id"].astype(np.int64).map(ehr_pos[~ehr_pos.index.duplicated()])
    if erow.isna().any():
        raise DataError(f"runs/<profile>/08/{feats['file']}", f"{int(erow.isna().sum())} {task} admission(s) "
                        "have no record features: re-run notebook 08")
    erow = erow.to_numpy(np.int64)
    mods = tuple(TASK_MODALITIES[task])
    arrays, present, stays, notes = {}, {}, None, None
    for m in mods:
        if m == "temporal":
            rows = _stay_matrix(data, frame, task, max_stays)
            arrays[m], stays = _temporal(data, rows), rows >= 0
            present[m] = stays.any(1)
        elif m == "demo":
            arrays[m] = np.asarray(feats["demographics"], np.float32)[erow]
            present[m] = np.ones(len(frame), bool)
        elif m in ("icd", "drug"):
            arrays[m] = sparse.csr_matrix(feats[m])[erow].toarray().astype(np.float32)
            present[m] = arrays[m].any(1)
        elif m == "note":
            nm = data["notes"].drop_duplicates("hadm_id").set_index("hadm_id")["text"]
            notes = texts_or_none(frame["hadm_id"].astype(np.int64).map(nm)).tolist()
            present[m] = np.array([t is not None for t in notes], bool)
        else:
            raise ValueError(f"unknown task modality {m!r}")
    return TaskInputs(task, frame, mods, arrays, stays, notes, present)


def cohort_summary(inputs: Mapping[str, TaskInputs]) -> pd.DataFrame:
    """Per task and split: rows, positives, prevalence (%), patients, rows with each optional modality."""
    out = []
    for task, ti in inputs.items():
        for s in SPLITS:
            idx = ti.rows_of(s)
            y = ti.y[idx]
            r = {"task": task, "split": s, "n": len(idx), "positives": int(y.sum()),
                 "prevalence_%": round(100 * y.mean(), 1) if len(y) else float("nan"),
                 "patients": int(ti.frame["subject_id"].iloc[idx].nunique()),
                 "reference_prevalence_%": REFERENCE_PREVALENCE.get(task, float("nan"))}
            r.update({f"with_{m}": int(ti.present[m][idx].sum()) for m in ti.modalities if m != "demo"})
            out.append(r)
    df = pd.DataFrame(out)
    for c in [c for c in df if c.startswith("with_")]:           # "-": the task may not use that modality
        df[c] = [("-" if pd.isna(v) else int(v)) for v in df[c]]
    return df


# ----------------------------------------------------------------------------------------------------
# static and temporal inputs of the F-models (FIDDLE's baselines)
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def note_features(text_encoder, notes: Sequence, batch_size: int = 64) -> np.ndarray:
    """[n, hidden] pooled outputs of a text encoder (zeros where a row has no note): the F-models' static note
    input. Called with the UNTRAINED model's tower, so no pre-training reaches the baselines."""
    rows = [i for i, t in enumerate(notes) if t is not None]
    out = np.zeros((len(notes), text_encoder.out_dim), np.float32)
    was = text_encoder.training
    text_encoder.eval()
    dev = next(text_encoder.parameters()).device
    for s in range(0, len(rows), batch_size):
        r = rows[s:s + batch_size]
        tok = text_encoder.tokenize([notes[i] for i in r], device=dev)
        out[r] = text_encoder(tok["input_ids"], tok["attention_mask"]).float().cpu().numpy()
    text_encoder.train(was)
    return out


def _static(inputs: TaskInputs, notes: Optional[np.ndarray], with_note: bool) -> torch.Tensor:
    """[n, d] static vector: demographics, ICD, drugs (and, ``with_note``, the note features) of the task's
    modalities, then a presence flag for each modality other than demographics."""
    static = [inputs.arrays[m] for m in ("demo", "icd", "drug") if m in inputs.arrays]
    if with_note and "note" in inputs.modalities:
        static.append(notes if notes is not None else np.zeros((len(inputs), 0), np.float32))
    flags = [inputs.present[m][:, None].astype(np.float32) for m in inputs.modalities if m != "demo"]
    s = np.concatenate(static + flags, 1) if static or flags else np.zeros((len(inputs), 0), np.float32)
    return torch.from_numpy(s.astype(np.float32))


def _temporal_tensors(inputs: TaskInputs) -> tuple:
    t = inputs.arrays.get("temporal")
    if t is None:
        raise ValueError("this row needs the temporal modality")
    return torch.from_numpy(t), torch.from_numpy(inputs.stays)


def fiddle_inputs(inputs: TaskInputs, notes: Optional[np.ndarray] = None) -> tuple:
    """(temporal, stays, static) tensors of the F-models: static = demographics, ICD, drugs and note features of
    the task's modalities, plus a presence flag for each modality other than demographics (constant 1 for the
    temporal input of the ICU tasks, whose rows all have their own stay)."""
    return (*_temporal_tensors(inputs), _static(inputs, notes, with_note=True))


def yang_wu_inputs(inputs: TaskInputs, notes: Optional[np.ndarray]) -> tuple:
    """(temporal, stays, static, note [n, d_note], note present [n]) of Yang and Wu's models: the F-models' inputs
    with the note features apart from the static vector (their gate fuses the note, the time series and the
    static branch)."""
    return (*_temporal_tensors(inputs), _static(inputs, None, with_note=False), *note_inputs(inputs, notes))


def note_inputs(inputs: TaskInputs, notes: Optional[np.ndarray]) -> tuple:
    """(note features [n, d_note] (zero-width without notes), note present [n]) tensors of a task's rows."""
    has = inputs.present.get("note", np.zeros(len(inputs), bool))
    note = notes if notes is not None else np.zeros((len(inputs), 0), np.float32)
    return torch.from_numpy(np.asarray(note, np.float32)), torch.from_numpy(np.asarray(has, bool))


# ----------------------------------------------------------------------------------------------------
# MEDBind_BD's CXR / ECG embeddings of an admission (Table 4's window, mean over its records)
# ----------------------------------------------------------------------------------------------------
def window_records(admissions: pd.DataFrame, records: pd.DataFrame, window_hours: float,
                   pre_hours: float) -> pd.DataFrame:
    """(hadm_id, record_id) of EVERY record of the admission's patient within Table 4's window
    ``[admittime - pre_hours, min(admittime + window_hours, dischtime)]`` (``linking.task_links`` keeps the
    nearest one only)."""
    a = admissions[["subject_id", "hadm_id", "admittime", "dischtime"]].dropna(subset=["admittime"]).copy()
    r = records[["subject_id", "record_id", "time"]].dropna(subset=["time"]).copy()
    for d in (a, r):
        d["subject_id"] = d["subject_id"].astype(str)
    m = r.merge(a, on="subject_id")
    t, adm = pd.to_datetime(m["time"]), pd.to_datetime(m["admittime"])
    ok = (t >= adm - pd.Timedelta(hours=pre_hours)) & (t <= adm + pd.Timedelta(hours=window_hours))
    ok &= t <= pd.to_datetime(m["dischtime"]).fillna(pd.Timestamp.max)
    out = m.loc[ok, ["hadm_id", "record_id"]]
    return out.assign(hadm_id=out["hadm_id"].astype(np.int64), record_id=out["record_id"].astype(str))


def _window_mean(hadm: np.ndarray, pairs: pd.DataFrame, table: Mapping[str, np.ndarray], dim: int):
    """[n, dim] mean embedding of each admission's window records that have one, and [n] presence."""
    pos = {h: i for i, h in enumerate(hadm.tolist())}
    emb, cnt = np.zeros((len(hadm), dim), np.float32), np.zeros(len(hadm))
    for h, r in pairs.itertuples(index=False):
        if h in pos and r in table:
            emb[pos[h]] += table[r]
            cnt[pos[h]] += 1
    return (emb / np.maximum(cnt, 1)[:, None]).astype(np.float32), cnt > 0


def medbind_features(inputs: TaskInputs, linked: Mapping, embeddings: Mapping[str, Mapping[str, np.ndarray]],
                     window_hours: float, pre_hours: float) -> tuple[torch.Tensor, dict]:
    """[n, d] = per modality (CXR, ECG) the window mean + a presence flag, then demographics; and the number of
    rows with each modality (what the row saw)."""
    hadm = inputs.frame["hadm_id"].to_numpy(np.int64)
    parts, seen = [], {}
    for m, table in embeddings.items():
        dim = len(next(iter(table.values()))) if table else 1
        pairs = window_records(linked["admissions"], linked[m], window_hours, pre_hours)
        e, p = _window_mean(hadm, pairs, table, dim)
        parts += [e, p[:, None].astype(np.float32)]
        seen[m] = int(p.sum())
    parts.append(inputs.arrays["demo"])
    return torch.from_numpy(np.concatenate(parts, 1).astype(np.float32)), seen
