# %% [markdown]
# # 00 · The cohort
#
# What the suite trains and evaluates on. With a synthetic profile (`smoke`, `default`, `gpu`) this notebook
# first writes the synthetic cohort **in the real datasets' on-disk layouts** (MIMIC-CXR-JPG, MIMIC-IV-ECG,
# MIMIC-IV + Note, PTB-XL, ICBEB, CheXpert, COVID-19 Radiography, RSNA, Open-I); with `paper` it reads your
# PhysioNet / Kaggle downloads through the very same readers. It then shows what the data look like:
# chest X-rays by finding, a 12-lead ECG per diagnostic class, and sample texts.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.datasets import load_manifest, load_tables
from medbind_lib.quality import QualityLog
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="00", overrides=overrides)
seed_everything(cfg.seed)
pd.set_option("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 80)
print(f"profile={cfg.profile} synthetic={cfg.synthetic} n_patients={cfg.n_patients} seed={cfg.seed}")

# %% [markdown]
# ## Write (or reuse) the synthetic cohort
# Deterministic for the seed; reused while the generator's parameters are unchanged (a stamp file).

# %%
if cfg.synthetic:
    from medbind_lib import synth

    summary = synth.write_cohort(cfg)
    print("reused existing cohort" if summary.get("reused") else f"generated in {summary['seconds']:.1f} s")

# %% [markdown]
# ## Every dataset through its reader
# One tidy manifest per dataset (`dataset, record_id, subject_id, path, time, split` + its own columns).

# %%
# NBVAL_CHECK_OUTPUT
quality = QualityLog()
names = ["mimic_cxr", "mimic_ecg", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"]
manifests = {n: load_manifest(n, cfg, quality) for n in names}
tables = load_tables(cfg, quality=quality)
overview = pd.DataFrame([{"dataset": n, "records": len(df), "subjects": df["subject_id"].nunique(),
                          **df["split"].fillna("none").value_counts().to_dict()} for n, df in manifests.items()])
overview = overview.fillna(0).astype({c: int for c in overview.columns if c != "dataset"})
print(overview.to_string(index=False))
print("MIMIC-IV tables:", {k: len(v) for k, v in tables.items()})

# %% [markdown]
# ## Chest X-rays by finding
# Rows are CheXpert labels of MIMIC-CXR (frontal views, label = 1.0). On the synthetic cohort the findings
# are drawn into the anatomy: a wide cardiac silhouette for cardiomegaly, lung opacities, blunted
# costophrenic angles for effusion, perihilar haze for edema, a device with its lead for pacemakers.

# %%
from medbind_lib.plots import ecg_12lead, image_grid, save_figure
from medbind_lib.preprocess.cxr import load_image

cxr = manifests["mimic_cxr"]
frontal = cxr[cxr["view"].isin(cfg.cxr_views)]
findings = ["No Finding", "Cardiomegaly", "Pleural Effusion", "Edema", "Consolidation", "Support Devices"]
grid = {f: [load_image(p) for p in frontal.loc[frontal[f] == 1.0, "path"].head(4)] for f in findings}
fig = image_grid(grid)
save_figure(fig, cfg, "00_cxr_by_finding");

# %% [markdown]
# ## A 12-lead ECG per class
# MIMIC-IV-ECG records, labelled by the rule-based labeler of Table A.3 from their machine statements,
# after the suite's preprocessing (gain from the header, leads mapped by name to I, II, III, aVR, aVL, aVF,
# V1-V6, anti-aliased 500 -> 100 Hz, first 10 s).

# %%
import textwrap

from medbind_lib.constants import ECG_SUPERCLASSES
from medbind_lib.preprocess import ecg as pecg
from medbind_lib.preprocess.text import ecg_text, label_ecg

ecg = manifests["mimic_ecg"].copy()
ecg["text"] = [ecg_text(r) for r in ecg["machine_reports"]]
ecg["labels"] = [label_ecg(t) for t in ecg["text"]]
for cls in ECG_SUPERCLASSES:
    hit = ecg[ecg["labels"].map(lambda s: s == {cls})].head(1)
    if hit.empty:
        print(f"{cls}: no single-class record in this cohort")
        continue
    row = hit.iloc[0]
    x = pecg.preprocess_record(row["path"], cfg, "mimic_ecg")
    fig = ecg_12lead(x, cfg.ecg_fs, title=f"{cls}: " + textwrap.shorten(row["text"], 120))
    save_figure(fig, cfg, f"00_ecg_{cls}")

# %% [markdown]
# ## Sample texts
# A MIMIC-CXR report and the text MEDBind uses (FINDINGS + IMPRESSION, first 100 words), the Table A.2
# ECG text, a PTB-XL report and the MIMIC-IV demographics text.

# %%
from medbind_lib.preprocess.text import cxr_report_text, demographics_text, read_report

report = read_report(frontal.iloc[0]["report_path"])
print(report)
print("MEDBind text ->", cxr_report_text(report))
print("\nECG text     ->", ecg["text"].iloc[0])
print("PTB-XL report ->", manifests["ptbxl"]["report"].iloc[0])
adm, pat = tables["admissions"], tables["patients"]
a = adm.merge(pat, on="subject_id").iloc[0]
print("demographics ->", demographics_text(a.gender, a.anchor_age, a.admission_type, a.admission_location))

# %% [markdown]
# ## Identical reports
# TMCL treats identical texts as positives: many normal studies share one report.

# %%
from medbind_lib.preprocess.text import normalize_for_identity

texts = pd.Series([cxr_report_text(read_report(p)) for p in frontal.drop_duplicates("study_id")["report_path"]])
keys = texts.dropna().map(lambda t: normalize_for_identity(t, cfg.text_identity))
top = keys.value_counts().head(5)
print(f"{keys.nunique()} distinct CXR texts among {len(keys)} studies; most frequent:")
print(top.to_string())
