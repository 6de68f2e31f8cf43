"""Contrastive losses of the suite: MEDBind's (:mod:`.medbind`) and MEDCSP's (:mod:`.medcsp`).

``medbind_lib.losses`` keeps every name it had as a single module (``VARIANTS``, ``MEDBindLoss``, ``tmcl``,
...: MEDBind's), so existing imports and profiles are unchanged; MEDCSP's names carry their own prefix
(``MEDCSP_VARIANTS``, ``MEDCSPLoss``, ``medcsp_la``, ...).
"""
from __future__ import annotations

from .medbind import (
    EMCL_SCALES,
    LABEL_SIMS,
    REDUCTIONS,
    VARIANTS,
    MEDBindLoss,
    clip_infonce,
    emcl,
    hash_texts,
    medclip_soft,
    normalize_text,
    tmcl,
)
from .medcsp import (
    LA_NEGATIVES,
    LD_TARGETS,
    LP_DIRECTIONS,
    MEDCSP_VARIANTS,
    SOURCE_CXR,
    SOURCE_EHR,
    MEDCSPLoss,
    medcsp_la,
    medcsp_ld,
    medcsp_lp,
    record_embeddings,
)

__all__ = [
    # MEDBind and the CXR baselines
    "EMCL_SCALES",
    "LABEL_SIMS",
    "REDUCTIONS",
    "VARIANTS",
    "hash_texts",
    "normalize_text",
    "clip_infonce",
    "tmcl",
    "emcl",
    "medclip_soft",
    "MEDBindLoss",
    # MEDCSP
    "MEDCSP_VARIANTS",
    "LA_NEGATIVES",
    "LP_DIRECTIONS",
    "LD_TARGETS",
    "SOURCE_EHR",
    "SOURCE_CXR",
    "record_embeddings",
    "medcsp_la",
    "medcsp_lp",
    "medcsp_ld",
    "MEDCSPLoss",
]
