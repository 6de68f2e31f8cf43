"""Table 3: cross-modality zero-shot on MIMIC-PAIR test (hypertrophy from a CXR against ECG prototypes,
cardiomegaly from an ECG against CXR prototypes)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import paper
from ..metrics.crossmodal import cross_modal_zero_shot
from ..metrics.paired import record
from .pairs import pair_embeddings
from ..metrics.protocol import EvalSettings, with_settings, eval_settings
from .format import ci_str
from ..layout import RunLayout
from .. import registry
from .artifacts import Artifacts, row_systems

TABLE3_SYSTEMS = registry.table_rows("table3")
TABLE3_TASKS = {"hypertrophy_from_cxr": "Hypertrophy from CXR (ECG support)",
                "cardiomegaly_from_ecg": "Cardiomegaly from ECG (CXR support)"}


@with_settings
def table3_crossmodal(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                      systems: Sequence[str] = TABLE3_SYSTEMS, cache_dir=None, per_query: dict | None = None
                      ) -> pd.DataFrame:
    """Table 3: cross-modality zero-shot on the MIMIC-PAIR test pairs with prototypes from the training
    pairs (``crossmodal.cross_modal_zero_shot``). Hypertrophy from CXR: test CXR vs the two ECG prototypes
    (HYP / other, labelled training ECGs); Cardiomegaly from ECG: test ECG vs CXR prototypes. Balanced
    accuracy is undefined when the test pairs hold only one class: then it is NaN (with the accuracy on
    the class present in ``note``), never a one-class "balanced" accuracy. ``per_query``: receives each system's
    per-query predictions (``paired.paired_differences``)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    cache_dir = Path(cache_dir) if cache_dir is not None else RunLayout(cfg).support_embeddings
    sysd = row_systems(s.untrained_variant)
    rows = []
    for key in systems:
        system = sysd[key]
        te = pair_embeddings(art, system, "test", s, cache_dir)
        tr = pair_embeddings(art, system, "train", s, cache_dir)
        for task, label in TABLE3_TASKS.items():
            hyp = task == "hypertrophy_from_cxr"
            qmod, smod, col = ("cxr", "ecg", "hyp") if hyp else ("ecg", "cxr", "cardiomegaly")
            qm, sm = te["pairs"][col].notna().to_numpy(), tr["pairs"][col].notna().to_numpy()
            yq, ys = te["pairs"][col].to_numpy()[qm].astype(int), tr["pairs"][col].to_numpy()[sm].astype(int)
            row = {"system": key, "system_label": system.label, "task": task, "task_label": label,
                   "query_modality": qmod.upper(), "support_modality": smod.upper(),
                   "n_queries": int(qm.sum()), "n_query_positive": int(yq.sum()), "n_support": int(sm.sum()),
                   "n_support_positive": int(ys.sum()), "n_excluded_unlabelled": int((~qm).sum()),
                   "paper": paper.table3(task, key), "chance": 50.0, "note": system.note}
            if len(np.unique(ys)) < 2:
                row.update(balanced_accuracy=math.nan, lo=math.nan, hi=math.nan,
                           note="support pairs hold one class only: no prototype for the other")
            else:
                r = cross_modal_zero_shot(te[qmod][qm], yq, tr[smod][sm], ys, task=label, query_modality=qmod,
                                          support_modality=smod, groups=te["pairs"]["subject_id"].astype(str)
                                          .to_numpy()[qm], n_boot=s.n_boot, seed=s.seed, alpha=s.alpha,
                                          return_predictions=True)
                if len(np.unique(yq)) < 2:
                    present = int(yq[0]) if len(yq) else -1
                    row.update(balanced_accuracy=math.nan, lo=math.nan, hi=math.nan,
                               note=(f"test pairs hold only class {present} (1 = finding): balanced accuracy "
                                     f"undefined; accuracy on that class = {r['balanced_accuracy']:.1f}"))
                else:
                    row.update(balanced_accuracy=r["balanced_accuracy"], lo=r["balanced_accuracy_lo"],
                               hi=r["balanced_accuracy_hi"])
                    record(per_query, label, key, r["predictions"], kind="balanced_accuracy", y=yq, n_classes=2,
                           groups=te["pairs"]["subject_id"].astype(str).to_numpy()[qm])
            rows.append(row)
    df = pd.DataFrame(rows)
    params = {**s.as_dict(), "table": "Table 3, cross-modality zero-shot", "query": "MIMIC-PAIR test",
              "support": "MIMIC-PAIR train (class prototypes = re-normalised mean embeddings)",
              "labels": "HYP from the ECG's Table A.3 labels (unlabelled ECGs excluded); Cardiomegaly = CheXpert "
                        "1.0 on the CXR (unlabelled studies excluded)", "ci": "patient-level cluster bootstrap"}
    for k in ("n_boot", "seed", "cardiomegaly_uncertain"):
        df[k] = params[k]
    df.attrs["params"] = params
    return df


