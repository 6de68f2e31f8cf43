"""MEDCSP case studies (paper Figures 8 and 9) on notebook 09's exported embeddings, with measured scores.

Figure 8 shows the image and report embeddings of the two patients with the most CXR studies: with L_A only
they group by MODALITY, with the full model by PATIENT. Which patients (``medcsp_case_population``; pre-training
patients by default, our reading of the paper) and their export are :mod:`medbind_lib.medcsp.cases`'s; both
figures draw a row per population, the profile's first. A two-patient picture is an anecdote, so the
grouping is also measured - cosine silhouette and k-NN purity by patient and by modality - on any number of
patients, with a patient-level bootstrap CI (``grouping_table``) and a paired full-minus-A difference
(``grouping_difference``).

Figure 9 shows three patients, two with overlapping diagnosis histories and one without; the claim is that
the overlapping pair's EHR-record and CXR embeddings are closer to each other than to the third patient's
(``triplet_similarity``, averaged over modality blocks so that a patient with more EHR records than CXR
studies does not weigh the mean towards one modality).

"Points" everywhere are dicts of aligned arrays: ``emb`` [M, d], ``patient`` [M] (subject ids as str),
``modality`` [M] (str), ``record_id`` [M] (str). Subject ids are compared as text ("10013631"): the
embedding files hold them as text, notebook 08's frames as integers. An image is one point, a study's report one
point however many images the study has.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ..layout import RunLayout
from ..medcsp.cases import CASES_FILE
from ..metrics.bootstrap import bootstrap_mean

__all__ = ["CASE_FILES", "POPULATION_LABELS", "load_case_embeddings", "subject_ids", "pick_top_patients",
           "case_patients", "cxr_points", "ehr_points",
           "concat_points", "silhouette_samples_cosine", "knn_purity_samples", "knn_chance", "grouping_scores",
           "grouping_table", "grouping_difference", "project_2d", "plot_fig8", "patient_histories",
           "case_candidates", "pick_overlap_triplet", "triplet_similarity", "plot_fig9"]

CASE_FILES = ("mimic_cxr", "mimic_cxr_holdout", CASES_FILE, "ehr_records")
POPULATION_LABELS = {"pretraining": "pre-training patients (train split)",
                     "test": "held-out patients (test split)"}
IMAGE, REPORT, EHR = "CXR image", "CXR report", "EHR record"
_MARKERS = {IMAGE: "o", REPORT: "^", EHR: "s"}
_EXTRA_MARKERS = ("D", "v", "P", "X", "*", "<", ">")


# ----------------------------------------------------------------------------------------------- loading
def load_case_embeddings(root, variant: str, files: Sequence[str] = CASE_FILES) -> dict:
    """{file: arrays} of ``<root>/<variant>/<file>.npz``; ``root`` is ``runs/<profile>/embeddings`` or a config
    (``RunLayout.embeddings()``). Fails naming notebook 09 so a missing export is not mistaken for an empty cohort."""
    from ..export import load_embeddings

    if not isinstance(root, (str, Path)):
        root = RunLayout(root).embeddings()
    out = {}
    for f in files:
        p = Path(root) / variant / f"{f}.npz"
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: export the {variant!r} embeddings first (notebook 09)")
        out[f] = load_embeddings(p)
    return out


def subject_ids(a) -> np.ndarray:
    """Subject ids as text without a float tail (int 10013631 and "10013631" must match)."""
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return a.astype(str)
    if a.dtype.kind == "f":
        return a.astype(np.int64).astype(str)
    return np.char.strip(a.astype(str))


def _id_key(s: str):
    """Sort key for subject ids: numeric where they are numbers (so "9" < "10"), text otherwise."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _rows(z: Mapping, split: Optional[str | Sequence[str]]) -> np.ndarray:
    n = len(z["subject_id"])
    if split is None:
        return np.ones(n, bool)
    if "split" not in z:
        raise KeyError("the embedding file has no 'split' array: pass split=None")
    return np.isin(np.asarray(z["split"]).astype(str), [split] if isinstance(split, str) else list(split))


def _distinct_per_subject(subj: np.ndarray, keys: np.ndarray) -> dict[str, int]:
    seen: dict[str, set] = {}
    for s, k in zip(subj.tolist(), keys.tolist()):
        seen.setdefault(s, set()).add(k)
    return {s: len(v) for s, v in seen.items()}


