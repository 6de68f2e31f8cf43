"""Table 4 (medbind_lib.llm): insertion after the text, masking, LoRA freezing, task frames and metrics.

A tiny random BERT (2 layers, hidden 32) stands in for the language model, so every test runs in well under
a second; hand-made frames and hand-computed metric values are the independent references.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from medbind_lib.config import load_profile
from medbind_lib.errors import ConfigError, DataError
from medbind_lib.reports import paper
from medbind_lib.llm import features, llm_settings, metrics, tasks
from medbind_lib.reports import table4 as table
from medbind_lib.llm.settings import LLMSettings
from medbind_lib.llm.model import PromptTunedClassifier, insert_after_text
from medbind_lib.llm.train import class_weights, encode_texts, fit_predict
from medbind_lib.quality import QualityLog

H = 32
LORA = dict(r=4, alpha=8, dropout=0.0, targets=("query", "value"))


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=60, hidden_size=H, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertModel(cfg, add_pooling_layer=False).eval()


def batch(b: int = 3, length: int = 6, lengths=(6, 4, 2), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (b, length), generator=g)
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


# --------------------------------------------------------------------------------------------- insertion
def test_insert_after_text_places_tokens_and_mask():
    text = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1) + 1       # values 1..10, one per token
    tmask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    extra = torch.tensor([[[-1.0], [-2.0]], [[-3.0], [-4.0]]])
    emask = torch.tensor([[True, False], [True, True]])
    emb, mask = insert_after_text(text, tmask, extra, emask)
    assert emb.shape == (2, 7, 1) and mask.shape == (2, 7)
    # row 0: 3 text tokens, the 2 extras right after them, then the 2 padding positions
    assert emb[0, :, 0].tolist() == [1, 2, 3, -1, -2, 4, 5]
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0]
    # row 1: full text, extras at the end
    assert emb[1, :, 0].tolist() == [6, 7, 8, 9, 10, -3, -4]
    assert mask[1].tolist() == [1] * 7


def test_insert_after_text_rejects_left_padding_and_passes_gradients():
    text = torch.zeros(1, 3, 2, requires_grad=True)
    extra = torch.ones(1, 1, 2, requires_grad=True)
    with pytest.raises(ValueError, match="right-padded"):
        insert_after_text(text, torch.tensor([[0, 1, 1]]), extra, torch.tensor([[True]]))
    emb, _ = insert_after_text(text, torch.tensor([[1, 1, 0]]), extra, torch.tensor([[True]]))
    emb.sum().backward()
    assert extra.grad is not None and torch.equal(extra.grad, torch.ones(1, 1, 2))


@pytest.mark.parametrize("k", [1, 2])
def test_model_sequence_length_and_attention_mask(k):
    model = PromptTunedClassifier(tiny_bert(), {"cxr": 8, "ecg": 8}, tokens_per_modality=k, lora=LORA)
    ids, mask = batch()
    emb = {"cxr": torch.randn(3, 8), "ecg": torch.randn(3, 8)}
    present = {"cxr": torch.tensor([True, False, True]), "ecg": torch.tensor([True, True, False])}
    x, m = model.build_inputs(ids, mask, emb, present)
    assert x.shape == (3, 6 + 2 * k, H) and m.shape == (3, 6 + 2 * k)
    for i, n in enumerate((6, 4, 2)):
        want = [1] * n + [int(present["cxr"][i])] * k + [int(present["ecg"][i])] * k + [0] * (6 - n)
        assert m[i].tolist() == want
    assert model(ids, mask, emb, present).shape == (3,)


# --------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_masked_modality_contributes_nothing(pool):
    torch.manual_seed(0)
    model = PromptTunedClassifier(tiny_bert(), {"cxr": 8, "ecg": 8}, pool=pool, lora=LORA).eval()
    ids, mask = batch()
    present = {"cxr": torch.tensor([False, False, True]), "ecg": torch.tensor([True, True, True])}
    ecg = torch.randn(3, 8)
    outs = []
    for scale in (0.0, 1.0, 1e4):
        cxr = torch.randn(3, 8) * scale
        cxr[2] = 1.0                                    # the present CXR stays fixed
        with torch.no_grad():
            outs.append(model(ids, mask, {"cxr": cxr, "ecg": ecg}, present))
    assert torch.equal(outs[0][:2], outs[1][:2]) and torch.equal(outs[0][:2], outs[2][:2])
    # a PRESENT modality does change the output (the test above could fail)
    with torch.no_grad():
        other = model(ids, mask, {"cxr": torch.full((3, 8), -3.0), "ecg": ecg}, present)
    assert not torch.allclose(other[2], outs[0][2])


def test_attention_mask_alone_hides_a_token():
    """Even without the zeroing, a token with attention mask 0 leaves the [CLS] output unchanged."""
    lm = tiny_bert()
    ids, mask = batch(lengths=(6, 6, 6))
    words = lm.get_input_embeddings()(ids)
    extra_mask = torch.zeros(3, 1, dtype=torch.long)
    outs = []
    for v in (0.0, 5.0, -1e3):
        x, m = insert_after_text(words, mask, torch.full((3, 1, H), v), extra_mask)
        with torch.no_grad():
            outs.append(lm(inputs_embeds=x, attention_mask=m).last_hidden_state[:, 0])
    assert torch.allclose(outs[0], outs[1], atol=1e-6) and torch.allclose(outs[0], outs[2], atol=1e-6)
    x, m = insert_after_text(words, mask, torch.full((3, 1, H), 5.0), torch.ones(3, 1, dtype=torch.long))
    with torch.no_grad():
        seen = lm(inputs_embeds=x, attention_mask=m).last_hidden_state[:, 0]
    assert not torch.allclose(seen, outs[0], atol=1e-4)


# --------------------------------------------------------------------------------------------- LoRA
def test_lora_freezes_base_weights_and_trains_the_rest():
    model = PromptTunedClassifier(tiny_bert(), {"cxr": 8}, lora=LORA)
    names = {n: p.requires_grad for n, p in model.named_parameters()}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert base and all("lora_" not in n for n in base)
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert {n for n in trainable if not n.startswith("lm.")} == {"proj.cxr.weight", "proj.cxr.bias", "head.weight",
                                                                 "head.bias"}
    assert sum(names.values()) < len(names)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    model.train()
    ids, mask = batch()
    for _ in range(2):
        loss = model(ids, mask, {"cxr": torch.randn(3, 8)}, {"cxr": torch.ones(3, dtype=torch.bool)}).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = dict(model.named_parameters())
    for n, v in base.items():
        assert after[n].grad is None and torch.equal(after[n].detach(), v), n
    for n, v in trainable.items():
        assert not torch.equal(after[n].detach(), v), f"{n} did not train"


def test_lora_unknown_target_is_a_config_error():
    with pytest.raises(ConfigError, match="llm_lora_targets"):
        PromptTunedClassifier(tiny_bert(), {}, lora={**LORA, "targets": ("nonexistent_proj",)})


def test_fit_predict_is_seeded_and_learns_from_the_modality():
    """Label = sign of the CXR embedding's first value: the projection must carry it to the head."""
    rng = np.random.default_rng(0)
    n = 48
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    y = (emb[:, 0] > 0).astype(int)
    ids = [[1, 7, 9, 2]] * n                            # the same text for everyone: only the embedding informs
    splits = np.array(["train"] * 32 + ["valid"] * 8 + ["test"] * 8)
    mods = {"cxr": (emb, np.ones(n, bool))}
    s = llm_settings(load_profile("smoke"), epochs=8, batch_size=8, lr=1e-2, lora_r=2, lora_alpha=4, seeds=(0, 1, 2))
    lm = tiny_bert()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    a = fit_predict(lm, ids, 0, y, splits, mods, s, seed=0)
    b = fit_predict(lm, ids, 0, y, splits, mods, s, seed=0)
    assert np.array_equal(a["prob"], b["prob"], equal_nan=True)
    assert np.isnan(a["prob"][:32]).all() and np.isfinite(a["prob"][32:]).all()
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in before.items())   # the caller's model untouched
    assert 1 <= a["best_epoch"] <= 8 and len(a["history"]) == 8
    assert metrics.binary_metrics(y[32:], a["prob"][32:])["auroc"] > 80


