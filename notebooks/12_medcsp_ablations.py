# %% [markdown]
# # 12 · MEDCSP ablations (Figure 7) and case studies (Figures 8 and 9)
#
# - **Figure 7**: the loss ablations `medcsp_a` (L_A), `medcsp_a_p` (+L_P), `medcsp_a_d` (+L_D), the full model and
#   the single-source model (imaging records only), trained on the same batches (notebook 09). Zero-shot COVID F1
#   (the paper's measure) and AUROC, and text->image R@10 on the MIMIC-CXR test split, Open-I and MEDCSP's
#   hold-out (notebook 11's protocols), each with the paired patient-bootstrap difference to the full model.
#   Paper: every ablation below full; single-source 15.36 and A+P 11.56 COVID-F1 points below full.
# - **Figure 8**: the two patients with the most CXR studies in the test split, their image and report embeddings
#   under L_A only and the full model. Paper: L_A groups the points by modality, the full model by patient. We
#   MEASURE it: cosine silhouette and k-NN purity by patient and by modality, on those two patients and on the
#   ten with most studies (patient-bootstrap CIs; paired full - L_A differences on the same points).
# - **Figure 9**: three patients, two with overlapping diagnoses: their EHR records and CXR images/reports. One
#   triplet is an anecdote, so the notebook also reports, over every pair of patients, the rank correlation between
#   diagnosis-history similarity and embedding similarity (L_D's premise).
#
# Writes `runs/<profile>/tables/medcsp_fig7_ablations.*`, `medcsp_fig8_grouping.*`, `medcsp_fig9_histories.*` and
# `figures/<profile>/12_fig{7,8,9}*.{png,pdf}`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)
fig8_k = 5             # neighbours of the k-NN purity
fig8_top = 10          # patients of the larger grouping check (the figure shows the top 2)
projection = "pca"     # pca | tsne (openTSNE) for the 2-D maps of Figures 8 and 9

# %%
import numpy as np
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.reports import case_studies as cs
from medbind_lib.reports import paper
from medbind_lib.reports import radiology as R
from medbind_lib.metrics.protocol import eval_settings
from medbind_lib.reports.format import save_table
from medbind_lib.reports.artifacts import Artifacts
from medbind_lib.medcsp import features
from medbind_lib.plots import save_figure
from medbind_lib.prereq import require

cfg = load_profile(profile, notebook="12", overrides=overrides)
require(cfg, "12")  # names the notebook to run first if an earlier one has not run
settings = eval_settings(cfg)
art = Artifacts(cfg)
pd.set_option("display.width", 200)

# %% [markdown]
# ## Figure 7: ablations against the full model

# %%
systems = ("medcsp_untrained", *R.ABLATION_SYSTEMS)
rq, zq = {}, {}
ret = R.radiology_retrieval(cfg, settings, art, systems=systems, per_query=rq)
zs = R.radiology_zero_shot(cfg, settings, art, systems=systems, tasks=("covid",), per_query=zq)
others = [v for v in systems if v != "medcsp"]
diff = R.paired_radiology(rq, zq, [(v, "medcsp") for v in others], settings)
diff["paper"] = [-paper.MEDCSP_ABLATION_F1_DROP.get(a, np.nan) if (s, m) == ("covid", "f1") else np.nan
                 for a, s, m in zip(diff["a"], diff["set"], diff["metric"])]
values = pd.concat([ret[ret["metric"] == "R@10"].rename(columns={"dataset": "set"}),
                    zs[zs["metric"].isin(["f1", "auroc"])].rename(columns={"task": "set"})])
show = diff.assign(variant=diff["a"].map(R.label_of)).pivot_table(index="variant", columns=["set", "metric"],
                                                                   values="a_minus_b", sort=False).round(1)
print("variant minus full model (point estimates; CIs in the saved table):\n" + show.to_string())
paths = save_table(diff, cfg, "medcsp_fig7_ablations", title="MEDCSP Figure 7: ablations minus the full model (paired)",
                   display=diff.assign(a=diff["a"].map(R.label_of)).drop(columns="b").round(1),
                   notes=["paper = the published COVID-F1 drop from full (Figure 7); other cells have none"])

# %%
from medbind_lib.reports.ablations import plot_fig7

fig = plot_fig7(values, diff, systems)
paths = save_figure(fig, cfg, "12_fig7_ablations")

# %% [markdown]
# ## Figure 8: grouped by modality or by patient?

# %%
variants = {"L_A only": "medcsp_a", "full": "medcsp"}
E = {k: cs.load_case_embeddings(cfg, v) for k, v in variants.items()}
top2 = cs.pick_top_patients(E["full"]["mimic_cxr"], n=2, split="test")
topn = cs.pick_top_patients(E["full"]["mimic_cxr"], n=fig8_top, split="test")
pts2 = {k: cs.cxr_points(E[k]["mimic_cxr"], top2, split="test") for k in variants}
ptsn = {k: cs.cxr_points(E[k]["mimic_cxr"], topn, split="test") for k in variants}
scores = {k: cs.grouping_scores(p["emb"], p["patient"], p["modality"], k=fig8_k) for k, p in pts2.items()}
print(f"top-2 patients {top2}: {len(pts2['full']['emb'])} points")
print(pd.DataFrame(scores).T.round(3).to_string())
fig = cs.plot_fig8(pts2, scores, method=projection, seed=cfg.seed)
paths = save_figure(fig, cfg, "12_fig8_patients")

