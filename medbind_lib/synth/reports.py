"""Radiology report text (MIMIC-CXR and Open-I styles) with the CheXpert labels each sentence implies.

Sentences are chosen per finding with positive, uncertain ("may reflect", "cannot be excluded") and
negated ("No pleural effusion.") variants; the label of every sentence is recorded as it is written,
so mimic-cxr-2.0.0-chexpert.csv.gz agrees with the text by construction. Normal studies reuse a few
fixed templates verbatim, which gives the many identical reports that TMCL is designed for.
"""
from __future__ import annotations

import numpy as np

from ..constants import CHEXPERT_LABELS
from .common import wrap_report

NORMAL_TEMPLATES = (
    ("The lungs are clear without focal consolidation.  No pleural effusion or pneumothorax is seen.  The "
     "cardiac and mediastinal silhouettes are unremarkable.", "No acute cardiopulmonary process.",
     {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0, "Cardiomegaly": 0.0}),
    ("Heart size is normal.  The mediastinal and hilar contours are normal.  The pulmonary vasculature is "
     "normal.  Lungs are clear.  No pleural effusion or pneumothorax is present.  No acute osseous "
     "abnormality is seen.", "No acute cardiopulmonary abnormality.",
     {"Cardiomegaly": 0.0, "Edema": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0, "Fracture": 0.0}),
    ("PA and lateral views of the chest provided.  There is no focal consolidation, effusion, or pneumothorax.  "
     "The cardiomediastinal silhouette is normal.  Imaged osseous structures are intact.  No free air below "
     "the right hemidiaphragm is seen.", "No acute intrathoracic process.",
     {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0, "Enlarged Cardiomediastinum": 0.0,
      "Fracture": 0.0}),
)
OPENI_NORMAL = ("The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
                "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary "
                "edema. There is no focal consolidation. There are no XXXX of a pleural effusion. There is no "
                "evidence of pneumothorax.")
OPENI_NORMAL_IMPRESSION = ("No acute disease.", "Normal chest x-XXXX.", "No acute cardiopulmonary abnormality.")


class Labels(dict):
    """CheXpert-style labels with the labeler's precedence: positive > uncertain > negative."""

    def put(self, name: str, value: float) -> None:
        old = self.get(name)
        rank = {1.0: 3, -1.0: 2, 0.0: 1, None: 0}
        if rank[value] > rank[old]:
            self[name] = value

    def finish(self) -> dict:
        out = {k: self.get(k) for k in CHEXPERT_LABELS}
        abnormal = any(out[k] in (1.0, -1.0) for k in CHEXPERT_LABELS if k not in ("No Finding", "Support Devices"))
        out["No Finding"] = None if abnormal else 1.0
        return out


def _side(g: dict) -> str | None:
    left, right = g.get("effusion_left", 0) > 0, g.get("effusion_right", 0) > 0
    return "bilateral" if left and right else "left" if left else "right" if right else None


def _lobe(g: dict) -> str:
    x, y = g["opacities"][0][:2]
    side = "left" if x > 0 else "right"
    return f"{side} {'lower lobe' if y > 0.15 else 'upper lobe' if y < -0.05 else 'mid lung'}"


def _sev(ctr: float) -> str:
    return "mild" if ctr < 0.58 else "moderate" if ctr < 0.64 else "severe"