def _study_keys(z: Mapping) -> np.ndarray:
    """One key per CXR study: ``study_id`` where the file has it (the hold-out, the case-study export), else
    ``record_id`` - an export without study ids is per IMAGE, so there each image counts as a study."""
    return np.asarray(z["study_id"] if "study_id" in z else z["record_id"]).astype(str)


# ---------------------------------------------------------------------------------------------- Figure 8
def pick_top_patients(z: Mapping, n: int = 2, split: Optional[str | Sequence[str]] = "test") -> list[str]:
    """The ``n`` subjects with the most CXR studies among the rows of ``split`` of one embedding file
    (default the ``mimic_cxr`` test split; ``split=None`` for the hold-out, whose split is "holdout").
    Ties go to the smaller subject id, so the figure is the same on every run."""
    keep = _rows(z, split)
    counts = _distinct_per_subject(subject_ids(z["subject_id"])[keep], _study_keys(z)[keep])
    order = sorted(counts, key=lambda s: (-counts[s], _id_key(s)))
    if len(order) < n:
        raise ValueError(f"only {len(order)} subjects in the selected rows, {n} requested")
    return order[:n]


def case_patients(z: Mapping, population: str, n: Optional[int] = 2) -> list[str]:
    """The first ``n`` (None: every) patients of ``population`` in a ``mimic_cxr_cases`` export, in its ``rank``
    (most CXR studies first, ``medcsp.cases.top_patients``: counted on the records, not on the cached images).
    Needs at least 2: one patient has no grouping to score."""
    keep = np.asarray(z["population"]).astype(str) == population
    order = dict(zip(np.asarray(z["rank"])[keep].tolist(), subject_ids(z["subject_id"])[keep].tolist()))
    if len(order) < max(n or 0, 2):
        raise ValueError(f"the export holds {len(order)} {population} patient(s), {n or 2} needed (medcsp_case_top, "
                         "notebook 09)")
    return [order[r] for r in sorted(order)][:n]


def cxr_points(z: Mapping, subjects: Sequence, split: Optional[str | Sequence[str]] = None) -> dict:
    """Image (``emb``) and report (``text_emb``) points of the given subjects. One report point per study:
    images of one study share their report, and duplicated report points would inflate both the patient
    and the modality grouping. A study with an empty report (``text`` "") has no report point."""
    want = set(subject_ids(subjects).tolist())
    subj = subject_ids(z["subject_id"])
    rows = np.flatnonzero(_rows(z, split) & np.isin(subj, list(want)))
    study = _study_keys(z)
    _, first = np.unique(study[rows], return_index=True)
    rep = rows[np.sort(first)]
    if "text" in z:
        rep = rep[np.char.str_len(np.char.strip(np.asarray(z["text"]).astype(str)[rep])) > 0]
    rid = np.asarray(z["record_id"]).astype(str)
    return {"emb": np.concatenate([z["emb"][rows], z["text_emb"][rep]]).astype(np.float64),
            "patient": np.concatenate([subj[rows], subj[rep]]),
            "modality": np.array([IMAGE] * len(rows) + [REPORT] * len(rep)),
            "record_id": np.concatenate([rid[rows], rid[rep]])}


def ehr_points(z: Mapping, subjects: Sequence, split: Optional[str | Sequence[str]] = None,
               key: str = "emb") -> dict:
    """EHR-record points of the given subjects (``key``: ``emb`` = the record embedding, Eq. 2, or one
    ``<modality>_emb``; rows where that modality is absent are dropped, their exported vector is zero)."""
    want = subject_ids(subjects)
    subj = subject_ids(z["subject_id"])
    keep = _rows(z, split) & np.isin(subj, want)
    if key != "emb":
        names = [str(x) for x in z["mask_names"]]
        keep &= np.asarray(z["mask"])[:, names.index(key.removesuffix("_emb"))].astype(bool)
    rows = np.flatnonzero(keep)
    rid = np.asarray(z["record_id"] if "record_id" in z else z["hadm_id"]).astype(str)
    return {"emb": np.asarray(z[key])[rows].astype(np.float64), "patient": subj[rows],
            "modality": np.array([EHR] * len(rows)), "record_id": rid[rows]}


