# %% [markdown]
# # 02 · Pre-training one system
#
# One notebook per variant (the runner executes it once for each of the profile's `variants`):
# MEDBind_BD (TMCL + EMCL), MEDBind_NM (TMCL), ECG-CLIP (TMCL on ECG-text), the CXR-CLIP row (plain image-text
# CLIP InfoNCE: none of CXR-CLIP's image-image or text-text terms) and MedCLIP-style (soft semantic matching).
# All use the same loop, data and patient-level splits from notebook 01. Every variant keeps as `best.pt` the
# checkpoint with the lowest validation TMCL of its modalities (`select_on: tmcl`, one criterion for all), and
# the loss reduction (`loss_reduction`: `mean` per term, or `batch`, the paper's Eq. 1-2 weighting) is printed
# with the run. A finished run is not retrained (the loop resumes from `last.pt`); with several GPUs the
# notebook launches `torchrun`. Outputs: `runs/<profile>/02/<variant>/` (checkpoints, per-step log,
# metrics.json) and the embeddings of every evaluation dataset in `runs/<profile>/embeddings/`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)
variant = "medbind_bd"

# %%
import json

import pandas as pd
import torch

from medbind_lib.config import load_profile
from medbind_lib.distributed import launch
from medbind_lib.prereq import require
from medbind_lib.runtime import seed_everything
from medbind_lib.medbind.pretrain import default_out_dir, train

cfg = load_profile(profile, notebook="02", overrides=overrides)
require(cfg, "02")  # names the notebook to run first if an earlier one has not run
seed_everything(cfg.seed)
out = default_out_dir(cfg, variant)
gpus = torch.cuda.device_count()
if gpus > 1:  # DDP: one process per GPU, embeddings gathered with gradient inside the loss
    launch("medbind_lib.medbind.pretrain", ["--profile", profile, "--variant", variant], gpus, overrides)
    metrics = json.loads((out / "metrics.json").read_text())
else:
    metrics = train(cfg, variant)
print(f"{variant}: {metrics['steps']} steps on {metrics['device']} x{metrics['world_size']}")
print(f"loss_reduction={cfg.loss_reduction}, emcl_scale={cfg.emcl_scale} (constant changes no gradient); best.pt "
      f"= lowest validation {metrics['select_on']} ({metrics['best_val_criterion']:.3f})")

# %% [markdown]
# ## What the batches looked like
# CXR-ECG pairs are sampled into batches in the profile's proportion, so the number of pairs m (the
# samples EMCL binds) varies from batch to batch, as in the paper.

# %%
# NBVAL_CHECK_OUTPUT
data = pd.DataFrame(metrics["data"]).T[["samples", "cxr_only", "ecg_only", "pairs"]]
print(data.to_string())
print(f"batch size {cfg.batch_size}, {metrics['batches_per_epoch']} batches per epoch, {cfg.epochs} epochs")

# %%
import matplotlib.pyplot as plt

from medbind_lib.plots import save_figure

steps = pd.read_parquet(out / "steps.parquet")
epochs = pd.read_csv(out / "epochs.csv")
terms = [c for c in ("tmcl_cxr", "tmcl_ecg", "emcl", "clip_cxr", "medclip_cxr") if c in steps]
fig, ax = plt.subplots(1, 3, figsize=(14, 3.4))
ax[0].plot(steps["step"], steps["loss"], label="train loss", color="k")
for c in terms:
    ax[0].plot(steps["step"], steps[c], lw=0.8, label=c)
ax[0].plot(epochs["step"], epochs["val_loss"], "o-", color="tab:red", label="valid loss")
ax[0].set(xlabel="step", title=f"{variant}: loss")
ax[0].legend(fontsize=7)
if "m_pairs" in steps:
    ax[1].hist(steps["m_pairs"], bins=range(int(steps["m_pairs"].max()) + 2), color="tab:blue")
ax[1].set(xlabel="CXR-ECG pairs per batch (m)", ylabel="batches", title="pairs per batch")
ax[2].plot(steps["step"], steps["samples_per_s"], label="samples/s")
ax[2].plot(steps["step"], steps["data_wait_s"] / steps["step_s"] * 100, label="data wait (% of step)")
ax[2].set(xlabel="step", title="throughput")
ax[2].legend(fontsize=7)
fig.tight_layout()
save_figure(fig, cfg, f"02_training_{variant}");

# %%
wait = steps["data_wait_s"].sum() / steps["step_s"].sum()
print(f"median {steps['samples_per_s'].median():.1f} samples/s; data wait {wait:.1%} of step time")

# %% [markdown]
# ## A first retrieval check against the untrained model
# Validation split, the same architecture before and after training: CXR->text and ECG->text over the
# distinct texts (a hit = the query's own text), CXR->ECG over MIMIC-PAIR (a hit = a paired ECG). R@1, R@10
# and the median rank of the first hit (lower is better). "chance" = K / gallery size; "image-blind" = the
# share of queries whose text is among the K most frequent texts, the best an encoder that ignores its
# input can do. Paraphrased reports make R@1 depend on which of several equivalent texts ranks first, so
# R@10 and the median rank are the steadier signal here. Full tables with confidence intervals: 03-06.

# %%
from medbind_lib.reports.checks import validation_check

check = validation_check(metrics["final_valid"], metrics["untrained_valid"], ("cxr_text", "ecg_text", "cxr_ecg"),
                         blind=True)
print(check.round(1).to_string())

# %% [markdown]
# ## Export embeddings of every evaluation dataset
# For the trained model (best validation loss) and, for MEDBind_BD, the untrained initialisation that is the
# tables' untrained reference row (no table reads the other variants' untrained embeddings, nor a seed
# replicate's: the seed comparisons are between trained rows).

# %%
from medbind_lib.registry import UNTRAINED_REFERENCE
from medbind_lib.medbind.embed import export_embeddings

paths = export_embeddings(cfg, variant, "best")
if variant == UNTRAINED_REFERENCE:
    export_embeddings(cfg, variant, "untrained")
print(sorted(paths))
