"""Table 2: modality-to-text retrieval (Recall@1/@10, RSUM per modality) with patient-bootstrap CIs,
chance levels and the paper's numbers beside ours.

Protocol (instance-level, as CXR-CLIP's evaluator): one text per query - its report (MIMIC-CXR, Open-I,
MIMIC-ECG / PTB-XL texts, or a C5x200 file that carries reports) - identical texts collapse to one gallery
item, and a hit is any gallery item identical to the query's own text. CheXpert 5x200 without reports gets one
MedCLIP prompt of its class per image (``prompts.chexpert5x200_instance_texts``), so the gallery holds the
distinct prompts drawn. ``c5x200_protocol="class_prompts"`` keeps the older 5-way reading (gallery = class
prompts, hit = any prompt of the class; chance R@10 ~92%): it is marked '†', and a modality RSUM containing it is
never printed beside the paper's."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from . import paper
from ..metrics.common import as_numpy
from ..metrics.bootstrap import bootstrap_mean, mean_replicates, percentile_ci
from ..metrics.prompts import chexpert5x200_instance_texts, chexpert5x200_prompts
from ..metrics.protocol import EvalSettings, with_settings, eval_settings
from .format import fmt_ci, shared_legend, ci_str
from ..metrics.retrieval import modality_to_text_recall, relevant_in_topk
from .. import registry
from ..registry import System
from .artifacts import Artifacts, row_systems
from ..metrics.zeroshot import embed_prompts

TABLE2_SYSTEMS = registry.table_rows("table2")
TABLE2_DATASETS = {"mimic_cxr": ("cxr", "MIMIC-CXR"), "chexpert_5x200": ("cxr", "CheXpert 5x200"),
                   "openi": ("cxr", "Open-I"), "mimic_ecg": ("ecg", "MIMIC-ECG"), "ptbxl": ("ecg", "PTB-XL")}


def _chance_any(g: int, r: int, k: int) -> float:
    """P(at least one of r relevant items in the top k of g items ranked at random), percent."""
    if k >= g:
        return 100.0
    return 100.0 * (1.0 - math.comb(g - r, k) / math.comb(g, k)) if g - r >= k else 100.0


def _retrieval_rows(art: Artifacts, system: System, dataset: str, s: EvalSettings) -> dict | None:
    """One Table 2 cell group: per-row hits at each K (0/1), the gallery description and the groups."""
    modality = TABLE2_DATASETS[dataset][0]
    tag = system.tag(modality)
    if not art.has(tag, dataset):
        return None
    d = art.load(tag, dataset)
    rows = np.ones(len(d["emb"]), bool) if dataset not in ("mimic_cxr", "mimic_ecg", "ptbxl") \
        else d["split"] == "test"
    emb = d["emb"][rows]
    groups = d["subject_id"][rows] if "subject_id" in d else None
    ks = tuple(sorted(set(s.retrieval_ks)))
    if "text_emb" in d and "text" in d:                                # reports: the paper's protocol
        texts, text_emb = d["text"][rows].tolist(), d["text_emb"][rows]
        source = "reports (identical texts deduplicated)"
    elif dataset == "chexpert_5x200" and s.c5x200_protocol == "instance":  # one generated prompt per image
        texts = chexpert5x200_instance_texts(d["label"][rows], s.seed)
        text_emb = art.text_encoder(system.variant(modality), system.checkpoint, modality)(texts)
        source = "one MedCLIP prompt of the image's class per image (no reports; identical texts deduplicated)"
    elif dataset == "chexpert_5x200":                                 # the old 5-way protocol, kept as an option
        return _class_prompt_rows(art, system, d, rows, emb, groups, ks, s)
    else:
        return None
    r = modality_to_text_recall(emb, text_emb, texts, ks=ks, rsum_ks=s.retrieval_ks, identity=s.text_identity,
                                ties=s.ties, groups=groups, n_boot=0, return_ranks=True)
    hits = {k: (r["ranks"] < k).astype(np.float64) for k in ks}
    g = r["n_gallery"]
    return {"hits": hits, "groups": groups, "n_queries": int(rows.sum()), "n_gallery": int(g),
            "chance": {k: min(100.0, 100.0 * k / g) for k in ks}, "text_source": source, "comparable_to_paper": True,
            "step": int(d["step"]) if "step" in d else None}


def _class_prompt_rows(art: Artifacts, system: System, d: dict, rows, emb, groups, ks, s: EvalSettings) -> dict:
    """``c5x200_protocol="class_prompts"``: gallery = class prompts, hit = any prompt of the image's class. A
    5-way classification scored as retrieval (chance R@10 is ~92%): never beside the paper's number."""
    modality = "cxr"
    ps = chexpert5x200_prompts(s.chexpert_prompts_per_class, s.seed)
    enc = art.text_encoder(system.variant(modality), system.checkpoint, modality)
    pe = embed_prompts(ps, enc)
    gallery = np.concatenate([as_numpy(pe[c]) for c in ps.classes])
    gkeys = np.concatenate([np.full(len(pe[c]), i) for i, c in enumerate(ps.classes)])
    qkeys = np.array([ps.classes.index(c) for c in d["label"][rows]])
    h, _ = relevant_in_topk(emb, gallery, qkeys, gkeys, ks, ties=s.ties)
    g = len(gallery)
    per = min(len(pe[c]) for c in ps.classes)
    return {"hits": {k: (h[:, j] > 0).astype(np.float64) for j, k in enumerate(ks)}, "groups": groups,
            "n_queries": int(rows.sum()), "n_gallery": int(g), "chance": {k: _chance_any(g, per, k) for k in ks},
            "text_source": (f"class prompts ({s.chexpert_prompts_per_class}/class, MedCLIP lists; hit = any prompt "
                            f"of the image's class)"), "comparable_to_paper": False,
            "step": int(d["step"]) if "step" in d else None}


