"""Scale of the MIMIC table pipeline at full dataset size: reading, linking, labels, splits, MIMIC-PAIR.

Why: the ``paper`` profile runs on MIMIC-CXR (~377k images), MIMIC-IV-ECG (~800k ECGs) and MIMIC-IV (~430k
admissions); work quadratic in patients or records, or Python per row in a hot path, only shows there. This
writes seeded synthetic TABLES (no pixels, no waveforms) at ``--scale`` x full MIMIC in the real layouts
(``.csv.gz``) and times each stage of the library's own pipeline in its own process: seconds and peak RSS
(VmHWM after a clear_refs reset once the inputs are loaded; "above inputs" = the stage's own). Stages hand
frames on as pickles (not timed). Not timed: ``cohort.attach_cxr_text`` (one report file per study), pixels.

Baseline, same run: a straightforward per-patient loop (groupby subject, Python loops over the subject's stays
/ ECGs) of the same admission-link and MIMIC-PAIR rules, timed on a random subsample of subjects (all their
records), asserted equal to the library's full-run result there, extrapolated linearly by records. Cache
build: records/s of ``cache.build`` measured now (ECG: the smoke cohort's WFDB 500 Hz x 10 s records; CXR:
synthetic full-resolution 2544 x 3056 JPGs, q95), extrapolated to the full datasets (hours, disk).

Synthetic cohort at scale 1.0 (published MIMIC sizes; overlaps and shapes are assumptions):
- MIMIC-IV: 299,712 patients, 180,733 of them with 431,231 admissions (heavy-tailed: Poisson with lognormal
  rates, cap 250); stays lognormal (median 3 d); 15% of gaps under 30 d, 0.5% overlap the previous stay; 5%
  of admitted patients die in their last stay; 55% of stays have an ED edregtime.
- MIMIC-CXR: 65,379 patients (85% with admissions), 227,835 studies (cap 300), 377,110 images (1-4 per study,
  ~62% AP/PA); 75% of an admitted patient's studies in a stay or up to 6 h before it.
- MIMIC-IV-ECG: 161,352 patients (70% of the CXR patients; 70% of the others with admissions), 800,035 ECGs
  (cap 400); 60% of an admitted patient's ECGs in a stay or up to 8 h before; 1-6 machine statements (some
  with Table A.3 disallowed phrases); 40% with a note link.

    nice -n 10 python benchmarks/bench_scale.py [--scale 1.0] [--baseline-subjects 15000] [--skip-cache]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medbind_lib import cache, cohort
from medbind_lib import linking as L
from medbind_lib.config import load_profile
from medbind_lib.constants import CHEXPERT_LABELS
from medbind_lib.datasets import load_manifest, mimic_cxr, mimic_ecg, mimic_iv
from medbind_lib.preprocess.cxr import filter_views
from medbind_lib.quality import QualityLog

FULL = dict(patients=299_712, adm_subjects=180_733, admissions=431_231, cxr_subjects=65_379,
            cxr_studies=227_835, cxr_images=377_110, ecg_subjects=161_352, ecgs=800_035)
DAY, HOUR = 86400.0, 3600.0
RHYTHMS = ["Sinus rhythm", "Sinus tachycardia", "Sinus bradycardia", "Atrial fibrillation", "Sinus rhythm with PVCs"]
FINDINGS = ["Normal ECG", "Otherwise normal ECG", "Abnormal ECG", "Borderline ECG", "Left ventricular hypertrophy",
            "Inferior infarct - age undetermined", "Nonspecific T wave changes", "Right bundle branch block",
            "Left axis deviation", "Poor R wave progression - probable normal variant", "Low QRS voltages"]


# ------------------------------------------------------------------------------------------- synthetic data
def _heavy(rng, n: int, total: int, cap: int) -> np.ndarray:
    """n counts >= 1 summing to ~total, heavy-tailed (Poisson with lognormal rates), capped."""
    w = rng.lognormal(0.0, 1.2, n)
    return np.minimum(1 + rng.poisson(w * max(total - n, 0) / w.sum()), cap)


def _csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, compression={"method": "gzip", "compresslevel": 1})


def generate(root: Path, scale: float, seed: int = 0) -> dict:
    """Write the synthetic MIMIC tables under ``root`` (layout of the real releases); return counts."""
    rng, ts = np.random.default_rng(seed), functools.partial(pd.to_datetime, unit="s")
    n = {k: max(int(round(v * scale)), 1) for k, v in FULL.items()}
    npat, pick = n["patients"], lambda pool, k: rng.choice(pool, min(k, len(pool)), replace=False)
    pid = 10_000_000 + rng.choice(9_999_999, npat, replace=False)
    base = pd.Timestamp("2110-01-01").timestamp() + rng.uniform(0, 80 * 365 * DAY, npat)
    adm_pat, other = np.split(rng.permutation(npat), [n["adm_subjects"]])
    # MIMIC-IV: per-patient admission timelines (cumulative gaps + stays within each patient)
    k = _heavy(rng, len(adm_pat), n["admissions"], 250)
    subj, m, first = np.repeat(adm_pat, k), int(k.sum()), np.r_[0, np.cumsum(k)[:-1]]
    los = np.maximum(np.exp(rng.normal(np.log(3 * DAY), 0.8, m)), 2 * HOUR)
    gap = np.where(rng.random(m) < 0.15, rng.uniform(1, 30, m) * DAY,
                   rng.exponential(np.repeat(np.minimum(200 * DAY, 3650 * DAY / k), k)))
    gap[rng.random(m) < 0.005] = -rng.uniform(0, DAY)             # overlaps the previous stay
    gap[first] = rng.uniform(0, 3 * 365 * DAY, len(first))
    step = gap + los
    cs = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], k)
    disch = np.round((base[subj] + cs) / 60) * 60
    admit = np.round((disch - los) / 60) * 60                     # minute resolution, as in MIMIC-IV
    died, ed = np.zeros(m, bool), rng.random(m) < 0.55
    died[(first + k - 1)[rng.random(len(k)) < 0.05]] = True
    types = ["EW EMER.", "EU OBSERVATION", "OBSERVATION ADMIT", "URGENT", "SURGICAL SAME DAY ADMISSION", "ELECTIVE"]
    adm = pd.DataFrame({"subject_id": pid[subj], "hadm_id": 20_000_000 + rng.choice(9_999_999, m, replace=False),
                        "admittime": ts(admit), "dischtime": ts(disch), "deathtime": ts(np.where(died, disch, np.nan)),
                        "admission_type": rng.choice(types, m, p=[.4, .22, .12, .12, .09, .05])})
    for c, vals in (("admission_location", ["EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"]),
                    ("discharge_location", ["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB"]),
                    ("insurance", ["Medicare", "Medicaid", "Other"]), ("race", ["WHITE", "BLACK", "UNKNOWN"])):
        adm[c] = rng.choice(vals, m)
    adm.loc[died, "discharge_location"] = "DIED"
    adm["edregtime"] = ts(np.where(ed, admit - rng.uniform(1, 10, m) * HOUR, np.nan).round())
    adm["edouttime"] = ts(np.where(ed, admit + rng.uniform(0, 1, m) * HOUR, np.nan).round())
    adm["hospital_expire_flag"] = died.astype(int)
    _csv(adm, root / "mimiciv/hosp/admissions.csv.gz")
    _csv(pd.DataFrame({"subject_id": pid, "gender": rng.choice(["F", "M"], npat),
                       "anchor_age": rng.integers(18, 91, npat),
                       "anchor_year": rng.integers(2110, 2190, npat), "anchor_year_group": "2011 - 2013", "dod": ""}),
         root / "mimiciv/hosp/patients.csv.gz")
    start, cnt = np.full(npat, -1), np.zeros(npat, int)
    start[adm_pat], cnt[adm_pat] = first, k

    def times(pats, p_in, pre_h):
        """In a random stay of the patient (30% of those up to pre_h before admittime), else outpatient."""
        r, j = len(pats), start[pats] + (rng.random(len(pats)) * np.maximum(cnt[pats], 1)).astype(int)
        t_in = np.where(rng.random(r) < 0.3, admit[j] - rng.uniform(0, pre_h, r) * HOUR,
                        admit[j] + rng.random(r) * (disch[j] - admit[j]))
        inside = (cnt[pats] > 0) & (rng.random(r) < p_in)
        return np.where(inside, t_in, base[pats] + rng.uniform(0, 10 * 365 * DAY, r)).round()

    # MIMIC-CXR-JPG: metadata (one row per image), split, chexpert (one row per study)
    nc = n["cxr_subjects"]
    cxr_pat = np.r_[pick(adm_pat, round(0.85 * nc)), pick(other, nc - round(0.85 * nc))]
    st_pat = np.repeat(cxr_pat, _heavy(rng, len(cxr_pat), n["cxr_studies"], 300))
    nst = len(st_pat)
    st_t, st_id = ts(times(st_pat, 0.75, 6)), 50_000_000 + rng.choice(9_999_999, nst, replace=False)
    ni = 1 + rng.binomial(3, max(n["cxr_images"] / nst - 1, 0) / 3, nst)
    img, nimg = np.repeat(np.arange(nst), ni), int(ni.sum())
    pos = np.arange(nimg) - np.repeat(np.r_[0, np.cumsum(ni)[:-1]], ni)
    view = np.where(pos == 0, rng.choice(["AP", "PA", "", "AP AXIAL"], nimg, p=[.6, .37, .02, .01]),
                    rng.choice(["LATERAL", "LL", "AP", "PA", ""], nimg, p=[.65, .25, .05, .03, .02]))
    t, d = st_t[img], root / "mimic-cxr-jpg"
    dicom = ["-".join(f"{x:08x}" for x in h) for h in rng.integers(0, 2 ** 32, (nimg, 5)).tolist()]
    _csv(pd.DataFrame({"dicom_id": dicom, "subject_id": pid[st_pat][img], "study_id": st_id[img],
                       "PerformedProcedureStepDescription": "CHEST (PORTABLE AP)", "ViewPosition": view,
                       "Rows": 3056, "Columns": 2544, "StudyDate": t.year * 10000 + t.month * 100 + t.day,
                       "StudyTime": t.hour * 10000 + t.minute * 100 + t.second + rng.integers(0, 1000, nimg) / 1000}),
         d / "mimic-cxr-2.0.0-metadata.csv.gz")
    psplit = rng.choice(["train", "validate", "test"], npat, p=[.978, .008, .014])
    _csv(pd.DataFrame({"dicom_id": dicom, "study_id": st_id[img], "subject_id": pid[st_pat][img],
                       "split": psplit[st_pat][img]}), d / "mimic-cxr-2.0.0-split.csv.gz")
    lab = rng.choice([np.nan, 1.0, 0.0, -1.0], (nst, len(CHEXPERT_LABELS)), p=[.75, .12, .1, .03])
    lab = pd.DataFrame({"subject_id": pid[st_pat], "study_id": st_id, **dict(zip(CHEXPERT_LABELS, lab.T))})
    _csv(lab[rng.random(nst) < 0.99], d / "mimic-cxr-2.0.0-chexpert.csv.gz")
    # MIMIC-IV-ECG: record_list, machine_measurements, waveform_note_links
    in_cxr, both = np.isin(np.arange(npat), cxr_pat), pick(cxr_pat, round(0.7 * nc))
    rest = n["ecg_subjects"] - len(both)
    ecg_pat = np.r_[both, pick(np.flatnonzero((cnt > 0) & ~in_cxr), round(0.7 * rest)),
                    pick(np.flatnonzero((cnt == 0) & ~in_cxr), rest - round(0.7 * rest))]
    ep = np.repeat(ecg_pat, _heavy(rng, len(ecg_pat), n["ecgs"], 400))
    r, sid, d = len(ep), pid[ep], root / "mimic-iv-ecg"
    et, est = ts(times(ep, 0.6, 8)), 40_000_000 + rng.choice(9_999_999, r, replace=False)
    paths = np.array([f"files/p{str(s)[:4]}/p{s}/s{e}/{e}" for s, e in zip(sid.tolist(), est.tolist())], object)
    _csv(pd.DataFrame({"subject_id": sid, "study_id": est, "file_name": est, "ecg_time": et, "path": paths}),
         d / "record_list.csv.gz")
    rep = np.array(FINDINGS, dtype=object)[rng.integers(0, len(FINDINGS), (r, 18))]
    rep[:, 0] = np.array(RHYTHMS, dtype=object)[rng.integers(0, len(RHYTHMS), r)]
    rep[np.arange(18)[None, :] >= 1 + rng.binomial(5, 0.25, r)[:, None]] = None    # 1-6 statements
    mm = pd.DataFrame({"subject_id": sid, "study_id": est, "cart_id": rng.integers(6_000_000, 7_000_000, r),
                       "ecg_time": et, **{f"report_{i}": rep[:, i] for i in range(18)},
                       "bandwidth": "0.005-150 Hz", "filtering": "60 Hz notch Baseline filter"})
    for c in ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"):
        mm[c] = np.where(rng.random(r) < 0.02, 29999, rng.integers(-60, 1200, r))   # 29999 = not measured
    _csv(mm, d / "machine_measurements.csv.gz")
    li = np.flatnonzero(rng.random(r) < 0.4)
    li, seq = np.r_[li, li[: len(li) // 100]], np.r_[np.ones(len(li), int), np.full(len(li) // 100, 2)]  # 1%: 2 links
    _csv(pd.DataFrame({"subject_id": sid[li], "study_id": est[li], "waveform_path": paths[li],
                       "note_id": [f"{s}-EC-{q}" for s, q in zip(sid[li].tolist(), seq.tolist())], "note_seq": seq,
                       "charttime": et[li]}), d / "waveform_note_links.csv.gz")
    per = [np.bincount(x, minlength=npat) for x in (subj, st_pat[img], ep)]      # admissions, images, ECGs
    return {"patients": npat, "admissions": m, "cxr_images": nimg, "cxr_studies": nst, "ecgs": r,
            "cxr_x_ecg_rows": int((per[1] * per[2]).sum()), "ecg_x_adm_rows": int((per[2] * per[0]).sum()),
            "max_per_patient": [int(p.max()) for p in per]}


# ------------------------------------------------------------------------------ baseline: per-patient loops
def loop_assign(rec: pd.DataFrame, adm: pd.DataFrame) -> dict:
    """record_id -> hadm_id: the stay with admittime <= t <= dischtime, latest admittime (then hadm_id)."""
    stays_of, out = {s: list(g.itertuples(index=False)) for s, g in adm.groupby("subject_id")}, {}
    for s, g in rec.groupby("subject_id"):
        for r in g.itertuples(index=False):
            best = None
            for a in stays_of.get(s, []):
                if a.admittime <= r.time <= a.dischtime and (
                        best is None or (a.admittime, a.hadm_id) > (best.admittime, best.hadm_id)):
                    best = a
            out[r.record_id] = None if best is None else best.hadm_id
    return out


def loop_pairs(cxr: pd.DataFrame, ecg: pd.DataFrame, window_hours: float = 24.0) -> set:
    """MIMIC-PAIR, nearest: per CXR, the ECGs of its hadm_id or (unless both carry one) within the window;
    smallest |dt|, then a hadm link, then the smaller ecg record_id."""
    window, ecgs_of, out = pd.Timedelta(hours=window_hours), dict(list(ecg.groupby("subject_id"))), set()
    for s, g in cxr.groupby("subject_id"):
        ecgs = list(ecgs_of[s].itertuples(index=False)) if s in ecgs_of else []
        for c in g.itertuples(index=False):
            best = None
            for e in ecgs:
                both = not pd.isna(c.hadm_id) and not pd.isna(e.hadm_id)
                same, dt = both and c.hadm_id == e.hadm_id, abs(e.time - c.time)
                if (same or (not both and dt <= window)) and (best is None or (dt, not same, e.record_id) < best[0]):
                    link = ("hadm", c.hadm_id) if same else ("time", None)
                    best = ((dt, not same, e.record_id), e.record_id, *link)
            if best is not None:
                out.add((c.record_id, *best[1:]))
    return out


# ------------------------------------------------------------------------------------ stages, one process each
def _kib(field: str) -> int:
    return next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field))


class Meter:
    """Seconds and peak RSS (KiB) of one block; the kernel's peak mark is reset on entry (Linux clear_refs 5)."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")
        self.base, self.t0 = _kib("VmRSS"), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.secs, self.peak = time.perf_counter() - self.t0, _kib("VmHWM")


