# %% [markdown]
# # 08 · MEDCSP data: two sources, their records, and the downstream cohorts
#
# MEDCSP pre-trains over an EHR source (MIMIC-IV's ICU population, as the paper's FIDDLE-processed source: one
# record per admission with an ICU stay, with ICD codes, drugs, demographics, the first hours of ICU readings
# and the discharge note; `medcsp_ehr_population`) and an imaging source (MIMIC-CXR: one
# record per study, a frontal image and its report) that share only some patients. This notebook builds both
# sources on notebook 01's patient-level split (shared with MEDBind), the features of every modality, and the
# downstream cohorts (ARF, shock and mortality at the prediction time by FIDDLE's rules; 30-day readmission),
# and writes them once per parameter set to `runs/<profile>/08/` for the pre-training and evaluation notebooks.
# Every choice is a `medcsp_*` profile key (printed below); the data-quality table lists everything excluded
# or flagged. CXR studies of patients absent from the EHR source are never pre-training records: a sample of
# them is the text->image retrieval hold-out.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import numpy as np
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.medcsp import features, records
from medbind_lib.ehr.items import REFERENCE_PREVALENCE, REFERENCE_SOURCE
from medbind_lib.plots import save_figure
from medbind_lib.prereq import require
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="08", overrides=overrides)
require(cfg, "08")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
pd.set_option("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60)
d = features.build(cfg)
print({k: v for k, v in d["params"].items() if k not in ("inputs", "linked")})

# %% [markdown]
# ## The sources (the paper's Table 4 for this profile)
# Paper (pre-training): MIMIC-IV 32,355 patients / 41,230 records; MIMIC-CXR 14,620 / 156,837; 14,620 patients
# in both: 45.19 % of the processed MIMIC-IV patients and 22.36 % of MIMIC-CXR's (the paper's introduction swaps
# the two). Admissions without an ICU stay are not EHR records (counted in the data-quality table); CXR studies of
# patients outside the ICU source are never pre-training records, and `medcsp_holdout_fraction` of those patients
# (paper: a 1 % sample, 1,202 studies) are the retrieval hold-out.

# %%
# NBVAL_CHECK_OUTPUT
ehr, cxr, hold = d["ehr_records"], d["cxr_records"], d["holdout_records"]
rows = []
sources = [(f"EHR (MIMIC-IV admissions, population {cfg.medcsp_ehr_population})", ehr),
           ("CXR (MIMIC-CXR studies, EHR patients)", cxr), ("CXR retrieval hold-out (patients absent from the EHR)", hold)]
if "task" in d:
    sources.append(("EHR-task population (medcsp_task_subjects: no pre-training record)", d["task"]["records"]))
for name, r in sources:
    by = r.groupby("split")
    rows.append({"source": name, "patients": r["subject_id"].nunique(), "records": len(r),
                 **{f"records {s}": int(by.size().get(s, 0)) for s in ("train", "valid", "test")}})
print(pd.DataFrame(rows).to_string(index=False))
ov = records.source_overlap(ehr, pd.concat([cxr, hold]))
print(f"patients in both sources: {ov['both']} = {ov['pct_of_ehr']:.1f} % of the EHR source's, "
      f"{ov['pct_of_cxr']:.1f} % of the CXR source's")

# %% [markdown]
# ## Downstream cohorts
# ARF / shock / mortality: first ICU stay, adults, readings of the first `medcsp_prediction_hours` hours;
# stays whose onset or end comes before the prediction time are excluded (FIDDLE). Readmission: every
# admission the patient survived (notebook 01's label), of the ICU admissions by default
# (`medcsp_readmission_population`; the paper's MIMIC-III is an ICU database: 11,695 admissions, 13.5 % positive). Inputs each task may use: no text written after the
# prediction time. With `medcsp_task_subjects` (default profile) the cohorts hold the task population only (the
# paper's MIMIC-III role: nothing pre-trains on it), split by `medcsp_task_split_fractions`; its records are the
# last row of the table above.

# %%
# NBVAL_CHECK_OUTPUT
task_rows = []
for task, f in d["cohorts"].items():
    by = f.groupby("split")["label"]
    task_rows.append({"task": task, "records": len(f), "positives": int(f["label"].sum()),
                      "prevalence %": 100 * f["label"].mean() if len(f) else np.nan,
                      "reference %": 100 * REFERENCE_PREVALENCE[task] if task in REFERENCE_PREVALENCE else np.nan,
                      "reference": REFERENCE_SOURCE.get(task, ""),
                      "train / valid / test": " / ".join(str(int(by.size().get(s, 0))) for s in
                                                         ("train", "valid", "test")),
                      "inputs": ", ".join(features.TASK_MODALITIES[task])})
print(pd.DataFrame(task_rows).round(1).to_string(index=False))
print(d["cohort_counts"].to_string(index=False))

# %% [markdown]
# ## Modality coverage per record

# %%
# NBVAL_CHECK_OUTPUT
cov = {"EHR": ehr.filter(like="has_").mean().mul(100).round(1).to_dict(),
       "CXR": cxr.filter(like="has_").mean().mul(100).round(1).to_dict()}
print(pd.DataFrame(cov).astype(object).fillna("").to_string())

# %% [markdown]
# ## Same-patient EHR and CXR records in time
# L_P pairs an EHR record with the same patient's CXR records within `theta` days (30 in the paper).

# %%
import matplotlib.pyplot as plt

gaps = records.cross_source_gaps(ehr, cxr)
fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
ax[0].hist(np.clip(gaps["gap_days"], 0, 365), bins=60, color="tab:blue")
ax[0].axvline(30, color="k", ls="--", lw=1, label="30 days")
ax[0].set(xlabel="|t_EHR - t_CXR| (days, clipped at 365)", ylabel="same-patient record pairs",
          title="time between a patient's EHR and CXR records")
ax[0].legend()
rec = d["temporal_values"].shape
stay = d["stays"].iloc[int(np.argmax(d["temporal_mask"].sum((1, 2))))]
m = d["temporal_mask"][int(stay["row"])]
v = np.where(m > 0, d["temporal_values"][int(stay["row"])], np.nan)
im = ax[1].imshow(v.T, aspect="auto", cmap="coolwarm", vmin=-3, vmax=3, interpolation="nearest")
ax[1].set(xlabel="hour since ICU admission", ylabel="item", title=f"stay {stay['stay_id']}: z-scored readings "
          f"(blank = missing)")
ax[1].set_yticks(range(len(d["vocab"]["temporal_items"])), [str(i) for i in d["vocab"]["temporal_items"]],
                 fontsize=6)
fig.colorbar(im, ax=ax[1], fraction=0.03)
fig.tight_layout()
save_figure(fig, cfg, "08_medcsp_sources")
print(f"same-patient pairs within 30 days: {(gaps['gap_days'] <= 30).sum()} of {len(gaps)}; temporal tensor "
      f"{rec[0]} stays x {rec[1]} bins x {rec[2]} items, {100 * d['temporal_mask'].mean():.1f} % observed")

# %% [markdown]
# ## Data quality: every record excluded or flagged while building, and why

# %%
# NBVAL_CHECK_OUTPUT
print(d["quality"].drop(columns="examples", errors="ignore").to_string(index=False))
