"""MIMIC-IV EHR derivations for MEDCSP: FIDDLE task onsets per ICU stay (onsets.py) and task cohorts at a
prediction time (cohorts.py). Tables come from ``datasets.mimic_icu`` / ``datasets.mimic_iv``; item ids from
``ehr.items``."""
from __future__ import annotations

from .cohorts import Cohorts, build_cohorts, task_cohorts
from .onsets import first_event_times, onsets_from_events, read_onset_events, task_onsets

__all__ = ["Cohorts", "build_cohorts", "task_cohorts", "first_event_times", "onsets_from_events",
           "read_onset_events", "task_onsets"]
