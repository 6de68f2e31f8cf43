"""Public PRE-TRAINED image-text models as table rows (MEDCSP's radiology baselines, MEDBind's CLIP row).

Each family loads the released weights with that model's own image preprocessing and tokenizer and is seen
through one adapter, :class:`PretrainedCLIP`, that speaks the suite's export protocol (``encoders``,
``embed_dim``, ``cxr_transform``, ``encode_cxr``, ``tokenize``, ``encode_text``), so ``export.write_embeddings``
writes its embeddings like any trained row's and every table scores it the same way.

Families (``spec["family"]``; ``spec["source"]`` names the weights):

* ``open_clip`` - CLIP (``source: ViT-B-16`` with ``pretrained: openai`` or a weights file; the MEDCSP paper
  names no variant, ViT-B/16 is our default) and BiomedCLIP
  (``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``) through PyPI ``open-clip-torch``;
  ``local-dir:<folder>`` reads a folder in open_clip's hub layout.
* ``hf_clip`` - PubMedCLIP (``flaviagiammarino/pubmed-clip-vit-base-patch32`` or a folder) through ``transformers``'
  CLIP classes and the folder's own ``CLIPImageProcessor`` / tokenizer.
* ``medclip_release`` - MedCLIP (Wang et al. 2022), rebuilt: its package downloads weights and calls ``.cuda()`` while
  building, so the modules are ``transformers``' SwinModel / BertModel (or torchvision's ResNet-50) under MedCLIP's
  attribute names, and ``<source>/pytorch_model.bin`` (the released zip's file) loads strictly, key by key.
  Image: pooled Swin output -> Linear(768, 512, no bias) (ResNet: its ``fc`` is the projection); text: the mean
  over tokens (padding included, as released) of hidden layers 1, 2 and the last, averaged -> Linear(768, 512, no
  bias); preprocessing: pad to a black square, resize to 224 (bicubic), one channel normalised with
  mean 0.5863 / std 0.2795, repeated to three; tokenizer ``max_length`` 77.
* ``cxr_clip_release`` - CXR-CLIP (You et al. 2023), rebuilt from its released ``.tar`` (``{"model": state_dict,
  "config": ...}``): Swin (first token of ``last_hidden_state``, as ``CXRClip.encode_image`` takes it) or torchvision
  ResNet-50 (average pool, 2048-d); text: the hidden state of the last non-padding token ("eos" pooling); linear
  projections with bias to 512; preprocessing: resize the shorter side to 224, centre crop 224, RGB, normalised
  with 0.5 / 0.5 (Swin) or ImageNet's constants (ResNet); tokenizer ``max_length`` 256.

Weights never download unless ``allow_download`` is true (the profile's ``pretrained_allow_download``): a missing
model raises :class:`PretrainedUnavailable` naming what to fetch and where it goes. Embeddings are L2-normalised.
The images are the suite's cached CXRs (grayscale, already made square at ``cxr_cache_size`` by ``cxr_resize``),
converted to PIL and passed through each model's own transform. Where this differs from reading the original JPEGs:
with ``cxr_resize: squash`` (the default) every model sees the image's aspect ratio squashed to a square, so
MedCLIP's padding and the centre crops of CLIP / BiomedCLIP / CXR-CLIP have nothing left to do; ``cxr_resize: pad``
keeps the aspect ratio (black borders, as MedCLIP's own padding).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..loading import TokenizeFn
from ._common import MissingWeightsError

MEDCLIP_MEAN, MEDCLIP_STD = 0.5862785803043838, 0.27950088968644304   # MedCLIP constants.IMG_MEAN / IMG_STD
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STALE_BUFFERS = ("embeddings.position_ids",)   # saved by transformers < 4.31, a non-persistent buffer since


class PretrainedUnavailable(MissingWeightsError):
    """The weights named by a profile are not on this machine (and downloading is not allowed)."""


def _unavailable(what: str, source: str, hint: str, err: Exception, hub: bool = True) -> PretrainedUnavailable:
    allow = " Or set pretrained_allow_download: true to let the library download them into its cache." if hub else ""
    return PretrainedUnavailable(f"{what}: pre-trained weights {source!r} are not available offline "
                                 f"({type(err).__name__}: {err}). {hint}{allow}")


class PretrainedCLIP(nn.Module):
    """A pre-trained image-text model behind the suite's export protocol (module docstring)."""

    encoders = ("cxr", "text")

    def __init__(self, name: str, net: nn.Module, image_fn: Callable, text_fn: Callable, transform: Callable,
                 tokenizer: Callable, embed_dim: int, gray_input: bool = False):
        super().__init__()
        self.name, self.net, self.embed_dim, self.gray_input = name, net.eval(), int(embed_dim), gray_input
        self._image_fn, self._text_fn, self._transform, self._tokenizer = image_fn, text_fn, transform, tokenizer

    def cxr_transform(self, a: np.ndarray) -> torch.Tensor:
        """One cached grayscale uint8 [H, W] image -> the model's own input tensor."""
        from PIL import Image

        img = Image.fromarray(np.asarray(a, dtype=np.uint8), mode="L")
        return self._transform(img if self.gray_input else img.convert("RGB"))

    @torch.no_grad()
    def encode_cxr(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._image_fn(x).float(), dim=-1)

    def tokenize(self, texts, device="cpu") -> dict:
        return {k: v.to(device) for k, v in self._tokenizer([str(t) for t in texts]).items()}

    @torch.no_grad()
    def encode_text(self, tokens: dict, modality: str = "cxr") -> torch.Tensor:
        return F.normalize(self._text_fn(tokens).float(), dim=-1)


