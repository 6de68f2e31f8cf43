"""ICU event tables: chartevents (vitals, FiO2, PEEP, GCS), procedureevents (ventilation), inputevents
(vasopressors) and outputevents (urine), each observed from the latent state of icu_state.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..ehr import items as M
from .icu_layout import (ABPM, CHART_DECIMALS, CHART_UNIT, CHARTEVENTS_COLUMNS, DBP, FIO2, FOLEY, GCS_EYE, GCS_MOTOR,
                         GCS_TEXT, GCS_VERBAL, HR, INPUTEVENTS_COLUMNS, MIN, NBPM, OUTPUTEVENTS_COLUMNS, PRESSOR_ITEMS,
                         PRESSOR_SPEC, RR, SBP, SPO2, TEMP, VOID, H, floor_min, fmt_num, fmt_times)
from .icu_state import expand_groups, renewal_times, state_at


# --- chartevents ----------------------------------------------------------------------------------------------
def chartevents_table(S, A, rng) -> pd.DataFrame:
    intime = S.intime.to_numpy()
    first = -(-intime // H) * H                                        # the first whole hour in the stay
    off_h = (first - intime) / H
    n_slots = np.floor(S.los_h.to_numpy() - off_h).astype(np.int64) + 1
    g, k = expand_groups(np.maximum(n_slots, 0))
    keep = rng.random(len(g)) < S.p_vital.to_numpy()[g]
    keep |= k == 0                                                     # vitals at arrival
    g, k = g[keep], k[keep]
    jitter = np.where(rng.random(len(g)) < 0.7, 0, rng.integers(1, 59, len(g))) * MIN
    ts = first[g] + k * H + jitter
    ok = ts <= S.outtime.to_numpy()[g]
    g, k, ts = g[ok], k[ok], ts[ok]
    t = (ts - intime[g]) / H
    st = state_at(S, A, g, t)
    m = len(g)
    col = lambda c: S[c].to_numpy()[g]  # noqa: E731
    afib = A.afib.to_numpy()[col("a_idx")] * col("afib_hr")
    R, C, D = st["R"], st["C"], st["D"]
    pressor, vent, intub = st["pressor"], st["vent"], st["intubated"]
    hr = col("hr0") + 22 * C + 6 * R + 8 * D + afib + rng.normal(0, 4, m)
    mapv = np.where(pressor, 69 - 4 * C + rng.normal(0, 4, m), col("map0") - 24 * C - 4 * D + rng.normal(0, 4, m))
    rr = np.where(vent, 16 + 3 * R + rng.normal(0, 2, m), col("rr0") + 7 * R + 3 * C + rng.normal(0, 2, m))
    spo2 = np.where(vent, col("spo2_0") - 1.0 - 2.5 * R, col("spo2_0") - 7.5 * R - 1.0 * C) + rng.normal(0, 1.0, m)
    fio2 = np.where(vent, 35 + 45 * R, 21 + 60 * np.maximum(R - 0.12, 0)) + rng.normal(0, 4, m)
    fio2 = np.clip(np.round(fio2 / 5) * 5, 21, 100)
    peep = np.clip(np.round(5 + 7 * R + rng.normal(0, 1.2, m)), 5, 18)
    pneu = A.pneumonia.to_numpy()[col("a_idx")]
    temp = col("temp0") + 1.4 * pneu * np.maximum(C, 0.3) + 0.4 * C + rng.normal(0, 0.35, m)
    pp = col("pp") - 10 * C + rng.normal(0, 5, m)
    art = col("art_line") | (pressor & (rng.random(m) < 0.8))
    u = rng.random((7, m))
    four = k % 4 == col("phase4")                                      # temperature / GCS every ~4 h
    gsl = col("gcs0") + 4 * D + np.where(intub, 4.0, 0.0) + rng.normal(0, 0.8, m)
    gsl = np.clip(gsl, 0, 12)
    eye = np.clip(np.round(4 - gsl * 0.3), 1, 4)
    verbal = np.where(intub, 0, np.clip(np.round(5 - gsl * 0.4), 1, 5))
    motor = np.clip(np.round(6 - gsl * 0.3), 1, 6)
    rows = []

    def add(item, mask, val):
        rows.append((np.full(mask.sum(), item, dtype=np.int64), np.flatnonzero(mask), np.asarray(val)[mask]))

    add(HR, u[0] < 0.98, np.clip(hr, 30, 210))
    nbp = (~art & (u[1] < 0.9)) | (art & (u[1] < 0.2))
    add(SBP, nbp, np.clip(mapv + 2 * pp / 3, 50, 250))
    add(DBP, nbp, np.clip(mapv - pp / 3, 20, 150))
    add(NBPM, nbp, np.clip(mapv + rng.normal(0, 1.5, m), 30, 180))
    add(ABPM, art & (u[2] < 0.95), np.clip(mapv + rng.normal(0, 2, m), 30, 180))
    add(RR, u[3] < 0.95, np.clip(rr, 5, 50))
    add(SPO2, u[4] < 0.95, np.clip(spo2, 60, 100))
    add(FIO2, (vent & (u[5] < 0.55)) | (~vent & (fio2 > 25) & (u[5] < 0.3)), fio2)
    add(TEMP, four & (u[6] < 0.85), np.clip(temp, 93, 106))
    add(M.PEEP, intub & (u[5] < 0.6) & (t > col("arf_on")), peep)
    gcs = four & (u[6] < 0.9)
    for item, v in ((GCS_EYE, eye), (GCS_VERBAL, verbal), (GCS_MOTOR, motor)):
        add(item, gcs, v)
    item = np.concatenate([r[0] for r in rows])
    idx = np.concatenate([r[1] for r in rows])
    val = np.concatenate([r[2] for r in rows]).astype(float)
    ts_ev = ts[idx]
    # ARF: stays with PEEP but no ventilation row chart their first PEEP at the onset itself
    only = np.flatnonzero((S.vent_kind.to_numpy() == 2) & np.isfinite(S.arf_on.to_numpy()))
    on_ns = floor_min(intime[only] + (S.arf_on.to_numpy()[only] * H).astype(np.int64))
    st0 = state_at(S, A, only, (on_ns - intime[only]) / H)
    item = np.concatenate([item, np.full(len(only), M.PEEP)])
    val = np.concatenate([val, np.clip(np.round(5 + 7 * st0["R"] + rng.normal(0, 1.2, len(only))), 5, 18)])
    ts_ev = np.concatenate([ts_ev, on_ns])
    gg = np.concatenate([g[idx], only])
    return _chart_frame(S, gg, item, val, ts_ev, rng)


def _chart_frame(S, g, item, val, ts, rng) -> pd.DataFrame:
    n = len(g)
    is_gcs = np.isin(item, list(GCS_TEXT))
    dec = np.array([CHART_DECIMALS.get(int(i), 0) for i in np.unique(item)])[np.searchsorted(np.unique(item), item)]
    num = fmt_num(np.where(is_gcs, np.maximum(val, 1), val), dec)
    text = num.to_numpy(dtype=object)
    for i, names in GCS_TEXT.items():
        sel = item == i
        text[sel] = pd.Series(val[sel].astype(int)).map(names).to_numpy()
    uom = pd.Series(item).map(CHART_UNIT).fillna("").to_numpy()
    warn = (((item == SPO2) & (val < 88)) | (((item == ABPM) | (item == NBPM)) & (val < 60))
            | ((item == HR) & (val > 130)))
    df = pd.DataFrame({
        "subject_id": S.subject_id.to_numpy()[g], "hadm_id": S.hadm_id.to_numpy()[g],
        "stay_id": S.stay_id.to_numpy()[g],
        "caregiver_id": S.caregiver0.to_numpy()[g] + rng.integers(0, 4, n) * 211, "_t": ts,
        "storetime": fmt_times(ts + rng.integers(0, 25, n) * MIN).to_numpy(), "itemid": item, "value": text,
        "valuenum": num.to_numpy(), "valueuom": uom, "warning": warn.astype(int)})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "charttime", fmt_times(df.pop("_t").to_numpy()))
    return df[CHARTEVENTS_COLUMNS]


# --- procedureevents / inputevents / outputevents ------------------------------------------------------------
def procedureevents_table(S, rng) -> pd.DataFrame:
    sel = np.flatnonzero(np.isfinite(S.arf_on.to_numpy()) & (S.vent_kind.to_numpy() != 2))
    s = S.iloc[sel]
    start = floor_min(s.intime.to_numpy() + (s.arf_on.to_numpy() * H).astype(np.int64))
    end = np.maximum(floor_min(s.intime.to_numpy() + (s.vent_end.to_numpy() * H).astype(np.int64)), start + MIN)
    end = np.minimum(end, floor_min(s.outtime.to_numpy()))
    mins = (end - start) // MIN
    oid = rng.choice(9_000_000, len(s), replace=False) + 100_000
    item = np.where(s.vent_kind.to_numpy() == 1, M.NONINVASIVE_VENTILATION, M.INVASIVE_VENTILATION)
    w = fmt_num(s.weight.to_numpy(), 1).to_numpy()
    df = pd.DataFrame({
        "subject_id": s.subject_id.to_numpy(), "hadm_id": s.hadm_id.to_numpy(), "stay_id": s.stay_id.to_numpy(),
        "caregiver_id": s.caregiver0.to_numpy() + 17, "starttime": fmt_times(start), "endtime": fmt_times(end),
        "storetime": fmt_times(end + rng.integers(0, 40, len(s)) * MIN), "itemid": item, "value": mins,
        "valueuom": "min", "location": "", "locationcategory": "", "orderid": oid, "linkorderid": oid,
        "ordercategoryname": "Ventilation", "ordercategorydescription": "ContinuousProcess", "patientweight": w,
        "isopenbag": 1, "continueinnextdept": 0, "statusdescription": "FinishedRunning", "ORIGINALAMOUNT": mins,
        "ORIGINALRATE": 1})
    return df.sort_values(["subject_id", "stay_id", "starttime"], kind="stable").reset_index(drop=True)


def inputevents_table(S, A, rng) -> pd.DataFrame:
    sel = np.flatnonzero(np.isfinite(S.shock_on.to_numpy()))
    s = S.iloc[sel]
    n = len(s)
    names = list(PRESSOR_SPEC)
    weights = np.array([PRESSOR_SPEC[k][0] for k in names])
    first = rng.choice(len(names), n, p=weights / weights.sum())
    add_vaso = (rng.random(n) < 0.3) & (np.array(names)[first] != "Vasopressin")
    # infusions: (stay row, drug, start hour, end hour)
    on, end = s.shock_on.to_numpy(), s.press_end.to_numpy()
    v_on = np.minimum(on + rng.uniform(1, 12, n), end - 0.1)
    inf_stay = np.concatenate([np.arange(n), np.flatnonzero(add_vaso & (v_on > on))])
    inf_drug = np.concatenate([first, np.full(len(inf_stay) - n, names.index("Vasopressin"))])
    inf_start = np.concatenate([on, v_on[inf_stay[n:]]])
    inf_end = np.maximum(end[inf_stay], inf_start + 0.05)
    # each infusion: rate-change segments of 0.5-6 h
    gi, seg_t = renewal_times(rng, inf_start, inf_end, (0.0, 0.0), (0.5, 6.0))
    nxt = np.append(seg_t[1:], np.inf)[:len(gi)]
    last = np.append(gi[1:] != gi[:-1], True)[:len(gi)]
    seg_end = np.where(last, inf_end[gi], nxt)
    st_rows = inf_stay[gi]
    intime = s.intime.to_numpy()[st_rows]
    t0 = floor_min(intime + (seg_t * H).astype(np.int64))
    t1 = np.maximum(floor_min(intime + (seg_end * H).astype(np.int64)), t0 + MIN)
    t1 = np.minimum(t1, floor_min(s.outtime.to_numpy()[st_rows]))
    drug = np.array(names)[inf_drug[gi]]
    lo = np.array([PRESSOR_SPEC[d][1][0] for d in names])[inf_drug[gi]]
    hi = np.array([PRESSOR_SPEC[d][1][1] for d in names])[inf_drug[gi]]
    rate = lo + (hi - lo) * rng.beta(1.5, 3.0, len(gi))
    w = A.weight.to_numpy()[s.a_idx.to_numpy()[st_rows]]
    minutes = (t1 - t0) / MIN
    per_kg = np.array([PRESSOR_SPEC[d][2] == "mcg/kg/min" for d in names])[inf_drug[gi]]
    amount = np.where(per_kg, rate * w * minutes / 1000.0, rate * minutes / 60.0)
    oid = rng.choice(9_000_000, len(gi), replace=False) + 100_000
    link = oid[np.searchsorted(gi, gi)]                                   # first segment's order id per infusion
    m = len(gi)
    df = pd.DataFrame({
        "subject_id": s.subject_id.to_numpy()[st_rows], "hadm_id": s.hadm_id.to_numpy()[st_rows],
        "stay_id": s.stay_id.to_numpy()[st_rows], "caregiver_id": s.caregiver0.to_numpy()[st_rows] + 31,
        "_t": t0, "endtime": fmt_times(t1), "storetime": fmt_times(t0 + rng.integers(0, 30, m) * MIN),
        "itemid": pd.Series(drug).map(PRESSOR_ITEMS).to_numpy(), "amount": np.round(amount, 6),
        "amountuom": np.array([PRESSOR_SPEC[d][3] for d in names])[inf_drug[gi]], "rate": np.round(rate, 6),
        "rateuom": np.array([PRESSOR_SPEC[d][2] for d in names])[inf_drug[gi]], "orderid": oid, "linkorderid": link,
        "ordercategoryname": "01-Drips", "secondaryordercategoryname": "02-Fluids (Crystalloids)",
        "ordercomponenttypedescription": "Main order parameter", "ordercategorydescription": "Continuous Med",
        "patientweight": fmt_num(w, 1).to_numpy(), "totalamount": 250, "totalamountuom": "mL", "isopenbag": 0,
        "continueinnextdept": 0,
        "statusdescription": np.where(last, "FinishedRunning", "ChangeDose/Rate"),
        "originalamount": np.round(amount, 6), "originalrate": np.round(rate, 6)})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "starttime", fmt_times(df.pop("_t").to_numpy()))
    return df[INPUTEVENTS_COLUMNS]


def outputevents_table(S, A, rng) -> pd.DataFrame:
    n = len(S)
    intime, los_h = S.intime.to_numpy(), S.los_h.to_numpy()
    foley = S.foley.to_numpy()
    first = -(-intime // H) * H
    off_h = (first - intime) / H
    g1, k1 = expand_groups(np.where(foley, np.floor(los_h - off_h).astype(np.int64) + 1, 0).clip(min=0))
    keep = rng.random(len(g1)) < 0.85
    g1, t1 = g1[keep], off_h[g1[keep]] + k1[keep]
    g2, t2 = renewal_times(rng, np.zeros(n)[~foley], los_h[~foley], (0.5, 4.0), (2.0, 7.0))
    g2 = np.flatnonzero(~foley)[g2]
    g = np.concatenate([g1, g2])
    t = np.concatenate([t1, t2])
    item = np.concatenate([np.full(len(g1), FOLEY), np.full(len(g2), VOID)])
    ts = floor_min(intime[g] + np.round(t * H).astype(np.int64))
    ok = ts <= S.outtime.to_numpy()[g]
    g, item, ts = g[ok], item[ok], ts[ok]
    st = state_at(S, A, g, (ts - intime[g]) / H)
    uo = S.uo0.to_numpy()[g] * np.exp(-1.1 * st["C"] - 0.9 * st["D"] + rng.normal(0, 0.3, len(g)))
    val = np.where(item == FOLEY, np.round(uo / 5) * 5, np.round(uo * 3.5 / 25) * 25).clip(0, 1500)
    m = len(g)
    df = pd.DataFrame({"subject_id": S.subject_id.to_numpy()[g], "hadm_id": S.hadm_id.to_numpy()[g],
                       "stay_id": S.stay_id.to_numpy()[g], "caregiver_id": S.caregiver0.to_numpy()[g] + 7, "_t": ts,
                       "storetime": fmt_times(ts + rng.integers(-15, 30, m) * MIN).to_numpy(), "itemid": item,
                       "value": val.astype(np.int64), "valueuom": "ml"})
    df = df.sort_values(["subject_id", "stay_id", "_t", "itemid"], kind="stable").reset_index(drop=True)
    df.insert(4, "charttime", fmt_times(df.pop("_t").to_numpy()))
    return df[OUTPUTEVENTS_COLUMNS]
