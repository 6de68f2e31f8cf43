"""Contrastive losses of MEDBind (TMCL Eq. 1, EMCL Eq. 2) and the CXR baselines (CLIP / CXR-CLIP InfoNCE,
MedCLIP soft semantic matching), DDP-ready in open_clip's ``local_loss=True, gather_with_grad=True`` form.

Notation: every embedding is L2-normalised; ``s = 1/tau`` is the logit scale (``tau`` fixed, 0.07 by
default, or a learnable ``logit_scale`` tensor = 1/tau, already exponentiated as open_clip's model
returns it).  Arithmetic runs in float32 at least (fp16/bf16 inputs are upcast; float64 stays float64), so
tau = 0.01 cannot overflow.

Conventions (the choices the papers leave open; all logged / parameterised)
---------------------------------------------------------------------------
* Directional term = reduction over anchors of per-anchor negative log-likelihoods.
  ``reduction="mean"`` (default, METHOD.md "report means"): divide by the number of anchors of that term
  (n_j items for TMCL_j / CLIP, m pairs for EMCL).  ``"sum"``: the paper's literal sums.  ``"batch"``:
  the paper's sums divided by the number of samples n of the (global) batch, i.e. exactly the paper's
  objective up to one global scale (keeps the paper's relative weight of TMCL and EMCL when m << n).
* Symmetric term = MEAN of its two directions (CLIP / open_clip convention), for every loss alike, so
  TMCL with all-distinct texts equals ``clip_infonce`` and the paper's ``L^{a->b} + L^{b->a}`` is
  recovered by a factor 2 common to every term (scale only).  Directional terms are returned too.
* Text identity is an integer key per item (``text_keys``, LongTensor; equal key <=> identical text
  after normalisation).  Use :func:`hash_texts` (stable blake2b; Python's ``hash`` is salted per process
  and would break DDP).

Definitions (single process; under DDP the candidates are the gathered items of every rank)
-----------------------------------------------------------------------------------------
TMCL (Eq. 1, SupCon L_out), modality embeddings z [n, d], their texts t [n, d], keys k [n]:
  P(i) = {p : k_p == k_i}  (contains i)
  L^{t->z}_i = -1/|P(i)| sum_{p in P(i)} log( exp(s t_i.z_p) / sum_l exp(s t_i.z_l) )
  L^{z->t}_i = -1/|P(i)| sum_{p in P(i)} log( exp(s z_i.t_p) / sum_l exp(s z_i.t_l) )
  TMCL = ( red_i L^{t->z}_i + red_i L^{z->t}_i ) / 2.   n = 1 gives log(1) = 0 exactly.
EMCL (Eq. 2) over the m pairs (c_u, e_u), n = samples in the batch:
  none:      L^{c->e}_u = -log( exp(s c_u.e_u) / sum_q exp(s c_u.e_q) )
  constant:  L^{c->e}_u = -log( exp(s c_u.e_u) / ((n/m) sum_q exp(s c_u.e_q)) ) = none + log(n/m)
             (the equation as printed: same gradients as ``none``)
  negatives: L^{c->e}_u = -log( exp(s c_u.e_u) / (exp(s c_u.e_u) + (n/m) sum_{q != u} exp(s c_u.e_q)) )
             (log(n/m) added to the off-diagonal logits only: changes training)
  e->c likewise; EMCL = (red_u L^{c->e}_u + red_u L^{e->c}_u) / 2.
  m = 0 or 1: EMCL = 0 (a zero that stays in the autograd graph; zero gradients, never NaN).
CLIP InfoNCE (the CXR-CLIP row; plain image-text InfoNCE, none of CXR-CLIP's image-image or
text-text terms): TMCL with every item its own only positive (labels = arange).
MedCLIP soft semantic matching (MedCLIP, Wang et al. 2022; official ``ImageTextContrastiveLoss``):
  S = sim(labels_img, labels_txt) [n, n]; targets Y = softmax(S, dim=1) for image anchors and
  softmax(S^T, dim=1) for text anchors; L = (soft-CE(s z t^T, Y) + soft-CE(s t z^T, Y')) / 2 with
  soft-CE = -mean_i sum_j Y_ij log softmax_j.  ``label_sim="dot"`` (default) is the official code
  (``img_labels @ text_labels.T``); ``"cosine"`` is the paper's Eq. (cosine of the label vectors), with
  two all-zero ("no finding") label vectors counted as identical (cos = 1) and all-zero vs non-zero as 0.

DDP (open_clip pattern, CONVENTIONS.md 14/16): each rank's loss uses its LOCAL anchors against the
GATHERED candidates (gathered with gradient; keys / labels / counts gathered without), positives offset
by the rank's row offset; each rank returns ``world_size * (sum of its anchors' losses) / (global
denominator)``, so the MEAN over ranks of the returned loss - and, after DDP's gradient averaging, the
gradient - equals the single-process loss on the union batch, also when ranks hold different numbers of
items (pad-and-mask gathers).  Per-rank values of each term are therefore shares; log
``distributed.all_reduce_mean(term)`` for the full-batch value.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Iterable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from medbind_lib import distributed as D
from medbind_lib import registry

from .common import REDUCTIONS, Group, Scale, check_reduction, compute_dtype, resolve_logit_scale

__all__ = [
    "EMCL_SCALES",
    "LABEL_SIMS",
    "REDUCTIONS",
    "VARIANTS",
    "hash_texts",
    "normalize_text",
    "clip_infonce",
    "tmcl",
    "emcl",
    "medclip_soft",
    "MEDBindLoss",
]

EMCL_SCALES = ("constant", "negatives", "none")
VARIANTS = registry.variant_names("medbind")
LABEL_SIMS = ("dot", "cosine")


# ----------------------------------------------------------------------------------------------------
# text keys
# ----------------------------------------------------------------------------------------------------
def normalize_text(text: str, lowercase: bool = True) -> str:
    """Collapse whitespace (and lowercase): the 'identical text' relation of TMCL."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text.lower() if lowercase else text


