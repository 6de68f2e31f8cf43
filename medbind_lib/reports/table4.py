"""Table 4 for notebook 07: fine-tune every (task, row, seed), score the test split, and show it beside the
paper's accuracy.

``table4(cfg, settings, frames, linked)`` returns the long frame (one row per task and system: seed-averaged
accuracy / AUROC / balanced accuracy with patient-bootstrap CIs and seed SDs, the majority-class accuracy,
split sizes, how many test admissions had each modality, the paper's accuracy, the selected epochs, the
threshold rule ``llm_threshold`` and its per-seed thresholds) with the settings in ``attrs["params"]``;
``table4_wide`` is the paper-shaped view, ``plot_table4`` the figure and ``describe_table4`` the sentences of
the reading.

Thresholds are applied here, to each fit's stored validation predictions (``metrics.choose_threshold``), not at
fit time, so changing ``llm_threshold`` re-scores cached fits without refitting.
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import pandas as pd

from .. import registry
from . import paper
from .format import ci_str, save_table  # noqa: F401 (save_table re-exported)
from ..metrics.protocol import torch_threads
from ..quality import QualityLog
from ..llm.features import SYSTEMS, required_checkpoints, system_inputs
from ..llm.metrics import choose_threshold, majority_accuracy, seed_averaged
from ..llm.model import load_lm
from ..llm.train import make_bar, resolve_device, run_fits

TASK_LABELS = {"readmission": "30-day readmission", "mortality": "In-hospital mortality"}
# How each llm_threshold rule sets the decision threshold (the reading names the rule behind the numbers).
THRESHOLD_RULES = {
    "valid_accuracy": "the threshold that maximises accuracy on the validation split (per seed)",
    "valid_youden": "the threshold that maximises Youden's J on the validation split (per seed; a balanced-accuracy "
                    "rule, so accuracy may fall below the majority class)",
    "fixed_0.5": "a fixed 0.5 threshold (with class-weighted training the balanced-accuracy point, so accuracy may "
                 "fall below the majority class by design)",
}


def table4(cfg, settings, frames: Mapping[str, pd.DataFrame], linked: Mapping, quality: QualityLog | None = None,
           device=None) -> pd.DataFrame:
    """The long Table 4 frame (module docstring). Fails before training if a needed checkpoint is missing."""
    required_checkpoints(cfg, settings.systems, settings.checkpoint)
    device = resolve_device(device)
    threads = settings.torch_threads if device.type == "cpu" else None
    rows = []
    with (torch_threads(threads) if threads else contextlib.nullcontext()):
        lm, tok, limit = load_lm(settings.model_path, settings.num_layers)
        bar = make_bar(len(frames) * len(settings.systems) * len(settings.seeds), settings)
        try:
            for task, frame in frames.items():
                for key in settings.systems:
                    inputs = system_inputs(cfg, key, frame, linked, settings.checkpoint, device, quality)
                    fits = run_fits(cfg, settings, frame, key, inputs, lm, tok, device, bar, limit)
                    rows.append(_row(task, key, frame, inputs, fits, settings))
        finally:
            bar.close()
    df = pd.DataFrame(rows).astype({"test_cxr_embedded": "Int64", "test_ecg_embedded": "Int64"})
    params = {**settings.as_dict(), "table": "Table 4, LLM prompt tuning", "language_model": str(lm.name_or_path),
              "language_model_layers": int(lm.config.num_hidden_layers),
              "split": "patient-level split of notebook 01 (shared with pre-training): fit on train, select on "
                       "valid, report test",
              "metric": f"AUROC, accuracy (paper's metric; threshold rule {settings.threshold}), balanced accuracy; "
                        "percent; mean over seeds",
              "ci": "patient-level cluster bootstrap of the seed-averaged metric, percentile"}
    df.attrs["params"] = params
    return df


def _row(task: str, key: str, frame: pd.DataFrame, inputs: Mapping, fits, settings) -> dict:
    s = SYSTEMS[key]
    test = (frame["split"] == "test").to_numpy()
    probs = np.stack([p["prob"].to_numpy()[test] for p, _ in fits])
    y = frame["label"].to_numpy()
    thr = seed_thresholds(settings.threshold, y, (frame["split"] == "valid").to_numpy(), [p for p, _ in fits])
    r = seed_averaged(y[test], probs, thr, frame["subject_id"].to_numpy()[test], settings.n_boot,
                      settings.boot_seed, settings.alpha)
    tr = (frame["split"] == "train").to_numpy()
    mods = inputs["modalities"]
    row = {"task": task, "task_label": TASK_LABELS[task], "system": key,
           "system_label": registry.label(key, "table4"), **r,
           "majority_accuracy": majority_accuracy(y[tr], y[test]), "paper_accuracy": paper.table4(task, key),
           "n_train": int(tr.sum()), "n_train_positive": int(y[tr].sum()),
           "n_valid": int((frame["split"] == "valid").sum()),
           "test_with_cxr": int(frame.loc[test, "cxr_record_id"].notna().sum()),
           "test_with_ecg": int(frame.loc[test, "ecg_record_id"].notna().sum()),
           "test_cxr_embedded": int(mods["cxr"][1][test].sum()) if "cxr" in mods else None,
           "test_ecg_embedded": int(mods["ecg"][1][test].sum()) if "ecg" in mods else None,
           "best_epochs": " ".join(str(m["best_epoch"]) for _, m in fits),
           "threshold_rule": settings.threshold, "thresholds": " ".join(f"{t:.3f}" for t in thr),
           "selected_by": "; ".join(dict.fromkeys(m["selected_by"] for _, m in fits)),
           "truncated_rows": int(fits[0][1]["truncated_rows"]), "text_tokens_budget": int(fits[0][1]["text_tokens_budget"]),
           "n_trainable": int(fits[0][1]["n_trainable"]), "fit_seconds": float(sum(m["seconds"] for _, m in fits)),
           "cxr_encoder": s.cxr, "ecg_encoder": s.ecg, "reports_in_prompt": s.reports, "note": s.note}
    return row


def seed_thresholds(rule: str, y, valid, preds) -> np.ndarray:
    """Per seed, the ``rule`` threshold fit on that seed's validation predictions (``preds``: frames aligned with
    the task frame, as stored by ``train.run_fits``)."""
    y, valid = np.asarray(y).astype(int), np.asarray(valid, dtype=bool)
    return np.array([choose_threshold(rule, y[valid], p["prob"].to_numpy()[valid]) for p in preds])


# ----------------------------------------------------------------------------------------------- views
def table4_wide(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = systems (+ the majority-class reference); per task: AUROC first (threshold-free, so it reads the
    same under any ``llm_threshold``), then accuracy 'ours [lo, hi] (paper)', then balanced accuracy."""
    out = []
    for key in dict.fromkeys(df["system"]):
        d = df[df["system"] == key]
        line = {"System": d["system_label"].iloc[0]}
        for _, x in d.iterrows():
            t = x["task_label"]
            line[f"{t}: AUROC"] = ci_str(x["auroc"], x["auroc_lo"], x["auroc_hi"])
            line[f"{t}: accuracy"] = ci_str(x["accuracy"], x["accuracy_lo"], x["accuracy_hi"], x["paper_accuracy"])
            line[f"{t}: bal. acc."] = ci_str(x["balanced_accuracy"], x["balanced_accuracy_lo"],
                                             x["balanced_accuracy_hi"])
        out.append(line)
    ref = {"System": "Majority class (reference)"}
    for task, d in df.groupby("task", sort=False):
        t = d["task_label"].iloc[0]
        ref.update({f"{t}: AUROC": "50.0", f"{t}: accuracy": f"{d['majority_accuracy'].iloc[0]:.1f}",
                    f"{t}: bal. acc.": "50.0"})
    out.append(ref)
    return pd.DataFrame(out).fillna("")


