"""Open-I / IU X-ray, evaluation only (split 'test'), in either distribution.

``read(root, quality=None, form="auto", per="image", image_dir=None, frontal_only=True, check_files=False,
drop_empty_text=True)``

* ``xml`` form (NLM originals): ``<root>/ecgen-radiology/N.xml`` (or XML files directly in root), parsed with
  ``xml.etree``: ``AbstractText`` with ``Label`` FINDINGS / IMPRESSION / INDICATION / COMPARISON, ``uId``,
  ``parentImage`` ids (image file ``<id>.png``), MeSH ``major`` terms. The image folder is ``image_dir`` or
  the first of ``<root>/images``, ``<root>/NLMCXR_png``, ``<root>`` that holds a PNG (``<root>/images`` if
  none does). The XML has no per-image projection: ``projection`` is NA, ``frontal_only`` does not apply.
* ``kaggle`` form: ``indiana_reports.csv`` (uid, MeSH, Problems, image, indication, comparison, findings,
  impression) joined on uid with ``indiana_projections.csv`` (uid, filename, projection); images in
  ``images/images_normalized/<filename>``; ``frontal_only`` keeps projection == 'Frontal'.

Columns: common (record_id = image id / file name for ``per="image"``, report id for ``per="report"``;
subject_id = report id, e.g. 'CXR1' or the Kaggle uid as str; path = image file (``per="report"``: the first
image; '' when the report has none); time NaT; split 'test') + report_id, findings, impression, indication,
comparison, text (findings + ' ' + impression, stripped), mesh (list), projection, images (list of ids).

Quality (stage ``text``): reports without FINDINGS, without IMPRESSION, and with neither (dropped when
``drop_empty_text``, else kept with text ''); stage ``images``: reports with no image (no row with
``per="image"``); stage ``files`` (``check_files``): missing image files, excluded. Stray non-UTF-8 bytes
in a UTF-8 XML file are read as latin-1 and the file is counted (stage ``text``, kept); a file that is
still not well-formed XML is a DataError naming it.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import LATIN1_FALLBACK_REASON, check_unique, read_table
from ..quality import QualityLog
from ._common import decode_text, finish_manifest, id_str, quality_or_new, require_dir

DATASET = "openi"
REPORT_COLS = ["uid", "findings", "impression"]
REPORT_OPTIONAL = ["MeSH", "Problems", "image", "indication", "comparison"]


def _num_key(p: Path):
    m = re.match(r"(\d+)", p.stem)
    return (int(m.group(1)) if m else 1 << 60, p.name)


def _xml_root(path: Path, quality: QualityLog | None) -> ET.Element:
    """Parsed XML; if expat rejects the bytes and they are not UTF-8, retry with the stray bytes read as
    latin-1 (counted), so one bad byte in a report does not stop the whole dataset."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read ({e})") from e
    try:
        return ET.fromstring(raw)
    except ET.ParseError as e:
        first = e
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            root = ET.fromstring(decode_text(raw, path, None, DATASET).encode("utf-8"))
        except ET.ParseError:
            pass
        else:
            if quality is not None:
                quality.flag(DATASET, "text", LATIN1_FALLBACK_REASON, records=[str(path)])
            return root
    raise DataError(path, f"not well-formed XML ({first})") from first


def parse_report_xml(path, quality: QualityLog | None = None) -> dict:
    """One NLM report: {report_id, findings, impression, indication, comparison, images, mesh}."""
    path = Path(path)
    root = _xml_root(path, quality)
    sections = {}
    for at in root.iter("AbstractText"):
        label = (at.get("Label") or "").strip().upper()
        if label:
            sections[label] = " ".join("".join(at.itertext()).split())
    uid = root.find("uId")
    rid = uid.get("id") if uid is not None and uid.get("id") else f"CXR{path.stem}"
    return dict(report_id=rid, findings=sections.get("FINDINGS", ""), impression=sections.get("IMPRESSION", ""),
                indication=sections.get("INDICATION", ""), comparison=sections.get("COMPARISON", ""),
                has_findings_tag="FINDINGS" in sections, has_impression_tag="IMPRESSION" in sections,
                images=[pi.get("id") for pi in root.iter("parentImage") if pi.get("id")],
                mesh=[(m.text or "").strip() for m in root.iter("major") if (m.text or "").strip()],
                xml_path=str(path))


def _image_dir(root: Path, image_dir) -> Path:
    if image_dir is not None:
        return Path(image_dir)
    for cand in (root / "images", root / "NLMCXR_png", root):
        if cand.is_dir() and next(cand.glob("*.png"), None) is not None:
            return cand
    return root / "images"


def _text_quality(df: pd.DataFrame, q: QualityLog, drop_empty_text: bool) -> pd.DataFrame:
    for c in ("findings", "impression"):
        df[c] = df[c].fillna("").astype(str).str.strip()
    df["text"] = (df["findings"] + " " + df["impression"]).str.strip()
    q.seen(DATASET, "text", len(df))
    q.flag(DATASET, "text", "report has no FINDINGS (text = impression)",
           records=df.loc[(df["findings"] == "") & (df["impression"] != ""), "report_id"])
    q.flag(DATASET, "text", "report has no IMPRESSION (text = findings)",
           records=df.loc[(df["impression"] == "") & (df["findings"] != ""), "report_id"])
    empty = df["text"] == ""
    log = q.exclude if drop_empty_text else q.flag
    log(DATASET, "text", "report has neither FINDINGS nor IMPRESSION" + (" (dropped)" if drop_empty_text
                                                                       else " (kept, text='')"),
        records=df.loc[empty, "report_id"])
    return df[~empty] if drop_empty_text else df


