"""Table and figure builders for notebooks 03-06 (Table 2, Fig. 2, Fig. 3, Table 3).

The notebooks stay thin: each calls one builder here on the artifacts notebook 02 left in
``runs/<profile>/`` (exported embeddings, checkpoints, linked frames) and saves the result with
``save_table``. Every number comes from the metric functions of this package (``retrieval``,
``zeroshot``, ``fewshot``, ``crossmodal``, ``bootstrap``) with a patient-level bootstrap 95% CI, and every
table carries the parameters that produced it (columns and ``df.attrs["params"]``; ``save_table`` also
writes them beside the CSV and into the Markdown).

Evaluation parameters (``EvalSettings``): the paper's protocol; ``eval_settings(cfg)`` takes only the
pure-compute knobs from the profile (``fewshot_support_sets``: 300 in the paper, 50 on smoke;
``tsne_perplexity``: 30, 5 on smoke for ~30 points). Notebooks may pass
``overrides``; whatever was used is recorded with the numbers.

Systems (``SYSTEMS``): the trained variants of notebook 02, the encoder zoo (a CXR baseline's CXR
encoder + ECG-CLIP's ECG encoder: two separately trained models whose spaces are tied only through
their separately trained text towers), the untrained MEDBind_BD initialisation (same architecture and
seed, never trained: the "is training doing anything" row) and general CLIP (no offline checkpoint:
a paper-only row).

Builders run with one torch CPU thread (``EvalSettings.torch_threads``): the problems are tiny, one thread is
as fast on an idle CPU, far faster on a busy one, and makes the printed numbers independent of the host's
thread count. ``describe_*`` turn each table into plain sentences for the notebooks' readings.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..constants import UNTRAINED_REFERENCE
from . import paper
from ._common import as_numpy
from .bootstrap import bootstrap_mean, percentile_ci, resample_indices
from .crossmodal import cross_modal_zero_shot
from .fewshot import KS, few_shot, single_label
from .prompts import chexpert5x200_prompts, covid_prompts, ecg_prompts, rsna_prompts
from .retrieval import cross_modal_recall, modality_to_text_recall, relevant_in_topk
from .zeroshot import embed_prompts, zero_shot, zero_shot_multilabel

__all__ = ["EvalSettings", "eval_settings", "torch_threads", "System", "SYSTEMS", "Artifacts", "save_table",
           "markdown_table", "ci_str", "pair_labels", "pair_embeddings",
           "table2_retrieval", "table2_wide", "plot_table2", "describe_table2",
           "crossmodal_recall_table", "tsne_pairs", "plot_fig2_tsne", "plot_fig2_recall", "describe_crossmodal",
           "fig3_zero_few_shot", "plot_fig3", "describe_fig3",
           "table3_crossmodal", "table3_wide", "plot_table3", "describe_table3",
           "TABLE2_DATASETS", "TABLE2_SYSTEMS", "FIG2_SYSTEMS", "FIG3_DATASETS", "FIG3_SYSTEMS", "TABLE3_SYSTEMS",
           "TABLE3_TASKS"]


# ----------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol (METHOD.md 1 "Evaluations"); recorded beside every number."""
    profile: str = "smoke"
    seed: int = 0
    n_boot: int = 1000                      # patient-level bootstrap replicates
    alpha: float = 0.05                     # 95% percentile intervals
    ties: str = "pessimistic"               # exact score ties rank the relevant item last
    text_identity: str = "lower_ws"         # identical texts = one gallery item (the profile's key)
    retrieval_ks: tuple = (1, 10)           # Table 2 (RSUM = R@1 + R@10 per dataset)
    crossmodal_ks: tuple = (1, 5, 10)       # Fig. 2 right
    chexpert_prompts_per_class: int = 10    # C5x200 without reports: gallery = this many prompts per class
    binary_rule: str = "pos_vs_no"          # COVID / RSNA negative prompts ("No X" vs "X")
    prompt_pool: str = "mean_cosine"        # class score = mean cosine over the class's prompts
    covid_n_prompts: int | None = 10        # Table A.1: 10 sampled COVID prompts
    rsna_n_prompts: int | None = 10         # 10 sampled RSNA prompts, as for COVID (MedCLIP samples n too)
    fewshot_ks: tuple = KS                  # K in {1, 2, 4, 8, 16} per class
    n_support_sets: int = 300               # paper: mean over 300 random support sets
    probe_C: float = 1.0                    # inverse L2 strength of the logistic-regression probe
    tsne_perplexity: float = 30.0           # capped at (n - 1) / 3 for small sets
    cardiomegaly_uncertain: str = "exclude"  # CheXpert -1.0 for Cardiomegaly: exclude | negative
    untrained_variant: str = UNTRAINED_REFERENCE  # whose untrained initialisation is the untrained row
    torch_threads: int | None = 1           # CPU intra-op threads while a builder runs (None = leave as is)
    notes: tuple = ()

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's CPU intra-op threads. The evaluation problems are tiny (prompt batches, L-BFGS
    on [S, n, n] support sets): one thread is as fast when the CPU is idle and avoids OpenMP spin-waiting -
    measured 0.2 s vs 0.6-10 s for one Fig. 3 cell on the 2-core machine while another job trains."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _with_settings(fn):
    """Builders take ``(cfg, settings=None, ...)``: resolve the settings and run under ``torch_threads``."""
    @functools.wraps(fn)
    def wrapper(cfg, settings: EvalSettings | None = None, *args, **kwargs):
        s = settings or eval_settings(cfg)
        with torch_threads(s.torch_threads):
            return fn(cfg, s, *args, **kwargs)
    return wrapper


