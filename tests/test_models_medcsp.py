"""MEDCSP model (tiny configurations: a 1-block 32-wide ViT at 32 px, the packaged MiniLM at 16 word pieces,
8-wide EHR towers; the file runs in under a minute on 2 CPUs)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from medbind_lib.losses import MEDCSPLoss
from medbind_lib.models import (MEDCSP_MODALITIES, CXREncoder, ECGTransformer, MEDBindModel, MEDCSPConfig, MEDCSPModel,
                                MissingWeightsError, MLPEncoder, TemporalLSTM, build_medcsp_model,
                                medcsp_model_from_config)
from medbind_lib.models._common import param_groups

EMB = 16
DIMS = {"icd": 10, "drug": 7, "demo": 5, "temporal": 6}
S, T = 3, 5
TINY = {"medcsp_image_model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}, "cxr_size": 32,
        "medcsp_text_max_length": 16, "medcsp_embed_dim": EMB, "medcsp_mlp_hidden": 8, "medcsp_lstm_hidden": 8,
        "medcsp_lstm_layers": 2}
NOTES = ["pt admitted with pneumonia, treated with antibiotics.", "chf exacerbation, diuresed.",
         "sepsis from uti, resolved."]
REPORTS = ["no acute cardiopulmonary process.", "moderate cardiomegaly with small left pleural effusion."]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_medcsp_model(TINY, input_dims=DIMS).eval()


# ---------------------------------------------------------------- records and their collation (a reference collate)
def make_records(seed: int = 1) -> list[dict]:
    """EHR and CXR records with varied missing modalities, stays and texts shared between records."""
    g = torch.Generator().manual_seed(seed)

    def ehr(stays=None, note=None, drug=True):
        r = {"source": 0, "icd": (torch.rand(DIMS["icd"], generator=g) > 0.6).float(),
             "demo": torch.rand(DIMS["demo"], generator=g)}
        if drug:
            r["drug"] = (torch.rand(DIMS["drug"], generator=g) > 0.5).float()
        if stays is not None:
            r["temporal"] = torch.randn(S, T, DIMS["temporal"], generator=g)
            r["temporal_stays"] = torch.tensor(stays)
        if note is not None:
            r["note"] = note
        return r

    def cxr(report=None):
        r = {"source": 1, "image": torch.randn(3, 32, 32, generator=g)}
        if report is not None:
            r["report"] = report
        return r

    return [ehr([True, False, False], NOTES[0]), cxr(REPORTS[0]), ehr([True, True, True], NOTES[1], drug=False),
            cxr(REPORTS[1]), ehr(None, NOTES[0]), cxr(None), ehr([False, True, False], None), cxr(REPORTS[0]),
            ehr([True, True, False], NOTES[2])]


def collate(records: list[dict], tokenize) -> dict:
    """The batch contract: mask [N, 7], per-modality inputs of the present rows, distinct texts + indices."""
    mask = torch.tensor([[m in r for m in MEDCSP_MODALITIES] for r in records], dtype=torch.bool)
    batch = {"mask": mask, "sources": torch.tensor([r["source"] for r in records])}
    for m in ("icd", "drug", "demo", "temporal", "temporal_stays", "image"):
        rows = [r[m] for r in records if m in r]
        if rows:
            batch[m] = torch.stack(rows)
    texts: list[str] = []
    for m in ("note", "report"):
        idx = []
        for r in records:
            if m in r:
                if r[m] not in texts:
                    texts.append(r[m])
                idx.append(texts.index(r[m]))
        batch[f"{m}_index"] = torch.tensor(idx, dtype=torch.long)
    batch["text_tokens"] = tokenize(texts) if texts else None
    return batch


@pytest.fixture()
def records():
    return make_records()


@pytest.fixture()
def batch(model, records):
    return collate(records, model.tokenize)


# ---------------------------------------------------------------- shapes, norms, zeros, batch independence
def test_forward_shapes_unit_norm_and_zero_absent_rows(model, batch):
    with torch.no_grad():
        out = model(batch)
    assert tuple(out) == MEDCSP_MODALITIES == model.modalities
    n = batch["mask"].shape[0]
    for k, m in enumerate(MEDCSP_MODALITIES):
        z, present = out[m], batch["mask"][:, k]
        assert z.shape == (n, EMB), m
        assert torch.allclose(z[present].norm(dim=-1), torch.ones(int(present.sum())), atol=1e-5), m
        assert torch.equal(z[~present], torch.zeros(int((~present).sum()), EMB)), m
    assert model.logit_scale.item() == pytest.approx(10.0) and model.tau == pytest.approx(0.1)


def test_record_embedding_does_not_depend_on_the_rest_of_the_batch(model, records):
    with torch.no_grad():
        full = model(collate(records, model.tokenize))
        perm = [8, 3, 0, 5, 1, 7, 2, 6, 4]
        permuted = model(collate([records[i] for i in perm], model.tokenize))
        subset = [2, 7]                                   # one EHR and one CXR record, alone
        sub = model(collate([records[i] for i in subset], model.tokenize))
    for m in MEDCSP_MODALITIES:
        assert torch.allclose(permuted[m], full[m][perm], atol=1e-5), m
        assert torch.allclose(sub[m], full[m][subset], atol=1e-5), m


def test_a_modality_absent_from_the_whole_batch_gives_zeros(model, records):
    cxr_only = collate([r for r in records if r["source"] == 1], model.tokenize)
    out = model(cxr_only)
    for m in ("icd", "drug", "demo", "temporal", "note"):
        assert torch.equal(out[m], torch.zeros(4, EMB)), m
    sum(v.sum() for v in out.values()).backward()    # mixing absent zeros into a loss is fine
    empty = model({"mask": torch.zeros(0, 7, dtype=torch.bool)})
    assert all(v.shape == (0, EMB) for v in empty.values())
    model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- temporal LSTM
def reference_last_hidden(lstm: torch.nn.LSTM, seq: torch.Tensor) -> torch.Tensor:
    """Hand-written LSTM recurrence (gate order i, f, g, o) over one stay [T, C]; last layer's final h."""
    inp = seq
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        h = c = torch.zeros(lstm.hidden_size)
        outs = []
        for t in range(inp.shape[0]):
            i, f, g, o = (w_ih @ inp[t] + w_hh @ h + b).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        inp = torch.stack(outs)
    return h


