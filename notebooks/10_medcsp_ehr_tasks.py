# %% [markdown]
# # 10 · MEDCSP EHR tasks: ARF, shock, mortality, 30-day readmission
#
# MEDCSP's EHR downstream tasks (MEDCSP.md "Downstream tasks") on notebook 08's cohorts. The paper pre-trains on
# MIMIC-IV and scores the tasks on MIMIC-III; with `medcsp_task_subjects` (the default profile: 1,400 synthetic ICU
# patients of `synth_task_patients`) the cohorts hold that task population only, which nothing pre-trains on, split
# by `medcsp_task_split_fractions`; without it (smoke, paper) they keep the shared patient-level split, so every
# test patient was held out of pre-training:
#
# - **ARF, shock, in-hospital mortality** (FIDDLE; first ICU stay, adults, outcome after the prediction time T):
#   the stay's temporal tensor over its first `medcsp_prediction_hours` + the admission's demographics;
# - **30-day readmission** (MedHMP; admission level): temporal tensors of the admission's ICU stays, discharge
#   note, demographics, ICD and drug codes (`features.TASK_MODALITIES`: no in-ICU task sees a discharge text).
#
# Rows: the pre-trained encoders of `medcsp_task_variant` (notebook 09's `best.pt`), the same architecture with the
# same seed and no pre-training, FIDDLE's F-LSTM and F-CNN trained from scratch on the same inputs, RAIM and DCMN
# (in-ICU tasks, as the paper's Figure 5; `models.ehr_baselines` maps each paper onto these inputs), MedHMP (every
# task: its stay encoder for the in-ICU tasks, its admission encoder for readmission, pre-trained first on the EHR
# source's training records, `medcsp.medhmp`), Yang and Wu's eight (readmission), and (mortality, readmission) an MLP
# on MEDBind_BD's CXR and ECG embeddings of the admission + demographics, whose inputs differ.
# Every row ends in the same MLP head; with `medcsp_task_finetune: false` the MEDCSP embeddings are computed once per
# row and only the head trains. Learning rate and batch size are chosen per task and row on validation AUROC; then
# `medcsp_task_runs` runs (seeds) are scored on the test split: AUROC, AUPR (the paper's `auc(recall, precision)`)
# and average precision, mean over runs with a patient-bootstrap 95% CI of that mean. Which population the numbers
# come from is printed with the settings (`cohort`) and stands beside every number of the saved tables.
# Writes `runs/<profile>/tables/medcsp_ehr_tasks*.{csv,md,params.json}`, `runs/<profile>/10/` (grid, test scores)
# and `figures_dir/10_medcsp_ehr_tasks.{png,pdf}`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.medcsp import features
from medbind_lib.medcsp import task_inputs as TI
from medbind_lib.plots import save_figure
from medbind_lib.prereq import require
from medbind_lib.quality import QualityLog
from medbind_lib.reports import ehr_tasks as T
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="10", overrides=overrides)
require(cfg, "10")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 220, "display.max_columns", 30, "display.max_colwidth", 70)
settings = TI.task_settings(cfg)

# %%
# NBVAL_CHECK_OUTPUT
print({k: v for k, v in settings.as_dict().items() if k not in ("rows", "tasks")})
print("tasks:", list(settings.tasks), "| rows:", list(settings.rows))

# %% [markdown]
# ## Cohorts per split
# Rows, positives, prevalence and patients per task and split, with the reference prevalence (MEDCSP's Table 4 on
# MIMIC-III; mortality: FIDDLE's at 48 h; MEDCSP.md), and how many rows carry each optional input. Prediction is on
# the test split only.

# %%
# NBVAL_CHECK_OUTPUT
data = features.load(cfg)
quality = QualityLog()
inputs = {t: TI.task_inputs(data, t, settings.max_stays, quality) for t in settings.tasks}
print(TI.cohort_summary(inputs).to_string(index=False))
dropped = quality.to_frame()
dropped = dropped[dropped["records"] > 0] if "records" in dropped else dropped
print(dropped.to_string(index=False) if len(dropped) else "no cohort row dropped")

# %% [markdown]
# ## Grid search, then the runs
# Per task and row: every (lr, batch size) of the grid with seed `seed` (early stopping on the validation split,
# `medcsp_task_early_stop`), the setting with the best validation AUROC kept, then the remaining runs at that
# setting. The bar counts fits.

