"""MEDCSP pre-training data: records of a split, the cross-source batch sampler, items and the collate.

Records (:class:`RecordSet`)
----------------------------
One row per pre-training record of ONE split: the EHR records (one per admission) first, then the CXR records
(one per study), each in notebook 08's order.  ``time_days`` is float days since ``TIME_ORIGIN``
(2100-01-01, inside MIMIC's shifted years, so float64 keeps sub-second resolution); L_P's theta window compares
these.  The presence mask [N, 7] (columns ``MEDCSP_MODALITIES``) is the ``has_*`` flag AND what is really
there: a study whose image is not in the CXR cache has no image, an admission without ICU stay rows has no
temporal input, an all-zero ICD / drug row or an empty note is absent.  A flag that lost its input is counted in
``unavailable``; a record left with no modality is dropped and counted in ``dropped`` (never silently: the
record embedding of Eq. 2 is undefined for it).  ``history_row`` is the row of the record's PATIENT in the
diagnosis-history matrix (-1 = none: an all-zero history, L_D skips it).

Batches (:class:`CrossSourceBatchSampler`)
------------------------------------------
L_P only has anchors when a batch holds an EHR and a CXR record of the same patient within theta days; with
random batches over ~600k records that is rare.  The sampler therefore places a FIXED number
``k = round(pair_rate * batch_size / 2)`` of such pairs in every global batch (from a shuffled stream of all
positive pairs, :func:`cross_source_pairs`, reshuffled when exhausted) and fills the other slots from a
shuffled stream over ALL records, so L_A still sees every record every epoch.  A record never appears twice
in a batch (a colliding pair or record is skipped and the next one taken).  ``pair_rate`` None / 0 = plain
shuffled records (the natural rate).  Like :class:`medbind_lib.medbind.data.PairBatchSampler`: batches are a pure
function of (seed, epoch), every item carries its own augmentation seed, rank r takes ``r::world`` of each
global batch, ``set_epoch(epoch, start)`` / ``state_dict`` resume exactly.

Items and collate (:class:`MEDCSPDataset`, :class:`MEDCSPCollator`) -> the batch the model and
:class:`medbind_lib.losses.medcsp.MEDCSPLoss` read: ``mask`` [N, 7] bool, ``sources`` / ``patients`` [N] long,
``times`` [N] float64 days, ``histories`` [N, V] float32, per modality the PRESENT rows in record order
(``icd`` / ``drug`` / ``demo`` [n_m, dim], ``temporal`` [n_t, S, T, 2F] + ``temporal_stays`` [n_t, S],
``image`` [n_i, 3, H, W]; [0, ...] when none), ``text_tokens`` (the batch's distinct note and report texts
tokenized once, or None) with ``note_index`` / ``report_index`` rows into it, ``texts`` (those distinct
texts), ``record_rows`` [N] and ``n_records``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch.utils.data import Dataset, Sampler

from ..loading import tokenize_once
from ..losses.medcsp import SOURCE_CXR, SOURCE_EHR
from ..models.medcsp import MEDCSP_MODALITIES   # the model owns the mask's column order; batches follow it
from ..preprocess import cxr as pcxr

__all__ = ["MEDCSP_MODALITIES", "TIME_ORIGIN", "SOURCES", "RecordSet", "cross_source_pairs",
           "count_positive_pairs", "CrossSourceBatchSampler", "MEDCSPDataset", "MEDCSPCollator", "load_records",
           "holdout_records"]

TIME_ORIGIN = pd.Timestamp("2100-01-01")
SOURCES = {"ehr": SOURCE_EHR, "cxr": SOURCE_CXR}
_COL = {m: j for j, m in enumerate(MEDCSP_MODALITIES)}


def _days(times, origin) -> np.ndarray:
    """Float64 days since ``origin`` (NaT -> NaN: such a record never forms an L_P positive)."""
    t = pd.to_datetime(pd.Series(times).reset_index(drop=True))
    return ((t - pd.Timestamp(origin)) / pd.Timedelta(days=1)).to_numpy(np.float64, na_value=np.nan)


def texts_or_none(s: pd.Series) -> pd.Series:
    """Object series of str or None (empty / whitespace-only text counts as missing)."""
    s = s.astype("string")
    ok = s.notna() & (s.str.strip().str.len() > 0)
    return s.astype(object).where(ok.fillna(False).to_numpy(), None)


def _flag(frame: pd.DataFrame, col: str) -> np.ndarray:
    return frame[col].fillna(False).to_numpy(bool) if col in frame else np.zeros(len(frame), bool)


# ----------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------
@dataclass
class RecordSet:
    """The records of one split (module docstring).  ``records`` columns: record_id, source (0 EHR / 1 CXR),
    subject_id, time_days, ehr_row (row of icd/drug/demographics, -1), stay_rows (tuple of temporal rows,
    <= max_stays), note_text, image_index (CXR cache index, -1), report_text; ``mask`` [N, 7] bool;
    ``history_row`` [N] int64; ``dropped`` / ``unavailable``: reason -> count."""

    split: str
    sources: tuple
    records: pd.DataFrame
    mask: np.ndarray
    history_row: np.ndarray
    max_stays: int
    origin: pd.Timestamp = TIME_ORIGIN
    dropped: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def source(self) -> np.ndarray:
        return self.records["source"].to_numpy(np.int64)

    @property
    def patient(self) -> np.ndarray:
        return self.records["subject_id"].to_numpy(np.int64)

    @property
    def time_days(self) -> np.ndarray:
        return self.records["time_days"].to_numpy(np.float64)

    @classmethod
    def build(cls, data: dict, split: str, cxr_cached, *, max_stays: int, record_time_days_origin=None,
              sources: Sequence[str] = ("ehr", "cxr")) -> "RecordSet":
        """Records of ``split`` from ``features.load`` output ``data`` and the MIMIC-CXR cache (``.manifest``
        with record_id/index; None = no images).  ``sources=("cxr",)``: the single-source variant's records."""
        sources = tuple(sources)
        if not sources or set(sources) - set(SOURCES):
            raise ValueError(f"sources must be a non-empty subset of {tuple(SOURCES)}, got {sources}")
        ehr = data["ehr_records"]
        ehr = ehr.assign(ehr_row=np.arange(len(ehr), dtype=np.int64))     # rows of icd/drug/demographics
        ehr = ehr[ehr["split"].astype(str).eq(split)] if "ehr" in sources else ehr.iloc[:0]
        cxr = data["cxr_records"]
        cxr = cxr[cxr["split"].astype(str).eq(split)] if "cxr" in sources else cxr.iloc[:0]
        return _build(data, ehr, cxr, cxr_cached, split=split, sources=sources, max_stays=max_stays,
                      origin=record_time_days_origin)

    def summary(self) -> dict:
        """Counts per source, per modality (present), patients, patients with records in both sources."""
        src, pat = self.source, self.patient
        e, c = set(pat[src == SOURCE_EHR].tolist()), set(pat[src == SOURCE_CXR].tolist())
        return {"split": self.split, "records": len(self), "ehr": int((src == SOURCE_EHR).sum()),
                "cxr": int((src == SOURCE_CXR).sum()),
                **{f"n_{m}": int(self.mask[:, j].sum()) for j, m in enumerate(MEDCSP_MODALITIES)},
                "patients": len(e | c), "patients_both": len(e & c),
                "no_history": int((self.history_row < 0).sum()),
                "no_time": int(np.isnan(self.time_days).sum()),
                "dropped": dict(self.dropped), "unavailable": dict(self.unavailable)}