def concat_points(*points: dict) -> dict:
    return {k: np.concatenate([p[k] for p in points]) for k in ("emb", "patient", "modality", "record_id")}


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def silhouette_samples_cosine(emb, labels) -> np.ndarray:
    """Per-point silhouette with cosine distance (scikit-learn; a singleton cluster scores 0). Needs
    2 <= number of labels <= number of points - 1, as the score is undefined otherwise."""
    from sklearn.metrics import silhouette_samples

    labels = np.asarray(labels)
    g = len(np.unique(labels))
    if not 2 <= g <= len(labels) - 1:
        raise ValueError(f"silhouette needs 2..{len(labels) - 1} labels, got {g}")
    return silhouette_samples(_unit(emb), labels, metric="cosine")


def _neighbours(emb, k: int) -> np.ndarray:
    """[n, k] indices of each point's k nearest other points by cosine; ties to the lower index."""
    x = _unit(emb)
    n = len(x)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..{n - 1} for {n} points, got {k}")
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def knn_purity_samples(emb, labels, k: int = 5) -> np.ndarray:
    """Per point, the share of its k nearest neighbours (cosine, itself excluded) that carry its label."""
    labels = np.asarray(labels)
    nb = _neighbours(emb, k)
    return (labels[nb] == labels[:, None]).mean(1)


def knn_chance(labels) -> float:
    """Expected k-NN purity with neighbours drawn at random: mean of (n_label - 1) / (n - 1). Purity by
    modality with two equal modalities is ~0.5 by chance, by patient ~1/P: read purity against this."""
    labels = np.asarray(labels)
    _, code, cnt = np.unique(labels, return_inverse=True, return_counts=True)
    return float(((cnt[code] - 1) / (len(labels) - 1)).mean())


def _per_point(emb, patient, modality, k) -> dict:
    return {("silhouette", "patient"): silhouette_samples_cosine(emb, patient),
            ("silhouette", "modality"): silhouette_samples_cosine(emb, modality),
            ("knn", "patient"): knn_purity_samples(emb, patient, k),
            ("knn", "modality"): knn_purity_samples(emb, modality, k)}


def grouping_scores(emb, patient, modality, k: int = 5) -> dict:
    """How strongly points group by patient vs by modality: ``silhouette_patient``, ``silhouette_modality``
    (cosine, -1..1), ``knn_patient``, ``knn_modality`` (0..1) with their chance levels, ``k``, counts."""
    pp = _per_point(emb, patient, modality, k)
    out = {f"{m}_{by}": float(v.mean()) for (m, by), v in pp.items()}
    out.update(knn_patient_chance=knn_chance(patient), knn_modality_chance=knn_chance(modality), k=int(k),
               n_points=len(patient), n_patients=len(np.unique(patient)), n_modalities=len(np.unique(modality)))
    return out


def grouping_table(points: Mapping[str, dict], k: int = 5, n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05):
    """Long DataFrame (variant, metric, by, value, lo, hi, chance, k, n_points, n_patients) for each variant's
    points. CI: patient-level bootstrap of the per-point scores (neighbours and clusters fixed on the full
    point set - the interval is over which patients' points are averaged, not a re-fit)."""
    import pandas as pd

    rows = []
    for name, p in points.items():
        pp = _per_point(p["emb"], p["patient"], p["modality"], k)
        for (metric, by), v in pp.items():
            ci = bootstrap_mean(v, groups=p["patient"], n_boot=n_boot, seed=seed, alpha=alpha)
            chance = knn_chance(p[by]) if metric == "knn" else 0.0
            rows.append({"variant": name, "metric": metric, "by": by, "value": ci["value"], "lo": ci["lo"],
                         "hi": ci["hi"], "chance": chance, "k": int(k), "n_points": len(v),
                         "n_patients": ci["n_groups"], "n_boot": n_boot, "seed": seed})
    return pd.DataFrame(rows)