# %%
res = T.evaluate_tasks(cfg, data, settings, inputs=inputs, progress_enabled=cfg.progress)
for n in res.notes:
    print(n)

# %% [markdown]
# ## Validation AUROC of the grid
# Seed-`seed` fits; `*` marks the chosen setting (highest validation AUROC; validation loss where the AUROC is
# undefined, e.g. a validation split with one class). Validation splits are small: the choice is noisy.

# %%
g = res.grid.assign(setting=lambda d: "lr " + d["lr"].map("{:g}".format) + ", bs " + d["batch_size"].astype(str),
                    cell=lambda d: d["valid_auroc"].round(1).astype(str) + d["chosen"].map({True: "*", False: ""}))
wide = g.set_index(["task", "row", "setting"])["cell"].unstack("setting")
wide = wide.reindex(index=pd.MultiIndex.from_frame(g[["task", "row"]].drop_duplicates()),
                    columns=g["setting"].drop_duplicates())
print(wide.to_string())

# %% [markdown]
# ## The table: test AUROC / AUPR / AP (%), mean of runs [95% CI]
# MEDCSP.md gives **no** published numbers for MEDCSP's EHR tasks, so the paper column says so (nothing is filled in
# from elsewhere). Every number here: held-out MIMIC-IV (synthetic) test patients; the paper's: MIMIC-III. The
# MEDBind_BD row uses other inputs (CXR and ECG embeddings + demographics).

# %%
shown = T.display_table(res)
for task in dict.fromkeys(shown["Task"]):
    print(f"--- {task}")
    print(shown[shown["Task"] == task].drop(columns=["Task"]).to_string(index=False))

# %% [markdown]
# ## Does pre-training help beyond the noise?
# MEDCSP minus each other row, test AUROC (points), with a paired patient-bootstrap 95% CI (the same replicates for
# both rows; each replicate re-scores every run of both). The first line per task is the pre-training gain (MEDCSP
# minus the same architecture untrained). A CI that excludes 0 is a difference beyond test resampling noise. With
# `seed_replicates` > 1 and the task variant among `seed_replicate_variants`, MEDCSP's rows are fitted again on the
# encoders of each pre-training seed and the difference is averaged over seeds (`n_pretrain_seeds`, `seed_sd`:
# the spread of the per-seed differences); the table above shows the first seed's encoders.

# %%
print(res.paired[["task", "b", "a_value", "b_value", "a_minus_b", "lo", "hi", "n_pretrain_seeds", "seed_sd",
                  "n_patients", "ci_excludes_0", "same_inputs"]].rename(columns={"b": "minus", "a_value": "MEDCSP"})
      .round(1).to_string(index=False))

# %%
fig = T.plot_auroc(res)
save_figure(fig, cfg, "10_medcsp_ehr_tasks");

# %%
paths = T.save_results(cfg, res)
print(sorted(p.name for v in paths.values() for p in (v.values() if isinstance(v, dict) else [v])))

# %% [markdown]
# ## What each row was
# The parameters recorded with every result row: chosen lr and batch size, validation AUROC of the chosen setting,
# best epoch per run, seeds, fine-tuning, variant and inputs.

# %%
print(res.table[["task", "row", "lr", "batch_size", "valid_auroc", "best_epochs", "seeds", "finetune", "variant",
                 "pool", "inputs", "fit_seconds", "extra"]].to_string(index=False, float_format="{:g}".format))

# %% [markdown]
# ## Reading

# %%
reading = T.describe_results(res)
reading.append(f"Population: {settings.cohort}. MEDCSP.md gives no EHR-task numbers to compare with.")
if not settings.finetune:
    reading.append("Encoders frozen (medcsp_task_finetune: false): only the head trains on the MEDCSP rows, while "
                   "F-LSTM / F-CNN train every parameter; the paper allows frozen or fine-tuned embeddings.")
if cfg.profile == "smoke":
    reading.append(f"Smoke profile: {cfg.n_patients} synthetic patients; the ICU test splits hold no positive, so "
                   "their metrics are undefined: these numbers test the pipeline, not the method.")
print("\n".join(f"- {r}" for r in reading))
