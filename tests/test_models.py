"""Encoders and the MEDBind model (tiny configurations: the whole file runs in well under a minute on 2 CPUs)."""
from __future__ import annotations

import math
import socket

import pytest
import torch
from torch import nn

from medbind_lib.errors import ConfigError
from medbind_lib.models import (CXREncoder, ECGTransformer, MEDBindModel, MissingWeightsError, ModelConfig,
                                TextEncoder, build_model, count_parameters, flops_per_sample, packaged_minilm_path)
from medbind_lib.models.ecg import Attention

EMB = 16
TEXTS = ["no acute cardiopulmonary process.", "sinus rhythm. normal ecg.",
         "moderate cardiomegaly with small left pleural effusion.", "no acute cardiopulmonary process."]


@pytest.fixture(scope="module")
def text_encoder():
    torch.manual_seed(0)
    return TextEncoder(None, pool="cls", max_length=32)


def tiny_ecg(**kw) -> ECGTransformer:
    cfg = dict(n_samples=1000, patch=10, dim=32, depth=1, heads=4, dropout=0.0)
    cfg.update(kw)
    return ECGTransformer(**cfg)


def tiny_model(text_encoder, **kw) -> MEDBindModel:
    torch.manual_seed(0)
    enc = {"cxr": CXREncoder("test_resnet", img_size=32), "ecg": tiny_ecg(), "text": text_encoder}
    return MEDBindModel(enc, embed_dim=EMB, **kw)


def tiny_batch(model, n=4):
    g = torch.Generator().manual_seed(1)
    tok = model.tokenize(TEXTS[:n])
    return {"cxr": torch.randn(n, 3, 32, 32, generator=g), "ecg": torch.randn(n, 12, 1000, generator=g),
            "cxr_text": tok, "ecg_text": tok}


# ---------------------------------------------------------------- shapes, norms, missing modalities
def test_forward_shapes_and_unit_norm(text_encoder):
    model = tiny_model(text_encoder).eval()
    with torch.no_grad():
        out = model(tiny_batch(model))
    assert set(out) == {"cxr", "ecg", "cxr_text", "ecg_text"}
    for k, z in out.items():
        assert z.shape == (4, EMB), k
        assert torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5), k
    # shared text encoder + shared projection: the same tokens give the same embedding for both text kinds
    assert torch.allclose(out["cxr_text"], out["ecg_text"])


def test_missing_modality_and_empty_inputs(text_encoder):
    model = tiny_model(text_encoder).eval()
    b = tiny_batch(model)
    with torch.no_grad():
        out = model({"ecg": b["ecg"], "ecg_text": b["ecg_text"], "cxr": None})
        assert set(out) == {"ecg", "ecg_text"}
        out = model({"cxr": b["cxr"][:0], "ecg": b["ecg"]})
        assert out["cxr"].shape == (0, EMB) and out["ecg"].shape == (4, EMB)
        # restricting the modalities ignores the others
        assert set(model(b, modalities=("ecg",))) == {"ecg"}
    ecg_only = MEDBindModel({"ecg": tiny_ecg(), "text": text_encoder}, embed_dim=EMB)
    assert "cxr" not in ecg_only.encoders and ecg_only.modalities == ("ecg", "cxr_text", "ecg_text")
    with pytest.raises(ValueError, match="no 'cxr' encoder"):
        ecg_only({"cxr": b["cxr"]})


def test_text_inputs_as_strings(text_encoder):
    model = tiny_model(text_encoder).eval()
    with torch.no_grad():
        a = model({"cxr_text": TEXTS})["cxr_text"]
        b = model.encode_text(model.tokenize(TEXTS))
    assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- ECG transformer
def test_ecg_wrong_length_is_a_clear_error():
    m = tiny_ecg()
    with pytest.raises(ValueError, match=r"\[B, 12, 1000\].*\(2, 12, 999\)"):
        m(torch.randn(2, 12, 999))
    with pytest.raises(ValueError, match=r"\(2, 8, 1000\)"):
        m(torch.randn(2, 8, 1000))
    with pytest.raises(ValueError, match="divisible"):
        ECGTransformer(n_samples=1000, patch=7)


def test_ecg_patch10_gives_101_tokens():
    m = tiny_ecg(patch=10).eval()
    seen = []
    m.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        z = m(torch.randn(2, 12, 1000))
    assert seen == [(2, 101, 32)] and m.n_tokens == 101 and z.shape == (2, 32) == (2, m.out_dim)
    # patch=1 (the paper): one token per time point
    assert ECGTransformer(patch=1, dim=8, depth=1, heads=2).n_tokens == 1001


