"""FIDDLE-style in-ICU task cohorts at a prediction time T: ARF, shock and in-hospital mortality.

``build_cohorts(stays, patients, admissions, onsets, ...)`` works on frames (``read_icustays``, MIMIC-IV
patients/admissions, ``onsets.task_onsets``); ``task_cohorts(root, ...)`` reads them from a MIMIC-IV root.
Both return ``Cohorts``: ``frames[task]`` (subject_id, hadm_id, stay_id, intime, outtime, prediction_time,
label, onset), ``counts`` (one row per criterion and task: excluded, remaining, for a cohort table) and
``summary()`` (stays, positives, prevalence beside the reference: MEDCSP Table 4, FIDDLE for mortality).

Criteria, in this order, each exclusion counted (``counts`` and the QualityLog, stage ``cohort_<task>``):
1. ``first_stay_only`` (default True): only each patient's first ICU stay (by intime, then stay_id), taken
   BEFORE the other criteria, so a patient whose first stay fails is not replaced by a later stay (FIDDLE).
2. no ``patients`` row; age < ``min_age`` (default 18). ``age_at="anchor"`` (default) is ``anchor_age``;
   ``"intime"`` is anchor_age + (year of intime - anchor_year).
3. no ``admissions`` row (neither death time nor mortality label known).
4. died before T: admissions ``deathtime`` < intime + T (in-hospital death time).
5. left the ICU before T: outtime < intime + T (a stay ending exactly at T is kept).
6. ARF / shock, ``onset_before_prediction``: ``"exclude"`` (default, FIDDLE) drops stays whose onset is
   before T; ``"positive"`` keeps them as positives (leaks: the outcome is already in the input window).
Labels: ARF / shock = 1 iff the onset is in [T, outtime]; mortality = the admission's
``hospital_expire_flag`` (``onset`` = its deathtime; a missing flag is excluded, counted).
T = ``prediction_hours`` (default 48). Onsets come with their own window rule (``outside_window``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..datasets import mimic_icu, mimic_iv
from .items import REFERENCE_PREVALENCE
from ..quality import QualityLog, quality_or_new
from .onsets import ONSET_TASKS, task_onsets

DATASET = "mimic_iv"
TASKS = ("arf", "shock", "mortality")
ONSET_BEFORE_PREDICTION_RULES = {
    "exclude": "stays whose onset is before T are excluded (FIDDLE)",
    "positive": "stays whose onset is before T are positives (the outcome leaks into the input window)",
}
AGE_AT = {"anchor": "anchor_age", "intime": "anchor_age + (year of intime - anchor_year)"}
FRAME_COLUMNS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "prediction_time", "label", "onset"]


@dataclass
class Cohorts:
    """Per-task cohort frames, the exclusion counts behind them and the parameters that built them."""

    frames: dict
    counts: pd.DataFrame
    params: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        rows = []
        for task, df in self.frames.items():
            n, pos = len(df), int(df["label"].sum())
            rows.append(dict(task=task, stays=n, positives=pos, prevalence=pos / n if n else float("nan"),
                             reference_prevalence=REFERENCE_PREVALENCE.get(task, float("nan"))))
        return pd.DataFrame(rows, columns=["task", "stays", "positives", "prevalence", "reference_prevalence"])


class _Steps:
    """Applies exclusion masks in order, recording (criterion, excluded, remaining) and example stay ids."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.rows = [("ICU stays", 0, len(df), [])]

    def drop(self, criterion: str, mask) -> None:
        mask = pd.Series(mask, index=self.df.index).fillna(False).to_numpy(dtype=bool)
        ex = self.df.loc[mask, "stay_id"].astype(str).tolist()
        self.df = self.df[~mask]
        self.rows.append((criterion, len(ex), len(self.df), ex))

    def fork(self) -> "_Steps":
        s = _Steps.__new__(_Steps)
        s.df, s.rows = self.df, list(self.rows)
        return s


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {list(allowed)}")


def _ages(df: pd.DataFrame, age_at: str) -> pd.Series:
    age = df["anchor_age"].astype("float64")
    if age_at == "intime":
        age = age + (df["intime"].dt.year - df["anchor_year"].astype("float64"))
    return age


def _common(stays, patients, admissions, hours, min_age, first_stay_only, age_at) -> _Steps:
    """Criteria 1-5, shared by every task."""
    df = stays[["subject_id", "hadm_id", "stay_id", "intime", "outtime"]]
    df = df.merge(patients[["subject_id", "anchor_age", "anchor_year"]], on="subject_id", how="left")
    adm = admissions[["hadm_id", "deathtime", "hospital_expire_flag"]].assign(_adm=True)
    df = df.merge(adm, on="hadm_id", how="left")
    df["prediction_time"] = (df["intime"] + pd.Timedelta(hours=hours)).astype("datetime64[ns]")
    steps = _Steps(df.sort_values(["subject_id", "intime", "stay_id"], kind="stable").reset_index(drop=True))
    if first_stay_only:
        steps.drop("not the patient's first ICU stay", steps.df["subject_id"].duplicated())
    steps.drop("no patients row", steps.df["anchor_age"].isna())
    steps.drop(f"age < {min_age}", _ages(steps.df, age_at) < min_age)
    steps.drop("no admissions row", steps.df["_adm"].isna())
    steps.drop(f"died before T={hours:g}h", steps.df["deathtime"] < steps.df["prediction_time"])
    steps.drop(f"left the ICU before T={hours:g}h", steps.df["outtime"] < steps.df["prediction_time"])
    return steps


