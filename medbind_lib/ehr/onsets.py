"""FIDDLE onsets per ICU stay: first ARF event (PEEP charted or ventilation started) and first shock event
(vasopressor started), the ids of ``ehr.items.TASK_EVENTS``.

* Event time per source table (``EVENT_TIME``): chartevents ``charttime``; procedureevents and inputevents
  ``starttime``. Every row of a task item counts (any PEEP value, any vasopressor amount); rows with
  endtime < starttime were already excluded (counted) by ``read_events``.
* Onset of a task = the earliest event over its sources (groupby-min, no per-row loop); ``<task>_source``
  names the table it came from (ties: the first table in alphabetical order).
* Events outside the stay window [intime, outtime] follow a named rule, ``outside_window``
  (``OUTSIDE_WINDOW_RULES``), every dropped event counted in the QualityLog (stage ``onset_<task>``):
  - ``"ignore"`` (default): events before intime and after outtime are ignored. Why: an event charted
    before the ICU stay (OR, ED) is not an ICU-stay event. Caveat: a ventilation started in the OR
    before intime no longer makes the stay "ARF before T"; its next event (or none) decides.
  - ``"keep_before_intime"``: events before intime are kept (onset < intime, hence before the prediction
    time: the stay leaves the ARF/shock cohort, as FIDDLE's negative onset hours do); after outtime ignored.
  Events without a stay_id or time, or whose stay is not in ``stays``, are counted and ignored.
* Missing source tables (the MIMIC-IV demo has no chartevents / inputevents): ``missing_source="error"``
  (default) raises the reader's DataError; ``"skip"`` warns, flags the table in the QualityLog and builds
  the onsets from the sources present (a task with no source left is left out of the result).
"""
from __future__ import annotations

import warnings
from typing import Iterable, Mapping

import pandas as pd

from ..datasets import mimic_icu
from ..errors import DataError
from .items import TASK_EVENTS
from ..quality import QualityLog, quality_or_new

DATASET = "mimic_iv"
ONSET_TASKS = tuple(TASK_EVENTS)                       # ("arf", "shock")
EVENT_TIME = {"chartevents": "charttime", "procedureevents": "starttime", "inputevents": "starttime"}
OUTSIDE_WINDOW_RULES = {
    "ignore": "events before intime or after outtime ignored (counted)",
    "keep_before_intime": "events before intime kept (onset before the prediction time); after outtime ignored",
}
MISSING_SOURCE_RULES = ("error", "skip")
STAY_COLS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime"]


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {list(allowed)}")


def _task_list(tasks) -> list:
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    for t in tasks:
        _check_choice("task", t, ONSET_TASKS)
    return tasks


def first_event_times(events: pd.DataFrame, stays: pd.DataFrame, time_col: str, *, outside_window: str = "ignore",
                      quality: QualityLog | None = None, stage: str = "onset", source: str = "events") -> pd.Series:
    """Earliest ``time_col`` per stay_id among ``events`` inside the window rule (a Series, NaT-free)."""
    _check_choice("outside_window", outside_window, OUTSIDE_WINDOW_RULES)
    q = quality_or_new(quality)
    ev = events[["stay_id", time_col]].rename(columns={time_col: "time"})
    ev = ev.merge(stays[["stay_id", "intime", "outtime"]], on="stay_id", how="left")
    no_id, no_time = ev["stay_id"].isna(), ev["time"].isna()
    no_stay = ev["intime"].isna() & ~no_id
    before = (ev["time"] < ev["intime"]).fillna(False)
    after = (ev["time"] > ev["outtime"]).fillna(False)
    drop = no_id | no_time | no_stay | after
    _count(q, stage, f"{source}: event without stay_id (ignored)", ev, no_id)
    _count(q, stage, f"{source}: event without {time_col} (ignored)", ev, no_time & ~no_id)
    _count(q, stage, f"{source}: event stay_id not among the stays (ignored)", ev, no_stay & ~no_time)
    _count(q, stage, f"{source}: event after outtime (ignored)", ev, after)
    if outside_window == "ignore":
        _count(q, stage, f"{source}: event before intime (ignored)", ev, before)
        drop = drop | before
    ev = ev[~drop.to_numpy(dtype=bool)]
    return ev.groupby("stay_id")["time"].min().rename(time_col)


def _count(q: QualityLog, stage: str, reason: str, ev: pd.DataFrame, mask) -> None:
    mask = pd.Series(mask, index=ev.index).fillna(False).to_numpy(dtype=bool)
    if mask.any():
        q.exclude(DATASET, stage, reason, n=int(mask.sum()), records=ev.loc[mask, "stay_id"].astype(str).head(3))