# --------------------------------------------------------------------------------------------- task frames
def admissions_frame() -> pd.DataFrame:
    """8 admissions of 4 patients; readmission NA = died/censored; subject 4 has no CXR/ECG at all."""
    return pd.DataFrame({
        "subject_id": ["1", "1", "2", "2", "3", "3", "4", "4"],
        "hadm_id": pd.array([11, 12, 21, 22, 31, 32, 41, 42], dtype="Int64"),
        "split": ["train", "train", "valid", "valid", "test", "test", "train", "train"],
        "readmission": pd.array([1, pd.NA, 0, pd.NA, 1, 0, 0, pd.NA], dtype="Int64"),
        "mortality": pd.array([0, 1, 0, 0, 0, 0, 0, pd.NA], dtype="Int64"),
        "cxr_record_id": ["c11", None, "c21", "c22", None, "c32", None, None],
        "ecg_record_id": ["e11", "e12", None, "e22", None, "e32", None, None],
        "demographics_text": [f"demo {i}" for i in range(8)],
        "ends_in_window": [False] * 8,
    })


NOTE = ("Name: ___ Unit No: ___\nChief Complaint:\nChest pain\n \nHistory of Present Illness:\nA man.\n"
        "Brief Hospital Course:\n# NSTEMI: treated.\nDischarge Condition:\nMental Status: Clear.\n")


