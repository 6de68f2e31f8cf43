"""The pre-trained radiology baselines' adapters (models/pretrained.py), offline: each family's model is built at a
tiny configuration, saved in its own library's format and folder layout, loaded through the adapter and scored,
against the library's own forward (open_clip, transformers) or a hand computation on the same weights (the
rebuilt MedCLIP / CXR-CLIP, whose released key layouts must load without a missing or unexpected key)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from medbind_lib.export import embed_arrays, embed_texts
from medbind_lib.models import pretrained as P
from medbind_lib.models.text import packaged_minilm_path

TEXTS = ["no acute cardiopulmonary process", "small left pleural effusion", "cardiomegaly"]


def _images(n=3, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _export_images(adapter, imgs):
    """The suite's export path (EvalArrayDataset + the adapter's own transform)."""
    cached = SimpleNamespace(array=imgs)
    man = pd.DataFrame({"index": np.arange(len(imgs))})
    return embed_arrays(adapter, cached, man, "cxr", {"cxr_size": 224, "ecg_norm": "none"})


def _unit(x):
    return F.normalize(torch.as_tensor(x).float(), dim=-1).numpy()


def _bert_folder(tmp_path, name="text", layers=3):
    """A tiny BERT config + the packaged MiniLM's WordPiece tokenizer, as a Hugging Face folder."""
    from transformers import BertConfig

    d = tmp_path / name
    d.mkdir()
    src = packaged_minilm_path()
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, d / f)
    BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=300).save_pretrained(d)
    return d


def _swin_folder(tmp_path, size=32):
    from transformers import SwinConfig

    d = tmp_path / "vision"
    d.mkdir()
    SwinConfig(image_size=size, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
               ).save_pretrained(d)
    return d


# ------------------------------------------------------------------------------------------------ open_clip
def test_open_clip_local_dir_equals_library_forward(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {"model_cfg": {"embed_dim": 12,
                         "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
                         "text_cfg": {"context_length": 13, "vocab_size": 49408, "width": 16, "heads": 2,
                                      "layers": 1}},
           "preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7], "interpolation": "bicubic",
                              "resize_mode": "shortest"}}
    d = tmp_path / "oc"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    ref = open_clip.model.CLIP(**cfg["model_cfg"]).eval()
    torch.save(ref.state_dict(), d / "open_clip_pytorch_model.bin")

    ad = P.load({"family": "open_clip", "source": f"local-dir:{d}"})
    assert ad.embed_dim == 12
    tok = ad.tokenize(TEXTS)
    assert tok["input_ids"].shape == (3, 13)                              # the model's own context length
    x = ad.cxr_transform(_images(1)[0])
    assert x.shape == (3, 32, 32)
    norm = [t for t in ad._transform.transforms if type(t).__name__ == "Normalize"][0]
    assert list(norm.mean) == [0.1, 0.2, 0.3] and list(norm.std) == [0.5, 0.6, 0.7]

    imgs = _images()
    got_i, got_t = _export_images(ad, imgs), embed_texts(ad, TEXTS)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}")
    model.eval()
    with torch.no_grad():
        px = torch.stack([preprocess(Image.fromarray(a, "L").convert("RGB")) for a in imgs])
        want_i = _unit(model.encode_image(px))
        want_t = _unit(model.encode_text(open_clip.get_tokenizer(f"local-dir:{d}")(TEXTS)))
    np.testing.assert_allclose(got_i, want_i, atol=1e-5)
    np.testing.assert_allclose(got_t, want_t, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_i, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ hf_clip
def test_hf_clip_folder_equals_transformers_forward(tmp_path):
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    d = _bert_folder(tmp_path, "pubmedclip")            # the folder's own tokenizer (a WordPiece one here)
    (d / "config.json").unlink()
    cfg = CLIPConfig(text_config=dict(vocab_size=30522, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=20, bos_token_id=101,
                                      eos_token_id=102, pad_token_id=0),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=16), projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.2, 0.3, 0.4], image_std=[0.3, 0.3, 0.3]).save_pretrained(d)

    ad = P.load({"family": "hf_clip", "source": str(d)})
    assert ad.embed_dim == 8
    long = ad.tokenize([" ".join(["effusion"] * 50)])
    assert long["input_ids"].shape[1] == 20                              # max_position_embeddings
    imgs = _images()
    got_i, got_t = _export_images(ad, imgs), embed_texts(ad, TEXTS)

    model, proc, tok = CLIPModel.from_pretrained(d).eval(), CLIPImageProcessor.from_pretrained(d), \
        AutoTokenizer.from_pretrained(d)
    with torch.no_grad():
        px = proc(images=[Image.fromarray(a, "L").convert("RGB") for a in imgs], return_tensors="pt")["pixel_values"]
        want_i = _unit(P._features(model.get_image_features(pixel_values=px)))
        enc = tok(TEXTS, padding=True, return_tensors="pt")
        want_t = _unit(P._features(model.get_text_features(input_ids=enc["input_ids"],
                                                           attention_mask=enc["attention_mask"])))
    np.testing.assert_allclose(got_i, want_i, atol=1e-5)
    np.testing.assert_allclose(got_t, want_t, atol=1e-5)


