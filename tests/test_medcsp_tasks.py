"""MEDCSP EHR tasks (notebook 10; medbind_lib.medcsp.task_inputs / task_models, medbind_lib.finetune): metrics,
the bootstrap of a mean over runs, task inputs, the FIDDLE baselines, frozen vs fine-tuned encoders and the
grid's choice.

Tiny synthetic inputs built here (a 3-item temporal tensor, 8-wide encoders) and hand-computed values are the
references; scikit-learn is the reference for the curve metrics. The whole file runs in seconds on one core.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from medbind_lib import finetune as FT
from medbind_lib.config import load_profile
from medbind_lib.errors import ConfigError
from medbind_lib.medcsp import task_inputs as TI
from medbind_lib.medcsp import task_models as TM
from medbind_lib.metrics import binary as MB
from medbind_lib.metrics.bootstrap import resample_indices
from medbind_lib.models.fiddle import FIDDLENet, HeadOnly, fuse_static

T_BINS, N_ITEMS = 6, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def sk_metrics(y, s):
    p, r, _ = precision_recall_curve(y, s)
    return roc_auc_score(y, s), auc(r, p), average_precision_score(y, s)


# ----------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------
def test_metrics_hand_computed_and_sklearn():
    # scores in descending order: 0.8 (neg), 0.4 (pos), 0.35 (pos), 0.1 (neg)
    # AUROC: 2 of the 4 (pos, neg) pairs ranked right = 0.5
    # PR points (recall, precision): (0.5, 0.5), (1, 2/3), (1, 0.5) and sklearn's (0, 1) / first (0, 0)
    # AUPR = trapezoids over recall: 0.5 * (0 + 0.5) / 2 + 0.5 * (0.5 + 2/3) / 2 = 5/12
    # AP = 0.5 * 0.5 + 0.5 * 2/3 = 7/12
    y, s = np.array([0, 1, 1, 0]), np.array([0.1, 0.4, 0.35, 0.8])
    assert MB.binary_metrics(y, s) == pytest.approx((0.5, 5 / 12, 7 / 12))
    assert sk_metrics(y, s) == pytest.approx((0.5, 5 / 12, 7 / 12))


def test_metrics_match_sklearn_with_ties_and_nan_for_one_class():
    rng = np.random.default_rng(0)
    for _ in range(10):
        y = (rng.random(40) < 0.3).astype(int)
        y[:2] = [0, 1]
        s = np.round(rng.random(40) + 0.4 * y, 1)            # many ties
        assert MB.binary_metrics(y, s) == pytest.approx(sk_metrics(y, s))
    assert all(np.isnan(MB.binary_metrics([1, 1, 1], [0.1, 0.2, 0.3])))


def test_vectorised_replicates_equal_resampled_sklearn():
    rng = np.random.default_rng(1)
    y = np.zeros(50, int)
    y[[0, 1, 2]] = 1
    s = np.round(rng.random(50) + 0.3 * y, 1)
    g = rng.integers(0, 20, 50)
    g[[0, 1, 2]] = 0                                         # every positive is patient 0's
    reps = MB.metric_replicates(y, s, g, n_boot=150, seed=3)
    loop = np.array([sk_metrics(y[i], s[i]) if 0 < y[i].sum() < len(i) else (np.nan,) * 3
                     for i in resample_indices(g, 150, 3)])
    assert np.isnan(loop[:, 0]).any()                        # some replicates lack a positive
    np.testing.assert_allclose(reps, loop, equal_nan=True)


# ----------------------------------------------------------------------------------------------------
# bootstrap of the mean over runs, paired difference
# ----------------------------------------------------------------------------------------------------
def test_runs_bootstrap_mean_over_runs_with_one_class_replicates():
    # 5 patients, one positive: a replicate that does not draw patient 0 has one class (NaN, skipped, counted).
    y = np.array([1, 0, 0, 0, 0])
    groups = np.array(["p0", "p1", "p2", "p3", "p4"])
    perfect, inverted = np.array([0.9, 0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    r = MB.runs_bootstrap(y, np.stack([perfect, inverted]), groups, n_boot=300, seed=0)
    no_pos = sum(0 not in idx for idx in resample_indices(groups, 300, 0))
    assert no_pos > 0 and r["n_skipped"] == no_pos and r["n_valid"] == 300 - no_pos
    # AUROC 1 and 0: the mean over runs is 0.5 on the data AND on every two-class replicate
    assert r["auroc"]["value"] == pytest.approx(0.5)
    np.testing.assert_allclose(r["auroc"]["per_run"], [1.0, 0.0])
    assert (r["auroc"]["lo"], r["auroc"]["hi"]) == pytest.approx((0.5, 0.5))
    assert np.isnan(r["auroc"]["reps"]).sum() == no_pos
    # AP: perfect = 1; inverted = 1/5 (the positive ranked last); replicates re-score both runs
    assert r["ap"]["value"] == pytest.approx((1.0 + 0.2) / 2)


def test_paired_difference_uses_the_same_replicates():
    y = np.array([1, 0, 1, 0, 0, 1])
    g = np.arange(6)
    a = MB.runs_bootstrap(y, np.array([[0.9, 0.1, 0.8, 0.2, 0.3, 0.7]]), g, 200, 0)
    b = MB.runs_bootstrap(y, np.array([[0.1, 0.9, 0.2, 0.8, 0.7, 0.3]]), g, 200, 0)
    d = MB.paired_difference(a, b, "auroc")
    assert d["diff"] == pytest.approx(1.0) and (d["lo"], d["hi"]) == pytest.approx((1.0, 1.0))
    assert d["ci_excludes_0"] and d["n_skipped"] == a["n_skipped"]


# ----------------------------------------------------------------------------------------------------
# synthetic notebook-08 data
# ----------------------------------------------------------------------------------------------------
def tiny_data(n: int = 12, seed: int = 0) -> dict:
    """12 admissions (one per patient); admissions 0-9 have an ICU stay (admission 0 two), 10-11 none."""
    rng = np.random.default_rng(seed)
    hadm = np.arange(100, 100 + n)
    split = np.array(["train"] * 6 + ["valid"] * 3 + ["test"] * 3)
    ehr = pd.DataFrame({"hadm_id": hadm, "subject_id": hadm + 1000, "split": split})
    stay_hadm = np.r_[hadm[0], hadm[:10]]
    stays = pd.DataFrame({"subject_id": stay_hadm + 1000, "hadm_id": stay_hadm, "stay_id": 500 + np.arange(11),
                          "intime": pd.Timestamp("2150-01-01") + pd.to_timedelta(np.r_[5, np.arange(10)], "h"),
                          "row": np.arange(11)})
    first = stays.sort_values(["hadm_id", "intime"]).drop_duplicates("hadm_id")
    arf = first.assign(label=rng.integers(0, 2, len(first)), split=first["hadm_id"].map(dict(zip(hadm, split))))
    readm = ehr.assign(label=rng.integers(0, 2, n))
    return {"ehr_records": ehr, "stays": stays,
            "temporal_values": rng.normal(size=(11, T_BINS, N_ITEMS)).astype(np.float32),
            "temporal_mask": (rng.random((11, T_BINS, N_ITEMS)) < 0.7).astype(np.uint8),
            "demographics": rng.random((n, 3)).astype(np.float32),
            "icd": sparse.csr_matrix((rng.random((n, 5)) < 0.4).astype(np.float32)),
            "drug": sparse.csr_matrix((rng.random((n, 4)) < 0.4).astype(np.float32)),
            "notes": pd.DataFrame({"hadm_id": hadm[:8], "text": [f"note {i}" for i in range(8)]}),
            "cohorts": {"arf": arf[["subject_id", "hadm_id", "stay_id", "label", "split"]],
                        "readmission": readm[["subject_id", "hadm_id", "label", "split"]]}}


def tiny_model(seed: int = 0):
    from medbind_lib.models.medcsp import build_medcsp_model

    torch.manual_seed(seed)
    return build_medcsp_model(None, input_dims={"icd": 5, "drug": 4, "demo": 3, "temporal": 2 * N_ITEMS},
                              medcsp_modalities=["icd", "drug", "demo", "temporal"], medcsp_embed_dim=8,
                              medcsp_mlp_hidden=8, medcsp_lstm_hidden=8, medcsp_dropout=0.0).eval()


def test_task_inputs_shapes_and_modalities():
    d = tiny_data()
    icu = TI.task_inputs(d, "arf", max_stays=3)
    assert set(icu.arrays) == {"temporal", "demo"} and icu.notes is None
    assert icu.arrays["temporal"].shape == (10, 1, T_BINS, 2 * N_ITEMS) and icu.stays.all()
    row0 = d["stays"].set_index("stay_id")["row"][icu.frame["stay_id"].iloc[0]]
    np.testing.assert_array_equal(icu.arrays["temporal"][0, 0, :, :N_ITEMS], d["temporal_values"][row0])
    np.testing.assert_array_equal(icu.arrays["temporal"][0, 0, :, N_ITEMS:], d["temporal_mask"][row0])
    ra = TI.task_inputs(d, "readmission", max_stays=3)
    assert set(ra.arrays) == {"temporal", "demo", "icd", "drug"} and len(ra.notes) == 12
    assert ra.arrays["temporal"].shape == (12, 3, T_BINS, 2 * N_ITEMS)
    assert ra.stays[0].tolist() == [True, True, False]                 # admission 0: two stays
    assert not ra.present["temporal"][10:].any() and not ra.arrays["temporal"][10:].any()
    assert ra.present["note"].sum() == 8
    summary = TI.cohort_summary({"arf": icu, "readmission": ra})
    assert summary["n"].sum() == 22 and (summary.loc[summary["task"] == "arf", "with_note"] == "-").all()


def test_forbidden_modalities_do_not_change_an_icu_row():
    """ARF may use temporal + demographics only: ICD, drugs and notes changed -> identical inputs and outputs."""
    d = tiny_data()
    changed = dict(d, icd=sparse.csr_matrix(np.ones((12, 5), np.float32)),
                   drug=sparse.csr_matrix(np.ones((12, 4), np.float32)),
                   notes=pd.DataFrame({"hadm_id": d["ehr_records"]["hadm_id"], "text": "the patient died"}))
    a, b = TI.task_inputs(d, "arf"), TI.task_inputs(changed, "arf")
    model = tiny_model()
    torch.testing.assert_close(TM.frozen_features(model, a, "concat"), TM.frozen_features(model, b, "concat"))
    torch.manual_seed(0)
    net = FIDDLENet("lstm", 2 * N_ITEMS, TI.fiddle_inputs(a)[2].shape[1], hidden=8, head_hidden=8).eval()
    torch.testing.assert_close(net(TI.fiddle_inputs(a)), net(TI.fiddle_inputs(b)))
    # the allowed modalities do matter (the check above is not vacuous)
    demo = dict(d, demographics=d["demographics"] + 1)
    assert not torch.allclose(TM.frozen_features(model, a, "concat"),
                              TM.frozen_features(model, TI.task_inputs(demo, "arf"), "concat"))
    # readmission may use the codes: changing them changes its input
    ra, rb = TI.task_inputs(d, "readmission"), TI.task_inputs(changed, "readmission")
    assert not np.array_equal(TI.fiddle_inputs(ra, np.zeros((12, 2)))[2], TI.fiddle_inputs(rb, np.zeros((12, 2)))[2])


def test_head_features_concat_and_masked_mean():
    emb = {"temporal": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "demo": torch.tensor([[0.0, 1.0], [0.0, 3.0]])}
    present = {"temporal": np.array([True, False]), "demo": np.array([True, True])}
    c = TM.head_features(emb, present, ("temporal", "demo"), "concat")
    torch.testing.assert_close(c, torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0, 0.0, 1.0]]))
    m = TM.head_features(emb, present, ("temporal", "demo"), "mean")
    torch.testing.assert_close(m, torch.tensor([[0.5, 0.5], [0.0, 3.0]]))   # absent modality not in the mean


# ----------------------------------------------------------------------------------------------------
# FIDDLE baselines
# ----------------------------------------------------------------------------------------------------
def separable(n: int = 96, seed: int = 0):
    """Label = sign of item 0's mean over time in the first stay; the second stay of some rows is noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 8, 4, generator=g)
    y = (x[:, 0, :, 0].mean(1) > 0).long()
    x[:, 0, :, 0] += torch.where(y.bool(), 1.0, -1.0)[:, None]
    stays = torch.zeros(n, 2, dtype=torch.bool)
    stays[:, 0] = True
    stays[::3, 1] = True
    static = torch.randn(n, 5, generator=g)
    return (x, stays, static), y.numpy()