def eval_settings(cfg, **overrides) -> EvalSettings:
    """The protocol for ``cfg``: the paper's values, with the compute-only knobs the profile sets
    (``fewshot_support_sets``, ``tsne_perplexity``)."""
    base = dict(profile=cfg["profile"], seed=int(cfg.get("seed", 0)),
                text_identity=cfg.get("text_identity", "lower_ws"),
                n_support_sets=int(cfg.get("fewshot_support_sets", 300)),
                tsne_perplexity=float(cfg.get("tsne_perplexity", 30.0)))
    if base["n_support_sets"] != 300:
        base["notes"] = (f"{base['n_support_sets']} few-shot support sets (paper: 300)",)
    base.update(overrides)
    return EvalSettings(**base)


# ----------------------------------------------------------------------------------------- systems
@dataclass(frozen=True)
class System:
    """A row of a table: which variant's encoder embeds each modality (None = the system lacks it)."""
    key: str
    label: str
    cxr: str | None = None
    ecg: str | None = None
    checkpoint: str = "best"
    note: str = ""

    def variant(self, modality: str) -> str | None:
        return self.cxr if modality == "cxr" else self.ecg

    def tag(self, modality: str) -> str | None:
        v = self.variant(modality)
        return None if v is None else v + ("_untrained" if self.checkpoint == "untrained" else "")


def _systems(untrained_variant: str = "medbind_bd") -> dict[str, System]:
    s = [System("untrained", "Untrained (MEDBind_BD init.)", untrained_variant, untrained_variant, "untrained",
                "same architecture and seed, never trained"),
         System("clip", "CLIP (general)", note="no offline checkpoint: paper number only"),
         System("medclip", "MedCLIP-style", cxr="medclip"),
         System("cxr_clip", "CXR-CLIP-style", cxr="cxr_clip"),
         System("ecg_clip", "ECG-CLIP", ecg="ecg_clip"),
         System("medclip+ecg_clip", "Zoo: MedCLIP-style + ECG-CLIP", cxr="medclip", ecg="ecg_clip",
                note="two separately trained models"),
         System("cxr_clip+ecg_clip", "Zoo: CXR-CLIP-style + ECG-CLIP", cxr="cxr_clip", ecg="ecg_clip",
                note="two separately trained models"),
         System("medbind_nm", "MEDBind_NM", "medbind_nm", "medbind_nm"),
         System("medbind_bd", "MEDBind_BD", "medbind_bd", "medbind_bd")]
    return {x.key: x for x in s}