# %%
grp = cs.grouping_table(ptsn, k=fig8_k, n_boot=settings.n_boot, seed=settings.seed, alpha=settings.alpha)
gd = cs.grouping_difference(ptsn["L_A only"], ptsn["full"], k=fig8_k, n_boot=settings.n_boot, seed=settings.seed,
                            alpha=settings.alpha)
print(f"top {len(topn)} patients, {len(ptsn['full']['emb'])} points:\n" + grp.round(3).to_string(index=False))
print("\nfull minus L_A only (paired, same points):\n" + gd.round(3).to_string(index=False))
paths = save_table(grp.assign(comparison="value"), cfg, "medcsp_fig8_grouping",
                   title="MEDCSP Figure 8: grouping by patient vs by modality (scores, not percent)",
                   display={"scores": grp.round(3), "full minus L_A only": gd.round(3)},
                   params={**settings.as_dict(), "k": fig8_k, "top": fig8_top, "patients": topn})

# %% [markdown]
# ## Figure 9: patients with overlapping diagnoses
# Eq. 6's histories hold training admissions only, and the exported CXR embeddings are of validation and test
# patients, so the case study reads each candidate's codes over ALL of its admissions (a display history: it never
# feeds training).

# %%
data = features.load(cfg)
hist, subj = cs.patient_histories(data["icd"], data["ehr_records"])
cand = {}
try:
    cand = cs.case_candidates(E["full"]["ehr_records"], E["full"]["mimic_cxr"])
    tri = cs.pick_overlap_triplet(hist, subj, candidates=cand)
except ValueError as err:  # a tiny profile can lack three patients with both sources and codes
    tri = None
    print("Figure 9 not drawn:", err)
if tri is not None:
    three = [*tri["pair"], tri["third"]]
    P = {k: cs.concat_points(cs.ehr_points(E[k]["ehr_records"], three), cs.cxr_points(E[k]["mimic_cxr"], three))
         for k in variants}
    sims = {k: cs.triplet_similarity(p["emb"], p["patient"], p["modality"], tri["pair"], tri["third"])
            for k, p in P.items()}
    print({k: v for k, v in tri.items()})
    print(pd.DataFrame({k: {m: s[m] for m in ("pair", "a_third", "b_third", "margin")} for k, s in sims.items()})
          .T.round(3).to_string())
    fig = cs.plot_fig9(P, tri, sims, method=projection, seed=cfg.seed)
    paths = save_figure(fig, cfg, "12_fig9_triplet")

# %%
rows = []
for k in variants:
    pts = cs.concat_points(cs.ehr_points(E[k]["ehr_records"], list(cand)), cs.cxr_points(E[k]["mimic_cxr"], list(cand)))
    for mod in (cs.EHR, cs.IMAGE):
        try:
            rows.append({"variant": k, "points": mod, **cs.history_embedding_correlation(hist, subj, pts, mod)})
        except ValueError as err:
            print(err)
hc = pd.DataFrame(rows)
print(hc.round(3).to_string(index=False))
if len(hc):
    paths = save_table(hc, cfg, "medcsp_fig9_histories", title="MEDCSP Figure 9: history similarity vs embedding "
                       "similarity over patient pairs (Spearman rho)", params={"candidates": len(cand)})

# %% [markdown]
# ## Reading

# %%
ap = zs[(zs["system"] == R.ALWAYS_POSITIVE) & (zs["metric"] == "f1")]["value"]
lines = [f"COVID F1 of predicting every image positive: {float(ap.iloc[0]):.1f}. F1 moves with the argmax threshold (a "
         "variant that calls every image COVID gets exactly that); AUROC does not depend on it."] if len(ap) else []
for (s, m), d in diff.groupby(["set", "metric"], sort=False):
    below = [R.label_of(a) for a, hi in zip(d["a"], d["hi"]) if hi < 0]
    above = [R.label_of(a) for a, lo in zip(d["a"], d["lo"]) if lo > 0]
    order = d.sort_values("a_minus_b", ascending=False)["a"].map(R.label_of).tolist()
    lines.append(f"{s} {m}: below full beyond the CI: {', '.join(below) or 'none'}; above: {', '.join(above) or 'none'}; "
                 f"order of the differences: {' > '.join(order)}")
for by in ("patient", "modality"):
    r = gd[(gd["metric"] == "silhouette") & (gd["by"] == by)].iloc[0]
    lines.append(f"Figure 8, silhouette by {by}, full - L_A on the top {len(topn)} patients: {r['diff']:+.3f} "
                 f"[{r['lo']:+.3f}, {r['hi']:+.3f}] (the paper: full groups by patient, i.e. > 0 by patient)")
for _, r in hc.iterrows():
    lines.append(f"History vs {r['points']} similarity, {r['variant']}: rho {r['rho']:+.2f} over {r['n_pairs']} pairs")
print("\n".join(lines))
