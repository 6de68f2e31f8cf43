"""The evaluation protocol of notebooks 03-07: ``EvalSettings`` (every choice, recorded beside every
number), ``eval_settings(cfg)`` (the paper's values with the profile's compute-only knobs) and the one-thread
context the builders run under."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass

from ..registry import UNTRAINED_REFERENCE
from .fewshot import KS


C5X200_PROTOCOLS = ("instance", "class_prompts")
# MEDCSP text->image retrieval: study_images = the paper's "corresponding X-ray images" (every image of the report's
# study relevant and in the gallery); frontal = the frontal images the other tables embed (radiology.py)
RETRIEVAL_GALLERIES = ("study_images", "frontal")


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol (METHOD.md 1 "Evaluations"); recorded beside every number."""
    profile: str = "smoke"
    seed: int = 0
    n_boot: int = 1000                      # patient-level bootstrap replicates
    alpha: float = 0.05                     # 95% percentile intervals
    ties: str = "pessimistic"               # exact score ties rank the relevant item last
    text_identity: str = "lower_ws"         # identical texts = one gallery item (the profile's key)
    retrieval_ks: tuple = (1, 10)           # Table 2 (RSUM = R@1 + R@10 per dataset)
    crossmodal_ks: tuple = (1, 5, 10)       # Fig. 2 right
    c5x200_protocol: str = "instance"       # instance: one text per image (its report, else one generated
                                            # prompt), hit = its own text; class_prompts: 5-way, not the paper's
    medcsp_retrieval_gallery: str = "study_images"  # MEDCSP retrieval relevance/gallery (RETRIEVAL_GALLERIES)
    chexpert_prompts_per_class: int = 10    # class_prompts only: gallery = this many prompts per class
    covid_prompt_rule: str = "table_a1"     # table_a1 | positive_only | pos_vs_no | fixed (prompts.BINARY_RULES)
    rsna_prompt_rule: str = "table_a1"      # table_a1 = "Findings suggesting pneumonia." vs "No evidence of ..."
    prompt_pool: str = "mean_cosine"        # class score = mean cosine over the class's prompts
    covid_n_prompts: int | None = 10        # Table A.1: 10 sampled COVID prompts
    rsna_n_prompts: int | None = 10         # 10 sampled RSNA prompts, as for COVID (MedCLIP samples n too)
    fewshot_ks: tuple = KS                  # K in {1, 2, 4, 8, 16} per class
    n_support_sets: int = 300               # paper: mean over 300 random support sets
    probe_C: float = 1.0                    # inverse L2 strength of the logistic-regression probe
    tsne_perplexity: float = 30.0           # capped at (n - 1) / 3 for small sets
    cardiomegaly_uncertain: str = "exclude"  # CheXpert -1.0 for Cardiomegaly: exclude | negative
    untrained_variant: str = UNTRAINED_REFERENCE  # whose untrained initialisation is the untrained row
    torch_threads: int | None = 1           # CPU intra-op threads while a builder runs (None = leave as is)
    notes: tuple = ()

    def __post_init__(self):
        from .prompts import BINARY_RULES

        if self.c5x200_protocol not in C5X200_PROTOCOLS:
            raise ValueError(f"c5x200_protocol must be one of {C5X200_PROTOCOLS}, got {self.c5x200_protocol!r}")
        if self.medcsp_retrieval_gallery not in RETRIEVAL_GALLERIES:
            raise ValueError(f"medcsp_retrieval_gallery must be one of {RETRIEVAL_GALLERIES}, "
                             f"got {self.medcsp_retrieval_gallery!r}")
        for k in ("covid_prompt_rule", "rsna_prompt_rule"):
            if getattr(self, k) not in BINARY_RULES:
                raise ValueError(f"{k} must be one of {BINARY_RULES}, got {getattr(self, k)!r}")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's CPU intra-op threads. The evaluation problems are tiny (prompt batches, L-BFGS
    on [S, n, n] support sets): one thread is as fast when the CPU is idle and avoids OpenMP spin-waiting -
    measured 0.2 s vs 0.6-10 s for one Fig. 3 cell on the 2-core machine while another job trains."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def with_settings(fn):
    """Builders take ``(cfg, settings=None, ...)``: resolve the settings and run under ``torch_threads``."""
    @functools.wraps(fn)
    def wrapper(cfg, settings: EvalSettings | None = None, *args, **kwargs):
        s = settings or eval_settings(cfg)
        with torch_threads(s.torch_threads):
            return fn(cfg, s, *args, **kwargs)
    return wrapper


def eval_settings(cfg, **overrides) -> EvalSettings:
    """The protocol for ``cfg``: the paper's values, with the compute-only knobs the profile sets
    (``fewshot_support_sets``, ``tsne_perplexity``)."""
    base = dict(profile=cfg["profile"], seed=int(cfg.get("seed", 0)),
                text_identity=cfg.get("text_identity", "lower_ws"),
                medcsp_retrieval_gallery=cfg.get("medcsp_retrieval_gallery", "study_images"),
                n_support_sets=int(cfg.get("fewshot_support_sets", 300)),
                tsne_perplexity=float(cfg.get("tsne_perplexity", 30.0)))
    notes = [f"{base['n_support_sets']} few-shot support sets (paper: 300)"] if base["n_support_sets"] != 300 else []
    if "loss_reduction" in cfg:                      # which pre-training produced the embeddings, on every table
        notes.append(f"pre-training: loss_reduction={cfg['loss_reduction']} (paper's weighting: batch), "
                     f"emcl_scale={cfg.get('emcl_scale')}, best.pt on select_on={cfg.get('select_on')}")
    if notes:
        base["notes"] = tuple(notes)
    base.update(overrides)
    return EvalSettings(**base)
