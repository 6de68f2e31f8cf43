"""Pure metrics on embeddings (numpy or torch, rows L2-normalised) and label arrays: nothing here reads a run.

Modules: ``retrieval`` (Table 2 Recall@K/RSUM with deduplicated texts, MEDCSP P@K/R@K, CXR->ECG recall),
``prompts`` (MedCLIP prompt sets, ECG templates, the binary negative-prompt rule), ``zeroshot``,
``fewshot`` (vectorised linear probe + scikit-learn reference), ``crossmodal`` (Table 3), ``binary``
(AUROC / AUPR / AP with vectorised replicates), ``paired`` (paired differences between two systems on the
same queries), ``bootstrap`` (patient-level CIs) and ``protocol`` (``EvalSettings``: every evaluation choice,
recorded beside every number). Every result is a plain dict / DataFrame carrying the parameters that produced
it; percentages are on a 0-100 scale. The table and figure builders that read run outputs live one floor up,
in ``medbind_lib.reports``.
"""
from .common import balanced_accuracy, balanced_accuracy_batched, text_keys
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

__all__ = [n for n in dir() if not n.startswith("_")]
