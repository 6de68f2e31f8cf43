# %% [markdown]
# # 05 · Figure 3: zero-shot and few-shot classification
#
# Balanced accuracy on COVID and RSNA (CXR) and PTB-XL and ICBEB (ECG), for every system with the modality and
# the untrained MEDBind_BD initialisation.
#
# - **Zero-shot** (K = 0): cosine between the image/ECG embedding and the class prompts embedded by the
#   system's own text tower, pooled per class by `prompt_pool` (mean cosine over a class's prompts), with each
#   dataset's prompts as Table A.1 gives them (`covid_prompt_rule` / `rsna_prompt_rule` = `table_a1`): COVID =
#   10 sampled MedCLIP COVID prompts vs normal-finding sentences ("Heart size is normal and the lungs are
#   clear.", ...); RSNA = "Findings suggesting pneumonia." vs "No evidence of pneumonia."; PTB-XL / ICBEB =
#   "This ECG shows {label name}." ("Normal sinus rhythm", "STT Changes", ...), scored on single-label test
#   records (argmax over the classes).
# - **AUROC beside balanced accuracy.** Balanced accuracy of an argmax reads the sign of the offset between two
#   prompt sets as much as the image; the AUROC of the class score (positive minus negative; ECG: macro
#   one-vs-rest on all labelled records) does not. Both are printed for every zero-shot row.
# - **Few-shot**: an L2 logistic-regression probe on frozen training-split embeddings, K in {1, 2, 4, 8, 16}
#   rows per class, mean over `n_support_sets` seeded balanced support sets, scored on the test split.
#   A K above the smallest training class is infeasible and shown as such (never sampled with replacement).
#
# **Support-set count.** The profile key `fewshot_support_sets` (paper: 300; `smoke` uses 50, pure compute; the
# sd over sets is reported so the reader can judge it). The value used is printed below and written with the table.
# CIs: patient-level bootstrap 95% of the test set (few-shot: of the mean over support sets).
# Writes `runs/<profile>/tables/fig3_zero_few_shot.*` and `runs/<profile>/figures/05_fig3_zero_few_shot.{png,pdf}`.

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

cfg = load_profile(profile, notebook="05", overrides=overrides)
require(cfg, "05")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 220, "display.max_columns", 30)
settings = tables.eval_settings(cfg)
art = tables.Artifacts(cfg)

# %%
# NBVAL_CHECK_OUTPUT
print({k: settings.as_dict()[k] for k in ("n_support_sets", "fewshot_ks", "probe_C", "covid_prompt_rule",
                                          "rsna_prompt_rule", "prompt_pool",
                                          "covid_n_prompts", "rsna_n_prompts", "n_boot", "seed")})

# %%
pq = {}  # per-query zero-shot predictions for the paired BD - NM differences
f3 = tables.fig3_zero_few_shot(cfg, settings, art, per_query=pq)

# %% [markdown]
# ## Balanced accuracy (%), mean [95% CI]; K = 0 is zero-shot

# %%
# NBVAL_CHECK_OUTPUT
f3["cell"] = [tables.ci_str(v, lo, hi) if pd.notna(v) else "infeasible" for v, lo, hi in
              zip(f3["balanced_accuracy"], f3["lo"], f3["hi"])]
wide = {ds: f3[f3["dataset"] == ds].pivot_table(index="system_label", columns="K", values="cell", aggfunc="first",
                                                  sort=False).rename(columns={0: "zero-shot"})
        for ds in dict.fromkeys(f3["dataset"])}
for ds, w in wide.items():
    d = f3[f3["dataset"] == ds]
    print(f"--- {d['dataset_label'].iloc[0]}: {d['n_classes'].iloc[0]} classes, chance {d['chance'].iloc[0]:.1f}, "
          f"zero-shot rule {d['binary_rule'].dropna().iloc[0] if d['binary_rule'].notna().any() else 'argmax'}")
    print(w.to_string())

# %% [markdown]
# ## Zero-shot details: prompts, balanced accuracy and AUROC [95% CI]

# %%
# NBVAL_CHECK_OUTPUT
zs = f3[f3["K"] == 0].copy()
zs["AUROC"] = [tables.ci_str(v, lo, hi) for v, lo, hi in zip(zs["auroc"], zs["auroc_lo"], zs["auroc_hi"])]
print(zs[["dataset_label", "system_label", "prompt_set", "n_prompts", "n_test", "cell", "AUROC"]]
      .rename(columns={"cell": "balanced accuracy"}).to_string(index=False))

# %%
fig = tables.plot_fig3(f3)
save_figure(fig, cfg, "05_fig3_zero_few_shot");
paths = tables.save_table(f3.drop(columns="cell"), cfg, "fig3_zero_few_shot",
                          title="Fig. 3: zero-shot (K = 0) and few-shot balanced accuracy",
                          display={f3.loc[f3["dataset"] == ds, "dataset_label"].iloc[0]: w.reset_index()
                                   for ds, w in wide.items()},
                          notes=["Zero-shot prompt set per row in the CSV (prompt_set, binary_rule, n_prompts); "
                                 "zero-shot AUROC of the class score in auroc / auroc_lo / auroc_hi (ECG: macro "
                                 "one-vs-rest, no CI).",
                                 "PTB-XL / ICBEB: balanced accuracy on single-label test records.",
                                 "METHOD.md transcribes no Fig. 3 numbers, so there is no paper column.",
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
_ = tables.save_table(bd_nm, cfg, "fig3_zero_shot_paired_bd_nm",
                      title="Fig. 3 zero-shot: MEDBind_BD - MEDBind_NM, paired bootstrap")

# %% [markdown]
# ## Across pre-training seeds
# With `seed_replicates` > 1 the replicated variants were pre-trained again from seeds seed + 1, ...
# (`medbind_lib/replicates.py`). Each difference is averaged over seeds: its CI resamples the test patients
# (once for every seed and both systems); `seed_sd` and `per_seed` show the pre-training variance, and
# `seeds_ci_above_0` counts the seeds whose own paired CI excludes 0.

# %%
# NBVAL_CHECK_OUTPUT
comparisons = [("medbind_bd", "medbind_nm"), ("medbind_bd", "cxr_clip"), ("medbind_bd", "medclip"),
               ("medbind_bd", "ecg_clip")]


def score(systems):  # this table's builder, run on the compared rows' seed replicates
    tables.fig3_zero_few_shot(cfg, settings, art, systems=systems, per_query=pq)


seeds = tables.seed_comparisons(cfg, settings, pq, comparisons, score, "fig3_zero_shot_seeds_paired",
                                "Fig. 3 zero-shot: paired differences over pre-training seeds")
if cfg.seed_replicates > 1:
    print(seeds.round(1).to_string(index=False))
else:
    print("seed_replicates = 1: one pre-training run per variant; the CIs above cover test resampling only")

# %% [markdown]
# ## Reading

# %%
reading = tables.describe_fig3(f3)
if cfg.profile == "smoke":
    reading.append(f"Smoke profile: {settings.n_support_sets} support sets, test sets of 9-17 records and models "
                   "trained for a few steps, so the CIs span tens of points; the paper's Fig. 3 comparison "
                   "(MEDBind against the single-modality CLIPs) needs the default or paper profile.")
reading = [f"{r} [one pre-training run per system]" for r in reading]
reading += tables.describe_paired(seeds)  # the paired verdicts, each with its seeds and test patients
print("\n".join(f"- {r}" for r in reading))
