"""The Table 4 model: a BERT-family language model tuned with LoRA, frozen CXR/ECG embeddings projected into
its token space and inserted AFTER the text (AnyMAL style), a classification head.

Sequence of one admission (right-padded)::

    [CLS] text ... [SEP] (report segment [SEP])  <cxr tokens> <ecg tokens>  [PAD] ...
    mask: 1 ...                                 m_cxr        m_ecg         0 ...

Each modality embedding (``embed_dim``, from a frozen notebook-02 encoder) passes its own trainable
``Linear(embed_dim, n_tokens * hidden)``; the tokens sit right after the admission's last text token
(positions continue the text's), so padding stays at the end. A MISSING modality gets attention-mask 0 on its
tokens and its projected value is replaced by zeros, so it contributes nothing to any other position: the
output is identical whatever the embedding held (tested). Only LoRA weights (peft, on ``lora_targets``),
the projections and the head train; the language model's own weights stay frozen.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError

POOLS = ("cls", "mean")


def load_lm(path=None, num_layers: int | None = None):
    """``(model, tokenizer, position_limit)`` of a local Hugging Face BERT (None = the packaged MiniLM), loaded
    offline exactly as the text encoder is (``models.text.TextEncoder``: local files only, no pooler).
    ``num_layers`` keeps only the first N transformer layers (``llm_num_layers``, a CPU compute knob)."""
    from ..models.text import TextEncoder

    enc = TextEncoder(path, pool="cls", max_length=None)
    model = enc.model
    if num_layers is not None:
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if layers is None or not 1 <= int(num_layers) <= len(layers):
            have = None if layers is None else len(layers)
            raise ConfigError(f"llm_num_layers={num_layers}: the language model at {enc.path} has {have} "
                              "encoder layers (model.encoder.layer)")
        model.encoder.layer = nn.ModuleList(list(layers)[:int(num_layers)])
        model.config.num_hidden_layers = int(num_layers)
    return model, enc.tokenizer, enc.max_length


def insert_after_text(text_emb: torch.Tensor, text_mask: torch.Tensor, extra_emb: torch.Tensor,
                      extra_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Place ``extra_emb`` [B, K, H] right after each row's text tokens in ``text_emb`` [B, L, H].

    ``text_mask`` [B, L] must be right-padded (ones then zeros). Returns ``(embeds [B, L + K, H],
    mask [B, L + K])``: text, then the K extra tokens with ``extra_mask`` as their mask, then the padding.
    Built with one ``gather`` so gradients flow to both inputs."""
    b, length, h = text_emb.shape
    k = extra_emb.shape[1]
    if k == 0:
        return text_emb, text_mask
    n = text_mask.sum(1)
    ar = torch.arange(length, device=text_mask.device)
    if not torch.equal(text_mask.bool(), ar[None] < n[:, None]):
        raise ValueError("text attention mask must be right-padded (ones, then zeros) to insert after the text")
    p = torch.arange(length + k, device=text_mask.device)[None].expand(b, -1)
    nb = n[:, None]
    src = torch.where(p < nb, p, torch.where(p < nb + k, length + (p - nb), p - k))
    embeds = torch.cat([text_emb, extra_emb.to(text_emb.dtype)], 1).gather(1, src[..., None].expand(-1, -1, h))
    mask = torch.cat([text_mask, extra_mask.to(text_mask.dtype)], 1).gather(1, src)
    return embeds, mask


def _linear_names(model: nn.Module) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})


def apply_lora(lm: nn.Module, r: int, alpha: int, dropout: float, targets: Sequence[str]) -> nn.Module:
    """peft LoRA on the ``targets`` Linear modules; every base weight frozen (peft's contract, checked)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout), target_modules=list(targets),
                     bias="none")
    try:
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5 (not ours to fix)
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(lm, cfg)
    except ValueError as e:
        raise ConfigError(f"llm_lora_targets {list(targets)} do not match the language model's Linear modules "
                          f"{_linear_names(lm)} ({e})") from e
    leaked = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    if leaked:
        raise RuntimeError(f"LoRA left base weights trainable: {leaked[:5]}")
    return model


class PromptTunedClassifier(nn.Module):
    """``forward(input_ids, attention_mask, modality_emb, modality_mask) -> logits [B]`` (binary task).

    ``modality_dims``: ``{modality: embedding size}`` in insertion order (empty = text-only rows).
    ``lora``: ``dict(r, alpha, dropout, targets)`` or None (language model fully frozen).
    ``pool``: ``cls`` (the [CLS] output) or ``mean`` (mean over positions with attention mask 1)."""

    def __init__(self, lm: nn.Module, modality_dims: Mapping[str, int] | None = None, tokens_per_modality: int = 1,
                 pool: str = "cls", lora: Mapping | None = None, head_dropout: float | None = None):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"llm_pool must be one of {POOLS}, got {pool!r}")
        hidden = int(lm.config.hidden_size)
        if lora is not None:
            lm = apply_lora(lm, lora["r"], lora["alpha"], lora["dropout"], lora["targets"])
        else:
            for p in lm.parameters():
                p.requires_grad_(False)
        self.lm, self.pool, self.hidden, self.k = lm, pool, hidden, int(tokens_per_modality)
        self.modalities = tuple(modality_dims or {})
        self.proj = nn.ModuleDict({m: nn.Linear(int(d), self.k * hidden) for m, d in (modality_dims or {}).items()})
        p = getattr(lm.config, "hidden_dropout_prob", 0.1) if head_dropout is None else head_dropout
        self.dropout = nn.Dropout(float(p))
        self.head = nn.Linear(hidden, 1)

    @property
    def n_extra_tokens(self) -> int:
        return self.k * len(self.modalities)

    def build_inputs(self, input_ids, attention_mask, modality_emb=None, modality_mask=None):
        """``(inputs_embeds [B, L + K, H], attention_mask [B, L + K])``: word embeddings of the text with the
        projected modality tokens inserted after it (masked ones zeroed and masked out)."""
        words = self.lm.get_input_embeddings()(input_ids)
        if not self.modalities:
            return words, attention_mask
        b = input_ids.shape[0]
        toks, masks = [], []
        for m in self.modalities:
            present = modality_mask[m].to(words.device).bool()
            z = self.proj[m](modality_emb[m].to(words.device, words.dtype)).view(b, self.k, self.hidden)
            toks.append(torch.where(present[:, None, None], z, torch.zeros((), dtype=z.dtype, device=z.device)))
            masks.append(present[:, None].expand(b, self.k))
        return insert_after_text(words, attention_mask, torch.cat(toks, 1), torch.cat(masks, 1))

    def forward(self, input_ids, attention_mask, modality_emb=None, modality_mask=None) -> torch.Tensor:
        embeds, mask = self.build_inputs(input_ids, attention_mask, modality_emb, modality_mask)
        h = self.lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        if self.pool == "cls":
            pooled = h[:, 0]
        else:
            w = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled)).squeeze(-1)

    def trainable_state(self) -> dict:
        """Copies of the trainable tensors only (LoRA, projections, head): what model selection keeps."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: Mapping) -> None:
        params = dict(self.named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(v)
