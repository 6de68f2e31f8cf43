# %% [markdown]
# # 06 · Table 3: cross-modality zero-shot
#
# Classify one modality with class prototypes of the other, on MIMIC-PAIR:
#
# - **Hypertrophy from CXR**: each test CXR is assigned the class (HYP / other) of the nearest prototype
#   (re-normalised mean embedding) of the *ECGs* of the training pairs, split by their ECG's Table A.3 HYP label;
#   truth = the HYP label of the test CXR's paired ECG (pairs with an unlabelled ECG are excluded).
# - **Cardiomegaly from ECG**: test ECG vs prototypes of the training pairs' *CXRs* (CheXpert Cardiomegaly 1.0
#   vs other; uncertain -1.0 per `cardiomegaly_uncertain`, unlabelled studies excluded).
#
# Rows: encoder zoo (MedCLIP-style, or the CXR-CLIP row's CLIP-InfoNCE, CXR encoder + ECG-CLIP's ECG encoder),
# MEDBind_NM, MEDBind_BD and the untrained MEDBind_BD initialisation; the paper's numbers beside ours. Balanced
# accuracy with a patient-level bootstrap 95% CI; when the test pairs hold a single class it is undefined and
# reported as such.
# Test embeddings come from `runs/<profile>/embeddings/`; the training pairs were not exported by notebook 02,
# so they are embedded here from the `best.pt` checkpoints through the same cache and code path (cached in
# `runs/<profile>/06/support_embeddings/`). Writes `runs/<profile>/tables/table3_crossmodal_zeroshot.*` and
# `runs/<profile>/figures/06_table3_crossmodal_zeroshot.{png,pdf}`.

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

cfg = load_profile(profile, notebook="06", overrides=overrides)
require(cfg, "06")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 220, "display.max_columns", 30)
settings = tables.eval_settings(cfg)
art = tables.Artifacts(cfg)

# %% [markdown]
# ## Labels of the pairs

# %%
# NBVAL_CHECK_OUTPUT
for split in ("train", "test"):
    p = tables.pair_labels(art, split, settings)
    print(f"{split}: {len(p)} pairs | HYP (ECG) {p['hyp'].value_counts(dropna=False).to_dict()} | "
          f"cardiomegaly (CXR) {p['cardiomegaly'].value_counts(dropna=False).to_dict()}")

# %%
pq = {}  # per-query predictions for the paired BD - NM differences
t3 = tables.table3_crossmodal(cfg, settings, art, per_query=pq)

# %% [markdown]
# ## Table 3 on this profile: ours [95% CI] (paper)

# %%
# NBVAL_CHECK_OUTPUT
wide = tables.table3_wide(t3)
print(wide.to_string(index=False))
for note in t3["note"].dropna().unique():
    if note:
        print("note:", note)

# %%
fig = tables.plot_table3(t3)
save_figure(fig, cfg, "06_table3_crossmodal_zeroshot");

# %%
paths = tables.save_table(t3, cfg, "table3_crossmodal_zeroshot", title="Table 3: cross-modality zero-shot "
                          "(MIMIC-PAIR test, prototypes from MIMIC-PAIR train)", display=wide,
                          notes=["Cells: ours [95% patient-bootstrap CI] (paper); n/a = undefined (see CSV note).",
                                 "Encoder zoo: CXR and ECG encoders of two separately trained models.",
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
_ = tables.save_table(bd_nm, cfg, "table3_paired_bd_nm",
                      title="Table 3: MEDBind_BD - MEDBind_NM, paired bootstrap")

# %% [markdown]
# ## Across pre-training seeds
# With `seed_replicates` > 1 the replicated variants were pre-trained again from seeds seed + 1, ...
# (`medbind_lib/replicates.py`). Each difference is averaged over seeds: its CI resamples the test patients
# (once for every seed and both systems); `seed_sd` and `per_seed` show the pre-training variance, and
# `seeds_ci_above_0` counts the seeds whose own paired CI excludes 0.

# %%
# NBVAL_CHECK_OUTPUT
comparisons = [("medbind_bd", "medbind_nm"), ("medbind_bd", "cxr_clip+ecg_clip"),
               ("medbind_bd", "medclip+ecg_clip")]


def score(systems):  # this table's builder, run on the compared rows' seed replicates
    tables.table3_crossmodal(cfg, settings, art, systems=systems, per_query=pq)


seeds = tables.seed_comparisons(cfg, settings, pq, comparisons, score, "table3_seeds_paired",
                                "Table 3: paired differences over pre-training seeds")
if cfg.seed_replicates > 1:
    print(seeds.round(1).to_string(index=False))
else:
    print("seed_replicates = 1: one pre-training run per variant; the CIs above cover test resampling only")

# %% [markdown]
# ## Reading

# %%
reading = tables.describe_table3(t3)
if cfg.profile == "smoke":
    reading.append("Smoke profile: the 60-patient synthetic cohort leaves too few positive test pairs for "
                   "balanced accuracy; the default profile (600 patients) has tens of positives per task.")
reading = [f"{r} [one pre-training run per system]" for r in reading]
reading += tables.describe_paired(seeds)  # the paired verdicts, each with its seeds and test patients
print("\n".join(f"- {r}" for r in reading))
