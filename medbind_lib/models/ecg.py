"""ECG encoder: a vanilla pre-norm transformer over time tokens with a CLS token (MEDBind §1).

Input [B, n_leads, n_samples].  ``patch`` consecutive samples of all leads form one token
(``patch=1``: each time point's 12-vector is a token, as the paper; 1000 tokens at 100 Hz x 10 s),
embedded by one Linear(n_leads * patch, dim).  Learnable positions (CLS included), pre-norm blocks with
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU), a final
LayerNorm, and the CLS token's output is the embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ecg_dim ({dim}) must be divisible by ecg_heads ({heads})")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_heads(self, x: torch.Tensor):
        """[B, N, D] -> q, k, v each [B, heads, N, head_dim]."""
        b, n, _ = x.shape
        return self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv_heads(x)
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(o.transpose(1, 2).reshape(b, n, d)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attn_drop=dropout, proj_drop=dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ECGTransformer(nn.Module):
    """[B, n_leads, n_samples] -> [B, dim] (CLS output after the final LayerNorm); ``out_dim = dim``.

    ``n_tokens`` = n_samples / patch + 1 (CLS) is the sequence length the blocks see.
    """

    def __init__(self, n_leads: int = 12, n_samples: int = 1000, patch: int = 1, dim: int = 256, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        if patch < 1 or n_samples % patch:
            raise ValueError(f"ecg_samples ({n_samples}) must be divisible by ecg_patch ({patch})")
        self.n_leads, self.n_samples, self.patch = int(n_leads), int(n_samples), int(patch)
        self.n_tokens = n_samples // patch + 1
        self.embed = nn.Linear(n_leads * patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_tokens, dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = int(dim)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names usually excluded from weight decay (timm convention)."""
        return {"pos_embed", "cls_token"}

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_leads, T] -> embedded tokens with CLS and positions, [B, n_tokens, dim]."""
        if x.ndim != 3 or x.shape[1] != self.n_leads or x.shape[2] != self.n_samples:
            raise ValueError(
                f"ECG input must be [B, {self.n_leads}, {self.n_samples}] (leads x samples; profile keys "
                f"'ecg_samples' / ecg_fs x ecg_seconds), got shape {tuple(x.shape)}")
        b = x.shape[0]
        # [B, L, T] -> [B, T/p, p, L] -> [B, T/p, p*L]: a token = `patch` consecutive 12-vectors
        x = x.transpose(1, 2).reshape(b, self.n_samples // self.patch, self.patch * self.n_leads)
        x = self.embed(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        return self.pos_drop(x + self.pos_embed.to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x[:, 0])

    def extra_repr(self) -> str:
        return f"n_leads={self.n_leads}, n_samples={self.n_samples}, patch={self.patch}, n_tokens={self.n_tokens}"