def test_discharge_text_sections():
    assert tasks.discharge_text(NOTE, ["brief hospital course", "chief complaint"]) == \
        "Brief hospital course: # NSTEMI: treated. Chief complaint: Chest pain"
    # "Mental Status:" is not a note header: it stays inside its section
    assert tasks.discharge_sections(NOTE)["discharge condition"] == "Mental Status: Clear."
    assert tasks.discharge_text(NOTE, []).startswith("Name: ___ Unit No: ___ Chief Complaint: Chest pain")
    assert tasks.discharge_text(NOTE, ["social history"]) is None and tasks.discharge_text(None, []) is None


def test_task_frames_labels_splits_and_counts():
    adm = admissions_frame()
    notes = pd.Series({11: NOTE, 21: NOTE, 31: "no headers at all", 41: NOTE}).rename_axis("hadm_id")
    notes.index = notes.index.astype("Int64")
    q = QualityLog()
    r = tasks.build_task_frame("readmission", adm, notes, ["chief complaint"], "all", q)
    # independent expectation: labelled readmissions 11, 21, 31, 32, 41; 32 has no note, 31 no section
    assert r["hadm_id"].tolist() == [11, 21, 41]
    assert dict(zip(r["hadm_id"], r["label"])) == {11: 1, 21: 0, 41: 0}
    assert dict(zip(r["hadm_id"], r["split"])) == {11: "train", 21: "valid", 41: "train"}
    assert (r["text"] == "Chief complaint: Chest pain").all()
    assert r.set_index("hadm_id").loc[41, ["cxr_record_id", "ecg_record_id"]].isna().all()
    assert q.count("table4_readmission", reason="no discharge note") == 1
    assert q.count("table4_readmission", reason="no label (readmission: died in hospital or censored; see notebook 01)") == 3
    assert q.count("table4_readmission", flagged=True, reason="no CXR and no ECG in the task window: both masked") == 1
    assert q.count("table4_readmission", flagged=False) == 3 + 1 + 1          # no label, no note, no section

    m = tasks.build_task_frame("mortality", adm, None, (), "with_record", QualityLog())
    assert m["hadm_id"].tolist() == [11, 12, 21, 22, 32]      # 31, 41 (no record) dropped, 42 unlabelled
    assert m["label"].tolist() == [0, 1, 0, 0, 0] and m["text"].tolist() == [f"demo {i}" for i in (0, 1, 2, 3, 5)]
    for f in (r, m):
        assert f.groupby("subject_id")["split"].nunique().max() == 1
        assert set(f.loc[f["split"] == "test", "subject_id"]).isdisjoint(f.loc[f["split"] == "train", "subject_id"])


def test_task_frame_refuses_a_patient_in_two_splits():
    adm = admissions_frame()
    adm.loc[1, "split"] = "test"                        # subject 1 now in train and test
    with pytest.raises(DataError, match="more than one split"):
        tasks.build_task_frame("mortality", adm)