def stages(w: Path, q=None, cfg=None) -> dict:
    """name: (what, input pickles, function of the inputs -> {output pickle: object}; '_' is not saved)."""
    d, ecg_params = w / "data", {**cohort._ecg_params(cfg), "version": cohort.CACHE_VERSION} if cfg else None
    ecg_fn = functools.partial(cohort.load_ecg_row, params=ecg_params, dataset="mimic_ecg")

    def assign(cxr, ecg, tables):
        adm = L.prepare_admissions(tables["admissions"], q)
        return {"adm": adm, "cxr_l": L.assign_admissions(cxr, adm, q, dataset="mimic_cxr"),
                "ecg_l": L.assign_admissions(ecg, adm, q, dataset="mimic_ecg")}

    def splits(cxr_l, ecg_l, adm, pairs):
        s = L.patient_splits({"mimic_cxr": cxr_l["subject_id"], "mimic_ecg": ecg_l["subject_id"],
                              "mimic_iv": adm["subject_id"]}, (0.7, 0.1, 0.2), 0)
        return {"_": [L.apply_splits(df, s) for df in (cxr_l, ecg_l, pairs, adm)]}

    return {
        "read_cxr": ("`mimic_cxr.read` (3 tables) + `filter_views` AP/PA", (),
                     lambda: {"cxr": filter_views(mimic_cxr.read(d / "mimic-cxr-jpg", q), ("AP", "PA"), q)}),
        "read_ecg": ("`mimic_ecg.read` (3 tables)", (), lambda: {"ecg_raw": mimic_ecg.read(d / "mimic-iv-ecg", q)}),
        "ecg_text": ("`cohort.attach_ecg_text` (Table A.2 text, Table A.3 labels)", ("ecg_raw",),
                     lambda e: {"ecg": cohort.attach_ecg_text(e, cfg, q)}),
        "read_iv": ("`mimic_iv.read_tables` (patients, admissions)", (), lambda: {"tables": mimic_iv.read_tables(
            d / "mimiciv", tables=("patients", "admissions"), quality=q)}),
        "assign": ("`prepare_admissions` + `assign_admissions` (CXR, ECG)", ("cxr", "ecg", "tables"), assign),
        "pairs": ("`mimic_pairs` (MIMIC-PAIR, nearest)", ("cxr_l", "ecg_l"),
                  lambda c, e: {"pairs": L.mimic_pairs(c, e, 24.0, "nearest", q)}),
        "tasks": ("`task_links` (CXR/ECG nearest to admittime)", ("cxr_l", "ecg_l", "adm"),
                  lambda c, e, a: {"_": L.task_links({"cxr": c, "ecg": e}, a, 24.0, 24.0)}),
        "labels": ("`mortality_labels` + `readmission_labels`", ("adm",),
                   lambda a: {"_": (L.mortality_labels(a, q), L.readmission_labels(a, 30, False, q))}),
        "splits": ("`patient_splits` + 4 x `apply_splits`", ("cxr_l", "ecg_l", "adm", "pairs"), splits),
        "link_cohort": ("`link_cohort` (the five stages above, as the pipeline calls them)",
                        ("cxr", "ecg", "tables"), lambda c, e, t: {"_": L.link_cohort(cfg, c, e, t, q)}),
        "cache_prep": ("`cache.build` before decoding: `cache_key` + `to_dict('records')`, ECGs", ("ecg",),
                       lambda e: {"_": (cache.cache_key("ecg", e, ecg_params, (12, 1000), np.float32, ecg_fn),
                                        e.to_dict("records"))}),
    }


