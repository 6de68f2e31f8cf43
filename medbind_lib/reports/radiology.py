"""MEDCSP's radiology evaluations (notebooks 11 and 12), with every MEDBind system in the same tables.

Both methods export their image and report towers in one format (``runs/<profile>/embeddings/<tag>/``), so a
row is a tag and every row is scored on the SAME queries, images and bootstrap resamples: the head-to-head no
paper has.

* Text->image retrieval (MEDCSP Tables 1 and 5), by ``medcsp_retrieval_gallery`` (``retrieval_inputs``):
  ``study_images`` (default, the paper's "corresponding X-ray images", 4.3.2) - each report (MIMIC study, Open-I
  report) queries a gallery of every image of the set's studies, frontal and lateral (the exports' rows plus their
  ``extra_*`` images); relevant = every image of the report's study. ``frontal`` (the earlier reading) - each
  distinct report text queries the frontal images the other tables embed; relevant = images with an identical
  report text (MIMIC-CXR, Open-I) or the study's one record image (hold-out). P@K = relevant in the top K / K,
  R@K = relevant in the top K / relevant, averaged over queries (``retrieval.text_to_image_precision_recall``);
  ``relevant_per_query`` = the mean relevant count. Sets: ``mimic_cxr`` = the TEST split (patients held out of
  both methods' pre-training), ``openi``, and ``mimic_cxr_holdout`` (MEDCSP's hold-out: patients outside the ICU
  EHR source, never in MEDCSP pre-training but in MEDBind's, so only MEDCSP rows are scored there). Table 1's published numbers
  stand beside the hold-out, the set the paper scored; the test split has no paper column.
* Zero-shot (Tables 2 and 6): COVID-19 vs normal, and enlarged cardiomediastinum; class score = mean cosine
  to the class prompts, prediction = the higher class; precision, recall and F1 of the positive class as the
  paper reports them, plus AUROC of the score difference. The synthetic CheXpert carries no enlarged
  cardiomediastinum label, so that task reads the MIMIC-CXR TEST images, labelled from their reports (U-zeroes);
  the paper's number (CheXpert) stands beside ours marked "other dataset".

CIs: patient-level bootstrap (``EvalSettings``); paired differences of two rows resample the same patients.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from . import paper
from ..metrics.common import text_keys
from ..metrics.binary import auroc_replicates, binary_counts_replicates
from ..metrics.bootstrap import percentile_ci
from ..metrics.paired import mean_difference_replicates, rests_on, seed_average
from ..metrics.prompts import covid_prompts, ec_prompts
from ..metrics.protocol import EvalSettings, eval_settings, torch_threads
from .. import registry
from .artifacts import Artifacts, replicate_systems
from ..replicates import run_name
from ..metrics.zeroshot import binary_auroc, binary_class_score, class_scores

__all__ = ["RADIOLOGY_SYSTEMS", "ABLATION_SYSTEMS", "RETRIEVAL_SETS", "ZERO_SHOT_TASKS", "precision_recall_f1",
           "radiology_retrieval", "radiology_zero_shot", "paired_radiology", "plot_retrieval_curves",
           "plot_zero_shot", "describe_radiology", "retrieval_wide", "zero_shot_wide", "label_of", "ALWAYS_POSITIVE",
           "retrieval_keys", "retrieval_inputs", "per_query_recall", "replicate_systems"]

# rows: MEDCSP's variants and untrained reference, then MEDBind's CXR-capable systems (notebook 02)
RADIOLOGY_SYSTEMS = registry.table_rows("radiology")
PRETRAINED_ROWS = registry.PRETRAINED_ROWS
ABLATION_SYSTEMS = registry.table_rows("ablation")
# set -> (embedding file, split or None = every row, relevance key of the `frontal` gallery: text | study_id)
RETRIEVAL_SETS = {"mimic_cxr": ("mimic_cxr", "test", "text"), "openi": ("openi", None, "text"),
                  "mimic_cxr_holdout": ("mimic_cxr_holdout", None, "study_id")}
ZERO_SHOT_TASKS = ("covid", "chexpert_ec")
EC = "Enlarged Cardiomediastinum"
PRF = ("precision", "recall", "f1")
ALWAYS_POSITIVE = "always_positive"   # reference row: F1 of predicting every image positive = 2p / (1 + p)


def label_of(key: str) -> str:
    return "Always positive (reference)" if key == ALWAYS_POSITIVE else registry.system(key).label


def _rows(z: dict, split: str | None) -> np.ndarray:
    return np.ones(len(z["emb"]), bool) if split is None else z["split"] == split


def _tags(art: Artifacts, systems: Sequence[str], dataset: str) -> dict[str, str]:
    """{system: embedding tag} of the systems whose file for ``dataset`` exists (the others have not run)."""
    out = {}
    for key in systems:
        tag = registry.system(key).tag("cxr")
        if art.has(tag, dataset):
            out[key] = tag
    return out


def _same_rows(ref: dict | None, z: dict, dataset: str) -> None:
    """Paired comparisons need every row (and gallery image) scored on the same records in the same order."""
    if ref is None:
        return
    for k in ("record_id", "extra_record_id"):
        if k in ref and k in z and not np.array_equal(ref[k], z[k]):
            raise ValueError(f"{dataset}: systems exported different records; re-export the embeddings")


def radiology_retrieval(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                        systems: Sequence[str] = RADIOLOGY_SYSTEMS, datasets: Sequence[str] = tuple(RETRIEVAL_SETS),
                        ks: Sequence[int] = paper.MEDCSP_KS, per_query: dict | None = None) -> pd.DataFrame:
    """Long table: one row per (dataset, system, metric) with value, CI, the paper's number and the counts.
    ``per_query`` (a dict) receives {(dataset, system): {"R@K": values, "groups": patients}} for paired tests."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    out = []
    with torch_threads(s.torch_threads):
        for ds in datasets:
            fname, split, key = RETRIEVAL_SETS[ds]
            ref = None
            for sys_key, tag in _tags(art, systems, fname).items():
                z = art.load(tag, fname)
                _same_rows(ref, z, ds)
                ref = ref or z
                x = retrieval_inputs(z, split, key, s.medcsp_retrieval_gallery, s.text_identity)
                r = text_to_image(x["text"], x["images"], x["query_keys"], x["image_keys"], x["groups"], ks, s)
                if per_query is not None:
                    per_query[(ds, sys_key)] = {**r["per_query"], "groups": x["groups"][r["per_query"]["rows"]]}
                for kind in ("P", "R"):
                    for k in ks:
                        name = f"{kind}@{k}"
                        out.append({"dataset": ds, "system": sys_key, "label": registry.system(sys_key).label,
                                    "metric": name, "value": r[name], "lo": r.get(f"{name}_lo", math.nan),
                                    "hi": r.get(f"{name}_hi", math.nan),
                                    "paper": paper.medcsp_retrieval(ds, sys_key, name),
                                    "n_queries": r["n_queries"], "n_images": r["n_gallery"],
                                    "relevant_per_query": r["relevant_per_query"],
                                    "n_skipped": r["n_skipped_no_relevant"]})
    df = pd.DataFrame(out)
    df.attrs["params"] = {**s.as_dict(), "ks": list(ks), "sets": {d: RETRIEVAL_SETS[d] for d in datasets},
                          "systems": list(systems)}
    return df


