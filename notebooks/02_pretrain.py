# %% [markdown]
# # 02 · Pre-training one system
#
# One notebook per variant (the runner executes it once for each of the profile's `variants`):
# MEDBind_BD (TMCL + EMCL), MEDBind_NM (TMCL), ECG-CLIP (TMCL on ECG-text), CXR-CLIP-style (image-text
# InfoNCE) and MedCLIP-style (soft semantic matching). All use the same loop, data and patient-level splits
# from notebook 01. A finished run is not retrained (the loop resumes from `last.pt`); with several GPUs the
# notebook launches `torchrun`. Outputs: `runs/<profile>/02/<variant>/` (checkpoints, per-step log,
# metrics.json) and the embeddings of every evaluation dataset in `runs/<profile>/embeddings/`.

# %% tags=["parameters"]
profile = "smoke"
variant = "medbind_bd"

# %%
import json
import subprocess
import sys

import pandas as pd
import torch

from medbind_lib.config import load_profile
from medbind_lib.runtime import seed_everything
from medbind_lib.train import default_out_dir, train

cfg = load_profile(profile, notebook="02")
seed_everything(cfg.seed)
out = default_out_dir(cfg, variant)
gpus = torch.cuda.device_count()
if gpus > 1:  # DDP: one process per GPU, embeddings gathered with gradient inside the loss
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                    "-m", "medbind_lib.train", "--profile", profile, "--variant", variant], check=True)
    metrics = json.loads((out / "metrics.json").read_text())
else:
    metrics = train(cfg, variant)
print(f"{variant}: {metrics['steps']} steps on {metrics['device']} x{metrics['world_size']}")

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
# Recall@1 on the validation split (CXR->text and ECG->text over distinct texts; CXR->ECG over MIMIC-PAIR),
# the same architecture before and after training. Full tables with confidence intervals: notebooks 03-06.

# %%
keys = [k for k in ("r1_cxr_text", "r1_ecg_text", "r1_cxr_ecg") if k in metrics["final_valid"]]
fv = metrics["final_valid"]
check = pd.DataFrame({"untrained": {k: metrics["untrained_valid"][k] for k in keys},
                      "trained": {k: fv[k] for k in keys},
                      "chance (1 / gallery)": {k: 100 / fv[k.replace("r1", "n_gallery")] for k in keys},
                      "most common text": {k: fv.get(k.replace("r1", "majority"), float("nan")) for k in keys}})
print(check.round(1).to_string())
print("'most common text' = R@1 of an encoder that maps everything to one point, when ties fall on it")

# %% [markdown]
# ## Export embeddings of every evaluation dataset
# For the trained model (best validation loss) and the untrained reference.

# %%
from medbind_lib.embeddings import export_embeddings

paths = export_embeddings(cfg, variant, "best")
export_embeddings(cfg, variant, "untrained")
print(sorted(paths))
