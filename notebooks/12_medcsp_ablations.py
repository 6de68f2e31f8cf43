# %% [markdown]
# # 12 · MEDCSP ablations (Figure 7) and case studies (Figures 8 and 9)
#
# - **Figure 7**: the loss ablations `medcsp_a` (L_A), `medcsp_a_p` (+L_P), `medcsp_a_d` (+L_D), the full model and
#   the single-source model (imaging records only), trained on the same batches (notebook 09). Zero-shot COVID F1
#   (the paper's measure) and AUROC, and text->image R@10 on the MIMIC-CXR test split, Open-I and MEDCSP's
#   hold-out (notebook 11's protocols), each with the paired patient-bootstrap difference to the full model.
#   Paper: every ablation below full; single-source 15.36 and A+P 11.56 below full in COVID F1. The figure does not
#   say whether those are F1 points or percent of the full model's F1: the drops table shows both readings beside
#   ours in both units, and `medcsp_fig7_drop_unit` (default points) names the one the figure's marks and the
#   `used` / `ours_minus_paper` columns take.
# - **Figure 8**: the two patients with the most CXR studies, their image and report embeddings under L_A only and
#   the full model. The paper's "highest number of radiological records in the MIMIC-CXR dataset" is read as
#   pre-training patients (`medcsp_case_population: pretraining`, our interpretation); held-out test patients are
#   the second row. Each image is a point, each study's report one point. Paper: L_A groups the points by modality,
#   the full model by patient. We MEASURE it: cosine silhouette and k-NN purity by patient and by modality, on those
#   two patients and on the `medcsp_case_top` with most studies (patient-bootstrap CIs; paired full - L_A
#   differences on the same points), per population.
# - **Figure 9**: three patients, two with overlapping diagnoses: their EHR records and CXR images/reports, a triplet
#   per population among its `medcsp_case_top` patients. One triplet is an anecdote, so the notebook also reports,
#   over every pair of held-out patients, the rank correlation between diagnosis-history similarity and embedding
#   similarity (L_D's premise).
#
# Writes `runs/<profile>/tables/medcsp_fig7_ablations.*`, `medcsp_fig7_drops.*`, `medcsp_fig8_grouping.*`,
# `medcsp_fig9_histories.*` and
# `figures/<profile>/12_fig{7,8,9}*.{png,pdf}`.

# %% tags=["parameters"]
profile = "smoke"
overrides = {}  # profile keys to override (the runner passes its --set values here)
fig8_k = 5             # neighbours of the k-NN purity
projection = "pca"     # pca | tsne (openTSNE) for the 2-D maps of Figures 8 and 9

# %%
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.reports import ablations as AB
from medbind_lib.reports import case_studies as cs
from medbind_lib.reports import paper
from medbind_lib.reports import radiology as R
from medbind_lib.metrics.paired import rests_on
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
reps = R.replicate_systems(cfg, systems)  # seed replicates: scored for the paired differences only
if reps:
    R.radiology_retrieval(cfg, settings, art, systems=reps, per_query=rq)
    R.radiology_zero_shot(cfg, settings, art, systems=reps, tasks=("covid",), per_query=zq)
others = [v for v in systems if v != "medcsp"]
diff = R.paired_radiology(rq, zq, [(v, "medcsp") for v in others], settings, n_seeds=cfg.seed_replicates)
print(diff.groupby("a", sort=False)["n_pretrain_seeds"].max().rename("pre-training seeds").to_string())
unit = cfg["medcsp_fig7_drop_unit"]
diff["paper"] = AB.paper_marks(diff, paper.MEDCSP_ABLATION_F1_DROP, unit)
values = pd.concat([ret[ret["metric"] == "R@10"].rename(columns={"dataset": "set"}),
                    zs[zs["metric"].isin(["f1", "auroc"])].rename(columns={"task": "set"})])
show = diff.assign(variant=diff["a"].map(R.label_of)).pivot_table(index="variant", columns=["set", "metric"],
                                                                   values="a_minus_b", sort=False).round(1)
print("variant minus full model (point estimates; CIs in the saved table):\n" + show.to_string())
paths = save_table(diff, cfg, "medcsp_fig7_ablations", title="MEDCSP Figure 7: ablations minus the full model (paired)",
                   display=diff.assign(a=diff["a"].map(R.label_of)).drop(columns="b").round(1),
                   notes=[f"paper = the published COVID-F1 drop from full (Figure 7) read as {unit} "
                          "(medcsp_fig7_drop_unit), in F1 points (a percent reading: that share of our full F1); "
                          "other cells have none"])

# %% [markdown]
# Figure 7's published drops under both readings (points: full F1 - ablation F1; percent: of the full F1, the paper's
# full COVID F1 62.36), beside ours in both units (percent of our full model's F1).