def test_modality_inputs_and_report_texts():
    frame = pd.DataFrame({"cxr_record_id": ["a", None, "zzz"], "ecg_record_id": [None, "e", None]})
    got = features.modality_inputs(frame, {"cxr": {"a": np.ones(4, np.float32)}, "ecg": {"e": np.full(4, 2.0)}})
    assert got["cxr"][1].tolist() == [True, False, False] and got["ecg"][1].tolist() == [False, True, False]
    assert got["cxr"][0][1:].sum() == 0 and got["ecg"][0][1].tolist() == [2.0] * 4
    linked = {"cxr": pd.DataFrame({"record_id": ["a"], "text": ["Clear lungs."]}),
              "ecg": pd.DataFrame({"record_id": ["e"], "text": ["ECG presents sinus rhythm."]})}
    assert features.report_texts(frame, linked) == ["Chest X-ray report: Clear lungs.",
                                                    "ECG report: ECG presents sinus rhythm.", None]


def test_missing_checkpoint_names_file_and_notebook(tmp_path):
    cfg = {"runs_dir": str(tmp_path), "profile": "smoke"}
    with pytest.raises(DataError, match=r"medbind_bd.*best\.pt.*notebook 02.*--only 02"):
        features.required_checkpoints(cfg, ["task_text", "medbind_bd"])
    assert features.required_checkpoints(cfg, ["task_text", "text_only"]) == []


def test_pair_truncation_keeps_both_segments():
    from transformers import AutoTokenizer

    from medbind_lib.models.text import packaged_minilm_path

    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)
    ids = encode_texts(tok, ["word " * 200, "short"], ["ECG report: sinus rhythm.", None], 24)
    assert len(ids[0]) == 24 and len(ids[1]) == 3
    assert tok.decode(ids[0]).endswith("ecg report : sinus rhythm. [SEP]")


# --------------------------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    y, p = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]
    m = metrics.binary_metrics(y, p, 0.5)             # predictions 0 1 0 1
    assert m == pytest.approx({"accuracy": 50.0, "auroc": 75.0, "balanced_accuracy": 50.0})
    m = metrics.binary_metrics([0, 0, 0, 1], [0.1, 0.2, 0.7, 0.9], 0.5)   # 0 0 1 1
    assert m == pytest.approx({"accuracy": 75.0, "auroc": 100.0, "balanced_accuracy": (2 / 3 + 1) / 2 * 100})
    one = metrics.binary_metrics([0, 0], [0.2, 0.9])
    assert one["accuracy"] == 50.0 and math.isnan(one["auroc"]) and math.isnan(one["balanced_accuracy"])
    assert metrics.majority_accuracy([0, 0, 1], [0, 1, 1, 1]) == 25.0
    assert class_weights(np.array([0, 0, 0, 1]), "balanced") == pytest.approx([4 / 6, 2.0])
    assert class_weights(np.array([0, 0]), "balanced").tolist() == [1.0, 1.0]


def test_fast_metrics_equal_sklearn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.random((3, 40)), 1)               # ties on purpose
    assert metrics.auroc_rows(y, s) == pytest.approx([roc_auc_score(y, r) for r in s])
    pred = s >= 0.5
    assert metrics.balanced_accuracy_rows(y, pred) == pytest.approx([balanced_accuracy_score(y, r) for r in pred])


