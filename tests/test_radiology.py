"""MEDCSP radiology evaluation (notebook 11): metrics against hand-computed values, vectorised bootstrap
replicates against the loop over resampled rows, and the tables on a hand-made embedding folder."""
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from medbind_lib.reports import radiology as R
from medbind_lib.metrics.binary import auroc_replicates, binary_counts_replicates
from medbind_lib.metrics.bootstrap import percentile_ci, resample_indices
from medbind_lib.metrics.protocol import EvalSettings
from medbind_lib.metrics.retrieval import text_to_image_precision_recall
from medbind_lib.reports.artifacts import Artifacts


def test_precision_recall_f1_hand_computed_and_sklearn():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([1, 0, 1, 1, 0, 0, 0, 0])
    # TP 2, predicted 3, true 4: P 66.7, R 50, F1 = 4 / 7
    got = R.precision_recall_f1(y, p)
    assert got == pytest.approx((200 / 3, 50.0, 400 / 7))
    assert got == pytest.approx((100 * precision_score(y, p), 100 * recall_score(y, p), 100 * f1_score(y, p)))
    pr, rc, f1 = R.precision_recall_f1(y, np.zeros_like(y))      # nothing predicted: precision undefined, F1 0
    assert math.isnan(pr) and rc == 0 and f1 == 0
    assert all(math.isnan(v) for v in R.precision_recall_f1(np.zeros(3), np.zeros(3))[1:])


def test_prf_from_counts_matches_direct():
    rng = np.random.default_rng(1)
    y, p = rng.random(50) < 0.3, rng.random(50) < 0.5
    c = np.array([(y & p).sum(), p.sum(), y.sum()], float)
    assert R.prf_from_counts(c) == pytest.approx(R.precision_recall_f1(y, p))


@pytest.mark.parametrize("groups", [None, "patients"])
def test_vectorised_replicates_equal_the_loop(groups):
    rng = np.random.default_rng(0)
    n = 90
    y = rng.random(n) < 0.25
    s = np.round(rng.normal(size=n) + y, 1)                      # ties on purpose
    pred = rng.random(n) < 0.4
    g = rng.integers(0, 30, n) if groups else None
    idx = list(resample_indices(g if g is not None else np.arange(n), 150, 7))
    auc = [roc_auc_score(y[i], s[i]) if 0 < y[i].sum() < len(i) else np.nan for i in idx]
    np.testing.assert_allclose(auroc_replicates(y, s, g, 150, 7), auc, atol=1e-12)
    cnt = [[(y[i] & pred[i]).sum(), pred[i].sum(), y[i].sum()] for i in idx]
    np.testing.assert_array_equal(binary_counts_replicates(y, pred, g, 150, 7), cnt)


def test_auroc_replicates_nan_when_a_class_is_missing():
    reps = auroc_replicates(np.array([1, 0]), np.array([0.9, 0.1]), np.array([0, 1]), 200, 0)
    assert np.isnan(reps).any() and np.nanmin(reps) == 1.0       # one-class replicates are NaN, never 0 or 1


def test_per_query_values_average_to_the_table():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(12, 8))
    keys = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g", "h", "h"]
    txt = img + rng.normal(scale=0.8, size=img.shape)
    r = text_to_image_precision_recall(txt, img, keys, keys, ks=(1, 5), n_boot=0, return_per_query=True)
    pq = r["per_query"]
    assert len(pq["rows"]) == 8 and r["n_queries"] == 8           # one query per distinct key
    for m in ("P@1", "P@5", "R@1", "R@5"):
        assert np.mean(pq[m]) == pytest.approx(r[m])


def _no_extra(d: int) -> dict:
    """An export's empty ``extra_*`` gallery (every image of the studies is already a row)."""
    return {"extra_emb": np.zeros((0, d), np.float32),
            **{f"extra_{k}": np.array([], str) for k in ("record_id", "study_id", "subject_id", "split", "view")}}


def _write(root, tag, name, **arrays):
    d = root / tag
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / f"{name}.npz", **arrays)


