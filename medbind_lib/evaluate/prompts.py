"""Zero-shot prompt sets (MedCLIP / CXR-CLIP style) and the binary-task negative-prompt rule.

Sources. The CheXpert, COVID and RSNA word lists are MedCLIP's ``constants.CHEXPERT_CLASS_PROMPTS``,
``COVID_CLASS_PROMPTS`` and ``RSNA_CLASS_PROMPTS`` as they appear in public copies of MedCLIP's
``medclip/constants.py`` (checked with the code-search tool; typos such as "uppper", "presistent",
"apperance" are MedCLIP's and kept so prompts match the original). The prompts are the product of the
lists in the dict's key order (``generate_chexpert_class_prompts``; for Pleural Effusion MedCLIP's key
order is severity, location, subtype), with whitespace collapsed and exact duplicates removed (MedCLIP's
Pleural Effusion subtype list repeats an entry).

MEDBind Table A.1 (as summarised in METHOD.md): COVID uses 10 of the generated prompts per class
(seeded sample; the paper says 20 were generated - MedCLIP's COVID lists generate 12, we sample from those
and record ``n_generated``); PTB-XL / ICBEB use ``"This ECG shows {label}."`` with readable label names
(our wording of the names; the paper's exact names are not available).

Binary tasks (COVID, RSNA) have prompts for the positive class only, so the negative side is a rule,
``binary_rule``:

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

BINARY_RULES = ("positive_only", "pos_vs_no", "fixed")

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

# Readable names for "This ECG shows {label}." (our wording).
ECG_LABEL_NAMES = {
    "NORM": "a normal ECG", "MI": "myocardial infarction", "STTC": "ST/T changes",
    "CD": "a conduction disturbance", "HYP": "hypertrophy",
    "AFIB": "atrial fibrillation", "1AVB": "first degree AV block", "CLBBB": "left bundle branch block",
    "CRBBB": "right bundle branch block", "PAC": "premature atrial contractions",
    "VPC": "premature ventricular contractions", "STD_": "ST depression", "STE_": "ST elevation",
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


def binary_prompt_set(name: str, negative_class: str, positive_class: str, positive_prompts: list[str],
                      binary_rule: str, disease: str, **kw) -> PromptSet:
    """Apply the negative-prompt rule to a positive-only prompt list (see module docstring)."""
    if binary_rule not in BINARY_RULES:
        raise ValueError(f"binary_rule must be one of {BINARY_RULES}, got {binary_rule!r}")
    if binary_rule == "positive_only":
        prompts = {positive_class: list(positive_prompts)}
    elif binary_rule == "pos_vs_no":
        prompts = {negative_class: [f"No {p}" for p in positive_prompts], positive_class: list(positive_prompts)}
    else:
        prompts = {negative_class: [f"No evidence of {disease}."],
                   positive_class: [f"Findings suggesting {disease}."]}
    return PromptSet(f"{name}/{binary_rule}", (negative_class, positive_class), prompts,
                     binary_rule=binary_rule, **kw)


def covid_prompts(binary_rule: str = "pos_vs_no", n: int | None = 10, seed: int = 0) -> PromptSet:
    """COVID vs Normal (Table A.1: ``n`` = 10 sampled prompts, seeded). Classes ``("Normal", "COVID")``."""
    gen = product_prompts(COVID_CLASS_PROMPTS["COVID"])
    return binary_prompt_set("medclip_covid", "Normal", "COVID", sample_prompts(gen, n, seed), binary_rule,
                             "COVID-19 pneumonia", n_sample=n, seed=seed, n_generated={"COVID": len(gen)},
                             source="MedCLIP constants.COVID_CLASS_PROMPTS")


def rsna_prompts(binary_rule: str = "pos_vs_no", n: int | None = None, seed: int = 0) -> PromptSet:
    """RSNA Normal vs Pneumonia. Classes ``("Normal", "Pneumonia")`` (= ``constants.RSNA_CLASSES``)."""
    gen = product_prompts(RSNA_CLASS_PROMPTS["Pneumonia"])
    return binary_prompt_set("medclip_rsna", "Normal", "Pneumonia", sample_prompts(gen, n, seed), binary_rule,
                             "pneumonia", n_sample=n, seed=seed, n_generated={"Pneumonia": len(gen)},
                             source="MedCLIP constants.RSNA_CLASS_PROMPTS")


def ecg_prompts(dataset: str = "ptbxl", template: str = ECG_TEMPLATE) -> PromptSet:
    """One prompt per class: ``"This ECG shows {readable label}."`` for PTB-XL superclasses or ICBEB."""
    classes = {"ptbxl": ECG_SUPERCLASSES, "icbeb": ICBEB_CLASSES}.get(dataset)
    if classes is None:
        raise ValueError(f"dataset must be ptbxl or icbeb, got {dataset!r}")
    return PromptSet(f"ecg_template_{dataset}", tuple(classes),
                     {c: [template.format(ECG_LABEL_NAMES[c])] for c in classes}, source="Table A.1 template")