def findings_sentences(f: dict, g: dict, rng: np.random.Generator, lab: Labels, ap: bool) -> tuple[list, list]:
    """(findings sentences, impression sentences) for an abnormal study, filling ``lab``."""
    fs, imp = [], []
    pick = lambda *xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    if f.get("device"):
        fs.append("Left-sided pacemaker device is noted with a lead terminating in the right ventricle.")
        lab.put("Support Devices", 1.0)
    if f.get("cardiomegaly"):
        sev = _sev(g["ctr"])
        if sev == "mild" and rng.random() < 0.3:
            fs.append("The heart size is top normal to mildly enlarged.")
            lab.put("Cardiomegaly", -1.0)
            imp.append("Borderline cardiomegaly.")
        else:
            fs.append(pick(f"{sev.capitalize()} cardiomegaly is present.", f"The heart is {sev}ly enlarged.",
                           f"There is {sev} enlargement of the cardiac silhouette."))
            lab.put("Cardiomegaly", 1.0)
            imp.append(f"{sev.capitalize()} cardiomegaly.")
            if sev != "mild" and rng.random() < 0.4:
                fs.append("The cardiomediastinal silhouette is enlarged.")
                lab.put("Enlarged Cardiomediastinum", 1.0)
    elif ap and rng.random() < 0.15:
        fs.append("Heart size is difficult to assess given the AP technique.")
        lab.put("Cardiomegaly", -1.0)
    else:
        fs.append(pick("Heart size is normal.", "The cardiac silhouette is within normal limits."))
        lab.put("Cardiomegaly", 0.0)
    if f.get("edema"):
        if rng.random() < 0.2:
            fs.append("Possible mild interstitial pulmonary edema.")
            lab.put("Edema", -1.0)
            imp.append("Possible mild pulmonary edema.")
        else:
            fs.append(pick("There is mild pulmonary edema.", "Moderate pulmonary edema with vascular congestion.",
                           "Interstitial pulmonary edema is present."))
            lab.put("Edema", 1.0)
            imp.append("Pulmonary edema.")
    elif rng.random() < 0.6:
        fs.append("No pulmonary edema.")
        lab.put("Edema", 0.0)
    side = _side(g)
    if side:
        size = "moderate" if max(g.get("effusion_left", 0), g.get("effusion_right", 0)) > 0.25 else "small"
        noun = "effusions" if side == "bilateral" else "effusion"
        if rng.random() < 0.15 and side != "bilateral":
            fs.append(f"Blunting of the {side} costophrenic angle may reflect a small pleural effusion.")
            lab.put("Pleural Effusion", -1.0)
            imp.append(f"Possible small {side} pleural effusion.")
        else:
            fs.append(f"{size.capitalize()} {side} pleural {noun}.")
            lab.put("Pleural Effusion", 1.0)
            imp.append(f"{size.capitalize()} {side} pleural {noun}.")
    else:
        fs.append("No pleural effusion.")
        lab.put("Pleural Effusion", 0.0)
    if f.get("pneumonia") and g.get("opacities"):
        lobe = _lobe(g)
        k = int(rng.integers(3))
        if k == 0:
            fs.append(f"Focal consolidation in the {lobe} is concerning for pneumonia.")
            lab.put("Consolidation", 1.0), lab.put("Pneumonia", -1.0)
            imp.append(f"{lobe.capitalize()} consolidation concerning for pneumonia.")
        elif k == 1:
            fs.append(f"Airspace opacity in the {lobe} is compatible with pneumonia.")
            lab.put("Lung Opacity", 1.0), lab.put("Pneumonia", 1.0)
            imp.append(f"{lobe.capitalize()} pneumonia.")
        else:
            fs.append(f"Patchy opacity in the {lobe} could reflect atelectasis, though infection cannot be excluded.")
            lab.put("Lung Opacity", 1.0), lab.put("Atelectasis", -1.0), lab.put("Pneumonia", -1.0)
            imp.append(f"{lobe.capitalize()} opacity, infection cannot be excluded.")
    else:
        fs.append(pick("No focal consolidation.", "No focal consolidation to suggest pneumonia."))
        lab.put("Consolidation", 0.0)
        if "pneumonia" in fs[-1]:
            lab.put("Pneumonia", 0.0)
    if f.get("atelectasis"):
        fs.append(pick("Mild bibasilar atelectasis.", "Linear atelectasis at the lung base."))
        lab.put("Atelectasis", 1.0)
        imp.append("Basilar atelectasis.")
    if f.get("nodule"):
        fs.append(f"A {int(rng.integers(6, 14))} mm nodular opacity projects over the lung.  Recommend chest CT "
                  "for further evaluation.")
        lab.put("Lung Lesion", 1.0)
        imp.append("Pulmonary nodule; CT recommended.")
    if f.get("pneumothorax"):
        fs.append("Small apical pneumothorax.")
        lab.put("Pneumothorax", 1.0)
        imp.append("Small pneumothorax.  Findings were communicated to Dr. ___ at ___.")
    elif rng.random() < 0.7:
        fs.append("No pneumothorax.")
        lab.put("Pneumothorax", 0.0)
    if f.get("fracture"):
        fs.append("Healed fracture of a lateral rib is noted.")
        lab.put("Fracture", 1.0)
    if f.get("pleural_other"):
        fs.append("Mild apical pleural thickening.")
        lab.put("Pleural Other", 1.0)
    if not imp:
        imp.append("No acute cardiopulmonary process.")
    return fs, imp