def retrieval_keys(z: dict, rows: np.ndarray, key: str, identity: str = "lower_ws") -> list:
    """The relevance key of each query row: its report text normalised by ``identity`` (identical text = the same
    study) for ``key = "text"``, else the ``key`` column itself (``study_id``)."""
    return text_keys(list(z["text"][rows]), identity) if key == "text" else list(z[key][rows])


def retrieval_inputs(z: dict, split: str | None, key: str, gallery: str = "study_images",
                     identity: str = "lower_ws") -> dict:
    """One exported set's queries and gallery on the rows of ``split`` (None = every row): ``text`` (query rows'
    report embeddings), ``images``, ``query_keys`` / ``image_keys`` (equal key = relevant) and ``groups`` (patient
    per query row). ``study_images``: queries keyed by study, gallery = the rows' images + the ``extra_*`` images of
    the same split, so every image of a report's study is relevant; ``frontal``: the rows' images, keyed by ``key``."""
    m = _rows(z, split)
    out = {"text": z["text_emb"][m], "groups": z["subject_id"][m]}
    if gallery == "frontal":
        keys = retrieval_keys(z, m, key, identity)
        return {**out, "images": z["emb"][m], "query_keys": keys, "image_keys": keys}
    if gallery != "study_images":
        raise ValueError(f"medcsp_retrieval_gallery must be study_images or frontal, got {gallery!r}")
    if "extra_emb" not in z:
        raise ValueError("embeddings without the study gallery (extra_*): re-export them (notebooks 02 and 09) or "
                         "set medcsp_retrieval_gallery: frontal")
    e = np.ones(len(z["extra_emb"]), bool) if split is None else z["extra_split"] == split
    study = list(z["study_id"][m])
    return {**out, "images": np.concatenate([z["emb"][m], z["extra_emb"][e]]), "query_keys": study,
            "image_keys": study + list(z["extra_study_id"][e])}


