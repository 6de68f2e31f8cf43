"""Published numbers, as data, for the side-by-side columns of notebooks 03-07.

Source: MEDBind (Gao, Kim, Austin, McIntosh; MICCAI 2024), Tables 1-4, as transcribed in
``docs/METHOD.md`` "Published numbers" (and MEDCSP's headline numbers from section 2). Percentages on the
0-100 scale. A key that is absent means the paper (or METHOD.md) gives no number for that cell - never 0.

System keys are the suite's variant names (``medbind_bd``, ``medbind_nm``, ``cxr_clip``, ``medclip``,
``ecg_clip``), ``clip`` (general CLIP, not retrained here) and encoder-zoo combinations written
``"<cxr system>+ecg_clip"``.
"""
from __future__ import annotations

import math

PAPER = "MEDBind (Gao et al., MICCAI 2024)"

# Table 2: modality-to-text retrieval, (R@1, R@10) per dataset and system.
TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "mimic_cxr": {"medbind_bd": (44.7, 91.0), "medbind_nm": (43.8, 88.5), "cxr_clip": (21.6, 60.2),
                  "medclip": (2.8, 18.0), "pretrained_clip": (1.0, 10.5)},   # MEDBind's CLIP: the public model
    "chexpert_5x200": {"medbind_bd": (2.4, 20.0), "medbind_nm": (2.4, 22.1), "medclip": (2.9, 31.2)},
    "openi": {"medbind_bd": (13.6, 39.7), "medbind_nm": (14.3, 41.1), "cxr_clip": (14.1, 39.3)},
    "mimic_ecg": {"medbind_bd": (53.6, 94.5), "medbind_nm": (50.2, 93.9), "ecg_clip": (51.5, 95.5)},
    "ptbxl": {"medbind_bd": (1.6, 19.2), "medbind_nm": (1.9, 18.2), "ecg_clip": (2.1, 17.4)},
}

# Table 2: RSUM per modality = sum over the modality's datasets of (R@1 + R@10), as printed.
TABLE2_RSUM: dict[str, dict[str, float]] = {
    "cxr": {"medbind_bd": 211.4, "medbind_nm": 212.2, "cxr_clip": 157.7},
    "ecg": {"medbind_bd": 168.9, "medbind_nm": 164.2, "ecg_clip": 166.5},
}

# Table 3: cross-modality zero-shot, balanced accuracy.
TABLE3: dict[str, dict[str, float]] = {
    "hypertrophy_from_cxr": {"medclip+ecg_clip": 60.9, "cxr_clip+ecg_clip": 72.9, "medbind_nm": 73.7,
                             "medbind_bd": 82.1},
    "cardiomegaly_from_ecg": {"medclip+ecg_clip": 73.5, "cxr_clip+ecg_clip": 70.2, "medbind_nm": 69.1,
                              "medbind_bd": 84.6},
}

# Table 4: LLM prompt tuning, accuracy (30-day readmission, in-hospital mortality).
TABLE4: dict[str, tuple[float, float]] = {
    "text_only": (65.0, 74.5), "medclip+ecg_clip": (60.5, 72.0), "cxr_clip+ecg_clip": (59.9, 71.6),
    "medbind_nm": (60.5, 73.6), "medbind_bd": (64.3, 74.8),
}
TABLE4_TASKS = ("readmission", "mortality")

# Table 1: dataset sizes (train, valid, test); None = no such split; single numbers = evaluation-only sets.
TABLE1: dict[str, tuple] = {
    "mimic_cxr": (86853, 12059, 24799), "mimic_ecg": (88291, 12065, 24644), "mimic_pair": (22397, 3292, 6664),
    "ptbxl": (17415, 2183, 2198), "icbeb": (5501, None, 1376), "covid": (11028, None, 2780),
    "rsna": (18678, None, 5338), "chexpert_5x200": (None, None, 1000), "openi": (None, None, 3269),
}

# MEDCSP (Unity in Diversity), headline numbers (METHOD.md section 2).
MEDCSP: dict[str, float] = {
    "mimic_cxr_P@1": 12.06, "mimic_cxr_R@1": 8.74, "mimic_cxr_R@10": 29.51, "mimic_cxr_R@100": 61.74,
    "openi_R@100": 10.25, "covid_precision": 71.98, "covid_recall": 55.00, "covid_f1": 62.36,
    "chexpert_f1": 64.89, "single_source_covid_f1_drop": 15.36, "a_plus_p_covid_f1_drop": 11.56,
}

