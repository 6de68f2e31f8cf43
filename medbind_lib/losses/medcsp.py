"""Pre-training losses of MEDCSP ("Unity in Diversity", Eqs. 2-7): modality-record alignment L_A,
cross-source patient contrast L_P and diagnosis-history soft matching L_D, DDP-ready like MEDBind's.

Notation: a batch of records i (under DDP: the gathered records of every rank), each with a source
s_i (0 = EHR, 1 = imaging), a patient p_i, a time t_i (days), a non-empty set M_i of present modalities
with embeddings e_i^m (L2-normalised here), and the diagnosis history h_i of its PATIENT (multi-hot, may
be all-zero); s = 1/tau (tau 0.1 fixed, or a learnable ``logit_scale`` = 1/tau).  Arithmetic runs in
float32 at least (fp16/bf16 upcast; float64 stays float64), as in :mod:`.medbind`.

Definitions
-----------
Record embedding (Eq. 2), a masked mean - a missing modality is left out, never zero-filled into it:
  c_i = normalize( 1/|M_i| sum_{m in M_i} e_i^m ).               A record with M_i empty is an error.
L_A (Eqs. 3-4), anchors A = {(i, m) : m in M_i}; candidates N(i) = {j : s_j = s_i} (``la_negatives=
"source"``, the paper's "within individual sources") or every record (``"batch"``):
  L_A = 1/|A| sum_{(i,m) in A} -log( exp(s e_i^m.c_i) / sum_{j in N(i)} exp(s e_i^m.c_j) )
L_P (Eq. 5), X(i) = {j : s_j != s_i} (the other source), P(i) = {j in X(i) : p_j = p_i, |t_i - t_j| <= theta},
candidates X_P(i) = P(i) + {j in X(i) : p_j != p_i} (``lp_negatives="other_patients"``, 3.4.1: the negatives
are "s != s', if p != p'": a same-patient record outside the window is neither positive nor negative) or X(i)
(``"source"``), anchors I_P = {i in D : P(i) non-empty}:
  L_P = 1/Z_P sum_{i in I_P} -1/|P(i)| sum_{q in P(i)} log( exp(s c_i.c_q) / sum_{j in X_P(i)} exp(s c_i.c_j) )
  (SupCon L_out: several positives averaged).  D = every record (``direction="both"``), the EHR records
  (``"ehr_to_cxr"``) or the imaging records (``"cxr_to_ehr"``).
L_D (Eqs. 6-7), K(i) = X(i) minus the j with p_j = p_i (``ld_same_patient=False``, 3.4.2: pairs that "neither
share the same patient nor belong to the same source"), or all of X(i) (``True``);
  alpha_ij = h_i.h_j / (|h_i| |h_j|)   (0 when either history is all-zero),
  y_ij = alpha_ij / sum_{k in K(i)} alpha_ik                      (``ld_target="l1"``, OTTER-style)
       = exp(alpha_ij/tau) / sum_{k in K(i)} exp(alpha_ik/tau)    (``"softmax"``; tau = the fixed tau)
       = alpha_ij                                                 (``"raw"``: Eq. 7 as printed, no normalisation)
  anchors I_D = {i in D : sum_{k in K(i)} alpha_ik > 0}:
  L_D = 1/Z_D sum_{i in I_D} -sum_{j in K(i)} y_ij log( exp(s c_i.c_j) / sum_{k in K(i)} exp(s c_i.c_k) )
L = L_A + lambda_P L_P + lambda_D L_D   (lambda_P 0.5, lambda_D 0.2, theta 30 days).
Reduction (``reduction``; Eqs. 4, 5 and 7 are SUMS over their anchors): Z = the term's own anchor count (``"mean"``:
|A|, |I_P|, |I_D|; each term a mean, so L_P weighs as much per unit as L_A though it has far fewer anchors), the
number N of records of the (global) batch (``"batch"``: the paper's sums on a per-record scale, so the terms keep
the paper's relative weights, as MEDBind's ``loss_reduction: batch``) or 1 (``"sum"``: the literal sums).
An empty anchor set (a one-source batch, no positive, all-zero histories) gives a term of exactly 0 that
stays in the autograd graph (zero gradients, never NaN).

Choices the paper leaves open (constructor keys, defaults first): ``la_negatives`` source|batch;
``lp_direction`` / ``ld_direction`` both|ehr_to_cxr|cxr_to_ehr (the official code scores one direction;
"both" makes the term symmetric, averaged over the anchors of both sources, not per direction);
``ld_target`` l1|softmax|raw; ``reduction`` mean|batch|sum.  Under ``"softmax"`` an anchor whose alphas are all 0
is skipped as under ``"l1"`` (its softmax target would be uniform: no diagnosis information).  The paper's own
rules are the defaults of ``lp_negatives`` (other_patients) and ``ld_same_patient`` (False); the other values
reproduce this suite's earlier reading (every other-source record a negative / candidate).

DDP (the open_clip pattern of :mod:`.medbind`): record embeddings c are gathered WITH gradient, sources,
patients, times, histories and presence masks without; every rank scores its LOCAL anchors against the
gathered candidates and returns ``world * (sum of its anchors' losses) / Z`` (Z global: the anchor count, the
batch's record count or 1, by ``reduction``), so the
mean over ranks (and DDP's averaged gradient) equals the single-process loss on the union batch, also for
uneven or empty ranks.  The anchor counts are computed from the gathered metadata, so every rank holds
the same denominators without a further collective.  Per-rank term values are shares: log
``distributed.all_reduce_mean(term)``.  Counts in the output are global.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import registry
from .common import REDUCTIONS, Group, Scale, check_reduction, compute_dtype, resolve_logit_scale

__all__ = [
    "MEDCSP_VARIANTS",
    "LA_NEGATIVES",
    "LP_DIRECTIONS",
    "LP_NEGATIVES",
    "LD_TARGETS",
    "REDUCTIONS",
    "SOURCE_EHR",
    "SOURCE_CXR",
    "record_embeddings",
    "medcsp_la",
    "medcsp_lp",
    "medcsp_ld",
    "MEDCSPLoss",
]

SOURCE_EHR, SOURCE_CXR = 0, 1
MEDCSP_VARIANTS = registry.variant_names("medcsp")
LA_NEGATIVES = ("source", "batch")
LP_DIRECTIONS = ("both", "ehr_to_cxr", "cxr_to_ehr")
LP_NEGATIVES = ("other_patients", "source")
LD_TARGETS = ("l1", "softmax", "raw")
# finite fill for non-candidates: a row without any candidate stays finite (-inf would make its log-softmax
# NaN, and NaN survives a zero upstream gradient in the backward)
_FILL = -1e9

Mask = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


# ----------------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------------
def _present(mask: Mask, names: Sequence[str], n: int, device) -> torch.Tensor:
    """[N, M] bool, columns in the order of ``names`` (a dict mask is stacked in that order)."""
    if isinstance(mask, Mapping):
        missing = [m for m in names if m not in mask]
        if missing:
            raise ValueError(f"mask has no column for modalities {missing}")
        mask = torch.stack([torch.as_tensor(mask[m], device=device).reshape(-1) for m in names], dim=1)
    mask = torch.as_tensor(mask, device=device).bool()
    if mask.shape != (n, len(names)):
        raise ValueError(f"mask must be [N, M] = [{n}, {len(names)}] (columns {tuple(names)}), got {tuple(mask.shape)}")
    return mask


def record_embeddings(
    embeddings: Mapping[str, torch.Tensor], mask: Mask, modalities: Optional[Sequence[str]] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(e [N, M, d], present [N, M] bool, c [N, d]): normalised modality embeddings and record embeddings.

    ``embeddings``: modality -> [N, d] (rows of absent modalities may hold anything, even NaN: they are
    replaced by zeros before any arithmetic, so they neither enter c nor receive gradient).  ``mask``:
    [N, M] bool with columns in the order of ``modalities`` (default: the dict's order) or a dict
    modality -> [N].  c_i = normalize(mean of the present e_i^m) (Eq. 2).  A record with no modality
    raises ValueError (its c would be undefined).
    """
    names = tuple(embeddings) if modalities is None else tuple(modalities)
    if not names:
        raise ValueError("record_embeddings needs at least one modality")
    missing = [m for m in names if m not in embeddings]
    if missing:
        raise ValueError(f"embeddings has no modality {missing}")
    xs = [embeddings[m] for m in names]
    n, d = (xs[0].shape[0], xs[0].shape[-1]) if xs[0].ndim == 2 else (None, None)
    if n is None or any(x.shape != (n, d) for x in xs):
        raise ValueError(f"modality embeddings must all be [N, d], got {[tuple(x.shape) for x in xs]}")
    dev = xs[0].device
    present = _present(mask, names, n, dev)
    if n and not bool(present.any(1).all()):
        raise ValueError(f"records without any modality: rows {(~present.any(1)).nonzero().flatten().tolist()}")
    dt = compute_dtype(xs[0])
    e = torch.stack([x.to(dt) for x in xs], dim=1)
    e = torch.where(present[..., None], e, torch.zeros((), dtype=dt, device=dev))
    e = F.normalize(e, dim=-1)
    c = F.normalize(e.sum(1) / present.sum(1, keepdim=True).clamp_min(1).to(dt), dim=-1)
    return e, present, c


