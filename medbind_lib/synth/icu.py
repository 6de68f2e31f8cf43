"""MIMIC-IV ICU event tables and lab results: latent ICU trajectories that foreshadow ARF, shock and death.

Every ICU stay of ``icu/icustays`` (ehr.icustays_table) gets a latent trajectory over the stay,
driven by its admission's latent state (conditions, severity, ``hospital_expire_flag``):

- respiratory impairment R(t): a baseline from pneumonia / edema / heart failure / effusion (+ noise), plus a
  ramp over the 12-48 h before an ARF onset (falling SpO2, rising FiO2 and RR); at the onset the stay is
  ventilated (``procedureevents`` 225792/225794 from the onset; PEEP set, ``chartevents`` 220339, while
  invasively ventilated; a few stays have PEEP charted without a ventilation row);
- circulatory failure C(t): a baseline from sepsis-like pneumonia / ischemia / severity, plus a ramp over the
  12-40 h before a shock onset (falling MAP, rising HR and lactate, less urine); at the onset a vasopressor
  starts (``inputevents``, a few rate-change segments, sometimes vasopressin added);
- dying D(t) for admissions that end in death (the existing ``hospital_expire_flag``, never changed): lower
  GCS, rising creatinine, BUN and lactate over the stay.

Onsets (``ehr.items.TASK_EVENTS``) fall before 48 h for some stays, after 48 h for others and never for
most; the intercepts are tuned so that among FIDDLE-eligible stays (first ICU stay of the patient, stay
longer than 48 h, no onset before 48 h) about ``REFERENCE_PREVALENCE`` of stays have the event (MEDCSP's Table 4:
ARF 8.0 %, shock 9.6 %). Mortality is the latent admissions' own outcome; which admissions reach the ICU
(``latent.ICU_LOGIT``) puts it at ~15 % of those stays (FIDDLE 12 %), and 30-day readmission at ~11 % of the ICU
admissions discharged alive (Table 4: 13.5 %); both are left as the shared latent cohort makes them (MEDBind reads the
same admissions). The ramps make the first 48 h informative for
onsets after 48 h; a logistic regression on 24-48 h vital and 0-48 h lab means reaches AUROC ~0.88 (ARF),
~0.78 (shock), ~0.85 (mortality) on a 2,500-patient cohort, leaving room for better models.

Charting: vitals on 1-2 h grids, temperature and GCS every ~4 h, labs (``hosp/labevents``) every 6-24 h in the
ICU (more often for sicker stays) and every 14-30 h on the ward (also for admissions without an ICU stay), urine
output hourly (Foley) or every few hours (void); FiO2 when ventilated or on supplemental oxygen, arterial MAP for
stays with an arterial line, blood gases mostly for sicker stays (missingness is informative, as in MIMIC).

All draws, ``icu/icustays`` included (1.4.0), come from one generator (the ``mimic_icu`` stream), so the hosp
tables and notes never depend on the ICU model. Everything is vectorised over stays and events (no per-event Python loops).

Modules: icu_layout.py (MIMIC-IV layouts, item ids, dictionaries, value text), icu_state.py (the latent model
above and the charting time grids), icu_events.py (chart/procedure/input/output events), icu_labs.py
(labevents); this module draws them in a fixed order from the one generator and writes the tables.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import write_csv
from .icu_events import chartevents_table, inputevents_table, outputevents_table, procedureevents_table
from .icu_labs import labevents_table
# re-exported (layouts, item ids, model constants): ``icu.TABLES``, ``icu.HR``, ``icu.GCS_TEXT``, ... keep working
from .icu_layout import (ABPM, CHART_DECIMALS, CHART_UNIT, CHARTEVENTS_COLUMNS, D_ITEMS, D_ITEMS_COLUMNS,  # noqa: F401
                         D_LABITEMS_COLUMNS, DBP, FIO2, FOLEY, GCS_EYE, GCS_MOTOR, GCS_TEXT, GCS_VERBAL, HR,
                         INPUTEVENTS_COLUMNS, LAB_ITEMS, LAB_SPEC, LABEVENTS_COLUMNS, MIN, NBPM, OUTPUTEVENTS_COLUMNS,
                         PANELS, PRESSOR_ITEMS, PRESSOR_SPEC, PROCEDUREEVENTS_COLUMNS, RR, SBP, SPO2, TABLES, TEMP,
                         VOID, H, d_items_table, d_labitems_table)
from .icu_state import (ARF_EARLY, ARF_INTERCEPT, SHOCK_EARLY, SHOCK_INTERCEPT, TASK_ONSET_SHIFT,  # noqa: F401
                        admission_state, stay_state)


__all__ = ["make_icu", "write_icu", "TABLES"]


# --- entry points ---------------------------------------------------------------------------------------------
def make_icu(patients: pd.DataFrame, admissions: pd.DataFrame, icustays: pd.DataFrame,
             rng, onset_shift=(0.0, 0.0)) -> tuple[dict, pd.DataFrame]:
    """The seven tables (``TABLES``) and a per-stay truth frame (onset hours, event probabilities);
    ``onset_shift``: see ``icu_state.stay_state`` (the task population's ``TASK_ONSET_SHIFT``)."""
    A = admission_state(patients, admissions, rng)
    S = stay_state(icustays, A, rng, onset_shift)
    chart = chartevents_table(S, A, rng)
    proc = procedureevents_table(S, rng)
    inputs = inputevents_table(S, A, rng)
    outputs = outputevents_table(S, A, rng)
    labs = labevents_table(A, S, rng)
    tables = {"icu/chartevents": chart, "icu/inputevents": inputs, "icu/procedureevents": proc,
              "icu/outputevents": outputs, "icu/d_items": d_items_table(D_ITEMS), "hosp/labevents": labs,
              "hosp/d_labitems": d_labitems_table()}
    truth = S[["subject_id", "hadm_id", "stay_id", "los_h", "p_arf", "p_shock", "arf_on", "shock_on",
               "vent_kind"]].copy()
    return tables, truth


def write_icu(patients: pd.DataFrame, admissions: pd.DataFrame, icustays: pd.DataFrame, iv_root: Path, rng) -> dict:
    """Write ``TABLES`` under ``iv_root`` (gzip CSV, like the other MIMIC-IV tables); returns row counts."""
    tables, _ = make_icu(patients, admissions, icustays, rng)
    for name, df in tables.items():
        write_csv(df, Path(iv_root) / f"{name}.csv.gz")
    return {name.split("/")[1]: len(df) for name, df in tables.items()}