# ------------------------------------------------------------------------------------------------ helpers
def _features(out) -> torch.Tensor:
    """transformers 4 returns the projected features, 5 a model output holding them in ``pooler_output``."""
    return out if torch.is_tensor(out) else out.pooler_output


@contextlib.contextmanager
def _hub_offline(allow_download: bool):
    """huggingface_hub reads HF_HUB_OFFLINE when imported; its downloads check the constant at call time."""
    import huggingface_hub.constants as c

    old = c.HF_HUB_OFFLINE
    c.HF_HUB_OFFLINE = old or not allow_download
    try:
        yield
    finally:
        c.HF_HUB_OFFLINE = old


def _hf(cls, ref: str, allow_download: bool, what: str, **kw):
    """``cls.from_pretrained(ref)`` from a folder or the Hugging Face cache, offline unless allowed."""
    try:
        return cls.from_pretrained(ref, local_files_only=not allow_download, **kw)
    except (OSError, ValueError) as e:
        raise _unavailable(what, ref, f"Download {ref!r} (e.g. `huggingface-cli download {ref}`) or name a local "
                                      "folder holding it.", e) from e


# transformers 4 -> 5 renamed Swin's weights (its ``conversion_mapping`` "swin" entry); the released MedCLIP and
# CXR-CLIP files carry the old names. Applied only where the installed model has the new name (a no-op under
# transformers 4).
_REL = "attention.relative_position_bias."
SWIN_RENAMES = (("attention.self.query.", "attention.q_proj."), ("attention.self.key.", "attention.k_proj."),
                ("attention.self.value.", "attention.v_proj."),
                ("attention.self.relative_position_bias_table", _REL + "relative_position_bias_table"),
                ("attention.output.dense.", "attention.o_proj."), ("intermediate.dense.", "mlp.fc1."),
                ("output.dense.", "mlp.fc2."))
UNSAVED = "relative_position_index"      # a buffer transformers 5 no longer saves (4 did): dropped when not ours


def to_installed_names(state: Mapping, own: set) -> dict:
    """A released state dict under the installed library's key names (``SWIN_RENAMES``, first match whose new name
    the model has); keys that already match are kept."""
    out = {}
    for k, v in state.items():
        if k not in own:
            k = next((k.replace(a, b, 1) for a, b in SWIN_RENAMES if a in k and k.replace(a, b, 1) in own), k)
        out[k] = v
    return out