def stays_of_admissions(stays: pd.DataFrame, max_stays: int) -> pd.Series:
    """hadm_id -> tuple of temporal rows of its first ``max_stays`` stays (by intime, then stay_id)."""
    if stays is None or not len(stays):
        return pd.Series(dtype=object)
    s = stays.sort_values(["hadm_id", "intime", "stay_id"], kind="stable")
    s = s.groupby("hadm_id", sort=False).head(int(max_stays))
    return s.groupby("hadm_id", sort=False)["row"].agg(lambda r: tuple(int(v) for v in r))


def _cache_index(cxr_cached, image_ids: pd.Series) -> np.ndarray:
    if cxr_cached is None or not len(image_ids):
        return np.full(len(image_ids), -1, np.int64)
    m = cxr_cached.manifest
    idx = pd.Series(m["index"].astype(np.int64).to_numpy(), index=m["record_id"].astype(str).to_numpy())
    idx = idx[~idx.index.duplicated()]
    return image_ids.astype(str).map(idx).fillna(-1).to_numpy(np.int64)


def _build(data: dict, ehr: pd.DataFrame, cxr: pd.DataFrame, cxr_cached, *, split: str, sources: tuple,
           max_stays: int, origin=None, require: Sequence[str] = (), require_reason: str = "") -> RecordSet:
    origin = TIME_ORIGIN if origin is None else pd.Timestamp(origin)
    max_stays = int(max_stays)
    if max_stays < 1:
        raise ValueError(f"max_stays must be >= 1, got {max_stays}")
    M = len(MEDCSP_MODALITIES)
    unavailable: dict = {}

    def lost(name: str, flagged: np.ndarray, present: np.ndarray) -> None:
        n = int((flagged & ~present).sum())
        if n:
            unavailable[name] = unavailable.get(name, 0) + n

    # EHR
    ne = len(ehr)
    erow = ehr["ehr_row"].to_numpy(np.int64)
    stays = stays_of_admissions(data.get("stays"), max_stays)
    stay_rows = [stays.get(h, ()) for h in ehr["hadm_id"].astype(np.int64).tolist()] if ne else []
    notes = data.get("notes")
    note_map = (notes.drop_duplicates("hadm_id").set_index("hadm_id")["text"] if notes is not None and len(notes)
                else pd.Series(dtype=object))
    note_text = texts_or_none(ehr["hadm_id"].map(note_map)) if ne else pd.Series([], dtype=object)
    m_e = np.zeros((ne, M), bool)
    for name in ("icd", "drug"):
        mat = data.get(name)
        nnz = np.diff(sparse.csr_matrix(mat).indptr) > 0 if mat is not None else np.zeros(0, bool)
        present = nnz[erow] if ne else np.zeros(0, bool)
        m_e[:, _COL[name]] = _flag(ehr, f"has_{name}") & present
        lost(f"{name}: flagged but an all-zero row", _flag(ehr, f"has_{name}"), present)
    demo_ok = erow < len(data["demographics"]) if data.get("demographics") is not None else np.zeros(ne, bool)
    m_e[:, _COL["demo"]] = (_flag(ehr, "has_demo") if "has_demo" in ehr else np.ones(ne, bool)) & demo_ok
    has_stays = np.array([len(r) > 0 for r in stay_rows], bool)
    m_e[:, _COL["temporal"]] = _flag(ehr, "has_temporal") & has_stays
    lost("temporal: flagged but no ICU stay rows", _flag(ehr, "has_temporal"), has_stays)
    has_note = note_text.notna().to_numpy(bool)
    m_e[:, _COL["note"]] = _flag(ehr, "has_note") & has_note
    lost("note: flagged but no text", _flag(ehr, "has_note"), has_note)

    # CXR
    nc = len(cxr)
    img = _cache_index(cxr_cached, cxr["image_record_id"]) if nc else np.zeros(0, np.int64)
    report = texts_or_none(cxr["text"]) if nc else pd.Series([], dtype=object)
    m_c = np.zeros((nc, M), bool)
    m_c[:, _COL["image"]] = _flag(cxr, "has_image") & (img >= 0)
    lost("image: not in the CXR cache", _flag(cxr, "has_image"), img >= 0)
    m_c[:, _COL["report"]] = _flag(cxr, "has_report") & report.notna().to_numpy(bool)
    lost("report: flagged but no text", _flag(cxr, "has_report"), report.notna().to_numpy(bool))

    frame = pd.DataFrame({
        "record_id": np.r_[ehr["record_id"].astype(str).to_numpy(object),
                           cxr["record_id"].astype(str).to_numpy(object)],
        "source": np.r_[np.full(ne, SOURCE_EHR), np.full(nc, SOURCE_CXR)].astype(np.int64),
        "subject_id": np.r_[ehr["subject_id"].astype(np.int64).to_numpy(),
                            cxr["subject_id"].astype(np.int64).to_numpy()],
        "time_days": np.r_[_days(ehr["time"], origin), _days(cxr["time"], origin)],
        "ehr_row": np.r_[erow, np.full(nc, -1, np.int64)],
        "stay_rows": pd.Series(list(stay_rows) + [()] * nc, dtype=object).to_numpy(),
        "note_text": np.r_[note_text.to_numpy(object), np.full(nc, None, object)],
        "image_index": np.r_[np.full(ne, -1, np.int64), img],
        "report_text": np.r_[np.full(ne, None, object), report.to_numpy(object)],
    })
    mask = np.concatenate([m_e, m_c], 0)

    # records without any modality cannot be embedded (Eq. 2): drop them, counted per reason
    keep = mask.any(1)
    src = frame["source"].to_numpy()
    dropped = {"EHR admission with no available modality": int((~keep & (src == SOURCE_EHR)).sum()),
               "CXR study with neither a cached image nor a report": int((~keep & (src == SOURCE_CXR)).sum())}
    if require:
        ok = mask[:, [_COL[m] for m in require]].all(1)
        dropped[require_reason or f"missing one of {tuple(require)}"] = int((keep & ~ok).sum())
        keep &= ok
    frame, mask = frame[keep].reset_index(drop=True), mask[keep]

    hs = data.get("history_subjects")
    hs = hs["subject_id"] if isinstance(hs, pd.DataFrame) else pd.Series(hs if hs is not None else [])
    hpos = pd.Series(np.arange(len(hs), dtype=np.int64), index=hs.astype(np.int64).to_numpy())
    hist = frame["subject_id"].map(hpos[~hpos.index.duplicated()]).fillna(-1).to_numpy(np.int64)
    return RecordSet(split=split, sources=sources, records=frame, mask=mask, history_row=hist,
                     max_stays=max_stays, origin=origin, dropped=dropped, unavailable=unavailable)