@with_settings
def table2_retrieval(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                     systems: Sequence[str] = TABLE2_SYSTEMS, datasets: Sequence[str] = tuple(TABLE2_DATASETS)
                     ) -> pd.DataFrame:
    """Table 2 in long form: one row per (system, dataset) and one ``dataset="all"`` row per (system,
    modality) with the modality RSUM; ours with CIs, chance, and the paper's numbers beside them.

    Recall@K (percent) and its CI come from ``bootstrap_mean`` of the per-query hits resampling patients;
    a dataset's RSUM CI resamples its patients once for R@1 and R@10 together; the modality RSUM CI adds
    the datasets' replicates (independent patients)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = row_systems(s.untrained_variant)
    ks = tuple(sorted(set(s.retrieval_ks)))
    rows = []
    for key in systems:
        system = sysd[key]
        reps_by_mod: dict[str, list] = {}
        for dataset in datasets:
            modality, label = TABLE2_DATASETS[dataset]
            if system.variant(modality) is None and not paper.TABLE2.get(dataset, {}).get(key):
                continue
            row = {"system": key, "system_label": system.label, "modality": modality, "dataset": dataset,
                   "dataset_label": label}
            res = _retrieval_rows(art, system, dataset, s) if system.variant(modality) else None
            if res is None:
                row["note"] = system.note or (registry.NEEDS_WEIGHTS if system.kind == "pretrained" and not
                                              (cfg.get("pretrained_models") or {}).get(key)
                                              else "no embeddings for this system/dataset")
            else:
                rsum_vals = sum(res["hits"][k] for k in s.retrieval_ks) * 100.0
                for k in ks:
                    ci = bootstrap_mean(res["hits"][k] * 100.0, res["groups"], n_boot=s.n_boot, seed=s.seed,
                                        alpha=s.alpha)
                    row.update({f"R@{k}": ci["value"], f"R@{k}_lo": ci["lo"], f"R@{k}_hi": ci["hi"]})
                reps = mean_replicates(rsum_vals, res["groups"], s.n_boot, s.seed)
                lo, hi = percentile_ci(reps, s.alpha)
                row.update(rsum=float(rsum_vals.mean()), rsum_lo=lo, rsum_hi=hi,
                           **{f"chance_R@{k}": res["chance"][k] for k in ks},
                           chance_rsum=sum(res["chance"][k] for k in s.retrieval_ks),
                           n_queries=res["n_queries"], n_gallery=res["n_gallery"], text_source=res["text_source"],
                           comparable_to_paper=res["comparable_to_paper"],
                           n_groups=len(set(res["groups"])) if res["groups"] is not None else res["n_queries"],
                           checkpoint_step=res["step"], note=system.note)
                reps_by_mod.setdefault(modality, []).append((float(rsum_vals.mean()), reps,
                                                             row["chance_rsum"], res["comparable_to_paper"]))
            for k in ks:
                row[f"paper_R@{k}"] = paper.table2(dataset, key, f"R@{k}") if k in (1, 10) else math.nan
            row["paper_rsum"] = paper.table2(dataset, key, "rsum")
            rows.append(row)
        for modality in ("cxr", "ecg"):
            n_ds = sum(1 for d in datasets if TABLE2_DATASETS[d][0] == modality)
            got = reps_by_mod.get(modality, [])
            pub = paper.table2_rsum(modality, key)
            if not got and math.isnan(pub):
                continue
            row = {"system": key, "system_label": system.label, "modality": modality, "dataset": "all",
                   "dataset_label": f"RSUM ({modality.upper()}, {n_ds} datasets)", "paper_rsum": pub}
            if got and len(got) == n_ds:
                tot = np.sum([r[1] for r in got], axis=0)
                lo, hi = percentile_ci(tot, s.alpha)
                row.update(rsum=sum(r[0] for r in got), rsum_lo=lo, rsum_hi=hi, chance_rsum=sum(r[2] for r in got),
                           comparable_to_paper=all(r[3] for r in got))
                if not row["comparable_to_paper"]:               # a sum with a non-comparable term: not beside it
                    row.update(paper_rsum=math.nan, note="a dataset uses another protocol than the paper: RSUM "
                                                         f"not compared (paper {pub:.1f})" if not math.isnan(pub)
                               else "a dataset uses another protocol than the paper")
            else:
                row["note"] = system.note or f"only {len(got)} of {n_ds} datasets"
            rows.append(row)
    df = pd.DataFrame(rows)
    params = {**s.as_dict(), "table": "Table 2, modality-to-text retrieval", "splits": "MIMIC-CXR/ECG and PTB-XL "
              "test; CheXpert 5x200 and Open-I all", "metric": "Recall@K (%), RSUM = R@1 + R@10 per dataset, "
              "summed over a modality's datasets", "ci": "patient-level cluster bootstrap, percentile"}
    for k in ("n_boot", "seed", "ties", "text_identity"):
        df[k] = params[k]
    df.attrs["params"] = params
    return df


def table2_wide(df: pd.DataFrame, modality: str) -> pd.DataFrame:
    """Paper-shaped view of one modality: rows = systems, cells 'ours [lo, hi] (paper)'; '†' marks a paper
    number obtained with a different text protocol (C5x200: reports in the paper, class prompts here)."""
    sub = df[df["modality"] == modality]
    order = list(dict.fromkeys(sub["system"]))
    out = []
    for key in order:
        r = sub[sub["system"] == key]
        line = {"System": r["system_label"].iloc[0]}
        for _, x in r.iterrows():
            if x["dataset"] == "all":
                line["RSUM"] = ci_str(x.get("rsum"), x.get("rsum_lo"), x.get("rsum_hi"), x.get("paper_rsum"))
                continue
            for k in (1, 10):
                mark = "†" if bool(x.get("comparable_to_paper") == False) else ""  # noqa: E712 (NaN-safe)
                line[f"{x['dataset_label']} R@{k}"] = ci_str(x.get(f"R@{k}"), x.get(f"R@{k}_lo"),
                                                              x.get(f"R@{k}_hi"), x.get(f"paper_R@{k}"), mark)
        if "R@1" not in r or r["R@1"].isna().all():                      # a row that scored nothing says why
            line["Note"] = str(r["note"].dropna().iloc[0]) if r["note"].notna().any() else ""
        out.append(line)
    skip = ("System", "RSUM", "Note")
    cols = ["System"] + [c for c in dict.fromkeys(k for line in out for k in line) if c not in skip]
    note = ["Note"] if any(line.get("Note") for line in out) else []
    return pd.DataFrame(out).reindex(columns=cols + ["RSUM"] + note).fillna("")


def plot_table2(df: pd.DataFrame):
    """R@1 and R@10 per dataset (panels) and system (bars) with CI whiskers; the paper's number as a black
    diamond (hollow where the protocol differs), chance as a dashed line."""
    import matplotlib.pyplot as plt

    d = df[(df["dataset"] != "all")]
    datasets = list(dict.fromkeys(d["dataset"]))
    systems = [k for k in dict.fromkeys(d["system"]) if d.loc[d["system"] == k, "R@1"].notna().any()]
    cmap = plt.get_cmap("tab10")
    colors = {k: cmap(i) for i, k in enumerate(systems)}
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.3 * len(datasets), 3.8), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], datasets):
        dd = d[d["dataset"] == ds]
        present = [k for k in systems if k in set(dd["system"]) and dd.loc[dd["system"] == k, "R@1"].notna().any()]
        w = 0.8 / max(len(present), 1)
        for j, k in enumerate((1, 10)):
            for i, key in enumerate(present):
                x = dd[dd["system"] == key].iloc[0]
                xs = j + (i - (len(present) - 1) / 2) * w
                ax.bar(xs, x[f"R@{k}"], w, color=colors[key], yerr=[[x[f"R@{k}"] - x[f"R@{k}_lo"]],
                       [x[f"R@{k}_hi"] - x[f"R@{k}"]]], capsize=2, error_kw={"lw": 0.7},
                       label=x["system_label"] if j == 0 else None)
                pub = x.get(f"paper_R@{k}")
                if pub is not None and not math.isnan(pub):
                    hollow = bool(x.get("comparable_to_paper") == False)  # noqa: E712
                    ax.plot(xs, pub, "D", ms=5, mfc="none" if hollow else "k", mec="k")
            ch = dd[f"chance_R@{k}"].dropna()
            if len(ch):
                ax.hlines(ch.iloc[0], j - 0.45, j + 0.45, colors="k", linestyles="--", lw=0.8)
        ax.set_xticks([0, 1], ["R@1", "R@10"])
        g = dd["n_gallery"].dropna()
        ax.set_title(f"{dd['dataset_label'].iloc[0]}\n({int(dd['n_queries'].dropna().iloc[0])} queries, "
                     f"{int(g.iloc[0])} texts)" if len(g) else dd["dataset_label"].iloc[0], fontsize=9)
        ax.set_ylim(0, 105)
    axes[0, 0].set_ylabel("modality -> text recall (%)")
    from matplotlib.lines import Line2D

    shared_legend(fig, axes[0], {"paper (hollow: other text protocol)": Line2D([], [], marker="D", ls="", color="k",
                                                                                ms=5)}, bottom=-0.12)
    fig.tight_layout()
    return fig



def describe_table2(df: pd.DataFrame) -> list[str]:
    """Plain sentences computed from Table 2: the best trained system per modality (RSUM), its CI against
    the untrained model and chance, and whether the ranking agrees with the paper's."""
    out = []
    for mod in ("cxr", "ecg"):
        tot = df[(df["modality"] == mod) & (df["dataset"] == "all") & df["rsum"].notna()]
        trained = tot[tot["system"] != "untrained"]
        if trained.empty:
            continue
        best = trained.loc[trained["rsum"].idxmax()]
        un = tot[tot["system"] == "untrained"]
        rel = ("above" if best["rsum_lo"] > best["chance_rsum"] else
               "below" if best["rsum_hi"] < best["chance_rsum"] else "CI includes")
        line = (f"{mod.upper()}: highest RSUM {best['system_label']} {fmt_ci(best)} ({rel} chance "
                f"{best['chance_rsum']:.1f}")
        if len(un):
            u = un.iloc[0]
            line += f", untrained {fmt_ci(u)})."
            above = trained[trained["rsum_lo"] > u["rsum"]]
            line += (f" {len(above)} of {len(trained)} trained systems have a CI entirely above the untrained "
                     f"RSUM" + (f" ({', '.join(above['system_label'])})." if len(above) else
                                ": no evidence on this profile that training improved retrieval."))
        else:
            line += ")."
        pub = tot[tot["paper_rsum"].notna()]
        if len(pub) >= 2:
            p_best = pub.loc[pub["paper_rsum"].idxmax()]
            ours = pub.sort_values("rsum", ascending=False)["system_label"].tolist()
            theirs = pub.sort_values("paper_rsum", ascending=False)["system_label"].tolist()
            line += (f" Paper's best: {p_best['system_label']} ({p_best['paper_rsum']:.1f}); our order of the "
                     f"systems it reports: {' > '.join(ours)} (paper: {' > '.join(theirs)}) - "
                     + ("same order." if ours == theirs else "the order differs."))
        out.append(line)
    return out