def onsets_from_events(stays: pd.DataFrame, events: Mapping[str, pd.DataFrame], *, tasks=ONSET_TASKS,
                       outside_window: str = "ignore", quality: QualityLog | None = None) -> pd.DataFrame:
    """One row per stay: ``<task>_onset`` (NaT: no event) and ``<task>_source`` for each task.

    ``events`` maps a source table name (chartevents, procedureevents, inputevents) to its rows (stay_id,
    itemid and the table's ``EVENT_TIME`` column); only the task's item ids are used. Sources absent from
    ``events`` are not used; a task with none of its sources is a ValueError.
    """
    q = quality_or_new(quality)
    out = stays[[c for c in STAY_COLS if c in stays.columns]].copy()
    for task in _task_list(tasks):
        stage, firsts = f"onset_{task}", []
        sources = [t for t in TASK_EVENTS[task] if t in events]
        if not sources:
            raise ValueError(f"task {task!r} needs events from {sorted(TASK_EVENTS[task])}; none given")
        for table in sources:
            ev = events[table]
            ev = ev[ev["itemid"].isin(TASK_EVENTS[task][table]).fillna(False).to_numpy(dtype=bool)]
            q.seen(DATASET, stage, len(ev))
            t = first_event_times(ev, stays, EVENT_TIME[table], outside_window=outside_window, quality=q,
                                  stage=stage, source=table)
            firsts.append(pd.DataFrame({"stay_id": t.index, "time": t.to_numpy(), "source": table}))
        first = (pd.concat(firsts).sort_values(["time", "source"], kind="stable")
                 .drop_duplicates("stay_id").set_index("stay_id"))
        out[f"{task}_onset"] = out["stay_id"].map(first["time"]).astype("datetime64[ns]")
        out[f"{task}_source"] = out["stay_id"].map(first["source"]).astype(object)
    return out.reset_index(drop=True)


def read_onset_events(root, *, tasks=ONSET_TASKS, stay_ids: Iterable | None = None, missing_source: str = "error",
                      chunksize: int | None = None, quality: QualityLog | None = None) -> dict:
    """{source table: rows of the tasks' item ids} read with ``mimic_icu.read_events`` (stay_id, itemid, time)."""
    _check_choice("missing_source", missing_source, MISSING_SOURCE_RULES)
    q = quality_or_new(quality)
    wanted: dict = {}
    for task in _task_list(tasks):
        for table, ids in TASK_EVENTS[task].items():
            wanted.setdefault(table, set()).update(ids)
    out = {}
    for table, ids in wanted.items():
        try:
            mimic_icu.table_path(root, table)
        except DataError as e:
            if missing_source == "error":
                raise
            warnings.warn(f"onsets built without {table}: {e}")
            q.flag(DATASET, "onsets", "source table missing (onsets from the other sources only)", records=[table])
            continue
        out[table] = mimic_icu.read_events(root, table, itemids=sorted(ids), stay_ids=stay_ids,
                                           columns=["stay_id", "itemid", EVENT_TIME[table]], chunksize=chunksize,
                                           quality=q)
    return out


def task_onsets(root, stays: pd.DataFrame | None = None, *, tasks=ONSET_TASKS, outside_window: str = "ignore",
                missing_source: str = "error", chunksize: int | None = None,
                quality: QualityLog | None = None) -> pd.DataFrame:
    """Onsets of ``tasks`` for ``stays`` (default: every stay of ``read_icustays``), read from ``root``."""
    _check_choice("outside_window", outside_window, OUTSIDE_WINDOW_RULES)
    q = quality_or_new(quality)
    if stays is None:
        stays = mimic_icu.read_icustays(root, quality=q)
    events = read_onset_events(root, tasks=tasks, stay_ids=stays["stay_id"].dropna(), missing_source=missing_source,
                               chunksize=chunksize, quality=q)
    kept = [t for t in _task_list(tasks) if any(s in events for s in TASK_EVENTS[t])]
    for t in sorted(set(_task_list(tasks)) - set(kept)):
        warnings.warn(f"task {t!r} left out of the onsets: none of {sorted(TASK_EVENTS[t])} was found")
    tasks = kept
    if not tasks:
        raise DataError(root, "no source table of the requested tasks was found (see the warnings)")
    return onsets_from_events(stays, events, tasks=tasks, outside_window=outside_window, quality=q)