# ----------------------------------------------------------------------------------------------------
# cross-source pairs
# ----------------------------------------------------------------------------------------------------
def _frame(records) -> pd.DataFrame:
    return records.records if isinstance(records, RecordSet) else records


def cross_source_pairs(records, theta_days: float) -> np.ndarray:
    """int64 [P, 2] of (EHR row, CXR row) of the same patient with |t_ehr - t_cxr| <= theta (L_P's positives),
    sorted.  One merge on subject_id: the work grows with records per patient, not with N^2."""
    if theta_days < 0:
        raise ValueError(f"theta_days must be >= 0, got {theta_days}")
    f = _frame(records)
    base = pd.DataFrame({"row": np.arange(len(f), dtype=np.int64), "subject_id": f["subject_id"].to_numpy(np.int64),
                         "t": f["time_days"].to_numpy(np.float64)})
    src = f["source"].to_numpy()
    m = base[src == SOURCE_EHR].merge(base[src == SOURCE_CXR], on="subject_id", suffixes=("_e", "_c"))
    m = m[(m["t_e"] - m["t_c"]).abs().to_numpy() <= theta_days]
    out = m[["row_e", "row_c"]].to_numpy(np.int64).reshape(-1, 2)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def count_positive_pairs(records, rows, theta_days: float) -> int:
    """How many L_P positive pairs (same patient, different source, |dt| <= theta) the records ``rows`` hold
    (each unordered pair once)."""
    f = _frame(records)
    rows = np.asarray(rows, np.int64).reshape(-1)
    src = f["source"].to_numpy()[rows]
    pat = f["subject_id"].to_numpy(np.int64)[rows]
    t = f["time_days"].to_numpy(np.float64)[rows]
    e, c = src == SOURCE_EHR, src == SOURCE_CXR
    same = pat[e][:, None] == pat[c][None, :]
    return int((same & (np.abs(t[e][:, None] - t[c][None, :]) <= theta_days)).sum())