@pytest.mark.parametrize("fusion", ["concat", "late_fusion"])
@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_fiddle_shapes_and_learning(kind, fusion):
    x, y = separable()
    torch.manual_seed(0)
    net = FIDDLENet(kind, 4, 5, hidden=8, head_hidden=8, dropout=0.0, fusion=fusion)
    assert net(x).shape == (96,)
    no_stay = (x[0][:2], torch.zeros(2, 2, dtype=torch.bool), x[2][:2])     # rows without an ICU stay
    assert torch.isfinite(net(no_stay)).all()
    tr, va = np.arange(64), np.arange(64, 96)
    r = FT.fit_classifier(net, x, y, tr, va, lr=0.02, batch_size=16, epochs=25, patience=25, seed=0)
    assert r.valid_auroc > 0.95 and r.best_epoch >= 1
    assert MB.binary_metrics(y[va], FT.predict(net, FT.take(x, va)))[0] == pytest.approx(r.valid_auroc)



def two_rows():
    """Row 0: one stay of 3 bins x 2 channels (value, observed) and a second slot NOT present (filled with 99s, never
    read); row 1: no stay (its slot filled with 7s, read as all missing = zeros). Static: [1, 2] and [3, 4]."""
    t = torch.full((2, 2, 3, 2), 99.0)
    t[0, 0] = torch.tensor([[0.5, 1.0], [0.0, 0.0], [-1.5, 1.0]])
    t[1] = 7.0
    stays = torch.tensor([[True, False], [False, False]])
    return t, stays, torch.tensor([[1.0, 2.0], [3.0, 4.0]])


