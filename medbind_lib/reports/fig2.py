"""Fig. 2: CXR -> ECG retrieval on MIMIC-PAIR test (right) and t-SNE maps of the pairs (left)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..metrics.paired import record
from .pairs import pair_embeddings
from ..metrics.protocol import EvalSettings, with_settings, eval_settings
from ..metrics.retrieval import cross_modal_recall
from .. import registry
from .artifacts import Artifacts, row_systems

FIG2_SYSTEMS = registry.table_rows("fig2")


def _top1_agreement(q, g, chunk: int = 1024) -> float:
    """Percent of queries whose top-1 gallery item is the most common top-1 (hubness diagnostic: near 100
    means every query ranks the gallery alike, so recall sits at chance whatever the pairing)."""
    q, g = np.asarray(q, np.float32), np.asarray(g, np.float32)
    top = np.concatenate([(q[i:i + chunk] @ g.T).argmax(1) for i in range(0, len(q), chunk)]) if len(q) else []
    return float(100.0 * np.bincount(top).max() / len(top)) if len(top) else math.nan


@with_settings
def crossmodal_recall_table(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                            systems: Sequence[str] = FIG2_SYSTEMS, split: str = "test",
                            per_query: dict | None = None) -> pd.DataFrame:
    """Fig. 2 right: CXR -> ECG Recall@K on the MIMIC-PAIR ``split`` pairs (gallery = the distinct ECGs of
    those pairs), with patient-level CIs, the chance level K / gallery size and ``same_top1_pct``
    (``_top1_agreement``). ``per_query``: receives each system's per-pair hits (``paired.paired_differences``)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = row_systems(s.untrained_variant)
    rows = []
    for key in systems:
        system = sysd[key]
        pe = pair_embeddings(art, system, split, s)
        pl = pe["pairs"]
        r = cross_modal_recall(pe["cxr"], pe["ecg"], gallery_keys=pl["ecg_record_id"].tolist(),
                               ks=s.crossmodal_ks, ties=s.ties, groups=pl["subject_id"].astype(str).to_numpy(),
                               n_boot=s.n_boot, seed=s.seed, alpha=s.alpha, return_ranks=True)
        for k in s.crossmodal_ks:
            record(per_query, f"CXR->ECG R@{k} (MIMIC-PAIR {split})", key, 100.0 * (r["ranks"] < k), kind="mean",
                   groups=pl["subject_id"].astype(str).to_numpy())
        hub = _top1_agreement(pe["cxr"], pe["ecg"])
        for k in s.crossmodal_ks:
            rows.append({"system": key, "system_label": system.label, "K": k, "recall": r[f"R@{k}"],
                         "lo": r[f"R@{k}_lo"], "hi": r[f"R@{k}_hi"], "chance": min(100.0, 100.0 * k / r["n_gallery"]),
                         "n_queries": r["n_queries"], "n_gallery": r["n_gallery"],
                         "n_patients": pl["subject_id"].nunique(), "same_top1_pct": hub, "note": system.note})
    df = pd.DataFrame(rows)
    params = {**s.as_dict(), "figure": "Fig. 2 right, CXR->ECG retrieval", "split": f"MIMIC-PAIR {split}",
              "gallery": "distinct ECGs of the split's pairs", "ci": "patient-level cluster bootstrap"}
    for k in ("n_boot", "seed", "ties"):
        df[k] = params[k]
    df.attrs["params"] = params
    return df


@with_settings
def tsne_pairs(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
               systems: Sequence[str] = FIG2_SYSTEMS[1:], split: str = "test") -> pd.DataFrame:
    """Fig. 2 left: a seeded openTSNE map per system of its CXR and ECG embeddings of the pairs (cosine
    metric, PCA initialisation, one thread for reproducibility). Long frame: system, pair, modality, x, y,
    ECG class, cardiomegaly, HYP."""
    from openTSNE import TSNE

    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = row_systems(s.untrained_variant)
    frames = []
    for key in systems:
        pe = pair_embeddings(art, sysd[key], split, s)
        x = np.concatenate([pe["cxr"], pe["ecg"]]).astype(np.float64)
        n = len(x)
        perp = float(min(s.tsne_perplexity, max(1.0, (n - 1) / 3 - 1e-6)))
        y = np.asarray(TSNE(n_components=2, perplexity=perp, metric="cosine", initialization="pca",
                            random_state=s.seed, n_jobs=1, verbose=False).fit(x))
        pl = pe["pairs"]
        m = len(pl)
        frames.append(pd.DataFrame({"system": key, "system_label": sysd[key].label, "pair": np.tile(np.arange(m), 2),
                                    "modality": ["CXR"] * m + ["ECG"] * m, "x": y[:, 0], "y": y[:, 1],
                                    "ecg_class": np.tile(pl["ecg_class"].to_numpy(), 2),
                                    "cardiomegaly": np.tile(pl["cardiomegaly"].to_numpy(), 2),
                                    "hyp": np.tile(pl["hyp"].to_numpy(), 2), "perplexity": perp}))
    df = pd.concat(frames, ignore_index=True)
    df.attrs["params"] = {**s.as_dict(), "tsne": "openTSNE, cosine, pca init, n_jobs=1", "split": split}
    return df


