"""MIMIC-IV item ids MEDCSP's EHR source reads (real ids: icu/d_items, hosp/d_labitems of MIMIC-IV 2.2).

One table of record for the readers (datasets/mimic_icu.py), the FIDDLE task definitions and the synthetic
generator (synth/icu.py), so that the three can never disagree on an id. ``TASK_EVENTS`` are the FIDDLE onsets
(ARF: PEEP set or ventilation; shock: a vasopressor); ``VITALS`` / ``LABS`` / ``OUTPUTS`` are the readings the
synthetic cohort writes and the temporal tensor's default item selection draws from.
"""
from __future__ import annotations

# chartevents: itemid -> (label, unit)
VITALS = {
    220045: ("Heart Rate", "bpm"),
    220179: ("Non Invasive Blood Pressure systolic", "mmHg"),
    220180: ("Non Invasive Blood Pressure diastolic", "mmHg"),
    220181: ("Non Invasive Blood Pressure mean", "mmHg"),
    220052: ("Arterial Blood Pressure mean", "mmHg"),
    220210: ("Respiratory Rate", "insp/min"),
    220277: ("O2 saturation pulseoxymetry", "%"),
    223761: ("Temperature Fahrenheit", "°F"),
    223835: ("Inspired O2 Fraction", "None"),
    220739: ("GCS - Eye Opening", ""),
    223900: ("GCS - Verbal Response", ""),
    223901: ("GCS - Motor Response", ""),
}
PEEP = 220339                                      # chartevents "PEEP set" (cmH2O): an ARF event

# procedureevents: ventilation (ARF events)
INVASIVE_VENTILATION = 225792
NONINVASIVE_VENTILATION = 225794
VENTILATION = (INVASIVE_VENTILATION, NONINVASIVE_VENTILATION)

# inputevents: vasopressors (shock events)
VASOPRESSORS = {221906: "Norepinephrine", 221289: "Epinephrine", 221662: "Dopamine", 222315: "Vasopressin",
                221749: "Phenylephrine"}

# outputevents
OUTPUTS = {226559: ("Foley", "ml"), 226560: ("Void", "ml")}

# hosp/labevents: itemid -> (label, fluid, category, unit)
LABS = {
    50813: ("Lactate", "Blood", "Blood Gas", "mmol/L"),
    50820: ("pH", "Blood", "Blood Gas", "units"),
    50818: ("pCO2", "Blood", "Blood Gas", "mm Hg"),
    50821: ("pO2", "Blood", "Blood Gas", "mm Hg"),
    50983: ("Sodium", "Blood", "Chemistry", "mEq/L"),
    50971: ("Potassium", "Blood", "Chemistry", "mEq/L"),
    50882: ("Bicarbonate", "Blood", "Chemistry", "mEq/L"),
    50912: ("Creatinine", "Blood", "Chemistry", "mg/dL"),
    51006: ("Urea Nitrogen", "Blood", "Chemistry", "mg/dL"),
    50931: ("Glucose", "Blood", "Chemistry", "mg/dL"),
    51222: ("Hemoglobin", "Blood", "Hematology", "g/dL"),
    51265: ("Platelet Count", "Blood", "Hematology", "K/uL"),
    51301: ("White Blood Cells", "Blood", "Hematology", "K/uL"),
}

TASK_EVENTS = {
    "arf": {"chartevents": (PEEP,), "procedureevents": VENTILATION},
    "shock": {"inputevents": tuple(VASOPRESSORS)},
}
# Reference prevalences of the EHR tasks at the 48 h prediction time, MEDCSP.md "Downstream tasks": MEDCSP's Table 4
# (MIMIC-III cohorts: ARF 402 / 5,038, shock 693 / 7,182, 30-day readmission 1,581 / 11,695 ICU admissions) and, as
# MEDCSP gives no mortality cohort, FIDDLE's in-hospital mortality at 48 h (8,577 stays). FIDDLE's own ARF 18.3 % and
# shock 14.9 % are 4-hour cohorts: not comparable with a 48 h prediction time, never used as the reference.
REFERENCE_PREVALENCE = {"arf": 402 / 5038, "shock": 693 / 7182, "readmission": 1581 / 11695, "mortality": 0.120}
REFERENCE_SOURCE = {"arf": "MEDCSP Table 4", "shock": "MEDCSP Table 4", "readmission": "MEDCSP Table 4",
                    "mortality": "FIDDLE (48 h)"}