INDICATIONS = {"pneumonia": "fever and cough  // eval for pneumonia", "edema": "dyspnea  // eval for CHF",
               "effusion": "shortness of breath  // ?pleural effusion", "device": "pacemaker  // lead position",
               "cardiomegaly": "chest pain  // eval", "none": "chest pain  // r/o acute process"}


def mimic_report(f: dict, g: dict, rng: np.random.Generator, ap: bool, sex: str, special: str = "") -> tuple[str, dict]:
    """Full MIMIC-CXR report text and its CheXpert labels; ``special`` in {'', 'impression_only', 'addendum'}."""
    lab = Labels()
    normal = not any(f.get(k) for k in ("cardiomegaly", "edema", "effusion", "pneumonia", "atelectasis", "nodule",
                                        "pneumothorax", "fracture", "pleural_other", "device"))
    if normal and rng.random() < 0.88:
        k = int(rng.choice(3, p=[0.45, 0.35, 0.2])) if not ap else int(rng.choice(2, p=[0.6, 0.4]))
        findings, impression, labs = NORMAL_TEMPLATES[k]
        for n, val in labs.items():
            lab.put(n, val)
    else:
        fs, imp = findings_sentences(f, g, rng, lab, ap)
        findings, impression = "  ".join(fs), "  ".join(imp)
    key = next((k for k in INDICATIONS if f.get(k)), "none")
    who = "woman" if sex == "F" else "man"
    exam = "CHEST (PORTABLE AP)" if ap else "CHEST (PA AND LAT)"
    lines = [" " * 33 + "FINAL REPORT", f" EXAMINATION:  {exam}", " "]
    lines += wrap_report([f"INDICATION:  ___ year old {who} with {INDICATIONS[key]}"]) + [" "]
    lines += [" TECHNIQUE:  " + ("Portable AP chest radiograph" if ap else "Chest PA and lateral"), " "]
    lines += [" COMPARISON:  " + ("___" if rng.random() < 0.7 else "None."), " "]
    if special != "impression_only":
        lines += [" FINDINGS: ", " "] + wrap_report([findings]) + [" "]
    lines += [" IMPRESSION: ", " "] + wrap_report([impression])
    if special == "impression_only":          # only the impression is labelled (normal studies only)
        lab = Labels()
    if special == "addendum":
        lines = [" " * 32 + "FINAL ADDENDUM", " ADDENDUM:  Findings were discussed with Dr. ___ by telephone at ___ on",
                 " ___.", " ", " " + "_" * 78, " "] + lines
    return "\n".join(lines) + "\n", lab.finish()


def openi_text(f: dict, g: dict, rng: np.random.Generator) -> tuple[str, str, str]:
    """(findings, impression, MeSH) in Open-I style (XXXX de-identification)."""
    normal = not any(f.get(k) for k in ("cardiomegaly", "edema", "effusion", "pneumonia", "atelectasis", "nodule"))
    if normal:
        return (OPENI_NORMAL[int(rng.integers(2))], OPENI_NORMAL_IMPRESSION[int(rng.integers(3))], "normal")
    fs, imp = findings_sentences(f, g, rng, Labels(), ap=False)
    mesh = [m for k, m in (("cardiomegaly", "Cardiomegaly/mild"), ("effusion", "Pleural Effusion/bilateral"),
                           ("edema", "Pulmonary Edema"), ("pneumonia", "Opacity/lung/base"),
                           ("atelectasis", "Pulmonary Atelectasis/base"), ("nodule", "Nodule/lung"))
            if f.get(k)]
    text = " ".join(fs).replace("  ", " ")
    if rng.random() < 0.3:
        text = text.replace("pleural", "XXXX", 1)
    return text, " ".join(imp).replace("  ", " ").replace("Dr. ___ at ___", "Dr. XXXX at XXXX"), ";".join(mesh)