def table3_wide(df: pd.DataFrame) -> pd.DataFrame:
    """Paper-shaped Table 3: rows = systems, one column per task, cells 'ours [lo, hi] (paper)'."""
    out = []
    for key in dict.fromkeys(df["system"]):
        d = df[df["system"] == key].set_index("task")
        line = {"System": d["system_label"].iloc[0]}
        for task, label in TABLE3_TASKS.items():
            if task in d.index:
                x = d.loc[task]
                line[label] = ci_str(x["balanced_accuracy"], x["lo"], x["hi"], x["paper"])
                line[f"n test (+) {task.split('_')[0]}"] = f"{x['n_queries']} ({x['n_query_positive']})"
        out.append(line)
    return pd.DataFrame(out)


def describe_table3(df: pd.DataFrame) -> list[str]:
    """Sentences from Table 3: per task the best defined system vs chance and the paper, or why undefined."""
    out = []
    for task, label in TABLE3_TASKS.items():
        d = df[df["task"] == task]
        ok = d.dropna(subset=["balanced_accuracy"])
        if ok.empty:
            r = d.iloc[0]
            out.append(f"{label}: undefined for every system - the test pairs hold {r['n_query_positive']} "
                       f"positives among {r['n_queries']} labelled queries (support: {r['n_support_positive']} of "
                       f"{r['n_support']}).")
            continue
        b = ok.loc[ok["balanced_accuracy"].idxmax()]
        pub = d.dropna(subset=["paper"])
        line = (f"{label}: best {b['system_label']} {b['balanced_accuracy']:.1f} [{b['lo']:.1f}, {b['hi']:.1f}] "
                f"(chance 50; {int((ok['lo'] > 50).sum())} of {len(ok)} systems with a CI above 50).")
        if len(pub):
            pb = pub.loc[pub["paper"].idxmax()]
            line += (f" Paper's best: {pb['system_label']} {pb['paper']:.1f}"
                     + (" - same winner." if pb["system"] == b["system"] else " - a different winner here."))
        out.append(line)
    return out


def plot_table3(df: pd.DataFrame):
    """Table 3 as a dot plot per task: ours with CI (blue), the paper's number (hollow diamond), chance 50;
    undefined cells are labelled at the left edge."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TABLE3_TASKS), figsize=(11, 0.55 * df["system"].nunique() + 1.4), sharey=True)
    for ax, (task, label) in zip(np.atleast_1d(axes), TABLE3_TASKS.items()):
        d = df[df["task"] == task].reset_index(drop=True)
        y = np.arange(len(d))
        ok = d["balanced_accuracy"].notna().to_numpy()
        ax.errorbar(d.loc[ok, "balanced_accuracy"], y[ok], xerr=[d.loc[ok, "balanced_accuracy"] - d.loc[ok, "lo"],
                    d.loc[ok, "hi"] - d.loc[ok, "balanced_accuracy"]], fmt="o", color="tab:blue", capsize=3,
                    label="ours (95% CI)")
        ax.plot(d["paper"], y, "D", color="k", mfc="none", label="paper")
        for i in y[~ok]:
            ax.text(1, i, "ours undefined (one class in test)", va="center", ha="left", fontsize=7, color="0.4")
        ax.axvline(50, color="k", ls="--", lw=0.8)
        ax.set(xlim=(0, 100), ylim=(-0.6, len(d) - 0.4), xlabel="balanced accuracy (%)", title=label)
        ax.set_yticks(y, d["system_label"])
    np.atleast_1d(axes)[-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
