"""FIDDLE-style temporal tensor of MEDCSP's "clinical temporal readings" modality.

The first ``hours`` hours of an ICU stay (from ``intime``) in bins of ``bin_hours``; per item one value
channel (the mean of the bin's readings, z-scored with TRAINING-split statistics, 0 where unobserved) and one
missingness channel (1 = observed in the bin). Items are chosen on the training split by how many stays
observe them at least once in the window (``min_stay_frac``, at most ``max_items`` of the most frequent): a
reading of a test stay never decides which items exist.

Input is a long event frame ``stay_id, itemid, time, value`` (``stay_events`` builds it from the MIMIC-IV
readers); events before ``intime`` or at/after the window end are outside the tensor and are counted by the
caller. Everything is vectorised (one groupby, one scatter), so the real MIMIC-IV's ~70k stays take seconds,
not a per-stay loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..quality import QualityLog

__all__ = ["TemporalSpec", "SOURCES", "LAB_JOINS", "stay_events", "select_items", "bin_events", "temporal_tensor",
           "fit_stats"]

# table -> (time column, value column): the reading each event contributes to its bin. procedureevents carry
# no reading: an event is an indicator (1.0) at its start.
SOURCES = {"chartevents": ("charttime", "valuenum"), "labevents": ("charttime", "valuenum"),
           "outputevents": ("charttime", "value"), "inputevents": ("starttime", "amount"),
           "procedureevents": ("starttime", None)}


@dataclass(frozen=True)
class TemporalSpec:
    """The window and binning: recorded with every tensor."""
    hours: float = 48.0
    bin_hours: float = 1.0
    min_stay_frac: float = 0.05
    max_items: int | None = None

    @property
    def n_bins(self) -> int:
        return int(np.ceil(self.hours / self.bin_hours))


LAB_JOINS = ("admission", "subject_time")


def stay_events(root, stays: pd.DataFrame, sources=tuple(SOURCES), itemids: dict | None = None,
                quality=None, lab_join: str = "admission") -> pd.DataFrame:
    """The long ``stay_id, itemid, time, value`` frame of ``stays`` from the MIMIC-IV ``sources``.

    ICU tables carry ``stay_id``; their rows whose stay_id is empty or in no icustays row are excluded and
    counted by the reader (``check_stays``). labevents carry only ``hadm_id`` (often empty), so a lab row
    reaches a stay by ``lab_join`` (profile key ``medcsp_lab_join``; ``_labs_to_stays``):

    * ``admission`` (FIDDLE): a lab result joins the stays of its admission whose [intime, outtime] holds its
      time (a result between two stays belongs to neither, counted); a row without hadm_id joins no stay and
      is counted (split by whether its time lies inside an ICU stay of its subject: what ``subject_time``
      would add).
    * ``subject_time``: the same for rows with a hadm_id; a row without one joins the stays of its SUBJECT
      whose [intime, outtime] holds its time (counted, kept); one inside two stays (a transfer at the shared
      boundary, or overlapping stays) joins EACH, as a row with hadm_id joins each stay of its admission that
      holds it (counted apart); one inside no stay is counted.

    ``stays`` needs ``subject_id, hadm_id, stay_id, intime, outtime``. ``itemids``: table -> ids to read (None
    = every item; the item selection happens later on the training split). Item ids of different tables do
    not collide in MIMIC-IV (d_items 2xxxxx, d_labitems 5xxxx)."""
    from ..datasets.mimic_icu import read_events

    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"temporal sources must be among {sorted(SOURCES)}, got {unknown}")
    if lab_join not in LAB_JOINS:
        raise ValueError(f"lab_join (medcsp_lab_join) must be one of {LAB_JOINS}, got {lab_join!r}")
    frames = []
    for table in sources:
        tcol, vcol = SOURCES[table]
        ids = None if itemids is None else itemids.get(table)
        if table == "labevents":
            if "subject_id" not in stays:
                raise ValueError("stays need a subject_id column: lab rows without hadm_id are matched (or "
                                 "counted) by subject")
            ev = read_events(root, table, hadm_ids=stays["hadm_id"].unique(), itemids=ids, quality=quality,
                             unlinked_subject_ids=stays["subject_id"].unique())
            ev = _labs_to_stays(ev, stays, quality, lab_join)
        else:
            ev = read_events(root, table, stay_ids=stays["stay_id"].unique(), itemids=ids, quality=quality,
                             check_stays=True)
        value = ev[vcol].astype(np.float64) if vcol else pd.Series(1.0, index=ev.index)
        frames.append(pd.DataFrame({"stay_id": ev["stay_id"].astype(np.int64), "itemid": ev["itemid"].astype(np.int64),
                                    "time": ev[tcol], "value": value.to_numpy()}))
    cols = {"stay_id": np.int64, "itemid": np.int64, "time": "datetime64[ns]", "value": np.float64}
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(cols))
    return out.astype(cols)


_NO_HADM = "lab row without hadm_id"


def _labs_to_stays(labs: pd.DataFrame, stays: pd.DataFrame, quality=None, join: str = "admission") -> pd.DataFrame:
    """Lab rows with the ``stay_id`` they join (``stay_events``: ``join``); rows joining no stay counted."""
    no_hadm = labs["hadm_id"].isna().to_numpy(dtype=bool)
    linked = labs[~no_hadm]
    m = linked.merge(stays[["hadm_id", "stay_id", "intime", "outtime"]], on="hadm_id", how="inner")
    inside = (m["charttime"] >= m["intime"]) & (m["charttime"] <= m["outtime"])
    if quality is not None:
        n_in = m.loc[inside].groupby(["hadm_id", "itemid", "charttime"]).ngroups if inside.any() else 0
        n_all = linked.groupby(["hadm_id", "itemid", "charttime"]).ngroups if len(linked) else 0
        quality.flag("mimic_iv", "temporal", "lab result outside every ICU stay of its admission (not in a tensor)",
                     n=int(n_all - n_in))
    out = m.loc[inside].drop(columns=["intime", "outtime"])
    orphans = labs[no_hadm]
    if not len(orphans):
        return out
    q = quality if quality is not None else QualityLog()
    w = orphans.reset_index(names="_row").merge(stays[["subject_id", "stay_id", "intime", "outtime"]],
                                                on="subject_id", how="inner")
    w = w[(w["charttime"] >= w["intime"]) & (w["charttime"] <= w["outtime"])]
    per_row = w.groupby("_row").size()                  # orphan row -> how many stays of its subject hold it

    def ex(rows) -> list:
        return [f"labevents subject {s} at {t}" for s, t in zip(orphans.loc[rows, "subject_id"][:3],
                                                                 orphans.loc[rows, "charttime"][:3])]

    outside = orphans.index.difference(per_row.index)
    q.exclude("mimic_iv", "temporal", f"{_NO_HADM}, outside every ICU stay of its subject (not in a tensor)",
              n=len(outside), records=ex(outside))
    if join == "admission":
        q.exclude("mimic_iv", "temporal", f"{_NO_HADM}, inside an ICU stay of its subject (not joined: "
                  "medcsp_lab_join=admission)", n=len(per_row), records=ex(per_row.index))
        return out
    q.flag("mimic_iv", "temporal", f"{_NO_HADM} joined to its subject's ICU stay by charttime "
           "(medcsp_lab_join=subject_time)", n=len(per_row), records=ex(per_row.index))
    multi = per_row.index[per_row.to_numpy() > 1]
    q.flag("mimic_iv", "temporal", f"{_NO_HADM} inside two or more ICU stays of its subject (joined to each)",
           n=len(multi), records=ex(multi))
    w = w.drop(columns=["_row", "intime", "outtime"])[list(out.columns)]
    return pd.concat([out, w], ignore_index=True)


def bin_events(events: pd.DataFrame, stays: pd.DataFrame, spec: TemporalSpec) -> pd.DataFrame:
    """``stay_id, itemid, bin, value`` for the events inside each stay's window [intime, intime + hours)."""
    e = events.merge(stays[["stay_id", "intime"]], on="stay_id", how="inner")
    t = (e["time"] - e["intime"]).dt.total_seconds().to_numpy() / 3600.0
    keep = (t >= 0) & (t < spec.hours) & np.isfinite(e["value"].to_numpy(np.float64))
    e = e.loc[keep, ["stay_id", "itemid", "value"]].copy()
    e["bin"] = np.floor(t[keep] / spec.bin_hours).astype(np.int64)
    return e