def seen_by_net(net, x) -> list:
    """The tensors the LSTM / first conv receives in one forward pass."""
    got = []
    mod = net.seq if net.kind == "lstm" else net.seq[0]
    h = mod.register_forward_hook(lambda m, inp, out: got.append(inp[0].detach().clone()))
    net(x)
    h.remove()
    return got


def test_fuse_static_hand_built():
    t = torch.arange(12.0).reshape(1, 2, 3, 2)                    # one row, two stays, 3 bins, 2 channels
    fused = fuse_static(t, torch.tensor([[8.0, 9.0]]))
    assert fused.shape == (1, 2, 3, 4)
    want = torch.tensor([[[0, 1, 8, 9], [2, 3, 8, 9], [4, 5, 8, 9]],
                         [[6, 7, 8, 9], [8, 9, 8, 9], [10, 11, 8, 9]]], dtype=torch.float32)
    torch.testing.assert_close(fused[0], want)


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_fiddle_concat_input_is_the_hand_built_concatenation(kind):
    """The paper's input: demographics repeated at every bin after values + missingness; a stay-less row reads one
    all-missing stay with its demographics; an absent stay slot is never read."""
    x = two_rows()
    net = FIDDLENet(kind, 2, 2, hidden=4, head_hidden=4, fusion="concat").eval()
    seq, rows = net.sequences(*x)
    want = torch.tensor([[[0.5, 1.0, 1.0, 2.0], [0.0, 0.0, 1.0, 2.0], [-1.5, 1.0, 1.0, 2.0]],
                         [[0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 3.0, 4.0]]])
    torch.testing.assert_close(seq, want)
    assert rows.tolist() == [0, 1]
    got = seen_by_net(net, x)
    assert len(got) == 1
    torch.testing.assert_close(got[0], want if kind == "lstm" else want.transpose(1, 2))
    # late fusion (today's): the temporal part alone, the stay-less row not read at all
    late = FIDDLENet(kind, 2, 2, hidden=4, head_hidden=4, fusion="late_fusion").eval()
    torch.testing.assert_close(seen_by_net(late, x)[0], want[:1, :, :2] if kind == "lstm"
                               else want[:1, :, :2].transpose(1, 2))


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_fiddle_concat_masking_and_stay_mean(kind):
    t, stays, static = two_rows()
    torch.manual_seed(0)
    net = FIDDLENet(kind, 2, 2, hidden=4, head_hidden=4, fusion="concat").eval()
    out = net((t, stays, static))
    assert out.shape == (2,) and torch.isfinite(out).all()
    junk = t.clone()
    junk[0, 1], junk[1] = -5.0, 123.0                             # what absent slots hold does not matter
    torch.testing.assert_close(net((junk, stays, static)), out)
    other = static.clone()
    other[1] = torch.tensor([0.0, -4.0])                          # a stay-less row still reads its demographics
    assert net((t, stays, other))[1] != out[1] and net((t, stays, other))[0] == out[0]
    # two stays: the mean of the per-stay summaries, each stay fused with the row's demographics
    two = stays.clone()
    two[0, 1] = True
    t2 = t.clone()
    t2[0, 1] = torch.tensor([[1.0, 1.0], [2.0, 1.0], [0.0, 0.0]])
    summ = net._stay(fuse_static(t2[:1], static[:1])[0])
    torch.testing.assert_close(net((t2, two, static))[0], net.head(summ.mean(0, keepdim=True))[0])


