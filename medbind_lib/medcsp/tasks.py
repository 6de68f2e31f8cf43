"""MEDCSP's EHR downstream tasks (notebook 10; MEDCSP.md "Downstream tasks").

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
  time) over each stay's tensor (mean over the admission's stays), concatenated with a ReLU layer over the static
  inputs. Static = demographics (ICU tasks); demographics + ICD + drug multi-hot + the OFF-THE-SHELF text
  encoder's pooled note embedding (the untrained model's text tower, so no MEDCSP pre-training reaches a
  baseline) + presence flags (readmission). An admission without an ICU stay has an all-zero temporal part.
- ``medbind_bd`` (readmission and mortality only; DIFFERENT inputs): MEDBind_BD's frozen CXR and ECG embeddings
  of the admission (mean over the records of Table 4's window, zeros + a presence flag when none) +
  demographics. It asks whether MEDBind's imaging embeddings carry the outcome; it is not a same-input baseline.

Every row ends in the same MLP head (``MLPHead``). For the MEDCSP rows the head reads the task's per-modality
embeddings, concatenated with presence flags (``medcsp_task_pool: concat``: keeps which modality said what) or
their masked mean (``mean``: Eq. 2's record embedding). ``medcsp_task_finetune: false`` computes each row's
embeddings once and trains only the head (the CPU budget); ``true`` trains a copy of the encoders with the head.

Training (``fit_classifier``): AdamW, BCE, shuffled mini-batches, at most ``medcsp_task_epochs`` epochs with early
stopping on the validation split (``medcsp_task_early_stop``; the best epoch's weights are kept). The learning rate
and batch size are chosen per (task, row) on VALIDATION AUROC over ``medcsp_task_lrs`` x ``medcsp_task_batch_sizes``
(validation loss where the validation AUROC is undefined or tied), then ``medcsp_task_runs`` runs with seeds
``seed``, ``seed + 1``, ... (run 0 is the grid's fit) are scored on the TEST split: patients held out of
pre-training.

Metrics (``binary_metrics``): AUROC, AUPR as the paper computes it (``sklearn.metrics.auc(recall, precision)`` over
``precision_recall_curve``) and average precision. Reported value = mean over the runs; 95% CI = patient
bootstrap of that mean (each replicate resamples the test patients once and re-scores every run); a replicate
with one class is NaN, skipped and counted. ``paired_difference`` uses the same replicates for two rows.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ..errors import ConfigError, DataError
from ..metrics.binary import METRICS, binary_metrics, metric_replicates, paired_difference, runs_bootstrap
from ..models.fiddle import FIDDLENet, HeadOnly, MLPHead
from .batches import stays_of_admissions, texts_or_none
from .features import TASK_MODALITIES

__all__ = ["ICU_TASKS", "TASKS", "ROWS", "ROW_LABELS", "MEDBIND_TASKS", "FIDDLE_PREVALENCE", "PAPER_EHR_NUMBERS",
           "TaskSettings", "task_settings", "TaskInputs", "task_inputs", "cohort_summary", "encode_medcsp",
           "head_features", "MLPHead", "HeadOnly", "FinetunedMEDCSP", "FIDDLENet", "fiddle_inputs", "note_features",
           "window_records", "medbind_features", "take", "FitResult", "fit_classifier", "predict", "grid_search",
           "select_setting", "binary_metrics", "metric_replicates", "runs_bootstrap", "paired_difference",
           "evaluate_tasks", "TaskResults", "describe_results", "display_table", "plot_auroc", "save_results"]

ICU_TASKS = ("arf", "shock", "mortality")
TASKS = ICU_TASKS + ("readmission",)
ROWS = ("medcsp", "medcsp_untrained", "f_lstm", "f_cnn", "medbind_bd")
MEDBIND_TASKS = ("readmission", "mortality")      # the tasks Table 4 links CXR/ECG to (admission level)
ROW_LABELS = {"medcsp": "MEDCSP (pre-trained)", "medcsp_untrained": "MEDCSP architecture, untrained",
              "f_lstm": "F-LSTM (FIDDLE, from scratch)", "f_cnn": "F-CNN (FIDDLE, from scratch)",
              "medbind_bd": "MEDBind_BD CXR+ECG + demo (other inputs)"}
SPLITS = ("train", "valid", "test")
POOLS = ("concat", "mean")
EARLY_STOP = ("valid_loss", "valid_auroc")
#: FIDDLE's MIMIC-III reference prevalences (%), MEDCSP.md
FIDDLE_PREVALENCE = {"arf": 18.3, "shock": 14.9, "mortality": 12.0}
#: MEDCSP's published EHR-task numbers: MEDCSP.md "Published numbers" gives none (never invented here)
PAPER_EHR_NUMBERS: dict = {}
COHORT_NOTE = "ours: MIMIC-IV (synthetic) test patients held out of pre-training; paper: MIMIC-III"


# ----------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSettings:
    """Every choice of notebook 10, recorded with each result row (profile keys ``medcsp_task_*``)."""

    variant: str = "medcsp"
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
    max_stays: int = 3
    seed: int = 0
    alpha: float = 0.05

    def __post_init__(self):
        bad = [(k, v) for k, v, ok in (("rows", self.rows, set(self.rows) <= set(ROWS)),
                                       ("tasks", self.tasks, set(self.tasks) <= set(TASKS)),
                                       ("pool", self.pool, self.pool in POOLS),
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
              max_stays=int(cfg["medcsp_max_stays"]), seed=int(ev.seed), alpha=float(ev.alpha))
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
    per = stays_of_admissions(stays, max_stays)
    out = np.full((len(frame), int(max_stays)), -1, np.int64)
    for i, h in enumerate(frame["hadm_id"].astype(np.int64).tolist()):
        r = per.get(h, ())
        out[i, :len(r)] = r
    return out


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
    ehr_pos = pd.Series(np.arange(len(data["ehr_records"])), index=data["ehr_records"]["hadm_id"].astype(np.int64))
    erow = frame["hadm_id"].astype(np.int64).map(ehr_pos[~ehr_pos.index.duplicated()])
    if erow.isna().any():
        raise DataError("runs/<profile>/08/ehr_records.parquet", f"{int(erow.isna().sum())} {task} admission(s) "
                        "are not EHR records: re-run notebook 08")
    erow = erow.to_numpy(np.int64)
    mods = tuple(TASK_MODALITIES[task])
    arrays, present, stays, notes = {}, {}, None, None
    for m in mods:
        if m == "temporal":
            rows = _stay_matrix(data, frame, task, max_stays)
            arrays[m], stays = _temporal(data, rows), rows >= 0
            present[m] = stays.any(1)
        elif m == "demo":
            arrays[m] = np.asarray(data["demographics"], np.float32)[erow]
            present[m] = np.ones(len(frame), bool)
        elif m in ("icd", "drug"):
            arrays[m] = sparse.csr_matrix(data[m])[erow].toarray().astype(np.float32)
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
                 "FIDDLE_prevalence_%": FIDDLE_PREVALENCE.get(task, float("nan"))}
            r.update({f"with_{m}": int(ti.present[m][idx].sum()) for m in ti.modalities if m != "demo"})
            out.append(r)
    df = pd.DataFrame(out)
    for c in [c for c in df if c.startswith("with_")]:           # "-": the task may not use that modality
        df[c] = [("-" if pd.isna(v) else int(v)) for v in df[c]]
    return df


# ----------------------------------------------------------------------------------------------------
# MEDCSP embeddings of a task's rows
# ----------------------------------------------------------------------------------------------------
def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_medcsp(model, inputs: TaskInputs) -> dict:
    """{modality: [n, D]} for the task's modalities through the model's per-modality encoders (unit norm in the
    present rows, zeros in the absent ones, as ``MEDCSPModel.forward``). Differentiable: the fine-tuned row calls
    it under autograd, the frozen rows under ``no_grad``."""
    dev, n, out = _device(model), len(inputs), {}
    for m in inputs.modalities:
        rows = torch.from_numpy(np.flatnonzero(inputs.present[m])).to(dev)
        z = torch.zeros(n, model.embed_dim, device=dev)
        if len(rows):
            if m == "note":
                e = model.encode_text([inputs.notes[i] for i in rows.tolist()], "note")
            elif m == "temporal":
                e = model.encode(m, torch.from_numpy(inputs.arrays[m]).to(dev)[rows],
                                 torch.from_numpy(inputs.stays).to(dev)[rows])
            else:
                e = model.encode(m, torch.from_numpy(inputs.arrays[m]).to(dev)[rows])
            z = z.index_copy(0, rows, e.to(z.dtype))
        out[m] = z
    return out


def head_features(emb: Mapping[str, torch.Tensor], present: Mapping[str, np.ndarray], modalities: Sequence[str],
                  pool: str = "concat") -> torch.Tensor:
    """The head's input: ``concat`` = every modality's embedding (zeros if absent) + presence flags; ``mean`` =
    the masked mean over the present modalities (Eq. 2's record embedding)."""
    ref = emb[modalities[0]]
    flags = torch.stack([torch.as_tensor(present[m], dtype=ref.dtype, device=ref.device) for m in modalities], 1)
    if pool == "concat":
        return torch.cat([emb[m] for m in modalities] + [flags], 1)
    if pool == "mean":
        total = sum(emb[m] for m in modalities)
        return total / flags.sum(1, keepdim=True).clamp_min(1.0)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


@torch.no_grad()
def frozen_features(model, inputs: TaskInputs, pool: str, batch_size: int = 256) -> torch.Tensor:
    """Head inputs of every row, computed once with the encoders in eval mode (the frozen rows)."""
    was = model.training
    model.eval()
    parts = []
    for s in range(0, len(inputs), batch_size):
        sub = inputs.take(np.arange(s, min(s + batch_size, len(inputs))))
        parts.append(head_features(encode_medcsp(model, sub), sub.present, sub.modalities, pool).float().cpu())
    model.train(was)
    return torch.cat(parts) if parts else torch.zeros(0, 0)


# ----------------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------------
class FinetunedMEDCSP(nn.Module):
    """A COPY of the MEDCSP model's encoders trained with the head (X is a :class:`TaskInputs`); the model given
    is never modified, so every run starts from the same encoders."""

    def __init__(self, model, modalities: Sequence[str], pool: str, hidden: int, dropout: float):
        super().__init__()
        self.encoder = copy.deepcopy(model)
        self.modalities, self.pool = tuple(modalities), pool
        d = self.encoder.embed_dim * (len(self.modalities) if pool == "concat" else 1)
        d += len(self.modalities) if pool == "concat" else 0
        self.head = MLPHead(d, hidden, dropout).to(_device(self.encoder))

    def trainable(self) -> list:
        """Head + the encoders and projections of the task's modalities (the image tower is never trained)."""
        from ..models.medcsp import ENCODER_OF

        keys = {ENCODER_OF[m] for m in self.modalities}
        ps = list(self.head.parameters())
        ps += [p for k in keys for p in self.encoder.encoders[k].parameters()]
        ps += [p for m in self.modalities for p in self.encoder.projections[m].parameters()]
        return [p for p in ps if p.requires_grad]

    def forward(self, x: TaskInputs) -> torch.Tensor:
        emb = encode_medcsp(self.encoder, x)
        return self.head(head_features(emb, x.present, self.modalities, self.pool))


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


def fiddle_inputs(inputs: TaskInputs, notes: Optional[np.ndarray] = None) -> tuple:
    """(temporal, stays, static) tensors of the F-models: static = demographics, ICD, drugs and note features of
    the task's modalities, plus a presence flag for each modality other than demographics (constant 1 for the
    temporal input of the ICU tasks, whose rows all have their own stay)."""
    static = [inputs.arrays[m] for m in ("demo", "icd", "drug") if m in inputs.arrays]
    if "note" in inputs.modalities:
        static.append(notes if notes is not None else np.zeros((len(inputs), 0), np.float32))
    flags = [inputs.present[m][:, None].astype(np.float32) for m in inputs.modalities if m != "demo"]
    s = np.concatenate(static + flags, 1) if static or flags else np.zeros((len(inputs), 0), np.float32)
    t = inputs.arrays.get("temporal")
    if t is None:
        raise ValueError("the F-models need the temporal modality")
    return torch.from_numpy(t), torch.from_numpy(inputs.stays), torch.from_numpy(s.astype(np.float32))


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


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------
def take(x, idx):
    """Rows ``idx`` of a row model's input: a tensor, a tuple of tensors or a :class:`TaskInputs`."""
    if isinstance(x, TaskInputs):
        return x.take(idx.numpy() if torch.is_tensor(idx) else idx)
    if not torch.is_tensor(idx):
        idx = torch.as_tensor(np.asarray(idx, np.int64))
    if isinstance(x, tuple):
        return tuple(v[idx] for v in x)
    return x[idx]


def _n(x) -> int:
    return len(x) if isinstance(x, TaskInputs) else (len(x[0]) if isinstance(x, tuple) else x.shape[0])


@torch.no_grad()
def predict(module: nn.Module, x, batch_size: int = 512) -> np.ndarray:
    """Probabilities [n] in eval mode (batched: a fine-tuned row encodes its inputs)."""
    was = module.training
    module.eval()
    n = _n(x)
    out = [torch.sigmoid(module(take(x, np.arange(s, min(s + batch_size, n))))).float().cpu()
           for s in range(0, n, batch_size)]
    module.train(was)
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return float("nan")
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass
class FitResult:
    """One fit: its setting, the epoch kept and its validation scores (AUROC NaN when one class)."""

    lr: float
    batch_size: int
    seed: int
    best_epoch: int
    epochs_run: int
    valid_auroc: float
    valid_loss: float
    seconds: float
    module: Optional[nn.Module] = field(default=None, repr=False)


def _better(score: tuple, best: Optional[tuple]) -> bool:
    return best is None or score < best


def _criterion(p: np.ndarray, y: np.ndarray, early_stop: str) -> tuple:
    """Lower is better: (-AUROC, loss) for valid_auroc (loss alone where AUROC is undefined), (loss,) else."""
    loss = _bce(p, y)
    if early_stop == "valid_auroc":
        auc = binary_metrics(y, p)[0]
        return (-auc if np.isfinite(auc) else 0.0, loss)
    return (loss,)


def fit_classifier(module: nn.Module, x, y: np.ndarray, train_idx, valid_idx, *, lr: float, batch_size: int,
                   epochs: int, patience: int, weight_decay: float = 0.01, seed: int = 0,
                   early_stop: str = "valid_loss", params: Optional[list] = None) -> FitResult:
    """AdamW + BCE on the training rows, shuffled by ``seed``; after every epoch the validation rows are scored
    and the best epoch's weights are kept (``early_stop``); training stops after ``patience`` epochs without
    improvement. Without validation rows the last epoch is kept. ``module`` ends with the kept weights."""
    t0 = time.perf_counter()
    y = np.asarray(y, np.float32)
    xt, yt = take(x, train_idx), torch.from_numpy(y[np.asarray(train_idx, np.int64)])
    xv, yv = take(x, valid_idx), y[np.asarray(valid_idx, np.int64)]
    params = params if params is not None else [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    n, best, best_state, best_epoch, stale, epoch = len(yt), None, None, 0, 0, 0
    for epoch in range(1, int(epochs) + 1):
        module.train()
        for b in torch.randperm(n, generator=gen).split(int(batch_size)):
            logits = module(take(xt, b))
            loss = F.binary_cross_entropy_with_logits(logits, yt[b].to(logits.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not len(yv):
            continue
        score = _criterion(predict(module, xv), yv, early_stop)
        if _better(score, best):
            best, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        best_epoch = epoch
    pv = predict(module, xv) if len(yv) else np.zeros(0)
    auc = binary_metrics(yv, pv)[0] if len(yv) else float("nan")
    return FitResult(float(lr), int(batch_size), int(seed), best_epoch, epoch, float(auc), _bce(pv, yv),
                     time.perf_counter() - t0, module)


def select_setting(grid: pd.DataFrame) -> tuple[float, int]:
    """The (lr, batch_size) with the highest validation AUROC; validation loss breaks ties and decides where
    every AUROC is undefined (a validation split with one class); then the grid's order."""
    g = grid.reset_index(drop=True)
    auc = g["valid_auroc"].astype(float).fillna(-np.inf)
    loss = g["valid_loss"].astype(float).fillna(np.inf)
    order = np.lexsort((np.arange(len(g)), loss.to_numpy(), -auc.to_numpy()))
    i = int(order[0])
    return float(g.loc[i, "lr"]), int(g.loc[i, "batch_size"])


def grid_search(fit_fn: Callable[[float, int, int], FitResult], grid: Sequence[tuple[float, int]], seed: int,
                on_fit: Optional[Callable] = None) -> tuple[pd.DataFrame, dict]:
    """``fit_fn(lr, batch_size, seed)`` for every setting (seed fixed); returns the grid's validation scores and
    the fits by setting (the chosen one is reused as run 0)."""
    fits, rows = {}, []
    for lr, bs in grid:
        r = fit_fn(lr, bs, seed)
        fits[(float(lr), int(bs))] = r
        rows.append({"lr": float(lr), "batch_size": int(bs), "valid_auroc": r.valid_auroc,
                     "valid_loss": r.valid_loss, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                     "seconds": r.seconds})
        if on_fit is not None:
            on_fit(lr, bs)
    return pd.DataFrame(rows), fits


# ----------------------------------------------------------------------------------------------------
# the whole notebook's computation
# ----------------------------------------------------------------------------------------------------
@dataclass
class TaskResults:
    """``table`` (one row per task x row: metrics in percent with CIs, per-run values and every parameter),
    ``grid`` (validation AUROC (%) / loss of every setting), ``paired`` (MEDCSP minus each other row, AUROC, paired
    CI), ``scores`` ((task, row) -> [R, n_test] test probabilities), ``boot`` ((task, row) -> runs_bootstrap),
    ``settings``, ``notes``, ``test_frames`` (task -> its test rows: ids and label, the scores' row order)."""

    table: pd.DataFrame
    grid: pd.DataFrame
    paired: pd.DataFrame
    scores: dict
    boot: dict
    settings: TaskSettings
    notes: list
    test_frames: dict = field(default_factory=dict)


def _rows_for(task: str, rows: Sequence[str]) -> list[str]:
    return [r for r in rows if r != "medbind_bd" or task in MEDBIND_TASKS]


def _medbind_embeddings(cfg, linked, log, device="cpu") -> Optional[dict]:
    """MEDBind_BD's frozen CXR / ECG embeddings of every record in any admission's window (notebook 07's cached
    ``llm.features.embed_records``), or None (row skipped, said) when notebook 02's checkpoint is missing."""
    from ..llm.features import embed_records

    out = {}
    try:
        for m in ("cxr", "ecg"):
            ids = window_records(linked["admissions"], linked[m], cfg["admission_window_hours"],
                                 cfg["admission_pre_hours"])["record_id"].unique()
            out[m] = embed_records(cfg, "medbind_bd", m, ids, "best", device, linked)
    except DataError as e:
        log(f"medbind_bd row skipped: {e}")
        return None
    return out


class _Row:
    """How one row of one task builds its module and input (``make(seed) -> (module, params or None)``)."""

    def __init__(self, x, make: Callable, inputs_desc: str, extra: Optional[dict] = None):
        self.x, self.make, self.inputs_desc, self.extra = x, make, inputs_desc, dict(extra or {})


def _row_specs(task: str, ti: TaskInputs, models: Mapping, s: TaskSettings, medbind: Optional[dict],
               linked, cfg) -> dict:
    """Every row of ``task`` as a :class:`_Row` (the MEDCSP rows' features are computed here, once)."""
    specs, mods = {}, "+".join(ti.modalities)
    for row in _rows_for(task, s.rows):
        if row in ("medcsp", "medcsp_untrained"):
            model, info = models[row]
            if s.finetune:
                specs[row] = _Row(ti, lambda seed, m=model: _finetuned(m, ti, s, seed), mods, info)
            else:
                feats = frozen_features(model, ti, s.pool)
                specs[row] = _Row(feats, lambda seed, d=feats.shape[1]: _head(d, s, seed), mods, info)
        elif row in ("f_lstm", "f_cnn"):
            notes = models["note_features"](ti) if "note" in ti.modalities else None
            x = fiddle_inputs(ti, notes)
            kind = row.split("_")[1]
            specs[row] = _Row(x, lambda seed, k=kind, x=x: _fiddle(k, x, s, seed), mods + " (note: off-the-shelf "
                              "text encoder)" if notes is not None else mods)
        elif row == "medbind_bd" and medbind is not None:
            x, seen = medbind_features(ti, linked, medbind, cfg["admission_window_hours"], cfg["admission_pre_hours"])
            specs[row] = _Row(x, lambda seed, d=x.shape[1]: _head(d, s, seed),
                              "MEDBind_BD CXR + ECG window means + demo (inputs differ)",
                              {f"rows_with_{m}": v for m, v in seen.items()})
    return specs


def _head(d: int, s: TaskSettings, seed: int):
    torch.manual_seed(seed)
    return HeadOnly(d, s.head_hidden, s.head_dropout), None


def _finetuned(model, ti: TaskInputs, s: TaskSettings, seed: int):
    torch.manual_seed(seed)
    m = FinetunedMEDCSP(model, ti.modalities, s.pool, s.head_hidden, s.head_dropout)
    return m, m.trainable()


def _fiddle(kind: str, x: tuple, s: TaskSettings, seed: int):
    torch.manual_seed(seed)
    return FIDDLENet(kind, x[0].shape[-1], x[2].shape[1], s.fiddle_hidden, s.head_hidden, s.head_dropout), None


def _load_models(cfg, data, s: TaskSettings, log, device="cpu") -> dict:
    """The pre-trained variant, the untrained architecture (same seed) and the baselines' note encoder."""
    from .embed import load_medcsp_model
    from .pretrain import MEDCSPMethod

    dims = MEDCSPMethod.input_dims_of(data)
    out = {}
    if "medcsp" in s.rows:
        model, step, name = load_medcsp_model(cfg, s.variant, "best", device, input_dims=dims)
        out["medcsp"] = (model, {"checkpoint": f"09/{s.variant}/{name} (step {step})"})
    untrained, _, _ = load_medcsp_model(cfg, s.variant, "untrained", device, input_dims=dims)
    out["medcsp_untrained"] = (untrained, {"checkpoint": f"untrained {s.variant} architecture (seed {cfg['seed']})"})
    text = untrained.encoders["text"] if "text" in untrained.encoders else None
    out["note_features"] = lambda ti: (note_features(text, ti.notes) if text is not None
                                       else np.zeros((len(ti), 0), np.float32))
    return out


def _fit_row(task: str, row: str, spec: _Row, ti: TaskInputs, s: TaskSettings, tick: Callable) -> dict:
    """Grid search on validation AUROC, then the runs at the chosen setting; test scores [R, n_test]."""
    tr, va, te = ti.rows_of("train"), ti.rows_of("valid"), ti.rows_of("test")
    y = ti.y

    def fit(lr, bs, seed):
        module, params = spec.make(seed)
        return fit_classifier(module, spec.x, y, tr, va, lr=lr, batch_size=bs, epochs=s.epochs,
                              patience=s.patience, weight_decay=s.weight_decay, seed=seed,
                              early_stop=s.early_stop, params=params)

    grid, fits = grid_search(fit, s.grid, s.seed, on_fit=lambda lr, bs: tick(f"{task} {row} grid lr={lr:g} bs={bs}"))
    lr, bs = select_setting(grid)
    runs = [fits[(lr, bs)]]
    for k in range(1, s.runs):
        runs.append(fit(lr, bs, s.seed + k))
        tick(f"{task} {row} run {k + 1}/{s.runs}")
    x_test = take(spec.x, te)
    scores = np.stack([predict(r.module, x_test) for r in runs])
    for r in runs:
        r.module = None
    grid = grid.assign(task=task, row=row, valid_auroc=100 * grid["valid_auroc"],        # percent, as the tables
                       chosen=(grid["lr"] == lr) & (grid["batch_size"] == bs))
    return {"grid": grid,
            "lr": lr, "batch_size": bs, "runs": runs, "scores": scores}


def _table_row(task, row, spec, fitted, boot, ti, s: TaskSettings) -> dict:
    te = ti.rows_of("test")
    r = {"task": task, "row": row, "label": ROW_LABELS[row], "n_test": len(te),
         "positives_test": int(ti.y[te].sum()), "patients_test": int(ti.frame["subject_id"].iloc[te].nunique())}
    for m in METRICS:
        b = boot[m]
        r.update({m: 100 * b["value"], f"{m}_lo": 100 * b["lo"], f"{m}_hi": 100 * b["hi"],
                  f"{m}_runs": " ".join(f"{100 * v:.1f}" for v in b["per_run"])})
    r.update({"paper_auroc": PAPER_EHR_NUMBERS.get((task, row, "auroc"), float("nan")),
              "paper_aupr": PAPER_EHR_NUMBERS.get((task, row, "aupr"), float("nan")), "cohort": COHORT_NOTE,
              "boot_valid": boot["n_valid"], "boot_skipped": boot["n_skipped"], "n_boot": boot["n_boot"],
              "lr": fitted["lr"], "batch_size": fitted["batch_size"],
              "valid_auroc": 100 * fitted["runs"][0].valid_auroc, "epochs_max": s.epochs, "patience": s.patience,
              "early_stop": s.early_stop, "best_epochs": " ".join(str(x.best_epoch) for x in fitted["runs"]),
              "runs": s.runs, "seeds": " ".join(str(x.seed) for x in fitted["runs"]),
              "finetune": s.finetune if row.startswith("medcsp") else False,
              "variant": s.variant if row == "medcsp" else ("" if row != "medcsp_untrained" else f"{s.variant} (init)"),
              "pool": s.pool if row.startswith("medcsp") else "", "inputs": spec.inputs_desc,
              "head_hidden": s.head_hidden, "weight_decay": s.weight_decay,
              "fit_seconds": round(sum(x.seconds for x in fitted["runs"]) + fitted["grid"]["seconds"].sum()
                                   - fitted["runs"][0].seconds, 1),
              "extra": json.dumps(spec.extra, default=str)})
    return r


def _paired_rows(task: str, boot: Mapping, s: TaskSettings) -> list[dict]:
    if "medcsp" not in boot:
        return []
    out = []
    for other in [r for r in ROWS if r != "medcsp" and r in boot]:
        d = paired_difference(boot["medcsp"], boot[other], "auroc", s.alpha)
        out.append({"task": task, "a": "medcsp", "b": other, "metric": "AUROC", "a_value": 100 * d["a"],
                    "b_value": 100 * d["b"], "a_minus_b": 100 * d["diff"], "lo": 100 * d["lo"],
                    "hi": 100 * d["hi"], "boot_valid": d["n_valid"], "boot_skipped": d["n_skipped"],
                    "ci_excludes_0": d["ci_excludes_0"],
                    "same_inputs": other != "medbind_bd"})
    return out


def evaluate_tasks(cfg, data: Mapping, settings: Optional[TaskSettings] = None, *, linked: Optional[Mapping] = None,
                   inputs: Optional[Mapping[str, TaskInputs]] = None, progress_enabled: bool = True,
                   log: Callable = print, device=None) -> TaskResults:
    """Notebook 10's computation: every task x row (module docstring). The MEDCSP models (embeddings, the
    fine-tuned rows) run on ``device`` (default: CUDA when available); heads and F-models on the CPU with one torch
    thread (tiny models: faster on a shared 2-core CPU, and independent of the core count)."""
    from ..cohort import load_linked
    from ..metrics.protocol import torch_threads
    from ..runtime import progress

    s = settings or task_settings(cfg)
    inputs = inputs or {t: task_inputs(data, t, s.max_stays) for t in s.tasks}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = _load_models(cfg, data, s, log, device)
    needs_mb = "medbind_bd" in s.rows and any(t in MEDBIND_TASKS for t in s.tasks)
    linked = linked if linked is not None or not needs_mb else load_linked(cfg)
    medbind = _medbind_embeddings(cfg, linked, log, device) if needs_mb else None
    notes = []
    if needs_mb and medbind is None:
        notes.append("MEDBind_BD row skipped: notebook 02's medbind_bd checkpoint is missing.")
    specs = {t: _row_specs(t, inputs[t], models, s, medbind, linked, cfg) for t in s.tasks}
    total = sum(len(sp) for sp in specs.values()) * (len(s.grid) + s.runs - 1)
    bar = progress(total=total, desc="fits", enabled=progress_enabled)

    def tick(what: str) -> None:
        bar.set_postfix_str(what, refresh=False)
        bar.update(1)

    rows, grids, paired, scores, boots = [], [], [], {}, {}
    with torch_threads(1):
        for t in s.tasks:
            ti, te = inputs[t], inputs[t].rows_of("test")
            tb = {}
            for row, spec in specs[t].items():
                fitted = _fit_row(t, row, spec, ti, s, tick)
                tb[row] = runs_bootstrap(ti.y[te], fitted["scores"], ti.frame["subject_id"].to_numpy()[te],
                                         s.n_boot, s.seed, s.alpha)
                rows.append(_table_row(t, row, spec, fitted, tb[row], ti, s))
                grids.append(fitted["grid"])
                scores[(t, row)], boots[(t, row)] = fitted["scores"], tb[row]
            paired += _paired_rows(t, tb, s)
    bar.close()
    table = pd.DataFrame(rows)
    table.attrs["params"] = {**s.as_dict(), "n_boot": s.n_boot, "alpha": s.alpha,
                             "ci": "patient-level cluster bootstrap of the mean over runs", "cohort": COHORT_NOTE,
                             "device": str(device)}
    paired_df = pd.DataFrame(paired)
    paired_df.attrs["params"] = {**table.attrs["params"], "ci": "paired patient bootstrap (same replicates)"}
    grid = pd.concat(grids, ignore_index=True) if grids else pd.DataFrame()
    tests = {t: inputs[t].frame.iloc[inputs[t].rows_of("test")].reset_index(drop=True) for t in s.tasks}
    return TaskResults(table, grid, paired_df, scores, boots, s, notes, tests)


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------
def describe_results(res: TaskResults) -> list[str]:
    """An automatic, cautious reading: per task, which rows beat MEDCSP (or lose to it) beyond the paired CI,
    undefined metrics, and how wide the CIs are."""
    out, t = [], res.table
    for task in dict.fromkeys(t["task"]):
        d = t[t["task"] == task]
        n, pos = int(d["n_test"].iloc[0]), int(d["positives_test"].iloc[0])
        if d["auroc"].isna().all():
            out.append(f"{task}: AUROC undefined on the test split ({n} rows, {pos} positives: one class) - no "
                       "conclusion.")
            continue
        width = (d["auroc_hi"] - d["auroc_lo"]).median()
        best = d.loc[d["auroc"].idxmax()]
        line = (f"{task} ({n} test rows, {pos} positives): highest mean AUROC {best['auroc']:.1f} "
                f"({best['row']}); median CI width {width:.1f} points")
        if width > 20 or pos < 20:
            line += " - the CIs are wide (few test positives), so most differences are within the noise"
        out.append(line + ".")
        p = res.paired[res.paired["task"] == task] if len(res.paired) else res.paired
        for _, r in p.iterrows():
            verdict = ("beats" if r["lo"] > 0 else "is below") if r["ci_excludes_0"] else "is not distinguishable from"
            out.append(f"  MEDCSP {verdict} {r['b']}: AUROC difference {r['a_minus_b']:+.1f} "
                       f"[{r['lo']:.1f}, {r['hi']:.1f}] (paired bootstrap)"
                       + ("" if r["same_inputs"] else "; different inputs (MEDBind_BD CXR/ECG), not a same-input "
                                                     "comparison") + ".")
    return out


# ----------------------------------------------------------------------------------------------------
# table, figure, files
# ----------------------------------------------------------------------------------------------------
def display_table(res: TaskResults) -> pd.DataFrame:
    """The table as printed: 'mean of runs [95% CI]' per metric, the paper's value where MEDCSP.md gives one
    (it gives none for the EHR tasks: said in the cell), and the cohort line beside every number."""
    from ..reports.format import ci_str

    t = res.table
    out = pd.DataFrame({"Task": t["task"], "Row": t["label"],
                        **{name: [ci_str(r[m], r[f"{m}_lo"], r[f"{m}_hi"]) for _, r in t.iterrows()]
                           for m, name in (("auroc", "AUROC"), ("aupr", "AUPR"), ("ap", "AP"))},
                        "AUROC per run": t["auroc_runs"],
                        "paper AUROC / AUPR": ["not given in MEDCSP.md" if np.isnan(r["paper_auroc"]) else
                                               f"{r['paper_auroc']:.1f} / {r['paper_aupr']:.1f}"
                                               for _, r in t.iterrows()],
                        "test rows (pos.)": [f"{a} ({b})" for a, b in zip(t["n_test"], t["positives_test"])],
                        "evaluated on": t["cohort"]})
    return out.reset_index(drop=True)


def plot_auroc(res: TaskResults):
    """One panel per task: each row's mean AUROC with its 95% CI and the per-run values (dots); chance at 50."""
    import matplotlib.pyplot as plt

    t = res.table
    tasks = list(dict.fromkeys(t["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), sharex=True, squeeze=False)
    colors = dict(zip(ROWS, ("tab:red", "tab:gray", "tab:blue", "tab:green", "tab:purple")))
    for ax, task in zip(axes[0], tasks):
        d = t[t["task"] == task].reset_index(drop=True)
        for i, r in d.iterrows():
            yy = len(d) - 1 - i
            if np.isfinite(r["auroc"]):
                ax.errorbar(r["auroc"], yy, xerr=[[r["auroc"] - r["auroc_lo"]], [r["auroc_hi"] - r["auroc"]]],
                            fmt="o", color=colors[r["row"]], capsize=3)
                runs = [float(v) for v in str(r["auroc_runs"]).split()]
                ax.plot(runs, [yy] * len(runs), "|", color=colors[r["row"]], alpha=0.6)
            else:
                ax.text(50, yy, "undefined (one class)", ha="center", va="center", fontsize=7, color="0.4")
        ax.axvline(50, ls="--", color="k", lw=0.8)
        ax.set_yticks(range(len(d)), list(d["row"])[::-1], fontsize=8)
        n, pos = int(d["n_test"].iloc[0]), int(d["positives_test"].iloc[0])
        ax.set(xlim=(0, 100), xlabel="test AUROC (%)", title=f"{task} ({n} test, {pos} pos.)")
    fig.suptitle("MEDCSP EHR tasks: mean of runs, 95% patient-bootstrap CI (ticks: runs); held-out MIMIC-IV "
                 "(synthetic) test patients", fontsize=9)
    fig.tight_layout()
    return fig


def save_results(cfg, res: TaskResults) -> dict:
    """Tables (CSV + Markdown + params, ``runs/<profile>/tables/``) and the raw fits (``runs/<profile>/10/``:
    the grid and every run's test probabilities), atomically where the suite's helpers allow."""
    from pathlib import Path

    from ..reports.format import save_table
    from ..io import write_csv_atomic, write_parquet_atomic

    notes = ["Cells: mean over runs [95% patient-bootstrap CI of that mean]; per run in 'AUROC per run'.",
             "AUPR = sklearn auc(recall, precision) as the paper; AP = average precision.",
             "MEDCSP.md gives no published EHR-task numbers, so there is no paper column to compare with.",
             f"Every number: {COHORT_NOTE}.",
             "MEDBind_BD row: other inputs (MEDBind_BD's CXR and ECG embeddings + demographics), not a same-input "
             "baseline."] + list(res.notes)
    out = Path(cfg["runs_dir"]) / "10"
    paths = {"table": save_table(res.table, cfg, "medcsp_ehr_tasks", title="MEDCSP EHR tasks (notebook 10)",
                                 display=display_table(res), notes=notes),
             "paired": save_table(res.paired, cfg, "medcsp_ehr_tasks_paired",
                                  title="MEDCSP minus the other rows: test AUROC, paired patient bootstrap"),
             "grid": save_table(res.grid, cfg, "medcsp_ehr_tasks_grid", params=res.settings.as_dict(),
                                title="Validation grid (seed 0 fits)")}
    scores = [res.test_frames[t].assign(task=t, row=r, run=k, score=s[k]) for (t, r), s in res.scores.items()
              for k in range(s.shape[0])]
    if scores:
        paths["scores"] = out / "test_scores.parquet"
        write_parquet_atomic(pd.concat(scores, ignore_index=True), paths["scores"])
    paths["grid_csv"] = out / "grid.csv"
    out.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(res.grid, paths["grid_csv"])
    return paths
