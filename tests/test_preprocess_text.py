"""Texts: MIMIC-CXR sections, Table A.2 templates, the Table A.3 ECG labeler, truncation, identity."""
from __future__ import annotations

import pandas as pd
import pytest

from medbind_lib.errors import DataError
from medbind_lib.preprocess import text as T
from medbind_lib.quality import QualityLog

FINDINGS = ("Cardiac size cannot be evaluated. Large left pleural effusion is new. Small right effusion is "
            "new. The upper lungs are clear. Right lower lobe opacities are better seen in prior CT. There "
            "is no pneumothorax. There are mild degenerative changes in the thoracic spine")
IMPRESSION = "Large left pleural effusion"


# ---------------------------------------------------------------- MIMIC-CXR reports

@pytest.mark.realdata
def test_real_mimic_report_sections(realdata):
    report = T.read_report(realdata / "mimic_cxr/example_report_from_mimic-cxr_website.txt")
    sec = T.parse_sections(report)
    assert list(sec) == ["preamble", "examination", "indication", "technique", "comparison", "findings",
                         "impression"]
    assert T.normalize_ws(sec["findings"][-1]) == FINDINGS
    assert T.normalize_ws(sec["impression"][-1]) == IMPRESSION
    assert T.normalize_ws(sec["indication"][-1]) == "___ year old woman with ?pleural effusion // ?pleural effusion"
    assert T.cxr_report_text(report) == FINDINGS + ". " + IMPRESSION
    assert T.cxr_report_text(path=realdata / "mimic_cxr/example_report_from_mimic-cxr_website.txt") \
        == FINDINGS + ". " + IMPRESSION
    assert T.cxr_report_text(report, sections=("impression",)) == IMPRESSION


@pytest.mark.realdata
def test_real_report_with_a_stray_latin1_byte_keeps_its_text(realdata, tmp_path):
    """The real report re-saved with one latin-1 'é' (0xE9): once it dropped the whole report."""
    raw = (realdata / "mimic_cxr/example_report_from_mimic-cxr_website.txt").read_bytes()
    p = tmp_path / "s1.txt"
    p.write_bytes(raw.replace(b"Cardiac size", b"Cardiac siz\xe9", 1))
    q = QualityLog()
    assert T.cxr_report_text(T.read_report(p, q)) == (FINDINGS + ". " + IMPRESSION).replace("size", "siz\u00e9", 1)
    assert q.count("mimic_cxr", "text", flagged=True) == 1


def _report(*lines):
    return "".join(f" {ln}\n" if ln else " \n" for ln in lines)


def test_report_with_only_impression():
    r = "                                 FINAL REPORT\n" + _report(
        "INDICATION:  Dyspnea.", "", "IMPRESSION: ", "", "No acute cardiopulmonary process.")
    assert T.cxr_report_text(r) == "No acute cardiopulmonary process."
    assert "findings" not in T.parse_sections(r)


def test_report_with_addendum_and_underscore_line():
    r = "                                 FINAL REPORT\n" + _report(
        "ADDENDUM:  Findings discussed with Dr. ___ at 10:00.", "",
        "______________________________________________________________________________", "",
        "FINDINGS: ", "", "Heart size is normal.", "",
        "IMPRESSION: ", "", "No acute process.", "",
        "______________________________________________________________________________")
    sec = T.parse_sections(r)
    assert "addendum" in sec and "___" in sec["addendum"][0]
    assert T.cxr_report_text(r) == "Heart size is normal. No acute process."


def test_last_occurrence_and_name_normalisation():
    r = "\n" + _report("FINDINGS: first findings.", "", "CONCLUSION: old impression.", "",
                       "FINDINGS/IMPRESSION: final impression.", "", "FINDING: second findings.", "",
                       "REASON FOR EXAMINATION: cough.", "", "CLINICAL HISTORY: smoker.", "",
                       "COMPARISONS: none.", "", "PFI: fever.")
    sec = T.parse_sections(r)
    assert [T.normalize_ws(s) for s in sec["impression"]] == ["old impression.", "final impression."]
    assert [T.normalize_ws(s) for s in sec["findings"]] == ["first findings.", "second findings."]
    assert T.normalize_ws(sec["indication"][0]) == "cough."
    assert [T.normalize_ws(s) for s in sec["history"]] == ["smoker.", "fever."]
    assert T.normalize_ws(sec["comparison"][0]) == "none."
    assert T.cxr_report_text(r) == "second findings. final impression."
    assert T.normalize_section_name("REFERENCE EXAM") == "comparison"
    assert T.normalize_section_name("CLINICAL INDICATION") == "indication"
    assert T.normalize_section_name("CLINICAL INFORMATION") == "history"
    assert T.normalize_section_name("FINDINGS AND IMPRESSION") == "impression"
    assert T.normalize_section_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"