@pytest.fixture
def folder(tmp_path):
    """Two systems on 4 MIMIC-CXR test images (2 studies x 2 images): 'medcsp' retrieves perfectly,
    'medbind_bd' ranks the other study first; COVID: 'medcsp' separates the classes, 'medbind_bd' inverts them."""
    e = np.eye(4, dtype=np.float32)
    img = np.stack([e[0], e[0] + 0.1 * e[2], e[1], e[1] + 0.1 * e[3]])
    text = np.array(["rep one", "rep one", "rep two", "rep two"])
    common = dict(record_id=np.array(["i1", "i2", "i3", "i4"]), subject_id=np.array(["p1", "p1", "p2", "p2"]),
                  split=np.array(["test"] * 4), text=text, labelled=np.ones(4, bool),
                  labels=np.zeros((4, 1), np.float32), label_names=np.array(["Enlarged Cardiomediastinum"]),
                  study_id=np.array(["s1", "s1", "s2", "s2"]), **_no_extra(4))
    _write(tmp_path, "medcsp", "mimic_cxr", emb=img, text_emb=np.stack([e[0], e[0], e[1], e[1]]), **common)
    _write(tmp_path, "medbind_bd", "mimic_cxr", emb=img, text_emb=np.stack([e[1], e[1], e[0], e[0]]), **common)
    lab = np.array(["COVID", "COVID", "Normal", "Normal", "COVID", "Normal"])
    cov = np.array([e[0], e[0], e[1], e[1], e[0] + 0.2 * e[1], e[1] + 0.2 * e[0]], np.float32)
    kw = dict(record_id=np.array([f"c{i}" for i in range(6)]), subject_id=np.array([f"s{i}" for i in range(6)]),
              label=lab, split=np.array(["test"] * 6))
    _write(tmp_path, "medcsp", "covid", emb=cov, **kw)
    _write(tmp_path, "medbind_bd", "covid", emb=cov[:, [1, 0, 2, 3]].copy(), **kw)
    return tmp_path


class _Art(Artifacts):
    """Prompt embeddings without a model: COVID prompts -> e0, anything else -> e1."""

    def text_encoder(self, variant, checkpoint="best", modality="cxr"):
        e = np.eye(4, dtype=np.float32)
        return lambda texts: np.stack([e[0] if ("opacity" in t or "consolidation" in t) else e[1] for t in texts])


def test_retrieval_and_zero_shot_tables_on_a_hand_made_folder(folder):
    cfg = {"runs_dir": str(folder), "profile": "test"}
    s = EvalSettings(n_boot=50, seed=0, torch_threads=None)
    art = _Art(cfg, embeddings_dir=folder)
    pq = {}
    ret = R.radiology_retrieval(cfg, s, art, systems=("medcsp", "medbind_bd"), datasets=("mimic_cxr",), ks=(1, 2),
                                per_query=pq)
    v = ret.set_index(["system", "metric"])["value"]
    assert v[("medcsp", "P@1")] == 100 and v[("medcsp", "R@2")] == 100 and v[("medcsp", "R@1")] == 50
    assert v[("medbind_bd", "P@2")] == 0 and v[("medbind_bd", "R@2")] == 0
    assert ret["paper"].isna().all()                             # Table 1 scored the hold-out, not the test split
    assert (ret["relevant_per_query"] == 2).all() and (ret["n_queries"] == 2).all()
    zq = {}
    zs = R.radiology_zero_shot(cfg, s, art, systems=("medcsp", "medbind_bd"), tasks=("covid",), per_query=zq)
    z = zs.set_index(["system", "metric"])["value"]
    assert z[("medcsp", "f1")] == 100 and z[("medcsp", "auroc")] == 100
    assert z[("medbind_bd", "auroc")] == 0
    assert z[(R.ALWAYS_POSITIVE, "f1")] == pytest.approx(200 * 0.5 / 1.5)   # 2p / (1 + p) at p = 1/2
    assert z[(R.ALWAYS_POSITIVE, "auroc")] == 50
    paired = R.paired_radiology(pq, zq, [("medcsp", "medbind_bd"), ("medcsp", "medcsp")], s, retrieval_metric="R@2")
    d = paired.set_index(["a", "b", "set", "metric"])
    assert d.loc[("medcsp", "medbind_bd", "mimic_cxr", "R@2")]["a_minus_b"] == 100
    same = d.loc[("medcsp", "medcsp", "covid", "auroc")]
    assert same["a_minus_b"] == 0 and same["lo"] == 0 and same["hi"] == 0
    assert d.loc[("medcsp", "medbind_bd", "covid", "auroc")]["a_minus_b"] == 100
    lines = R.describe_radiology(ret, zs, paired)
    assert any("beats" in ln for ln in lines)


def test_rows_must_be_the_same_records(folder):
    z = np.load(folder / "medbind_bd" / "mimic_cxr.npz")
    arrays = {k: z[k] for k in z.files}
    arrays["record_id"] = arrays["record_id"][::-1]
    np.savez(folder / "medbind_bd" / "mimic_cxr.npz", **arrays)
    cfg = {"runs_dir": str(folder), "profile": "test"}
    with pytest.raises(ValueError, match="different records"):
        R.radiology_retrieval(cfg, EvalSettings(n_boot=0, torch_threads=None), _Art(cfg, embeddings_dir=folder),
                              systems=("medcsp", "medbind_bd"), datasets=("mimic_cxr",), ks=(1,))