def per_query_recall(z: dict, dataset: str, split: str | None, k: int = 10, identity: str = "lower_ws",
                     ties: str = "pessimistic", gallery: str = "study_images") -> tuple[np.ndarray, np.ndarray]:
    """(per-query text->image R@k, patient of each scored query) of one exported set on the rows of ``split``
    (None = every row), relevance by ``gallery`` (``retrieval_inputs``), no bootstrap: the inputs of a paired
    test of two models on the same queries (notebook 09: trained vs untrained)."""
    from ..metrics.retrieval import text_to_image_precision_recall

    x = retrieval_inputs(z, split, RETRIEVAL_SETS[dataset][2], gallery, identity)
    r = text_to_image_precision_recall(x["text"], x["images"], x["query_keys"], x["image_keys"], ks=(k,), ties=ties,
                                       n_boot=0, return_per_query=True)
    return r["per_query"][f"R@{k}"], x["groups"][r["per_query"]["rows"]]


def text_to_image(text_emb, image_emb, query_keys, image_keys, groups, ks, s: EvalSettings) -> dict:
    from ..metrics.retrieval import text_to_image_precision_recall

    return text_to_image_precision_recall(text_emb, image_emb, query_keys, image_keys, ks=tuple(ks), ties=s.ties,
                                          groups=groups, n_boot=s.n_boot, seed=s.seed, alpha=s.alpha,
                                          return_per_query=True)