def test_report_without_findings_or_impression():
    r = "                                 FINAL REPORT\n" + _report(
        "EXAMINATION:  CHEST (PORTABLE AP)", "", "INDICATION:  line placement", "",
        "Right IJ line ends in the SVC.", "", "No pneumothorax.")
    assert T.cxr_report_text(r) is None
    sec = T.parse_sections(r)
    assert "last_paragraph" in sec  # the official fallback after the first blank line of the last section
    assert "No pneumothorax." in sec["last_paragraph"][0]
    # empty FINDINGS / IMPRESSION sections are dropped, not returned as ""
    r2 = "\n" + _report("FINDINGS: ", "", "IMPRESSION: ")
    assert T.cxr_report_text(r2) is None
    assert T.parse_sections("no headers at all") == {"full report": ["no headers at all"]}


def test_empty_and_unreadable_reports(tmp_path):
    (tmp_path / "s1.txt").write_bytes(b"")
    (tmp_path / "s2.txt").write_bytes(b" \n \n")
    for name, msg in (("s1.txt", "empty"), ("s2.txt", "empty"), ("s4.txt", "cannot read")):
        with pytest.raises(DataError, match=msg) as e:
            T.read_report(tmp_path / name)
        assert e.value.file.endswith(name)


def test_stray_non_utf8_byte_keeps_the_report_and_is_counted(tmp_path):
    p = tmp_path / "s3.txt"
    p.write_bytes(b" FINDINGS: caf\xe9 au lait.\r\n IMPRESSION: normal.\n")
    q = QualityLog()
    assert T.read_report(p, q) == " FINDINGS: caf\u00e9 au lait.\n IMPRESSION: normal.\n"
    assert T.cxr_report_text(T.read_report(p)) == "caf\u00e9 au lait. normal."
    row = q.to_frame().iloc[0]
    assert (row["dataset"], row["stage"], row["action"], row["records"]) == ("mimic_cxr", "text", "kept", 1)
    assert row["examples"] == str(p)
    p.write_bytes(b" FINDINGS: clear.\n")
    T.read_report(p, q)
    assert q.count() == 1                                              # valid UTF-8 is not counted
    (tmp_path / "s5.txt").write_bytes(b"\r\n FINDINGS: ok.\r\n \r\n IMPRESSION: fine.\r\n")
    assert T.cxr_report_text(path=tmp_path / "s5.txt") == "ok. fine."


def test_openi_text():
    assert T.openi_text("No  effusion", "Normal chest x-XXXX.") == "No effusion. Normal chest x-XXXX."
    assert T.openi_text(None, "Normal.") == "Normal."
    assert T.openi_text(float("nan"), "  ") is None


# ---------------------------------------------------------------- generic helpers

def test_truncate_words():
    words = [f"w{i}" for i in range(150)]
    out = T.truncate_words("  ".join(words), 100)
    assert out.split() == words[:100] and out == " ".join(words[:100])
    assert T.truncate_words("a b", 100) == "a b"
    assert T.truncate_words(None) is None


def test_normalize_for_identity():
    assert T.normalize_for_identity(" No  acute\nprocess. ", "lower_ws") == "no acute process."
    assert T.normalize_for_identity("No acute", "exact") == "No acute"
    assert T.normalize_for_identity("A b", "lower_ws") == T.normalize_for_identity("a  B", "lower_ws")
    with pytest.raises(ValueError):
        T.normalize_for_identity("x", "fuzzy")


# ---------------------------------------------------------------- Table A.2

def test_ecg_text_templates():
    assert T.ecg_text([]) is None
    assert T.ecg_text([None, "", float("nan")]) is None
    assert T.ecg_text(["Sinus rhythm."]) == "ECG presents Sinus rhythm."
    assert T.ecg_text(["Sinus rhythm", None, "Left axis deviation.", "", "Abnormal ECG"]) == (
        "ECG presents Sinus rhythm. Additional findings include the following: Left axis deviation, "
        "Abnormal ECG.")
    stmts = [f"s{i}" for i in range(18)]
    assert T.ecg_text(stmts).endswith(": " + ", ".join(stmts[1:]) + ".")
    note = "Sinus rhythm.  Compared to the previous tracing\nno change."
    assert T.ecg_text(["Sinus rhythm"], note) == "Sinus rhythm. Compared to the previous tracing no change."
    assert T.ecg_text(["Sinus rhythm"], note, source="machine") == "ECG presents Sinus rhythm."
    assert T.ecg_text(["Sinus rhythm"], "  ") == "ECG presents Sinus rhythm."
    with pytest.raises(ValueError):
        T.ecg_text(["x"], source="note")


def test_demographics_text():
    assert T.demographics_text("F", 52, "URGENT", "TRANSFER FROM HOSPITAL") == (
        "Female patient, who is at the age of 52, was admitted as URGENT. Location: TRANSFER FROM HOSPITAL.")
    assert T.demographics_text("M", 91.0, "EW EMER.", "EMERGENCY ROOM") == (
        "Male patient, who is at the age of 91, was admitted as EW EMER. Location: EMERGENCY ROOM.")
    assert T.demographics_text(None, float("nan"), "", None) == (
        "Unknown patient, who is at the age of unknown, was admitted as unknown. Location: unknown.")