SYSTEMS = _systems()
TABLE2_SYSTEMS = ("untrained", "clip", "medclip", "cxr_clip", "ecg_clip", "medbind_nm", "medbind_bd")
TABLE2_DATASETS = {"mimic_cxr": ("cxr", "MIMIC-CXR"), "chexpert_5x200": ("cxr", "CheXpert 5x200"),
                   "openi": ("cxr", "Open-I"), "mimic_ecg": ("ecg", "MIMIC-ECG"), "ptbxl": ("ecg", "PTB-XL")}
FIG2_SYSTEMS = ("untrained", "cxr_clip+ecg_clip", "medbind_nm", "medbind_bd")
FIG3_DATASETS = {"covid": ("cxr", "COVID"), "rsna": ("cxr", "RSNA"), "ptbxl": ("ecg", "PTB-XL"),
                 "icbeb": ("ecg", "ICBEB")}
FIG3_SYSTEMS = ("untrained", "medclip", "cxr_clip", "ecg_clip", "medbind_nm", "medbind_bd")
TABLE3_SYSTEMS = ("untrained", "medclip+ecg_clip", "cxr_clip+ecg_clip", "medbind_nm", "medbind_bd")
TABLE3_TASKS = {"hypertrophy_from_cxr": "Hypertrophy from CXR (ECG support)",
                "cardiomegaly_from_ecg": "Cardiomegaly from ECG (CXR support)"}


# ----------------------------------------------------------------------------------------- artifacts
class Artifacts:
    """Read-only access to notebook 02's outputs of one profile, with small caches.

    ``embeddings_dir``/<variant>[_untrained]/<dataset>.npz (``embeddings.export_embeddings``) and, for text
    encoders and training-split embeddings, the checkpoints ``runs/<profile>/02/<variant>/best.pt``."""

    def __init__(self, cfg, embeddings_dir=None, device="cpu"):
        self.cfg = cfg
        self.root = Path(embeddings_dir) if embeddings_dir is not None else Path(cfg["runs_dir"]) / "embeddings"
        self.device = device
        self._npz: dict = {}
        self._models: dict = {}
        self._linked = None

    def path(self, tag: str, dataset: str) -> Path:
        return self.root / tag / f"{dataset}.npz"

    def has(self, tag: str | None, dataset: str) -> bool:
        return tag is not None and self.path(tag, dataset).is_file()

    def load(self, tag: str, dataset: str) -> dict:
        key = (tag, dataset)
        if key not in self._npz:
            from ..embeddings import load_embeddings

            p = self.path(tag, dataset)
            if not p.is_file():
                raise FileNotFoundError(f"{p} missing: run notebook 02 (python -m medbind_lib.run --profile "
                                        f"{self.cfg['profile']} --only 02)")
            self._npz[key] = load_embeddings(p)
        return self._npz[key]

    def model(self, variant: str, checkpoint: str = "best"):
        key = (variant, checkpoint)
        if key not in self._models:
            from ..embeddings import _load_model

            self._models[key] = _load_model(self.cfg, variant, checkpoint, self.device)[0]
        return self._models[key]

    def text_encoder(self, variant: str, checkpoint: str = "best", modality: str = "cxr") -> Callable:
        """``encode_text(list[str]) -> np.ndarray [n, d]`` of the variant's trained (or untrained) text tower
        (each distinct text encoded once; the same function that exported the report embeddings)."""
        from ..embeddings import embed_texts

        model = self.model(variant, checkpoint)
        return lambda texts: embed_texts(model, list(texts), modality, self.device)

    def linked(self) -> dict:
        if self._linked is None:
            from ..cohort import load_linked

            self._linked = load_linked(self.cfg)
        return self._linked