# ------------------------------------------------------------------------------------------------ MedCLIP
def _released_swin(swin) -> dict:
    """A SwinModel's weights under the transformers 4.x names the released MedCLIP / CXR-CLIP files carry (the
    relative position index buffers included: 4.x saved them), whatever transformers is installed."""
    out = {}
    for k, v in swin.state_dict().items():
        k = next((k.replace(new, old, 1) for old, new in P.SWIN_RENAMES if new in k), k)
        out[k] = v
    for name, buf in swin.named_buffers():
        if name.endswith(P.UNSAVED):
            out[name.replace("attention.relative_position_bias.", "attention.self.")] = buf
    assert any("attention.self.query.weight" in k for k in out) and any("intermediate.dense" in k for k in out)
    return out


def _medclip_state(bert_cfg, swin_cfg, seed=0):
    """A checkpoint in MedCLIP's released key layout, built from the libraries' own modules (not the adapter's)."""
    from transformers import BertModel, SwinModel

    torch.manual_seed(seed)
    swin, bert = SwinModel(swin_cfg).eval(), BertModel(bert_cfg).eval()
    pv, pt = torch.nn.Linear(swin_cfg.hidden_size, 10, bias=False), torch.nn.Linear(16, 10, bias=False)
    state = {**{f"vision_model.model.{k}": v for k, v in _released_swin(swin).items()},
             "vision_model.projection_head.weight": pv.weight.detach(),
             **{f"text_model.model.{k}": v for k, v in bert.state_dict().items()},
             "text_model.model.embeddings.position_ids": torch.arange(300)[None],   # saved by transformers 4.24
             "text_model.projection_head.weight": pt.weight.detach(), "logit_scale": torch.tensor(2.6593)}
    return state, (swin, bert, pv, pt)