def prf_from_counts(c: np.ndarray) -> np.ndarray:
    """[..., 3] (TP, predicted positives, true positives) -> [..., 3] precision, recall, F1 in percent (NaN where
    undefined; see ``precision_recall_f1``)."""
    tp, npred, ntrue = c[..., 0], c[..., 1], c[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * np.stack([np.where(npred > 0, tp / npred, np.nan), np.where(ntrue > 0, tp / ntrue, np.nan),
                               np.where(npred + ntrue > 0, 2 * tp / (npred + ntrue), np.nan)], -1)


def precision_recall_f1(y, pred) -> tuple[float, float, float]:
    """Precision, recall and F1 (percent) of class 1. Precision is NaN without a predicted positive, recall
    without a true one; F1 = 2 TP / (true + predicted positives), NaN only when both are 0 (a bootstrap
    replicate can draw no positive)."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return tuple(float(v) for v in prf_from_counts(np.array([(y & pred).sum(), pred.sum(), y.sum()], float)))


def _auroc(y, score) -> float:
    """AUROC in percent (NaN with one class), the same function MEDBind's zero-shot AUROC uses."""
    return 100 * binary_auroc(y, score)


def _zero_shot_set(art: Artifacts, tag: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image embeddings, labels 0/1, patients, record ids) of a zero-shot task."""
    if task == "covid":
        z = art.load(tag, "covid")
        return z["emb"], (z["label"] == "COVID").astype(int), z["subject_id"], z["record_id"]
    z = art.load(tag, "mimic_cxr")
    m = (z["split"] == "test") & z["labelled"]
    j = list(z["label_names"]).index(EC)
    return z["emb"][m], (z["labels"][m, j] == 1).astype(int), z["subject_id"][m], z["record_id"][m]


def _prompt_set(task: str, s: EvalSettings):
    if task == "covid":
        return covid_prompts(s.covid_prompt_rule, s.covid_n_prompts, s.seed)
    return ec_prompts("table_a1")


def radiology_zero_shot(cfg, settings: EvalSettings | None = None, artifacts: Artifacts | None = None,
                        systems: Sequence[str] = RADIOLOGY_SYSTEMS, tasks: Sequence[str] = ZERO_SHOT_TASKS,
                        per_query: dict | None = None) -> pd.DataFrame:
    """Long table: (task, system, metric in precision/recall/f1/auroc) with CIs and the paper's numbers.
    ``per_query`` receives {(task, system): {"y", "pred", "score", "groups"}} for paired tests."""
    s = settings or eval_settings(cfg)
    art = artifacts or Artifacts(cfg)
    out = []
    with torch_threads(s.torch_threads):
        for task in tasks:
            ps = _prompt_set(task, s)
            ref = None
            for sys_key, tag in _tags(art, systems, "covid" if task == "covid" else "mimic_cxr").items():
                x, y, groups, rid = _zero_shot_set(art, tag, task)
                _same_rows(ref, {"record_id": rid}, task)
                ref = ref or {"record_id": rid}
                sysd = registry.system(sys_key)
                enc = art.text_encoder(sysd.variant("cxr"), sysd.checkpoint)
                pe = {c: enc(p) for c, p in ps.prompts.items()}
                scores = class_scores(x, pe, list(ps.classes), s.prompt_pool)
                pred, score = scores.argmax(1), binary_class_score(scores, ps.binary_rule)
                if per_query is not None:
                    per_query[(task, sys_key)] = {"y": y, "pred": pred, "score": score, "groups": groups}
                out += _zero_shot_rows(task, sys_key, y, pred, score, groups, s)
                for r in out[-4:]:
                    r.update(n=len(y), n_positive=int(y.sum()), **ps.meta())
            if ref is not None:                      # what F1 rewards at this prevalence without any image
                out += _zero_shot_rows(task, ALWAYS_POSITIVE, y, np.ones_like(y), np.zeros(len(y)), groups, s)
                for r in out[-4:]:
                    r.update(n=len(y), n_positive=int(y.sum()))
    df = pd.DataFrame(out)
    df.attrs["params"] = {**s.as_dict(), "tasks": list(tasks), "systems": list(systems),
                          "chexpert_ec_set": "MIMIC-CXR test images, report labels, U-zeroes (synthetic CheXpert "
                                             "has no enlarged cardiomediastinum label)"}
    return df


def _zero_shot_reps(y, pred, score, groups, s: EvalSettings) -> tuple[np.ndarray, np.ndarray]:
    """(values [4], replicates [n_boot, 4]) of precision, recall, F1, AUROC (percent), one resample set."""
    value = np.r_[precision_recall_f1(y, pred), _auroc(y, score)]
    reps = np.column_stack([prf_from_counts(binary_counts_replicates(y, pred, groups, s.n_boot, s.seed)),
                            100 * auroc_replicates(y, score, groups, s.n_boot, s.seed)])
    return value, reps


def _zero_shot_rows(task, sys_key, y, pred, score, groups, s: EvalSettings) -> list[dict]:
    value, reps = _zero_shot_reps(y, pred, score, groups, s)
    rows = []
    for j, name in enumerate((*PRF, "auroc")):
        lo, hi = percentile_ci(reps[:, j], s.alpha)
        ref = paper.medcsp_zero_shot(task, sys_key, name) if name in PRF and sys_key != ALWAYS_POSITIVE else math.nan
        rows.append(_zs_row(task, sys_key, name, {"value": value[j], "lo": lo, "hi": hi}, ref))
    return rows


def _zs_row(task, sys_key, metric, ci, ref) -> dict:
    return {"task": task, "system": sys_key, "label": label_of(sys_key), "metric": metric,
            "value": ci["value"], "lo": ci["lo"], "hi": ci["hi"], "paper": ref,
            "paper_note": "other dataset (CheXpert)" if task == "chexpert_ec" and not math.isnan(ref) else ""}


def paired_radiology(retrieval_pq: dict, zero_shot_pq: dict, pairs: Sequence[tuple[str, str]],
                     settings: EvalSettings, retrieval_metric: str = "R@10", n_seeds: int = 1) -> pd.DataFrame:
    """a - b with a paired patient-bootstrap CI for each (a, b): retrieval ``retrieval_metric`` per set, zero-shot
    F1 and AUROC per task. With ``n_seeds`` > 1 each difference is averaged over the pre-training seeds k whose
    replicate rows ``a@seed<k>`` and ``b@seed<k>`` were both scored (``metrics.paired.seed_average``: one resample
    of the test patients for every seed and both rows; ``seed_sd`` = SD of the per-seed differences);
    ``n_pretrain_seeds`` says how many carry the row. Pairs whose rows are missing are skipped."""
    s, out = settings, []
    for a, b in pairs:
        for (ds, key), va in retrieval_pq.items():
            if key != a or (ds, b) not in retrieval_pq:
                continue
            per = [mean_difference_replicates(retrieval_pq[(ds, x)][retrieval_metric],
                                              retrieval_pq[(ds, y)][retrieval_metric], va["groups"], s.n_boot, s.seed)
                   for x, y in _seed_pairs(retrieval_pq, ds, a, b, n_seeds)]
            out.append(_paired_row(ds, retrieval_metric, a, b, per, len(va[retrieval_metric]), va["groups"], s))
        for (task, key), za in zero_shot_pq.items():
            if key != a or (task, b) not in zero_shot_pq:
                continue
            reps = [(_zero_shot_reps(zero_shot_pq[(task, x)]["y"], zero_shot_pq[(task, x)]["pred"],
                                     zero_shot_pq[(task, x)]["score"], za["groups"], s),
                     _zero_shot_reps(zero_shot_pq[(task, y)]["y"], zero_shot_pq[(task, y)]["pred"],
                                     zero_shot_pq[(task, y)]["score"], za["groups"], s))
                    for x, y in _seed_pairs(zero_shot_pq, task, a, b, n_seeds)]
            for j, metric in ((2, "f1"), (3, "auroc")):
                per = [(va[j] - vb[j], ra[:, j] - rb[:, j], va[j], vb[j]) for (va, ra), (vb, rb) in reps]
                out.append(_paired_row(task, metric, a, b, per, len(za["y"]), za["groups"], s))
    df = pd.DataFrame(out)
    df.attrs["params"] = {**s.as_dict(), "pairs": [list(p) for p in pairs], "retrieval_metric": retrieval_metric,
                          "n_seeds": n_seeds}
    return df


def _seed_pairs(pq: dict, item: str, a: str, b: str, n_seeds: int) -> list[tuple[str, str]]:
    """The (a, b) row keys of each pre-training seed where both rows were scored on ``item``."""
    keys = [(run_name(a, k), run_name(b, k)) for k in range(n_seeds)]
    return [(x, y) for x, y in keys if (item, x) in pq and (item, y) in pq]


def _paired_row(item, metric, a, b, per, n, groups, s: EvalSettings) -> dict:
    avg = seed_average(per, s.alpha)
    return {"set": item, "metric": metric, "a": a, "b": b, "value_a": avg["a"], "value_b": avg["b"],
            "a_minus_b": avg["a_minus_b"], "lo": avg["lo"], "hi": avg["hi"], "n": n,
            "n_patients": len(np.unique(groups)), "n_pretrain_seeds": avg["n_pretrain_seeds"],
            "seed_sd": avg["seed_sd"], "per_seed": avg["per_seed"]}


def _seed_sd(r) -> str:
    return f", seed SD {r['seed_sd']:.1f}" if r["n_pretrain_seeds"] > 1 else ""


def retrieval_wide(df: pd.DataFrame, dataset: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows = systems, columns = P@K / R@K as "value [lo, hi] (paper)" for one set."""
    from .format import ci_str

    d = df[df["dataset"] == dataset]
    metrics = list(metrics or dict.fromkeys(d["metric"]))
    rows = {}
    for _, r in d[d["metric"].isin(metrics)].iterrows():
        rows.setdefault(r["label"], {})[r["metric"]] = ci_str(r["value"], r["lo"], r["hi"], r["paper"])
    return pd.DataFrame(rows).T[metrics].rename_axis("system")


def zero_shot_wide(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Rows = systems, columns = precision / recall / F1 / AUROC as "value [lo, hi] (paper)" for one task."""
    from .format import ci_str

    d = df[df["task"] == task]
    rows = {}
    for _, r in d.iterrows():
        mark = "*" if r["paper_note"] else ""
        rows.setdefault(r["label"], {})[r["metric"]] = ci_str(r["value"], r["lo"], r["hi"], r["paper"], mark)
    return pd.DataFrame(rows).T[[*PRF, "auroc"]].rename_axis("system")


def plot_retrieval_curves(df: pd.DataFrame, kind: str = "R"):
    """R@K (or P@K) against K per system, one panel per set, with CI bands; the paper's MEDCSP curve dashed."""
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        d = df[(df["dataset"] == ds) & df["metric"].str.startswith(kind + "@")]
        for sys_key, g in d.groupby("system", sort=False):
            k = g["metric"].str.split("@").str[1].astype(int)
            line, = ax.plot(k, g["value"], marker="o", ms=3, label=label_of(sys_key),
                            ls=":" if "untrained" in sys_key else "-")
            ax.fill_between(k, g["lo"], g["hi"], color=line.get_color(), alpha=0.12)
            if g["paper"].notna().any():
                ax.plot(k, g["paper"], ls="--", color=line.get_color(), lw=1, label=f"{label_of(sys_key)} (paper)")
        ax.set(xscale="log", xlabel="K", ylabel=f"{kind}@K (%)", title=ds)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def plot_zero_shot(df: pd.DataFrame, metrics: Sequence[str] = ("f1", "auroc")):
    """Horizontal bars with CIs: one panel per (task, metric); the paper's number as a marker."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(df["task"]))
    fig, axes = plt.subplots(len(tasks), len(metrics), figsize=(4.4 * len(metrics), 0.32 * df["system"].nunique() *
                                                                 len(tasks) + 1.2), squeeze=False)
    for i, task in enumerate(tasks):
        for j, metric in enumerate(metrics):
            ax, d = axes[i][j], df[(df["task"] == task) & (df["metric"] == metric)]
            y = np.arange(len(d))
            ax.barh(y, d["value"], xerr=[d["value"] - d["lo"], d["hi"] - d["value"]], color="tab:blue", alpha=0.7,
                    error_kw={"lw": 1})
            ax.scatter(d["paper"], y, marker="D", color="black", s=14, zorder=3, label="paper")
            ax.set_yticks(y, d["label"], fontsize=7)
            ax.set(title=f"{task}: {metric}", xlabel="%")
            if metric == "auroc":
                ax.axvline(50, color="grey", lw=0.8, ls=":")
    fig.tight_layout()
    return fig


def describe_radiology(retrieval: pd.DataFrame, zero_shot: pd.DataFrame, paired: pd.DataFrame) -> list[str]:
    """Plain-language reading, computed from the numbers (CIs decide every 'beats')."""
    lines = []
    for _, r in paired.iterrows():
        if not np.isfinite(r["a_minus_b"]):
            lines.append(f"{r['set']} {r['metric']}: {label_of(r['a'])} vs {label_of(r['b'])} undefined here "
                         "(no positive in the set)")
            continue
        verdict = ("beats" if r["lo"] > 0 else "is below" if r["hi"] < 0 else "is not distinguishable from")
        lines.append(f"{r['set']} {r['metric']}: {label_of(r['a'])} {verdict} {label_of(r['b'])} "
                     f"({r['a_minus_b']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]{_seed_sd(r)}; {r['n']} queries/images, "
                     f"{rests_on(int(r['n_pretrain_seeds']), int(r['n_patients']))})")
    for ds, name in (("mimic_cxr", "MIMIC-CXR test"), ("mimic_cxr_holdout", "hold-out")):
        mc = retrieval[(retrieval["dataset"] == ds) & (retrieval["metric"] == "R@10")]
        if not len(mc):
            continue
        best = mc.loc[mc["value"].idxmax()]
        ref = mc["paper"].dropna()
        paper_note = (f"paper MEDCSP: {ref.iloc[0]:.2f} on its 1,202-study hold-out, a far larger gallery, so absolute "
                      "values are not comparable; " if len(ref) else "")
        lines.append(f"Best {name} R@10: {best['label']} {best['value']:.1f} [{best['lo']:.1f}, {best['hi']:.1f}] over "
                     f"{int(best['n_images'])} images, {best['relevant_per_query']:.2f} relevant per query "
                     f"({paper_note}chance R@10 ~ {100 * 10 / max(int(best['n_images']), 1):.1f})")
    for task, d in zero_shot[zero_shot["metric"] == "f1"].groupby("task", sort=False):
        ref = d[d["system"] == ALWAYS_POSITIVE]
        if not len(ref):
            continue
        above = d[(d["lo"] > float(ref["value"].iloc[0])) & (d["system"] != ALWAYS_POSITIVE)]["label"].tolist()
        lines.append(f"{task}: predicting every image positive scores F1 {float(ref['value'].iloc[0]):.1f} at this "
                     f"prevalence; above it beyond the CI: {', '.join(above) or 'no system'} (argmax of the prompt "
                     "scores, the paper's rule; the AUROC column does not depend on that threshold)")
    ec = zero_shot[(zero_shot["task"] == "chexpert_ec")]
    if len(ec) and ec["n_positive"].max() == 0:
        lines.append("Enlarged cardiomediastinum: no positive image in this profile's MIMIC-CXR test split; not scored.")
    return lines