def test_percentile_ci_of_paired_identical_rows_is_zero():
    assert percentile_ci(np.zeros(10)) == (0.0, 0.0)


# ------------------------------------------------------------------ MEDCSP 4.3.2: every image of the study is relevant
# Images are one-hot, so a query's score for image j is simply its j-th entry. Rows (frontal, split test): a1, b1, c1
# and d1 (split valid); extra images (lateral / second frontal): a2, aL, bL (test) and dL (valid).
#                 a1   b1   c1   d1   a2   aL   bL   dL
_SCORES = [[.90, .50, .10, .95, .30, .80, .60, .95],   # report of study A: relevant a1, a2, aL
           [.70, .20, .40, .00, .90, .10, .80, .00],   # report of study B: relevant b1, bL
           [.10, .20, .30, .00, .40, .50, .60, .00],   # report of study C: relevant c1
           [.00, .00, .00, .90, .00, .00, .00, .80]]   # report of study D (valid split: not a test query)


def _study_set(split="test"):
    e = np.eye(8, dtype=np.float32)
    valid = "valid" if split == "test" else split
    return dict(emb=e[:4], text_emb=np.array(_SCORES, np.float32), record_id=np.array(["a1", "b1", "c1", "d1"]),
                subject_id=np.array(["pa", "pb", "pc", "pd"]), split=np.array([split] * 3 + [valid]),
                text=np.array(["report a", "report b", "report c", "report d"]),
                study_id=np.array(["A", "B", "C", "D"]), extra_emb=e[4:],
                extra_record_id=np.array(["a2", "aL", "bL", "dL"]), extra_study_id=np.array(["A", "A", "B", "D"]),
                extra_subject_id=np.array(["pa", "pa", "pb", "pd"]),
                extra_split=np.array([split] * 3 + [valid]),
                extra_view=np.array(["PA", "LATERAL", "LATERAL", "LATERAL"]))


# By hand, gallery a1 b1 c1 a2 aL bL (d1 and dL are valid). Ranked: A: a1 aL bL b1 a2 c1 -> hits 1, 2, 2, 3 at K = 1,
# 2, 3, 5 of 3 relevant; B: a2 bL a1 c1 b1 aL -> 0, 1, 1, 2 of 2; C: bL aL a2 c1 b1 a1 -> 0, 0, 0, 1 of 1.
STUDY_HAND = {"P@1": (100 + 0 + 0) / 3, "P@2": (100 + 50 + 0) / 3, "P@3": (200 / 3 + 100 / 3 + 0) / 3,
              "P@5": (60 + 40 + 20) / 3, "R@1": (100 / 3 + 0 + 0) / 3, "R@2": (200 / 3 + 50 + 0) / 3,
              "R@3": (200 / 3 + 50 + 0) / 3, "R@5": 100.0}
# frontal (the earlier reading): gallery a1 b1 c1, one relevant each: A ranks a1 1st, B ranks b1 3rd, C ranks c1 1st
FRONTAL_HAND = {"P@1": 200 / 3, "P@2": 100 / 3, "P@3": 100 / 3, "P@5": 20.0,
                "R@1": 200 / 3, "R@2": 200 / 3, "R@3": 100.0, "R@5": 100.0}


def test_every_image_of_the_study_is_relevant_hand_computed():
    z = _study_set()
    x = R.retrieval_inputs(z, "test", "text", "study_images")
    assert len(x["images"]) == 6 and x["image_keys"] == ["A", "B", "C", "A", "A", "B"]   # valid images left out
    r = text_to_image_precision_recall(x["text"], x["images"], x["query_keys"], x["image_keys"], ks=(1, 2, 3, 5),
                                       n_boot=0)
    assert {k: r[k] for k in STUDY_HAND} == pytest.approx(STUDY_HAND)
    assert r["relevant_per_query"] == 2 and r["n_queries"] == 3 and r["n_gallery"] == 6
    f = R.retrieval_inputs(z, "test", "text", "frontal")
    rf = text_to_image_precision_recall(f["text"], f["images"], f["query_keys"], f["image_keys"], ks=(1, 2, 3, 5),
                                        n_boot=0)
    assert {k: rf[k] for k in FRONTAL_HAND} == pytest.approx(FRONTAL_HAND)
    assert rf["relevant_per_query"] == 1 and rf["n_gallery"] == 3
    r10, groups = R.per_query_recall(z, "mimic_cxr", "test", k=2)
    assert r10 == pytest.approx([200 / 3, 50, 0]) and list(groups) == ["pa", "pb", "pc"]
    with pytest.raises(ValueError, match="re-export"):
        R.retrieval_inputs({k: v for k, v in z.items() if not k.startswith("extra_")}, "test", "text")