# ----------------------------------------------------------------------------------------- saving
def _fmt_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v).replace("|", "/").replace("\n", " ")


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """GitHub Markdown of ``df`` (floats to 1 decimal, NaN blank), without optional dependencies."""
    d = df.reset_index() if index else df
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v) for v in row) + " |")
    return "\n".join(lines)


def save_table(df: pd.DataFrame, cfg, name: str, params: dict | None = None, title: str = "",
               display: pd.DataFrame | dict | None = None, notes: Sequence[str] = ()) -> dict:
    """Write ``runs/<profile>/tables/<name>.csv`` (full, CI columns included), ``<name>.md`` (``display``
    - one frame or {heading: frame} - or ``df``, then the notes and parameters) and ``<name>.params.json``;
    returns the paths."""
    out = Path(cfg["runs_dir"]) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    params = params if params is not None else df.attrs.get("params", {})
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "params": out / f"{name}.params.json"}
    df.to_csv(paths["csv"], index=False, float_format="%.4f")
    md = [f"# {title or name}", "", f"Profile `{cfg['profile']}`. Values in percent; [lo, hi] = patient-level "
          f"bootstrap {100 * (1 - params.get('alpha', 0.05)):.0f}% CI.", "",
          ]
    shown = display if display is not None else df
    for head, frame in (shown.items() if isinstance(shown, dict) else [("", shown)]):
        md += ([f"## {head}", ""] if head else []) + [markdown_table(frame), ""]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    md += ["Parameters:", "", "```json", json.dumps(params, indent=1, sort_keys=True, default=str), "```", ""]
    paths["md"].write_text("\n".join(md))
    paths["params"].write_text(json.dumps(params, indent=1, sort_keys=True, default=str) + "\n")
    return paths


