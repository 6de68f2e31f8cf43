"""MIMIC linking: admission links, MIMIC-PAIR, readmission / mortality labels, patient-level splits.

Everything here is plain vectorised pandas on small id/time columns, so the same code runs on the
synthetic cohort and on full MIMIC (hundreds of thousands of records).

Conventions (each one a documented choice, see the function docstrings for the reasons):

- ``subject_id`` is accepted as int, float (``10000032.0`` from a CSV with gaps) or str, and is
  normalised to ``str`` ("10000032") everywhere it leaves this module (:func:`normalize_ids`), because
  the CXR/ECG manifests carry it as str and MIMIC-IV tables as int; a silent int/str mismatch would
  make every join empty.
- ``hadm_id`` is a nullable ``Int64`` column (NA = no admission).
- Time comparisons are done on ``Timedelta`` values (never on rounded hours), so the documented
  boundaries are exact: two records exactly ``window`` apart are linked, one minute more is not.
- Records excluded on purpose from a link or a label set are counted in the :class:`QualityLog`
  (``dataset, stage, reason``); nothing is dropped silently.

Layout (each step a module; import the names from here, the submodules are an implementation detail):
``common`` (id/time normalisation, admissions, the chunked per-subject join), ``admissions`` (record ->
admission, task windows), ``pairs`` (MIMIC-PAIR), ``labels`` (mortality, readmission), ``splits`` (the one
patient-level split) and ``cohort`` (:func:`link_cohort`, :func:`table1`).
"""
from __future__ import annotations

from .admissions import assign_admissions, task_links
from .cohort import link_cohort, table1
from .common import HOUR, normalize_ids, prepare_admissions
from .labels import PLANNED_ADMISSION_TYPES, READMISSION_NO_NEXT, mortality_labels, readmission_labels
from .pairs import mimic_pairs, pair_counts
from .splits import apply_splits, patient_splits

__all__ = ["HOUR", "PLANNED_ADMISSION_TYPES", "READMISSION_NO_NEXT", "apply_splits", "assign_admissions",
           "link_cohort", "mimic_pairs", "mortality_labels", "normalize_ids", "pair_counts", "patient_splits",
           "prepare_admissions", "readmission_labels", "table1", "task_links"]
