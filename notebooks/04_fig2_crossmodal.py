# %% [markdown]
# # 04 · Figure 2: CXR and ECG in one space
#
# Left: seeded openTSNE maps (cosine metric, PCA initialisation, one thread) of the CXR and ECG embeddings of
# the MIMIC-PAIR test pairs, per model: MEDBind_BD, MEDBind_NM and the encoder zoo (the CLIP-InfoNCE CXR
# encoder of the CXR-CLIP row + ECG-CLIP's ECG encoder: two separately trained models whose spaces meet only
# through their own text towers).
# Top row coloured by modality (grey lines join the two halves of a pair), bottom row by the pair's ECG class
# (black ring: cardiomegaly on the CXR). Right: CXR -> ECG Recall@1/5/10 over the distinct test ECGs, with
# patient-level bootstrap 95% CIs, chance (K / gallery) and the untrained MEDBind_BD initialisation.
# Reads `runs/<profile>/embeddings/` and notebook 01's pairs; writes
# `runs/<profile>/tables/fig2_crossmodal_recall.*` and `runs/<profile>/figures/04_fig2_{tsne,recall}.{png,pdf}`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.reports import tables
from medbind_lib.plots import save_figure
from medbind_lib.prereq import require
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="04", overrides=overrides)
require(cfg, "04")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 200, "display.max_columns", 20)
settings = tables.eval_settings(cfg)
art = tables.Artifacts(cfg)

# %% [markdown]
# ## The test pairs

# %%
# NBVAL_CHECK_OUTPUT
pairs = tables.pair_labels(art, "test", settings)
print(f"{len(pairs)} test pairs, {pairs['subject_id'].nunique()} patients, "
      f"{pairs['ecg_record_id'].nunique()} distinct ECGs, {pairs['cxr_record_id'].nunique()} distinct CXRs")
print("ECG class:", pairs["ecg_class"].value_counts().to_dict())
print("cardiomegaly (CXR):", pairs["cardiomegaly"].value_counts(dropna=False).to_dict(),
      "| HYP (ECG):", pairs["hyp"].value_counts(dropna=False).to_dict())

# %% [markdown]
# ## Left: t-SNE per model

# %%
tsne = tables.tsne_pairs(cfg, settings, art, systems=("cxr_clip+ecg_clip", "medbind_nm", "medbind_bd"))
print(f"perplexity {tsne['perplexity'].iloc[0]:g} on {len(tsne) // 3} points per model")
fig = tables.plot_fig2_tsne(tsne)
save_figure(fig, cfg, "04_fig2_tsne");

# %% [markdown]
# ## Right: CXR -> ECG retrieval
# `same_top1_pct` = share of CXR queries whose top-1 ECG is the most common top-1 (near 100: every query ranks
# the gallery alike, a hubness/collapse sign that pins recall at chance).

# %%
pq = {}  # per-query outcomes for the paired BD - NM differences
rec = tables.crossmodal_recall_table(cfg, settings, art, per_query=pq)

# %%
# NBVAL_CHECK_OUTPUT
view = rec.pivot_table(index="system_label", columns="K", values=["recall", "lo", "hi"], sort=False)
shown = pd.DataFrame({f"R@{k}": [tables.ci_str(r, lo, hi) for r, lo, hi in
                                 zip(view["recall"][k], view["lo"][k], view["hi"][k])] for k in settings.crossmodal_ks},
                     index=view.index)
shown["chance R@1/5/10"] = "/".join(f"{c:.1f}" for c in rec.groupby("K")["chance"].first())
shown["same top-1 %"] = rec.groupby("system_label", sort=False)["same_top1_pct"].first().round(0)
print(shown.to_string())

# %%
fig = tables.plot_fig2_recall(rec)
save_figure(fig, cfg, "04_fig2_recall");
paths = tables.save_table(rec, cfg, "fig2_crossmodal_recall", title="Fig. 2 right: CXR -> ECG retrieval "
                          "(MIMIC-PAIR test)", display=shown.reset_index().rename(columns={"system_label": "System"}),
                          notes=["METHOD.md transcribes no Fig. 2 numbers, so there is no paper column.",
                                 *settings.notes])
print(sorted(p.name for p in paths.values()))

# %% [markdown]
# ## MEDBind_BD - MEDBind_NM, paired
# Both systems on the same test queries: each bootstrap replicate resamples the test patients once for both, so
# the interval is that of the difference. It covers test resampling only (each variant is pre-trained once).

