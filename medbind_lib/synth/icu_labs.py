"""Lab results (hosp/labevents) in and out of the ICU: panels, specimens, reference ranges and flags.

Labs cover every admission (ward draws too), not only ICU stays, so they are built apart from the ICU events.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..ehr import items as M
from .icu_layout import LAB_ITEMS, LAB_SPEC, LABEVENTS_COLUMNS, MIN, PANELS, H, floor_min, fmt_num, fmt_times
from .icu_state import renewal_times, state_at


# --- labevents ------------------------------------------------------------------------------------------------
def _lab_values(A, S, a_idx, g, t, in_icu, rng) -> dict:
    """Lab values at ``t`` hours after intime (stay ``g``) inside the ICU, else at the admission's baseline."""
    m = len(a_idx)
    st = state_at(S, A, np.where(in_icu, g, 0), t) if len(S) else None
    col = lambda c: A[c].to_numpy()[a_idx]  # noqa: E731
    if st is None:
        R = C = D = np.zeros(m)
        vent = np.zeros(m, bool)
    else:
        R = np.where(in_icu, st["R"], col("r0"))
        C = np.where(in_icu, st["C"], col("c0"))
        D = np.where(in_icu, st["D"], 0.15 * col("died") * col("d_scale"))
        vent = in_icu & st["vent"]
    e = lambda sd: rng.normal(0, sd, m)  # noqa: E731
    cr = col("cr0") * np.exp(0.5 * D + 0.3 * np.maximum(C, 0) + e(0.07))
    return {
        "Lactate": np.clip(1.15 * np.exp(1.1 * np.maximum(C, 0) + 0.3 * D + e(0.22)), 0.3, 20),
        "pH": np.clip(7.40 - 0.07 * C - 0.03 * D + np.where(vent, 0, -0.02 * R) + e(0.03), 6.9, 7.65),
        "pCO2": np.clip(40 + 7 * R * (col("resp") > 2) - 4 * C + e(4), 18, 110),
        "pO2": np.clip(np.where(vent, 110 - 20 * R, 92 - 30 * R) + e(12), 35, 450),
        "Sodium": np.clip(col("na0") + e(1.5), 115, 165),
        "Potassium": np.clip(col("k0") + 0.35 * D + e(0.25), 2.3, 7.5),
        "Bicarbonate": np.clip(col("hco30") - 5 * C - 2 * D + e(1.5), 8, 45), "Creatinine": np.clip(cr, 0.2, 12),
        "Urea Nitrogen": np.clip(16 * cr ** 0.8 * np.exp(e(0.12)), 3, 180),
        "Glucose": np.clip(col("glu0") + 20 * C + e(22), 40, 600),
        "Hemoglobin": np.clip(col("hgb0") - 0.4 * C + e(0.35), 4, 19),
        "Platelet Count": np.clip(col("plt0") * np.exp(-0.25 * np.maximum(C, 0) + e(0.08)), 5, 900),
        "White Blood Cells": np.clip(col("wbc0") + 4 * np.maximum(C, 0) + e(0.8), 0.3, 80),
    }, R, C


