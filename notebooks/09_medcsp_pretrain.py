# %% [markdown]
# # 09 · MEDCSP pre-training, one variant
#
# One notebook per MEDCSP variant (the runner executes it once for each of the profile's `medcsp_variants`):
# `medcsp` (L_A + λ_P L_P + λ_D L_D), the ablations `medcsp_a`, `medcsp_a_p`, `medcsp_a_d` (same batches,
# fewer terms) and `medcsp_single` (imaging records only). The loop is the one MEDBind's systems train with
# (`medbind_lib.trainer`: checkpoints, exact resume, AMP, DDP, per-step logs, NaN stop); MEDCSP brings its model
# (per-modality encoders, one text encoder shared by notes and reports), its losses and a batch sampler that
# puts same-patient EHR/CXR record pairs within θ days into each batch at the rate `medcsp_pair_rate` (the
# paper does not say how batches are formed). Data: notebook 08's records, the shared patient-level split.
# Outputs: `runs/<profile>/09/<variant>/` (checkpoints, per-step log, metrics.json).

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)
variant = "medcsp"

# %%
import json

import pandas as pd
import torch

from medbind_lib.config import load_profile
from medbind_lib.distributed import launch
from medbind_lib.layout import RunLayout
from medbind_lib.medcsp.pretrain import LOSS_KEYS, default_out_dir, train_medcsp
from medbind_lib.prereq import require
from medbind_lib.runtime import seed_everything

cfg = load_profile(profile, notebook="09", overrides=overrides)
require(cfg, "09")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
out = default_out_dir(cfg, variant)
gpus = torch.cuda.device_count()
if gpus > 1:  # DDP: one process per GPU, record embeddings gathered with gradient inside the loss
    launch("medbind_lib.medcsp.pretrain", ["--profile", profile, "--variant", variant], gpus, overrides)
    metrics = json.loads((out / "metrics.json").read_text())
else:
    metrics = train_medcsp(cfg, variant)
print(f"{variant}: {metrics['steps']} steps on {metrics['device']} x{metrics['world_size']}; "
      f"best.pt = lowest validation loss ({metrics['best_val_criterion']:.3f})")
print(", ".join(f"{k}={cfg[k]}" for k in LOSS_KEYS))

# %% [markdown]
# ## The records the variant trained on
# Per split: records of each source, records carrying each modality, patients, and patients present in both
# sources (the only ones L_P can bind). `medcsp_single` sees the imaging records alone.

# %%
# NBVAL_CHECK_OUTPUT
data = pd.DataFrame(metrics["data"]).T
print(data.drop(columns=["split", "dropped", "unavailable"], errors="ignore").to_string())
skipped = {f"{s}: {k}": v for s, d in metrics["data"].items() for part in ("dropped", "unavailable")
           for k, v in d.get(part, {}).items() if v}
print("records dropped / modalities unavailable (counted, see medcsp.batches):", skipped or "none")
print(f"batch size {cfg.medcsp_batch_size}, {metrics['batches_per_epoch']} batches per epoch, "
      f"{cfg.medcsp_epochs} epochs, pair rate {cfg.medcsp_pair_rate}")

# %% [markdown]
# ## Loss terms, L_P positives per batch, throughput
# L_P can only learn from same-patient cross-source pairs within θ that land in the same batch; the middle
# panel counts them per batch (logged for every variant, also those that do not use L_P).

# %%
import matplotlib.pyplot as plt

from medbind_lib.plots import save_figure

steps = pd.read_parquet(out / "steps.parquet")
epochs = pd.read_csv(out / "epochs.csv")
fig, ax = plt.subplots(1, 3, figsize=(14, 3.4))
ax[0].plot(steps["step"], steps["loss"], label="train loss", color="k")
for c in ("la", "lp", "ld"):
    if c in steps:
        ax[0].plot(steps["step"], steps[c], lw=0.8, label=c.upper().replace("L", "L_", 1))
ax[0].plot(epochs["step"], epochs["val_loss"], "o-", color="tab:red", label="valid loss")
ax[0].set(xlabel="step", title=f"{variant}: loss")
ax[0].legend(fontsize=7)
ax[1].hist(steps["n_lp_pairs"], bins=range(int(steps["n_lp_pairs"].max()) + 2), color="tab:blue")
ax[1].set(xlabel="L_P positive pairs per batch", ylabel="batches", title="same patient, other source, within θ")
ax[2].plot(steps["step"], steps["samples_per_s"], label="records/s")
ax[2].plot(steps["step"], steps["data_wait_s"] / steps["step_s"] * 100, label="data wait (% of step)")
ax[2].set(xlabel="step", title="throughput")
ax[2].legend(fontsize=7)
fig.tight_layout()
save_figure(fig, cfg, f"09_training_{variant}");