def _onset_task(steps: _Steps, onsets: pd.DataFrame, task: str, hours: float, rule: str) -> pd.DataFrame:
    col = f"{task}_onset"
    if onsets is None or col not in onsets:
        raise ValueError(f"task {task!r} needs onsets with a {col!r} column (onsets.task_onsets)")
    steps.df = steps.df.assign(onset=steps.df["stay_id"].map(onsets.set_index("stay_id")[col])
                               .astype("datetime64[ns]"))
    early = steps.df["onset"] < steps.df["prediction_time"]
    if rule == "exclude":
        steps.drop(f"{task} onset before T={hours:g}h", early)
    df = steps.df
    inside = (df["onset"] >= df["prediction_time"]) & (df["onset"] <= df["outtime"])
    early = df["onset"] < df["prediction_time"]          # none left under "exclude"; positives under "positive"
    return df.assign(label=(inside | early).fillna(False).astype("int64"))


def _mortality(steps: _Steps) -> pd.DataFrame:
    steps.drop("no hospital_expire_flag", steps.df["hospital_expire_flag"].isna())
    df = steps.df
    return df.assign(label=df["hospital_expire_flag"].astype("int64"), onset=df["deathtime"])


def build_cohorts(stays: pd.DataFrame, patients: pd.DataFrame, admissions: pd.DataFrame,
                  onsets: pd.DataFrame | None = None, *, tasks=TASKS, prediction_hours: float = 48,
                  min_age: float = 18, first_stay_only: bool = True, onset_before_prediction: str = "exclude",
                  age_at: str = "anchor", quality: QualityLog | None = None) -> Cohorts:
    """Cohort frames and counts for ``tasks`` (criteria and defaults: module docstring)."""
    _check_choice("onset_before_prediction", onset_before_prediction, ONSET_BEFORE_PREDICTION_RULES)
    _check_choice("age_at", age_at, AGE_AT)
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    for t in tasks:
        _check_choice("task", t, TASKS)
    q = quality_or_new(quality)
    base = _common(stays, patients, admissions, prediction_hours, min_age, first_stay_only, age_at)
    frames, counts = {}, []
    for task in tasks:
        steps = base.fork()
        if task in ONSET_TASKS:
            df = _onset_task(steps, onsets, task, prediction_hours, onset_before_prediction)
        else:
            df = _mortality(steps)
        frames[task] = df[FRAME_COLUMNS].sort_values("stay_id").reset_index(drop=True)
        q.seen(DATASET, f"cohort_{task}", len(stays))
        for i, (crit, n, left, ex) in enumerate(steps.rows):
            counts.append(dict(task=task, step=i, criterion=crit, excluded=n, remaining=left))
            if n:
                q.exclude(DATASET, f"cohort_{task}", crit, records=ex[:3], n=n)
    params = dict(tasks=tasks, prediction_hours=prediction_hours, min_age=min_age, first_stay_only=first_stay_only,
                  onset_before_prediction=onset_before_prediction, age_at=age_at)
    cols = ["task", "step", "criterion", "excluded", "remaining"]
    return Cohorts(frames, pd.DataFrame(counts, columns=cols), params)


def task_cohorts(root, *, tasks=TASKS, prediction_hours: float = 48, min_age: float = 18,
                 first_stay_only: bool = True, onset_before_prediction: str = "exclude", age_at: str = "anchor",
                 outside_window: str = "ignore", missing_source: str = "error", chunksize: int | None = None,
                 quality: QualityLog | None = None) -> Cohorts:
    """``build_cohorts`` on the tables of the MIMIC-IV ``root`` (icustays, patients, admissions, onsets).

    With ``missing_source="skip"`` an onset task whose source tables are all absent is left out (warned).
    """
    q = quality_or_new(quality)
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    stays = mimic_icu.read_icustays(root, quality=q)
    tabs = mimic_iv.read_tables(root, tables=("patients", "admissions"), quality=q)
    onset_tasks = [t for t in tasks if t in ONSET_TASKS]
    onsets = None
    if onset_tasks:
        onsets = task_onsets(root, stays, tasks=onset_tasks, outside_window=outside_window,
                             missing_source=missing_source, chunksize=chunksize, quality=q)
        tasks = [t for t in tasks if t not in ONSET_TASKS or f"{t}_onset" in onsets]
    out = build_cohorts(stays, tabs["patients"], tabs["admissions"], onsets, tasks=tasks,
                        prediction_hours=prediction_hours, min_age=min_age, first_stay_only=first_stay_only,
                        onset_before_prediction=onset_before_prediction, age_at=age_at, quality=q)
    out.params.update(outside_window=outside_window, missing_source=missing_source)
    return out