def test_temporal_masked_mean_equals_per_stay_reference():
    torch.manual_seed(0)
    enc = TemporalLSTM(4, hidden=6, layers=2, dropout=0.3).eval()
    x = torch.randn(4, 3, 7, 4)
    stays = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        got = enc(x, stays)
        ref = torch.stack([torch.stack([reference_last_hidden(enc.lstm, x[i, s]) for s in range(3) if stays[i, s]])
                           .mean(0) for i in range(4)])
    assert got.shape == (4, 6) == (4, enc.out_dim)
    assert torch.allclose(got, ref, atol=1e-5)


def test_absent_stays_values_do_not_change_the_output(model, batch):
    x, stays = batch["temporal"], batch["temporal_stays"]
    assert not bool(stays.all())
    nan = x.clone().requires_grad_(True)
    with torch.no_grad():
        nan.data[~stays] = float("nan")
        a = model.encode("temporal", x, stays)
    b = model.encode("temporal", nan, stays)
    assert torch.isfinite(b).all() and torch.allclose(a, b, atol=1e-6)
    b.sum().backward()
    assert torch.isfinite(nan.grad).all() and torch.equal(nan.grad[~stays], torch.zeros_like(nan.grad[~stays]))
    with pytest.raises(ValueError, match="without a present stay"):
        model.encode("temporal", x, torch.zeros_like(stays))


