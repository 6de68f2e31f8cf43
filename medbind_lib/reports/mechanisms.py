"""Does each MEDCSP loss term do its job? Direct measures on the exported embeddings, one per term, compared
between the variants that differ by that term (paired, averaged over the pre-training seeds the variants have):

* **L_P** (cross-source patient alignment): an EHR record retrieves its own patient's CXR records within theta
  days (L_P's positives, ``medcsp.batches.cross_source_pairs``) among the split's CXR records, and the reverse.
  A CXR record = the mean of its image and report embeddings (unit vectors). Full and A+P against A.
* **L_A** (alignment within a record): each modality embedding of a record finds its own record among the split's
  records, the record being the mean of its OTHER modalities (CXR: image -> report, report -> image; EHR: ICD,
  drugs, demographics, ICU series, notes -> the rest). A against the untrained architecture.
* **L_D** (history distillation, Eqs. 6-7): Spearman's rho, over cross-source pairs of records of DIFFERENT
  patients (an EHR record and a CXR record: L_D's pairs), between the cosine of the two patients' diagnosis
  histories and the cosine of the two record embeddings, on the test split (held-out patients: does what L_D
  distilled generalise? The CXR exports hold no training split). Full and A+D against A. No CI: the pairs share
  records, so only the seed spread is reported.

R@K is a percentage per query (relevant in the top K / relevant), so the paired patient bootstrap of
``metrics.paired`` applies; ``n_pretrain_seeds`` says how many seeds carry each row.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import registry
from ..losses.medcsp import SOURCE_CXR, SOURCE_EHR
from ..medcsp.batches import TIME_ORIGIN, cross_source_pairs
from ..metrics.paired import mean_difference_replicates, rests_on, seed_average
from ..metrics.protocol import EvalSettings
from ..replicates import run_name
from .artifacts import Artifacts
from .case_studies import patient_histories, subject_ids

__all__ = ["COMPARISONS", "lp_retrieval", "la_retrieval", "ld_rank_correlation", "recall_at_k", "mechanism_table",
           "describe_mechanisms", "label_reference_recall"]


def _comparisons() -> tuple[tuple[str, str, str], ...]:
    """(term, row a, row b): a has the term, b does not (read from the registry's loss terms)."""
    full = registry.HEADLINE["medcsp"]
    a_only = registry.without_term(registry.without_term(full, "lp"), "ld")
    return (("L_P", full, a_only), ("L_P", registry.without_term(full, "ld"), a_only),
            ("L_A", a_only, UNTRAINED_ROW),
            ("L_D", full, a_only), ("L_D", registry.without_term(full, "lp"), a_only))


UNTRAINED_ROW = "medcsp_untrained"              # the registry's row: MEDCSP's architecture, never trained
COMPARISONS = _comparisons()


def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def recall_at_k(sim: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query (row): 100 x relevant items in the top ``k`` / relevant items (ties broken by column order)."""
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).sum(1)
    return 100.0 * hits / relevant.sum(1)


def _tag(system: str, k: int) -> str:
    """The embeddings folder of row ``system`` at pre-training seed ``k``."""
    return registry.system(run_name(system, k)).tag("cxr")


def _cxr_records(z: Mapping, records: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """(unit mean of image and report embeddings [R, d], the records found in the export)."""
    pos = {r: i for i, r in enumerate(np.asarray(z["record_id"]).astype(str))}
    keep = records[records["image_record_id"].astype(str).isin(pos)].reset_index(drop=True)
    rows = [pos[r] for r in keep["image_record_id"].astype(str)]
    emb = _unit(_unit(np.asarray(z["emb"])[rows]) + _unit(np.asarray(z["text_emb"])[rows]))
    return emb, keep


def _ehr_records(z: Mapping, records: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    pos = {int(h): i for i, h in enumerate(np.asarray(z["hadm_id"]))}
    keep = records[records["hadm_id"].astype(np.int64).isin(pos)].reset_index(drop=True)
    return _unit(np.asarray(z["emb"])[[pos[int(h)] for h in keep["hadm_id"]]]), keep


def lp_retrieval(ehr_z: Mapping, cxr_z: Mapping, ehr_records: pd.DataFrame, cxr_records: pd.DataFrame, split: str,
                 theta_days: float, k: int = 10) -> dict:
    """{direction: (R@k per query [Q], patient per query [Q])} of L_P's cross-source retrieval on ``split``:
    ``ehr_to_cxr`` (an EHR record's gallery = the split's CXR records) and ``cxr_to_ehr``; a query without a
    positive is not scored."""
    e_emb, e = _ehr_records(ehr_z, ehr_records[ehr_records["split"] == split])
    c_emb, c = _cxr_records(cxr_z, cxr_records[cxr_records["split"] == split])
    both = pd.concat([e.assign(source=SOURCE_EHR), c.assign(source=SOURCE_CXR)], ignore_index=True)
    both["time_days"] = (pd.to_datetime(both["time"]) - TIME_ORIGIN) / pd.Timedelta(days=1)
    pairs = cross_source_pairs(both, theta_days)
    rel = np.zeros((len(e), len(c)), bool)
    rel[pairs[:, 0], pairs[:, 1] - len(e)] = True
    sim = e_emb @ c_emb.T
    out = {}
    for name, s, r, subj in (("ehr_to_cxr", sim, rel, e["subject_id"]), ("cxr_to_ehr", sim.T, rel.T, c["subject_id"])):
        q = r.any(1)
        if q.any():                                            # a tiny split can hold no positive pair
            out[name] = (recall_at_k(s[q], r[q], k), subject_ids(np.asarray(subj))[q])
    return out


def ld_rank_correlation(ehr_z: Mapping, cxr_z: Mapping, ehr_records: pd.DataFrame, cxr_records: pd.DataFrame,
                        split: str, histories, subjects) -> float:
    """Spearman's rho between history cosine and embedding cosine over the split's (EHR record, CXR record) pairs
    of different patients whose histories are both non-zero (L_D's pairs and its soft target's alpha)."""
    from scipy import sparse
    from scipy.stats import spearmanr

    e_emb, e = _ehr_records(ehr_z, ehr_records[ehr_records["split"] == split])
    c_emb, c = _cxr_records(cxr_z, cxr_records[cxr_records["split"] == split])
    pos = {s: i for i, s in enumerate(subject_ids(subjects))}
    h = _unit(sparse.csr_matrix(histories).toarray())
    he, hc = (np.array([pos.get(x, -1) for x in subject_ids(d["subject_id"].to_numpy())], np.int64) for d in (e, c))
    ok_e, ok_c = he >= 0, hc >= 0
    ok_e[ok_e] = np.abs(h[he[ok_e]]).sum(1) > 0
    ok_c[ok_c] = np.abs(h[hc[ok_c]]).sum(1) > 0
    alpha = h[he[ok_e]] @ h[hc[ok_c]].T
    sim = e_emb[ok_e] @ c_emb[ok_c].T
    other = he[ok_e][:, None] != hc[ok_c][None, :]
    if other.sum() < 3:
        raise ValueError(f"{split}: {int(other.sum())} cross-source pairs of different patients with histories")
    return float(spearmanr(alpha[other], sim[other]).correlation)


def _modality_stack(z: Mapping, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """([N, M, d] unit modality embeddings, [N, M] present, names) of one export."""
    if source == "cxr":
        emb = np.stack([np.asarray(z["emb"]), np.asarray(z["text_emb"])], 1)
        return _unit(emb), np.ones(emb.shape[:2], bool), ["image", "report"]
    names = [str(n) for n in np.asarray(z["mask_names"])]
    emb = np.stack([np.asarray(z[f"{n}_emb"]) for n in names], 1)
    return _unit(emb), np.asarray(z["mask"], bool), names


def la_retrieval(z: Mapping, source: str, rows: np.ndarray, k: int = 10) -> dict:
    """{modality: (R@k per query, patient per query)}: each present modality of the records ``rows`` queries the
    records' mean of their OTHER present modalities; its own record is the one relevant item."""
    emb, mask, names = _modality_stack(z, source)
    emb, mask = emb[rows], mask[rows]
    subj = subject_ids(np.asarray(z["subject_id"])[rows])
    out = {}
    for m, name in enumerate(names):
        others = mask.copy()
        others[:, m] = False
        ok = others.any(1)
        gallery = _unit((emb * others[..., None]).sum(1))[ok]
        q = mask[:, m] & ok
        if q.sum() < 2:
            continue
        rel = np.eye(len(mask), dtype=bool)[q][:, ok]
        out[name] = (recall_at_k(_unit(emb[q, m]) @ gallery.T, rel, k), subj[q])
    return out


def _per_variant(art: Artifacts, tag: str, data: Mapping, split: str, theta: float, k: int,
                 hist: tuple) -> dict:
    """{(term, measure): (values, patients) or rho} of one exported run."""
    ehr_z, cxr_z = art.load(tag, "ehr_records"), art.load(tag, "mimic_cxr")
    out = {}
    for d, v in lp_retrieval(ehr_z, cxr_z, data["ehr_records"], data["cxr_records"], split, theta, k).items():
        out[("L_P", f"{d} R@{k}")] = v
    e_rows = np.flatnonzero(np.asarray(ehr_z["split"]) == split)
    c_rows = np.flatnonzero(np.asarray(cxr_z["split"]) == split)
    for src, z, rows in (("ehr", ehr_z, e_rows), ("cxr", cxr_z, c_rows)):
        for m, v in la_retrieval(z, src, rows, k).items():
            out[("L_A", f"{src} {m} -> own record R@{k}")] = v
    try:
        out[("L_D", "history-embedding rho, EHR x CXR pairs")] = ld_rank_correlation(
            ehr_z, cxr_z, data["ehr_records"], data["cxr_records"], split, *hist)
    except ValueError:                                         # a tiny split: too few pairs with histories
        pass
    return out


def mechanism_table(cfg, settings: EvalSettings, data: Mapping, art: Artifacts | None = None, split: str = "test",
                    k: int = 10, n_seeds: int = 1, comparisons: Sequence[tuple[str, str, str]] = COMPARISONS
                    ) -> pd.DataFrame:
    """One row per (term, measure, comparison): a, b, a - b averaged over the seeds where both runs were
    exported, the paired patient-bootstrap CI (R@K rows; NaN for rho), seed SD and per-seed values."""
    art = art or Artifacts(cfg)
    hist = patient_histories(data["icd"], data["ehr_records"])
    theta = float(cfg["medcsp_theta_days"])
    cache: dict = {}

    def measures(system: str, kk: int):
        tag = _tag(system, kk)
        if tag not in cache:
            cache[tag] = (_per_variant(art, tag, data, split, theta, k, hist)
                          if art.has(tag, "ehr_records") and art.has(tag, "mimic_cxr") else None)
        return cache[tag]

    rows = []
    for term, a, b in comparisons:
        per_seed = [(measures(a, kk), measures(b, kk)) for kk in range(n_seeds)]
        per_seed = [(x, y) for x, y in per_seed if x is not None and y is not None]
        if not per_seed:
            continue
        for key in [key for key in per_seed[0][0] if key[0] == term and all(key in x and key in y
                                                                              for x, y in per_seed)]:
            rows.append(_row(term, key[1], a, b, [(x[key], y[key]) for x, y in per_seed], settings))
    df = pd.DataFrame(rows)
    df.attrs["params"] = {**settings.as_dict(), "split": split, "k": k, "medcsp_theta_days": theta,
                          "n_seeds": n_seeds, "comparisons": [list(c) for c in comparisons]}
    return df


def _row(term, measure, a, b, per_seed: list, s: EvalSettings) -> dict:
    head = {"term": term, "measure": measure, "a": a, "b": b}
    if not isinstance(per_seed[0][0], tuple):                  # a rho per run: the seed spread only
        d = np.array([x - y for x, y in per_seed])
        return {**head, "value_a": float(np.mean([x for x, _ in per_seed])),
                "value_b": float(np.mean([y for _, y in per_seed])), "a_minus_b": float(d.mean()),
                "lo": np.nan, "hi": np.nan, "n_queries": np.nan, "n_patients": np.nan,
                "n_pretrain_seeds": len(d), "seed_sd": float(d.std(ddof=1)) if len(d) > 1 else np.nan,
                "per_seed": " ".join(f"{x:+.3f}" for x in d)}
    (va, g), _ = per_seed[0]
    reps = [mean_difference_replicates(x[0], y[0], g, s.n_boot, s.seed) for x, y in per_seed]
    avg = seed_average(reps, s.alpha)
    return {**head, "value_a": avg["a"], "value_b": avg["b"], "a_minus_b": avg["a_minus_b"], "lo": avg["lo"],
            "hi": avg["hi"], "n_queries": len(va), "n_patients": len(np.unique(g)),
            "n_pretrain_seeds": avg["n_pretrain_seeds"], "seed_sd": avg["seed_sd"], "per_seed": avg["per_seed"]}


def describe_mechanisms(df: pd.DataFrame, label=str) -> list[str]:
    """Per term: does the variant with the term beat the one without, beyond the CI (R@K) or in every seed (rho)?"""
    out = []
    for _, r in df.iterrows():
        n = int(r["n_pretrain_seeds"])
        if np.isfinite(r["lo"]):
            verdict = ("shows the term at work (CI above 0)" if r["lo"] > 0 else "goes the wrong way (CI below 0)"
                       if r["hi"] < 0 else "shows nothing beyond the noise")
            basis = rests_on(n, int(r["n_patients"]))
            ci = f" [{r['lo']:+.1f}, {r['hi']:+.1f}]"
        else:
            d = [float(x) for x in str(r["per_seed"]).split()]
            verdict = ("higher in every seed" if min(d) > 0 else "lower in every seed" if max(d) < 0
                       else "mixed across seeds") + " (no CI: the pairs share records)"
            basis, ci = rests_on(n), ""
        spread = f", seed SD {r['seed_sd']:.3g}" if n > 1 else ""
        out.append(f"{r['term']}, {r['measure']}: {label(r['a'])} - {label(r['b'])} = {r['a_minus_b']:+.3g}{ci}"
                   f"{spread}: {verdict} ({basis})")
    return out


def label_reference_recall(cxr_labels, ecg_labels, k: int = 10) -> float:
    """How far the findings LABELS alone carry CXR->ECG retrieval of the paired ECG (EMCL's job): a logistic
    regression per ECG label from the CXR's labels, fitted on the set itself (optimistic), scores each candidate ECG
    by the likelihood of its label vector; R@k of the true pair (percent; ties, which few binary labels make
    common, broken uniformly at random: the expected hit per query). A reference for
    how much paired signal the cohort's shared findings hold, not a bound on what embeddings can learn (the images
    and signals carry more than their labels)."""
    from sklearn.linear_model import LogisticRegression

    x = (np.nan_to_num(np.asarray(cxr_labels, np.float64)) > 0.5).astype(np.float64)
    y = np.nan_to_num(np.asarray(ecg_labels, np.float64)) > 0.5
    logp = np.zeros((len(x), len(x)))
    for j in range(y.shape[1]):
        if y[:, j].min() == y[:, j].max():
            continue
        p = np.clip(LogisticRegression(C=10.0, max_iter=1000).fit(x, y[:, j]).predict_proba(x)[:, 1], 1e-6, 1 - 1e-6)
        logp += np.where(y[None, :, j], np.log(p)[:, None], np.log1p(-p)[:, None])
    own = np.diag(logp)[:, None]
    above, tied = (logp > own).sum(1), (logp == own).sum(1)                  # tied includes the pair itself
    return float(100 * np.mean(np.clip((k - above) / tied, 0.0, 1.0)))