def _strict_load(net: nn.Module, state: Mapping, where: str) -> None:
    """Load every key under the installed names (``to_installed_names``; buffers the installed library does not
    save are dropped); a missing, unexpected or mis-shaped key is an error naming it."""
    own = {k for k in net.state_dict() if not k.endswith(STALE_BUFFERS)}
    state = {k: v for k, v in to_installed_names(state, own).items()
             if not k.endswith(STALE_BUFFERS) and not (k.endswith(UNSAVED) and k not in own)}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise ValueError(f"{where}: checkpoint keys do not match the rebuilt model: missing {missing[:8]} "
                         f"({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)})")
    shapes = net.state_dict()
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(shapes[k].shape)}" for k in sorted(own)
             if tuple(state[k].shape) != tuple(shapes[k].shape)]
    if wrong:
        raise ValueError(f"{where}: checkpoint shapes differ from the configured model (check the text / vision "
                         f"configs): {wrong[:6]} ({len(wrong)})")
    net.load_state_dict(state, strict=False)


def _torchvision_resnet50(out: Optional[int]) -> nn.Module:
    import torchvision

    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Linear(2048, out, bias=False) if out else nn.Identity()
    return net


# ------------------------------------------------------------------------------------------------ open_clip
def _open_clip(spec: Mapping, allow_download: bool) -> PretrainedCLIP:
    import open_clip

    source, pretrained = str(spec["source"]), spec.get("pretrained")
    if pretrained and not Path(str(pretrained)).is_file():        # a tag (``openai``): weights from the hub cache
        tag = open_clip.get_pretrained_cfg(source, str(pretrained))
        if not tag:
            raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {source!r}: "
                             f"{open_clip.list_pretrained_tags_by_model(source)}")
    try:
        with _hub_offline(allow_download):
            model, _, preprocess = open_clip.create_model_and_transforms(source, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(source)
    except (OSError, RuntimeError) as e:      # the hub's offline / not-cached errors are OSErrors
        raise _unavailable("open_clip", f"{source} {pretrained or ''}".strip(),
                           "Fetch it into the Hugging Face cache or name a local folder with `local-dir:<path>`.",
                           e) from e
    model.eval()

    def tokens(texts):
        ids = tokenizer(texts)
        return {"input_ids": ids}

    return PretrainedCLIP(source, model, model.encode_image, lambda t: model.encode_text(t["input_ids"]), preprocess,
                          tokens, int(model.visual.output_dim))


# ------------------------------------------------------------------------------------------------ hf_clip
def _hf_clip(spec: Mapping, allow_download: bool) -> PretrainedCLIP:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    src = str(spec["source"])
    model = _hf(CLIPModel, src, allow_download, "hf_clip").eval()
    proc = _hf(CLIPImageProcessor, src, allow_download, "hf_clip")
    tok = _hf(AutoTokenizer, src, allow_download, "hf_clip")
    ctx = int(model.config.text_config.max_position_embeddings)

    def transform(img):
        return proc(images=img, return_tensors="pt")["pixel_values"][0]

    return PretrainedCLIP(src, model, lambda x: _features(model.get_image_features(pixel_values=x)),
                          lambda t: _features(model.get_text_features(**t)), transform,
                          TokenizeFn(tok, ctx), int(model.config.projection_dim))


# ------------------------------------------------------------------------------------------------ MedCLIP
class _MedCLIPVision(nn.Module):
    def __init__(self, kind: str, swin_config=None, dim: int = 512):
        super().__init__()
        self.kind = kind
        if kind == "swin":
            from transformers import SwinModel

            self.model = SwinModel(swin_config)
            self.projection_head = nn.Linear(swin_config.hidden_size, dim, bias=False)
        else:
            self.model = _torchvision_resnet50(dim)

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.kind == "swin":
            return self.projection_head(self.model(pixel_values=x).pooler_output)
        return self.model(x)


class _MedCLIPText(nn.Module):
    def __init__(self, bert_config, dim: int = 512):
        super().__init__()
        from transformers import BertModel

        self.model = BertModel(bert_config)
        self.projection_head = nn.Linear(bert_config.hidden_size, dim, bias=False)

    def forward(self, input_ids, attention_mask):
        hs = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        pooled = torch.stack([hs[1], hs[2], hs[-1]]).mean(dim=2).mean(dim=0)   # tokens first, then layers
        return self.projection_head(pooled)


class MedCLIPNet(nn.Module):
    """MedCLIP's ``MedCLIPModel`` module tree (vision_model, text_model, logit_scale) without its downloads."""

    def __init__(self, vision: str, bert_config, swin_config=None, dim: int = 512):
        super().__init__()
        self.vision_model = _MedCLIPVision(vision, swin_config, dim)
        self.text_model = _MedCLIPText(bert_config, dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))