def run_child(stage: str, w: Path, a) -> dict:
    """Load the stage's inputs, time it under a Meter, save its outputs; return the measurements."""
    m, cfg, info = Meter(), load_profile("paper"), {}
    if stage == "generate":
        with m:
            info = generate(w / "data", a.scale)
    elif stage in ("baseline", "cache_rate"):
        info = baseline(w, m, a) if stage == "baseline" else cache_rate(w, m, cfg)
    else:
        _, inputs, fn = stages(w, QualityLog(), cfg)[stage]
        args = [pd.read_pickle(w / f"{k}.pkl") for k in inputs]
        with m:
            out = fn(*args)
        for k, v in out.items():
            if k != "_":
                pd.to_pickle(v, w / f"{k}.pkl")
        rows = lambda x: len(x["admissions"]) if isinstance(x, dict) else len(x)   # noqa: E731
        info["rows"] = sum(map(rows, args)) if args else sum(map(rows, out.values()))
    return {"stage": stage, "seconds": m.secs, "peak_mib": m.peak / 1024, "extra_mib": max(m.peak - m.base, 0) / 1024,
            **info}


def baseline(w: Path, m: Meter, a) -> dict:
    """The per-patient loops on a random subsample of subjects (all their records), asserted equal to the
    library's full-run results restricted to those subjects (every rule is per subject)."""
    adm, cxr_l, ecg_l, pairs = (pd.read_pickle(w / f"{k}.pkl") for k in ("adm", "cxr_l", "ecg_l", "pairs"))
    subjects = pd.unique(pd.concat([cxr_l["subject_id"], ecg_l["subject_id"], adm["subject_id"]]))
    frac = min(1.0, a.baseline_subjects / len(subjects))
    keep = set(np.random.default_rng(1).choice(subjects, int(round(frac * len(subjects))), replace=False))
    c, e = (df.loc[df["subject_id"].isin(keep), ["record_id", "subject_id", "time"]].reset_index(drop=True)
            for df in (cxr_l, ecg_l))
    ad = adm.loc[adm["subject_id"].isin(keep), ["subject_id", "hadm_id", "admittime", "dischtime"]]
    res = {"frac": frac, "sub_records": len(c) + len(e), "records": len(cxr_l) + len(ecg_l)}
    with m:
        t0 = time.perf_counter()
        hc, he, t1 = loop_assign(c, ad), loop_assign(e, ad), time.perf_counter()
        c["hadm_id"], e["hadm_id"] = (pd.array(df["record_id"].map(h), "Int64") for df, h in ((c, hc), (e, he)))
        t2 = time.perf_counter()
        lp = loop_pairs(c, e, 24.0)
        res.update(loop_assign_s=t1 - t0, loop_pairs_s=time.perf_counter() - t2)
    lib_h = pd.concat([cxr_l, ecg_l]).set_index("record_id")["hadm_id"]
    for df in (c, e):
        assert lib_h.reindex(df["record_id"]).reset_index(drop=True).equals(df["hadm_id"]), "admission links differ"
    lib_p = {(r.cxr_record_id, r.ecg_record_id, r.link, None if pd.isna(r.hadm_id) else int(r.hadm_id))
             for r in pairs[pairs["subject_id"].isin(keep)].itertuples(index=False)}
    assert lib_p == lp, "MIMIC-PAIR differs"
    return {**res, "rows": len(c) + len(e), "pairs_checked": len(lp)}