# %%
wait = steps["data_wait_s"].sum() / steps["step_s"].sum()
print(f"median {steps['samples_per_s'].median():.1f} records/s; data wait {wait:.1%} of step time; "
      f"{steps['n_lp_pairs'].mean():.1f} L_P positive pairs per batch on average")

# %% [markdown]
# ## A first retrieval check against the untrained model
# Validation split, the same architecture before and after training: report->image over the validation CXR
# studies (a hit = the report's own study). R@1, R@10 and the median rank (lower is better); chance R@K = K /
# studies. The held-out studies (patients absent from the EHR source, never in pre-training) and every other
# evaluation set are scored with confidence intervals in the evaluation notebooks.

# %%
from medbind_lib.reports.checks import validation_check

check = validation_check(metrics["final_valid"], metrics["untrained_valid"], ("report_image",),
                         ("r1", "r5", "r10", "medr"), count="studies")
print(check.round(1).to_string())

# %% [markdown]
# ## Export embeddings of every evaluation set
# In the suite's one format (`runs/<profile>/embeddings/<variant>/`), so that the evaluation notebooks read MEDCSP
# and MEDBind rows alike: MIMIC-CXR, CheXpert 5x200, COVID, RSNA and Open-I (image and report towers), the
# retrieval hold-out (CXR studies of patients absent from the EHR source, never in pre-training) and, for the
# variants with EHR encoders, every EHR record (per-modality and record embeddings; the task cohorts pick their
# rows by `hadm_id`). Also, once per pre-training seed, the untrained `medcsp` architecture initialised from that
# seed: the untrained reference row (`medcsp_untrained`, and `medcsp@seed<k>_untrained` for a seed replicate).

# %%
from medbind_lib.medcsp.batches import load_records
from medbind_lib.medcsp.embed import export_medcsp_embeddings, export_untrained_reference
from medbind_lib.pipeline import untrained_reference_run
from medbind_lib.registry import HEADLINE

loaded = load_records(cfg, splits=("train", "valid", "test"))
paths = export_medcsp_embeddings(cfg, variant, "best", loaded=loaded)
emb_root = RunLayout(cfg).embeddings()
# deterministic content (the seed's initialisation), written once by whichever run of the seed comes first
reference = export_untrained_reference(cfg, untrained_reference_run(cfg, variant) or HEADLINE["medcsp"],
                                       loaded=loaded).name
print(sorted(paths))

# %% [markdown]
# ## Hold-out report->image retrieval, trained vs untrained
# The hold-out studies' reports query their images (a hit = the report's own study; chance R@K = K / studies).
# A first check only: confidence intervals, P@K and the other evaluation sets are in the evaluation notebooks.

# %%
import numpy as np

from medbind_lib.export import load_embeddings
from medbind_lib.metrics.retrieval import target_ranks
from medbind_lib.reports.checks import ranks_vs_chance

ranks = {}
for tag in (variant, reference):
    f = emb_root / tag / "mimic_cxr_holdout.npz"
    if not f.exists():
        continue
    z = load_embeddings(f)
    ranks[tag] = target_ranks(torch.from_numpy(z["text_emb"]), torch.from_numpy(z["emb"]), np.arange(len(z["emb"])))
print(ranks_vs_chance(ranks).round(1).to_string())

# %% [markdown]
# ## Is the trained model better than the untrained one beyond the noise?
# Text->image R@10 by the paper's protocol (each report queries the images; relevant = every image of its study,
# lateral views included, under `medcsp_retrieval_gallery: study_images`; R@10 = relevant images in the top 10 /
# relevant images) of the trained variant minus the untrained `medcsp` architecture on the SAME queries: the
# MIMIC-CXR validation split and the hold-out studies, with a paired patient-bootstrap 95% CI (`metrics.paired`,
# the test MEDBind's BD - NM comparisons use). A CI above 0 = trained beats untrained beyond resampling noise.

# %%
from medbind_lib.metrics.paired import paired_mean_difference
from medbind_lib.metrics.protocol import EvalSettings
from medbind_lib.reports.radiology import per_query_recall

ev = EvalSettings(profile=profile, seed=cfg.seed)
rows, gallery = [], cfg.medcsp_retrieval_gallery
for name, split in (("mimic_cxr", "valid"), ("mimic_cxr_holdout", None)):
    a, groups = per_query_recall(load_embeddings(emb_root / variant / f"{name}.npz"), name, split, gallery=gallery)
    b, _ = per_query_recall(load_embeddings(emb_root / reference / f"{name}.npz"), name, split, gallery=gallery)
    d = paired_mean_difference(a, b, groups, n_boot=ev.n_boot, seed=ev.seed, alpha=ev.alpha)
    rows.append({"set": f"{name} ({split or 'all'})", "queries": d["n"], "trained R@10": a.mean(),
                 "untrained R@10": b.mean(), "difference": d["diff"], "CI low": d["lo"], "CI high": d["hi"]})
print(pd.DataFrame(rows).set_index("set").round(1).to_string())