def grouping_difference(a: dict, b: dict, k: int = 5, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Paired ``b - a`` (e.g. full minus L_A only) of each score on the SAME points (same records, same
    order), with a patient-bootstrap CI: both variants see the same resamples."""
    import pandas as pd

    if not (np.array_equal(a["record_id"], b["record_id"]) and np.array_equal(a["modality"], b["modality"])):
        raise ValueError("paired difference needs the same points (record_id and modality) in both variants")
    pa, pb = (_per_point(p["emb"], p["patient"], p["modality"], k) for p in (a, b))
    rows = []
    for key in pa:
        ci = bootstrap_mean(pb[key] - pa[key], groups=a["patient"], n_boot=n_boot, seed=seed, alpha=alpha)
        rows.append({"metric": key[0], "by": key[1], "diff": ci["value"], "lo": ci["lo"], "hi": ci["hi"],
                     "k": int(k), "n_points": len(a["patient"]), "n_patients": ci["n_groups"]})
    return pd.DataFrame(rows)


def project_2d(emb, method: str = "pca", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """[n, 2] map of unit-normalised embeddings. ``pca``: exact SVD, each axis' sign fixed by its largest
    loading (deterministic). ``tsne``: openTSNE, cosine, PCA init, one thread, perplexity clipped to what n
    points allow - the same settings as Figure 2's maps."""
    x = _unit(emb)
    if method == "pca":
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        vt = vt[:2] * np.sign(vt[:2][np.arange(min(2, len(vt))), np.abs(vt[:2]).argmax(1)])[:, None]
        y = xc @ vt.T
        return np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    if method == "tsne":
        try:
            from openTSNE import TSNE
        except ImportError as e:  # pragma: no cover - openTSNE is in the environment
            raise ImportError("method='tsne' needs openTSNE (pip install openTSNE); use method='pca'") from e
        perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3 - 1e-6)))
        return np.asarray(TSNE(n_components=2, perplexity=perp, metric="cosine", initialization="pca",
                               random_state=seed, n_jobs=1, verbose=False).fit(x))
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def _colours(patients: Sequence[str]) -> dict:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(patients) <= 10 else "tab20")
    return {p: cmap(i % cmap.N) for i, p in enumerate(patients)}


def _marker(mod: str, mods: list[str]) -> str:
    return _MARKERS.get(mod) or _EXTRA_MARKERS[mods.index(mod) % len(_EXTRA_MARKERS)]


def _scatter(ax, y, patient, modality, colours, labels=None):
    mods = sorted(set(modality.tolist()))
    for p, c in colours.items():
        for m in mods:
            sel = (patient == p) & (modality == m)
            if sel.any():
                ax.scatter(y[sel, 0], y[sel, 1], color=c, marker=_marker(m, mods), s=36, alpha=0.85,
                           edgecolors="k", linewidths=0.3, label=f"{(labels or {}).get(p, p)} · {m}")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_fig8(rows: Mapping[str, Mapping[str, dict]], scores: Optional[Mapping[str, Mapping[str, dict]]] = None,
              method: str = "pca", seed: int = 0):
    """Figure 8: a row per population ({"pre-training patients": {"L_A only": pts, "full": pts}, ...}), a panel
    per variant, each projected on its own (the spaces differ), colour = patient, marker = modality; ``scores``
    ({row: {variant: grouping_scores}}) go in the titles so the picture carries its measurement. Returns the
    matplotlib Figure."""
    colours, titles = {}, {}
    for row, panels in rows.items():
        colours[row] = _colours(sorted({s for p in panels.values() for s in subject_ids(p["patient"]).tolist()},
                                       key=_id_key))
        titles[row] = {name: (f"silhouette patient {s['silhouette_patient']:.2f} | modality "
                              f"{s['silhouette_modality']:.2f}\n{s['k']}-NN purity patient {s['knn_patient']:.2f} | "
                              f"modality {s['knn_modality']:.2f}") for name, s in (scores or {}).get(row, {}).items()}
    return _panel_figure(rows, colours, titles, f"MEDCSP Figure 8: CXR image and report embeddings "
                         f"({method.upper()})", method, seed, size=4.6)