def _vector(x, n: int, name: str, device, dtype=None) -> torch.Tensor:
    if x is None:
        raise ValueError(f"MEDCSP loss needs {name!r} ([N] per record)")
    x = torch.as_tensor(x, device=device)
    x = x.to(dtype) if dtype is not None else x
    if x.shape != (n,):
        raise ValueError(f"{name} must be [N] = [{n}], got {tuple(x.shape)}")
    return x


def _sources(x, n: int, device) -> torch.Tensor:
    src = _vector(x, n, "sources", device, torch.long)
    if n and not bool(((src == SOURCE_EHR) | (src == SOURCE_CXR)).all()):
        raise ValueError(f"sources must be {SOURCE_EHR} (EHR) or {SOURCE_CXR} (imaging), got {src.unique().tolist()}")
    return src


def _histories(x, n: int, device, dtype) -> torch.Tensor:
    if x is None:
        raise ValueError("MEDCSP L_D needs 'histories' ([N, V] diagnosis-history multi-hot per record)")
    h = torch.as_tensor(x, device=device).to(dtype)
    if h.ndim != 2 or h.shape[0] != n:
        raise ValueError(f"histories must be [N, V] with N = {n}, got {tuple(h.shape)}")
    if bool((h < 0).any()):  # cosines must be >= 0 for l1-normalised targets
        raise ValueError("histories must be non-negative (multi-hot or counts)")
    return h