def plot_table4(df: pd.DataFrame):
    """Per task (columns): accuracy (top) and AUROC (bottom) per row with 95% CIs; hollow diamonds = the paper's
    accuracy; dashed = majority-class accuracy (top) and chance 50 (bottom)."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(df["task"]))
    systems = list(dict.fromkeys(df["system"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.6 * len(tasks) + 2, 0.5 * len(systems) * 2 + 2.4), squeeze=False,
                             sharey=True)
    for j, task in enumerate(tasks):
        d = df[df["task"] == task].set_index("system").loc[systems].reset_index()
        y = np.arange(len(d))
        for i, (metric, ref, name) in enumerate((("accuracy", d["majority_accuracy"].iloc[0], "majority class"),
                                                 ("auroc", 50.0, "chance"))):
            ax = axes[i, j]
            v = d[metric].to_numpy(float)
            ok = np.isfinite(v)
            # a percentile CI need not contain the seed mean (skewed replicates): whiskers clipped at the dot
            lo = np.nan_to_num(np.maximum(v - d[f"{metric}_lo"].to_numpy(float), 0.0))
            hi = np.nan_to_num(np.maximum(d[f"{metric}_hi"].to_numpy(float) - v, 0.0))
            ax.errorbar(v[ok], y[ok], xerr=[lo[ok], hi[ok]],
                        fmt="o", color="tab:blue", capsize=3, label="ours (mean of seeds, 95% CI)")
            for k in y[~ok]:
                ax.text(1, k, "undefined (one class in test)", va="center", fontsize=7, color="0.4")
            if metric == "accuracy":
                ax.plot(d["paper_accuracy"], y, "D", color="k", mfc="none", label="paper")
            ax.axvline(ref, color="k", ls="--", lw=0.8, label=name)
            ax.text(ref, -0.55, f" {ref:.1f} ", fontsize=7, va="bottom", ha="right" if ref > 90 else "left")
            ax.set(xlim=(0, 100), ylim=(-0.6, len(d) - 0.4),
                   xlabel=f"{'accuracy' if metric == 'accuracy' else 'AUROC'} (%)")
            ax.set_yticks(y, d["system_label"])
            if i == 0:
                ax.set_title(f"{TASK_LABELS[task]} (test: {int(d['n'].iloc[0])} admissions, "
                             f"{int(d['n_positive'].iloc[0])} positive)", fontsize=10)
            if j == len(tasks) - 1:                    # one legend per row, outside the data
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def threshold_sentence(df: pd.DataFrame) -> str:
    """Which ``llm_threshold`` rule produced the accuracy and balanced accuracy (AUROC does not use one)."""
    rules = list(dict.fromkeys(df["threshold_rule"])) if "threshold_rule" in df else \
        [df.attrs.get("params", {}).get("threshold", "unknown")]
    text = "; ".join(f"`{r}`: {THRESHOLD_RULES.get(r, 'unknown rule')}" for r in rules)
    return (f"Accuracy and balanced accuracy use the decision rule {text}; AUROC does not depend on a threshold. "
            "Per-seed thresholds are in the `thresholds` column.")


def _f(x, m) -> str:
    return f"{x[m]:.1f} [{x[m + '_lo']:.1f}, {x[m + '_hi']:.1f}]"


def describe_table4(df: pd.DataFrame) -> list[str]:
    """Plain sentences computed from the table: the threshold rule behind accuracy; per task the accuracy leader
    against the majority class, the AUROC leader against chance, whether any row with CXR/ECG inputs beats the
    task text alone (CI above its value), and whether the paper's ordering of its rows holds."""
    out = [threshold_sentence(df)]
    for task, d in df.groupby("task", sort=False):
        label = TASK_LABELS[task]
        maj = d["majority_accuracy"].iloc[0]
        acc = d.dropna(subset=["accuracy"])
        if acc.empty:
            out.append(f"{label}: no test admissions, nothing to report.")
            continue
        b = acc.loc[acc["accuracy"].idxmax()]
        n_above = int((acc["accuracy_lo"] > maj).sum())
        line = (f"{label} ({int(b['n'])} test admissions, {int(b['n_positive'])} positive): best accuracy "
                f"{b['system_label']} {_f(b, 'accuracy')} vs {maj:.1f} for always predicting the majority class; "
                f"{n_above} of {len(acc)} rows have a CI above it.")
        auc = d.dropna(subset=["auroc"])
        if len(auc):
            a = auc.loc[auc["auroc"].idxmax()]
            line += (f" Best AUROC {a['system_label']} {_f(a, 'auroc')}; {int((auc['auroc_lo'] > 50).sum())} of "
                     f"{len(auc)} rows have a CI above 50.")
        else:
            line += " AUROC undefined (one class in the test split)."
        base = d[d["system"] == "task_text"]
        if len(base) and np.isfinite(base["auroc"].iloc[0]):
            ref = base["auroc"].iloc[0]
            extra = d[(d["system"] != "task_text") & d["auroc"].notna()]
            better = extra[extra["auroc_lo"] > ref]
            line += (f" Against the task text alone (AUROC {ref:.1f}): "
                     + (f"{', '.join(better['system_label'])} above it with CIs excluding its value."
                        if len(better) else "no row that adds CXR/ECG information is clearly above it."))
        pub = d.dropna(subset=["paper_accuracy"])
        if len(pub) >= 2:
            ours = pub.sort_values("accuracy", ascending=False, kind="mergesort")["system_label"].tolist()
            theirs = pub.sort_values("paper_accuracy", ascending=False, kind="mergesort")["system_label"].tolist()
            line += (f" Paper's accuracy order: {' > '.join(theirs)}; ours: {' > '.join(ours)}"
                     + (" (same)." if ours == theirs else "."))
        sd = d["accuracy_seed_sd"].dropna()
        if len(sd):
            line += f" Seed-to-seed SD of accuracy: {sd.min():.1f}-{sd.max():.1f} points."
        out.append(line)
    return out
