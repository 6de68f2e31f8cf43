# %% [markdown]
# # 01 · Linking, labels, splits and the preprocessed cache
#
# MIMIC-CXR (AP/PA, FINDINGS + IMPRESSION), MIMIC-IV-ECG (Table A.2 text, Table A.3 labels) and MIMIC-IV
# are linked by the rules of METHOD.md: a record belongs to the admission whose stay contains it; MIMIC-PAIR
# pairs a CXR and an ECG of the same admission, or of the same patient within `pair_window_hours`;
# 30-day readmission and in-hospital mortality come from the admissions table; ONE patient-level split is
# shared by every MIMIC source. Then every dataset is preprocessed once into memory-mapped caches, and the
# public pre-trained baselines (they train nothing) embed every CXR evaluation set.
# Outputs: `runs/<profile>/01/` (parquet frames, Table 1, the data-quality table), `runs/<profile>/embeddings/pretrained_*/`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)

# %%
import pandas as pd

from medbind_lib import cohort
from medbind_lib.config import load_profile
from medbind_lib.quality import QualityLog
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="01", overrides=overrides)
seed_everything(cfg.seed)
pd.set_option("display.width", 180, "display.max_columns", 20, "display.max_colwidth", 70)
quality = QualityLog()
linked = cohort.mimic_cohort(cfg, quality)
external = cohort.external_cohort(cfg, quality)
print({k: len(v) for k, v in linked.items() if isinstance(v, pd.DataFrame)})

# %% [markdown]
# ## Table 1 for this profile
# Per dataset: task, number of classes, train / valid / test counts (paper: MIMIC-CXR 86,853 / 12,059 /
# 24,799; MIMIC-ECG 88,291 / 12,065 / 24,644; MIMIC-PAIR 22,397 / 3,292 / 6,664; PTB-XL 17,415 / 2,183 /
# 2,198; ICBEB 5,501 / - / 1,376; COVID 11,028 / - / 2,780; RSNA 18,678 / - / 5,338; CheXpert 5x200 1,000;
# Open-I 3,269).

# %%
# NBVAL_CHECK_OUTPUT
t1 = cohort.table1(linked, external)
print(t1.drop(columns="link / rule").to_string(index=False))

# %% [markdown]
# ## The split is patient-level across every MIMIC source

# %%
# NBVAL_CHECK_OUTPUT
frames = {k: linked[k] for k in ("cxr", "ecg", "pairs", "admissions")}
per_subject = pd.concat([f[["subject_id", "split"]] for f in frames.values()]).drop_duplicates()
assert not per_subject["subject_id"].duplicated().any(), "a patient appears in two splits"
print(f"{per_subject['subject_id'].nunique()} patients, each in exactly one split:",
      per_subject["split"].value_counts().reindex(["train", "valid", "test"]).to_dict())

# %% [markdown]
# ## MIMIC-PAIR: how CXR and ECG were linked

# %%
# NBVAL_CHECK_OUTPUT
pairs = linked["pairs"]
print(pd.Series(linked["pair_counts"]).to_string())
print(pairs.groupby("link")["dt_hours"].describe()[["count", "mean", "min", "max"]].round(1).to_string())

# %%
import matplotlib.pyplot as plt

from medbind_lib.plots import save_figure

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for link, df in pairs.groupby("link"):
    axes[0].hist(df["dt_hours"], bins=30, alpha=0.6, label=f"{link} ({len(df)})")
axes[0].set(xlabel="t_ECG - t_CXR (hours)", ylabel="pairs", title="MIMIC-PAIR time offsets")
axes[0].legend()
adm = linked["admissions"]
rates = pd.DataFrame({t: adm.groupby("split")[t].mean() for t in ("readmission", "mortality")}).reindex(
    ["train", "valid", "test"])
rates.plot.bar(ax=axes[1], rot=0, title="label prevalence per split")
fig.tight_layout()
save_figure(fig, cfg, "01_pairs_and_labels");

# %% [markdown]
# ## Outcome labels (MIMIC-IV)
# In-hospital mortality = `hospital_expire_flag`; 30-day readmission = the same patient's next admission
# begins within `readmission_days` of discharge (index admissions that died are excluded; an admission with no
# later admission is a negative, as in the paper, or dropped with `readmission_no_next: censor`). Both are counted
# below; exclusions and the kept no-later-admission negatives appear in the data-quality table.

# %%
# NBVAL_CHECK_OUTPUT
print(adm[["readmission", "mortality"]].apply(lambda s: s.value_counts(dropna=False)).to_string())
print("ECG labels (Table A.3), labelled records:", int(linked["ecg"]["labelled"].sum()), "of", len(linked["ecg"]))
print(linked["ecg"][["NORM", "MI", "STTC", "CD", "HYP"]].sum().to_string())

# %% [markdown]
# ## Preprocess once: memory-mapped caches
# ECG: gain from the header, canonical leads, NaN policy, anti-aliased resampling to `ecg_fs`, first
# `ecg_seconds`, zero-padding. CXR: decode (JPG/PNG/DICOM), `cxr_resize` to `cxr_cache_size`. Keyed by the
# parameters and the source files: a changed parameter rebuilds, an unchanged one reuses.

# %%
caches = cohort.build_caches(cfg, {"mimic_cxr": linked["cxr"], "mimic_ecg": linked["ecg"], **external}, quality)
print({k: (len(c), "reused" if c.reused else "built") for k, c in caches.items()})
stats = cohort.ecg_norm_stats(cfg, caches["mimic_ecg"])
print(f"ECG normalisation ({cfg.ecg_norm}) fit on the training split")

# %% [markdown]
# ## Data quality: every record excluded, and why

# %%
# NBVAL_CHECK_OUTPUT
dq = quality.to_frame()
print(dq.drop(columns="examples").to_string(index=False))

# %%
out = cohort.save_linked(cfg, linked, external, quality, t1)
print("written:", sorted(p.name for p in out.iterdir()))

# %% [markdown]
# ## Public pre-trained baselines: CLIP, BiomedCLIP, PubMedCLIP, MedCLIP, CXR-CLIP
# Rows of Table 2, Fig. 3 and notebook 11 scored from released weights, each with its own image preprocessing and
# tokenizer (`medbind_lib/models/pretrained.py`). The profile key `pretrained_models` names the weights (the
# `paper` profile names all five); nothing downloads unless `pretrained_allow_download` is true. A row without
# weights says so here and in the tables, instead of scoring random weights.

# %%
# NBVAL_CHECK_OUTPUT
from medbind_lib.export import export_pretrained

pretrained = export_pretrained(cfg)
print(pretrained[["row", "family", "status"]].to_string(index=False))