# %%
drops = AB.drop_readings(diff, paper.MEDCSP_ABLATION_F1_DROP, paper.medcsp_zero_shot("covid", "medcsp", "f1"), unit)
print(AB.drops_display(drops).to_string(index=False))
paths = save_table(drops, cfg, "medcsp_fig7_drops", title="MEDCSP Figure 7: the published COVID-F1 drops read as "
                   "points and as percent of the full model's F1, beside ours", display=AB.drops_display(drops),
                   params={**settings.as_dict(), "medcsp_fig7_drop_unit": unit},
                   notes=[f"used = the reading this run takes (medcsp_fig7_drop_unit: {unit}); 'ours - paper' "
                          "compares in the reading's own unit", "ours drop (points) [CI] = paired patient bootstrap; "
                          "ours drop (% of full) = 100 x drop / our full F1 (point estimate)"])

# %%
from medbind_lib.reports.ablations import plot_fig7

fig = plot_fig7(values, diff, systems)
paths = save_figure(fig, cfg, "12_fig7_ablations")

# %% [markdown]
# ## Figure 8: grouped by modality or by patient?
# A row per population: the patients with most CXR studies among the pre-training patients (the paper's "two
# patients with the highest number of radiological records in the MIMIC-CXR dataset" as we read it) and among the
# held-out test patients, `medcsp_case_population` first. Notebook 09 exported their images (`mimic_cxr_cases`).

# %%
from medbind_lib.medcsp import cases

variants = {"L_A only": "medcsp_a", "full": "medcsp"}
E = {k: cs.load_case_embeddings(cfg, v) for k, v in variants.items()}
C = {k: E[k][cases.CASES_FILE] for k in variants}
pops = []
for pop in cases.populations(cfg.medcsp_case_population):
    try:
        cs.case_patients(C["full"], pop, n=2)
        pops.append(pop)
    except ValueError as err:  # a tiny profile can have fewer than 2 such patients
        print(f"Figure 8, {cs.POPULATION_LABELS[pop]}: not drawn:", err)
label = cs.POPULATION_LABELS
top2 = {p: cs.case_patients(C["full"], p, n=2) for p in pops}
topn = {p: cs.case_patients(C["full"], p, n=None) for p in pops}
pts2 = {label[p]: {k: cs.cxr_points(C[k], top2[p]) for k in variants} for p in pops}
ptsn = {p: {k: cs.cxr_points(C[k], topn[p]) for k in variants} for p in pops}
scores = {r: {k: cs.grouping_scores(q["emb"], q["patient"], q["modality"], k=fig8_k) for k, q in v.items()}
          for r, v in pts2.items()}
for p in pops:
    q = pts2[label[p]]["full"]
    print(f"{label[p]}: top-2 patients {top2[p]}, {(q['modality'] == cs.IMAGE).sum()} images, "
          f"{(q['modality'] == cs.REPORT).sum()} reports\n" + pd.DataFrame(scores[label[p]]).T.round(3).to_string())
fig = cs.plot_fig8(pts2, scores, method=projection, seed=cfg.seed)
paths = save_figure(fig, cfg, "12_fig8_patients")

# %%
boot = dict(k=fig8_k, n_boot=settings.n_boot, seed=settings.seed, alpha=settings.alpha)
grp = pd.concat([cs.grouping_table(ptsn[p], **boot).assign(population=p) for p in pops], ignore_index=True)
gd = pd.concat([cs.grouping_difference(ptsn[p]["L_A only"], ptsn[p]["full"], **boot).assign(population=p)
                for p in pops], ignore_index=True)
print(f"top {', '.join(f'{len(topn[p])} {p}' for p in pops)} patients:\n" + grp.round(3).to_string(index=False))
print("\nfull minus L_A only (paired, same points):\n" + gd.round(3).to_string(index=False))
paths = save_table(grp.assign(comparison="value"), cfg, "medcsp_fig8_grouping",
                   title="MEDCSP Figure 8: grouping by patient vs by modality (scores, not percent)",
                   display={"scores": grp.round(3), "full minus L_A only": gd.round(3)},
                   params={**settings.as_dict(), "k": fig8_k, "medcsp_case_population": cfg.medcsp_case_population,
                           "medcsp_case_top": cfg.medcsp_case_top, "patients": topn},
                   notes=["population: pretraining = the train split's patients (what pre-training used; our reading "
                          "of the paper's patients), test = held-out test patients; one point per image and per "
                          "study's report"])

# %% [markdown]
# ## Figure 9: patients with overlapping diagnoses
# A triplet per population, among the patients Figure 8's export holds. Eq. 6's histories hold training admissions
# only (held-out patients have none), so the case study reads every candidate's codes over ALL of its admissions (a
# display history: it never feeds training).

