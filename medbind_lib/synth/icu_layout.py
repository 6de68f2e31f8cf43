"""MIMIC-IV 2.2 layouts of the synthetic ICU tables: columns, item ids, dictionaries, units and how values are written.

Everything the ICU generator (icu.py) shares about the on-disk form and nothing about the latent model: the
column orders, the item ids (looked up in ehr.items), the d_items / d_labitems rows, the lab and vasopressor
specs, and the MIMIC text format of times and numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..ehr import items as M

# --- real MIMIC-IV 2.2 layouts (demo headers; chartevents/inputevents from the MIMIC-IV 2.2 schema) ------
CHARTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                       "value", "valuenum", "valueuom", "warning"]
INPUTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                       "itemid", "amount", "amountuom", "rate", "rateuom", "orderid", "linkorderid",
                       "ordercategoryname", "secondaryordercategoryname", "ordercomponenttypedescription",
                       "ordercategorydescription", "patientweight", "totalamount", "totalamountuom", "isopenbag",
                       "continueinnextdept", "statusdescription", "originalamount", "originalrate"]
PROCEDUREEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                           "itemid", "value", "valueuom", "location", "locationcategory", "orderid", "linkorderid",
                           "ordercategoryname", "ordercategorydescription", "patientweight", "isopenbag",
                           "continueinnextdept", "statusdescription", "ORIGINALAMOUNT", "ORIGINALRATE"]
OUTPUTEVENTS_COLUMNS = ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                        "value", "valueuom"]
D_ITEMS_COLUMNS = ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type",
                   "lownormalvalue", "highnormalvalue"]
LABEVENTS_COLUMNS = ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id",
                     "charttime", "storetime", "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper",
                     "flag", "priority", "comments"]
D_LABITEMS_COLUMNS = ["itemid", "label", "fluid", "category"]
TABLES = ("icu/chartevents", "icu/inputevents", "icu/procedureevents", "icu/outputevents", "icu/d_items",
          "hosp/labevents", "hosp/d_labitems")

# --- item ids, looked up by label in ehr.items (never re-typed) ------------------------------------------
_V = {label: itemid for itemid, (label, _) in M.VITALS.items()}
HR, SBP, DBP, NBPM = (_V["Heart Rate"], _V["Non Invasive Blood Pressure systolic"],
                      _V["Non Invasive Blood Pressure diastolic"], _V["Non Invasive Blood Pressure mean"])
ABPM, RR, SPO2, TEMP, FIO2 = (_V["Arterial Blood Pressure mean"], _V["Respiratory Rate"],
                              _V["O2 saturation pulseoxymetry"], _V["Temperature Fahrenheit"],
                              _V["Inspired O2 Fraction"])
GCS_EYE, GCS_VERBAL, GCS_MOTOR = _V["GCS - Eye Opening"], _V["GCS - Verbal Response"], _V["GCS - Motor Response"]
PRESSOR_ITEMS = {name: itemid for itemid, name in M.VASOPRESSORS.items()}
_O = {label: itemid for itemid, (label, _) in M.OUTPUTS.items()}
FOLEY, VOID = _O["Foley"], _O["Void"]
LAB_ITEMS = {label: itemid for itemid, (label, *_) in M.LABS.items()}

# d_items rows of the ids used (labels, abbreviations, categories, units and param types as in MIMIC-IV 2.2)
D_ITEMS = {
    **{i: (lab, abbr, "chartevents", cat, unit, "Numeric") for i, lab, abbr, cat, unit in [
        (HR, "Heart Rate", "HR", "Routine Vital Signs", "bpm"),
        (SBP, "Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg"),
        (DBP, "Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg"),
        (NBPM, "Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg"),
        (ABPM, "Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg"),
        (RR, "Respiratory Rate", "RR", "Respiratory", "insp/min"),
        (SPO2, "O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%"),
        (TEMP, "Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "°F"),
        (FIO2, "Inspired O2 Fraction", "FiO2", "Respiratory", ""),
        (M.PEEP, "PEEP set", "PEEP set", "Respiratory", "cmH2O")]},
    **{i: (lab, abbr, "chartevents", "Neurological", "", "Text") for i, lab, abbr in [
        (GCS_EYE, "GCS - Eye Opening", "Eye Opening"), (GCS_VERBAL, "GCS - Verbal Response", "Verbal Response"),
        (GCS_MOTOR, "GCS - Motor Response", "Motor Response")]},
    **{i: (lab, lab, "procedureevents", "2-Ventilation", "", "Processes") for i, lab in [
        (M.INVASIVE_VENTILATION, "Invasive Ventilation"), (M.NONINVASIVE_VENTILATION, "Non-invasive Ventilation")]},
    **{i: (name, name, "inputevents", "Medications", "units" if name == "Vasopressin" else "mg", "Solution")
       for i, name in M.VASOPRESSORS.items()},
    **{i: (lab, lab, "outputevents", "Output", "mL", "Numeric") for i, (lab, _) in M.OUTPUTS.items()},
}
# chartevents valueuom and rounding (decimals) per numeric item
CHART_UNIT = {i: ("" if i == FIO2 else M.VITALS[i][1]) for i in M.VITALS} | {M.PEEP: "cmH2O"}
CHART_DECIMALS = {TEMP: 1}
GCS_TEXT = {
    GCS_EYE: {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"},
    GCS_VERBAL: {5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds",
                 1: "No Response", 0: "No Response-ETT"},         # 0: intubated (valuenum 1, as in MIMIC-IV)
    GCS_MOTOR: {6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws", 3: "Abnormal Flexion",
                2: "Abnormal extension", 1: "No response"},
}
# label -> (decimals, reference range (lower, upper); (F, M) pairs where MIMIC-IV has sex-specific ranges)
LAB_SPEC = {
    "Lactate": (1, (0.5, 2.0)), "pH": (2, (7.35, 7.45)), "pCO2": (0, (35, 45)), "pO2": (0, (85, 105)),
    "Sodium": (0, (135, 147)), "Potassium": (1, (3.3, 5.1)), "Bicarbonate": (0, (22, 32)),
    "Creatinine": (1, ((0.4, 1.1), (0.5, 1.2))), "Urea Nitrogen": (0, (6, 20)), "Glucose": (0, (70, 100)),
    "Hemoglobin": (1, ((11.2, 15.7), (13.7, 17.5))), "Platelet Count": (0, (150, 400)),
    "White Blood Cells": (1, (4.0, 10.0)),
}
PANELS = {"Blood Gas": ("Lactate", "pH", "pCO2", "pO2"),
          "Chemistry": ("Sodium", "Potassium", "Bicarbonate", "Creatinine", "Urea Nitrogen", "Glucose"),
          "Hematology": ("Hemoglobin", "Platelet Count", "White Blood Cells")}
# vasopressor -> (choice weight as first drug, rate range, rate unit, amount unit)
PRESSOR_SPEC = {"Norepinephrine": (0.72, (0.02, 0.5), "mcg/kg/min", "mg"),
                "Phenylephrine": (0.14, (0.5, 3.0), "mcg/kg/min", "mg"),
                "Dopamine": (0.05, (3.0, 15.0), "mcg/kg/min", "mg"),
                "Epinephrine": (0.04, (0.02, 0.2), "mcg/kg/min", "mg"),
                "Vasopressin": (0.05, (2.4, 2.4), "units/hour", "units")}

# --- time units and the MIMIC text of times and numbers ------------------------------------------------------
H = 3_600_000_000_000                             # ns per hour
MIN = 60_000_000_000                              # ns per minute


def floor_min(ns: np.ndarray) -> np.ndarray:
    return ns - ns % MIN


def fmt_times(ns: np.ndarray) -> pd.Series:
    """MIMIC datetime text for int64 ns timestamps (vectorised fmt_dt)."""
    s = np.datetime_as_string(np.asarray(ns, dtype="datetime64[ns]").astype("datetime64[s]"), unit="s")
    return pd.Series(s).str.replace("T", " ", regex=False)


def fmt_num(x: np.ndarray, decimals) -> pd.Series:
    """Numbers as MIMIC writes them: rounded, without trailing zeros (``85``, ``98.6``, ``7.38``)."""
    x = np.asarray(x, dtype=float)
    dec = np.broadcast_to(np.asarray(decimals, dtype=int), x.shape)
    scale = 10 ** dec
    q = np.round(np.abs(x) * scale).astype(np.int64)
    ip, fp = q // scale, q % scale
    s = pd.Series(ip).astype(str)
    sign = np.where(x < 0, "-", "")
    frac = pd.Series(fp).astype(str).str.zfill(2)
    frac = pd.Series(np.where(dec == 1, frac.str[-1], frac)).str.rstrip("0")
    has = (fp > 0) & (dec > 0)
    return pd.Series(sign) + s + pd.Series(np.where(has, "." + frac, ""))


# --- dictionaries ---------------------------------------------------------------------------------------------
def d_items_table(itemids) -> pd.DataFrame:
    rows = [(i, *D_ITEMS[i], "", "") for i in sorted(set(int(x) for x in itemids))]
    return pd.DataFrame(rows, columns=D_ITEMS_COLUMNS)


def d_labitems_table() -> pd.DataFrame:
    return pd.DataFrame([(i, lab, fluid, cat) for i, (lab, fluid, cat, _) in sorted(M.LABS.items())],
                        columns=D_LABITEMS_COLUMNS)