def test_seed_average_and_patient_bootstrap():
    y = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array([[0.1, 0.6, 0.4, 0.8, 0.2, 0.9], [0.1, 0.2, 0.7, 0.8, 0.3, 0.6], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    r = metrics.seed_averaged(y, probs, [0.5, 0.5, 0.5], groups, n_boot=200, seed=0)
    per = [metrics.binary_metrics(y, p) for p in probs]
    for k in metrics.METRICS:
        assert r[k] == pytest.approx(np.mean([d[k] for d in per]))
        assert r[f"{k}_lo"] <= r[k] + 1e-9 and r[f"{k}_hi"] >= r[k] - 1e-9
    assert r["accuracy_seed_sd"] == pytest.approx(np.std([d["accuracy"] for d in per], ddof=1))
    assert (r["n"], r["n_positive"], r["n_patients"], r["n_seeds"]) == (6, 3, 3, 3)


def test_thresholds():
    y, p = [0, 0, 1, 1], [0.1, 0.3, 0.35, 0.9]
    assert metrics.choose_threshold("fixed_0.5", y, p) == 0.5
    t = metrics.choose_threshold("valid_youden", y, p)
    assert 0.3 < t <= 0.35                              # separates the classes perfectly
    assert metrics.choose_threshold("valid_accuracy", [0, 0], [0.1, 0.2]) == 0.5
    with pytest.raises(ValueError, match="llm_threshold"):
        metrics.choose_threshold("0.3", y, p)


def _acc(y, p, t) -> float:
    """Accuracy (percent) of ``p >= t``, by counting."""
    return 100 * sum(int(pi >= t) == yi for yi, pi in zip(y, p)) / len(y)


# hand-computed: validation accuracy of each candidate threshold (midpoints, below all, above all)
#   t:   0.3-  0.35  0.475  0.575  0.625  0.675  0.75  0.85  0.9+
#   ok:   3     4     5      6      7      6      5     4     5    (of 8) -> 0.625, 87.5 %
Y_VALID = [0, 0, 0, 0, 1, 1, 0, 1]
P_VALID = [0.30, 0.40, 0.55, 0.60, 0.65, 0.70, 0.80, 0.90]
Y_TEST = [0, 0, 0, 1, 1, 0]
P_TEST = [0.20, 0.58, 0.62, 0.63, 0.90, 0.70]   # at 0.625: 0 0 0 1 1 1 -> 5/6; at 0.5: 0 1 1 1 1 1 -> 3/6


def test_valid_accuracy_threshold_hand_computed_and_applied_to_test():
    t = metrics.choose_threshold("valid_accuracy", Y_VALID, P_VALID)
    assert t == pytest.approx(0.625)
    assert _acc(Y_VALID, P_VALID, t) == 87.5
    grid = np.linspace(0, 1, 2001)                       # independent: no threshold does better on validation
    assert max(_acc(Y_VALID, P_VALID, g) for g in grid) == 87.5
    assert metrics.binary_metrics(Y_TEST, P_TEST, t)["accuracy"] == pytest.approx(500 / 6)
    assert metrics.binary_metrics(Y_TEST, P_TEST, 0.5)["accuracy"] == pytest.approx(50.0)
    r = metrics.seed_averaged(Y_TEST, [P_TEST, P_TEST], [t, 0.5], n_boot=0)
    assert r["accuracy"] == pytest.approx((500 / 6 + 50) / 2)
    # the Table 4 path: per seed, fit on that seed's validation rows of the stored predictions, 0.5 when fixed
    frame = pd.DataFrame({"split": ["train"] * 2 + ["valid"] * 8 + ["test"] * 6,
                          "label": [0, 1] + Y_VALID + Y_TEST})
    pred = pd.DataFrame({"prob": [np.nan, np.nan] + P_VALID + P_TEST})
    valid = (frame["split"] == "valid").to_numpy()
    assert table.seed_thresholds("valid_accuracy", frame["label"], valid, [pred, pred]) == pytest.approx([0.625] * 2)
    assert table.seed_thresholds("fixed_0.5", frame["label"], valid, [pred]).tolist() == [0.5]


def test_threshold_fallback_and_ties():
    # one class (or nothing) in validation: no information on where classes separate -> the documented 0.5
    for rule in ("valid_accuracy", "valid_youden"):
        assert metrics.choose_threshold(rule, [1, 1, 1], [0.2, 0.7, 0.9]) == 0.5
        assert metrics.choose_threshold(rule, [], []) == 0.5
    # criterion tie: 0.15 and 0.725 both give 3/4 -> the one nearer 0.5 (0.725), not the lowest
    y, p = [0, 1, 0, 1], [0.1, 0.2, 0.55, 0.9]
    assert _acc(y, p, 0.15) == _acc(y, p, 0.725) == 75.0
    assert metrics.choose_threshold("valid_accuracy", y, p) == pytest.approx(0.725)
    # tie at equal distance from 0.5 (0.3125 and 0.6875, exact binary fractions) -> the lower
    assert metrics.choose_threshold("valid_accuracy", [0, 1, 0, 1], [0.25, 0.375, 0.625, 0.75]) == 0.3125
    # tied scores are never split: the three 0.6 go to one side (threshold 0.4 -> 4/5)
    y, p = [0, 1, 1, 0, 1], [0.2, 0.6, 0.6, 0.6, 0.9]
    t = metrics.choose_threshold("valid_accuracy", y, p)
    assert t == pytest.approx(0.4) and _acc(y, p, t) == 80.0


def test_threshold_default_and_fingerprint():
    assert LLMSettings().threshold == "valid_accuracy" == metrics.THRESHOLDS[0]
    # the rule is applied after fitting, so it must not invalidate cached fits; a training knob must
    assert LLMSettings(threshold="fixed_0.5").fingerprint("x") == LLMSettings().fingerprint("x")
    assert LLMSettings(lr=1e-3).fingerprint("x") != LLMSettings().fingerprint("x")
    assert llm_settings(load_profile("smoke", overrides={"llm_threshold": "valid_youden"})).threshold == "valid_youden"


def test_profiles_default_to_valid_accuracy():
    for name in ("smoke", "default", "gpu", "paper"):
        assert llm_settings(load_profile(name)).threshold == "valid_accuracy", name


def long_table4() -> pd.DataFrame:
    """A two-task, two-system long Table 4 frame with made-up numbers."""
    rows = []
    for task, label, paper_acc in (("readmission", "30-day readmission", 65.0),
                                   ("mortality", "In-hospital mortality", 74.8)):
        for key, name, base in (("task_text", "Task text only", 60.0), ("medbind_bd", "MEDBind_BD", 70.0)):
            r = {"task": task, "task_label": label, "system": key, "system_label": name,
                 "paper_accuracy": paper_acc if key == "medbind_bd" else math.nan, "majority_accuracy": 90.0,
                 "threshold_rule": "valid_accuracy", "n": 50, "n_positive": 5}
            for i, m in enumerate(("auroc", "accuracy", "balanced_accuracy")):
                v = base + i
                r.update({m: v, f"{m}_lo": v - 5, f"{m}_hi": v + 5, f"{m}_seed_sd": 1.0})
            rows.append(r)
    return pd.DataFrame(rows)


def test_table4_wide_leads_with_auroc_and_names_the_rule():
    df = long_table4()
    wide = table.table4_wide(df)
    t = ["30-day readmission", "In-hospital mortality"]
    assert list(wide.columns) == ["System"] + [f"{x}: {m}" for x in t for m in ("AUROC", "accuracy", "bal. acc.")]
    bd = wide.set_index("System").loc["MEDBind_BD"]
    assert bd["30-day readmission: AUROC"] == "70.0 [65.0, 75.0]"
    assert bd["30-day readmission: accuracy"] == "71.0 [66.0, 76.0] (65.0)"      # paper's number beside ours
    assert bd["In-hospital mortality: bal. acc."] == "72.0 [67.0, 77.0]"
    maj = wide.set_index("System").loc["Majority class (reference)"]
    assert (maj["30-day readmission: AUROC"], maj["30-day readmission: accuracy"]) == ("50.0", "90.0")
    reading = table.describe_table4(df)
    assert "`valid_accuracy`" in reading[0] and "maximises accuracy on the validation split" in reading[0]
    assert not any("fixed" in line or "by design" in line for line in reading)   # nothing of the 0.5 rule
    fixed = table.describe_table4(df.assign(threshold_rule="fixed_0.5"))[0]
    assert "fixed 0.5 threshold" in fixed


# --------------------------------------------------------------------------------------------- profile
def test_profiles_carry_table4_settings():
    for name in ("smoke", "default", "gpu", "paper"):
        s = llm_settings(load_profile(name))
        assert len(set(s.seeds)) >= 3 and "mortality" in s.tasks
        assert set(s.tasks) == ({"mortality"} if name == "default" else {"readmission", "mortality"})  # CPU budget
        assert s.systems[:2] == ("task_text", "text_only")


@pytest.mark.parametrize("key,value", [("llm_seeds", [0, 1]), ("llm_pool", "max"), ("llm_tasks", ["icu"]),
                                       ("llm_systems", ["gpt4"]), ("llm_threshold", "0.3"), ("llm_num_layers", 0)])
def test_bad_table4_settings(key, value):
    with pytest.raises(ConfigError, match=key):
        load_profile("smoke", overrides={key: value})


def test_paper_table4():
    assert paper.table4("readmission", "text_only") == 65.0 and paper.table4("mortality", "medbind_bd") == 74.8
    assert math.isnan(paper.table4("mortality", "task_text"))
    with pytest.raises(ValueError):
        paper.table4("icu", "medbind_bd")