def _panel_figure(rows: Mapping[str, Mapping[str, dict]], colours: Mapping[str, dict],
                  titles: Mapping[str, Mapping[str, str]], suptitle: str, method: str, seed: int,
                  labels: Optional[Mapping[str, dict]] = None, size: float = 4.6,
                  notes: Optional[Mapping[str, str]] = None):
    """A row of 2-D panels per population, one per variant (each projected on its own: the spaces differ),
    colour = patient (``colours[row]``), marker = modality, the panel's measurement under its name; the row's name
    (and ``notes[row]``) on its left, its legend beside its last panel: the rows show different patients."""
    import matplotlib.pyplot as plt

    ncol = max(len(p) for p in rows.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(size * ncol, size * len(rows)), squeeze=False)
    for axr, (row, panels) in zip(axes, rows.items()):
        for ax, (name, p) in zip(axr, panels.items()):
            _scatter(ax, project_2d(p["emb"], method, seed), subject_ids(p["patient"]),
                     np.asarray(p["modality"]).astype(str), colours[row], (labels or {}).get(row))
            t = titles.get(row, {}).get(name)
            ax.set_title(name + (f"\n{t}" if t else ""), fontsize=9)
        axr[0].set_ylabel(row + (f"\n{notes[row]}" if notes and row in notes else ""), fontsize=9)
        axr[len(panels) - 1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        for ax in axr[len(panels):]:
            ax.set_axis_off()
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- Figure 9
def patient_histories(icd, ehr_records) -> tuple:
    """(csr [S, V] binary, subject ids [S] as str) from notebook 08's per-record ``icd`` rows (in
    ``ehr_records`` frame order) over ALL of a patient's records. Eq. 6's histories hold training admissions
    only, so held-out patients' are empty; this display-only history treats both populations alike and never
    feeds training."""
    from scipy import sparse

    subj = subject_ids(ehr_records["subject_id"].to_numpy() if hasattr(ehr_records, "columns") else ehr_records)
    icd = sparse.csr_matrix(icd)
    if icd.shape[0] != len(subj):
        raise ValueError(f"icd has {icd.shape[0]} rows, ehr_records {len(subj)}")
    u = sorted(set(subj.tolist()), key=_id_key)
    pos = {s: i for i, s in enumerate(u)}
    P = sparse.csr_matrix((np.ones(len(subj)), ([pos[s] for s in subj], np.arange(len(subj)))),
                          shape=(len(u), len(subj)))
    h = (P @ icd).tocsr()
    h.data[:] = 1.0
    return h, np.array(u)


def case_candidates(ehr: Mapping, cxr: Mapping, cxr_split: Optional[str | Sequence[str]] = None,
                    ehr_split: Optional[str | Sequence[str]] = None) -> dict[str, int]:
    """{subject: number of EHR records + CXR studies} for the subjects with at least one of each in the
    chosen embedding files, in id order. The counts let ``pick_overlap_triplet`` prefer, among equally
    overlapping patients, those with more points to show."""
    e_rows, c_rows = _rows(ehr, ehr_split), _rows(cxr, cxr_split)
    n_ehr = _distinct_per_subject(subject_ids(ehr["subject_id"])[e_rows], np.flatnonzero(e_rows))
    n_cxr = _distinct_per_subject(subject_ids(cxr["subject_id"])[c_rows], _study_keys(cxr)[c_rows])
    return {s: n_ehr[s] + n_cxr[s] for s in sorted(set(n_ehr) & set(n_cxr), key=_id_key)}


def pick_overlap_triplet(histories, subjects, candidates: Optional[Sequence | Mapping[str, int]] = None,
                         min_shared: int = 1) -> dict:
    """Two patients whose diagnosis histories overlap most (cosine of binary multi-hots; ties: more shared
    codes, then more points, then smaller ids) and a third, among the rest, with the least overlap with
    either (smallest max cosine, then smallest sum, then more points, then id). ``candidates``: allowed
    subjects, or ``case_candidates``' {subject: number of points} (the point counts only break ties). Only
    candidates with a non-empty history count: an empty history "overlaps with nobody" trivially. Raises
    ValueError saying why when the cohort has no such triplet.

    Returns {pair: (a, b), third, pair_cosine, pair_shared, third_cosine: (with a, with b), third_shared,
    n_candidates}."""
    from scipy import sparse

    if hasattr(subjects, "columns"):
        subjects = subjects["subject_id"]
    subj = subject_ids(np.asarray(subjects))
    h = sparse.csr_matrix(histories, dtype=np.float64)
    if h.shape[0] != len(subj):
        raise ValueError(f"histories has {h.shape[0]} rows, subjects {len(subj)}")
    h.data[:] = 1.0
    sizes = {str(k): int(v) for k, v in zip(subject_ids(list(candidates)), candidates.values())} \
        if isinstance(candidates, Mapping) else {}
    want = set(subject_ids(list(candidates)).tolist()) if candidates is not None else set(subj.tolist())
    nonempty = np.diff(h.indptr) > 0
    rows = [i for i in sorted(range(len(subj)), key=lambda i: _id_key(subj[i])) if subj[i] in want and nonempty[i]]
    if len(rows) < 3:
        n_want = sum(s in want for s in subj.tolist())
        raise ValueError(f"only {len(rows)} of {n_want} candidate patients have a non-empty diagnosis history "
                         "(3 needed). If these are notebook 08's Eq. 6 histories (training admissions only), "
                         "held-out patients have none: build display "
                         "histories with patient_histories(icd, ehr_records)")
    x = h[rows].toarray()
    shared = x @ x.T
    nrm = np.sqrt(np.diag(shared))
    cos = np.round(shared / np.outer(nrm, nrm), 12)          # rounded: equal histories tie exactly
    ids = subj[rows]
    size = np.array([sizes.get(str(i), 0) for i in ids])
    iu, ju = np.triu_indices(len(rows), 1)
    ok = shared[iu, ju] >= max(min_shared, 1)
    if not ok.any():
        raise ValueError(f"no two candidate patients share >= {max(min_shared, 1)} diagnosis codes")
    iu, ju = iu[ok], ju[ok]
    order = np.lexsort((ju, iu, -(size[iu] + size[ju]), -shared[iu, ju], -cos[iu, ju]))   # rows in id order
    i, j = int(iu[order[0]]), int(ju[order[0]])
    rest = np.array([r for r in range(len(rows)) if r not in (i, j)])
    worst, total = np.maximum(cos[rest, i], cos[rest, j]), cos[rest, i] + cos[rest, j]
    c = int(rest[np.lexsort((rest, -size[rest], total, worst))[0]])
    if worst.min() >= cos[i, j]:
        raise ValueError(f"no third patient overlaps less (cosine {worst.min():.2f}) with the pair than the pair "
                         f"with itself ({cos[i, j]:.2f})")
    return {"pair": (str(ids[i]), str(ids[j])), "third": str(ids[c]), "pair_cosine": float(cos[i, j]),
            "pair_shared": int(shared[i, j]), "third_cosine": (float(cos[c, i]), float(cos[c, j])),
            "third_shared": (int(shared[c, i]), int(shared[c, j])), "n_candidates": len(rows)}


def _mean_cos(x: np.ndarray, y: np.ndarray) -> float:
    return float((x @ y.T).mean()) if len(x) and len(y) else float("nan")


def _patient_pair_similarity(x, patient, modality, p, q, mods) -> tuple[float, float, dict]:
    """(modality-balanced mean, plain mean, per-block means) of cosines between p's and q's points; a block
    {m1, m2} takes every cross-patient pair of points whose modalities are m1 and m2 (either way round)."""
    blocks = {}
    for a_i, m1 in enumerate(mods):
        for m2 in mods[a_i:]:
            xp1, xq2 = x[(patient == p) & (modality == m1)], x[(patient == q) & (modality == m2)]
            xp2, xq1 = x[(patient == p) & (modality == m2)], x[(patient == q) & (modality == m1)]
            if m1 == m2:
                v = _mean_cos(xp1, xq2)
            else:
                s1, s2 = (xp1 @ xq2.T).ravel(), (xp2 @ xq1.T).ravel()
                v = float(np.concatenate([s1, s2]).mean()) if s1.size + s2.size else float("nan")
            blocks[(m1, m2)] = v
    vals = [v for v in blocks.values() if np.isfinite(v)]
    plain = _mean_cos(x[patient == p], x[patient == q])
    return (float(np.mean(vals)) if vals else float("nan")), plain, blocks


def triplet_similarity(emb, patient, modality, pair: Sequence, third) -> dict:
    """Mean cosine between the overlapping pair's embeddings (a-b) vs each with the third (a-c, b-c).
    ``pair``/``a_third``/``b_third`` are averaged over modality blocks (EHR-EHR, EHR-image, image-report, ...)
    so the three patient pairs are compared on the same mix; ``*_plain`` are the unweighted means.
    ``margin`` = pair - mean(a_third, b_third): > 0 is what Figure 9 illustrates."""
    x = _unit(emb)
    patient, modality = subject_ids(patient), np.asarray(modality).astype(str)
    a, b = (str(s) for s in subject_ids(list(pair)))
    c = str(subject_ids([third])[0])
    for s in (a, b, c):
        if not (patient == s).any():
            raise ValueError(f"patient {s} has no points")
    mods = sorted(set(modality.tolist()))
    out, blocks = {}, {}
    for name, (p, q) in {"pair": (a, b), "a_third": (a, c), "b_third": (b, c)}.items():
        out[name], out[f"{name}_plain"], blocks[name] = _patient_pair_similarity(x, patient, modality, p, q, mods)
    out["third_mean"] = (out["a_third"] + out["b_third"]) / 2
    out["margin"] = out["pair"] - out["third_mean"]
    out["margin_plain"] = out["pair_plain"] - (out["a_third_plain"] + out["b_third_plain"]) / 2
    out["blocks"] = blocks
    out["n_points"] = {s: int((patient == s).sum()) for s in (a, b, c)}
    return out


def plot_fig9(rows: Mapping[str, Mapping[str, dict]], triplets: Mapping[str, Mapping],
              sims: Optional[Mapping[str, Mapping[str, dict]]] = None, method: str = "pca", seed: int = 0):
    """Figure 9: a row per population with its own triplet (``triplets[row]``), a panel per variant: the three
    patients' EHR records and CXR images/reports in 2-D (colour = patient, marker = modality), the similarity
    numbers (``sims[row][variant]``, ``triplet_similarity``) in the title. Returns the Figure."""
    colours, labels, titles, notes = {}, {}, {}, {}
    for row, t in triplets.items():
        (a, b), c = t["pair"], t["third"]
        labels[row] = {a: f"A {a}", b: f"B {b}", c: f"C {c} (third)"}
        colours[row] = dict(zip((a, b, c), ("tab:blue", "tab:green", "tab:red")))
        notes[row] = (f"history cosine A-B {t['pair_cosine']:.2f}, C at most {max(t['third_cosine']):.2f}")
        titles[row] = {name: (f"cos A-B {s['pair']:.2f} | A-C {s['a_third']:.2f} | B-C {s['b_third']:.2f}"
                              f"\nmargin {s['margin']:+.2f} (modality-balanced)")
                       for name, s in (sims or {}).get(row, {}).items()}
    return _panel_figure(rows, colours, titles, f"MEDCSP Figure 9: A, B share diagnoses, C does not "
                         f"({method.upper()})", method, seed, labels, size=4.8, notes=notes)


def history_embedding_correlation(histories, subjects, points: Mapping, modality: str) -> dict:
    """Beyond one triplet: over every pair of the points' patients, Spearman's rho between the cosine of their
    diagnosis histories and the cosine of their mean ``modality`` embeddings (L_D's premise: patients with
    similar histories embed close). Returns ``rho``, ``n_patients``, ``n_pairs`` (no p-value: the pairs share
    patients, so they are not independent)."""
    from scipy import sparse
    from scipy.stats import spearmanr

    subj = subject_ids(subjects)
    pos = {s: i for i, s in enumerate(subj)}
    keep = np.asarray(points["modality"]).astype(str) == modality
    pat = subject_ids(points["patient"])[keep]
    x = _unit(np.asarray(points["emb"])[keep])
    pats = [s for s in sorted(set(pat.tolist()), key=_id_key) if s in pos]
    if len(pats) < 3:
        raise ValueError(f"{modality}: {len(pats)} patients with a history and a {modality} point; need 3")
    m = _unit(np.stack([x[pat == s].mean(0) for s in pats]))
    h = _unit(sparse.csr_matrix(histories)[[pos[s] for s in pats]].toarray())
    iu = np.triu_indices(len(pats), 1)
    r = spearmanr((h @ h.T)[iu], (m @ m.T)[iu])
    return {"rho": float(r.correlation), "n_patients": len(pats), "n_pairs": len(iu[0])}
