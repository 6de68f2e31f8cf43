"""Fig. 3: zero-shot (class prompts of each system's own text tower) and few-shot (linear probe) balanced
accuracy on COVID, RSNA, PTB-XL and ICBEB."""
from __future__ import annotations

import json
import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..metrics.fewshot import few_shot, single_label
from ..metrics.paired import record
from ..metrics.prompts import covid_prompts, ecg_prompts, rsna_prompts
from ..metrics.protocol import EvalSettings, with_settings, eval_settings
from .format import shared_legend
from .. import registry
from .artifacts import Artifacts, row_systems
from ..metrics.zeroshot import binary_class_score, embed_prompts, zero_shot, zero_shot_multilabel

FIG3_DATASETS = {"covid": ("cxr", "COVID"), "rsna": ("cxr", "RSNA"), "ptbxl": ("ecg", "PTB-XL"),
                 "icbeb": ("ecg", "ICBEB")}
FIG3_SYSTEMS = registry.table_rows("fig3")


def _fig3_data(art: Artifacts, tag: str, dataset: str, s: EvalSettings):
    """(prompt set, train x, train y, test x, test y (class idx or multi-hot), test groups, multilabel)."""
    d = art.load(tag, dataset)
    split = d["split"]
    groups = d["subject_id"] if "subject_id" in d else None
    if dataset in ("covid", "rsna"):
        ps = covid_prompts(s.covid_prompt_rule, s.covid_n_prompts, s.seed) if dataset == "covid" \
            else rsna_prompts(s.rsna_prompt_rule, s.rsna_n_prompts, s.seed)
        keep = np.isin(d["label"], ps.classes)
        y = np.array([ps.classes.index(v) if v in ps.classes else -1 for v in d["label"]])
        tr, te = keep & (split == "train"), keep & (split == "test")
        return ps, d["emb"][tr], y[tr], d["emb"][te], y[te], None if groups is None else groups[te], False
    ps = ecg_prompts(dataset)
    names = d["label_names"].tolist()
    ym = d["labels"][:, [names.index(c) for c in ps.classes]]
    tr, te = split == "train", split == "test"
    return ps, d["emb"][tr], ym[tr], d["emb"][te], ym[te], None if groups is None else groups[te], True