def select_items(binned: pd.DataFrame, train_stay_ids, spec: TemporalSpec) -> list[int]:
    """Items observed in >= ``min_stay_frac`` of the TRAINING stays' windows (most frequent first, capped at
    ``max_items``), returned in ascending item id order."""
    train = set(train_stay_ids)
    if not train:
        return []
    tr = binned[binned["stay_id"].isin(train)]
    frac = tr.groupby("itemid")["stay_id"].nunique().sort_values(ascending=False, kind="stable") / len(train)
    frac = frac[frac >= spec.min_stay_frac]
    if spec.max_items is not None:
        frac = frac.iloc[: spec.max_items]
    return sorted(int(i) for i in frac.index)


def _bin_means(binned: pd.DataFrame, stay_ids, items) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    row = pd.Index(stay_ids)
    col = pd.Index(items)
    g = binned[binned["itemid"].isin(col) & binned["stay_id"].isin(row)]
    m = g.groupby(["stay_id", "bin", "itemid"], sort=False)["value"].mean().reset_index()
    return (row.get_indexer(m["stay_id"]), m["bin"].to_numpy(), col.get_indexer(m["itemid"]),
            m["value"].to_numpy(np.float64))


def fit_stats(binned: pd.DataFrame, train_stay_ids, items) -> dict:
    """Per-item mean and SD of the TRAINING stays' bin means (SD 1 where an item never varies)."""
    _, _, j, v = _bin_means(binned, list(train_stay_ids), items)
    n = np.bincount(j, minlength=len(items)).astype(np.float64)
    s1 = np.bincount(j, weights=v, minlength=len(items))
    s2 = np.bincount(j, weights=v * v, minlength=len(items))
    mean = np.divide(s1, n, out=np.zeros(len(items)), where=n > 0)
    var = np.divide(s2, n, out=np.zeros(len(items)), where=n > 0) - mean ** 2
    sd = np.sqrt(np.clip(var, 0, None))
    return {"items": [int(i) for i in items], "mean": mean.tolist(), "sd": np.where(sd > 1e-8, sd, 1.0).tolist()}


def temporal_tensor(binned: pd.DataFrame, stay_ids, stats: dict, spec: TemporalSpec
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(values float32 [n_stays, n_bins, n_items] z-scored, 0 where unobserved; mask uint8 same shape)."""
    items = stats["items"]
    i, b, j, v = _bin_means(binned, list(stay_ids), items)
    shape = (len(stay_ids), spec.n_bins, len(items))
    values = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.uint8)
    z = (v - np.asarray(stats["mean"])[j]) / np.asarray(stats["sd"])[j]
    values[i, b, j] = z
    mask[i, b, j] = 1
    return values, mask