def test_medclip_released_layout_loads_and_scores_by_hand(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    tdir, vdir = _bert_folder(tmp_path), _swin_folder(tmp_path)
    state, (swin, bert, pv, pt) = _medclip_state(AutoConfig.from_pretrained(tdir), AutoConfig.from_pretrained(vdir))
    w = tmp_path / "medclip"
    w.mkdir()
    torch.save(state, w / "pytorch_model.bin")
    ad = P.load({"family": "medclip_release", "source": str(w), "text_config": str(tdir), "vision_config": str(vdir)})
    assert ad.embed_dim == 10

    imgs = _images(h=20, w=30)                          # smaller than the input: pasted centred on a black square
    got_i, got_t = _export_images(ad, imgs), embed_texts(ad, TEXTS)
    with torch.no_grad():
        px = []
        for a in imgs:
            canvas = np.zeros((32, 32), np.uint8)
            canvas[6:26, 1:31] = a
            px.append(torch.from_numpy((canvas / 255.0 - P.MEDCLIP_MEAN) / P.MEDCLIP_STD).float()[None])
        px = torch.stack(px)
        np.testing.assert_allclose(torch.stack([ad.cxr_transform(a) for a in imgs]).numpy(), px.numpy(), atol=1e-5)
        want_i = _unit(pv(swin(pixel_values=px.repeat(1, 3, 1, 1)).pooler_output))
        enc = AutoTokenizer.from_pretrained(tdir)(TEXTS, padding=True, return_tensors="pt")
        hs = bert(**{k: enc[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True).hidden_states
        want_t = _unit(pt((hs[1].mean(1) + hs[2].mean(1) + hs[3].mean(1)) / 3))
    np.testing.assert_allclose(got_i, want_i, atol=1e-5)
    np.testing.assert_allclose(got_t, want_t, atol=1e-5)


def test_medclip_key_mismatch_names_the_keys(tmp_path):
    from transformers import AutoConfig

    tdir, vdir = _bert_folder(tmp_path), _swin_folder(tmp_path)
    state, _ = _medclip_state(AutoConfig.from_pretrained(tdir), AutoConfig.from_pretrained(vdir))
    state["vision_model.extra.weight"] = torch.zeros(1)
    del state["text_model.projection_head.weight"]
    w = tmp_path / "medclip"
    w.mkdir()
    torch.save(state, w / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"text_model.projection_head.weight.*vision_model.extra.weight"):
        P.load({"family": "medclip_release", "source": str(w), "text_config": str(tdir), "vision_config": str(vdir)})


# ------------------------------------------------------------------------------------------------ CXR-CLIP
@pytest.mark.parametrize("vision", ["swin", "resnet"])
def test_cxr_clip_released_layout_loads_and_scores_by_hand(tmp_path, vision):
    import torchvision
    from transformers import AutoConfig, AutoTokenizer, BertModel, SwinModel

    tdir, vdir = _bert_folder(tmp_path), _swin_folder(tmp_path)
    torch.manual_seed(1)
    bert = BertModel(AutoConfig.from_pretrained(tdir)).eval()
    if vision == "swin":
        img = SwinModel(AutoConfig.from_pretrained(vdir)).eval()
        img_state = {f"image_encoder.image_encoder.{k}": v for k, v in _released_swin(img).items()}
        d_img = img.config.hidden_size
    else:
        img = torchvision.models.resnet50(weights=None).eval()
        img.fc = torch.nn.Identity()
        img_state, d_img = {f"image_encoder.resnet.{k}": v for k, v in img.state_dict().items()}, 2048
    pi, pt = torch.nn.Linear(d_img, 6), torch.nn.Linear(16, 6)
    state = {**img_state, **{f"text_encoder.text_encoder.{k}": v for k, v in bert.state_dict().items()},
             **{f"{name}_projection.projection.{w}": getattr(lin, w).detach()
                for name, lin in (("image", pi), ("text", pt)) for w in ("weight", "bias")},
             "logit_scale": torch.tensor(2.6593)}
    path = tmp_path / "cxrclip.tar"
    torch.save({"model": state, "config": {"base": {"text_max_length": 9, "image_size": 32}}, "epoch": 3}, path)
    ad = P.load({"family": "cxr_clip_release", "source": str(path), "text_config": str(tdir),
                 "vision_config": str(vdir)})
    assert ad.embed_dim == 6
    assert ad.tokenize([" ".join(["effusion"] * 40)])["input_ids"].shape[1] == 9     # config's text_max_length

    imgs = _images(h=40, w=64)
    got_i, got_t = _export_images(ad, imgs), embed_texts(ad, TEXTS)
    mean, std = (np.full(3, 0.5), np.full(3, 0.5)) if vision == "swin" else (np.array(P.IMAGENET_MEAN),
                                                                             np.array(P.IMAGENET_STD))
    with torch.no_grad():
        px = []
        for a in imgs:                                  # shorter side -> 32 (bilinear), centre crop, RGB
            r = np.asarray(Image.fromarray(a, "L").convert("RGB").resize((51, 32), Image.BILINEAR), np.float64)
            r = (r[:, 10:42] / 255.0 - mean) / std      # left = round((51 - 32) / 2) = 10
            px.append(torch.from_numpy(r.transpose(2, 0, 1)).float())
        px = torch.stack(px)
        np.testing.assert_allclose(torch.stack([ad.cxr_transform(a) for a in imgs]).numpy(), px.numpy(), atol=1e-4)
        feat = img(pixel_values=px).last_hidden_state[:, 0] if vision == "swin" else img(px)
        want_i = _unit(pi(feat))
        enc = AutoTokenizer.from_pretrained(tdir)(TEXTS, padding=True, truncation=True, max_length=9,
                                                  return_tensors="pt")
        h = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        last = enc["attention_mask"].sum(1) - 1
        want_t = _unit(pt(h[torch.arange(3), last]))
    np.testing.assert_allclose(got_i, want_i, atol=1e-4)
    np.testing.assert_allclose(got_t, want_t, atol=1e-5)


def test_cxr_clip_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.tar"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a CXR-CLIP checkpoint"):
        P.load({"family": "cxr_clip_release", "source": str(path)})


# ------------------------------------------------------------------------------------------------ offline errors
@pytest.mark.parametrize("spec, needle", [
    ({"family": "medclip_release", "source": "/nonexistent/medclip"}, "medclip-vit-pretrained.zip"),
    ({"family": "cxr_clip_release", "source": "/nonexistent/swint_mcc.tar"}, "swint_mcc.tar"),
    ({"family": "hf_clip", "source": "no-such-org/no-such-clip-model"}, "huggingface-cli download"),
])
def test_missing_weights_say_what_to_fetch(spec, needle):
    with pytest.raises(P.PretrainedUnavailable, match=needle):
        P.load(spec)


def test_spec_without_family_or_source():
    with pytest.raises(ValueError, match="family"):
        P.load({"source": "x"})
    with pytest.raises(ValueError, match="source"):
        P.load({"family": "medclip_release"})


# ------------------------------------------------------------------------------------------------ profile -> rows
def test_profile_names_pretrained_rows_and_relative_sources_resolve(tmp_path):
    from medbind_lib.config import load_profile
    from medbind_lib.errors import ConfigError
    from medbind_lib.export import pretrained_spec

    (tmp_path / "pubmed").mkdir()
    cfg = load_profile("smoke", overrides={"pretrained_dir": str(tmp_path), "pretrained_models": {
        "pretrained_medclip": {"source": "medclip-vit", "vision": "resnet"},
        "pretrained_biomedclip": {"source": "hf-hub:org/biomed"}, "pretrained_clip": {"source": "local-dir:oc"},
        "pretrained_pubmedclip": {"source": "pubmed"}, "pretrained_cxr_clip": {"source": "/abs/swint_mcc.tar"}}})
    (tmp_path / "vit.bin").write_bytes(b"")
    oc = load_profile("smoke", overrides={"pretrained_dir": str(tmp_path), "pretrained_models": {
        "pretrained_clip": {"source": "ViT-B-16", "pretrained": "vit.bin"}}})
    assert pretrained_spec(oc, "pretrained_clip") == {"family": "open_clip", "source": "ViT-B-16",
                                                      "pretrained": str(tmp_path / "vit.bin")}   # a weights file there
    assert pretrained_spec(cfg, "pretrained_medclip") == {"family": "medclip_release", "vision": "resnet",
                                                          "source": str(tmp_path / "medclip-vit")}
    assert pretrained_spec(cfg, "pretrained_biomedclip")["source"] == "hf-hub:org/biomed"      # hub ids untouched
    assert pretrained_spec(cfg, "pretrained_clip")["source"] == f"local-dir:{tmp_path / 'oc'}"
    assert pretrained_spec(cfg, "pretrained_pubmedclip")["source"] == str(tmp_path / "pubmed")  # exists there
    assert pretrained_spec(cfg, "pretrained_cxr_clip")["source"] == "/abs/swint_mcc.tar"
    assert pretrained_spec(load_profile("smoke"), "pretrained_clip") is None
    for bad in ({"clip": {"source": "x"}}, {"pretrained_clip": {"pretrained": "openai"}},
                {"pretrained_clip": {"source": "x", "family": "hf_clip"}}):
        with pytest.raises(ConfigError, match="pretrained_models"):
            load_profile("smoke", overrides={"pretrained_models": bad})


def test_export_pretrained_status_reuse_and_stale_files(tmp_path, monkeypatch):
    from medbind_lib import export, registry
    from medbind_lib.config import load_profile
    from medbind_lib.layout import RunLayout

    calls = []

    def fake_write(cfg, row, datasets, device, loaded):
        calls.append((row, loaded[2]))
        out = RunLayout(cfg).embeddings(row)
        out.mkdir(parents=True, exist_ok=True)
        (out / "covid.npz").write_bytes(b"x")
        return {"covid": out / "covid.npz"}

    monkeypatch.setattr(export, "write_embeddings", fake_write)
    real_load = P.load
    monkeypatch.setattr(P, "load", lambda spec, allow: torch.nn.Linear(1, 1) if "ok" in spec["source"] else
                        real_load(spec, allow))
    models = {"pretrained_medclip": {"source": str(tmp_path / "missing")},
              "pretrained_cxr_clip": {"source": str(tmp_path / "ok.tar")}}

    def run(m):
        cfg = load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs"), "pretrained_models": m})
        return export.export_pretrained(cfg, device="cpu").set_index("row")["status"]

    st = run(models)
    assert st["pretrained_clip"] == registry.NEEDS_WEIGHTS
    assert st["pretrained_medclip"].startswith("weights missing:") and "medclip-vit-pretrained.zip" in \
        st["pretrained_medclip"]
    assert st["pretrained_cxr_clip"].startswith("scored: 1 datasets") and len(calls) == 1
    assert run(models)["pretrained_cxr_clip"] == "scored (embeddings reused)" and len(calls) == 1
    link = RunLayout(load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs")})).linked
    link.mkdir(parents=True, exist_ok=True)
    (link / "link_params.json").write_text('{"n_patients": 61}')       # notebook 01 linked another cohort
    assert run(models)["pretrained_cxr_clip"].startswith("scored: 1") and len(calls) == 2
    assert run(models)["pretrained_cxr_clip"] == "scored (embeddings reused)" and len(calls) == 2
    bad = tmp_path / "bad.tar"
    torch.save({"state_dict": {}}, bad)                                   # not a CXR-CLIP checkpoint: said, not raised
    st = run({**models, "pretrained_cxr_clip": {"source": str(bad)}})["pretrained_cxr_clip"]
    assert st.startswith("failed to load: ValueError") and "not a CXR-CLIP checkpoint" in st
    # another model named for the row: the old embeddings go before anything is loaded
    folder = RunLayout(load_profile("smoke", overrides={"runs_dir": str(tmp_path / "runs")})).embeddings(
        "pretrained_cxr_clip")
    assert folder.is_relative_to(tmp_path)
    models["pretrained_cxr_clip"] = {"source": str(tmp_path / "gone.tar")}
    assert run(models)["pretrained_cxr_clip"].startswith("weights missing:")
    assert not list(folder.glob("*.npz")) and not (folder / "pretrained.json").exists()
    run(models)
    (folder / "covid.npz").write_bytes(b"x")                 # left by an earlier run that named a model
    assert run({})["pretrained_cxr_clip"] == registry.NEEDS_WEIGHTS and not list(folder.glob("*.npz"))


def test_paper_profile_names_every_pretrained_row_as_the_registry_lists_it():
    from medbind_lib import registry
    from medbind_lib.config import load_profile

    cfg = load_profile("paper")
    assert set(cfg.pretrained_models) == set(registry.PRETRAINED) and cfg.pretrained_allow_download is False
    for row, spec in cfg.pretrained_models.items():
        assert {"family": registry.PRETRAINED[row]["family"], **spec} == registry.PRETRAINED[row], row
    assert load_profile("default").pretrained_models == {}        # synthetic: "needs pre-trained weights"