# %%
data = features.load(cfg)
hist, subj = cs.patient_histories(data["icd"], data["ehr_records"])
tri, P9, sims = {}, {}, {}
for pop in cases.populations(cfg.medcsp_case_population):
    row = cs.POPULATION_LABELS[pop]
    try:
        cand = cs.case_candidates(E["full"]["ehr_records"], C["full"], cxr_split=cases.POPULATIONS[pop])
        tri[row] = cs.pick_overlap_triplet(hist, subj, candidates=cand)
    except ValueError as err:  # a tiny profile can lack three patients with both sources and codes
        print(f"Figure 9, {row}: not drawn:", err)
        continue
    three = [*tri[row]["pair"], tri[row]["third"]]
    P9[row] = {k: cs.concat_points(cs.ehr_points(E[k]["ehr_records"], three), cs.cxr_points(C[k], three))
               for k in variants}
    sims[row] = {k: cs.triplet_similarity(q["emb"], q["patient"], q["modality"], tri[row]["pair"], tri[row]["third"])
                 for k, q in P9[row].items()}
    print(row, {k: v for k, v in tri[row].items()})
    print(pd.DataFrame({k: {m: s[m] for m in ("pair", "a_third", "b_third", "margin")} for k, s in sims[row].items()})
          .T.round(3).to_string())
if tri:
    fig = cs.plot_fig9(P9, tri, sims, method=projection, seed=cfg.seed)
    paths = save_figure(fig, cfg, "12_fig9_triplet")

# %% [markdown]
# Beyond one triplet: every held-out (validation and test) patient with an EHR record and a CXR image.

# %%
cand = cs.case_candidates(E["full"]["ehr_records"], E["full"]["mimic_cxr"])
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
# ## Does each loss term do its job? (mechanism table)
# Figures 8-9 show what the paper expects the terms to do; here each term is measured directly on the test split,
# against the variant without it, paired on the same queries and averaged over the pre-training seeds both variants
# have (`medbind_lib/reports/mechanisms.py`): **L_P**, an EHR record retrieving its own patient's CXR records within
# theta days (L_P's positives) among the split's CXR records, and the reverse (full and A+P vs A); **L_A**, each
# modality embedding finding its own record among the split's records (A vs the untrained architecture); **L_D**,
# over L_D's own pairs (an EHR record and a CXR record of different patients) the rank correlation between the
# patients' diagnosis-history similarity and the records' embedding similarity (full and A+D vs A; no CI, the pairs
# share records: the seed spread only). Figure 9's correlation above is over EHR records only, which L_D never
# compares with each other: it stays level while this one moves.

# %%
from medbind_lib.reports import mechanisms as MX

mech = MX.mechanism_table(cfg, settings, data, art, n_seeds=cfg.seed_replicates)
print(mech.drop(columns=["per_seed"]).assign(a=mech["a"].map(R.label_of), b=mech["b"].map(R.label_of))
      .round(3).to_string(index=False))
paths = save_table(mech, cfg, "medcsp_mechanisms", title="MEDCSP mechanism table: each loss term against the "
                   "variant without it (paired, over pre-training seeds)",
                   notes=["R@10 rows: percent, paired patient-bootstrap CI averaged over seeds; rho rows: Spearman "
                          "rho, no CI (the pairs share records), seed SD only",
                          f"test split; L_P positives: same patient, other source, |dt| <= "
                          f"{cfg.medcsp_theta_days:g} days"])

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
    basis = "; ".join(f"{R.label_of(a)}: {rests_on(int(n), int(p))}"
                      for a, n, p in zip(d["a"], d["n_pretrain_seeds"], d["n_patients"]))
    lines.append(f"{s} {m}: below full beyond the CI: {', '.join(below) or 'none'}; above: {', '.join(above) or 'none'}; "
                 f"order of the differences: {' > '.join(order)} (resting on {basis})")
for _, r in drops[drops["used"]].iterrows():
    lines.append(f"{r['label']}: COVID-F1 drop from full {r['ours_drop_points']:.1f} points "
                 f"({r['ours_drop_percent']:.1f} % of full); paper {r['published']:.2f} read as {unit}: "
                 f"{r['paper_drop_points']:.2f} points, {r['paper_drop_percent']:.2f} % (other reading in the table)")
for p in pops:
    for by in ("patient", "modality"):
        r = gd[(gd["population"] == p) & (gd["metric"] == "silhouette") & (gd["by"] == by)].iloc[0]
        lines.append(f"Figure 8, silhouette by {by}, full - L_A on the top {len(topn[p])} {label[p]}: "
                     f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] (the paper: full groups by patient, i.e. > 0 "
                     "by patient)")
for _, r in hc.iterrows():
    lines.append(f"History vs {r['points']} similarity, {r['variant']}: rho {r['rho']:+.2f} over {r['n_pairs']} pairs")
lines += MX.describe_mechanisms(mech, R.label_of)
print("\n".join(lines))
