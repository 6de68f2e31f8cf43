"""Evaluation on exported embeddings (numpy or torch, rows L2-normalised) and label arrays.

Modules: ``retrieval`` (Table 2 Recall@K/RSUM with deduplicated texts, MEDCSP P@K/R@K, CXR->ECG recall),
``prompts`` (MedCLIP prompt sets, ECG templates, the binary negative-prompt rule), ``zeroshot``,
``fewshot`` (vectorised linear probe + scikit-learn reference), ``crossmodal`` (Table 3) and ``bootstrap``
(patient-level CIs). Every result is a plain dict / DataFrame carrying the parameters that produced it;
percentages are on a 0-100 scale.
"""
from ._common import balanced_accuracy, balanced_accuracy_batched, text_keys
from .bootstrap import bootstrap_balanced_accuracy, bootstrap_mean, percentile_ci, resample_indices, with_ci
from .crossmodal import (cardiomegaly_from_ecg, class_prototypes, cross_modal_zero_shot,
                         hypertrophy_from_cxr, prototype_predict)
from .fewshot import (KS, few_shot, fit_probe_batched, predict_batched, probe_predictions,
                      sample_support_sets, single_label, sklearn_probe_predictions)
from .prompts import (BINARY_RULES, PromptSet, binary_prompt_set, chexpert5x200_prompts, covid_prompts,
                      ecg_prompts, product_prompts, rsna_prompts, sample_prompts)
from .retrieval import (TIES, cross_modal_recall, dense_target_ranks, modality_to_text_recall,
                        recall_from_ranks, relevant_in_topk, rsum_total, target_ranks,
                        text_to_image_precision_recall)
from .zeroshot import PROMPT_POOLS, class_scores, embed_prompts, predict, zero_shot, zero_shot_multilabel
# notebooks 03-06: table/figure builders on exported embeddings (tables) and the published numbers (paper)
from . import paper, tables
from .tables import (Artifacts, EvalSettings, System, SYSTEMS, crossmodal_recall_table, eval_settings,
                     fig3_zero_few_shot, markdown_table, pair_embeddings, save_table, table2_retrieval,
                     table2_wide, table3_crossmodal, table3_wide, tsne_pairs)

__all__ = [n for n in dir() if not n.startswith("_")]