def cache_rate(w: Path, m: Meter, cfg) -> dict:
    """records/s of cache.build at the paper profile's shapes, in process and with 2 workers."""
    from PIL import Image
    out, jobs, smoke = {}, [], load_profile("smoke")
    if Path(smoke.mimic_ecg_root).is_dir():                          # the real WFDB format and size (500 Hz, 10 s)
        ecg = load_manifest("mimic_ecg", smoke)
        ecg = pd.concat([ecg.assign(record_id=ecg["record_id"] + f"-{i}") for i in range(4)], ignore_index=True)
        params = {**cohort._ecg_params(cfg), "version": cohort.CACHE_VERSION}
        jobs.append(("ecg", ecg, functools.partial(cohort.load_ecg_row, params=params, dataset="mimic_ecg"),
                     (12, int(cfg.ecg_fs * cfg.ecg_seconds)), np.float32, params))
    rng, paths = np.random.default_rng(0), [str(w / f"cxr{i}.jpg") for i in range(6)]
    for p in paths:                                                  # smooth content + noise, 2544 x 3056, q95
        small = Image.fromarray(rng.integers(0, 255, (40, 32), dtype=np.uint8)).resize((2544, 3056), Image.BICUBIC)
        arr = np.asarray(small, float) + rng.normal(0, 1.5, (3056, 2544))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p, quality=95)
    out["cxr_jpg_mb"] = float(np.mean([os.path.getsize(p) for p in paths]) / 1e6)
    man = pd.DataFrame({"record_id": [f"img{i}" for i in range(36)], "path": [paths[i % 6] for i in range(36)]})
    jobs.append(("cxr", man, functools.partial(cohort.load_cxr_row, size=cfg.cxr_cache_size, mode=cfg.cxr_resize),
                 (cfg.cxr_cache_size,) * 2, np.uint8, {"size": cfg.cxr_cache_size, "mode": cfg.cxr_resize}))
    with m:
        for name, man, fn, shape, dtype, params in jobs:
            out[f"{name}_n"] = len(man)
            for workers in (0, 2):
                t0 = time.perf_counter()
                cache.build(f"rate-{name}-w{workers}", man, fn, shape, dtype, params, w / "cache", None, workers, False)
                out[f"{name}_w{workers}_per_s"] = len(man) / (time.perf_counter() - t0)
    return out


