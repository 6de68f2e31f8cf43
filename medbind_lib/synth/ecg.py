"""12-lead ECG generator: a per-beat dipole model whose morphology carries the latent findings.

Each beat is a sum of Gaussian waves (P, septal q, R, S, T, plus finding-specific components such as
an RBBB R', pacing spikes, infarct Q waves, ST shifts). Every wave has a 3-D heart vector; a lead sees
its projection onto the lead axis (frontal-plane angles for the limb leads, horizontal-plane angles for
V1-V6). A record is ``G (N x W) @ P (W x 12)``: wave time courses times lead projections, so one
10-s record costs a few small matrix products. Heart-rate variability, atrial fibrillation (irregular
RR, no P, fibrillatory baseline), ectopic beats, noise and baseline wander are added on top.
Output leads follow ``constants.LEADS`` (I, II, III, aVR, aVL, aVF, V1-V6), in mV.
"""
from __future__ import annotations

import numpy as np

from ..constants import LEADS

# Lead axes in body coordinates (x: patient left, y: inferior, z: anterior).
_LIMB_DEG = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
_CHEST_DEG = {"V1": 115, "V2": 95, "V3": 75, "V4": 55, "V5": 30, "V6": 5}


def _lead_matrix() -> np.ndarray:
    rows = []
    for name in LEADS:
        if name in _LIMB_DEG:
            a = np.deg2rad(_LIMB_DEG[name])
            rows.append([np.cos(a), np.sin(a), 0.0])
        else:
            a = np.deg2rad(_CHEST_DEG[name])
            rows.append(np.array([np.cos(a), 0.25, np.sin(a)]) * 1.6)   # chest leads: closer, larger
    return np.asarray(rows)             # (12, 3)


LEAD_AXES = _lead_matrix()

# Finding names used by the ECG side (statements, scp codes and the truth table use the same keys).
ECG_FINDINGS = ("lvh", "mi_inferior", "mi_anterior", "lbbb", "rbbb", "avb1", "afib", "paced", "nst",
                "pvc", "pac", "std", "ste", "tachy", "brady", "lad")


