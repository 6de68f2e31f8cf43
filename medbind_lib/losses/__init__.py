"""Contrastive losses of the suite: MEDBind's (:mod:`.medbind`) and MEDCSP's (:mod:`.medcsp`).

``medbind_lib.losses`` keeps every name it had as a single module (``VARIANTS``, ``MEDBindLoss``, ``tmcl``,
...: MEDBind's), so existing imports and profiles are unchanged; MEDCSP's names carry their own prefix
(``MEDCSP_VARIANTS``, ``MEDCSPLoss``, ``medcsp_la``, ...).
"""
from __future__ import annotations

from . import medbind as _medbind
from . import medcsp as _medcsp
from .medbind import *  # noqa: F401,F403 - the names of each module's __all__, listed there once
from .medcsp import *  # noqa: F401,F403

__all__ = [*_medbind.__all__, *_medcsp.__all__]