# %%
# NBVAL_CHECK_OUTPUT
bd_nm = tables.paired_differences(pq, "medbind_bd", "medbind_nm", settings.n_boot, settings.seed,
                                  settings.alpha)
print(bd_nm.drop(columns=["system_a", "system_b"]).round(1).to_string(index=False))
_ = tables.save_table(bd_nm, cfg, "fig2_paired_bd_nm",
                      title="Fig. 2 right: MEDBind_BD - MEDBind_NM, paired bootstrap")

# %% [markdown]
# ## Across pre-training seeds
# With `seed_replicates` > 1 the replicated variants were pre-trained again from seeds seed + 1, ...
# (`medbind_lib/replicates.py`). Each difference is averaged over seeds: its CI resamples the test patients
# (once for every seed and both systems); `seed_sd` and `per_seed` show the pre-training variance, and
# `seeds_ci_above_0` counts the seeds whose own paired CI excludes 0.

# %%
# NBVAL_CHECK_OUTPUT
comparisons = [("medbind_bd", "medbind_nm"), ("medbind_bd", "cxr_clip+ecg_clip")]


def score(systems):  # this table's builder, run on the compared rows' seed replicates
    tables.crossmodal_recall_table(cfg, settings, art, systems=systems, per_query=pq)


seeds = tables.seed_comparisons(cfg, settings, pq, comparisons, score, "fig2_seeds_paired",
                                "Fig. 2 right: paired differences over pre-training seeds")
if cfg.seed_replicates > 1:
    print(seeds.round(1).to_string(index=False))
else:
    print("seed_replicates = 1: one pre-training run per variant; the CIs above cover test resampling only")
# EMCL's job is this retrieval (a CXR finding its own patient's ECG): BD (TMCL + EMCL) - NM (TMCL only) is the
# mechanism row of MEDBind's loss term
emcl = seeds[(seeds["system_a"] == "medbind_bd") & (seeds["system_b"] == "medbind_nm")].assign(term="EMCL")
# how much paired signal the cohort's shared findings carry at all (mechanisms.label_reference_recall)
from medbind_lib.reports.mechanisms import label_reference_recall

z_pair = art.load("medbind_bd", "mimic_pair")
test_rows = z_pair["split"] == "test"
ref10 = label_reference_recall(z_pair["cxr_labels"][test_rows], z_pair["ecg_labels"][test_rows], 10)
print(f"labels-only reference CXR->ECG R@10: {ref10:.1f} (chance {100 * 10 / max(int(test_rows.sum()), 1):.1f})")
_ = tables.save_table(emcl, cfg, "medbind_mechanism_emcl", title="MEDBind mechanism: EMCL, CXR->ECG retrieval of the "
                      "same patient, MEDBind_BD - MEDBind_NM over pre-training seeds",
                      notes=[f"labels-only reference R@10 {ref10:.1f}: a logistic regression from the CXR's findings "
                             "labels to the ECG's, fitted on the test pairs (optimistic), ranking the ECGs by "
                             "label likelihood; how much paired signal the shared findings carry"])

# %% [markdown]
# ## Reading

# %%
reading = tables.describe_crossmodal(rec)
gap = {k: tsne[tsne["system"] == k] for k in dict.fromkeys(tsne["system"])}
for k, d in gap.items():  # how far apart the two modality clouds sit, relative to their spread
    c = d.groupby("modality")[["x", "y"]]
    dist = float(((c.mean().loc["CXR"] - c.mean().loc["ECG"]) ** 2).sum() ** 0.5)
    spread = float(c.std().mean(axis=1).mean())
    reading.append(f"t-SNE {d['system_label'].iloc[0]}: modality centroids {dist / spread:.1f} within-cloud "
                   f"SDs apart" + (" (two separate clouds: a modality gap)" if dist / spread > 2 else
                                   " (modalities intermixed)") + ".")
if cfg.profile == "smoke":
    reading.append("Smoke profile: ~20 test pairs from a handful of patients and models trained for a few steps; "
                   "the paper's claim (EMCL makes MEDBind_BD retrieve the paired ECG far better than NM and the "
                   "zoo) needs the default or paper profile to be tested.")
reading = [f"{r} [one pre-training run per system]" for r in reading]
reading += tables.describe_paired(seeds)  # the paired verdicts, each with its seeds and test patients
print("\n".join(f"- {r}" for r in reading))