def test_ecg_token_holds_consecutive_samples_of_all_leads():
    m = tiny_ecg(patch=10).eval()
    x = torch.randn(1, 12, 1000)
    y = x.clone()
    y[0, 3, 25] += 1.0  # lead 3, sample 25 -> token 2 (samples 20..29), sequence position 3 after CLS
    with torch.no_grad():
        d = (m.tokens(y) - m.tokens(x)).abs().sum(-1)[0]
    assert torch.nonzero(d > 0).flatten().tolist() == [3]


def test_sdpa_attention_equals_naive_reference():
    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4, attn_drop=0.5, proj_drop=0.5).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        q, k, v = attn.qkv_heads(x)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        ref = attn.proj((w @ v).transpose(1, 2).reshape(2, 9, 32))
        got = attn(x)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_ecg_output_is_cls_after_final_norm():
    m = tiny_ecg().eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        h = m.tokens(x)
        for blk in m.blocks:
            h = blk(h)
        ref = m.norm(h)[:, 0]
        assert torch.allclose(m(x), ref, atol=1e-6)


# ---------------------------------------------------------------- text encoder (offline)
def test_text_encoder_loads_offline_from_package(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("the text encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    enc = TextEncoder(None, pool="cls", max_length=32).eval()
    assert enc.path == packaged_minilm_path() and (enc.path / "config.json").exists()
    assert enc.out_dim == 384
    # the packaged weights are really loaded (not a random init)
    from safetensors.torch import load_file

    sd = load_file(str(enc.path / "model.safetensors"))
    key = next(k for k in sd if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(enc.model.embeddings.word_embeddings.weight, sd[key])
    with torch.no_grad():
        z = enc(**enc.tokenize(TEXTS))
        z_alone = enc(**enc.tokenize(TEXTS[:1]))  # other padding length
    assert z.shape == (4, 384)
    assert torch.equal(z[0], z[3])                       # identical texts, same batch
    assert torch.allclose(z[0], z_alone[0], atol=1e-4)   # identical text, different padding
    assert (z[0] - z[1]).abs().max() > 1e-2 and (z[0] - z[2]).abs().max() > 1e-2


def test_text_pool_and_truncation(text_encoder):
    long = " ".join(["opacity"] * 200)
    tok = text_encoder.tokenize([long, "short"])
    assert tok["input_ids"].shape == (2, 32) and tok["attention_mask"][1].sum() < 32
    mean = TextEncoder(None, pool="mean", max_length=32).eval()
    with torch.no_grad():
        a, b = text_encoder.eval()(**tok), mean(**tok)
        h = mean.model(**tok).last_hidden_state
    m = tok["attention_mask"][1].bool()
    assert torch.allclose(b[1], h[1][m].mean(0), atol=1e-5)
    assert torch.allclose(a[1], h[1][0], atol=1e-5)
    with pytest.raises(ValueError, match="text_pool"):
        TextEncoder(None, pool="max")


def test_frozen_text_encoder_caches_and_matches_the_live_one(text_encoder):
    live = text_encoder.eval()
    frozen = TextEncoder(None, pool="cls", max_length=32).freeze()
    frozen.load_state_dict(live.state_dict())
    tok = live.tokenize(TEXTS)
    with torch.no_grad():
        ref = live(**tok)
    a = frozen.train()(**tok)                          # train() must not switch the frozen BERT's dropout on
    assert not frozen.model.training and not a.requires_grad
    assert torch.allclose(a, ref, atol=1e-5) and (frozen.cache_misses, frozen.cache_hits) == (3, 1)
    # the same texts padded differently (other batch) hit the cache and give the same features
    tok2 = live.tokenize([TEXTS[2], "a new text", TEXTS[0]])
    b = frozen(**tok2)
    assert (frozen.cache_misses, frozen.cache_hits) == (4, 3)
    assert torch.equal(b[0], a[2]) and torch.equal(b[2], a[0])
    assert all(not p.requires_grad for p in frozen.parameters())
    # loading other weights invalidates the cache
    sd = {k: v + 0.01 if v.is_floating_point() else v for k, v in live.state_dict().items()}
    frozen.load_state_dict(sd)
    c = frozen(**tok)
    assert frozen.cache_misses == 7 and not torch.allclose(c, a, atol=1e-4)


def test_frozen_text_in_a_model_trains_only_the_projection(text_encoder):
    cfg = ModelConfig(modalities=("ecg", "text"), ecg_patch=10, ecg_dim=32, ecg_depth=1, embed_dim=EMB,
                      text_max_length=32, text_freeze=True)
    model = build_model(cfg)
    names = [n for g in model.param_groups(0.1) for p in g["params"] for n, q in model.named_parameters() if q is p]
    assert names and not any(n.startswith("encoders.text") for n in names)
    assert any(n.startswith("projections.text") for n in names)
    tok = model.tokenize(TEXTS)
    loss = model.encode_text(tok).sum() + model.encode_ecg(torch.randn(2, 12, 1000)).sum()
    loss.backward()
    assert model.projections["text"].weight.grad is not None


# ---------------------------------------------------------------- local weights
def test_missing_pretrained_paths_raise_naming_path_and_key(tmp_path):
    missing = tmp_path / "weights" / "swin_tiny.pth"
    with pytest.raises(MissingWeightsError) as e:
        CXREncoder("test_resnet", pretrained_path=str(missing))
    assert str(missing) in str(e.value) and "cxr_pretrained_path" in str(e.value)
    assert isinstance(e.value, ConfigError) and isinstance(e.value, FileNotFoundError)
    bio = tmp_path / "biobert-v1.1"
    with pytest.raises(MissingWeightsError, match="text_model_path") as e:
        TextEncoder(str(bio))
    assert str(bio) in str(e.value)
    # build_model fails at start, before building anything else
    with pytest.raises(MissingWeightsError, match="cxr_pretrained_path"):
        build_model({"cxr_model": "test_resnet", "cxr_pretrained_path": str(missing), "modalities": ["cxr"]})


def test_local_cxr_checkpoint_is_loaded(tmp_path):
    import timm

    torch.manual_seed(3)
    src = timm.create_model("test_vit", num_classes=5)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "ckpt.pth")
    enc = CXREncoder("test_vit", pretrained_path=str(tmp_path / "ckpt.pth"), pool="token")
    assert torch.equal(enc.model.patch_embed.proj.weight, src.patch_embed.proj.weight)
    assert enc.out_dim == src.num_features
    fresh = CXREncoder("test_vit", pool="token")
    assert not torch.equal(fresh.model.patch_embed.proj.weight, src.patch_embed.proj.weight)


# ---------------------------------------------------------------- gradients, temperature
@pytest.mark.parametrize("shared", [True, False])
def test_gradient_reaches_every_projection_and_parameter(text_encoder, shared):
    model = tiny_model(text_encoder, shared_text_projection=shared, learnable_temperature=True).train()
    model.zero_grad(set_to_none=True)
    expected = {"cxr", "ecg", "text"} if shared else {"cxr", "ecg", "cxr_text", "ecg_text"}
    assert set(model.projections) == expected
    out = model(tiny_batch(model))
    s = model.logit_scale
    loss = -(s * (out["cxr"] * out["cxr_text"]).sum(-1)).mean() - (s * (out["ecg"] * out["ecg_text"]).sum(-1)).mean()
    loss.backward()
    for name, proj in model.projections.items():
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0, name
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == [], f"parameters without gradient (DDP would need find_unused_parameters): {no_grad[:5]}"
    model.zero_grad(set_to_none=True)


def test_learnable_temperature_is_parameter_fixed_is_buffer(text_encoder):
    fixed = MEDBindModel({"ecg": tiny_ecg()}, embed_dim=EMB, init_tau=0.07)
    learn = MEDBindModel({"ecg": tiny_ecg()}, embed_dim=EMB, init_tau=0.07, learnable_temperature=True)
    assert "log_logit_scale" in dict(fixed.named_buffers()) and "log_logit_scale" not in dict(fixed.named_parameters())
    assert "log_logit_scale" in dict(learn.named_parameters()) and "log_logit_scale" not in dict(learn.named_buffers())
    for m in (fixed, learn):
        assert m.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5) and m.tau == pytest.approx(0.07, rel=1e-5)
    assert not fixed.logit_scale.requires_grad and learn.logit_scale.requires_grad
    assert set(fixed.state_dict()) == set(learn.state_dict())  # checkpoints interchange
    learn.logit_scale.backward()
    assert learn.log_logit_scale.grad is not None
    with torch.no_grad():
        learn.log_logit_scale.fill_(10.0)
    assert learn.logit_scale.item() == pytest.approx(100.0)  # clamped at max_logit_scale
    groups = learn.param_groups(0.1)
    assert any(p is learn.log_logit_scale for p in groups[1]["params"])


# ---------------------------------------------------------------- CXR encoder
def test_channels_last_forward_equals_default():
    torch.manual_seed(0)
    ref = CXREncoder("test_resnet", img_size=32).eval()
    cl = CXREncoder("test_resnet", img_size=32, channels_last=True).eval()
    cl.load_state_dict(ref.state_dict())
    conv = next(m for m in cl.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        a, b = ref(x), cl(x)
    assert a.shape == (3, ref.out_dim) and torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_cxr_pool_options():
    x = torch.randn(2, 3, 32, 32)
    enc = CXREncoder("test_resnet", pool="catavgmax")
    assert enc(x).shape == (2, enc.out_dim) and enc.out_dim == 2 * enc.model.num_features
    with pytest.raises(ValueError, match="cxr_pool|pool"):
        CXREncoder("test_resnet", pool="token")
    with pytest.raises(ValueError, match="unknown timm model"):
        CXREncoder("no_such_net")


# ---------------------------------------------------------------- config, counting, FLOPs
def test_build_model_from_profile_dict(text_encoder, monkeypatch):
    profile = {"cxr_model": "test_resnet", "cxr_size": 32, "ecg_patch": 20, "ecg_dim": 16, "ecg_depth": 1,
               "ecg_heads": 2, "ecg_fs": 50, "ecg_seconds": 10.0, "embed_dim": 8, "tau": 0.1,
               "n_patients": 60, "seed": 0, "modalities": ["cxr", "ecg"]}
    cfg = ModelConfig.from_profile(profile)
    assert cfg.ecg_samples == 500 and cfg.text_pool == "cls" and cfg.modalities == ("cxr", "ecg")
    model = build_model(profile)
    assert set(model.encoders) == {"cxr", "ecg"} and model.encoders["ecg"].n_tokens == 26
    assert model.embed_dim == 8 and model.tau == pytest.approx(0.1) and model.model_config["ecg_samples"] == 500
    with torch.no_grad():
        out = model.eval()({"cxr": torch.randn(2, 3, 32, 32), "ecg": torch.randn(2, 12, 500)})
    assert out["cxr"].shape == out["ecg"].shape == (2, 8)
    rel = ModelConfig.from_profile({"text_model_path": "models/biobert", "cxr_pretrained_path": "{data_root}/w.pth",
                                    "data_root": "/d"})
    assert rel.text_model_path.endswith("/models/biobert") and rel.text_model_path.startswith("/")
    assert rel.cxr_pretrained_path == "/d/w.pth"
    with pytest.raises(ValueError, match="modalities"):
        build_model({"modalities": ["audio"]})


def test_count_parameters_and_flops():
    lin = nn.Linear(10, 20)
    seq = nn.Sequential(lin, lin)
    assert count_parameters(lin) == 220 and count_parameters(seq) == 220
    lin.bias.requires_grad_(False)
    assert count_parameters(lin, trainable_only=True) == 200

    class DictLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(10, 20, bias=False)

        def forward(self, batch):
            return {"y": self.f(batch["x"])}

    m = DictLinear()
    assert flops_per_sample(m, {"x": torch.randn(4, 10)}) == 2 * 10 * 20
    # backward of a first layer: weight gradient only (the data needs no gradient) -> 2x; with it -> 3x
    assert flops_per_sample(m, {"x": torch.randn(4, 10)}, backward=True) == 2 * 2 * 10 * 20
    assert flops_per_sample(m, {"x": torch.randn(4, 10, requires_grad=True)}, backward=True) == 3 * 2 * 10 * 20
    ecg = MEDBindModel({"ecg": tiny_ecg()}, embed_dim=EMB)
    total, per = flops_per_sample(ecg, {"ecg": torch.randn(2, 12, 1000)}, breakdown=True)
    assert total > 0 and per["MEDBindModel.encoders.ecg"] > 0.9 * total
    assert per["MEDBindModel.projections.ecg"] == 2 * 32 * EMB


def test_param_groups_lr_scales_split_the_text_encoder():
    from medbind_lib.models import build_model
    from medbind_lib.config import load_profile

    model = build_model(load_profile("smoke"))
    groups = model.param_groups(0.1, lr=1e-3, lr_scales={"encoders.text": 0.01})
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        assert g["lr"] == pytest.approx(1e-5 if name.startswith("encoders.text") else 1e-3), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["weight_decay"] for g in groups} == {0.0, 0.1}
