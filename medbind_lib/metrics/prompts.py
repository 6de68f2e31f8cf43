"""Zero-shot prompt sets (MedCLIP / CXR-CLIP style) and the binary-task negative-prompt rule.

Sources. The CheXpert, COVID and RSNA word lists are MedCLIP's ``constants.CHEXPERT_CLASS_PROMPTS``,
``COVID_CLASS_PROMPTS`` and ``RSNA_CLASS_PROMPTS`` as they appear in public copies of MedCLIP's
``medclip/constants.py`` (checked with the code-search tool; typos such as "uppper", "presistent",
"apperance" are MedCLIP's and kept so prompts match the original). The prompts are the product of the
lists in the dict's key order (``generate_chexpert_class_prompts``; for Pleural Effusion MedCLIP's key
order is severity, location, subtype), with whitespace collapsed and exact duplicates removed (MedCLIP's
Pleural Effusion subtype list repeats an entry).

MEDBind Table A.1 gives each zero-shot dataset its own prompts; ``rule="table_a1"`` (the default) follows it:

- COVID: COVID = 10 of MedCLIP's generated COVID prompts (seeded sample; the paper says 20 were generated -
  MedCLIP's COVID lists generate 12, we sample from those and record ``n_generated``); Normal = normal-finding
  sentences (``COVID_NORMAL_PROMPTS``: the two the paper quotes, plus our own wording of the same findings).
- RSNA: one pair, "Findings suggesting pneumonia." vs "No evidence of pneumonia.".
- PTB-XL / ICBEB: ``"This ECG shows {label name}."`` with Table A.1's label names where the paper gives them
  ("Normal sinus rhythm", "STT Changes"; ``ECG_LABEL_NAMES``), the classes' standard names otherwise.

The older single-rule options stay, for the prompt-sensitivity ablation (binary tasks only):

- ``positive_only``: predict positive iff the score against the positive prompts is > 0 (MedCLIP's
  single-logit binary mode: sigmoid(logit) > 0.5).
- ``pos_vs_no``: negative prompts are the positive prompts prefixed with "No " ("No X" vs "X"); argmax.
- ``fixed``: one prompt per side, ``"No evidence of {disease}."`` vs ``"Findings suggesting {disease}."``.

Every ``PromptSet`` carries its name, rule and sampling parameters; ``.meta()`` is logged with each result.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from ..constants import CHEXPERT_5X200_CLASSES, ECG_SUPERCLASSES, ICBEB_CLASSES

BINARY_RULES = ("table_a1", "positive_only", "pos_vs_no", "fixed")

CHEXPERT_CLASS_PROMPTS = {
    "Atelectasis": {
        "severity": ["", "mild", "minimal"],
        "subtype": ["subsegmental atelectasis", "linear atelectasis", "trace atelectasis",
                    "bibasilar atelectasis", "retrocardiac atelectasis", "bandlike atelectasis",
                    "residual atelectasis"],
        "location": ["at the mid lung zone", "at the upper lung zone", "at the right lung zone",
                     "at the left lung zone", "at the lung bases", "at the right lung base",
                     "at the left lung base", "at the bilateral lung bases", "at the left lower lobe",
                     "at the right lower lobe"],
    },
    "Cardiomegaly": {
        "severity": [""],
        "subtype": ["cardiac silhouette size is upper limits of normal", "cardiomegaly which is unchanged",
                    "mildly prominent cardiac silhouette",
                    "portable view of the chest demonstrates stable cardiomegaly",
                    "portable view of the chest demonstrates mild cardiomegaly",
                    "persistent severe cardiomegaly", "heart size is borderline enlarged",
                    "cardiomegaly unchanged", "heart size is at the upper limits of normal",
                    "redemonstration of cardiomegaly",
                    "ap erect chest radiograph demonstrates the heart size is the upper limits of normal",
                    "cardiac silhouette size is mildly enlarged",
                    "mildly enlarged cardiac silhouette, likely left ventricular enlargement. other chambers "
                    "are less prominent",
                    "heart size remains at mildly enlarged",
                    "persistent cardiomegaly with prominent upper lobe vessels"],
        "location": [""],
    },
    "Consolidation": {
        "severity": ["", "increased", "improved", "apperance of"],
        "subtype": ["bilateral consolidation", "reticular consolidation", "retrocardiac consolidation",
                    "patchy consolidation", "airspace consolidation", "partial consolidation"],
        "location": ["at the lower lung zone", "at the upper lung zone", "at the left lower lobe",
                     "at the right lower lobe", "at the left upper lobe", "at the right uppper lobe",
                     "at the right lung base", "at the left lung base"],
    },
    "Edema": {
        "severity": ["", "mild", "improvement in", "presistent", "moderate", "decreased"],
        "subtype": ["pulmonary edema", "trace interstitial edema", "pulmonary interstitial edema"],
        "location": [""],
    },
    "Pleural Effusion": {
        "severity": ["", "small", "stable", "large", "decreased", "increased"],
        "location": ["left", "right", "tiny"],
        "subtype": ["bilateral pleural effusion", "subpulmonic pleural effusion", "bilateral pleural effusion"],
    },
}

COVID_CLASS_PROMPTS = {
    "COVID": {
        "adjective": ["patchy", "confluent"],
        "description": ["ground glass"],
        "subtype": ["opacity", "consolidation"],
        "location": ["in peripheral", "in mid", "in lower"],
    },
}

RSNA_CLASS_PROMPTS = {
    "Pneumonia": {
        "adjective": ["round", "early", "focal", "multifocal", "small", ""],
        "subtype": ["bacterial", "viral", "mycoplasma", ""],
        "location": ["at the mid lung zone", "at the upper lung zone", "at the right lung zone",
                     "at the left lung zone", "at the lung bases", "at the right lung base",
                     "at the left lung base", "at the bilateral lung bases", "at the left lower lobe",
                     "at the right lower lobe", "at the left middle lobe", "at the right middle lobe", ""],
    },
}

# COVID's Normal class (Table A.1): normal-finding sentences. The first two are the paper's; the rest are our
# wording of the same normal findings, so that both classes have 10 prompts.
COVID_NORMAL_PROMPTS = [
    "Heart size is normal and the lungs are clear.", "The heart is normal in size and contour.",
    "The lungs are clear without focal consolidation.", "No acute cardiopulmonary process.",
    "No pleural effusion or pneumothorax.", "The cardiomediastinal silhouette is within normal limits.",
    "Lungs are clear bilaterally.", "Normal chest radiograph.",
    "No focal consolidation, pleural effusion or pneumothorax.", "Heart size and mediastinal contours are normal.",
]

# Label names for "This ECG shows {label}.": Table A.1's where the paper gives them (NORM "Normal sinus rhythm",
# STTC "STT Changes"), otherwise the PTB-XL superclass and CPSC2018 class names.
ECG_LABEL_NAMES = {
    "NORM": "Normal sinus rhythm", "MI": "Myocardial Infarction", "STTC": "STT Changes",
    "CD": "Conduction Disturbance", "HYP": "Hypertrophy",
    "AFIB": "Atrial fibrillation", "1AVB": "First-degree atrioventricular block",
    "CLBBB": "Left bundle branch block", "CRBBB": "Right bundle branch block",
    "PAC": "Premature atrial contraction", "VPC": "Premature ventricular contraction",
    "STD_": "ST-segment depression", "STE_": "ST-segment elevation",
}
ECG_TEMPLATE = "This ECG shows {}."


@dataclass
class PromptSet:
    """Prompts per class. For a binary task with ``binary_rule='positive_only'`` only the positive class
    has prompts (``classes[1]``); every other set has prompts for every class in ``classes`` order."""
    name: str
    classes: tuple
    prompts: dict
    binary_rule: str | None = None
    n_sample: int | None = None
    seed: int | None = None
    n_generated: dict = field(default_factory=dict)
    source: str = ""

    def meta(self) -> dict:
        """What to log beside every number computed with this set."""
        return {"prompt_set": self.name, "binary_rule": self.binary_rule, "prompt_n_sample": self.n_sample,
                "prompt_seed": self.seed, "n_prompts": {c: len(p) for c, p in self.prompts.items()}}


def _clean(s: str) -> str:
    return " ".join(s.split())


def product_prompts(spec: dict) -> list[str]:
    """MedCLIP's generator: the product of the word lists in the dict's key order, joined by spaces;
    whitespace collapsed, duplicates dropped (first occurrence kept)."""
    out = [_clean(" ".join(words)) for words in itertools.product(*spec.values())]
    return list(dict.fromkeys(p for p in out if p))


def sample_prompts(prompts: list[str], n: int | None, seed: int) -> list[str]:
    """Seeded sample of ``n`` prompts (all of them when ``n`` is None or >= len); order of the sample."""
    if n is None or n >= len(prompts):
        return list(prompts)
    return random.Random(seed).sample(list(prompts), n)


def chexpert5x200_prompts(n: int | None = None, seed: int = 0) -> PromptSet:
    """The five CheXpert 5x200 classes with MedCLIP's generated prompts (all, or ``n`` sampled per class)."""
    gen = {c: product_prompts(CHEXPERT_CLASS_PROMPTS[c]) for c in CHEXPERT_5X200_CLASSES}
    return PromptSet("medclip_chexpert5x200", tuple(CHEXPERT_5X200_CLASSES),
                     {c: sample_prompts(p, n, seed + i) for i, (c, p) in enumerate(gen.items())},
                     n_sample=n, seed=seed, n_generated={c: len(p) for c, p in gen.items()},
                     source="MedCLIP constants.CHEXPERT_CLASS_PROMPTS")