def _explode(reports: pd.DataFrame, per: str, q: QualityLog) -> pd.DataFrame:
    noimg = reports["images"].map(len) == 0
    q.exclude(DATASET, "images", "report has no image" + (" (no row)" if per == "image" else " (path '')"),
              records=reports.loc[noimg, "report_id"])
    if per == "report":
        out = reports.copy()
        out["record_id"] = out["report_id"]
        out["image_path"] = [p[0] if p else "" for p in out["image_paths"]]
        return out
    if per != "image":
        raise ValueError(f"per must be 'image' or 'report', got {per!r}")
    out = reports[~noimg].copy()
    out["_pair"] = [list(zip(i, p)) for i, p in zip(out["images"], out["image_paths"])]
    out = out.explode("_pair")
    out["record_id"] = out["_pair"].map(lambda t: t[0])
    out["image_path"] = out["_pair"].map(lambda t: t[1])
    return out.drop(columns="_pair")


def read_xml(root, quality: QualityLog | None = None, per: str = "image", image_dir=None,
             check_files: bool = False, drop_empty_text: bool = True) -> pd.DataFrame:
    root = require_dir(root, "Open-I")
    q = quality_or_new(quality)
    xdir = root / "ecgen-radiology" if (root / "ecgen-radiology").is_dir() else root
    files = sorted(xdir.glob("*.xml"), key=_num_key)
    if not files:
        raise DataError(root / "ecgen-radiology", "no report XML files found")
    reports = pd.DataFrame([parse_report_xml(f, q) for f in files])
    check_unique(reports, "report_id", xdir, what="report uId")
    q.seen(DATASET, "read", len(reports))
    idir = _image_dir(root, image_dir)
    reports["image_paths"] = [[str(idir / f"{i}.png") for i in ims] for ims in reports["images"]]
    reports = _text_quality(reports, q, drop_empty_text)
    out = _explode(reports, per, q)
    out["subject_id"] = out["report_id"]
    out["projection"] = None
    return _finish(out, q, check_files)


def read_kaggle_reports(path) -> pd.DataFrame:
    """``indiana_reports.csv`` alone: uid as str, text columns as str ('' when empty), MeSH as a list."""
    t = read_table(path, REPORT_COLS, REPORT_OPTIONAL, dtype={c: str for c in REPORT_COLS + REPORT_OPTIONAL})
    if t["uid"].isna().any():
        raise DataError(path, "empty uid")
    t["uid"] = id_str(t["uid"]).values
    check_unique(t, "uid", path, what="uid")
    for c in REPORT_COLS[1:] + REPORT_OPTIONAL:
        if c in t:
            t[c] = t[c].fillna("").astype(str)
    t["mesh"] = t["MeSH"].map(lambda s: [m.strip() for m in s.split(";") if m.strip()]) if "MeSH" in t \
        else [[] for _ in range(len(t))]
    return t


def read_kaggle(root, quality: QualityLog | None = None, per: str = "image", frontal_only: bool = True,
                check_files: bool = False, drop_empty_text: bool = True) -> pd.DataFrame:
    root = require_dir(root, "Open-I (Kaggle)")
    q = quality_or_new(quality)
    rep_path = root / "indiana_reports.csv"
    if not rep_path.is_file():
        raise DataError(rep_path, "file not found")
    rep = read_kaggle_reports(rep_path)
    proj_path = root / "indiana_projections.csv"
    proj = read_table(proj_path, ["uid", "filename", "projection"], dtype={"uid": str, "filename": str})
    proj["uid"] = id_str(proj["uid"]).values
    check_unique(proj, "filename", proj_path, what="filename")
    q.seen(DATASET, "read", len(rep))
    if frontal_only:
        lat = proj["projection"] != "Frontal"
        q.exclude(DATASET, "projection", "not a Frontal projection", records=proj.loc[lat, "filename"])
        proj = proj[~lat]
    idir = root / "images" / "images_normalized"
    grp = proj.groupby("uid")
    rep["report_id"] = rep["uid"]
    rep["images"] = rep["uid"].map(grp["filename"].agg(list)).map(lambda v: v if isinstance(v, list) else [])
    projections = dict(zip(proj["filename"], proj["projection"]))
    rep["image_paths"] = [[str(idir / f) for f in ims] for ims in rep["images"]]
    rep = _text_quality(rep, q, drop_empty_text)
    out = _explode(rep, per, q)
    out["subject_id"] = out["report_id"]
    out["projection"] = [projections.get(r) if per == "image" else None for r in out["record_id"]]
    return _finish(out, q, check_files)


def _finish(out: pd.DataFrame, q: QualityLog, check_files: bool) -> pd.DataFrame:
    out = out.rename(columns={"image_path": "path"}).reset_index(drop=True)
    if check_files:
        ok = np.array([bool(p) and Path(p).is_file() for p in out["path"]], dtype=bool)
        q.exclude(DATASET, "files", "image file missing", records=out.loc[~ok, "record_id"])
        out = out[ok]
    out["time"] = pd.NaT
    out["split"] = "test"
    keep = ["record_id", "subject_id", "path", "time", "split", "report_id", "findings", "impression",
            "indication", "comparison", "text", "mesh", "projection", "images"]
    return finish_manifest(out[[c for c in keep if c in out.columns]], DATASET)


def read(root, quality: QualityLog | None = None, form: str = "auto", **options) -> pd.DataFrame:
    root = require_dir(root, "Open-I")
    if form == "auto":
        form = "kaggle" if (root / "indiana_reports.csv").is_file() else "xml"
    if form == "xml":
        options.pop("frontal_only", None)
        return read_xml(root, quality, **options)
    if form == "kaggle":
        options.pop("image_dir", None)
        return read_kaggle(root, quality, **options)
    raise ValueError(f"form must be 'auto', 'xml' or 'kaggle', got {form!r}")