@with_settings
def fig3_zero_few_shot(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                       systems: Sequence[str] = FIG3_SYSTEMS, datasets: Sequence[str] = tuple(FIG3_DATASETS),
                       progress: Callable | None = None, per_query: dict | None = None) -> pd.DataFrame:
    """Fig. 3 in long form: per (dataset, system) one zero-shot row (``K = 0``) and one row per few-shot K.

    Zero-shot: cosine to the class prompts of the system's own text tower (each dataset's Table A.1 prompts,
    or the rule in ``covid_prompt_rule`` / ``rsna_prompt_rule``; PTB-XL / ICBEB: argmax over the classes on
    single-label test records). Beside balanced accuracy, ``auroc``: of the positive-minus-negative class score
    for COVID / RSNA (with CI; it does not read the prompts' offset, which balanced accuracy does), the macro
    one-vs-rest AUROC on every labelled record for PTB-XL / ICBEB. Few-shot: balanced linear probe on frozen
    training-split embeddings, mean over ``n_support_sets`` seeded sets, CI = patient bootstrap of that mean
    over the test set. A K larger than the smallest
    training class is infeasible and recorded as such (never silently sampled with replacement). ``per_query``:
    receives each system's zero-shot predictions (``paired.paired_differences``)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = row_systems(s.untrained_variant)
    rows = []
    for dataset in datasets:
        modality, label = FIG3_DATASETS[dataset]
        for key in systems:
            system = sysd[key]
            tag = system.tag(modality)
            if not art.has(tag, dataset):
                continue
            if progress:
                progress(f"{dataset} / {key}")
            ps, xtr, ytr, xte, yte, gte, multi = _fig3_data(art, tag, dataset, s)
            base = {"dataset": dataset, "dataset_label": label, "modality": modality, "system": key,
                    "system_label": system.label, "n_classes": len(ps.classes)}
            enc = art.text_encoder(system.variant(modality), system.checkpoint, modality)
            pe = embed_prompts(ps, enc)
            kw = dict(prompt_embeddings=pe, prompt_pool=s.prompt_pool, groups=gte, n_boot=s.n_boot, seed=s.seed,
                      alpha=s.alpha)
            z = zero_shot_multilabel(xte, yte, ps, return_predictions=True, **kw) if multi else \
                zero_shot(xte, yte, ps, return_predictions=True, **kw)
            y_zs = z["y_single"] if multi else yte
            g_zs = None if gte is None else (gte[z["single_label"]] if multi else gte)
            if len(np.unique(y_zs)) > 1:
                record(per_query, f"{label} zero-shot", key, z["predictions"], kind="balanced_accuracy", y=y_zs,
                       n_classes=len(ps.classes), groups=g_zs)
                if not multi:                        # the class score's AUROC: blind to the prompts' offset
                    record(per_query, f"{label} zero-shot AUROC", key,
                           binary_class_score(z["scores"], ps.binary_rule), kind="auroc", y=y_zs, groups=g_zs)
            rows.append({**base, "setting": "zero-shot", "K": 0, "balanced_accuracy": z["balanced_accuracy"],
                         "lo": z.get("balanced_accuracy_lo", math.nan), "hi": z.get("balanced_accuracy_hi", math.nan),
                         "sd_over_sets": math.nan, "n_test": z.get("n_single_label", z.get("n")),
                         "auroc": z.get("auroc", z.get("macro_auroc", math.nan)),
                         "auroc_lo": z.get("auroc_lo", math.nan), "auroc_hi": z.get("auroc_hi", math.nan),
                         "macro_auroc": z.get("macro_auroc", math.nan), "prompt_set": z["prompt_set"],
                         "binary_rule": z["binary_rule"], "n_prompts": json.dumps(z["n_prompts"]),
                         "chance": 100.0 / len(ps.classes), "note": ""})
            if multi:
                mtr, ctr = single_label(ytr)
                mte, cte = single_label(yte)
                xtr, ytr, xte, yte = xtr[mtr], ctr, xte[mte], cte
                gte = None if gte is None else gte[mte]
            c = len(ps.classes)
            counts = np.bincount(ytr, minlength=c)
            feasible = [k for k in s.fewshot_ks if counts.min() >= k]
            if feasible:
                fs = few_shot(xtr, ytr, xte, yte, ks=feasible, n_sets=s.n_support_sets, seed=s.seed, C=s.probe_C,
                              n_classes=c, test_groups=gte, n_boot=s.n_boot, alpha=s.alpha)
                for _, r in fs.iterrows():
                    rows.append({**base, "setting": "few-shot", "K": int(r["K"]),
                                 "balanced_accuracy": r["balanced_accuracy_mean"], "lo": r.get("ci_lo", math.nan),
                                 "hi": r.get("ci_hi", math.nan), "sd_over_sets": r["balanced_accuracy_sd"],
                                 "n_test": int(r["n_test"]), "chance": 100.0 / c, "note": ""})
            for k in s.fewshot_ks:
                if k not in feasible:
                    rows.append({**base, "setting": "few-shot", "K": k, "balanced_accuracy": math.nan,
                                 "lo": math.nan, "hi": math.nan, "n_test": len(yte), "chance": 100.0 / c,
                                 "note": f"infeasible: smallest training class has {int(counts.min())} rows "
                                         f"({ps.classes[int(counts.argmin())]})"})
    df = pd.DataFrame(rows)
    params = {**s.as_dict(), "figure": "Fig. 3, zero-shot (K=0) and few-shot balanced accuracy; zero-shot AUROC",
              "splits": "train = support pool, test = evaluation (PTB-XL folds 1-8 / 10)",
              "multilabel_protocol": "PTB-XL / ICBEB: single-label records (balanced acc); macro AUROC on all",
              "ci": "patient-level cluster bootstrap of the test set (few-shot: of the mean over support sets)"}
    for k in ("n_support_sets", "n_boot", "seed", "probe_C", "prompt_pool"):
        df[k] = params[k]
    df.attrs["params"] = params
    return df



def plot_fig3(df: pd.DataFrame):
    """One panel per dataset: few-shot curves (mean over support sets, CI band) and the zero-shot marker
    with its CI at x = 0, chance as a dashed line."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(df["dataset"]))
    systems = list(dict.fromkeys(df["system"]))
    cmap = plt.get_cmap("tab10")
    colors = {k: cmap(i) for i, k in enumerate(systems)}
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.9 * len(datasets), 3.9), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = df[df["dataset"] == dataset]
        ks = sorted(k for k in d["K"].unique() if k > 0)
        pos = {0: 0, **{k: i + 1 for i, k in enumerate(ks)}}
        for i, key in enumerate(systems):
            dk = d[d["system"] == key].sort_values("K")
            if dk.empty:
                continue
            few = dk[(dk["K"] > 0) & dk["balanced_accuracy"].notna()]
            xs = few["K"].map(pos)
            ax.plot(xs, few["balanced_accuracy"], "-o", ms=3, color=colors[key], label=dk["system_label"].iloc[0])
            ax.fill_between(xs, few["lo"], few["hi"], color=colors[key], alpha=0.12, lw=0)
            zs = dk[dk["K"] == 0]
            if len(zs) and zs["balanced_accuracy"].notna().all():
                v = zs["balanced_accuracy"].iloc[0]
                dx = (i - (len(systems) - 1) / 2) * 0.09            # side by side, not on top of each other
                ax.errorbar([dx], [v], yerr=[[v - zs["lo"].iloc[0]], [zs["hi"].iloc[0] - v]], fmt="*", ms=9,
                            color=colors[key], capsize=2, lw=0.8)
        ax.axhline(d["chance"].iloc[0], color="k", ls="--", lw=0.8)
        ax.set_xticks(list(pos.values()), ["0\n(zero-shot)"] + [str(k) for k in ks])
        ax.set_xlabel("K (shots per class)")
        ax.set_title(f"{d['dataset_label'].iloc[0]} ({int(d['n_classes'].iloc[0])} classes)", fontsize=10)
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel("balanced accuracy (%)")
    from matplotlib.lines import Line2D

    shared_legend(fig, axes[0], {"zero-shot (star, 95% CI)": Line2D([], [], marker="*", ls="", color="0.3", ms=9)},
                   bottom=-0.1)
    fig.tight_layout()
    return fig