TABLE2_MODALITY = {"mimic_cxr": "cxr", "chexpert_5x200": "cxr", "openi": "cxr", "mimic_ecg": "ecg", "ptbxl": "ecg"}


def table2(dataset: str, system: str, metric: str) -> float:
    """Published R@1 / R@10 (``metric`` 'R@1' | 'R@10') or the dataset's RSUM (R@1 + R@10) when both are
    published; NaN where the paper gives no number."""
    v = TABLE2.get(dataset, {}).get(system)
    if v is None:
        return math.nan
    if metric == "R@1":
        return v[0]
    if metric == "R@10":
        return v[1]
    if metric == "rsum":
        return round(v[0] + v[1], 1)
    raise ValueError(f"metric must be R@1, R@10 or rsum, got {metric!r}")


def table2_rsum(modality: str, system: str) -> float:
    """Published modality RSUM (NaN if not printed)."""
    return TABLE2_RSUM.get(modality, {}).get(system, math.nan)


def table3(task: str, system: str) -> float:
    """Published Table 3 balanced accuracy (NaN if not printed)."""
    if task not in TABLE3:
        raise ValueError(f"task must be one of {tuple(TABLE3)}, got {task!r}")
    return TABLE3[task].get(system, math.nan)


def table4(task: str, system: str) -> float:
    """Published Table 4 accuracy (percent) of ``system`` on ``task`` ('readmission' | 'mortality'); NaN for a
    row the paper does not have (e.g. our task-text-only reference)."""
    if task not in TABLE4_TASKS:
        raise ValueError(f"task must be one of {TABLE4_TASKS}, got {task!r}")
    v = TABLE4.get(system)
    return math.nan if v is None else v[TABLE4_TASKS.index(task)]

# MEDCSP (Unity in Diversity), per table (docs/MEDCSP.md "Published numbers"); text->image retrieval on held-out
# MIMIC-CXR studies (Table 1) and Open-I (Table 5): P@K and R@K for K = 1, 5, 10, 20, 50, 100. Table 1 scored the
# 1 % hold-out of patients outside its ICU EHR source, so its numbers stand beside our hold-out set, not the MIMIC-CXR test split.
MEDCSP_PAPER = "MEDCSP (Unity in Diversity)"
MEDCSP_KS = (1, 5, 10, 20, 50, 100)
MEDCSP_RETRIEVAL: dict[str, dict[str, dict[str, tuple]]] = {
    "mimic_cxr_holdout": {"medcsp": {"P": (12.06, 6.41, 4.45, 2.97, 1.64, 1.04), "R": (8.74, 21.91, 29.51, 38.04, 50.49, 61.74)},
                          # the best baseline, BiomedCLIP: only its R@100 is in the brief (MEDCSP.md)
                          "pretrained_biomedclip": {"R": (math.nan,) * 5 + (18.73,)}},
    "openi": {"medcsp": {"P": (0.91, 0.63, 0.48, 0.37, 0.25, 0.19), "R": (0.49, 1.74, 2.62, 4.09, 6.92, 10.25)}},
}
# Zero-shot (Table 2: COVID-19 vs normal; Table 6: CheXpert "Enlarged Cardiomediastinum"): (precision, recall, F1).
MEDCSP_ZERO_SHOT: dict[str, dict[str, tuple[float, float, float]]] = {
    "covid": {"medcsp": (71.98, 55.00, 62.36), "pretrained_cxr_clip": (30.49, 96.03, 47.43)},   # public CXR-CLIP
    "chexpert_ec": {"medcsp": (62.93, 66.97, 64.89)},
}
# Figure 7: COVID F1 drop from the full model, as published: the paper does not say whether F1 points or percent
# of the full F1; reports.ablations shows both readings (medcsp_fig7_drop_unit picks the one used).
MEDCSP_ABLATION_F1_DROP: dict[str, float] = {"medcsp_single": 15.36, "medcsp_a_p": 11.56}


def medcsp_retrieval(dataset: str, system: str, metric: str) -> float:
    """Published MEDCSP P@K / R@K (``metric`` like ``"R@10"``); NaN where the paper gives no number."""
    kind, k = metric.split("@")
    try:
        return MEDCSP_RETRIEVAL[dataset][system][kind][MEDCSP_KS.index(int(k))]
    except (KeyError, ValueError):
        return math.nan


def medcsp_zero_shot(task: str, system: str, metric: str) -> float:
    """Published zero-shot precision / recall / f1; NaN where the paper gives no number."""
    try:
        return MEDCSP_ZERO_SHOT[task][system][("precision", "recall", "f1").index(metric)]
    except (KeyError, ValueError):
        return math.nan