def test_fiddle_input_setting_reaches_the_model():
    x = two_rows()
    assert TI.TaskSettings().fiddle_input == "concat"
    net, params = TM.fiddle("lstm", x, TI.TaskSettings(fiddle_hidden=4, head_hidden=4), 0)
    assert params is None and net.fusion == "concat" and net.seq.input_size == 2 + 2
    late, _ = TM.fiddle("lstm", x, TI.TaskSettings(fiddle_hidden=4, head_hidden=4, fiddle_input="late_fusion"), 0)
    assert late.fusion == "late_fusion" and late.seq.input_size == 2
    with pytest.raises(ConfigError, match="fiddle_input"):
        TI.TaskSettings(fiddle_input="early")
    assert TI.task_settings(load_profile("smoke")).fiddle_input == "concat"
    assert "80/10/10" in TI.COHORT_NOTE and "held out of pre-training" in TI.COHORT_NOTE


# ----------------------------------------------------------------------------------------------------
# frozen vs fine-tuned encoders
# ----------------------------------------------------------------------------------------------------
def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_frozen_head_leaves_the_encoders_unchanged():
    d = tiny_data()
    ti = TI.task_inputs(d, "arf")
    model = tiny_model()
    before = _state(model)
    s = TI.TaskSettings(finetune=False, head_hidden=8, lrs=(0.01,), batch_sizes=(4,), epochs=3, patience=3)
    feats = TM.frozen_features(model, ti, s.pool)
    head, params = TM.head(feats.shape[1], s, 0)
    assert params is None and not any(p is q for p in head.parameters() for q in model.parameters())
    FT.fit_classifier(head, feats, ti.y, ti.rows_of("train"), ti.rows_of("valid"), lr=0.01, batch_size=4, epochs=3,
                     patience=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_finetuned_row_trains_a_copy_of_the_encoders():
    d = tiny_data()
    ti = TI.task_inputs(d, "arf")
    model = tiny_model()
    before = _state(model)
    s = TI.TaskSettings(finetune=True, head_hidden=8, epochs=3, patience=3)
    module, params = TM.finetuned(model, ti, s, 0)
    names = {n for n, p in module.named_parameters() if any(p is q for q in params)}
    assert any(n.startswith("encoder.encoders.temporal") for n in names)
    assert not any(n.startswith(("encoder.encoders.icd", "encoder.encoders.drug")) for n in names)  # not ARF's
    FT.fit_classifier(module, ti, ti.y, ti.rows_of("train"), ti.rows_of("valid"), lr=0.05, batch_size=4,
                     epochs=3, patience=3, params=params)
    after = module.encoder.state_dict()
    assert not torch.equal(after["encoders.temporal.lstm.weight_ih_l0"], before["encoders.temporal.lstm.weight_ih_l0"])
    assert torch.equal(after["encoders.icd.net.0.weight"], before["encoders.icd.net.0.weight"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())      # the given model untouched


# ----------------------------------------------------------------------------------------------------
# grid
# ----------------------------------------------------------------------------------------------------
def test_grid_selects_best_validation_auroc_then_loss():
    score = {(0.001, 32): (0.70, 0.5), (0.001, 128): (0.85, 0.6), (0.01, 32): (0.85, 0.4), (0.01, 128): (0.60, 0.3)}

    def fit(lr, bs, seed):
        a, l = score[(lr, bs)]
        return FT.FitResult(lr, bs, seed, 1, 1, a, l, 0.0)

    grid, fits = FT.grid_search(fit, list(score), seed=0)
    assert FT.select_setting(grid) == (0.01, 32)               # tie at 0.85: lower validation loss
    assert set(fits) == set(score) and fits[(0.01, 32)].valid_auroc == 0.85
    undefined = grid.assign(valid_auroc=np.nan)               # one-class validation split: loss decides
    assert FT.select_setting(undefined) == (0.01, 128)


# ----------------------------------------------------------------------------------------------------
# MEDBind_BD's window
# ----------------------------------------------------------------------------------------------------
def test_medbind_window_mean_and_presence():
    adm = pd.DataFrame({"subject_id": ["1", "2"], "hadm_id": [10, 20],
                        "admittime": pd.to_datetime(["2150-01-02 00:00", "2150-03-01 00:00"]),
                        "dischtime": pd.to_datetime(["2150-01-05 00:00", "2150-03-04 00:00"])})
    rec = pd.DataFrame({"subject_id": ["1", "1", "1", "2"], "record_id": ["a", "b", "late", "c"],
                        "time": pd.to_datetime(["2150-01-01 12:00", "2150-01-02 20:00", "2150-01-04 00:00",
                                                "2150-02-01 00:00"])})
    pairs = TI.window_records(adm, rec, window_hours=24, pre_hours=24)
    assert sorted(pairs["record_id"]) == ["a", "b"]             # 'late' after 24 h, 'c' a month early
    ti = TI.TaskInputs("mortality", adm[["subject_id", "hadm_id"]].assign(label=[0, 1], split="test"), ("demo",),
                      {"demo": np.ones((2, 1), np.float32)}, None, None, {"demo": np.ones(2, bool)})
    table = {"a": np.array([1.0, 0.0], np.float32), "b": np.array([0.0, 1.0], np.float32)}
    x, seen = TI.medbind_features(ti, {"admissions": adm, "cxr": rec}, {"cxr": table}, 24, 24)
    np.testing.assert_allclose(x.numpy(), [[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    assert seen == {"cxr": 1}


# ----------------------------------------------------------------------------------------------------
# the smoke cohort (only where notebook 08 ran)
# ----------------------------------------------------------------------------------------------------
def test_smoke_cohort_inputs():
    from medbind_lib.config import load_profile
    from medbind_lib.medcsp import features

    cfg = load_profile("smoke")
    try:
        data = features.load(cfg)
    except Exception as e:  # noqa: BLE001 - any missing / incomplete run skips, with the reason
        pytest.skip(f"smoke notebook 08 outputs not available: {e}")
    for task in TI.TASKS:
        ti = TI.task_inputs(data, task, cfg.medcsp_max_stays)
        assert set(ti.arrays) | ({"note"} if ti.notes is not None else set()) == set(TI.TASK_MODALITIES[task])
        assert len(ti) == (data["cohorts"][task]["split"].isin(TI.SPLITS)).sum()
        if task in TI.ICU_TASKS:
            assert ti.present["temporal"].all()                  # every ICU row has its own stay's tensor


def test_early_stopping_variants_and_undefined_validation_auroc():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = (x[:, 0] > 0).long().numpy()
    y_one_class_valid = y.copy()
    y_one_class_valid[30:] = 0
    tr, va = np.arange(30), np.arange(30, 40)
    for early_stop, labels in (("valid_auroc", y), ("valid_auroc", y_one_class_valid), ("valid_loss", y)):
        torch.manual_seed(0)
        r = FT.fit_classifier(HeadOnly(3, 8, 0.0), x, labels, tr, va, lr=0.05, batch_size=8, epochs=6, patience=2,
                             early_stop=early_stop)
        assert 1 <= r.best_epoch <= r.epochs_run <= 6 and np.isfinite(r.valid_loss)
        assert np.isnan(r.valid_auroc) == (labels[va].sum() == 0)
    r = FT.fit_classifier(HeadOnly(3, 8, 0.0), x, y, tr, np.arange(0), lr=0.05, batch_size=8, epochs=3, patience=1)
    assert r.best_epoch == r.epochs_run == 3 and np.isnan(r.valid_loss)   # no validation rows: the last epoch