def medclip_transform(size: int = 224) -> Callable:
    """MedCLIP's eval transform: black square pad, bicubic resize, one normalised channel."""
    from PIL import Image
    from torchvision import transforms as T

    def pad(img):
        side = max(size, *img.size)
        canvas = Image.new("L", (side, side))
        canvas.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
        return canvas

    return T.Compose([T.Lambda(pad), T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
                      T.ToTensor(), T.Normalize([MEDCLIP_MEAN], [MEDCLIP_STD])])


def _medclip(spec: Mapping, allow_download: bool) -> PretrainedCLIP:
    from transformers import AutoConfig, AutoTokenizer

    src = Path(str(spec["source"]))
    weights = src / "pytorch_model.bin"
    if not weights.is_file():
        raise _unavailable("medclip_release", str(weights), "Download MedCLIP's released zip "
                           "(medclip-vit-pretrained.zip or medclip-pretrained.zip) and unzip it there.",
                           FileNotFoundError(weights), hub=False)
    vision = spec.get("vision", "swin")
    text_ref = spec.get("text_config", "emilyalsentzer/Bio_ClinicalBERT")
    bert_cfg = _hf(AutoConfig, text_ref, allow_download, "medclip text config")
    swin_cfg = _hf(AutoConfig, spec.get("vision_config", "microsoft/swin-tiny-patch4-window7-224"),
                   allow_download, "medclip vision config") if vision == "swin" else None
    state = torch.load(weights, map_location="cpu", weights_only=True)
    proj = state.get("text_model.projection_head.weight")
    net = MedCLIPNet(vision, bert_cfg, swin_cfg, int(proj.shape[0]) if proj is not None else 512)
    _strict_load(net, state, str(weights))
    net.eval()
    tok = _hf(AutoTokenizer, spec.get("tokenizer", text_ref), allow_download, "medclip tokenizer")
    size = int(swin_cfg.image_size) if swin_cfg is not None else int(spec.get("image_size", 224))
    return PretrainedCLIP("medclip_release", net, net.vision_model, lambda t: net.text_model(**t),
                          medclip_transform(size), TokenizeFn(tok, int(spec.get("max_length", 77))),
                          net.text_model.projection_head.out_features, gray_input=True)


# ------------------------------------------------------------------------------------------------ CXR-CLIP
class _CXRCLIPImage(nn.Module):
    def __init__(self, kind: str, swin_config=None):
        super().__init__()
        self.kind = kind
        if kind == "swin":
            from transformers import SwinModel

            self.image_encoder = SwinModel(swin_config)
            self.out_dim = swin_config.hidden_size
        else:
            self.resnet = _torchvision_resnet50(None)
            self.out_dim = 2048

    def forward(self, x):
        if self.kind == "swin":
            return self.image_encoder(pixel_values=x).last_hidden_state[:, 0]   # CXRClip.encode_image: token 0
        return self.resnet(x)


