"""MEDCSP Figure 7 (notebook 12): the loss ablations and the single-source model against the full model.

The numbers are notebook 11's protocols (``radiology.radiology_retrieval`` / ``radiology_zero_shot``) restricted to
the ablation rows, and their paired differences to the full model (``radiology.paired_radiology``).

Figure 7 publishes COVID-F1 drops (single-source 15.36, A+P 11.56) without saying their unit: F1 points
(full - ablation) or percent of the full model's F1 (100 (full - ablation) / full). ``drop_readings`` shows both,
each in both units, beside our measured drop in both units; ``medcsp_fig7_drop_unit`` (default ``points``) names the
reading the figure's paper marks (``paper_marks``) and the table's ``used`` / ``ours_minus_paper`` columns take.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .radiology import label_of

__all__ = ["DROP_UNITS", "reading_of", "drop_readings", "drops_display", "paper_marks", "plot_fig7"]

DROP_UNITS = ("points", "percent")


def _check_unit(unit: str) -> None:
    if unit not in DROP_UNITS:
        raise ValueError(f"unit must be one of {DROP_UNITS}, got {unit!r}")


def reading_of(published: float, full_f1: float, unit: str) -> dict:
    """One published drop ``d`` read as ``unit`` against a full-model F1: the drop in F1 points, in percent of the
    full F1, and the ablation's F1 it implies. points: d points = 100 d / full %; percent: d % = d full / 100
    points."""
    _check_unit(unit)
    pts = published if unit == "points" else published * full_f1 / 100
    return {"drop_points": pts, "drop_percent": 100 * pts / full_f1, "ablation_f1": full_f1 - pts}


def _covid_f1(diff: pd.DataFrame, full: str) -> pd.DataFrame:
    d = diff[(diff["set"] == "covid") & (diff["metric"] == "f1") & (diff["b"] == full)]
    return d.drop_duplicates("a").set_index("a")


_OURS = ("ours_full_f1", "ours_ablation_f1", "ours_drop_points", "ours_drop_points_lo", "ours_drop_points_hi",
         "ours_drop_percent")


def _ours(row) -> dict:
    """Our drop from one paired row: full - ablation F1 (points, the paired CI flipped) and percent of our full F1
    (NaN when our full F1 is 0)."""
    if row is None:
        return dict.fromkeys(_OURS, np.nan)
    drop, full = -row["a_minus_b"], row["value_b"]
    return dict(zip(_OURS, (full, row["value_a"], drop, -row["hi"], -row["lo"],
                            100 * drop / full if full else np.nan)))


def drop_readings(diff: pd.DataFrame, published: Mapping[str, float], paper_full_f1: float, unit: str = "points",
                  full: str = "medcsp") -> pd.DataFrame:
    """One row per (ablation with a published drop, reading): the paper's drop in both units under that reading (on
    the paper's full F1) and ours in both units; ``used`` marks ``unit``'s row, ``ours_minus_paper`` compares in the
    reading's own unit. ``diff``: ``paired_radiology`` rows (COVID F1 with b = ``full``)."""
    _check_unit(unit)
    ours, rows = _covid_f1(diff, full), []
    for a, d in published.items():
        o = _ours(ours.loc[a] if a in ours.index else None)
        for r in DROP_UNITS:
            p = reading_of(d, paper_full_f1, r)
            rows.append({"variant": a, "label": label_of(a), "reading": r, "used": r == unit, "published": d,
                         "paper_full_f1": paper_full_f1, "paper_ablation_f1": p["ablation_f1"],
                         "paper_drop_points": p["drop_points"], "paper_drop_percent": p["drop_percent"], **o,
                         "ours_minus_paper": o[f"ours_drop_{r}"] - d})
    return pd.DataFrame(rows)