# ---------------------------------------------------------------- Table A.3

POSITIVE = {  # one example sentence per listed phrase (case varied on purpose)
    "NORM": ["Normal ECG", "No issues found.", "normal EKG", "Normal heart tracing", "QRS within normal limits"],
    "HYP": ["Left ventricular hypertrophy", "Left atrial enlargement", "LVH with repolarization abnormality",
            "LAO", "Right ventricular overload", "Biatrial enlargement"],
    "STTC": ["Inferior ST elevation", "Lateral T wave changes", "Nonspecific T abnormalities, lateral leads",
             "Anterolateral ST changes", "Diffuse T changes", "Ventricular premature complex",
             "Sinus rhythm with VPC", "Sinus rhythm with PVC(s)", "Minor ST change"],
    "MI": ["Myocardial ischemia", "Inferior infarct, age undetermined", "Anterior infarct - age undetermined",
           "Septal infarct"],
    "CD": ["1st degree A-V block", "Sinus rhythm with PACs", "Prolonged PR interval",
           "Intraventricular conduction delay", "Left axis deviation", "Right bundle branch block",
           "Electronic ventricular pacemaker", "Atrial pacing", "rBB", "LAFB", "PVC"],
}


@pytest.mark.parametrize("cls,sentence", [(c, s) for c, ss in POSITIVE.items() for s in ss])
def test_each_class_phrase(cls, sentence):
    assert cls in T.label_ecg(sentence)


def test_every_listed_phrase_has_an_example():
    for cls, phrases in T.ECG_CLASS_PHRASES.items():
        for p in phrases:
            assert any(T.phrase_pattern(p).search(s) for s in POSITIVE[cls]), (cls, p)


@pytest.mark.parametrize("phrase", T.ECG_DISALLOWED)
def test_each_disallowed_phrase_drops(phrase):
    assert T.label_ecg(f"Sinus rhythm. Normal ECG. {phrase.upper()} noted.") is None
    assert T.label_ecg(f"{phrase}") is None


def test_class_sets_and_unlabelled():
    assert T.label_ecg("Sinus rhythm") == set()
    assert T.label_ecg(None) == set()
    assert T.label_ecg("Sinus rhythm with PVC(s). LVH. Septal infarct") == {"STTC", "CD", "HYP", "MI"}
    assert T.label_ecg("Normal ECG") == {"NORM"}


@pytest.mark.parametrize("sentence,cls,expected", [
    ("Abnormal ECG", "NORM", False),             # "normal ecg" must start at a word
    ("Otherwise normal ECG", "NORM", True),
    ("normal ECGs", "NORM", True),
    ("Sinus rhythm, pacemaker capacity low", "CD", True),   # "pacemaker" IS a CD phrase
    ("Reduced capacity", "CD", False),          # PAC inside capacity
    ("Paced rhythm", "CD", False),              # PAC + ed is not PAC
    ("Frequent PACs", "CD", True),
    ("PVCs", "STTC", True),
    ("PVCs", "CD", True),
    ("RBBB", "CD", False),                       # rBB is matched as a whole word only
    ("LAFB+RBBB", "CD", True),
    ("LAOX", "HYP", False),
    ("LVHs", "HYP", True),
    ("VPCs", "STTC", True),
    ("Inferior infarction", "MI", True),         # long last word: suffixes allowed
    ("ST-T changes", "STTC", True),              # "T changes" starts after the hyphen
    ("ST changes", "STTC", True),
])
def test_whole_word_edge_cases(sentence, cls, expected):
    assert (cls in (T.label_ecg(sentence) or set())) is expected


@pytest.mark.parametrize("sentence,dropped", [
    ("Terror of the night", False),              # "error" does not fire inside another word
    ("Lead errors detected", True),
    ("Possible right atrial abnormality", False),  # "possible" is not listed, "possibly" is
    ("Possibly abnormal", True),
    ("Borderline ECG", True),
    ("Warning:  data quality", True),
])
def test_disallowed_edge_cases(sentence, dropped):
    assert (T.label_ecg(sentence) is None) is dropped


def test_ecg_label_frame():
    s = pd.Series(["Normal ECG", "Borderline ECG", "Sinus rhythm", "LVH with PVC"], index=[10, 11, 12, 13])
    df = T.ecg_label_frame(s)
    assert list(df.columns) == ["NORM", "MI", "STTC", "CD", "HYP", "dropped", "labelled"]
    assert list(df.index) == [10, 11, 12, 13]
    assert df.loc[10, "NORM"] == 1 and df.loc[10].iloc[1:5].sum() == 0
    assert bool(df.loc[11, "dropped"]) and df.loc[11].iloc[:5].sum() == 0 and not df.loc[11, "labelled"]
    assert not df.loc[12, "labelled"] and not df.loc[12, "dropped"]
    assert df.loc[13, ["HYP", "STTC", "CD"]].tolist() == [1, 1, 1] and df.loc[13, "MI"] == 0
    assert df["NORM"].dtype == "int8"