# ----------------------------------------------------------------------------------------------------
# sampler
# ----------------------------------------------------------------------------------------------------
class _Stream:
    """A seeded permutation of ``n`` ids, reshuffled when exhausted."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = int(n), rng
        self.perm, self.pos = rng.permutation(self.n), 0

    def next(self) -> int:
        if self.pos >= self.n:
            self.perm, self.pos = self.rng.permutation(self.n), 0
        self.pos += 1
        return int(self.perm[self.pos - 1])


class CrossSourceBatchSampler(Sampler):
    """Seeded, DDP-sharded batches with a fixed number of cross-source pairs (module docstring).

    Yields lists of ``(record row, augmentation seed)`` for this rank.  ``expected_pairs_per_batch`` = k =
    ``round(pair_rate * batch_size / 2)`` forced pairs (0 without pairing or without pairs); a batch holds at
    least that many L_P positive pairs unless the pool lacks disjoint ones (``forced_pairs(epoch)`` tells),
    plus chance ones (about ``natural_pairs_per_batch``).  ``batches_per_epoch = n // batch_size`` (>= 1).
    """

    def __init__(self, records: RecordSet, batch_size: int, pair_rate: Optional[float] = None,
                 theta_days: float = 30.0, seed: int = 0, rank: int = 0, world: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"bad rank {rank} / world {world}")
        if batch_size < world:
            raise ValueError(f"global batch_size {batch_size} < world size {world}")
        if pair_rate is not None and not 0.0 <= float(pair_rate) <= 1.0:
            raise ValueError(f"pair_rate must be None or in [0, 1], got {pair_rate}")
        self.records = records
        self.n = len(records)
        if self.n == 0:
            raise ValueError("no records to batch")
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world = int(rank), int(world)
        self.theta_days = float(theta_days)
        self.pair_rate = None if pair_rate is None else float(pair_rate)
        self.pairs = cross_source_pairs(records, self.theta_days)
        k = 0 if not self.pair_rate or not len(self.pairs) else int(round(self.pair_rate * self.batch_size / 2))
        self.k = min(k, min(self.batch_size, self.n) // 2)
        self.batches_per_epoch = max(1, self.n // self.batch_size)
        self.epoch, self.start = 0, 0
        self._plan_cache: tuple | None = None

    @property
    def expected_pairs_per_batch(self) -> int:
        """Forced cross-source pairs per global batch: round(pair_rate * batch_size / 2), 0 = natural rate."""
        return self.k

    @property
    def natural_pairs_per_batch(self) -> float:
        """Expected L_P positive pairs in a uniformly random batch: P * B(B-1) / (n(n-1))."""
        b = min(self.batch_size, self.n)
        return float(len(self.pairs) * b * (b - 1) / max(self.n * (self.n - 1), 1))

    # -------- state (resume)
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on (batches before it were consumed)."""
        self.epoch, self.start = int(epoch), int(start)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed, "batch_size": self.batch_size,
                "pair_rate": self.pair_rate, "theta_days": self.theta_days, "n": self.n,
                "n_pairs": int(len(self.pairs))}

    def load_state_dict(self, state: dict) -> None:
        cur = self.state_dict()
        for k in ("seed", "batch_size", "n", "pair_rate", "theta_days", "n_pairs"):
            if k in state and state[k] != cur[k]:
                raise ValueError(f"sampler state does not match this sampler: {k} {state[k]} != {cur[k]} "
                                 f"(a resumed run must use the same records, batch size and pairing)")
        self.set_epoch(state["epoch"], state["start"])

    # -------- batches
    def _plan(self, epoch: int) -> tuple[list, list]:
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1], self._plan_cache[2]
        rng = np.random.default_rng([self.seed, int(epoch), 0xC5B5])
        rec = _Stream(self.n, rng)
        pst = _Stream(len(self.pairs), rng) if self.k else None
        target = min(self.batch_size, self.n)
        batches, forced = [], []
        for _ in range(self.batches_per_epoch):
            items, seen, m, looked = [], set(), 0, 0
            while m < self.k and looked < len(self.pairs):   # at most one pass over the pairs per batch
                e, c = (int(v) for v in self.pairs[pst.next()])
                looked += 1
                if e in seen or c in seen:
                    continue
                seen.update((e, c))
                items += [e, c]
                m += 1
            draws = 0
            while len(items) < target:                    # 2n draws hold a whole permutation: always fills
                r = rec.next()
                draws += 1
                if r not in seen:
                    seen.add(r)
                    items.append(r)
                elif draws > 2 * self.n + target:
                    raise RuntimeError("could not fill a batch with distinct records (bug)")
            items = [items[j] for j in rng.permutation(len(items))]
            seeds = rng.integers(0, 2**62, size=len(items))
            batches.append(list(zip(items, seeds.tolist())))
            forced.append(m)
        self._plan_cache = (epoch, batches, forced)
        return batches, forced

    def global_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Every global batch of ``epoch`` (all ranks), each a list of (record row, aug seed)."""
        return self._plan(int(epoch))[0]

    def forced_pairs(self, epoch: int) -> list[int]:
        """Pairs the sampler placed in each global batch of ``epoch`` (k unless the pool ran short)."""
        return list(self._plan(int(epoch))[1])

    def positives_per_batch(self, batch_rows) -> int:
        """L_P positive pairs in a batch (record rows, or (row, seed) items) - for logging."""
        rows = [r[0] if isinstance(r, (tuple, list)) else r for r in batch_rows]
        return count_positive_pairs(self.records, rows, self.theta_days)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in self.global_batches(self.epoch)[self.start:]:
            yield b[self.rank::self.world]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


# ----------------------------------------------------------------------------------------------------
# items
# ----------------------------------------------------------------------------------------------------
def _csr(m, n_cols: int = 0):
    return sparse.csr_matrix(m) if m is not None else sparse.csr_matrix((0, n_cols), dtype=np.float32)


def _dense_row(m, r: int) -> torch.Tensor:
    out = np.zeros(m.shape[1], np.float32)
    if r >= 0:
        s, e = m.indptr[r], m.indptr[r + 1]
        out[m.indices[s:e]] = m.data[s:e]
    return torch.from_numpy(out)


class MEDCSPDataset(Dataset):
    """Items of a :class:`RecordSet`.  Index with ``i`` or ``(i, aug_seed)``: the seed drives the image's
    MedCLIP-style augmentation through a private ``torch.Generator`` (so it depends only on (row, seed));
    ``train=False`` (or no seed) gives the deterministic evaluation view.  Only present inputs are in an item.

    Temporal: notebook 08's values are already z-scored with training statistics and 0 where unobserved
    (``ehr.temporal.temporal_tensor``), so they are used as they are: [S, T, 2F] = values then the
    missingness channel (1 = observed), S = ``max_stays``, absent stays zero with ``temporal_stays`` False.
    """

    def __init__(self, records: RecordSet, data: dict, cxr_array, cfg, train: bool = True):
        self.r = records
        self.train = bool(train)
        self.cxr_array = cxr_array
        self.icd, self.drug = _csr(data.get("icd")), _csr(data.get("drug"))
        self.hist = _csr(data.get("histories"), self.icd.shape[1])
        self.demo = np.asarray(data["demographics"] if data.get("demographics") is not None
                               else np.zeros((0, 0), np.float32))
        self.tv, self.tm = data.get("temporal_values"), data.get("temporal_mask")
        t_shape = tuple(self.tv.shape[1:]) if self.tv is not None else (0, 0)
        self.S = int(records.max_stays)
        self.train_tf = pcxr.train_transform(cfg["cxr_size"], cfg["cxr_cache_size"])
        self.eval_tf = pcxr.eval_transform(cfg["cxr_size"])
        size = int(cfg["cxr_size"])
        self.dims = {"icd": self.icd.shape[1], "drug": self.drug.shape[1],
                     "demo": self.demo.shape[1] if self.demo.ndim == 2 else 0,
                     "temporal": (self.S, t_shape[0], 2 * t_shape[1]), "image": (3, size, size),
                     "history": self.hist.shape[1]}
        f = records.records
        self._src, self._pat = records.source, records.patient
        self._time, self._erow = records.time_days, f["ehr_row"].to_numpy(np.int64)
        self._stays, self._note = f["stay_rows"].tolist(), f["note_text"].tolist()
        self._img, self._report = f["image_index"].to_numpy(np.int64), f["report_text"].tolist()

    def __len__(self) -> int:
        return len(self.r)

    def _temporal(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        S, T, C = self.dims["temporal"]
        F = C // 2
        x = np.zeros((S, T, C), np.float32)
        on = np.zeros(S, bool)
        for j, r in enumerate(rows[:S]):
            x[j, :, :F] = self.tv[r]
            x[j, :, F:] = self.tm[r]
            on[j] = True
        return torch.from_numpy(x), torch.from_numpy(on)

    def __getitem__(self, key):
        i, seed = (key if isinstance(key, tuple) else (key, None))
        i = int(i)
        mask = self.r.mask[i]
        item = {"row": i, "mask": torch.from_numpy(mask.copy()), "source": int(self._src[i]),
                "patient": int(self._pat[i]), "time_days": float(self._time[i]),
                "history": _dense_row(self.hist, int(self.r.history_row[i]))}
        er = int(self._erow[i])
        if mask[_COL["icd"]]:
            item["icd"] = _dense_row(self.icd, er)
        if mask[_COL["drug"]]:
            item["drug"] = _dense_row(self.drug, er)
        if mask[_COL["demo"]]:
            item["demo"] = torch.from_numpy(np.asarray(self.demo[er], np.float32).copy())
        if mask[_COL["temporal"]]:
            item["temporal"], item["temporal_stays"] = self._temporal(self._stays[i])
        if mask[_COL["note"]]:
            item["note"] = str(self._note[i])
        if mask[_COL["image"]]:
            img = np.asarray(self.cxr_array[self._img[i]])
            aug = self.train and seed is not None
            item["image"] = (self.train_tf(img, generator=torch.Generator().manual_seed(int(seed))) if aug
                             else self.eval_tf(img))
        if mask[_COL["report"]]:
            item["report"] = str(self._report[i])
        return item


# ----------------------------------------------------------------------------------------------------
# collate
# ----------------------------------------------------------------------------------------------------
class MEDCSPCollator:
    """List of :class:`MEDCSPDataset` items -> one batch dict (module docstring).  ``tokenize`` is any callable
    ``list[str] -> {"input_ids", "attention_mask"}`` (e.g. ``data.TokenizeFn.from_model(model)``; None leaves
    the texts untokenized); ``dims`` (``MEDCSPDataset.dims``) shapes the empty [0, dim] tensors (without it an
    absent modality is a [0] tensor, which the model also accepts)."""

    def __init__(self, tokenize: Optional[Callable] = None, text_dedup: bool = True, dims: dict | None = None):
        self.tokenize, self.text_dedup, self.dims = tokenize, bool(text_dedup), dict(dims or {})

    def _stack(self, items, key, dtype=torch.float32, shape_key=None) -> torch.Tensor:
        if items:
            return torch.stack([it[key] for it in items])
        d = self.dims.get(shape_key or key, 0)
        return torch.zeros((0, *(d if isinstance(d, (tuple, list)) else (d,))), dtype=dtype)

    def __call__(self, items: list[dict]) -> dict:
        n = len(items)
        has = {m: [it for it in items if m in it] for m in ("icd", "drug", "demo", "temporal", "image")}
        s, t, c = self.dims.get("temporal", (0, 0, 0))
        batch = {
            "mask": (torch.stack([it["mask"] for it in items]) if n
                     else torch.zeros((0, len(MEDCSP_MODALITIES)), dtype=torch.bool)),
            "sources": torch.tensor([it["source"] for it in items], dtype=torch.long),
            "patients": torch.tensor([it["patient"] for it in items], dtype=torch.long),
            "times": torch.tensor([it["time_days"] for it in items], dtype=torch.float64),
            "histories": self._stack(items, "history"),
            "icd": self._stack(has["icd"], "icd"), "drug": self._stack(has["drug"], "drug"),
            "demo": self._stack(has["demo"], "demo"),
            "temporal": self._stack(has["temporal"], "temporal"),
            "temporal_stays": (torch.stack([it["temporal_stays"] for it in has["temporal"]]) if has["temporal"]
                               else torch.zeros((0, s), dtype=torch.bool)),
            "image": self._stack(has["image"], "image"),
            "record_rows": torch.tensor([it["row"] for it in items], dtype=torch.long),
            "n_records": n,
        }
        notes = [it["note"] for it in items if "note" in it]
        reports = [it["report"] for it in items if "report" in it]
        batch["texts"], (batch["note_index"], batch["report_index"]), batch["text_tokens"] = tokenize_once(
            (notes, reports), self.tokenize, self.text_dedup)
        return batch


# ----------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------
def load_records(cfg, splits=("train", "valid"), sources=("ehr", "cxr"), *, data: dict | None = None,
                 linked: dict | None = None, cxr_cached=None) -> dict:
    """``{"data", "cxr_cached", "records": {split: RecordSet}}`` from notebook 08 (``features.load``) and the
    MEDBind MIMIC-CXR cache, opened as ``data.load_pretrain`` does (reused while unchanged)."""
    from .. import cohort
    from ..quality import QualityLog
    from . import features

    data = data if data is not None else features.load(cfg)
    if cxr_cached is None:
        linked = linked if linked is not None else cohort.load_linked(cfg)
        cxr_cached = cohort.cxr_cache(cfg, "mimic_cxr", linked["cxr"], QualityLog())
    recs = {s: RecordSet.build(data, s, cxr_cached, max_stays=cfg["medcsp_max_stays"], sources=sources)
            for s in splits}
    return {"data": data, "cxr_cached": cxr_cached, "records": recs}


def holdout_records(data: dict, cxr_cached, *, record_time_days_origin=None) -> RecordSet:
    """The text->image retrieval hold-out (studies of patients absent from the EHR source, never pre-trained
    on) as a CXR-only :class:`RecordSet` (split ``"holdout"``); a study without both a cached image and a
    report cannot be a retrieval query/target and is dropped, counted."""
    h = data["holdout_records"]
    return _build(data, data["ehr_records"].iloc[:0].assign(ehr_row=np.zeros(0, np.int64)), h, cxr_cached,
                  split="holdout", sources=("cxr",), max_stays=1, origin=record_time_days_origin,
                  require=("image", "report"), require_reason="hold-out study without both a cached image "
                                                               "and a report")
