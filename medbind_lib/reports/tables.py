"""The builders of notebooks 03-06, one module per table or figure, gathered under one name.

Where each protocol lives:

- ``protocol``: ``EvalSettings`` (every evaluation choice, recorded beside every number) and
  ``eval_settings(cfg)``.
- ``systems``: the table rows (``System``: which variant embeds each modality; the untrained MEDBind_BD
  initialisation is the "is training doing anything" row) and ``Artifacts`` (notebook 02's outputs).
- ``table2``: modality-to-text retrieval (Recall@1/@10, RSUM) - notebook 03.
- ``pairs`` + ``fig2``: MIMIC-PAIR embeddings and labels; CXR -> ECG recall and t-SNE - notebook 04.
- ``fig3``: zero-shot and few-shot balanced accuracy (and zero-shot AUROC) - notebook 05.
- ``table3``: cross-modality zero-shot - notebook 06.
- ``paired``: paired bootstrap differences between two systems on the same queries (BD - NM).
- ``report``: ``save_table`` (CSV + Markdown + parameters) and the 'ours [lo, hi] (paper)' cells.

Every number comes from the metric modules of this package (``retrieval``, ``zeroshot``, ``fewshot``,
``crossmodal``, ``bootstrap``) with a patient-level bootstrap 95% CI. Builders run with one torch CPU thread
(``EvalSettings.torch_threads``): the problems are tiny, one thread is as fast on an idle CPU, far faster on a
busy one, and makes the printed numbers independent of the host's thread count.
"""
from __future__ import annotations

from .fig2 import (FIG2_SYSTEMS, crossmodal_recall_table, describe_crossmodal, plot_fig2_recall, plot_fig2_tsne,
                   tsne_pairs)
from .fig3 import FIG3_DATASETS, FIG3_SYSTEMS, describe_fig3, fig3_zero_few_shot, plot_fig3
from ..metrics.paired import paired_differences, seed_paired_differences
from .pairs import pair_embeddings, pair_labels
from ..metrics.protocol import EvalSettings, eval_settings, torch_threads
from .format import ci_str, describe_paired, markdown_table, save_table
from .artifacts import SYSTEMS, Artifacts, System, replicate_systems
from .table2 import TABLE2_DATASETS, TABLE2_SYSTEMS, describe_table2, plot_table2, table2_retrieval, table2_wide
from .table3 import TABLE3_SYSTEMS, TABLE3_TASKS, describe_table3, plot_table3, table3_crossmodal, table3_wide

__all__ = ["EvalSettings", "eval_settings", "torch_threads", "System", "SYSTEMS", "Artifacts", "save_table",
           "markdown_table", "ci_str", "describe_paired", "pair_labels", "pair_embeddings", "paired_differences",
           "seed_paired_differences", "replicate_systems", "seed_comparisons",
           "table2_retrieval", "table2_wide", "plot_table2", "describe_table2",
           "crossmodal_recall_table", "tsne_pairs", "plot_fig2_tsne", "plot_fig2_recall", "describe_crossmodal",
           "fig3_zero_few_shot", "plot_fig3", "describe_fig3",
           "table3_crossmodal", "table3_wide", "plot_table3", "describe_table3",
           "TABLE2_DATASETS", "TABLE2_SYSTEMS", "FIG2_SYSTEMS", "FIG3_DATASETS", "FIG3_SYSTEMS", "TABLE3_SYSTEMS",
           "TABLE3_TASKS"]


def seed_comparisons(cfg, settings: EvalSettings, per_query: dict, comparisons, score, name: str, title: str):
    """The paired differences ``comparisons`` averaged over pre-training seeds, saved as table ``name``: the compared
    rows' seed replicates (``replicate_systems``; no other row's) are scored into ``per_query`` by
    ``score(systems)`` (the notebook's table builder), then ``seed_paired_differences``; with one seed the table
    still says so (``n_pretrain_seeds`` 1)."""
    reps = replicate_systems(cfg, list(dict.fromkeys(x for pair in comparisons for x in pair)))
    if reps:
        score(reps)
    seeds = seed_paired_differences(per_query, comparisons, int(cfg.seed_replicates), settings.n_boot, settings.seed,
                                    settings.alpha)
    save_table(seeds, cfg, name, title=title)
    return seeds
