# %% [markdown]
# # 03 · Table 2: modality-to-text retrieval
#
# Recall@1 and @10 of CXR -> report and ECG -> text, and RSUM (R@1 + R@10 per dataset, summed over a
# modality's datasets, as Table 2 prints it), for every trained system of notebook 02 and the untrained
# MEDBind_BD initialisation. Identical texts (after `text_identity` normalisation) are one gallery item; a hit
# at K = the query's own text among the top K. Datasets: MIMIC-CXR test, CheXpert 5x200, Open-I (CXR);
# MIMIC-ECG test, PTB-XL test fold (ECG; PTB-XL's own report texts).
#
# CheXpert 5x200, instance-level as the paper (one text per image, hit = its own text): when the cohort's
# `chexpert_5x200.csv` carries `Report Impression` the reports are used; otherwise (public CheXpert, the
# synthetic cohort) each image gets one seeded MedCLIP prompt of its class, and images that draw the same prompt
# share one gallery item. The older 5-way reading (`c5x200_protocol: class_prompts`, chance R@10 ~92%) is an
# option only: its cells are marked † and a CXR RSUM that contains it is not set beside the paper's.
# Every number has a patient-level bootstrap 95% CI. Reads `runs/<profile>/embeddings/` (and the checkpoints,
# for the prompt embeddings); writes `runs/<profile>/tables/table2_retrieval.{csv,md,params.json}` and
# `runs/<profile>/figures/03_table2_retrieval.{png,pdf}`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.reports import tables
from medbind_lib.prereq import require
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="03", overrides=overrides)
require(cfg, "03")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 220, "display.max_columns", 30, "display.max_colwidth", 40)
settings = tables.eval_settings(cfg)
art = tables.Artifacts(cfg)
print({k: v for k, v in settings.as_dict().items() if k in ("n_boot", "ties", "text_identity", "retrieval_ks",
                                                              "c5x200_protocol", "seed")})

# %%
t2 = tables.table2_retrieval(cfg, settings, art)

# %% [markdown]
# ## Table 2 on this profile
# Cells: ours [95% CI] (paper). Paper rows without a system of ours (general CLIP) keep only the paper number.

# %%
# NBVAL_CHECK_OUTPUT
wide = {mod: tables.table2_wide(t2, mod) for mod in ("cxr", "ecg")}
for mod, w in wide.items():
    print(f"--- {mod.upper()}")
    print(w.to_string(index=False))

# %% [markdown]
# ## What chance looks like here
# With a deduplicated gallery of G texts a random ranking scores R@K = K / G; small galleries make R@10 easy.

# %%
# NBVAL_CHECK_OUTPUT
sizes = t2[t2["dataset"] != "all"].drop_duplicates("dataset").set_index("dataset_label")
print(sizes[["n_queries", "n_gallery", "chance_R@1", "chance_R@10", "text_source"]].round(1).to_string())

# %%
notes = ["Cells: ours [95% patient-bootstrap CI] (paper); † = our number uses another protocol than the paper's "
         "(c5x200_protocol: class_prompts) and no RSUM containing it is compared with the paper's.",
         "CheXpert 5x200 texts: " + "; ".join(t2.loc[t2["dataset"] == "chexpert_5x200", "text_source"].dropna().unique())
         + ".",
         "RSUM = sum over the modality's datasets of R@1 + R@10 (Table 2's definition).",
         f"Untrained = {settings.untrained_variant} architecture at its seeded initialisation, never trained.",
         "CLIP (general): no offline checkpoint in this suite; paper number only.",
         *settings.notes]
paths = tables.save_table(t2, cfg, "table2_retrieval", title="Table 2: modality-to-text retrieval",
                          display={"CXR -> text": wide["cxr"], "ECG -> text": wide["ecg"]}, notes=notes)
print(sorted(p.name for p in paths.values()))

# %%
from medbind_lib.plots import save_figure

fig = tables.plot_table2(t2)
save_figure(fig, cfg, "03_table2_retrieval");

# %% [markdown]
# ## Reading
# Computed from the table above (best system by modality RSUM, its CI against the untrained model and chance,
# and the order of the systems the paper reports).

# %%
reading = [f"{r} [one pre-training run per system]" for r in tables.describe_table2(t2)]
if cfg.profile == "smoke":
    reading.append("Smoke profile: a few dozen synthetic test records, galleries of 10-50 texts and models "
                   "trained for a handful of steps, so the CIs are wide and R@10 is near its chance level; the "
                   "paper's gaps (e.g. MEDBind ~44 vs CXR-CLIP ~22 R@1 on MIMIC-CXR) are not expected to show "
                   "here.")
print("\n".join(f"- {r}" for r in reading))
