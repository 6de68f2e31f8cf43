"""Notebook 10's table: MEDCSP's EHR tasks x rows, each row's grid and runs, the patient-bootstrap CIs, the
paired comparisons, the reading, the figure and the files.

Why here: this is the top floor (``reports``): it is the one place that brings together the task inputs
(``medcsp.task_inputs``), the row models (``medcsp.task_models``), the fine-tuning loop (``medbind_lib.finetune``),
Table 4's MEDBind_BD record embeddings (``llm.features``) and the metrics, so none of those imports another's
concern (``medcsp`` never imports ``llm``).

Training (``finetune.fit_classifier``): AdamW, BCE, shuffled mini-batches, at most ``medcsp_task_epochs`` epochs
with early stopping on the validation split (``medcsp_task_early_stop``; the best epoch's weights are kept). The
learning rate and batch size are chosen per (task, row) on VALIDATION AUROC over ``medcsp_task_lrs`` x
``medcsp_task_batch_sizes`` (validation loss where the validation AUROC is undefined or tied), then
``medcsp_task_runs`` runs with seeds ``seed``, ``seed + 1``, ... (run 0 is the grid's fit) are scored on the
TEST split: patients held out of pre-training.

Metrics (``metrics.binary.binary_metrics``): AUROC, AUPR as the paper computes it (``sklearn.metrics.auc(recall,
precision)`` over ``precision_recall_curve``) and average precision. Reported value = mean over the runs; 95% CI =
patient bootstrap of that mean (each replicate resamples the test patients once and re-scores every run); a
replicate with one class is NaN, skipped and counted. The paired rows use the same replicates for both rows.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .. import registry
from ..errors import DataError
from ..layout import RunLayout
from ..finetune import fit_classifier, grid_search, predict, select_setting, take
from ..medcsp.task_inputs import (ICU_TASKS, MEDBIND_ROW, MEDBIND_TASKS, PAPER_EHR_NUMBERS, ROW_LABELS, ROWS,
                                  TaskInputs, TaskSettings, fiddle_inputs, medbind_features, task_inputs,
                                  task_settings, window_records, yang_wu_inputs)
from ..medcsp.medhmp import task_x as medhmp_task_x
from ..medcsp.task_models import (ICU_BASELINES, YANG_WU_ROWS, fiddle, finetuned, frozen_features, head,
                                  icu_baseline, load_models, medhmp, yang_wu)
from ..metrics.binary import METRICS, runs_bootstrap
from ..metrics.paired import rests_on, seed_average
from ..replicates import parse_run, run_name

__all__ = ["TaskResults", "evaluate_tasks", "describe_results", "display_table", "plot_auroc", "save_results"]


# ----------------------------------------------------------------------------------------------------
# the whole notebook's computation
# ----------------------------------------------------------------------------------------------------
@dataclass
class TaskResults:
    """``table`` (one row per task x row: metrics in percent with CIs, per-run values and every parameter),
    ``grid`` (validation AUROC (%) / loss of every setting), ``paired`` (MEDCSP minus each other row, AUROC, paired
    CI), ``scores`` ((task, row) -> [R, n_test] test probabilities), ``boot`` ((task, row) -> runs_bootstrap),
    ``settings``, ``notes``, ``test_frames`` (task -> its test rows: ids and label, the scores' row order)."""

    table: pd.DataFrame
    grid: pd.DataFrame
    paired: pd.DataFrame
    scores: dict
    boot: dict
    settings: TaskSettings
    notes: list
    test_frames: dict = field(default_factory=dict)


def _rows_for(task: str, rows: Sequence[str]) -> list[str]:
    return [r for r in rows if (r != MEDBIND_ROW or task in MEDBIND_TASKS)
            and (r not in ICU_BASELINES or task in ICU_TASKS) and (r not in YANG_WU_ROWS or task == "readmission")]


def _medbind_embeddings(cfg, linked, log, device="cpu") -> Optional[dict]:
    """MEDBind_BD's frozen CXR / ECG embeddings of every record in any admission's window (notebook 07's cached
    ``llm.features.embed_records``), or None (row skipped, said) when notebook 02's checkpoint is missing."""
    from ..llm.features import embed_records

    out = {}
    try:
        for m in ("cxr", "ecg"):
            ids = window_records(linked["admissions"], linked[m], cfg["admission_window_hours"],
                                 cfg["admission_pre_hours"])["record_id"].unique()
            out[m] = embed_records(cfg, registry.system(MEDBIND_ROW).variant(m), m, ids, "best", device, linked)
    except DataError as e:
        log(f"{MEDBIND_ROW} row skipped: {e}")
        return None
    return out


class _Row:
    """How one row of one task builds its module and input (``make(seed) -> (module, params or None)``)."""

    def __init__(self, x, make: Callable, inputs_desc: str, extra: Optional[dict] = None):
        self.x, self.make, self.inputs_desc, self.extra = x, make, inputs_desc, dict(extra or {})


def _row_specs(task: str, ti: TaskInputs, models: Mapping, s: TaskSettings, medbind: Optional[dict],
               linked, cfg, said: list) -> dict:
    """Every row of ``task`` as a :class:`_Row` (the MEDCSP rows' features are computed here, once). The
    MEDBind_BD row is skipped, said in ``said``, where no cohort row has a CXR or ECG record (e.g. the task
    population of ``medcsp_task_subjects``, which has no imaging): it would score demographics alone."""
    specs, mods = {}, "+".join(ti.modalities)
    cache: dict = {}

    def note_feats():             # the baselines' note features, computed once per task (a text-encoder pass)
        if "note" not in ti.modalities:
            return None
        if "x" not in cache:
            cache["x"] = models["note_features"](ti)
        return cache["x"]

    for row in _rows_for(task, s.rows):
        if row in ("medcsp", "medcsp_untrained"):
            for key in [k for k in models if parse_run(k)[0] == row]:           # + its pre-training seeds
                model, info = models[key]
                if s.finetune:
                    specs[key] = _Row(ti, lambda seed, m=model: finetuned(m, ti, s, seed), mods, info)
                else:
                    feats = frozen_features(model, ti, s.pool)
                    specs[key] = _Row(feats, lambda seed, d=feats.shape[1]: head(d, s, seed), mods, info)
        elif row in ("f_lstm", "f_cnn"):
            notes = note_feats()
            x = fiddle_inputs(ti, notes)
            kind = row.split("_")[1]
            specs[row] = _Row(x, lambda seed, k=kind, x=x: fiddle(k, x, s, seed), mods + " (note: off-the-shelf "
                              "text encoder)" if notes is not None else mods)
        elif row in YANG_WU_ROWS:
            x = yang_wu_inputs(ti, note_feats())
            specs[row] = _Row(x, lambda seed, r=row, x=x: yang_wu(r, x, s, seed), mods + " (note: off-the-shelf "
                              "text encoder, frozen)")
        elif row in ICU_BASELINES:
            x = fiddle_inputs(ti, None)
            specs[row] = _Row(x, lambda seed, r=row, x=x: icu_baseline(r, x, s, seed), mods)
        elif row == "medhmp" and "medhmp" in models:
            x = medhmp_task_x(ti, note_feats())
            specs[row] = _Row(x, lambda seed: medhmp(models["medhmp"], task, s, seed),
                              mods + (" (note: off-the-shelf text encoder, frozen)" if "note" in ti.modalities else ""))
        elif row == MEDBIND_ROW and medbind is not None:
            x, seen = medbind_features(ti, linked, medbind, cfg["admission_window_hours"], cfg["admission_pre_hours"])
            if not any(int(v) for v in seen.values()):
                said.append(f"MEDBind_BD row skipped on {task}: none of its {len(ti)} cohort rows has a CXR or ECG "
                             f"record in the admission window (the task population has no imaging).")
                continue
            specs[row] = _Row(x, lambda seed, d=x.shape[1]: head(d, s, seed),
                              "MEDBind_BD CXR + ECG window means + demo (inputs differ)",
                              {f"rows_with_{m}": v for m, v in seen.items()})
    return specs


def _step_budget(n_train: int, batch_size: int, s: TaskSettings) -> int:
    """Optimizer steps of one fit at most (every epoch run; early stopping takes fewer)."""
    return s.epochs * math.ceil(n_train / batch_size)


def _run_batch(s: TaskSettings) -> int:
    """The batch size a run's step budget assumes: the grid's smallest (the most steps), since the chosen setting
    is not known when the bar's total is set."""
    return min(b for _, b in s.grid)


def _row_budget(n_train: int, s: TaskSettings) -> int:
    """Optimizer steps of one row at most: every grid fit, then the runs after the first (``_fit_row``)."""
    return (sum(_step_budget(n_train, b, s) for _, b in s.grid)
            + (s.runs - 1) * _step_budget(n_train, _run_batch(s), s))


def _fit_row(task: str, row: str, spec: _Row, ti: TaskInputs, s: TaskSettings, bar) -> dict:
    """Grid search on validation AUROC, then the runs at the chosen setting; test scores [R, n_test]. ``bar``
    counts optimizer steps: one tick per step, then the steps early stopping skipped (``_step_budget``)."""
    tr, va, te = ti.rows_of("train"), ti.rows_of("valid"), ti.rows_of("test")
    y = ti.y

    def fit(lr, bs, seed, label: str, budget_bs: int):
        bar.set_postfix_str(label, refresh=False)
        taken = [0]

        def step():
            taken[0] += 1
            bar.update(1)

        module, params = spec.make(seed)
        r = fit_classifier(module, spec.x, y, tr, va, lr=lr, batch_size=bs, epochs=s.epochs,
                           patience=s.patience, weight_decay=s.weight_decay, seed=seed,
                           early_stop=s.early_stop, params=params, on_step=step)
        bar.update(max(0, _step_budget(len(tr), budget_bs, s) - taken[0]))
        return r

    grid, fits = grid_search(lambda lr, bs, seed: fit(lr, bs, seed, f"{task} {row} grid lr={lr:g} bs={bs}", bs),
                             s.grid, s.seed)
    lr, bs = select_setting(grid)
    runs = [fits[(lr, bs)]]
    for k in range(1, s.runs):
        runs.append(fit(lr, bs, s.seed + k, f"{task} {row} run {k + 1}/{s.runs}", _run_batch(s)))
    x_test = take(spec.x, te)
    scores = np.stack([predict(r.module, x_test) for r in runs])
    for r in runs:
        r.module = None
    grid = grid.assign(task=task, row=row, valid_auroc=100 * grid["valid_auroc"],        # percent, as the tables
                       chosen=(grid["lr"] == lr) & (grid["batch_size"] == bs))
    return {"grid": grid,
            "lr": lr, "batch_size": bs, "runs": runs, "scores": scores}


def _table_row(task, row, spec, fitted, boot, ti, s: TaskSettings) -> dict:
    te = ti.rows_of("test")
    r = {"task": task, "row": row, "label": ROW_LABELS[row], "n_test": len(te),
         "positives_test": int(ti.y[te].sum()), "patients_test": int(ti.frame["subject_id"].iloc[te].nunique())}
    for m in METRICS:
        b = boot[m]
        r.update({m: 100 * b["value"], f"{m}_lo": 100 * b["lo"], f"{m}_hi": 100 * b["hi"],
                  f"{m}_runs": " ".join(f"{100 * v:.1f}" for v in b["per_run"])})
    r.update({"paper_auroc": PAPER_EHR_NUMBERS.get((task, row, "auroc"), float("nan")),
              "paper_aupr": PAPER_EHR_NUMBERS.get((task, row, "aupr"), float("nan")), "cohort": s.cohort,
              "boot_valid": boot["n_valid"], "boot_skipped": boot["n_skipped"], "n_boot": boot["n_boot"],
              "lr": fitted["lr"], "batch_size": fitted["batch_size"],
              "valid_auroc": 100 * fitted["runs"][0].valid_auroc, "epochs_max": s.epochs, "patience": s.patience,
              "early_stop": s.early_stop, "best_epochs": " ".join(str(x.best_epoch) for x in fitted["runs"]),
              "runs": s.runs, "seeds": " ".join(str(x.seed) for x in fitted["runs"]),
              "finetune": s.finetune if row.startswith("medcsp") else False,
              "variant": s.variant if row == "medcsp" else ("" if row != "medcsp_untrained" else f"{s.variant} (init)"),
              "pool": s.pool if row.startswith("medcsp") else "", "inputs": spec.inputs_desc,
              "fiddle_input": s.fiddle_input if row in ("f_lstm", "f_cnn") else "",
              "head_hidden": s.head_hidden, "weight_decay": s.weight_decay,
              "fit_seconds": round(sum(x.seconds for x in fitted["runs"]) + fitted["grid"]["seconds"].sum()
                                   - fitted["runs"][0].seconds, 1),
              "extra": json.dumps(spec.extra, default=str)})
    return r


def _paired_rows(task: str, boot: Mapping, s: TaskSettings, n_patients: int) -> list[dict]:
    """MEDCSP minus each other row, averaged over MEDCSP's pre-training seeds (``medcsp@seed<k>`` rows, when the
    profile has them): against its untrained reference seed by seed, against a row trained per task (F-LSTM,
    F-CNN) or MEDBind_BD each seed against that one row. ``n_pretrain_seeds`` says how many seeds carry it."""
    if "medcsp" not in boot:
        return []
    seeds = [k for k in boot if parse_run(k)[0] == "medcsp"]
    out = []
    for other in [r for r in ROWS if r != "medcsp" and r in boot]:
        per = []
        for a in seeds:
            b = run_name(other, parse_run(a)[1])         # the same seed's untrained reference ...
            b = b if b in boot else other                # ... or the one row trained per task / MEDBind_BD
            ra = np.asarray(boot[a]["auroc"]["reps"]) - np.asarray(boot[b]["auroc"]["reps"])
            per.append((100 * (boot[a]["auroc"]["value"] - boot[b]["auroc"]["value"]), 100 * ra,
                        100 * boot[a]["auroc"]["value"], 100 * boot[b]["auroc"]["value"]))
        avg = seed_average(per, s.alpha)
        valid = int(np.isfinite(np.mean([p[1] for p in per], axis=0)).sum())
        out.append({"task": task, "a": "medcsp", "b": other, "metric": "AUROC", "a_value": avg["a"],
                    "b_value": avg["b"], "a_minus_b": avg["a_minus_b"], "lo": avg["lo"], "hi": avg["hi"],
                    "boot_valid": valid, "boot_skipped": s.n_boot - valid,
                    "ci_excludes_0": bool(np.isfinite(avg["lo"]) and (avg["lo"] > 0 or avg["hi"] < 0)),
                    "n_patients": n_patients, "n_pretrain_seeds": avg["n_pretrain_seeds"], "seed_sd": avg["seed_sd"],
                    "per_seed": avg["per_seed"], "same_inputs": other != MEDBIND_ROW})
    return out


def evaluate_tasks(cfg, data: Mapping, settings: Optional[TaskSettings] = None, *, linked: Optional[Mapping] = None,
                   inputs: Optional[Mapping[str, TaskInputs]] = None, progress_enabled: bool = True,
                   log: Callable = print, device=None) -> TaskResults:
    """Notebook 10's computation: every task x row (module docstring). The MEDCSP models (embeddings, the
    fine-tuned rows) run on ``device`` (default: CUDA when available); heads and F-models on the CPU with one torch
    thread (tiny models: faster on a shared 2-core CPU, and independent of the core count)."""
    from ..cohort import load_linked
    from ..metrics.protocol import torch_threads
    from ..runtime import progress

    s = settings or task_settings(cfg)
    inputs = inputs or {t: task_inputs(data, t, s.max_stays) for t in s.tasks}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = load_models(cfg, data, s, log, device)
    needs_mb = MEDBIND_ROW in s.rows and any(t in MEDBIND_TASKS for t in s.tasks)
    linked = linked if linked is not None or not needs_mb else load_linked(cfg)
    medbind = _medbind_embeddings(cfg, linked, log, device) if needs_mb else None
    notes = []
    left = [r for r in ROWS if r not in s.rows]
    if left:
        notes.append(f"Not run in this profile (medcsp_task_rows): {', '.join(ROW_LABELS[r] for r in left)}; the "
                     f"gpu and paper profiles run every row; add them here with --set 'medcsp_task_rows=[...]'.")
    if needs_mb and medbind is None:
        notes.append(f"MEDBind_BD row skipped: notebook 02's {MEDBIND_ROW} checkpoint is missing.")
    specs = {t: _row_specs(t, inputs[t], models, s, medbind, linked, cfg, notes) for t in s.tasks}
    # the bar counts optimizer steps (at most: every epoch of every fit), not fits: a fine-tuned encoder's fit takes
    # minutes on a CPU where a head's takes a second, and a bar over fits sat on the heads' ETA meanwhile
    total = sum(len(specs[t]) * _row_budget(len(inputs[t].rows_of("train")), s) for t in s.tasks)
    bar = progress(total=total, desc="fit steps (at most)", unit="step", enabled=progress_enabled)

    rows, grids, paired, scores, boots = [], [], [], {}, {}
    with torch_threads(1):
        for t in s.tasks:
            ti, te = inputs[t], inputs[t].rows_of("test")
            tb = {}
            for row, spec in specs[t].items():
                fitted = _fit_row(t, row, spec, ti, s, bar)
                tb[row] = runs_bootstrap(ti.y[te], fitted["scores"], ti.frame["subject_id"].to_numpy()[te],
                                         s.n_boot, s.seed, s.alpha)
                if parse_run(row)[1] == 0:              # a seed replicate only feeds the paired table
                    rows.append(_table_row(t, row, spec, fitted, tb[row], ti, s))
                    grids.append(fitted["grid"])
                scores[(t, row)], boots[(t, row)] = fitted["scores"], tb[row]
            paired += _paired_rows(t, tb, s, int(ti.frame["subject_id"].iloc[te].nunique()))
    bar.close()
    table = pd.DataFrame(rows)
    table.attrs["params"] = {**s.as_dict(), "n_boot": s.n_boot, "alpha": s.alpha,
                             "ci": "patient-level cluster bootstrap of the mean over runs", "cohort": s.cohort,
                             "device": str(device)}
    paired_df = pd.DataFrame(paired)
    paired_df.attrs["params"] = {**table.attrs["params"], "ci": "paired patient bootstrap (same replicates)"}
    grid = pd.concat(grids, ignore_index=True) if grids else pd.DataFrame()
    tests = {t: inputs[t].frame.iloc[inputs[t].rows_of("test")].reset_index(drop=True) for t in s.tasks}
    return TaskResults(table, grid, paired_df, scores, boots, s, notes, tests)


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------
def describe_results(res: TaskResults) -> list[str]:
    """An automatic, cautious reading: per task, which rows beat MEDCSP (or lose to it) beyond the paired CI,
    undefined metrics, and how wide the CIs are."""
    out, t = [], res.table
    for task in dict.fromkeys(t["task"]):
        d = t[t["task"] == task]
        n, pos = int(d["n_test"].iloc[0]), int(d["positives_test"].iloc[0])
        if d["auroc"].isna().all():
            out.append(f"{task}: AUROC undefined on the test split ({n} rows, {pos} positives: one class) - no "
                       "conclusion.")
            continue
        width = (d["auroc_hi"] - d["auroc_lo"]).median()
        best = d.loc[d["auroc"].idxmax()]
        line = (f"{task} ({n} test rows, {pos} positives): highest mean AUROC {best['auroc']:.1f} "
                f"({best['row']}); median CI width {width:.1f} points")
        if width > 20 or pos < 20:
            line += " - the CIs are wide (few test positives), so most differences are within the noise"
        out.append(line + ".")
        p = res.paired[res.paired["task"] == task] if len(res.paired) else res.paired
        for _, r in p.iterrows():
            verdict = ("beats" if r["lo"] > 0 else "is below") if r["ci_excludes_0"] else "is not distinguishable from"
            spread = f", seed SD {r['seed_sd']:.1f}" if r["n_pretrain_seeds"] > 1 else ""
            out.append(f"  MEDCSP {verdict} {r['b']}: AUROC difference {r['a_minus_b']:+.1f} "
                       f"[{r['lo']:.1f}, {r['hi']:.1f}]{spread} (paired bootstrap; "
                       f"{rests_on(int(r['n_pretrain_seeds']), int(r['n_patients']))})"
                       + ("" if r["same_inputs"] else "; different inputs (MEDBind_BD CXR/ECG), not a same-input "
                                                     "comparison") + ".")
    return out


# ----------------------------------------------------------------------------------------------------
# table, figure, files
# ----------------------------------------------------------------------------------------------------
def display_table(res: TaskResults) -> pd.DataFrame:
    """The table as printed: 'mean of runs [95% CI]' per metric, the paper's value where MEDCSP.md gives one
    (it gives none for the EHR tasks: said in the cell), and the cohort line beside every number."""
    from .format import ci_str

    t = res.table
    out = pd.DataFrame({"Task": t["task"], "Row": t["label"],
                        **{name: [ci_str(r[m], r[f"{m}_lo"], r[f"{m}_hi"]) for _, r in t.iterrows()]
                           for m, name in (("auroc", "AUROC"), ("aupr", "AUPR"), ("ap", "AP"))},
                        "AUROC per run": t["auroc_runs"],
                        "paper AUROC / AUPR": ["not given in MEDCSP.md" if np.isnan(r["paper_auroc"]) else
                                               f"{r['paper_auroc']:.1f} / {r['paper_aupr']:.1f}"
                                               for _, r in t.iterrows()],
                        "test rows (pos.)": [f"{a} ({b})" for a, b in zip(t["n_test"], t["positives_test"])],
                        "evaluated on": t["cohort"]})
    return out.reset_index(drop=True)


def plot_auroc(res: TaskResults):
    """One panel per task: each row's mean AUROC with its 95% CI and the per-run values (dots); chance at 50."""
    import matplotlib.pyplot as plt

    t = res.table
    tasks = list(dict.fromkeys(t["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), sharex=True, squeeze=False)
    palette = ("tab:red", "tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:brown", "tab:purple", "tab:pink",
               "tab:olive", "tab:cyan")
    colors = dict(zip(ROWS, palette * (1 + len(ROWS) // len(palette))))
    for ax, task in zip(axes[0], tasks):
        d = t[t["task"] == task].reset_index(drop=True)
        for i, r in d.iterrows():
            yy = len(d) - 1 - i
            if np.isfinite(r["auroc"]):
                ax.errorbar(r["auroc"], yy, xerr=[[r["auroc"] - r["auroc_lo"]], [r["auroc_hi"] - r["auroc"]]],
                            fmt="o", color=colors[r["row"]], capsize=3)
                runs = [float(v) for v in str(r["auroc_runs"]).split()]
                ax.plot(runs, [yy] * len(runs), "|", color=colors[r["row"]], alpha=0.6)
            else:
                ax.text(50, yy, "undefined (one class)", ha="center", va="center", fontsize=7, color="0.4")
        ax.axvline(50, ls="--", color="k", lw=0.8)
        ax.set_yticks(range(len(d)), list(d["row"])[::-1], fontsize=8)
        n, pos = int(d["n_test"].iloc[0]), int(d["positives_test"].iloc[0])
        ax.set(xlim=(0, 100), xlabel="test AUROC (%)", title=f"{task} ({n} test, {pos} pos.)")
    fig.suptitle("MEDCSP EHR tasks: mean of runs, 95% patient-bootstrap CI (ticks: runs); held-out MIMIC-IV "
                 "(synthetic) test patients", fontsize=9)
    fig.tight_layout()
    return fig


def save_results(cfg, res: TaskResults) -> dict:
    """Tables (CSV + Markdown + params, ``runs/<profile>/tables/``) and the raw fits (``runs/<profile>/10/``:
    the grid and every run's test probabilities), atomically where the suite's helpers allow."""
    from .format import save_table
    from ..io import write_csv_atomic, write_parquet_atomic

    notes = ["Cells: mean over runs [95% patient-bootstrap CI of that mean]; per run in 'AUROC per run'.",
             "AUPR = sklearn auc(recall, precision) as the paper; AP = average precision.",
             "MEDCSP.md gives no published EHR-task numbers, so there is no paper column to compare with.",
             f"Every number: {res.settings.cohort}.",
             f"F-LSTM / F-CNN input: {res.settings.fiddle_input} (medcsp_fiddle_input; concat = demographics and the "
             "other static inputs repeated at every time bin beside the temporal values and missingness, the paper's "
             "and FIDDLE's).",
             "MEDBind_BD row: other inputs (MEDBind_BD's CXR and ECG embeddings + demographics), not a same-input "
             "baseline."] + list(res.notes)
    out = RunLayout(cfg).ehr_tasks
    paths = {"table": save_table(res.table, cfg, "medcsp_ehr_tasks", title="MEDCSP EHR tasks (notebook 10)",
                                 display=display_table(res), notes=notes),
             "paired": save_table(res.paired, cfg, "medcsp_ehr_tasks_paired",
                                  title="MEDCSP minus the other rows: test AUROC, paired patient bootstrap"),
             "grid": save_table(res.grid, cfg, "medcsp_ehr_tasks_grid", params=res.settings.as_dict(),
                                title="Validation grid (seed 0 fits)")}
    scores = [res.test_frames[t].assign(task=t, row=r, run=k, score=s[k]) for (t, r), s in res.scores.items()
              for k in range(s.shape[0])]
    if scores:
        paths["scores"] = out / "test_scores.parquet"
        write_parquet_atomic(pd.concat(scores, ignore_index=True), paths["scores"])
    paths["grid_csv"] = out / "grid.csv"
    out.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(res.grid, paths["grid_csv"])
    return paths
