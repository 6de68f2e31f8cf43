"""MEDCSP Figure 7 (notebook 12): the loss ablations and the single-source model against the full model.

The numbers are notebook 11's protocols (``radiology.radiology_retrieval`` / ``radiology_zero_shot``) restricted to
the ablation rows, and their paired differences to the full model (``radiology.paired_radiology``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .radiology import label_of

__all__ = ["plot_fig7"]


def plot_fig7(values: pd.DataFrame, diff: pd.DataFrame, systems: Sequence[str], full: str = "medcsp"):
    """Top: each variant's value with CI per metric (rows in ``systems`` order); bottom: variant minus ``full`` with
    the paired CI (the paper's drop as a diamond). ``values``: long rows (set, metric, system, value, lo, hi);
    ``diff``: ``paired_radiology`` rows (set, metric, a, a_minus_b, lo, hi) with a ``paper`` column."""
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