def _unit(*v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _waves(f: dict, rng: np.random.Generator) -> list[tuple]:
    """Normal-beat wave list: (name, offset s from R peak, sigma s, amplitude mV, unit vector)."""
    rot = rng.normal(0, 0.12, 3)
    amp = rng.uniform(0.8, 1.2)
    w = [("q", -0.022, 0.009, 0.18, _unit(-0.7, 0.15, 0.7)),
         ("R", 0.0, 0.011, 1.25 * amp, _unit(0.6 + rot[0], 0.7 + rot[1], -0.28 + rot[2])),
         ("S", 0.026, 0.011, 0.45, _unit(-0.35, -0.4, -0.85)),
         ("T", 0.30, 0.05, 0.32, _unit(0.55, 0.65, 0.15))]
    if not f.get("afib") and not f.get("paced"):
        pr = rng.uniform(0.23, 0.30) if f.get("avb1") else rng.uniform(0.13, 0.19)
        w.append(("P", -pr + 0.04, 0.02, 0.16, _unit(0.5, 0.8, 0.15)))
    if f.get("lvh"):
        k = rng.uniform(1.9, 2.5)
        w = [(n, o, s * (1.15 if n in "RS" else 1), a * (k if n in ("R", "S") else 1), d) for n, o, s, a, d in w]
        if rng.random() < 0.5:   # strain: lateral T inversion
            w = [(n, o, s, a, -d if n == "T" else d) for n, o, s, a, d in w]
    if f.get("lbbb") or f.get("paced"):
        # wide QRS: no septal q, slurred broad R to the left-posterior, discordant T
        w = [x for x in w if x[0] not in ("q", "R", "S", "T")]
        w += [("R1", -0.02, 0.022, 1.2, _unit(0.9, 0.35, -0.4)), ("R2", 0.035, 0.025, 1.0, _unit(0.85, 0.2, -0.5)),
              ("T", 0.32, 0.06, 0.35, _unit(-0.7, -0.2, 0.6))]
        if f.get("paced"):
            w.append(("spike", -0.045, 0.0012, 3.0, _unit(*rng.normal(0, 1, 3))))
    elif f.get("rbbb"):
        w += [("R'", 0.065, 0.018, 0.7, _unit(-0.55, 0.0, 0.85)), ("S2", 0.06, 0.02, 0.35, _unit(-0.6, -0.1, 0.3))]
    if f.get("mi_inferior"):
        w += [("Qi", -0.018, 0.014, 0.45, _unit(0.0, -1.0, 0.0))]
        w = [(n, o, s, a, _unit(d[0], -0.5, d[2]) if n == "T" else d) for n, o, s, a, d in w]
    if f.get("mi_anterior"):
        w += [("Qa", -0.018, 0.014, 0.6, _unit(0.0, 0.0, -1.0))]
    if f.get("ste"):
        w.append(("ST", 0.13, 0.05, 0.25, _unit(0.3, 0.3, 0.9) if rng.random() < 0.6 else _unit(0.0, 1.0, 0.0)))
    if f.get("std"):
        w.append(("ST", 0.13, 0.05, 0.18, _unit(-0.8, -0.3, 0.2)))
    if f.get("nst"):
        w = [(n, o, s, a * (0.3 if n == "T" else 1), d) for n, o, s, a, d in w]
    if f.get("lad"):
        w = [(n, o, s, a, _unit(d[0], d[1] - 0.9, d[2]) if n in ("R", "R1", "R2") else d) for n, o, s, a, d in w]
    return w


def _beat_times(f: dict, rng, seconds: float, hr: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times and a per-beat ectopy code (0 normal, 1 PVC, 2 PAC)."""
    rr0 = 60.0 / hr
    n = int(seconds / rr0) + 3
    if f.get("afib"):
        rr = rr0 * rng.gamma(9.0, 1 / 9.0, n)          # irregularly irregular
    else:
        resp = np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * np.arange(n) * rr0 + rng.uniform(0, 6.3))
        rr = rr0 * (1 + 0.03 * resp + rng.normal(0, 0.01, n))
    kind = np.zeros(n, int)
    for code, key in ((1, "pvc"), (2, "pac")):
        if f.get(key):
            cand = np.arange(2, max(3, min(n - 1, int(9.0 / rr0))))     # inside the first 10 s
            idx = rng.choice(cand, size=min(len(cand), int(rng.integers(1, 3))), replace=False)
            kind[idx] = code
            rr[idx - 1] *= 0.65                       # premature
            rr[idx] *= 1.3 if code == 1 else 1.1      # (compensatory) pause
    t = rng.uniform(0.1, 0.6) + np.concatenate([[0], np.cumsum(rr[:-1])])
    keep = t < seconds - 0.05
    return t[keep], kind[keep]


def _gauss_train(n: int, fs: int, centres: np.ndarray, sigma: float, amps: np.ndarray) -> np.ndarray:
    """Sum of Gaussians (one per beat) evaluated only within +-4 sigma of each centre (fast)."""
    half = max(1, int(np.ceil(4 * sigma * fs)))
    k = np.arange(-half, half + 1)
    idx = np.round(centres * fs).astype(int)[:, None] + k[None, :]
    vals = amps[:, None] * np.exp(-0.5 * ((idx / fs - centres[:, None]) / sigma) ** 2)
    ok = (idx >= 0) & (idx < n)
    return np.bincount(idx[ok], weights=vals[ok], minlength=n)[:n]


def _pvc_waves(rng) -> list[tuple]:
    d = _unit(*rng.normal(0, 1, 3))
    return [("V1", 0.0, 0.035, 1.6, d), ("VT", 0.3, 0.07, 0.5, -d)]


def synth_ecg(f: dict, rng: np.random.Generator, fs: int = 500, seconds: float = 10.0,
              noise: float = 0.02, wander: float = 0.08, gain: float = 1.0) -> np.ndarray:
    """One record (N, 12) in mV for a finding dict; ``noise``/``wander``/``gain`` set the domain."""
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    hr = rng.uniform(95, 125) if f.get("tachy") else rng.uniform(45, 57) if f.get("brady") else \
        rng.uniform(95, 130) if f.get("afib") and rng.random() < 0.4 else rng.uniform(60, 90)
    if f.get("paced"):
        hr = rng.choice([60.0, 70.0, 80.0])
    beats, kind = _beat_times(f, rng, seconds, hr)
    normal, pvc = _waves(f, rng), _pvc_waves(rng)
    qt_scale = np.sqrt(60.0 / hr)
    comps, vecs = [], []
    for waves, sel in ((normal, kind != 1), (pvc, kind == 1)):
        bt = beats[sel]
        if len(bt) == 0:
            continue
        for name, off, sig, amp, d in waves:
            o = off * qt_scale if name in ("T", "VT") else off
            if name == "P" and (kind == 2).any():                 # PACs: early, differently shaped P
                pa = np.where(kind[sel] == 2, -0.6, 1.0)
            else:
                pa = np.ones(len(bt))
            comps.append(_gauss_train(n, fs, bt + o, sig, pa * amp))
            vecs.append(d)
    g = np.stack(comps, 1)                                     # (N, W)
    sig = g @ (np.asarray(vecs) @ LEAD_AXES.T)                 # (N, 12)
    if f.get("afib"):
        fw = sum(rng.uniform(0.02, 0.05) * np.sin(2 * np.pi * rng.uniform(4.5, 7.5) * t + rng.uniform(0, 6.3))
                 for _ in range(3))
        sig += fw[:, None] * (_unit(0.2, 0.5, 0.8) @ LEAD_AXES.T)[None, :]
    sig *= gain
    bw = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 6.3))
             for _ in range(2))
    sig += wander * bw[:, None] * rng.uniform(0.5, 1.5, 12)[None, :]
    sig += rng.normal(0, noise, sig.shape)
    if rng.random() < 0.3:                                      # mains hum
        sig += 0.01 * np.sin(2 * np.pi * 60 * t + rng.uniform(0, 6.3))[:, None]
    return sig.astype(np.float32)


def intervals(f: dict, rng: np.random.Generator) -> dict:
    """Machine-measured intervals (ms) and axes (deg); 29999 = not measured (AF has no P wave)."""
    hr = 105 if f.get("tachy") else 52 if f.get("brady") else int(rng.uniform(60, 90))
    rr = int(60000 / hr + rng.normal(0, 15))
    p_on = int(rng.integers(30, 60))
    pr = int(rng.uniform(230, 300)) if f.get("avb1") else int(rng.uniform(130, 190))
    wide = f.get("lbbb") or f.get("rbbb") or f.get("paced")
    qrs = int(rng.uniform(130, 170)) if wide else int(rng.uniform(80, 105))
    qt = int(380 * np.sqrt(rr / 1000) + rng.normal(0, 15))
    no_p = f.get("afib") or f.get("paced")
    p_end = p_on + int(rng.uniform(90, 120))
    return dict(rr_interval=rr, p_onset=29999 if no_p else p_on, p_end=29999 if no_p else p_end,
                qrs_onset=p_on + pr, qrs_end=p_on + pr + qrs, t_end=p_on + pr + qt,
                p_axis=29999 if no_p else int(rng.normal(55, 15)),
                qrs_axis=int(rng.normal(-45, 10)) if f.get("lad") or f.get("lbbb") else int(rng.normal(45, 25)),
                t_axis=int(rng.normal(40, 30)))


# --- MIMIC-IV-ECG machine statements (phrases the Table A.3 rules can label) -------------------------
NORMAL_SETS = (["Sinus rhythm", "Normal ECG"], ["Sinus rhythm", "Normal ECG"], ["Sinus rhythm", "Normal ECG"],
               ["Sinus bradycardia", "Otherwise normal ECG"], ["Sinus rhythm", "Within normal limits"])
DISALLOWED = ("Borderline ECG", "Poor quality data, interpretation may be adversely affected",
              "Warning: Data quality may affect interpretation", "Possibly abnormal ECG",
              "Probable left atrial enlargement")


def machine_statements(f: dict, rng: np.random.Generator) -> list[str]:
    """Ordered machine statements for one ECG; normal ECGs reuse a few identical statement sets."""
    if not any(f.get(k) for k in ECG_FINDINGS if k not in ("brady",)):
        s = list(NORMAL_SETS[int(rng.choice(len(NORMAL_SETS), p=[0.3, 0.3, 0.2, 0.1, 0.1]))])
        if f.get("brady"):
            s = ["Sinus bradycardia", "Otherwise normal ECG"]
        return s
    if f.get("paced"):
        s = ["Ventricular pacing", "Pacemaker rhythm - no further rhythm analysis"]
    elif f.get("afib"):
        s = ["Atrial fibrillation" + (" with rapid ventricular response" if f.get("tachy") else "")]
    else:
        s = ["Sinus tachycardia" if f.get("tachy") else "Sinus bradycardia" if f.get("brady") else "Sinus rhythm"]
    if f.get("pac"):
        s[0] += " with PAC(s)"
    if f.get("pvc"):
        s.append("Ventricular premature complex")
    if f.get("avb1"):
        s.append("1st degree A-V block")
    if f.get("lbbb"):
        s.append("Left bundle branch block")
    if f.get("rbbb"):
        s.append("Right bundle branch block")
    if f.get("lad") and not f.get("lbbb"):
        s.append("Left axis deviation")
    if f.get("lvh"):
        s.append(str(rng.choice(["Left ventricular hypertrophy",
                                 "Left ventricular hypertrophy with repolarization abnormality"])))
        if rng.random() < 0.3:
            s.append("Left atrial enlargement")
    if f.get("mi_inferior"):
        s.append("Inferior infarct - age undetermined")
    if f.get("mi_anterior"):
        s.append(str(rng.choice(["Anterior infarct - age undetermined", "Septal infarct - age undetermined"])))
    if f.get("ste"):
        s.append("ST elevation, consider acute infarct")
    if f.get("std"):
        s.append("Lateral ST changes - consider ischemia")
    if f.get("nst"):
        s.append("Nonspecific T wave changes")
    s.append("Abnormal ECG")
    return s


# --- PTB-XL statements ------------------------------------------------------------------------------
def scp_codes(f: dict, rng: np.random.Generator) -> dict:
    """PTB-XL scp_codes {code: likelihood} consistent with the waveform's findings."""
    lik = lambda: float(rng.choice([100.0, 100.0, 80.0, 50.0, 35.0, 15.0]))  # noqa: E731
    d = {}
    if f.get("mi_inferior"):
        d["IMI"] = lik()
    if f.get("mi_anterior"):
        d["ASMI"] = lik()
    if f.get("lvh"):
        d["LVH"] = lik()
    if f.get("lbbb"):
        d["CLBBB"] = 100.0
    if f.get("rbbb"):
        d["CRBBB"] = 100.0
    if f.get("avb1"):
        d["1AVB"] = 100.0
    if f.get("lad") and not f.get("lbbb"):
        d["LAFB"] = 100.0
    if f.get("nst"):
        d["NDT"] = 100.0
    if f.get("std"):
        d["ISC_"] = lik()
    if f.get("pvc"):
        d["PVC"] = 100.0
    if f.get("pac"):
        d["PAC"] = 100.0
    if not d and not f.get("afib") and not f.get("paced"):
        d["NORM"] = float(rng.choice([100.0, 100.0, 80.0]))
    rhythm = "AFIB" if f.get("afib") else "PACE" if f.get("paced") else "STACH" if f.get("tachy") else \
        "SBRAD" if f.get("brady") else "SR"
    d[rhythm] = 0.0
    return d


PTBXL_REPORTS = {"NORM": "sinusrhythmus normales ekg", "IMI": "inferiorer infarkt alter unbest.",
                 "ASMI": "anteroseptaler infarkt alter unbest.", "LVH": "linksventrikuläre hypertrophie",
                 "CLBBB": "kompletter linksschenkelblock", "CRBBB": "kompletter rechtsschenkelblock",
                 "1AVB": "av block i", "LAFB": "linksanteriorer hemiblock", "NDT": "t-veränderungen unspezifisch",
                 "ISC_": "st-senkung wie bei ischaemie", "PVC": "ventrikuläre extrasystole(n)",
                 "PAC": "supraventrikuläre extrasystole(n)", "AFIB": "vorhofflimmern",
                 "PACE": "schrittmacher-ekg", "STACH": "sinustachykardie", "SBRAD": "sinusbradykardie",
                 "SR": "sinusrhythmus"}


def ptbxl_report(codes: dict, rng: np.random.Generator) -> str:
    """Mostly German free text, as in PTB-XL (rhythm first, then statements)."""
    order = sorted(codes, key=lambda c: (codes[c] != 0.0 or c == "NORM", c))
    words = [PTBXL_REPORTS[c] for c in order if c in PTBXL_REPORTS and not (c == "SR" and "NORM" in codes)]
    if rng.random() < 0.15:
        return ". ".join(c.lower() for c in order) + "."
    return " ".join(words)