def test_mlp_encoder_blocks_and_final_norm():
    enc = MLPEncoder(10, hidden=8, layers=3, dropout=0.2)
    kinds = [type(mod).__name__ for mod in enc.net]
    assert kinds == ["Linear", "GELU", "Dropout"] * 3 and enc.out_dim == 8
    assert isinstance(enc.norm, torch.nn.LayerNorm) and enc(torch.randn(4, 10)).shape == (4, 8)


# ---------------------------------------------------------------- gradients, shared text encoder
def _grads(model) -> dict[str, bool]:
    """{'encoders.icd': True, 'projections.note': False, ...}: does any parameter of the module have a gradient?"""
    out = {}
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:2])
        out[key] = out.get(key, False) or (p.grad is not None and bool(p.grad.abs().sum() > 0))
    return out


@pytest.mark.parametrize("source,expect", [
    (1, {"encoders.image", "encoders.text", "projections.image", "projections.report"}),
    (0, {"encoders.icd", "encoders.drug", "encoders.demo", "encoders.temporal", "encoders.text", "projections.icd",
         "projections.drug", "projections.demo", "projections.temporal", "projections.note"}),
])
def test_gradients_reach_exactly_the_present_modalities(model, records, source, expect):
    model.zero_grad(set_to_none=True)
    b = collate([r for r in records if r["source"] == source], model.tokenize)
    sum(v.sum() for v in model(b).values()).backward()
    got = {k for k, v in _grads(model).items() if v}
    model.zero_grad(set_to_none=True)
    assert got == expect


