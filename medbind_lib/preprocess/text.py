"""Texts of the three sources: MIMIC-CXR report sections, the Table A.2 ECG and demographics templates,
the Table A.3 rule-based ECG labeler, word truncation and the "identical text" key used by TMCL.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..constants import ECG_SUPERCLASSES
from ..errors import DataError
from ..io import decode_text


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT \
        or (isinstance(v, str) and v.strip() == "")


def normalize_ws(text: str) -> str:
    """Collapse every whitespace run (newlines, the reports' leading spaces) to one space; strip."""
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------------
# MIMIC-CXR sections: a re-implementation of the logic of the official parser (MIT-LCP mimic-cxr
# txt/section_parser.py) as docs/DATASETS.md (MIMIC-CXR) summarises.

_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s", re.DOTALL)
# lower-cased header -> normalised name (the frequent headers and the typos seen in MIMIC-CXR)
SECTION_NAME_MAP = {
    "preamble": "preamble", "impression": "impression", "impressions": "impression",
    "conclusion": "impression", "conclusions": "impression", "findings and impression": "impression",
    "findings/impression": "impression", "impression and findings": "impression",
    "impresssion": "impression", "impresson": "impression", "imprssion": "impression",
    "findings": "findings", "finding": "findings", "findngs": "findings", "findins": "findings",
    "chest, two views": "findings", "chest, single view": "findings", "chest (pa and lat)": "findings",
    "comparison": "comparison", "comparisons": "comparison", "comparison exam": "comparison",
    "reference exam": "comparison", "ctr": "comparison", "comparision": "comparison",
    "indication": "indication", "indications": "indication", "reason for exam": "indication",
    "reason for examination": "indication", "clinical indication": "indication",
    "indication for examination": "indication", "reason": "indication",
    "history": "history", "clinical history": "history", "clinical information": "history",
    "patient history": "history", "pfi": "history", "hx": "history",
    "examination": "examination", "exam": "examination", "type of examination": "examination",
    "technique": "technique", "notification": "notification", "addendum": "addendum",
    "recommendation(s)": "recommendations", "recommendation": "recommendations",
    "recommendations": "recommendations", "wet read": "wet read",
}
# headers not in the map: a main section name contained in the header wins (first match, this order)
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
# else headers that describe the whole study ("PA AND LATERAL VIEWS OF THE CHEST") are findings
_FINDINGS_LIKE = re.compile(r"(chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|"
                            r"frontal and|two views|frontal view|pa view|ap view|one view|lateral view|"
                            r"bone window|frontal upright|frontal semi-upright|ribs|pa and lat)")


def normalize_section_name(name: str) -> str:
    """Lower-case header -> canonical name (SECTION_NAME_MAP, then contained main name, then findings-like)."""
    s = name.lower().strip()
    if s in SECTION_NAME_MAP:
        return SECTION_NAME_MAP[s]
    for m in _MAIN_SECTIONS:
        if m in s:
            return m
    return "findings" if _FINDINGS_LIKE.search(s) else s


def section_text(text: str):
    """Split a report into ``(sections, names, starts)`` like the official ``section_text``.

    Text before the first header is ``preamble`` (no header at all: one ``full report`` section). After
    a header, the search for the next header starts past the end of the header's line, so a capitalised
    phrase on the same line cannot open a section. Empty findings/impression sections are removed; if
    neither remains and the last section contains a blank line (``"\\n \\n"``), the text after its first
    blank line is appended as ``last_paragraph``.
    """
    sections, names, starts = [], [], []
    m = _HEADER.search(text, 0)
    if m is None:
        sections, names, starts = [text], ["full report"], [0]
    else:
        sections.append(text[:m.start(1)])
        names.append("preamble")
        starts.append(0)
        while m is not None:
            name = m.group(1)
            begin = m.end()
            skip = text[begin:].find("\n")
            skip = 0 if skip == -1 else skip
            m = _HEADER.search(text, begin + skip)
            end = len(text) if m is None else m.start()
            sections.append(text[begin:end])
            names.append(name)
            starts.append(begin)
    names = [normalize_section_name(n) if n not in ("full report",) else n for n in names]
    for i in reversed(range(len(names))):
        if names[i] in ("impression", "findings") and sections[i].strip() == "":
            del sections[i], names[i], starts[i]
    if "impression" not in names and "findings" not in names and "\n \n" in sections[-1]:
        sections.append("\n \n".join(sections[-1].split("\n \n")[1:]))
        names.append("last_paragraph")
        starts.append(starts[-1] + len(sections[-2]))
    return sections, names, starts


def parse_sections(report_text: str) -> dict[str, list[str]]:
    """Section name -> list of that section's raw texts in report order (take ``[-1]`` for the last
    occurrence, as the official ``create_section_files.py`` does). The per-study hand-curated overrides
    of the official script (``custom_mimic_cxr_rules``) are not reproduced."""
    out: dict[str, list[str]] = {}
    for sec, name in zip(*section_text(report_text)[:2]):
        out.setdefault(name, []).append(sec)
    return out


_DELIMITER_LINE = re.compile(r"^[ \t]*_{5,}[ \t]*$", re.MULTILINE)  # addendum separator, not the ___ PHI mark


def clean_section(text: str) -> str:
    """Drop addendum delimiter lines (underscores only) and normalise whitespace; ``___`` PHI stays."""
    return normalize_ws(_DELIMITER_LINE.sub(" ", text))


def join_sentences(parts: Iterable[str]) -> str | None:
    """Join non-empty parts with a space, adding a period where a part lacks final punctuation, so that
    FINDINGS without a closing period do not run into IMPRESSION."""
    parts = [p for p in (normalize_ws(x) for x in parts if not _missing(x)) if p]
    if not parts:
        return None
    return " ".join(p if p[-1] in ".!?" or i == len(parts) - 1 else p + "." for i, p in enumerate(parts))


def read_report(path, quality=None, dataset: str = "mimic_cxr") -> str:
    """Read a report (MIMIC-CXR reports are ASCII). CRLF -> LF.

    Bytes that are not UTF-8 are read as latin-1 and the file is counted in ``quality`` (stage ``text``),
    so one stray byte does not drop the report (``io.decode_text``). Empty (or whitespace-only) and
    unreadable files raise DataError naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read report ({e.strerror or e})") from e
    text = decode_text(raw, path, quality, dataset, "text")
    if not text.strip():
        raise DataError(path, "empty report")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def cxr_report_text(report_text: str | None = None, sections=("findings", "impression"), path=None) -> str | None:
    """MEDBind CXR text: the LAST occurrence of each requested section (default FINDINGS then IMPRESSION),
    cleaned (``clean_section``) and joined (``join_sentences``). None when none of them exists: the
    caller counts "report without FINDINGS/IMPRESSION". ``report_text=None`` reads ``path``.
    A newline is prepended when missing, so a header on the very first line is still recognised (the
    official parser, fed the raw file, would treat it as preamble; real reports start with FINAL REPORT).
    """
    if report_text is None:
        if path is None:
            raise ValueError("cxr_report_text needs report_text or path")
        report_text = read_report(path)
    if not report_text.startswith("\n"):
        report_text = "\n" + report_text
    parsed = parse_sections(report_text)
    parts = [clean_section(parsed[s][-1]) for s in sections if s in parsed]
    return join_sentences(parts)


def openi_text(findings, impression) -> str | None:
    """Open-I text = FINDINGS + IMPRESSION like MIMIC-CXR (CXR-CLIP picks the longer one instead); the
    de-identification mark XXXX is kept; None when both are missing."""
    return join_sentences([findings, impression])


# ----------------------------------------------------------------------------------------------------
# Generic text helpers

def truncate_words(text: str | None, n: int = 100) -> str | None:
    """First ``n`` whitespace-separated words (paper: 100), joined by single spaces."""
    if text is None:
        return None
    return " ".join(str(text).split()[:n])


def normalize_for_identity(text: str | None, mode: str = "lower_ws") -> str | None:
    """The key that decides whether two texts are "identical" (TMCL positives, retrieval hits):
    ``exact`` = the text itself, ``lower_ws`` = lower-case with whitespace runs collapsed."""
    if text is None:
        return None
    if mode == "exact":
        return text
    if mode == "lower_ws":
        return normalize_ws(text).lower()
    raise ValueError(f"text_identity must be exact or lower_ws, got {mode!r}")


# ----------------------------------------------------------------------------------------------------
# ECG text (Table A.2)

def _statement(s) -> str:
    return normalize_ws(s).rstrip(" .")


def ecg_text(machine_reports, note: str | None = None, source: str = "note_else_machine") -> str | None:
    """Table A.2: ``"ECG presents {report_0}. Additional findings include the following: {report_1, ...}."``

    - ``note`` (a cardiologist's free-text note) is returned whitespace-normalised, verbatim, when it is
      non-empty and ``source == "note_else_machine"``; ``source == "machine"`` ignores it.
    - Machine statements: missing/empty entries (report_* columns have gaps) are skipped; each statement
      is whitespace-normalised and loses trailing periods; the first fills ``{report_0}``, the others
      are joined with ", " and end with one period.
    - One statement: ``"ECG presents X."`` (no "Additional findings" clause). None at all: None.
    """
    if source not in ("note_else_machine", "machine"):
        raise ValueError(f"ecg_text_source must be note_else_machine or machine, got {source!r}")
    if source == "note_else_machine" and not _missing(note):
        return normalize_ws(note)
    stmts = [s for s in (_statement(r) for r in (machine_reports or []) if not _missing(r)) if s]
    if not stmts:
        return None
    text = f"ECG presents {stmts[0]}."
    if len(stmts) > 1:
        text += " Additional findings include the following: " + ", ".join(stmts[1:]) + "."
    return text


# ----------------------------------------------------------------------------------------------------
# Rule-based ECG labeler (Table A.3)

ECG_DISALLOWED = ("borderline ecg", "poor quality", "without knowing patient", "error", "pediatric",
                  "warning: data quality", "missing lead", "unsuitable for analysis", "motion artifacts",
                  "requires manual review", "technical difficulties", "possibly", "probable")
ECG_CLASS_PHRASES = {
    "NORM": ("normal ecg", "no issues found", "normal ekg", "normal heart tracing", "within normal limits"),
    "HYP": ("hypertrophy", "left atrial enlargement", "LVH", "LAO", "overload", "enlargement"),
    "STTC": ("ST elevation", "T wave changes", "nonspecific T abnormalities", "ST changes", "T changes",
             "ventricular premature complex", "VPC", "PVC", "ST change"),
    "MI": ("myocardial ischemia", "inferior infarct", "anterior infarct", "septal infarct"),
    "CD": ("degree A-V block", "PAC", "prolonged PR interval", "conduction delay", "left axis deviation",
           "bundle branch block", "pacemaker", "atrial pacing", "rBB", "LAFB", "PVC"),
}


def phrase_pattern(phrase: str) -> re.Pattern:
    """Matching rule of the labeler (case-insensitive):

    - a phrase must START at a word boundary (so "normal ecg" never fires inside "abnormal ecg", "PAC"
      never inside "capacity", "error" never inside "terror");
    - whitespace inside a phrase matches any whitespace run; punctuation (A-V, "warning:") is literal;
    - a phrase whose last word is short (<= 4 characters: LVH, LAO, PAC, PVC, VPC, rBB, LAFB, ecg, ekg)
      must also END at a word boundary, allowing a plural "s" (PVCs, PACs, "PVC(s)"): "PAC" does not
      match "pacemaker"/"paced", "rBB" does not match "RBBB";
    - longer last words match as prefixes, so inflections count: "infarct" in "infarction",
      "pacemaker" in "pacemakers", "ST change" in "ST changes", "error" in "errors".
    """
    words = phrase.split()
    body = r"\s+".join(re.escape(w) for w in words)
    tail = r"s?(?![a-z0-9])" if len(words[-1]) <= 4 else ""
    return re.compile(r"(?<![a-z0-9])" + body + tail, re.IGNORECASE)


_DISALLOWED_RE = [(p, phrase_pattern(p)) for p in ECG_DISALLOWED]
_CLASS_RE = {c: [(p, phrase_pattern(p)) for p in ps] for c, ps in ECG_CLASS_PHRASES.items()}


def label_ecg(text: str | None) -> set[str] | None:
    """Table A.3 labels of an ECG text: None = DROP (a disallowed phrase occurs), else the set of
    matched classes among NORM, HYP, STTC, MI, CD (empty = unlabelled). See ``phrase_pattern`` for the
    matching rule. Phrases are applied as listed, so "PVC" yields both STTC and CD. A missing text is
    unlabelled (empty set)."""
    if _missing(text):
        return set()
    if any(r.search(text) for _, r in _DISALLOWED_RE):
        return None
    return {c for c, rs in _CLASS_RE.items() if any(r.search(text) for _, r in rs)}


def ecg_label_frame(texts) -> pd.DataFrame:
    """Multi-hot frame (columns NORM, MI, STTC, CD, HYP as int8) + ``dropped`` (disallowed phrase) +
    ``labelled`` (not dropped and at least one class). Keeps the index of a Series input."""
    index = texts.index if isinstance(texts, pd.Series) else None
    texts = list(texts)
    rows = []
    for t in texts:
        lab = label_ecg(t)
        row = {c: int(lab is not None and c in lab) for c in ECG_SUPERCLASSES}
        row["dropped"] = lab is None
        row["labelled"] = bool(lab)
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*ECG_SUPERCLASSES, "dropped", "labelled"], index=index)
    return df.astype({c: "int8" for c in ECG_SUPERCLASSES} | {"dropped": bool, "labelled": bool})


# ----------------------------------------------------------------------------------------------------
# MIMIC-IV demographics text (Table A.2)

_GENDER = {"F": "Female", "M": "Male", "FEMALE": "Female", "MALE": "Male"}


def demographics_text(gender, anchor_age, admission_type, admission_location) -> str:
    """Table A.2: ``"{gender} patient, who is at the age of {anchor_age}, was admitted as
    {admission_type}. Location: {admission_location}."``

    gender F/M -> Female/Male (other values kept as given); a missing value (None, NaN, "") becomes
    "Unknown" for gender and "unknown" elsewhere; ages print as integers ("52", not "52.0"); trailing
    periods of the categorical values are removed so "EW EMER." does not end in "..".
    """
    g = "Unknown" if _missing(gender) else _GENDER.get(str(gender).strip().upper(), str(gender).strip())
    if _missing(anchor_age):
        age = "unknown"
    else:
        try:
            f = float(anchor_age)
            age = str(int(f)) if f.is_integer() else str(f)
        except (TypeError, ValueError):
            age = str(anchor_age).strip()
    at = "unknown" if _missing(admission_type) else normalize_ws(admission_type).rstrip(".")
    loc = "unknown" if _missing(admission_location) else normalize_ws(admission_location).rstrip(".")
    return f"{g} patient, who is at the age of {age}, was admitted as {at}. Location: {loc}."