def chexpert5x200_instance_texts(labels, seed: int = 0) -> list[str]:
    """One text per C5x200 image for instance-level retrieval where the data carries no report: a prompt drawn
    (seeded, independently per image) from MedCLIP's generated prompts of the image's class. Images that draw
    the same prompt share one gallery item, as identical reports do."""
    gen = {c: product_prompts(CHEXPERT_CLASS_PROMPTS[c]) for c in CHEXPERT_5X200_CLASSES}
    labels = [str(v) for v in labels]
    bad = sorted(set(labels) - set(gen))
    if bad:
        raise ValueError(f"CheXpert 5x200 labels must be among {list(gen)}, got {bad}")
    rng = random.Random(seed)
    return [rng.choice(gen[c]) for c in labels]


def binary_prompt_set(name: str, negative_class: str, positive_class: str, positive_prompts: list[str],
                      binary_rule: str, disease: str, negative_prompts: list[str] | None = None,
                      **kw) -> PromptSet:
    """Apply the negative-prompt rule to a positive-only prompt list (see module docstring);
    ``table_a1`` uses the dataset's own ``negative_prompts`` (or the ``fixed`` pair where it has none)."""
    if binary_rule not in BINARY_RULES:
        raise ValueError(f"binary_rule must be one of {BINARY_RULES}, got {binary_rule!r}")
    if binary_rule == "table_a1" and negative_prompts is not None:
        prompts = {negative_class: list(negative_prompts), positive_class: list(positive_prompts)}
    elif binary_rule == "positive_only":
        prompts = {positive_class: list(positive_prompts)}
    elif binary_rule == "pos_vs_no":
        prompts = {negative_class: [f"No {p}" for p in positive_prompts], positive_class: list(positive_prompts)}
    else:
        prompts = {negative_class: [f"No evidence of {disease}."],
                   positive_class: [f"Findings suggesting {disease}."]}
    return PromptSet(f"{name}/{binary_rule}", (negative_class, positive_class), prompts,
                     binary_rule=binary_rule, **kw)


