"""EHR-only and CXR-only patients (generator 1.3.0, latent.make_sources): drawn from their own streams and appended,
so every row 1.2.0 wrote is unchanged; MEDCSP's two sources then overlap in part (MEDCSP.md "Sources, records,
times", "What the synthetic cohort must carry").

Everything runs on the MIMIC writers alone (``synth.write_mimic``, 20 base patients, 48 px images: ~1 s a cohort);
the smoke cohort's sources, time gaps and linking are checked in test_synth.py.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medbind_lib.medcsp.records import source_overlap
from medbind_lib.synth import latent, write_mimic
from medbind_lib.synth.common import STREAMS, disjoint_ids, rng_for

N, SIZE, FE, FC = 20, 48, 0.5, 0.3                   # 20 base, 10 EHR-only, 6 CXR-only patients

# sha256 and length of the decompressed tables of the base cohort (no EHR-only / CXR-only patients) for
# make_cohort(seed 0, 20 patients), images of 48 px (streams mimic_cxr, mimic_ecg, mimic_iv, mimic_icu, seed 0):
# as generator 1.2.0 wrote them, except icustays, the ICU events, labs and notes, re-drawn once in 1.4.0, and the ICU
# events and labs again in 1.5.0 (ARF / shock intercepts at MEDCSP's Table 4 prevalences)
GOLDEN_BASE = {
    "cxr/IMAGE_FILENAMES": ("b69127f2348ddb45500ddf4a734cd77c1a5e47929c1e6d96fac77fb9b2d48cab", 6004),
    "cxr/mimic-cxr-2.0.0-chexpert.csv.gz": ("5c8532d55b11783c4d3d071ecda7f9bd1cc497ec1bff748e74175cc0776a0861", 2527),
    "cxr/mimic-cxr-2.0.0-metadata.csv.gz": ("e1a6f62ae4bd7536277025f72bebd4f957a5dea0ed25e553dbb9d7fb47733e2b", 11695),
    "cxr/mimic-cxr-2.0.0-negbio.csv.gz": ("495a8c067944e38081444fa7f7e669b5639d289d70445b36c953101e4b71e629", 2524),
    "cxr/mimic-cxr-2.0.0-split.csv.gz": ("20bcae7cbfa28a40e98a5d0d2f29dc39a0c3aa94f2b0b2fe55cb8b5a582a250a", 5284),
    "ecg/RECORDS": ("b9395a19ba2758f61f36bbd2f8502da0133366883d9d510566c5de469ccb1b2f", 234),
    "ecg/machine_measurements.csv": ("5d29f932d0925b3d3c20f0dc5e701e1c1b01e07f890baa6e2bca944da6099f5c", 10313),
    "ecg/record_list.csv": ("b2d9e7b68605a8771df48e35a5d340bf0d3e687abf47558e8435aa33e0d94745", 4620),
    "ecg/waveform_note_links.csv": ("3681248d8293a4f46065d3976a53c91b2af9c4359766c54e1853932b4b50d017", 1304),
    "iv/hosp/admissions.csv.gz": ("f74bf7f4bb432073e76c958cb578ec0e861af30ec529bea5ff936a1b0b2ca8c7", 6097),
    "iv/hosp/d_icd_diagnoses.csv.gz": ("120011494e97dc390a01dda42f831d76c0c02ba15491b753cf03cf33f20b746a", 1842),
    "iv/hosp/d_labitems.csv.gz": ("0ad6b8c24c4ca5aa5147d4940cb01fb7793f4e42cec0310758a8b4a488693d03", 443),
    "iv/hosp/diagnoses_icd.csv.gz": ("87807b1c252cf5b517fbed0c46683fa949a86ad4433de2861bfb011bc8f44af7", 3100),
    "iv/hosp/labevents.csv.gz": ("c16356195669e29ba4c3f04e701e6dd3a0ffe8df9e52036e87805ae90ffc491a", 156853),
    "iv/hosp/patients.csv.gz": ("f29230d9a1f56c7cf3d828bc07a3ed287e0768b51a0b2a98a99a1274c8e5679b", 733),
    "iv/hosp/prescriptions.csv.gz": ("3826d3d32697aebcee2d6a7dce71ca0ef77d4cb1371b58d7561e7c3d0b0de794", 19817),
    "iv/icu/chartevents.csv.gz": ("27c08eb13c800ce658032cfb50b3066dcba5d165ed02bfb384298f46210fca05", 183477),
    "iv/icu/d_items.csv.gz": ("6847856a2249ba0146a3750b82be2ef0f8dd513c71aba9c8c3abd149815e4954", 1773),
    "iv/icu/icustays.csv.gz": ("0b25560b224e24054499415346fdf79ab2f3b136fb3c1417e291503d8a678488", 1366),
    "iv/icu/inputevents.csv.gz": ("d77a65bf3194f4847fc37793c828105ef0d9e4ce070b265504e9d2387bb2d310", 3007),
    "iv/icu/outputevents.csv.gz": ("0398b618abda93d898a6044e7b333a510c7cbd64d8940d5c0d30ae57700c4290", 24565),
    "iv/icu/procedureevents.csv.gz": ("0b9d6cc1b8884f9772c85027dbcf71195e81c91a6a759f75d4cbefa8af90cc1e", 268),
    "note/note/discharge.csv.gz": ("62fe3e51ebf1e7ecf5774775bd6fa1ee6571aa7ba4d8b59024fc1226563e1b84", 43194),
}
# per-record files of the same cohort: (sha256 over sorted (path, sha256 of file), number of files)
GOLDEN_FILES_BASE = {
    "cxr/files/*/*/*.txt": ("e6b8077adb18a152c7528833d412f8b68c02781717f08aaa90d3c26b09ccf52f", 49),
    "ecg/files/*/*/*/*.hea": ("dc894a53cbca25d2dc8c6b7d476cfd236aa77d75705f3f4716210c59079d5066", 52),
    "ecg/files/*/*/*/*.dat": ("aeb23383d2fc5ed9beacce7a3ecb45ea4b2e520e19e258037905cb43b6bbc76e", 52),
}
DICTIONARIES = ("iv/hosp/d_icd_diagnoses.csv.gz", "iv/hosp/d_labitems.csv.gz", "iv/icu/d_items.csv.gz")
# event tables of ~10 % of ICU stays (vasopressors, ventilation: MEDCSP's Table 4 prevalences): appended rows may be none
RARE_EVENTS = ("iv/icu/inputevents.csv.gz", "iv/icu/procedureevents.csv.gz")


def _paths(root: Path) -> dict:
    return {"mimic_cxr_root": root / "cxr", "mimic_cxr_reports_root": root / "cxr", "mimic_ecg_root": root / "ecg",
            "mimic_iv_root": root / "iv", "mimic_note_root": root / "note"}


def _write(root: Path, fe: float, fc: float, seed: int = 0):
    return write_mimic(_paths(root), seed, N, SIZE, fe, fc)


def _text(root: Path, rel: str) -> bytes:
    b = (root / rel).read_bytes()
    return gzip.decompress(b) if rel.endswith(".gz") else b


def _agg(root: Path, pattern: str) -> tuple[str, int]:
    h, files = hashlib.sha256(), sorted(root.glob(pattern))
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest(), len(files)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    src, truth, counts = _write(root, 0.0, 0.0)
    return root, src, truth, counts


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    src, truth, counts = _write(root, FE, FC)
    return root, src, truth, counts


def _read(root: Path, rel: str, **kw) -> pd.DataFrame:
    return pd.read_csv(root / rel, **kw)


def _groups(src) -> tuple[set, set, set]:
    return (set(src.base.patients.subject_id), set(src.ehr_only.patients.subject_id),
            set(src.cxr_only.patients.subject_id))


# --- nothing written before changes ---------------------------------------------------------------------------
def test_no_extra_patients_is_generator_1_2_0(plain):
    root, src, _, _ = plain
    assert src.ehr_only is None and src.cxr_only is None
    for rel, (h, n) in GOLDEN_BASE.items():
        b = _text(root, rel)
        assert (hashlib.sha256(b).hexdigest(), len(b)) == (h, n), rel
    for pattern, want in GOLDEN_FILES_BASE.items():
        assert _agg(root, pattern) == want, pattern


def test_extra_patients_only_append(plain, mixed):
    """Tables gain rows after the old bytes; every old file (images, reports, ECGs) is byte-identical."""
    (a, *_), (b, *_) = plain, mixed
    for rel in GOLDEN_BASE:
        old, new = _text(a, rel), _text(b, rel)
        if rel in DICTIONARIES or rel.startswith("ecg/"):
            assert new == old, rel
        elif rel in RARE_EVENTS and len(new) == len(old):      # the 10 EHR-only patients may have no such event
            assert new == old, rel
        else:
            assert new.startswith(old) and len(new) > len(old), rel
            assert new[len(old):].count(b"\n") >= 1 and not new[len(old):].startswith(old.split(b"\n")[0]), rel
    fa, fb = _files(a), _files(b)
    per_record = {k: v for k, v in fa.items() if "/files/" in k}
    assert len(per_record) > 150 and all(fb[k] == v for k, v in per_record.items())
    new_files = set(fb) - set(fa)
    cxr_only = {str(s) for s in mixed[1].cxr_only.patients.subject_id}
    assert new_files and all(k.startswith("cxr/files/") for k in new_files)
    assert {k.split("/")[3][1:] for k in new_files} == cxr_only                    # cxr/files/pXX/pSID/...


def test_base_latent_state_unchanged():
    base = latent.make_cohort(rng_for(0, "latent"), 30)
    src = latent.make_sources(0, 30, 1.0, 1.0)
    for name in ("patients", "admissions", "visits"):
        pd.testing.assert_frame_equal(getattr(src.base, name), getattr(base, name))


# --- the groups -----------------------------------------------------------------------------------------------
def test_sizes_follow_the_fractions():
    assert latent.source_sizes(60, 0.5, 0.2) == (30, 12)
    assert latent.source_sizes(600, 0.75, 0.15) == (450, 90)
    assert latent.source_sizes(5, 0.1, 0.3) == (1, 2)                          # half up
    assert latent.source_sizes(20, 0, 0) == (0, 0)
    src = latent.make_sources(1, 40, 0.25, 0.5)
    assert (len(src.ehr_only.patients), len(src.cxr_only.patients)) == (10, 20)


def test_counts_per_source(mixed):
    """From the files: CXR-only = the CXR-only group exactly; EHR-only = the EHR-only group + base patients
    without a CXR; both = base patients with a CXR."""
    root, src, _, counts = mixed
    base, ehr, cxr = _groups(src)
    assert (len(base), len(ehr), len(cxr)) == (N, round(FE * N), round(FC * N))
    adm = _read(root, "iv/hosp/admissions.csv.gz")
    meta = _read(root, "cxr/mimic-cxr-2.0.0-metadata.csv.gz")
    ecg = _read(root, "ecg/record_list.csv")
    e, c, g = set(adm.subject_id), set(meta.subject_id), set(ecg.subject_id)
    base_cxr = set(src.base.visits.loc[src.base.visits.cxr, "subject_id"])
    assert c - e == cxr and e & c == base_cxr and e - c == ehr | (base - base_cxr)
    assert g <= base and e == base | ehr and c == base_cxr | cxr
    ov = source_overlap(adm, meta)
    assert ov["both"] == len(base_cxr) and ov["ehr_patients"] == N + len(ehr)
    assert ov["pct_of_ehr"] == pytest.approx(100 * len(base_cxr) / (N + len(ehr)))
    assert ov["pct_of_cxr"] == pytest.approx(100 * len(base_cxr) / (len(base_cxr) + len(cxr)))
    assert counts["admissions"] == len(adm) == len(src.base.admissions) + len(src.ehr_only.admissions)


def test_cxr_only_patients(mixed):
    root, src, truth, _ = mixed
    _, _, cxr = _groups(src)
    for rel in ("iv/hosp/patients.csv.gz", "iv/hosp/admissions.csv.gz", "iv/hosp/diagnoses_icd.csv.gz",
                "iv/hosp/prescriptions.csv.gz", "iv/hosp/labevents.csv.gz", "iv/icu/icustays.csv.gz",
                "iv/icu/chartevents.csv.gz", "iv/icu/outputevents.csv.gz", "note/note/discharge.csv.gz",
                "ecg/record_list.csv", "ecg/machine_measurements.csv"):
        assert not set(_read(root, rel, usecols=["subject_id"]).subject_id) & cxr, rel
    meta = _read(root, "cxr/mimic-cxr-2.0.0-metadata.csv.gz", dtype={"StudyTime": str})
    mine = meta[meta.subject_id.isin(cxr)]
    assert set(mine.subject_id) == cxr and mine.StudyDate.notna().all() and mine.StudyTime.notna().all()
    assert set(mine.ViewPosition) <= {"AP", "PA", "LATERAL"}                    # base oddities stay unique
    t = pd.to_datetime(mine.StudyDate.astype(str) + " " + mine.StudyTime.map(lambda x: f"{int(float(x)):06}"),
                       format="%Y%m%d %H%M%S")
    assert t.notna().all()
    split = _read(root, "cxr/mimic-cxr-2.0.0-split.csv.gz")
    assert set(split.subject_id[split.subject_id.isin(cxr)]) == cxr
    rec = truth[(truth.dataset == "mimic_cxr") & truth.subject_id.astype(int).isin(cxr)]
    assert len(rec) == len(mine) and rec.hadm_id.isna().all() and rec.time.notna().all()
    for s in mine.drop_duplicates("study_id").itertuples():
        sid = str(s.subject_id)
        report = (root / "cxr" / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{s.study_id}.txt").read_text()
        assert "FINAL REPORT" in report and "IMPRESSION:" in report
    v = src.cxr_only.visits
    assert v.cxr.all() and not v.ecg.any() and v.hadm_id.isna().all()
    assert len(src.cxr_only.admissions) == 0


def test_ehr_only_patients(mixed):
    root, src, _, counts = mixed
    _, ehr, _ = _groups(src)
    assert not set(_read(root, "cxr/mimic-cxr-2.0.0-metadata.csv.gz").subject_id) & ehr
    assert not set(_read(root, "ecg/record_list.csv").subject_id) & ehr
    assert not (set(src.base.visits.subject_id) | set(src.cxr_only.visits.subject_id)) & ehr
    hadm = set(src.ehr_only.admissions.hadm_id)
    adm = _read(root, "iv/hosp/admissions.csv.gz")
    assert set(adm.hadm_id[adm.subject_id.isin(ehr)]) == hadm
    assert set(_read(root, "iv/hosp/patients.csv.gz").subject_id) >= ehr
    for rel in ("iv/hosp/diagnoses_icd.csv.gz", "iv/hosp/prescriptions.csv.gz", "iv/hosp/labevents.csv.gz",
                "note/note/discharge.csv.gz"):
        df = _read(root, rel, usecols=["subject_id", "hadm_id"])
        mine = df[df.subject_id.isin(ehr)]
        assert set(mine.hadm_id) <= hadm and len(set(mine.hadm_id)) >= 0.8 * len(hadm), rel
    stays = _read(root, "iv/icu/icustays.csv.gz")
    mine = stays[stays.subject_id.isin(ehr)]
    assert len(mine) and set(mine.hadm_id) <= hadm
    ce = _read(root, "iv/icu/chartevents.csv.gz", usecols=["subject_id", "stay_id"])
    assert set(ce.stay_id[ce.subject_id.isin(ehr)]) == set(mine.stay_id)


def test_ids_unique(mixed):
    root, src, truth, _ = mixed
    ids = np.concatenate([g.patients.subject_id.to_numpy() for g in (src.base, src.ehr_only, src.cxr_only)])
    assert len(set(ids)) == len(ids) and all(10_000_000 <= x < 20_000_000 for x in ids)
    assert _read(root, "iv/hosp/patients.csv.gz").subject_id.is_unique
    assert _read(root, "iv/hosp/admissions.csv.gz").hadm_id.is_unique
    assert _read(root, "iv/icu/icustays.csv.gz").stay_id.is_unique
    assert _read(root, "note/note/discharge.csv.gz").note_id.is_unique
    assert _read(root, "iv/hosp/prescriptions.csv.gz").pharmacy_id.is_unique
    lab = _read(root, "iv/hosp/labevents.csv.gz", usecols=["labevent_id", "specimen_id", "hadm_id"])
    assert lab.labevent_id.is_unique and (lab.groupby("specimen_id").hadm_id.nunique() == 1).all()
    meta = _read(root, "cxr/mimic-cxr-2.0.0-metadata.csv.gz")
    assert meta.dicom_id.is_unique and (meta.groupby("study_id").subject_id.nunique() == 1).all()
    base_orders = set()
    for rel in ("iv/icu/procedureevents.csv.gz", "iv/icu/inputevents.csv.gz"):
        df = _read(root, rel)
        base_orders |= set(df.orderid[~df.subject_id.isin(src.ehr_only.patients.subject_id)])
    for rel in ("iv/icu/procedureevents.csv.gz", "iv/icu/inputevents.csv.gz"):
        df = _read(root, rel)
        extra = df[df.subject_id.isin(src.ehr_only.patients.subject_id)]
        assert not set(extra.orderid) & base_orders and set(extra.linkorderid) <= set(extra.orderid)


def test_disjoint_ids():
    rng = np.random.default_rng(0)
    ids = np.array([5, 6, 7, 6, 9, 5])
    out = disjoint_ids(rng, ids, [6, 9, 1], 0, 12)
    assert out[0] == out[5] == 5 and out[2] == 7 and out[1] == out[3]          # by value
    assert not set(out) & {6, 9, 1} and len(set(out)) == 4 and out.max() < 12
    before = rng.bit_generator.state
    assert (disjoint_ids(rng, ids, [100], 0, 12) == ids).all() and rng.bit_generator.state == before


# --- determinism and independence -----------------------------------------------------------------------------
def test_streams_are_new():
    new = ("ehr_only", "cxr_only", "ehr_only_iv", "ehr_only_icu", "cxr_only_cxr")
    assert len(set(STREAMS.values())) == len(STREAMS) and all(k in STREAMS for k in new)


def test_same_seed_same_bytes(mixed, tmp_path):
    root = mixed[0]
    _write(tmp_path, FE, FC)
    assert _files(tmp_path) == _files(root)


def test_groups_are_independent():
    a = latent.make_sources(2, 30, 0.5, 0.4)
    b = latent.make_sources(2, 30, 0.5, 0.0)
    c = latent.make_sources(2, 30, 0.0, 0.4)
    d = latent.make_sources(3, 30, 0.5, 0.4)
    for x, y in ((a.ehr_only, b.ehr_only), (a.cxr_only, c.cxr_only)):
        for name in ("patients", "admissions", "visits"):
            pd.testing.assert_frame_equal(getattr(x, name), getattr(y, name))
    assert b.cxr_only is None and c.ehr_only is None
    assert not set(a.ehr_only.patients.subject_id) & set(d.ehr_only.patients.subject_id)


# --- the same latent model ----------------------------------------------------------------------------------
def test_extra_patients_carry_signal(mixed):
    """CXR findings of CXR-only patients follow their conditions; EHR-only diagnoses follow theirs."""
    root, src, truth, _ = mixed
    big = latent.make_sources(0, 300, 1.0, 1.0)
    for g, frame in ((big.ehr_only, big.ehr_only.admissions), (big.cxr_only, big.cxr_only.visits)):
        f = frame.merge(g.patients[["subject_id", "enlarged"]], on="subject_id")
        assert f[f.enlarged].edema.mean() > f[~f.enlarged].edema.mean() + 0.15
    assert 0.2 < big.cxr_only.patients.healthy.mean() < 0.55
    # written files: cardiomegaly in the CXR-only studies' findings iff the patient's heart is enlarged
    enl = src.cxr_only.patients.set_index("subject_id").enlarged
    rec = truth[(truth.dataset == "mimic_cxr") & truth.subject_id.astype(int).isin(enl.index)]
    assert (rec.findings.str.contains("cardiomegaly") == rec.subject_id.astype(int).map(enl)).all()
    # EHR-only diagnoses: cardiomegaly codes (I517 / 4293) iff enlarged
    dx = _read(root, "iv/hosp/diagnoses_icd.csv.gz", dtype={"icd_code": str})
    enl = src.ehr_only.patients.set_index("subject_id").enlarged
    dx = dx[dx.subject_id.isin(enl.index)]
    coded = dx.groupby("subject_id").icd_code.agg(lambda c: bool({"I517", "4293"} & set(c)))
    assert (coded == enl.loc[coded.index]).all()