def describe_fig3(df: pd.DataFrame) -> list[str]:
    """Sentences from Fig. 3: per dataset the best zero-shot system vs chance and the few-shot leader at the
    largest feasible K, with the untrained reference."""
    out = []
    for ds in dict.fromkeys(df["dataset"]):
        d = df[df["dataset"] == ds]
        label, chance = d["dataset_label"].iloc[0], d["chance"].iloc[0]
        zs = d[(d["K"] == 0) & (d["system"] != "untrained")].dropna(subset=["balanced_accuracy"])
        line = f"{label} (chance {chance:.1f}): "
        if len(zs):
            b = zs.loc[zs["balanced_accuracy"].idxmax()]
            n_above = int((zs["lo"] > chance).sum())
            const = zs[(zs["lo"] == zs["hi"]) & (zs["balanced_accuracy"].round(6) == round(chance, 6))]
            auc = b.get("auroc", math.nan)
            auc_s = "" if pd.isna(auc) else f" (AUROC {auc:.1f})"
            line += (f"zero-shot best {b['system_label']} {b['balanced_accuracy']:.1f} [{b['lo']:.1f}, {b['hi']:.1f}]"
                     f"{auc_s},"
                     f" {n_above} of {len(zs)} trained systems with a CI above chance"
                     + (f" ({len(const)} predict one class for every test record)" if len(const) else "") + "; ")
        fs = d[(d["K"] > 0)].dropna(subset=["balanced_accuracy"])
        if len(fs):
            kmax = int(fs["K"].max())
            at = fs[fs["K"] == kmax]
            b = at[at["system"] != "untrained"]
            if len(b):
                b = b.loc[b["balanced_accuracy"].idxmax()]
                un = at[at["system"] == "untrained"]
                line += (f"at K={kmax} best {b['system_label']} {b['balanced_accuracy']:.1f} [{b['lo']:.1f}, "
                         f"{b['hi']:.1f}]"
                         + (f" vs untrained {un['balanced_accuracy'].iloc[0]:.1f}" if len(un) else ""))
                if len(un):
                    line += (" (trained ahead)" if b["balanced_accuracy"] > un["balanced_accuracy"].iloc[0]
                             else " (untrained features do as well or better)")
        bad = sorted(set(d.loc[d["note"].fillna("").str.startswith("infeasible"), "K"]))
        if bad:
            line += f"; K={bad} infeasible (too few training rows per class)"
        out.append(line + ".")
    return out