def covid_prompts(binary_rule: str = "table_a1", n: int | None = 10, seed: int = 0) -> PromptSet:
    """COVID vs Normal (Table A.1: ``n`` = 10 sampled COVID prompts, seeded, vs the normal-finding sentences).
    Classes ``("Normal", "COVID")``."""
    gen = product_prompts(COVID_CLASS_PROMPTS["COVID"])
    return binary_prompt_set("medclip_covid", "Normal", "COVID", sample_prompts(gen, n, seed), binary_rule,
                             "COVID-19 pneumonia", negative_prompts=COVID_NORMAL_PROMPTS, n_sample=n, seed=seed,
                             n_generated={"COVID": len(gen)},
                             source="MedCLIP constants.COVID_CLASS_PROMPTS; Normal: Table A.1 normal findings")


def rsna_prompts(binary_rule: str = "table_a1", n: int | None = None, seed: int = 0) -> PromptSet:
    """RSNA Normal vs Pneumonia (Table A.1: "No evidence of pneumonia." vs "Findings suggesting pneumonia.";
    the other rules sample ``n`` of MedCLIP's pneumonia prompts). Classes ``("Normal", "Pneumonia")``."""
    gen = product_prompts(RSNA_CLASS_PROMPTS["Pneumonia"])
    return binary_prompt_set("medclip_rsna", "Normal", "Pneumonia", sample_prompts(gen, n, seed), binary_rule,
                             "pneumonia", n_sample=None if binary_rule in ("table_a1", "fixed") else n, seed=seed,
                             n_generated={"Pneumonia": len(gen)},
                             source="Table A.1 pair" if binary_rule in ("table_a1", "fixed") else
                             "MedCLIP constants.RSNA_CLASS_PROMPTS")


def ecg_prompts(dataset: str = "ptbxl", template: str = ECG_TEMPLATE) -> PromptSet:
    """One prompt per class: ``"This ECG shows {readable label}."`` for PTB-XL superclasses or ICBEB."""
    classes = {"ptbxl": ECG_SUPERCLASSES, "icbeb": ICBEB_CLASSES}.get(dataset)
    if classes is None:
        raise ValueError(f"dataset must be ptbxl or icbeb, got {dataset!r}")
    return PromptSet(f"ecg_template_{dataset}", tuple(classes),
                     {c: [template.format(ECG_LABEL_NAMES[c])] for c in classes}, binary_rule="table_a1",
                     source="Table A.1 template and label names")


# Enlarged cardiomediastinum (MEDCSP Table 6): MedCLIP has no word lists for it and the paper prints no prompts;
# ours name the finding the way radiology reports do (positive) and its normal counterpart (negative).
EC_PROMPTS = ["The cardiomediastinal silhouette is enlarged.", "Enlarged cardiomediastinum.",
              "Widened mediastinum with an enlarged cardiac silhouette.", "The heart and mediastinum are enlarged."]
EC_NORMAL_PROMPTS = ["The cardiomediastinal silhouette is within normal limits.",
                     "Heart size and mediastinal contours are normal.", "The heart is normal in size and contour.",
                     "Normal cardiomediastinal silhouette."]


def ec_prompts(binary_rule: str = "table_a1") -> PromptSet:
    """Normal vs Enlarged Cardiomediastinum; ``table_a1`` = our negative sentences (``EC_NORMAL_PROMPTS``)."""
    return binary_prompt_set("enlarged_cardiomediastinum", "Normal", "Enlarged Cardiomediastinum", EC_PROMPTS,
                             binary_rule, "enlarged cardiomediastinum", negative_prompts=EC_NORMAL_PROMPTS,
                             source="suite's own report-style sentences (no published prompts)")