def drops_display(drops: pd.DataFrame) -> pd.DataFrame:
    """``drop_readings`` as printed: two decimals (the published drops have two; the Markdown writer keeps one), our
    points drop with its paired CI in one cell."""
    f = "{:.2f}".format
    return pd.DataFrame({
        "ablation": drops["label"], "reading": drops["reading"], "used": drops["used"].map({True: "yes", False: ""}),
        "published": drops["published"].map(f), "paper drop (points)": drops["paper_drop_points"].map(f),
        "paper drop (% of full)": drops["paper_drop_percent"].map(f),
        "paper ablation F1": drops["paper_ablation_f1"].map(f),
        "ours drop (points) [CI]": [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in
                                    zip(drops["ours_drop_points"], drops["ours_drop_points_lo"],
                                        drops["ours_drop_points_hi"])],
        "ours drop (% of full)": drops["ours_drop_percent"].map(f),
        "ours - paper (reading's unit)": drops["ours_minus_paper"].map(f)})


def paper_marks(diff: pd.DataFrame, published: Mapping[str, float], unit: str = "points",
                full: str = "medcsp") -> list:
    """The figure's paper mark for each ``diff`` row, in F1 points minus full (NaN off COVID F1): ``-d`` under
    ``points``; under ``percent`` the paper's relative drop on OUR full F1, ``-d / 100 * value_b``, so the mark
    compares relative drops on the figure's axis."""
    _check_unit(unit)
    out = []
    for a, b, s, m, vb in zip(diff["a"], diff["b"], diff["set"], diff["metric"], diff["value_b"]):
        d = published.get(a, np.nan) if (s, m, b) == ("covid", "f1", full) else np.nan
        out.append(-d if unit == "points" else -d * vb / 100)
    return out


def plot_fig7(values: pd.DataFrame, diff: pd.DataFrame, systems: Sequence[str], full: str = "medcsp"):
    """Top: each variant's value with CI per metric (rows in ``systems`` order); bottom: variant minus ``full`` with
    the paired CI (the paper's drop as a diamond). ``values``: long rows (set, metric, system, value, lo, hi);
    ``diff``: ``paired_radiology`` rows (set, metric, a, a_minus_b, lo, hi) with a ``paper`` column in points
    (``paper_marks``)."""
    import matplotlib.pyplot as plt

    others = [v for v in systems if v != full]
    keys = list(dict.fromkeys(zip(diff["set"], diff["metric"])))
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 6.4), squeeze=False)
    for j, (s, m) in enumerate(keys):
        v = values[(values["set"] == s) & (values["metric"] == m)].set_index("system")
        v = v.reindex([k for k in systems if k in v.index])
        y = np.arange(len(v))
        axes[0, j].barh(y, v["value"], xerr=[v["value"] - v["lo"], v["hi"] - v["value"]], color="tab:blue", alpha=.7)
        axes[0, j].set_yticks(y, [label_of(k) for k in v.index] if j == 0 else [""] * len(v), fontsize=7)
        axes[0, j].set_title(f"{s}: {m}", fontsize=9)
        d = diff[(diff["set"] == s) & (diff["metric"] == m)].set_index("a").reindex(others).dropna(subset=["a_minus_b"])
        y = np.arange(len(d))
        axes[1, j].errorbar(d["a_minus_b"], y, xerr=[d["a_minus_b"] - d["lo"], d["hi"] - d["a_minus_b"]], fmt="o",
                            color="tab:red", ms=4)
        axes[1, j].scatter(d["paper"], y, marker="D", color="black", s=16, label="paper")
        axes[1, j].axvline(0, color="grey", lw=.8)
        axes[1, j].set_yticks(y, [label_of(k) for k in d.index] if j == 0 else [""] * len(d), fontsize=7)
        axes[1, j].set_xlabel("minus full (points)", fontsize=8)
    fig.suptitle("MEDCSP Figure 7: ablations (top) and their paired difference to the full model (bottom)", fontsize=10)
    fig.tight_layout()
    return fig