def test_paper_table1_stands_beside_the_holdout_not_the_test_split(tmp_path):
    _write(tmp_path, "medcsp", "mimic_cxr", **_study_set())
    _write(tmp_path, "medcsp", "mimic_cxr_holdout", **_study_set("holdout"))
    cfg = {"runs_dir": str(tmp_path), "profile": "test"}
    ks = (1, 2, 3, 5)
    for gallery, hand, n_images, rel in (("study_images", STUDY_HAND, 6, 2), ("frontal", FRONTAL_HAND, 3, 1)):
        s = EvalSettings(n_boot=0, torch_threads=None, medcsp_retrieval_gallery=gallery)
        ret = R.radiology_retrieval(cfg, s, Artifacts(cfg, embeddings_dir=tmp_path), systems=("medcsp",), ks=ks,
                                    datasets=("mimic_cxr", "mimic_cxr_holdout"))
        test = ret[ret["dataset"] == "mimic_cxr"].set_index("metric")
        assert test["value"].to_dict() == pytest.approx(hand)
        assert (test["n_images"] == n_images).all() and (test["relevant_per_query"] == rel).all()
        assert test["paper"].isna().all()
        hold = ret[ret["dataset"] == "mimic_cxr_holdout"].set_index("metric")
        assert hold.loc["P@1", "paper"] == 12.06 and hold.loc["R@5", "paper"] == 21.91
        assert np.isnan(hold.loc["P@2", "paper"])                              # K = 2: no published number
        assert ret.attrs["params"]["medcsp_retrieval_gallery"] == gallery
    with pytest.raises(ValueError, match="medcsp_retrieval_gallery"):
        EvalSettings(medcsp_retrieval_gallery="lateral")


def test_extra_study_images_are_the_studies_other_images():
    import pandas as pd

    from medbind_lib.cohort import extra_study_images

    images = pd.DataFrame({"record_id": ["a1", "a2", "aL", "bL", "x1"], "study": ["A", "A", "A", "B", "X"],
                           "view": ["PA", "AP", "LATERAL", "LATERAL", "PA"], "split": ["train"] * 5,
                           "subject_id": ["?"] * 5, "path": ["p"] * 5})
    rows = pd.DataFrame({"study": ["A", "B"], "image_id": ["a1", "b1"], "split": ["test", "valid"],
                         "subject_id": ["pa", "pb"]})
    ex = extra_study_images(images, rows)
    assert ex["record_id"].tolist() == ["a2", "aL", "bL"]                  # own images and other studies left out
    assert ex["split"].tolist() == ["test", "test", "valid"] and ex["subject_id"].tolist() == ["pa", "pa", "pb"]


def test_study_gallery_embeds_openi_lateral_views(tmp_path):
    """Kaggle Open-I keeps Frontal rows; the gallery adds each report's lateral image, embedded by the model."""
    import pandas as pd
    import torch

    from medbind_lib.config import load_profile
    from medbind_lib.datasets import load_manifest
    from medbind_lib.export import study_gallery
    from medbind_lib.synth.external import write_openi

    class Bar:
        def update(self, n):
            pass

    class Mean:                                                           # image -> its mean pixel, 1-d
        embed_dim = 1

        def encode_cxr(self, x):
            return x.mean(dim=(1, 2, 3))[:, None]

    write_openi(tmp_path / "openi", 6, 32, np.random.default_rng(0), Bar())
    cfg = load_profile("smoke", overrides={"openi_root": str(tmp_path / "openi"), "cache_dir": str(tmp_path / "c"),
                                           "cxr_cache_size": 32, "cxr_size": 32})
    rows = load_manifest("openi", cfg)
    assert set(rows["projection"]) == {"Frontal"}
    frame = pd.DataFrame({"study": rows["report_id"], "image_id": rows["record_id"], "split": "test",
                          "subject_id": rows["subject_id"]})
    with torch.no_grad():
        g = study_gallery(Mean(), cfg, "openi", frame, "openi_extra")
    every = load_manifest("openi", cfg, frontal_only=False)
    lateral = every[every["projection"] == "Lateral"]
    assert sorted(g["extra_record_id"]) == sorted(lateral["record_id"]) and len(lateral)
    assert set(g["extra_view"]) == {"Lateral"} and list(g["extra_study_id"]) == list(g["extra_subject_id"])
    assert g["extra_emb"].shape == (len(g["extra_record_id"]), 1) and set(g["extra_split"]) == {"test"}
    assert not set(g["extra_record_id"]) & set(rows["record_id"])