class _Records:
    """Local records (the anchors) and the gathered records of every rank (the candidates).

    Gathers happen here, once per batch, in a fixed order (every rank must make the same collectives):
    c with gradient, then the metadata that was passed, without.
    """

    def __init__(self, c, sources, distributed, *, present=None, patients=None, times=None, histories=None,
                 reduction: str = "mean"):
        check_reduction(reduction)
        self.reduction = reduction
        self.g = Group(c.shape[0], c.device, distributed)
        self.c = c
        self.C = self.g.grad(c)
        self.rows = slice(self.g.offset, self.g.offset + c.shape[0])
        self.src = sources
        self.SRC = self.g.nograd(sources)
        self.PRESENT = None if present is None else self.g.nograd(present)
        self.P = None if patients is None else self.g.nograd(patients)
        self.T = None if times is None else self.g.nograd(times)
        self.H = None if histories is None else self.g.nograd(histories)
        self._cos = None

    @property
    def cos(self) -> torch.Tensor:
        """[n_local, N] c_i.c_j, shared by L_P and L_D."""
        if self._cos is None:
            self._cos = self.c @ self.C.t()
        return self._cos

    def cross(self) -> torch.Tensor:
        """[N, N] bool: j is of the other source than i."""
        return self.SRC[:, None] != self.SRC[None, :]

    def anchors(self, direction: str) -> torch.Tensor:
        """[N] bool: records that may be anchors of a cross-source term."""
        if direction == "both":
            return torch.ones_like(self.SRC, dtype=torch.bool)
        return self.SRC == (SOURCE_EHR if direction == "ehr_to_cxr" else SOURCE_CXR)

    def share(self, local_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """world * local sum / Z (``reduction``: Z = the global anchor ``count``, the global record count or 1): the
        mean over ranks is the one-process value; an empty anchor set gives the (zero) sum."""
        if self.reduction == "mean":
            z = count.clamp_min(1).to(local_sum.dtype)
        else:
            z = float(max(self.g.total, 1)) if self.reduction == "batch" else 1.0
        return local_sum * (self.g.world / z)


def _masked_log_softmax(logits: torch.Tensor, cand: Optional[torch.Tensor]) -> torch.Tensor:
    return F.log_softmax(logits if cand is None else logits.masked_fill(~cand, _FILL), dim=1)


def _soft_ce(logp: torch.Tensor, targets: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Per-anchor -sum_j targets_ij logp_ij over the support (0 * fill never enters)."""
    return -torch.where(support, targets * logp, torch.zeros((), dtype=logp.dtype, device=logp.device)).sum(1)


# ----------------------------------------------------------------------------------------------------
# terms on gathered records
# ----------------------------------------------------------------------------------------------------
def _la(R: _Records, e: torch.Tensor, present: torch.Tensor, scale: Scale, negatives: str) -> dict:
    rec, mod = present.nonzero(as_tuple=True)
    logits = (e[rec, mod] @ R.C.t()) * scale  # [A_local, N]
    cand = (R.SRC[None, :] == R.src[rec][:, None]) if negatives == "source" else None
    logp = _masked_log_softmax(logits, cand)
    per = -logp.gather(1, (rec + R.g.offset)[:, None]).squeeze(1)
    count = R.PRESENT.sum()
    return {"loss": R.share(per.sum(), count), "la_anchors": count.detach().float()}


def _lp(R: _Records, scale: Scale, theta: float, direction: str, negatives: str = "other_patients") -> dict:
    cross = R.cross()
    same = R.P[:, None] == R.P[None, :]
    pos = cross & same & ((R.T[:, None] - R.T[None, :]).abs() <= theta)
    cand = cross & (~same | pos) if negatives == "other_patients" else cross
    npos = pos.sum(1)
    valid = R.anchors(direction) & (npos > 0)
    count = valid.sum()
    loc = R.rows
    logp = _masked_log_softmax(R.cos * scale, cand[loc])
    per = _soft_ce(logp, pos[loc].to(logp.dtype) / npos[loc].clamp_min(1)[:, None].to(logp.dtype), pos[loc])
    loss = R.share(torch.where(valid[loc], per, torch.zeros_like(per)).sum(), count)
    pos_mean = torch.where(valid, npos, torch.zeros_like(npos)).sum().float() / count.clamp_min(1).float()
    return {"loss": loss, "lp_anchors": count.detach().float(), "lp_positives_mean": pos_mean.detach()}


def _ld(R: _Records, scale: Scale, tau: float, target: str, same_patient: bool, direction: str) -> dict:
    cand = R.cross()
    if not same_patient:
        cand = cand & (R.P[:, None] != R.P[None, :])
    h = R.H / R.H.norm(dim=1, keepdim=True).clamp_min(1e-12)  # all-zero rows stay zero: alpha = 0
    alpha = torch.where(cand, h @ h.t(), torch.zeros((), dtype=h.dtype, device=h.device))
    mass = alpha.sum(1)
    valid = R.anchors(direction) & (mass > 0)
    count = valid.sum()
    loc = R.rows
    if target == "l1":
        y = alpha[loc] / mass[loc].clamp_min(1e-12)[:, None]
    elif target == "raw":
        y = alpha[loc]
    else:
        y = torch.softmax((alpha[loc] / tau).masked_fill(~cand[loc], _FILL), dim=1)
    logp = _masked_log_softmax(R.cos * scale, cand[loc])
    per = _soft_ce(logp, y.to(logp.dtype), cand[loc])
    loss = R.share(torch.where(valid[loc], per, torch.zeros_like(per)).sum(), count)
    return {"loss": loss, "ld_anchors": count.detach().float()}


# ----------------------------------------------------------------------------------------------------
# public functional losses
# ----------------------------------------------------------------------------------------------------
def medcsp_la(
    embeddings: Mapping[str, torch.Tensor],
    mask: Mask,
    sources: torch.Tensor,
    tau: Optional[Scale] = 0.1,
    *,
    negatives: str = "source",
    modalities: Optional[Sequence[str]] = None,
    reduction: str = "mean",
    logit_scale: Optional[Scale] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """L_A (Eqs. 3-4): every present e_i^m against its own record's c_i among the candidate records
    (``negatives``: "source" = same source only, "batch" = all), reduced over the present (record, modality)
    anchors (``reduction``, module docstring).  ``return_terms`` -> dict(loss, la_anchors)."""
    _choice("negatives", negatives, LA_NEGATIVES)
    e, present, c = record_embeddings(embeddings, mask, modalities)
    R = _Records(c, _sources(sources, c.shape[0], c.device), distributed, present=present, reduction=reduction)
    out = _la(R, e, present, resolve_logit_scale(tau, logit_scale), negatives)
    return out if return_terms else out["loss"]


def medcsp_lp(
    c: torch.Tensor,
    sources: torch.Tensor,
    patients: torch.Tensor,
    times: torch.Tensor,
    tau: Optional[Scale] = 0.1,
    *,
    theta: float = 30.0,
    direction: str = "both",
    negatives: str = "other_patients",
    reduction: str = "mean",
    logit_scale: Optional[Scale] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """L_P (Eq. 5) of record embeddings c [N, d] (L2-normalised, e.g. from :func:`record_embeddings`):
    positives = same patient, other source, |dt| <= ``theta`` days; negatives = the other source's records of
    other patients (``negatives="other_patients"``, the paper) or of anyone (``"source"``).
    ``return_terms`` -> dict(loss, lp_anchors, lp_positives_mean)."""
    _choice("direction", direction, LP_DIRECTIONS)
    _choice("negatives", negatives, LP_NEGATIVES)
    n, dev = c.shape[0], c.device
    c = c.to(compute_dtype(c))
    R = _Records(c, _sources(sources, n, dev), distributed, patients=_vector(patients, n, "patients", dev, torch.long),
                 times=_vector(times, n, "times", dev, torch.float64), reduction=reduction)
    out = _lp(R, resolve_logit_scale(tau, logit_scale), float(theta), direction, negatives)
    return out if return_terms else out["loss"]


def medcsp_ld(
    c: torch.Tensor,
    sources: torch.Tensor,
    histories: torch.Tensor,
    tau: Optional[Scale] = 0.1,
    *,
    patients: Optional[torch.Tensor] = None,
    target: str = "l1",
    same_patient: bool = False,
    direction: str = "both",
    target_tau: Optional[float] = None,
    reduction: str = "mean",
    logit_scale: Optional[Scale] = None,
    distributed: Optional[bool] = None,
    return_terms: bool = False,
):
    """L_D (Eqs. 6-7) of record embeddings c [N, d]: soft cross-entropy over the other source's records of
    other patients (``same_patient=True``: of anyone) against the history cosines (``target``).
    ``same_patient=False`` needs ``patients``; ``target_tau`` (default ``tau``) is the softmax-target
    temperature.  ``return_terms`` -> dict(loss, ld_anchors)."""
    _choice("target", target, LD_TARGETS)
    _choice("direction", direction, LP_DIRECTIONS)
    n, dev = c.shape[0], c.device
    c = c.to(compute_dtype(c))
    pat = None if same_patient else _vector(patients, n, "patients", dev, torch.long)
    R = _Records(c, _sources(sources, n, dev), distributed, patients=pat,
                 histories=_histories(histories, n, dev, c.dtype), reduction=reduction)
    scale = resolve_logit_scale(tau, logit_scale)
    if target_tau is None:  # the softmax target is a fixed distribution: no gradient through its temperature
        target_tau = float(tau.detach()) if torch.is_tensor(tau) else (float(tau) if tau is not None
                                                                      else 1.0 / float(torch.as_tensor(scale).detach()))
    out = _ld(R, scale, float(target_tau), target, bool(same_patient), direction)
    return out if return_terms else out["loss"]


# ----------------------------------------------------------------------------------------------------
# combined module
# ----------------------------------------------------------------------------------------------------
class MEDCSPLoss(nn.Module):
    """Total MEDCSP loss of one variant; ``forward(batch)`` returns a dict of named terms plus ``"loss"``.

    Variants (the paper's Figure 7 ablations):
      ``medcsp``         L_A + lambda_P L_P + lambda_D L_D
      ``medcsp_a``       L_A
      ``medcsp_a_p``     L_A + lambda_P L_P
      ``medcsp_a_d``     L_A + lambda_D L_D
      ``medcsp_single``  L_A on the imaging records only (EHR rows of the batch are dropped first)

    Keys (defaults = the paper / MEDCSP.md): ``tau`` 0.1, ``lambda_p`` 0.5, ``lambda_d`` 0.2, ``theta`` 30
    (days), ``la_negatives`` "source", ``lp_direction`` "both", ``lp_negatives`` "other_patients", ``ld_target``
    "l1", ``ld_same_patient`` False, ``ld_direction`` "both", ``reduction`` "batch" (the paper's sums over the
    batch's records; "mean": each term over its own anchors), ``modalities`` (mask column order; default the
    embeddings dict's order).

    Batch contract (N records, local to the rank):
      ``embeddings``  dict modality -> [N, d] (any value in absent rows)
      ``mask``        [N, M] bool presence (or dict modality -> [N]); every record has >= 1 modality
      ``sources``     [N] int, 0 = EHR, 1 = imaging
      ``patients``    [N] int64 (L_P; L_D with ``ld_same_patient=False``)
      ``times``       [N] float days (L_P)
      ``histories``   [N, V] float multi-hot diagnosis history of the record's patient (L_D)
    Keys a variant does not use may be absent.  Under DDP every rank calls forward every step with the
    same variant and keys; row counts may differ (also 0).

    Temperature: ``tau`` unless ``forward(..., logit_scale=...)`` passes 1/tau (a tensor; gradients flow to
    it); L_D's softmax target always uses the fixed ``tau``.

    Output: ``loss`` and the unweighted terms ``la``, ``lp``, ``ld`` the variant uses (with gradient;
    under DDP per-rank shares, see module docstring), plus detached global counts ``n_records``,
    ``n_ehr``, ``n_cxr``, ``la_anchors`` and, with their terms, ``lp_anchors``, ``lp_positives_mean``,
    ``ld_anchors``.
    """

    def __init__(
        self,
        variant: str = registry.HEADLINE["medcsp"],
        tau: float = 0.1,
        lambda_p: float = 0.5,
        lambda_d: float = 0.2,
        theta: float = 30.0,
        la_negatives: str = "source",
        lp_direction: str = "both",
        ld_target: str = "l1",
        ld_same_patient: bool = False,
        ld_direction: str = "both",
        lp_negatives: str = "other_patients",
        reduction: str = "batch",
        modalities: Optional[Sequence[str]] = None,
        distributed: Optional[bool] = None,
    ):
        super().__init__()
        _choice("variant", variant, MEDCSP_VARIANTS)
        _choice("la_negatives", la_negatives, LA_NEGATIVES)
        _choice("lp_direction", lp_direction, LP_DIRECTIONS)
        _choice("ld_direction", ld_direction, LP_DIRECTIONS)
        _choice("ld_target", ld_target, LD_TARGETS)
        _choice("lp_negatives", lp_negatives, LP_NEGATIVES)
        check_reduction(reduction)
        if tau <= 0 or theta < 0:
            raise ValueError(f"need tau > 0 and theta >= 0, got tau={tau}, theta={theta}")
        self.variant = variant
        spec = registry.variant(variant)
        self.terms = spec.terms
        self.sources = spec.sources          # ("cxr",): the imaging source only
        self.tau = float(tau)
        self.lambda_p = float(lambda_p)
        self.lambda_d = float(lambda_d)
        self.theta = float(theta)
        self.la_negatives = la_negatives
        self.lp_direction = lp_direction
        self.ld_target = ld_target
        self.ld_same_patient = bool(ld_same_patient)
        self.ld_direction = ld_direction
        self.lp_negatives = lp_negatives
        self.reduction = reduction
        self.modalities = None if modalities is None else tuple(modalities)
        self.distributed = distributed

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, tau={self.tau}, lambda_p={self.lambda_p}, lambda_d={self.lambda_d}, "
                f"theta={self.theta}, la_negatives={self.la_negatives}, lp_direction={self.lp_direction}, "
                f"ld_target={self.ld_target}, ld_same_patient={self.ld_same_patient}, "
                f"ld_direction={self.ld_direction}, lp_negatives={self.lp_negatives}, reduction={self.reduction}")

    def forward(self, batch: Mapping, logit_scale: Optional[Scale] = None) -> dict:
        s = resolve_logit_scale(self.tau, logit_scale)
        emb = batch.get("embeddings")
        if not isinstance(emb, Mapping) or not emb:
            raise ValueError("MEDCSPLoss batch needs 'embeddings': dict modality -> [N, d]")
        names = self.modalities or tuple(emb)
        first = emb[names[0]] if names[0] in emb else next(iter(emb.values()))
        n, dev = first.shape[0], first.device
        if batch.get("mask") is None:
            raise ValueError("MEDCSPLoss batch needs 'mask' ([N, M] bool presence)")
        mask = _present(batch["mask"], names, n, dev)
        src = _sources(batch.get("sources"), n, dev)
        need_p = "lp" in self.terms or ("ld" in self.terms and not self.ld_same_patient)
        pat = _vector(batch.get("patients"), n, "patients", dev, torch.long) if need_p else None
        tim = _vector(batch.get("times"), n, "times", dev, torch.float64) if "lp" in self.terms else None
        hist = batch.get("histories") if "ld" in self.terms else None
        if "ehr" not in self.sources:  # imaging source only: the EHR rows do not exist for this loss
            keep = src == SOURCE_CXR
            emb = {m: emb[m][keep] for m in names if m in emb}
            mask, src = mask[keep], src[keep]

        e, present, c = record_embeddings(emb, mask, names)
        if "ld" in self.terms:
            hist = _histories(hist, n, dev, c.dtype)
        R = _Records(c, src, self.distributed, present=present, patients=pat, times=tim, histories=hist,
                     reduction=self.reduction)

        la = _la(R, e, present, s, self.la_negatives)
        out = {"la": la["loss"]}
        total = la["loss"]
        if "lp" in self.terms:
            lp = _lp(R, s, self.theta, self.lp_direction, self.lp_negatives)
            out["lp"] = lp.pop("loss")
            total = total + self.lambda_p * out["lp"]
            out.update(lp)
        if "ld" in self.terms:
            ld = _ld(R, s, self.tau, self.ld_target, self.ld_same_patient, self.ld_direction)
            out["ld"] = ld.pop("loss")
            total = total + self.lambda_d * out["ld"]
            out.update(ld)
        out["loss"] = total
        out["n_records"] = torch.tensor(float(R.g.total))
        out["n_ehr"] = (R.SRC == SOURCE_EHR).sum().detach().float()
        out["n_cxr"] = (R.SRC == SOURCE_CXR).sum().detach().float()
        out["la_anchors"] = la["la_anchors"]
        return out