def test_note_and_report_share_the_text_encoder_not_the_projection(model):
    assert list(model.encoders) == ["icd", "drug", "demo", "temporal", "text", "image"]
    assert model.projections["note"] is not model.projections["report"]
    text_params = [n for n, _ in model.named_parameters() if n.startswith("encoders.text.")]
    assert text_params and not any("note" in n or "report" in n for n in text_params)
    tok = model.tokenize([REPORTS[1]])
    b = {"mask": torch.tensor([[0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool),
         "text_tokens": tok, "note_index": torch.tensor([0]), "report_index": torch.tensor([0])}
    with torch.no_grad():
        out = model(b)
        feats = model.encoders["text"](tok["input_ids"], tok["attention_mask"])
    assert torch.allclose(out["note"][0], F.normalize(model.projections["note"](feats), dim=-1)[0], atol=1e-6)
    assert torch.allclose(out["report"][1], F.normalize(model.projections["report"](feats), dim=-1)[0], atol=1e-6)
    assert not torch.allclose(out["note"][0], out["report"][1], atol=1e-3)
    with torch.no_grad():  # the public per-modality entry point agrees
        assert torch.allclose(model.encode_text([REPORTS[1]], "report"), out["report"][1:], atol=1e-6)


def test_each_distinct_text_is_encoded_once(model, records):
    seen = []
    hook = model.encoders["text"].register_forward_hook(lambda mod, args, out: seen.append(int(args[0].shape[0])))
    try:
        b = collate(records, model.tokenize)
        with torch.no_grad():
            model(b)
    finally:
        hook.remove()
    n_uses = len(b["note_index"]) + len(b["report_index"])
    assert b["text_tokens"]["input_ids"].shape[0] == len(set(NOTES + REPORTS)) < n_uses
    assert seen == [len(set(NOTES + REPORTS))]          # one call, each distinct text once


# ---------------------------------------------------------------- validation
def _drop_row(b, k):
    b[k] = b[k][1:]


BAD = {
    "icd rows": (lambda b: _drop_row(b, "icd"), "'icd'"),
    "icd width": (lambda b: b.update(icd=b["icd"][:, :4]), r"'icd' input must be \[n, 10\]"),
    "demo ndim": (lambda b: b.update(demo=b["demo"][:, :, None]), "'demo'"),
    "drug missing": (lambda b: b.pop("drug"), "no 'drug' input"),
    "temporal channels": (lambda b: b.update(temporal=b["temporal"][..., :2]), "'temporal'"),
    "temporal stays shape": (lambda b: b.update(temporal_stays=b["temporal_stays"][:, :2]), "'temporal_stays'"),
    "temporal stays missing": (lambda b: b.pop("temporal_stays"), "'temporal_stays'"),
    "image ndim": (lambda b: b.update(image=b["image"][:, 0]), "'image'"),
    "image rows": (lambda b: _drop_row(b, "image"), "'image'"),
    "note index length": (lambda b: _drop_row(b, "note_index"), "'note_index'"),
    "report index range": (lambda b: b.update(report_index=b["report_index"] + 10), "'report_index' out of range"),
    "text tokens missing": (lambda b: b.update(text_tokens=None), "'text_tokens'"),
    "mask columns": (lambda b: b.update(mask=b["mask"][:, :6]), "'mask' must be"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shapes_raise_a_clear_error(model, batch, case):
    edit, match = BAD[case]
    edit(batch)
    with pytest.raises(ValueError, match=match):
        model(batch)


# ---------------------------------------------------------------- config, builder, checkpoint round trip
def test_rebuild_from_model_config_gives_identical_outputs(model, batch):
    cfg = json.loads(json.dumps(model.model_config))      # what a checkpoint stores
    assert cfg["input_dims"] == DIMS and cfg["medcsp_modalities"] == list(MEDCSP_MODALITIES)
    torch.manual_seed(123)                                  # other random init: the state dict must carry it all
    again = medcsp_model_from_config(cfg)
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        a, b = model(batch), again(batch)
    for m in MEDCSP_MODALITIES:
        assert torch.equal(a[m], b[m]), m
    with pytest.raises(ValueError, match="not MEDCSPConfig fields"):
        medcsp_model_from_config({**cfg, "bogus": 1})


def test_config_from_profile_defaults_and_text_path_fallback():
    cfg = MEDCSPConfig.from_profile({"seed": 0})
    assert cfg.medcsp_embed_dim == 512 and cfg.medcsp_image_model == "vit_base_patch16_224"
    assert cfg.medcsp_image_pool == "token" and cfg.cxr_size == 224 and cfg.medcsp_text_max_length == 256
    assert cfg.medcsp_tau == 0.1 and cfg.medcsp_learnable_temperature is False
    assert cfg.medcsp_modalities == list(MEDCSP_MODALITIES) and cfg.medcsp_text_model_path is None
    assert MEDCSPConfig.from_profile({"text_model_path": "/x/biobert"}).medcsp_text_model_path == "/x/biobert"
    own = MEDCSPConfig.from_profile({"text_model_path": "/x/biobert", "medcsp_text_model_path": "{root}/bert",
                                     "root": "/y"})
    assert own.medcsp_text_model_path == "/y/bert"
    with pytest.raises(ValueError, match="medcsp_modalities"):
        MEDCSPConfig(medcsp_modalities=["icd", "ecg"]).validate()


def test_builder_needs_input_dims_and_builds_only_what_it_embeds():
    with pytest.raises(ValueError, match=r"input_dims for \['icd', 'temporal'\]"):
        build_medcsp_model({**TINY, "medcsp_modalities": ["icd", "temporal"]}, input_dims={"drug": 3})
    m = build_medcsp_model({**TINY, "medcsp_modalities": ["temporal", "demo"]}, input_dims=DIMS)
    assert m.modalities == ("demo", "temporal") and list(m.encoders) == ["demo", "temporal"]
    assert list(m.projections) == ["demo", "temporal"] and m.mask_columns == [2, 3]


def test_missing_local_weights_raise_missing_weights_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="medcsp_image_pretrained_path"):
        build_medcsp_model({**TINY, "medcsp_modalities": ["image"],
                            "medcsp_image_pretrained_path": str(tmp_path / "no_vit.pth")})
    with pytest.raises(MissingWeightsError):
        build_medcsp_model({**TINY, "medcsp_modalities": ["report"],
                            "medcsp_text_model_path": str(tmp_path / "nobert")})


def test_model_rejects_inconsistent_encoders(model):
    with pytest.raises(ValueError, match="serve none"):
        MEDCSPModel({"image": model.encoders["image"], "icd": model.encoders["icd"]}, embed_dim=EMB,
                    modalities=("image",))
    with pytest.raises(ValueError, match="need encoders"):
        MEDCSPModel({"image": model.encoders["image"]}, embed_dim=EMB, modalities=("image", "report"))


# ---------------------------------------------------------------- optimiser groups
def test_param_groups_follow_the_medbind_convention():
    torch.manual_seed(0)
    m = build_medcsp_model({**TINY, "medcsp_modalities": ["icd", "temporal", "image"],
                            "medcsp_learnable_temperature": True}, input_dims=DIMS)
    groups = m.param_groups(0.1, lr=1e-3, lr_scales={"encoders.image": 0.1})
    by_id = {id(p): g for g in groups for p in g["params"]}
    names = dict(m.named_parameters())
    assert len(by_id) == sum(len(g["params"]) for g in groups) == len(names)
    for name, p in names.items():
        g = by_id[id(p)]
        no_decay = p.ndim < 2 or name == "log_logit_scale" or "pos_embed" in name or "cls_token" in name
        assert g["weight_decay"] == (0.0 if no_decay else 0.1), name
        assert g["lr"] == pytest.approx(1e-4 if name.startswith("encoders.image") else 1e-3), name
    assert by_id[id(m.encoders["icd"].norm.weight)]["weight_decay"] == 0.0
    assert by_id[id(m.encoders["temporal"].lstm.weight_ih_l0)]["weight_decay"] == 0.1
    # MEDBindModel.param_groups is the same shared helper
    ecg = ECGTransformer(n_samples=100, patch=10, dim=16, depth=1, heads=2)
    mb = MEDBindModel({"cxr": CXREncoder("test_vit", img_size=32), "ecg": ecg}, embed_dim=8, learnable_temperature=True)
    a, b = mb.param_groups(0.1, 1e-3, {"encoders.ecg": 0.5}), param_groups(mb, 0.1, 1e-3, {"encoders.ecg": 0.5})
    assert [[id(p) for p in g["params"]] for g in a] == [[id(p) for p in g["params"]] for g in b]
    assert [(g["weight_decay"], g["lr"]) for g in a] == [(g["weight_decay"], g["lr"]) for g in b]


# ---------------------------------------------------------------- the MEDCSP loss on model outputs
def test_medcsp_loss_accepts_the_model_output_and_backpropagates(model, batch):
    model.train()
    try:
        out = model(batch)
        loss = MEDCSPLoss("medcsp_a", modalities=MEDCSP_MODALITIES)(
            {"embeddings": out, "mask": batch["mask"], "sources": batch["sources"]}, logit_scale=model.logit_scale)
        assert torch.isfinite(loss["loss"]) and loss["la_anchors"].item() == batch["mask"].sum().item()
        loss["loss"].backward()
        grads = _grads(model)
        assert all(grads[f"projections.{m}"] for m in MEDCSP_MODALITIES)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_single_source_model_with_the_single_variant(model, batch):
    single = MEDCSPModel({"image": model.encoders["image"], "text": model.encoders["text"]}, embed_dim=EMB,
                         modalities=("report", "image")).eval()
    assert single.modalities == ("image", "report") and single.mask_columns == [5, 6]
    out = single(batch)                                     # EHR inputs of the mixed batch are ignored
    assert tuple(out) == ("image", "report")
    loss = MEDCSPLoss("medcsp_single")({"embeddings": out, "mask": batch["mask"][:, single.mask_columns],
                                        "sources": batch["sources"]})
    loss["loss"].backward()
    assert loss["n_records"].item() == 4 and single.projections["report"].weight.grad is not None
    single.zero_grad(set_to_none=True)
