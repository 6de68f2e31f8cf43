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
                  labels=np.zeros((4, 1), np.float32), label_names=np.array(["Enlarged Cardiomediastinum"]))
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
    assert ret["paper"].notna().sum() == 2                       # MEDCSP's published P@1 and R@1 only
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
