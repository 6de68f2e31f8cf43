"""MIMIC-PAIR: CXR-ECG pairs of the same visit (by shared hadm_id, else within a time window) and their counts.

The pairing rules (policy, one-to-one matching, which admission decides) are the most involved part of the
linking; they live here, apart from the admission links they consume.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import HOUR, as_int64, merge_by_subject, normalize_ids, record_frame


# --------------------------------------------------------------------------------------------------
# MIMIC-PAIR
# --------------------------------------------------------------------------------------------------
def mimic_pairs(cxr: pd.DataFrame, ecg: pd.DataFrame, window_hours: float = 24.0, policy: str = "nearest",
                quality=None, one_to_one: bool = False, hadm_decides: bool = True) -> pd.DataFrame:
    """MIMIC-PAIR: CXR-ECG pairs of the same visit.

    Candidate pairs (same subject):
    - ``link="hadm"``: both records carry the same hadm_id (from :func:`assign_admissions`); no time
      bound (the admission defines the visit).
    - ``link="time"``: ``|t_ecg - t_cxr| <= window_hours`` (inclusive). With ``hadm_decides`` (default,
      METHOD.md "link by hadm_id when both carry one; else ... within 24 h") a time link is only made
      when at most one of the two records has a hadm_id; two records of DIFFERENT admissions are never
      paired. ``hadm_decides=False`` follows the looser reading "same hadm_id, otherwise within the
      window" and also pairs records of different admissions taken within the window.
    ``hadm_id`` column in the inputs is optional (absent = time links only). NaT times never time-link.

    ``policy``:
    - ``"nearest"``: each CXR record keeps only its nearest candidate ECG (smallest |dt|; ties -> hadm
      link first, then the smaller ecg record_id). An ECG may serve several CXRs (e.g. the images of
      one study, or a study a few hours later) unless ``one_to_one=True``, which instead computes a
      greedy one-to-one matching in increasing |dt| (each CXR and each ECG used at most once; the
      same result as greedy matching on the sorted candidate list, computed by rounds of mutual
      nearest neighbours).
    - ``"all"``: every candidate pair (``one_to_one`` ignored).

    The pairing unit is the CXR record as given (one row of ``cxr``): pass one row per study if pairs
    should be per study.

    Returns ``cxr_record_id, ecg_record_id, subject_id, hadm_id (Int64, NA for time links), link,
    dt_hours`` (= t_ecg - t_cxr, signed), ``cxr_time, ecg_time``, sorted by subject, cxr, ecg.
    CXR/ECG records without a pair are counted in ``quality`` (dataset ``mimic_pair``) and by
    :func:`pair_counts`.
    """
    if policy not in ("nearest", "all"):
        raise ValueError(f"pair_policy must be 'nearest' or 'all', got {policy!r}")
    c = record_frame(cxr, "cxr").rename(columns={"record_id": "cxr_record_id", "time": "cxr_time"})
    e = record_frame(ecg, "ecg").rename(columns={"record_id": "ecg_record_id", "time": "ecg_time"})
    c["_hc"] = as_int64(cxr["hadm_id"]).to_numpy() if "hadm_id" in cxr.columns else pd.NA
    e["_he"] = as_int64(ecg["hadm_id"]).to_numpy() if "hadm_id" in ecg.columns else pd.NA
    c["_hc"], e["_he"] = c["_hc"].astype("Int64"), e["_he"].astype("Int64")
    window = pd.Timedelta(hours=float(window_hours))

    def keep(m):
        hc, he = m["_hc"], m["_he"]
        same = (hc.notna() & he.notna() & (hc == he)).fillna(False).astype(bool)
        within = ((m["ecg_time"] - m["cxr_time"]).abs() <= window).fillna(False).astype(bool)
        blocked = (hc.notna() & he.notna()) if hadm_decides else same
        return same | (within & ~blocked.fillna(False).astype(bool))

    cand = merge_by_subject(c, e, keep)
    same = (cand["_hc"].notna() & cand["_he"].notna() & (cand["_hc"] == cand["_he"])).fillna(False).astype(bool)
    cand["link"] = np.where(same, "hadm", "time")
    cand["hadm_id"] = cand["_hc"].where(same, pd.NA).astype("Int64")
    delta = cand["ecg_time"] - cand["cxr_time"]
    cand["dt_hours"] = (delta / HOUR).astype(float)
    cand["_abs"] = delta.abs()
    cand["_lr"] = (~same).astype(int)
    cand = cand.sort_values(["_abs", "_lr", "cxr_record_id", "ecg_record_id"], kind="mergesort", na_position="last")
    if policy == "nearest":
        cand = _one_to_one(cand) if one_to_one else cand.drop_duplicates("cxr_record_id", keep="first")
    cols = ["cxr_record_id", "ecg_record_id", "subject_id", "hadm_id", "link", "dt_hours", "cxr_time", "ecg_time"]
    pairs = cand[cols].sort_values(["subject_id", "cxr_record_id", "ecg_record_id"]).reset_index(drop=True)
    if quality is not None:
        c_only = ~c["cxr_record_id"].isin(pairs["cxr_record_id"])
        e_only = ~e["ecg_record_id"].isin(pairs["ecg_record_id"])
        quality.seen("mimic_pair", "pairing (CXR)", len(c))
        quality.flag("mimic_pair", "pairing (CXR)", "CXR without a paired ECG (kept in MIMIC-CXR)",
                        records=c.loc[c_only, "cxr_record_id"])
        quality.seen("mimic_pair", "pairing (ECG)", len(e))
        quality.flag("mimic_pair", "pairing (ECG)", "ECG without a paired CXR (kept in MIMIC-ECG)",
                        records=e.loc[e_only, "ecg_record_id"])
    return pairs


def _one_to_one(cand: pd.DataFrame) -> pd.DataFrame:
    """Greedy one-to-one matching of a candidate list already sorted best-first.

    Rounds of mutual best matches: in each round every remaining CXR's best ECG and every ECG's best
    CXR are found; pairs that choose each other are kept and both records leave the pool. With a strict
    total order on candidates this equals sequential greedy matching but stays vectorised.
    """
    rem, chosen = cand, []
    while len(rem):
        bc = rem.drop_duplicates("cxr_record_id", keep="first")
        be = rem.drop_duplicates("ecg_record_id", keep="first")
        mutual = bc[bc.index.isin(be.index)]
        chosen.append(mutual)
        rem = rem[~rem["cxr_record_id"].isin(mutual["cxr_record_id"]) & ~rem["ecg_record_id"].isin(mutual["ecg_record_id"])]
    return pd.concat(chosen) if chosen else cand.iloc[:0]


def pair_counts(cxr: pd.DataFrame, ecg: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Counts for the MIMIC-PAIR report: pairs by link, CXR-only and ECG-only records."""
    cp = normalize_ids(cxr["record_id"], strip_decimal=False).isin(pairs["cxr_record_id"])
    ep = normalize_ids(ecg["record_id"], strip_decimal=False).isin(pairs["ecg_record_id"])
    return {"pairs": len(pairs), "pairs_hadm": int((pairs["link"] == "hadm").sum()),
            "pairs_time": int((pairs["link"] == "time").sum()),
            "cxr": len(cxr), "cxr_paired": int(cp.sum()), "cxr_only": int((~cp).sum()),
            "ecg": len(ecg), "ecg_paired": int(ep.sum()), "ecg_only": int((~ep).sum())}