class _Projection(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.projection = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.projection(x)


class _Holder(nn.Module):
    def __init__(self, attr: str, module: nn.Module):
        super().__init__()
        setattr(self, attr, module)


class CXRCLIPNet(nn.Module):
    """CXR-CLIP's ``CXRClip`` module tree (image_encoder, text_encoder, image/text_projection, logit_scale)."""

    def __init__(self, vision: str, bert_config, swin_config=None, dim: int = 512):
        super().__init__()
        from transformers import BertModel

        self.image_encoder = _CXRCLIPImage(vision, swin_config)
        self.text_encoder = _Holder("text_encoder", BertModel(bert_config))
        self.image_projection = _Projection(self.image_encoder.out_dim, dim)
        self.text_projection = _Projection(bert_config.hidden_size, dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def encode_image(self, x):
        return self.image_projection(self.image_encoder(x))

    def encode_text(self, input_ids, attention_mask):
        h = self.text_encoder.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        eos = attention_mask.sum(-1) - 1                                     # the last non-padding token
        return self.text_projection(h[torch.arange(len(h)), eos])


def cxr_clip_transform(size: int, vision: str) -> Callable:
    from torchvision import transforms as T

    mean, std = ((0.5,) * 3, (0.5,) * 3) if vision == "swin" else (IMAGENET_MEAN, IMAGENET_STD)
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def _cxr_clip(spec: Mapping, allow_download: bool) -> PretrainedCLIP:
    from transformers import AutoConfig, AutoTokenizer

    path = Path(str(spec["source"]))
    if not path.is_file():
        raise _unavailable("cxr_clip_release", str(path), "Download a released CXR-CLIP checkpoint (e.g. "
                           "swint_mcc.tar or r50_mcc.tar from the kakaobrain/cxr-clip README) to that path.",
                           FileNotFoundError(path), hub=False)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "model" not in ck:
        raise ValueError(f"{path}: not a CXR-CLIP checkpoint (expected a dict with 'model', got "
                         f"{sorted(ck)[:6] if isinstance(ck, dict) else type(ck).__name__})")
    state = ck["model"]
    vision = "resnet" if any(k.startswith("image_encoder.resnet.") for k in state) else "swin"
    conf = ck.get("config") or {}
    text_ref = spec.get("text_config", "emilyalsentzer/Bio_ClinicalBERT")
    bert_cfg = _hf(AutoConfig, text_ref, allow_download, "cxr_clip text config")
    swin_cfg = _hf(AutoConfig, spec.get("vision_config", "microsoft/swin-tiny-patch4-window7-224"),
                   allow_download, "cxr_clip vision config") if vision == "swin" else None
    dim = int(state["text_projection.projection.weight"].shape[0])
    net = CXRCLIPNet(vision, bert_cfg, swin_cfg, dim)
    _strict_load(net, state, str(path))
    net.eval()
    tok = _hf(AutoTokenizer, spec.get("tokenizer", text_ref), allow_download, "cxr_clip tokenizer")
    max_length = int(spec.get("max_length", (conf.get("base") or {}).get("text_max_length", 256)))
    size = int(spec.get("image_size", (conf.get("base") or {}).get("image_size", 224)))
    return PretrainedCLIP("cxr_clip_release", net, net.encode_image, lambda t: net.encode_text(**t),
                          cxr_clip_transform(size, vision), TokenizeFn(tok, max_length), dim)


_LOADERS = {"open_clip": _open_clip, "hf_clip": _hf_clip, "medclip_release": _medclip,
            "cxr_clip_release": _cxr_clip}


def load(spec: Mapping, allow_download: bool = False) -> PretrainedCLIP:
    """The adapter of one profile entry ``{"family": ..., "source": ..., ...}`` (module docstring)."""
    fam = spec.get("family") if isinstance(spec, Mapping) else None
    if fam not in _LOADERS or not spec.get("source"):
        raise ValueError(f"a pre-trained model needs family (one of {tuple(_LOADERS)}) and source; "
                         f"got {dict(spec or {})}")
    return _LOADERS[fam](spec, allow_download)