def report(a, res: dict, load0: float) -> None:
    g, b, c = res["generate"], res.get("baseline", {}), res.get("cache_rate", {})
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    print(f"**Machine:** {os.uname().machine}, {os.cpu_count()} cores, {mem:.0f} GiB; load average {load0:.2f} at "
          f"start, {os.getloadavg()[0]:.2f} at end. `--scale {a.scale:g}`: {g['patients']:,} patients, "
          f"{g['admissions']:,} admissions, {g['cxr_images']:,} CXR images ({g['cxr_studies']:,} studies), "
          f"{g['ecgs']:,} ECGs; same-subject rows CXR x ECG {g['cxr_x_ecg_rows']:,}, ECG x admission "
          f"{g['ecg_x_adm_rows']:,}; most per patient "
          f"(admissions, CXR images, ECGs) {g['max_per_patient']}; tables written in {g['seconds']:.0f} s.\n")
    print("| stage | what | rows in | seconds | peak RSS (MiB) | above inputs (MiB) |\n|---|---|---|---|---|---|")
    for name, (what, _, _) in stages(Path(".")).items():
        r = res.get(name, {"error": "not run"})
        print(f"| {name} | {what} | failed: {r['error']} | | | |" if "error" in r else
              f"| {name} | {what} | {r['rows']:,} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {r['extra_mib']:.0f} |")
    total = sum(res.get(k, {}).get("seconds", 0) for k in ("read_cxr", "read_ecg", "ecg_text", "read_iv",
                                                           "link_cohort"))
    print(f"| **total** | reading + ECG text + `link_cohort` | | **{total:.1f}** | | |\n")
    if "loop_assign_s" in b and "seconds" in res.get("assign", {}) and "seconds" in res.get("pairs", {}):
        x, sub = b["records"] / b["sub_records"], b["frac"] < 1
        print(f"Per-patient loop (groupby subject, Python loops over the subject's stays / ECGs), timed on "
              f"{100 * b['frac']:.1f}% of the subjects ({b['sub_records']:,} of {b['records']:,} records)"
              f"{f', extrapolated linearly (x{x:.1f})' if sub else ''}; asserted identical to the library's full-run "
              f"result on those subjects ({b['pairs_checked']:,} pairs):\n")
        print("| rule | library (s) | per-patient loop (s) | speed-up | loop on the subsample (s) |\n"
              "|---|---|---|---|---|")
        for rule, k in (("admission link (CXR + ECG)", "assign"), ("MIMIC-PAIR", "pairs")):
            full = b[f"loop_{k}_s"] * x
            print(f"| {rule} | {res[k]['seconds']:.2f} | {full:.1f}{' (extrapolated)' * sub} | "
                  f"{full / res[k]['seconds']:.0f}x | {b[f'loop_{k}_s']:.2f} |")
    else:
        print(f"Per-patient loop baseline: {b.get('error', 'not run')}")
    if "cxr_n" in c:
        kept = res["read_cxr"]["rows"] / g["cxr_images"] if "rows" in res.get("read_cxr", {}) else 1.0
        on = f"{c['cxr_n']} synthetic 2544 x 3056 JPGs ({c['cxr_jpg_mb']:.1f} MB, q95) -> 256 x 256 uint8"
        rows = [("ECG", "ecg", f"{c.get('ecg_n')} smoke WFDB records (500 Hz, 10 s) -> 12 x 1000 float32",
                 FULL["ecgs"], 48000)] * ("ecg_n" in c) + [
            ("CXR, all images", "cxr", on, FULL["cxr_images"], 65536),
            (f"CXR, AP/PA only ({100 * kept:.0f}%)", "cxr", on, int(FULL["cxr_images"] * kept), 65536)]
        print("\nCache build (`cache.build`, paper profile shapes) measured now, extrapolated to the full datasets at "
              "the better of the two rates:\n\n| data | measured on | records/s, 1 process | records/s, 2 workers | "
              "full-size records | hours | disk |\n|---|---|---|---|---|---|---|")
        for label, k, on, n, nbytes in rows:
            r0, r2 = c[k + "_w0_per_s"], c[k + "_w2_per_s"]
            hours = n / max(r0, r2) / 3600
            print(f"| {label} | {on} | {r0:.0f} | {r2:.0f} | {n:,} | {hours:.1f} | {n * nbytes / 1e9:.1f} GB |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = full MIMIC sizes")
    ap.add_argument("--baseline-subjects", type=int, default=15000, help="subjects in the per-patient loop's subsample")
    ap.add_argument("--skip-cache", action="store_true", help="skip the cache-build rate measurement")
    ap.add_argument("--keep", default=None, help="work folder to keep (synthetic tables, stage pickles)")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)     # stage, work folder
    a = ap.parse_args(argv)
    if a.child:
        return print(json.dumps(run_child(a.child[0], Path(a.child[1]), a)))
    w = Path(a.keep or tempfile.mkdtemp(prefix="medbind-scale-"))
    w.mkdir(parents=True, exist_ok=True)
    load0, res = os.getloadavg()[0], {}
    try:
        for name in ["generate", *stages(w), "baseline"] + ([] if a.skip_cache else ["cache_rate"]):
            p = subprocess.run([sys.executable, __file__, "--child", name, str(w), "--scale", str(a.scale),
                                "--baseline-subjects", str(a.baseline_subjects)], capture_output=True, text=True)
            res[name] = r = (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
                             else {"error": (p.stderr.strip().splitlines() or ["?"])[-1]})
            print(f"  {name}: {r.get('seconds', 0):.1f} s, peak {r.get('peak_mib', 0):.0f} MiB {r.get('error', '')}",
                  file=sys.stderr, flush=True)
            if "error" in r and name in ("generate", "read_cxr", "read_ecg", "ecg_text", "read_iv", "assign"):
                break
    finally:
        if not a.keep:
            shutil.rmtree(w, ignore_errors=True)
    if "error" in res["generate"]:
        sys.exit(f"generation failed: {res['generate']['error']}")
    report(a, res, load0)


if __name__ == "__main__":
    main()