def hash_texts(texts: Iterable[str], normalize: bool = True, lowercase: bool = True) -> torch.Tensor:
    """Stable int64 keys (blake2b, 8 bytes) of texts: equal key <=> identical (normalised) text.

    Stable across processes and runs (unlike Python's salted ``hash``), as DDP requires.
    """
    out = []
    for t in texts:
        s = normalize_text(t, lowercase) if normalize else str(t)
        out.append(int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little", signed=True))
    return torch.tensor(out, dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------
# engine
# ----------------------------------------------------------------------------------------------------
def _zero(*tensors) -> torch.Tensor:
    """A zero that stays in the autograd graph of ``tensors`` (zero gradients, no NaN)."""
    z = None
    for t in tensors:
        if torch.is_tensor(t) and t.is_floating_point():
            term = t.to(compute_dtype(t)).sum() * 0.0
            z = term if z is None else z + term
    return z if z is not None else torch.zeros(())


def _soft_nll(anchors, cands, targets, scale, bias=None) -> torch.Tensor:
    """Per-anchor  -sum_j targets_ij * log softmax_j(scale * a_i . c_j + bias_ij)   (float32)."""
    dt = compute_dtype(anchors)
    logits = (anchors.to(dt) @ cands.to(dt).t()) * scale
    if bias is not None:
        logits = logits + bias
    logp = F.log_softmax(logits, dim=1)
    return -torch.where(targets > 0, targets * logp, torch.zeros_like(logp)).sum(1)


def _pos_targets(keys_local: torch.Tensor, keys_all: torch.Tensor) -> torch.Tensor:
    pos = (keys_local[:, None] == keys_all[None, :]).float()
    return pos / pos.sum(1, keepdim=True).clamp_min(1.0)


def _denominator(reduction: str, n_anchors: int, n_samples: Optional[int]) -> float:
    if reduction == "mean":
        return float(n_anchors)
    if reduction == "sum":
        return 1.0
    if n_samples is None or n_samples <= 0:
        raise ValueError("reduction='batch' needs the number of samples n")
    return float(n_samples)


def _pairwise(
    a: torch.Tensor,
    b: torch.Tensor,
    keys: Optional[torch.Tensor],
    scale: Scale,
    *,
    reduction: str = "mean",
    n_samples: Optional[int] = None,
    distributed: Optional[bool] = None,
    labels_a: Optional[torch.Tensor] = None,
    labels_b: Optional[torch.Tensor] = None,
    label_sim: str = "dot",
    neg_bias: float = 0.0,
    const: float = 0.0,
    min_items: int = 1,
) -> dict:
    """Symmetric contrast of aligned rows a[i] <-> b[i] (local anchors vs gathered candidates).

    Targets: ``keys`` given -> uniform over items with an equal key (TMCL); ``keys`` None -> the row
    itself (InfoNCE); ``labels_a/labels_b`` given -> MedCLIP soft targets.  ``neg_bias`` is added to
    every non-target logit, ``const`` to every per-anchor loss (EMCL scalings).  Fewer than
    ``min_items`` global rows -> zero.  ``n_samples`` is the LOCAL sample count (for reduction='batch').
    """
    check_reduction(reduction)
    if a.ndim != 2 or b.shape != a.shape:
        raise ValueError(f"expected aligned [n, d] embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")
    g = Group(a.shape[0], a.device, distributed)
    n_glob = None
    if reduction == "batch":
        if n_samples is None:
            n_samples = a.shape[0]
        n_glob = sum(D.gather_sizes(n_samples, device=a.device)) if g.dist else int(n_samples)
    out = {"n": torch.tensor(float(g.total))}
    if g.total < max(1, min_items):
        z = _zero(a, b, scale)
        out.update(loss=z, a2b=z, b2a=z)
        return out

    A, B = g.grad(a), g.grad(b)
    if labels_a is not None:
        dt = compute_dtype(a)
        la = labels_a.to(dt)
        lb = (labels_b if labels_b is not None else labels_a).to(dt)
        LA, LB = g.nograd(la), g.nograd(lb)
        t_a2b = torch.softmax(_label_similarity(la, LB, label_sim), dim=1)  # anchor a_i (image) vs all texts
        t_b2a = torch.softmax(_label_similarity(lb, LA, label_sim), dim=1)  # anchor b_j (text) vs all images
        bias = None
    else:
        if keys is None:
            k_loc = g.local_ids(a.device)
            k_all = torch.arange(g.total, device=a.device)
        else:
            if keys.shape != (a.shape[0],):
                raise ValueError(f"keys must be [n]={a.shape[0]}, got {tuple(keys.shape)}")
            k_loc = keys.to(a.device).long()
            k_all = g.nograd(k_loc)
        t_a2b = t_b2a = _pos_targets(k_loc, k_all)
        bias = None
        if neg_bias != 0.0:
            bias = (t_a2b <= 0).float() * float(neg_bias)
    per_a2b = _soft_nll(a, B, t_a2b, scale, bias) + const
    per_b2a = _soft_nll(b, A, t_b2a, scale, bias) + const
    denom = _denominator(reduction, g.total, n_glob) / g.world
    l_a2b = per_a2b.sum() / denom
    l_b2a = per_b2a.sum() / denom
    out.update(loss=0.5 * (l_a2b + l_b2a), a2b=l_a2b, b2a=l_b2a)
    return out


def _label_similarity(x: torch.Tensor, y: torch.Tensor, how: str) -> torch.Tensor:
    if how == "dot":
        return x @ y.t()
    if how == "cosine":
        nx, ny = x.norm(dim=1, keepdim=True), y.norm(dim=1, keepdim=True)
        sim = (x @ y.t()) / (nx * ny.t()).clamp_min(1e-12)
        both_empty = (nx == 0) & (ny.t() == 0)
        return torch.where(both_empty, torch.ones_like(sim), sim)
    raise ValueError(f"label_sim must be one of {LABEL_SIMS}, got {how!r}")


# ----------------------------------------------------------------------------------------------------
# public functional losses
# ----------------------------------------------------------------------------------------------------
def clip_infonce(
    a: torch.Tensor,
    b: torch.Tensor,
    tau: Optional[Scale] = 0.07,
    *,
    logit_scale: Optional[Scale] = None,
    reduction: str = "mean",
    n_samples: Optional[int] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """Symmetric CLIP InfoNCE of aligned rows a[i] <-> b[i] (labels = arange), mean of both directions.

    ``return_terms`` -> dict(loss, a2b, b2a, n).  ``distributed=None``: gather when a process group
    with world > 1 is initialised.
    """
    out = _pairwise(a, b, None, resolve_logit_scale(tau, logit_scale), reduction=reduction, n_samples=n_samples,
                    distributed=distributed)
    return out if return_terms else out["loss"]


def tmcl(
    z: torch.Tensor,
    t: torch.Tensor,
    text_keys: torch.Tensor,
    tau: Optional[Scale] = 0.07,
    *,
    logit_scale: Optional[Scale] = None,
    reduction: str = "mean",
    n_samples: Optional[int] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """TMCL (MEDBind Eq. 1, SupCon L_out) of one modality: z [n, d] and its texts t [n, d].

    P(i) = {p : text_keys[p] == text_keys[i]} (i included).
      t->z, anchor text i:  -1/|P(i)| sum_{p in P(i)} log softmax_l(s t_i.z_l)[p]
      z->t, anchor item i:  -1/|P(i)| sum_{p in P(i)} log softmax_l(s z_i.t_l)[p]
    each reduced over the n anchors (``reduction``), result = mean of the two directions.
    All keys distinct -> identical to :func:`clip_infonce`.  n = 1 -> exactly 0.
    ``return_terms`` -> dict(loss, t2z, z2t, n).
    """
    out = _pairwise(z, t, text_keys, resolve_logit_scale(tau, logit_scale), reduction=reduction, n_samples=n_samples,
                    distributed=distributed)
    if not return_terms:
        return out["loss"]
    return {"loss": out["loss"], "t2z": out["b2a"], "z2t": out["a2b"], "n": out["n"]}


def emcl(
    c: torch.Tensor,
    e: torch.Tensor,
    pair_mask: Optional[torch.Tensor] = None,
    tau: Optional[Scale] = 0.07,
    n: Optional[int] = None,
    scale: str = "constant",
    *,
    logit_scale: Optional[Scale] = None,
    reduction: str = "mean",
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """EMCL (MEDBind Eq. 2) between CXR c [k, d] and ECG e [k, d], row-aligned.

    The m rows with ``pair_mask`` True (all rows if None) are the pairs (c_u, e_u); ``n`` is the number
    of samples of the batch (default k; local count under DDP, summed over ranks).  ``scale``:
    ``constant`` = equation as printed (adds log(n/m) to every per-anchor term), ``negatives`` = adds
    log(n/m) to the off-diagonal logits, ``none`` = plain InfoNCE among the m pairs.
    Result = mean of the c->e and e->c directions, each reduced over the m anchors.
    m = 0 or 1 (globally) -> 0, still attached to the graph.  ``return_terms`` -> dict(loss, c2e, e2c, m, n).
    """
    if scale not in EMCL_SCALES:
        raise ValueError(f"emcl scale must be one of {EMCL_SCALES}, got {scale!r}")
    check_reduction(reduction)
    if c.shape != e.shape or c.ndim != 2:
        raise ValueError(f"expected aligned [k, d] c and e, got {tuple(c.shape)} and {tuple(e.shape)}")
    if pair_mask is not None:
        pair_mask = pair_mask.to(c.device).bool()
        if pair_mask.shape != (c.shape[0],):
            raise ValueError(f"pair_mask must be [k]={c.shape[0]}, got {tuple(pair_mask.shape)}")
        cp, ep = c[pair_mask], e[pair_mask]
    else:
        cp, ep = c, e
    n_local = c.shape[0] if n is None else int(n)
    if n_local < cp.shape[0]:
        raise ValueError(f"n (samples) = {n_local} < m (pairs) = {cp.shape[0]}")
    use = D.active() if distributed is None else (bool(distributed) and D.active())
    n_glob = sum(D.gather_sizes(n_local, device=c.device)) if use else n_local
    s = resolve_logit_scale(tau, logit_scale)
    m_glob = sum(D.gather_sizes(cp.shape[0], device=c.device)) if use else cp.shape[0]
    if m_glob <= 1:
        z = _zero(c, e, s)
        out = {"loss": z, "c2e": z, "e2c": z}
    else:
        log_ratio = math.log(n_glob / m_glob)
        res = _pairwise(
            cp, ep, None, s,
            reduction=reduction, n_samples=n_local, distributed=use,
            neg_bias=log_ratio if scale == "negatives" else 0.0,
            const=log_ratio if scale == "constant" else 0.0,
        )
        out = {"loss": res["loss"], "c2e": res["a2b"], "e2c": res["b2a"]}
    out.update(m=torch.tensor(float(m_glob)), n=torch.tensor(float(n_glob)))
    return out if return_terms else out["loss"]


def medclip_soft(
    z: torch.Tensor,
    t: torch.Tensor,
    label_vectors: torch.Tensor,
    tau: Optional[Scale] = 0.07,
    *,
    text_label_vectors: Optional[torch.Tensor] = None,
    label_sim: str = "dot",
    logit_scale: Optional[Scale] = None,
    reduction: str = "mean",
    n_samples: Optional[int] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """MedCLIP semantic-matching loss: soft cross-entropy against label-similarity targets.

    z [n, d] images, t [n, d] texts, ``label_vectors`` [n, K] (image labels; texts reuse them unless
    ``text_label_vectors`` is given).  S_ij = sim(label_i, text_label_j) (``dot``: official code,
    ``cosine``: paper Eq.; all-zero vs all-zero = 1), targets softmax(S, 1) for image anchors and
    softmax(S^T, 1) for text anchors; loss = mean of the two soft cross-entropies (each averaged over
    anchors).  ``return_terms`` -> dict(loss, z2t, t2z, n).
    """
    if label_vectors.shape[0] != z.shape[0]:
        raise ValueError("label_vectors must have one row per item")
    if label_sim not in LABEL_SIMS:
        raise ValueError(f"label_sim must be one of {LABEL_SIMS}, got {label_sim!r}")
    out = _pairwise(z, t, None, resolve_logit_scale(tau, logit_scale), reduction=reduction, n_samples=n_samples,
                    distributed=distributed, labels_a=label_vectors.to(z.device),
                    labels_b=None if text_label_vectors is None else text_label_vectors.to(z.device),
                    label_sim=label_sim)
    if not return_terms:
        return out["loss"]
    return {"loss": out["loss"], "z2t": out["a2b"], "t2z": out["b2a"], "n": out["n"]}


# ----------------------------------------------------------------------------------------------------
# combined module
# ----------------------------------------------------------------------------------------------------
class MEDBindLoss(nn.Module):
    """Total loss of one system; ``forward(batch)`` returns a dict of named terms plus ``"loss"``.

    Variants:
      ``medbind_bd``  TMCL_cxr + TMCL_ecg + emcl_weight * EMCL
      ``medbind_nm``  TMCL_cxr + TMCL_ecg
      ``ecg_clip``    TMCL_ecg
      ``cxr_clip``    CLIP InfoNCE(cxr, cxr_text)           (plain CLIP InfoNCE: the CXR-CLIP row)
      ``medclip``     MedCLIP soft semantic matching(cxr, cxr_text, cxr_labels)

    Batch contract (one mini-batch = a set of samples; a sample has a CXR with its report text, an
    ECG with its text, or both = a pair; rows are compact, i.e. only present modalities have rows):
      ``cxr``            [n_c, d] normalised CXR embeddings of the samples that have a CXR
      ``cxr_text``       [n_c, d] normalised embeddings of those CXRs' report texts (row-aligned)
      ``cxr_text_keys``  LongTensor [n_c], equal <=> identical text (:func:`hash_texts`)
      ``ecg`` / ``ecg_text`` / ``ecg_text_keys``   the same for the n_e samples with an ECG
      ``pairs``          LongTensor [m, 2] (optional): row (i, j) = cxr row i and ecg row j are the same
                         sample / visit.  Absent or [0, 2] -> m = 0.
      ``n_samples``      int (optional): samples in the batch; default n_c + n_e - m
      ``cxr_labels``     [n_c, K] float multi-hot (``medclip`` only); ``cxr_text_labels`` optional
    A modality the variant uses must be a tensor; a batch with none of it passes a [0, d] tensor (its
    term is 0 on that step).  Modalities the variant does not use are ignored (may be None/absent).
    Under DDP every rank calls forward every step with the same variant; row counts may differ per rank.

    Temperature: ``tau`` (fixed) unless ``forward(..., logit_scale=...)`` passes 1/tau (a tensor, e.g.
    ``model.logit_scale.exp()``; gradients flow to it).

    Output: ``loss`` (total) and each term (``tmcl_cxr``, ``tmcl_cxr_t2z``, ``tmcl_cxr_z2t``, ``tmcl_ecg``,
    ..., ``emcl``, ``emcl_c2e``, ``emcl_e2c``, ``clip_cxr``, ``medclip_cxr``), with gradient, plus detached
    global counts ``n_cxr``, ``n_ecg``, ``m_pairs``, ``n_samples`` (floats).  Under DDP the term values are
    per-rank shares whose mean over ranks is the full-batch value (see module docstring).
    """

    def __init__(
        self,
        variant: str = registry.HEADLINE["medbind"],
        tau: float = 0.07,
        emcl_scale: str = "constant",
        reduction: str = "mean",
        emcl_weight: float = 1.0,
        medclip_label_sim: str = "dot",
        distributed: Optional[bool] = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if emcl_scale not in EMCL_SCALES:
            raise ValueError(f"emcl_scale must be one of {EMCL_SCALES}, got {emcl_scale!r}")
        check_reduction(reduction)
        if medclip_label_sim not in LABEL_SIMS:
            raise ValueError(f"medclip_label_sim must be one of {LABEL_SIMS}, got {medclip_label_sim!r}")
        self.variant = variant
        self.tau = float(tau)
        self.emcl_scale = emcl_scale
        self.reduction = reduction
        self.emcl_weight = float(emcl_weight)
        self.medclip_label_sim = medclip_label_sim
        self.distributed = distributed

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, tau={self.tau}, emcl_scale={self.emcl_scale}, "
                f"reduction={self.reduction}, emcl_weight={self.emcl_weight}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return registry.variant(self.variant).modalities

    @property
    def terms(self) -> tuple[str, ...]:
        """The variant's loss terms (``registry.Variant.terms``): what ``forward`` computes."""
        return registry.variant(self.variant).terms

    @staticmethod
    def _get(batch: Mapping, key: str, required: bool = True):
        v = batch.get(key)
        if v is None and required:
            raise ValueError(f"MEDBindLoss batch needs {key!r} (a [0, d] tensor if the batch has none)")
        return v

    def forward(self, batch: Mapping, logit_scale: Optional[Scale] = None) -> dict:
        s = resolve_logit_scale(self.tau, logit_scale)
        kw = dict(logit_scale=s, reduction=self.reduction, distributed=self.distributed)
        out: dict = {}
        total = None
        use_dist = D.active() if self.distributed is None else (bool(self.distributed) and D.active())

        # sample / pair counts (local); n_samples is needed by EMCL and by reduction='batch'
        pairs = batch.get("pairs")
        m_local = 0 if pairs is None else int(pairs.shape[0])
        n_c = 0 if batch.get("cxr") is None else int(batch["cxr"].shape[0])
        n_e = 0 if batch.get("ecg") is None else int(batch["ecg"].shape[0])
        n_local = batch.get("n_samples")
        n_local = int(n_local) if n_local is not None else n_c + n_e - m_local
        dev = next((batch[k].device for k in ("cxr", "ecg", "cxr_text", "ecg_text")
                    if torch.is_tensor(batch.get(k))), None)
        n_glob = sum(D.gather_sizes(n_local, device=dev)) if use_dist else n_local
        out["n_samples"] = torch.tensor(float(n_glob))

        def add(name: str, term: torch.Tensor, weight: float = 1.0):
            nonlocal total
            out[name] = term
            total = weight * term if total is None else total + weight * term

        def check(mod: str) -> tuple[torch.Tensor, torch.Tensor]:
            z, t = self._get(batch, mod), self._get(batch, f"{mod}_text")
            if z.shape != t.shape:
                raise ValueError(f"{mod} {tuple(z.shape)} and {mod}_text {tuple(t.shape)} must be row-aligned")
            return z, t

        if "tmcl" in self.terms:
            for mod in self.modalities:
                z, t = check(mod)
                keys = self._get(batch, f"{mod}_text_keys")
                r = tmcl(z, t, keys, n_samples=n_local, return_terms=True, **kw)
                add(f"tmcl_{mod}", r["loss"])
                out[f"tmcl_{mod}_t2z"], out[f"tmcl_{mod}_z2t"] = r["t2z"], r["z2t"]
                out[f"n_{mod}"] = r["n"]
        elif "clip" in self.terms:
            z, t = check("cxr")
            r = clip_infonce(z, t, n_samples=n_local, return_terms=True, **kw)
            add("clip_cxr", r["loss"])
            out["clip_cxr_z2t"], out["clip_cxr_t2z"], out["n_cxr"] = r["a2b"], r["b2a"], r["n"]
        else:  # medclip
            z, t = check("cxr")
            r = medclip_soft(z, t, self._get(batch, "cxr_labels"),
                             text_label_vectors=batch.get("cxr_text_labels"),
                             label_sim=self.medclip_label_sim, n_samples=n_local, return_terms=True, **kw)
            add("medclip_cxr", r["loss"])
            out["medclip_cxr_z2t"], out["medclip_cxr_t2z"], out["n_cxr"] = r["z2t"], r["t2z"], r["n"]

        if "emcl" in self.terms:
            c_all, e_all = batch["cxr"], batch["ecg"]
            if pairs is None:
                pairs = torch.zeros((0, 2), dtype=torch.long, device=c_all.device)
            pairs = pairs.to(c_all.device).long()
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise ValueError(f"pairs must be LongTensor [m, 2], got {tuple(pairs.shape)}")
            c, e = c_all[pairs[:, 0]], e_all[pairs[:, 1]]
            r = emcl(c, e, None, n=n_local, scale=self.emcl_scale, return_terms=True, **kw)
            add("emcl", r["loss"], self.emcl_weight)
            out["emcl_c2e"], out["emcl_e2c"], out["m_pairs"] = r["c2e"], r["e2c"], r["m"]
        out["loss"] = total
        return out