_MOD_COLORS = {"CXR": "tab:blue", "ECG": "tab:orange"}
_CLASS_COLORS = {"NORM": "tab:green", "MI": "tab:red", "STTC": "tab:purple", "CD": "tab:brown", "HYP": "tab:orange",
                 "multiple": "tab:gray", "unlabelled": "lightgray"}


def plot_fig2_tsne(tsne: pd.DataFrame):
    """Rows: coloured by modality (grey lines join the two halves of a pair) / by the pair's ECG class
    (black ring = cardiomegaly on the CXR). Columns: systems."""
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(tsne["system"]))
    fig, axes = plt.subplots(2, len(systems), figsize=(4.2 * len(systems), 8.2), squeeze=False)
    for j, key in enumerate(systems):
        d = tsne[tsne["system"] == key]
        ax = axes[0, j]
        c, e = d[d["modality"] == "CXR"].sort_values("pair"), d[d["modality"] == "ECG"].sort_values("pair")
        for (x0, y0), (x1, y1) in zip(c[["x", "y"]].to_numpy(), e[["x", "y"]].to_numpy()):
            ax.plot([x0, x1], [y0, y1], color="0.85", lw=0.6, zorder=1)
        for mod, dm in d.groupby("modality"):
            ax.scatter(dm["x"], dm["y"], s=18, color=_MOD_COLORS[mod], label=mod, zorder=2, alpha=0.85)
        ax.set_title(f"{d['system_label'].iloc[0]}\n(by modality)", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax = axes[1, j]
        for cls, dc in d.groupby("ecg_class"):
            mk = dc["modality"].map({"CXR": "o", "ECG": "^"})
            for m in ("o", "^"):
                dd = dc[mk == m]
                ax.scatter(dd["x"], dd["y"], s=22, marker=m, color=_CLASS_COLORS.get(cls, "k"), alpha=0.85,
                           label=f"{cls}" if m == "o" else None)
        cm = d[d["cardiomegaly"] == 1]
        if len(cm):
            ax.scatter(cm["x"], cm["y"], s=60, facecolors="none", edgecolors="k", lw=0.8, label="cardiomegaly")
        ax.set_title("by ECG class (o CXR, ^ ECG)", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        for a in axes[:, j]:
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig


def plot_fig2_recall(rec: pd.DataFrame):
    """Grouped bars of CXR->ECG Recall@K per system with CI whiskers and the chance level per K."""
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(rec["system"]))
    ks = sorted(rec["K"].unique())
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(ks) * len(systems) / 3, 3.6))
    w = 0.8 / len(systems)
    cmap = plt.get_cmap("tab10")
    for i, key in enumerate(systems):
        d = rec[rec["system"] == key].set_index("K").loc[ks]
        xs = np.arange(len(ks)) + (i - (len(systems) - 1) / 2) * w
        ax.bar(xs, d["recall"], w, color=cmap(i), label=d["system_label"].iloc[0],
               yerr=[d["recall"] - d["lo"], d["hi"] - d["recall"]], capsize=3, error_kw={"lw": 0.8})
    chance = rec.groupby("K")["chance"].first().loc[ks]
    for j, k in enumerate(ks):
        ax.hlines(chance.loc[k], j - 0.45, j + 0.45, colors="k", linestyles="--", lw=1,
                  label="chance (K / gallery)" if j == 0 else None)
    ax.set_xticks(np.arange(len(ks)), [f"R@{k}" for k in ks])
    ax.set_ylabel("CXR -> ECG recall (%)")
    ax.set_ylim(0, 105)
    n = int(rec["n_queries"].iloc[0])
    ax.set_title(f"MIMIC-PAIR test: CXR->ECG retrieval ({n} pairs, 95% patient-bootstrap CI)", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig



def describe_crossmodal(rec: pd.DataFrame) -> list[str]:
    """Sentences from the Fig. 2 right table: best system at R@1 and R@10 vs chance and the untrained model."""
    out = []
    for k in sorted(rec["K"].unique()):
        d = rec[rec["K"] == k]
        tr = d[d["system"] != "untrained"]
        best = (tr if len(tr) else d).loc[(tr if len(tr) else d)["recall"].idxmax()]
        ties = int(((tr if len(tr) else d)["recall"] == best["recall"]).sum())
        un = d[d["system"] == "untrained"]
        above = d[(d["lo"] > d["chance"]) & (d["system"] != "untrained")]
        out.append(f"R@{k}: best trained {best['system_label']}" + (f" (tied with {ties - 1} more)" if ties > 1 else "")
                   + f" {best['recall']:.1f} [{best['lo']:.1f}, {best['hi']:.1f}] "
                   f"vs chance {best['chance']:.1f}" + (f" and untrained {un['recall'].iloc[0]:.1f}" if len(un) else "")
                   + f"; trained systems with a CI above chance: {', '.join(above['system_label']) or 'none'}.")
    hub = rec.groupby("system_label")["same_top1_pct"].first()
    if (hub > 50).any():
        out.append("Hubness: for " + ", ".join(f"{k} ({v:.0f}%)" for k, v in hub[hub > 50].items())
                   + " most CXR queries share the same top-1 ECG, so the ranking ignores the query.")
    return out