def ci_str(v, lo, hi, ref=None, mark: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        s = "n/a"
    elif lo is None or (isinstance(lo, float) and math.isnan(lo)):
        s = f"{v:.1f}"
    else:
        s = f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
    if ref is not None and not (isinstance(ref, float) and math.isnan(ref)):
        s += f" ({ref:.1f}{mark})"
    return s


# ----------------------------------------------------------------------------------------- Table 2
def _replicates_of_mean(values: np.ndarray, groups, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of a mean of per-row values (same resamples as ``bootstrap_mean``)."""
    v = np.asarray(values, dtype=np.float64)
    g = np.arange(len(v)) if groups is None else groups
    return np.array([v[idx].mean() for idx in resample_indices(g, n_boot, seed)]) if n_boot else np.zeros(0)


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
        texts = d["text"][rows].tolist()
        r = modality_to_text_recall(emb, d["text_emb"][rows], texts, ks=ks, rsum_ks=s.retrieval_ks,
                                    identity=s.text_identity, ties=s.ties, groups=groups, n_boot=0,
                                    return_ranks=True)
        hits = {k: (r["ranks"] < k).astype(np.float64) for k in ks}
        g = r["n_gallery"]
        chance = {k: min(100.0, 100.0 * k / g) for k in ks}
        source = "reports (identical texts deduplicated)"
        comparable = True
    elif dataset == "chexpert_5x200":                                 # no reports: class prompts
        ps = chexpert5x200_prompts(s.chexpert_prompts_per_class, s.seed)
        enc = art.text_encoder(system.variant(modality), system.checkpoint, modality)
        pe = embed_prompts(ps, enc)
        gallery = np.concatenate([as_numpy(pe[c]) for c in ps.classes])
        gkeys = np.concatenate([np.full(len(pe[c]), i) for i, c in enumerate(ps.classes)])
        qkeys = np.array([ps.classes.index(c) for c in d["label"][rows]])
        h, _ = relevant_in_topk(emb, gallery, qkeys, gkeys, ks, ties=s.ties)
        hits = {k: (h[:, j] > 0).astype(np.float64) for j, k in enumerate(ks)}
        g = len(gallery)
        per = min(len(pe[c]) for c in ps.classes)
        chance = {k: _chance_any(g, per, k) for k in ks}
        source = (f"class prompts ({s.chexpert_prompts_per_class}/class, MedCLIP lists; hit = any prompt "
                  f"of the image's class)")
        comparable = False                                            # the paper retrieved reports
    else:
        return None
    return {"hits": hits, "groups": groups, "n_queries": int(rows.sum()), "n_gallery": int(g), "chance": chance,
            "text_source": source, "comparable_to_paper": comparable,
            "step": int(d["step"]) if "step" in d else None}


@_with_settings
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
    sysd = _systems(s.untrained_variant)
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
                row["note"] = system.note or "no embeddings for this system/dataset"
            else:
                rsum_vals = sum(res["hits"][k] for k in s.retrieval_ks) * 100.0
                for k in ks:
                    ci = bootstrap_mean(res["hits"][k] * 100.0, res["groups"], n_boot=s.n_boot, seed=s.seed,
                                        alpha=s.alpha)
                    row.update({f"R@{k}": ci["value"], f"R@{k}_lo": ci["lo"], f"R@{k}_hi": ci["hi"]})
                reps = _replicates_of_mean(rsum_vals, res["groups"], s.n_boot, s.seed)
                lo, hi = percentile_ci(reps, s.alpha)
                row.update(rsum=float(rsum_vals.mean()), rsum_lo=lo, rsum_hi=hi,
                           **{f"chance_R@{k}": res["chance"][k] for k in ks},
                           chance_rsum=sum(res["chance"][k] for k in s.retrieval_ks),
                           n_queries=res["n_queries"], n_gallery=res["n_gallery"], text_source=res["text_source"],
                           comparable_to_paper=res["comparable_to_paper"],
                           n_groups=len(set(res["groups"])) if res["groups"] is not None else res["n_queries"],
                           checkpoint_step=res["step"], note=system.note)
                reps_by_mod.setdefault(modality, []).append((float(rsum_vals.mean()), reps,
                                                             row["chance_rsum"]))
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
                row.update(rsum=sum(r[0] for r in got), rsum_lo=lo, rsum_hi=hi, chance_rsum=sum(r[2] for r in got))
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
        out.append(line)
    cols = ["System"] + [c for c in dict.fromkeys(k for line in out for k in line) if c not in ("System", "RSUM")]
    return pd.DataFrame(out).reindex(columns=cols + ["RSUM"]).fillna("")


# ----------------------------------------------------------------------------------------- MIMIC-PAIR
def pair_labels(art: Artifacts, split: str, s: EvalSettings | None = None) -> pd.DataFrame:
    """The MIMIC-PAIR pairs of ``split`` (notebook 01) with the Table 3 labels: ``hyp`` (1 = the ECG's
    Table A.3 labels include HYP, NaN = unlabelled ECG) and ``cardiomegaly`` (1 = CheXpert 1.0; uncertain
    -1.0 excluded (NaN) or negative per ``cardiomegaly_uncertain``; NaN = unlabelled study), plus the ECG's
    primary superclass for colouring."""
    s = s or EvalSettings()
    linked = art.linked()
    p = linked["pairs"]
    p = p[p["split"] == split].copy()
    p["cxr_record_id"], p["ecg_record_id"] = p["cxr_record_id"].astype(str), p["ecg_record_id"].astype(str)
    ecg = linked["ecg"].set_index(linked["ecg"]["record_id"].astype(str))
    cxr = linked["cxr"].set_index(linked["cxr"]["record_id"].astype(str))
    e = ecg.reindex(p["ecg_record_id"])
    c = cxr.reindex(p["cxr_record_id"])
    labs = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in e["labels"]]
    e_lab = e["labelled"].fillna(False).astype(bool).to_numpy()
    p["hyp"] = np.where(e_lab, [float("HYP" in v) for v in labs], np.nan)
    p["ecg_class"] = [("unlabelled" if not ok else (v[0] if len(v) == 1 else "multiple"))
                      for ok, v in zip(e_lab, labs)]
    cm = pd.to_numeric(c["Cardiomegaly"], errors="coerce").to_numpy()
    c_lab = c["labelled"].fillna(False).astype(bool).to_numpy() if "labelled" in c else np.ones(len(c), bool)
    unc = np.nan if s.cardiomegaly_uncertain == "exclude" else 0.0
    p["cardiomegaly"] = np.where(~c_lab, np.nan, np.where(cm == 1.0, 1.0, np.where(cm == -1.0, unc, 0.0)))
    return p.reset_index(drop=True)


def _lookup_or_embed(art: Artifacts, variant: str, checkpoint: str, modality: str, record_ids: np.ndarray,
                     split: str, cache_dir: Path | None) -> np.ndarray:
    """Embeddings of MIMIC ``record_ids`` of one modality: from the exported ``mimic_<modality>.npz`` when it
    holds them (valid/test), else embedded from the checkpoint (training split; cached under ``cache_dir``)."""
    tag = variant + ("_untrained" if checkpoint == "untrained" else "")
    ds = f"mimic_{modality}"
    if art.has(tag, ds):
        d = art.load(tag, ds)
        pos = {r: i for i, r in enumerate(d["record_id"].tolist())}
        if all(r in pos for r in record_ids):
            return d["emb"][[pos[r] for r in record_ids]]
    cache = None if cache_dir is None else Path(cache_dir) / tag / f"{ds}_{split}.npz"
    if cache is not None and cache.is_file():
        from ..embeddings import load_embeddings

        z = load_embeddings(cache)
        pos = {r: i for i, r in enumerate(z["record_id"].tolist())}
        if all(r in pos for r in record_ids):
            return z["emb"][[pos[r] for r in record_ids]]
    emb = _embed_records(art, variant, checkpoint, modality, record_ids)
    if cache is not None:
        from ..io import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, emb=emb, record_id=np.array(record_ids, dtype=str))
    return emb


def _embed_records(art: Artifacts, variant: str, checkpoint: str, modality: str, record_ids) -> np.ndarray:
    """Embed MIMIC records with a variant's encoder through the same cache and path as the export."""
    from .. import cohort
    from ..embeddings import embed_arrays
    from ..quality import QualityLog

    cfg, q = art.cfg, QualityLog()
    linked = art.linked()
    frame = linked["cxr"] if modality == "cxr" else linked["ecg"]
    cached = (cohort.cxr_cache if modality == "cxr" else cohort.ecg_cache)(cfg, f"mimic_{modality}", frame, q)
    man = cached.manifest.set_index(cached.manifest["record_id"].astype(str)).loc[list(record_ids)].reset_index(
        drop=True)
    stats = cohort.ecg_norm_stats(cfg, cached) if modality == "ecg" else None
    model = art.model(variant, checkpoint)
    return embed_arrays(model, cached, man, modality, cfg, stats, art.device)


def pair_embeddings(art: Artifacts, system: System, split: str = "test", s: EvalSettings | None = None,
                    cache_dir=None) -> dict:
    """Row-aligned CXR and ECG embeddings of the MIMIC-PAIR pairs of ``split`` for ``system`` (its CXR
    encoder's CXR embedding, its ECG encoder's ECG embedding) with the pair labels (``pair_labels``)."""
    pl = pair_labels(art, split, s)
    out = {"pairs": pl}
    for modality in ("cxr", "ecg"):
        v = system.variant(modality)
        if v is None:
            raise ValueError(f"system {system.key} has no {modality} encoder")
        out[modality] = _lookup_or_embed(art, v, system.checkpoint, modality,
                                         pl[f"{modality}_record_id"].to_numpy(str), split, cache_dir)
    return out


# ----------------------------------------------------------------------------------------- Fig. 2
def _top1_agreement(q, g, chunk: int = 1024) -> float:
    """Percent of queries whose top-1 gallery item is the most common top-1 (hubness diagnostic: near 100
    means every query ranks the gallery alike, so recall sits at chance whatever the pairing)."""
    q, g = np.asarray(q, np.float32), np.asarray(g, np.float32)
    top = np.concatenate([(q[i:i + chunk] @ g.T).argmax(1) for i in range(0, len(q), chunk)]) if len(q) else []
    return float(100.0 * np.bincount(top).max() / len(top)) if len(top) else math.nan


@_with_settings
def crossmodal_recall_table(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                            systems: Sequence[str] = FIG2_SYSTEMS, split: str = "test") -> pd.DataFrame:
    """Fig. 2 right: CXR -> ECG Recall@K on the MIMIC-PAIR ``split`` pairs (gallery = the distinct ECGs of
    those pairs), with patient-level CIs, the chance level K / gallery size and ``same_top1_pct``
    (``_top1_agreement``)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = _systems(s.untrained_variant)
    rows = []
    for key in systems:
        system = sysd[key]
        pe = pair_embeddings(art, system, split, s)
        pl = pe["pairs"]
        r = cross_modal_recall(pe["cxr"], pe["ecg"], gallery_keys=pl["ecg_record_id"].tolist(),
                               ks=s.crossmodal_ks, ties=s.ties, groups=pl["subject_id"].astype(str).to_numpy(),
                               n_boot=s.n_boot, seed=s.seed, alpha=s.alpha)
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


@_with_settings
def tsne_pairs(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
               systems: Sequence[str] = FIG2_SYSTEMS[1:], split: str = "test") -> pd.DataFrame:
    """Fig. 2 left: a seeded openTSNE map per system of its CXR and ECG embeddings of the pairs (cosine
    metric, PCA initialisation, one thread for reproducibility). Long frame: system, pair, modality, x, y,
    ECG class, cardiomegaly, HYP."""
    from openTSNE import TSNE

    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = _systems(s.untrained_variant)
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


# ----------------------------------------------------------------------------------------- Fig. 3
def _fig3_data(art: Artifacts, tag: str, dataset: str, s: EvalSettings):
    """(prompt set, train x, train y, test x, test y (class idx or multi-hot), test groups, multilabel)."""
    d = art.load(tag, dataset)
    split = d["split"]
    groups = d["subject_id"] if "subject_id" in d else None
    if dataset in ("covid", "rsna"):
        ps = covid_prompts(s.binary_rule, s.covid_n_prompts, s.seed) if dataset == "covid" \
            else rsna_prompts(s.binary_rule, s.rsna_n_prompts, s.seed)
        keep = np.isin(d["label"], ps.classes)
        y = np.array([ps.classes.index(v) if v in ps.classes else -1 for v in d["label"]])
        tr, te = keep & (split == "train"), keep & (split == "test")
        return ps, d["emb"][tr], y[tr], d["emb"][te], y[te], None if groups is None else groups[te], False
    ps = ecg_prompts(dataset)
    names = d["label_names"].tolist()
    ym = d["labels"][:, [names.index(c) for c in ps.classes]]
    tr, te = split == "train", split == "test"
    return ps, d["emb"][tr], ym[tr], d["emb"][te], ym[te], None if groups is None else groups[te], True


@_with_settings
def fig3_zero_few_shot(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                       systems: Sequence[str] = FIG3_SYSTEMS, datasets: Sequence[str] = tuple(FIG3_DATASETS),
                       progress: Callable | None = None) -> pd.DataFrame:
    """Fig. 3 in long form: per (dataset, system) one zero-shot row (``K = 0``) and one row per few-shot K.

    Zero-shot: cosine to the class prompts of the system's own text tower (COVID / RSNA binary with
    ``binary_rule``; PTB-XL / ICBEB: argmax over the classes on single-label test records, macro AUROC on
    all). Few-shot: balanced linear probe on frozen training-split embeddings, mean over ``n_support_sets``
    seeded sets, CI = patient bootstrap of that mean over the test set. A K larger than the smallest
    training class is infeasible and recorded as such (never silently sampled with replacement)."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    sysd = _systems(s.untrained_variant)
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
            z = zero_shot_multilabel(xte, yte, ps, **kw) if multi else zero_shot(xte, yte, ps, **kw)
            rows.append({**base, "setting": "zero-shot", "K": 0, "balanced_accuracy": z["balanced_accuracy"],
                         "lo": z.get("balanced_accuracy_lo", math.nan), "hi": z.get("balanced_accuracy_hi", math.nan),
                         "sd_over_sets": math.nan, "n_test": z.get("n_single_label", z.get("n")),
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
    params = {**s.as_dict(), "figure": "Fig. 3, zero-shot (K=0) and few-shot balanced accuracy",
              "splits": "train = support pool, test = evaluation (PTB-XL folds 1-8 / 10)",
              "multilabel_protocol": "PTB-XL / ICBEB: single-label records (balanced acc); macro AUROC on all",
              "ci": "patient-level cluster bootstrap of the test set (few-shot: of the mean over support sets)"}
    for k in ("n_support_sets", "n_boot", "seed", "probe_C", "prompt_pool"):
        df[k] = params[k]
    df.attrs["params"] = params
    return df


def _shared_legend(fig, axes, extra: dict, bottom: float) -> None:
    """One legend under a panel figure: each label once (first handle), the extra markers, a chance line."""
    from matplotlib.lines import Line2D

    seen: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    seen.update(extra)
    seen["chance"] = Line2D([], [], ls="--", color="k", lw=0.8)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 4), fontsize=8,
               bbox_to_anchor=(0.5, bottom))


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

    _shared_legend(fig, axes[0], {"zero-shot (star, 95% CI)": Line2D([], [], marker="*", ls="", color="0.3", ms=9)},
                   bottom=-0.1)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------- Table 3
@_with_settings
def table3_crossmodal(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                      systems: Sequence[str] = TABLE3_SYSTEMS, cache_dir=None) -> pd.DataFrame:
    """Table 3: cross-modality zero-shot on the MIMIC-PAIR test pairs with prototypes from the training
    pairs (``crossmodal.cross_modal_zero_shot``). Hypertrophy from CXR: test CXR vs the two ECG prototypes
    (HYP / other, labelled training ECGs); Cardiomegaly from ECG: test ECG vs CXR prototypes. Balanced
    accuracy is undefined when the test pairs hold only one class: then it is NaN (with the accuracy on
    the class present in ``note``), never a one-class "balanced" accuracy."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(cfg["runs_dir"]) / "06" / "support_embeddings"
    sysd = _systems(s.untrained_variant)
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
                                          .to_numpy()[qm], n_boot=s.n_boot, seed=s.seed, alpha=s.alpha)
                if len(np.unique(yq)) < 2:
                    present = int(yq[0]) if len(yq) else -1
                    row.update(balanced_accuracy=math.nan, lo=math.nan, hi=math.nan,
                               note=(f"test pairs hold only class {present} (1 = finding): balanced accuracy "
                                     f"undefined; accuracy on that class = {r['balanced_accuracy']:.1f}"))
                else:
                    row.update(balanced_accuracy=r["balanced_accuracy"], lo=r["balanced_accuracy_lo"],
                               hi=r["balanced_accuracy_hi"])
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


# ----------------------------------------------------------------------------------------- Table 2 figure
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

    _shared_legend(fig, axes[0], {"paper (hollow: other text protocol)": Line2D([], [], marker="D", ls="", color="k",
                                                                                ms=5)}, bottom=-0.12)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------- readings
def _fmt_ci(x, v="rsum") -> str:
    return f"{x[v]:.1f} [{x[v + '_lo']:.1f}, {x[v + '_hi']:.1f}]"


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
        line = (f"{mod.upper()}: highest RSUM {best['system_label']} {_fmt_ci(best)} ({rel} chance "
                f"{best['chance_rsum']:.1f}")
        if len(un):
            u = un.iloc[0]
            line += f", untrained {_fmt_ci(u)})."
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
            line += (f"zero-shot best {b['system_label']} {b['balanced_accuracy']:.1f} [{b['lo']:.1f}, {b['hi']:.1f}],"
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