def labevents_table(A, S, rng) -> pd.DataFrame:
    n_a = len(A)
    # ICU: from shortly after intime to outtime, every 6-24 h (more often for sicker stays)
    if len(S):
        gs, ts = renewal_times(rng, np.zeros(len(S)), S.los_h.to_numpy(), (0.1, 2.0), (6.0, 24.0),
                               S.lab_scale.to_numpy())
    else:
        gs, ts = np.zeros(0, int), np.zeros(0)
    icu_a = S.a_idx.to_numpy()[gs]
    icu_ns = floor_min(S.intime.to_numpy()[gs] + (ts * H).astype(np.int64))
    # ward (every admission): every 14-30 h from admission to discharge, outside the ICU stay
    ga, ta = renewal_times(rng, np.zeros(n_a), (A.disch.to_numpy() - A.admit.to_numpy()) / H, (0.5, 4.0), (14.0, 30.0))
    ward_ns = floor_min(A.admit.to_numpy()[ga] + (ta * H).astype(np.int64))
    stay_of = np.full(n_a, -1)
    stay_of[S.a_idx.to_numpy()] = np.arange(len(S))
    if len(S):                                      # ward draws during the ICU stay are the ICU's own
        sg = np.maximum(stay_of[ga], 0)
        inside = (stay_of[ga] >= 0) & (ward_ns >= S.intime.to_numpy()[sg]) & (ward_ns <= S.outtime.to_numpy()[sg])
        ga, ward_ns = ga[~inside], ward_ns[~inside]
    a_idx = np.concatenate([icu_a, ga])
    g = np.concatenate([gs, np.maximum(stay_of[ga], 0)])
    ns = np.concatenate([icu_ns, ward_ns])
    in_icu = np.concatenate([np.ones(len(gs), bool), np.zeros(len(ga), bool)])
    t = (ns - S.intime.to_numpy()[g]) / H if len(S) else np.zeros(len(ns))
    vals, R, C = _lab_values(A, S, a_idx, g, t, in_icu, rng)
    m = len(a_idx)
    art = np.where(in_icu, S.art_line.to_numpy()[g], False) if len(S) else np.zeros(m, bool)
    p_bg = np.where(in_icu, 0.15 + 0.45 * art + 0.3 * ((R > 0.5) | (C > 0.5)), 0.04)
    panel_on = {"Blood Gas": rng.random(m) < p_bg, "Chemistry": rng.random(m) < 0.96,
                "Hematology": rng.random(m) < np.where(in_icu, 0.85, 0.7)}
    spec_id = rng.choice(90_000_000, 3 * m, replace=False).reshape(3, m) + 1_000_000
    store_lag = rng.uniform(0.3, 2.0, (3, m))
    priority = np.where(in_icu, rng.choice(["STAT", "ROUTINE", ""], m, p=[0.6, 0.3, 0.1]),
                        rng.choice(["STAT", "ROUTINE", ""], m, p=[0.3, 0.6, 0.1]))
    providers = np.array([""] * 18 + ["P" + "".join(rng.choice(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"), 5))
                                      for _ in range(12)])
    prov = providers[rng.integers(0, len(providers), m)]
    male = A.male.to_numpy()[a_idx]
    parts = []
    for p_k, (panel, labels) in enumerate(PANELS.items()):
        for label in labels:
            dec, rr = LAB_SPEC[label]
            on = panel_on[panel] & (rng.random(m) < 0.97)
            idx = np.flatnonzero(on)
            lo, hi = (np.where(male[idx], rr[1][0], rr[0][0]), np.where(male[idx], rr[1][1], rr[0][1])) \
                if isinstance(rr[0], tuple) else (np.full(len(idx), rr[0]), np.full(len(idx), rr[1]))
            v = np.round(vals[label][idx], dec)
            parts.append(pd.DataFrame({
                "_a": a_idx[idx], "specimen_id": spec_id[p_k, idx], "itemid": LAB_ITEMS[label],
                "order_provider_id": prov[idx],
                "_t": ns[idx], "storetime": ns[idx] + (store_lag[p_k, idx] * 60).astype(np.int64) * MIN, "_v": v,
                "_dec": dec, "valueuom": M.LABS[LAB_ITEMS[label]][3], "ref_range_lower": lo, "ref_range_upper": hi,
                "flag": np.where((v < lo) | (v > hi), "abnormal", ""), "priority": priority[idx], "comments": ""}))
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "subject_id", A.subject_id.to_numpy()[df._a.to_numpy()])
    df.insert(1, "hadm_id", A.hadm_id.to_numpy()[df.pop("_a").to_numpy()])
    df = df.sort_values(["subject_id", "_t", "specimen_id", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(0, "labevent_id", np.arange(len(df)) + int(rng.integers(100_000, 1_000_000)))
    text = fmt_num(df._v.to_numpy(), df.pop("_dec").to_numpy())
    df["value"], df["valuenum"] = text.to_numpy(), text.to_numpy()
    df.pop("_v")
    df["charttime"] = fmt_times(df.pop("_t").to_numpy()).to_numpy()
    df["storetime"] = fmt_times(df.storetime.to_numpy()).to_numpy()
    for c in ("ref_range_lower", "ref_range_upper"):
        df[c] = fmt_num(df[c].to_numpy(), 2).to_numpy()
    return df[LABEVENTS_COLUMNS]
