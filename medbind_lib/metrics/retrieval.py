"""Retrieval metrics on L2-normalised embeddings, computed in query chunks so 25k x 25k fits anywhere.

Conventions (all values in PERCENT, as the papers report them):

- **Table 2, modality -> text Recall@K** (``modality_to_text_recall``): row i pairs a CXR/ECG embedding
  with its text. Texts identical after ``normalize_for_identity`` form ONE gallery item (the first
  occurrence's text embedding); a hit at K = the query's own text item is among the top K.
- **RSUM** is the paper's: R@1 + R@10 of one dataset (``rsum_ks``), and a modality's RSUM is the sum over
  its datasets (``rsum_total``). Checked against Table 2: CXR BD = (44.7+91.0) + (2.4+20.0) + (13.6+39.7)
  = 211.4 as printed. (The classic image-text RSUM, R@1/5/10 over both directions, is not what Table 2
  reports; pass ``rsum_ks=(1, 5, 10)`` for a one-direction variant.)
- **MEDCSP text -> image precision/recall@K** (``text_to_image_precision_recall``): relevant = every image
  whose key (identical text or same study) equals the query's; P@K = relevant in the top K / K,
  R@K = relevant in the top K / number of relevant, each averaged over queries. One query per distinct key
  (``dedup_queries``); ``relevant_per_query`` = mean number of relevant images per scored query.
- **CXR -> ECG Recall@K** (``cross_modal_recall``): paired rows; the gallery is every row's ECG (collapsed
  by ``gallery_keys`` when one ECG is paired with several CXRs).

Exact ties (identical scores; e.g. a collapsed model) follow ``ties``:
``pessimistic`` (default) - every tied competitor ranks ABOVE the relevant item, so a constant embedding
scores 0, never 100; ``optimistic`` - tied competitors rank below (hit iff fewer than K items score
strictly higher); ``index`` - ties broken by gallery index (a stable sort). Without exact ties all three
agree.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .common import as_numpy, as_tensor, factorize, resolve_device, text_keys
from .bootstrap import bootstrap_mean

TIES = ("pessimistic", "optimistic", "index")
DEFAULT_CHUNK = 256   # fastest and smallest on the 2-core CPU (bench_eval); raise it on a GPU


def _check(ties: str, ks: Sequence[int]) -> tuple[int, ...]:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


@torch.no_grad()
def target_ranks(queries, gallery, target, *, ties: str = "pessimistic", chunk_size: int = DEFAULT_CHUNK,
                 device=None) -> np.ndarray:
    """0-based rank of ``gallery[target[i]]`` among all gallery items for query i (one relevant item per
    query). Peak memory ~ ``chunk_size x len(gallery)`` scores; no full similarity matrix."""
    _check(ties, (1,))
    dev = resolve_device(device)
    g = as_tensor(gallery, dev)
    t_all = torch.as_tensor(as_numpy(target), dtype=torch.long)
    n, m = len(t_all), g.shape[0]
    if n and (t_all.min() < 0 or t_all.max() >= m):
        raise ValueError("target index out of gallery range")
    out = torch.empty(n, dtype=torch.long)
    col = torch.arange(m, device=dev)
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        q = as_tensor(queries[s:e], dev)
        t = t_all[s:e].to(dev)
        sim = q @ g.T                                   # [B, M]
        st = sim.gather(1, t[:, None])                  # the relevant item's own score
        if ties == "optimistic":
            r = (sim > st).sum(1)
        elif ties == "pessimistic":
            r = (sim >= st).sum(1) - 1                  # every other tied item counts as above
        else:
            r = (sim > st).sum(1) + ((sim == st) & (col[None] < t[:, None])).sum(1)
        out[s:e] = r.cpu()
    return out.numpy()


@torch.no_grad()
def relevant_in_topk(queries, gallery, query_keys, gallery_keys, ks: Sequence[int], *,
                     ties: str = "pessimistic", chunk_size: int = DEFAULT_CHUNK, device=None):
    """Number of relevant gallery items (same key) in the top K of each query, for every K, with the
    ``ties`` rule applied at the K-th score: returns ``(hits [N, len(ks)], n_relevant [N])``.
    Uses a running ``torch.topk`` per chunk to find the K-th score, then counts."""
    ks = _check(ties, ks)
    dev = resolve_device(device)
    g = as_tensor(gallery, dev)
    qk_all = torch.as_tensor(as_numpy(query_keys), dtype=torch.long)
    gk = torch.as_tensor(as_numpy(gallery_keys), dtype=torch.long, device=dev)
    n, m = len(qk_all), g.shape[0]
    kmax = min(max(ks), m)
    hits = torch.empty(n, len(ks), dtype=torch.long)
    nrel = torch.empty(n, dtype=torch.long)
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        sim = as_tensor(queries[s:e], dev) @ g.T                         # [B, M]
        rel = qk_all[s:e].to(dev)[:, None] == gk[None, :]
        nrel[s:e] = rel.sum(1).cpu()
        top = torch.topk(sim, kmax, dim=1, sorted=True).values
        for j, k in enumerate(ks):
            kk = min(k, m)
            thr = top[:, kk - 1:kk]
            above = sim > thr
            tied = sim == thr
            n_above, rel_above = above.sum(1), (above & rel).sum(1)
            n_tied, rel_tied = tied.sum(1), (tied & rel).sum(1)
            slots = kk - n_above                                          # >= 1 places left for tied items
            if ties == "optimistic":
                h = rel_above + torch.minimum(rel_tied, slots)
            elif ties == "pessimistic":
                h = rel_above + (slots - (n_tied - rel_tied)).clamp_min(0)
            else:
                h = rel_above + (tied & rel & (tied.cumsum(1) <= slots[:, None])).sum(1)
            hits[s:e, j] = h.cpu()
    return hits.numpy(), nrel.numpy()


def _recall_dict(ranks: np.ndarray, ks, groups, n_boot, seed, alpha, prefix="R") -> dict:
    out = {}
    for k in ks:
        hit = (ranks < k).astype(np.float64) * 100.0
        out[f"{prefix}@{k}"] = float(hit.mean()) if len(hit) else float("nan")
        if n_boot:
            ci = bootstrap_mean(hit, groups, n_boot=n_boot, seed=seed, alpha=alpha)
            out[f"{prefix}@{k}_lo"], out[f"{prefix}@{k}_hi"] = ci["lo"], ci["hi"]
    return out


def recall_from_ranks(ranks, ks=(1, 5, 10), groups=None, n_boot: int = 0, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Recall@K (percent) from 0-based target ranks, with optional patient-level bootstrap CIs."""
    return _recall_dict(as_numpy(ranks), ks, groups, n_boot, seed, alpha)


def modality_to_text_recall(modality_emb, text_emb, texts: Sequence[str] | None = None, *,
                            keys: Sequence | None = None, ks=(1, 5, 10), rsum_ks=(1, 10),
                            identity: str = "lower_ws", ties: str = "pessimistic", groups=None,
                            n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                            chunk_size: int = DEFAULT_CHUNK, device=None, return_ranks: bool = False) -> dict:
    """Table 2: Recall@K of CXR/ECG -> text with duplicate texts removed from the gallery.

    Row i of ``modality_emb`` is paired with row i of ``text_emb`` and ``texts[i]`` (or pass identity
    ``keys`` directly). ``groups`` = subject ids for the patient-level CIs (``n_boot=0``: no CIs).
    """
    ks = _check(ties, tuple(sorted(set(ks) | set(rsum_ks))))
    if keys is None:
        if texts is None:
            raise ValueError("pass texts or keys")
        keys = text_keys(texts, identity)
    codes = factorize(list(keys))[0]                  # code = index of the key's first occurrence order
    if len(codes) != len(modality_emb) or len(codes) != len(text_emb):
        raise ValueError("modality_emb, text_emb and texts/keys must have the same rows")
    first = np.unique(codes, return_index=True)[1]    # gallery item c = text_emb of code c's first row
    gallery = as_tensor(text_emb, device)[torch.as_tensor(first)]
    ranks = target_ranks(modality_emb, gallery, codes, ties=ties, chunk_size=chunk_size, device=device)
    out = _recall_dict(ranks, ks, groups, n_boot, seed, alpha)
    out["rsum"] = float(sum(out[f"R@{k}"] for k in rsum_ks))
    out.update(n_queries=len(codes), n_gallery=len(first), identity=identity if texts is not None else "keys",
               ties=ties, ks=list(ks), rsum_ks=list(rsum_ks), n_boot=n_boot, seed=seed,
               groups="patients" if groups is not None else "rows")
    if return_ranks:
        out["ranks"] = ranks
    return out


def rsum_total(results: Sequence[dict]) -> float:
    """A modality's RSUM as in Table 2: the sum of the per-dataset RSUMs (R@1 + R@10 of each dataset)."""
    return float(sum(r["rsum"] for r in results))


def cross_modal_recall(query_emb, gallery_emb, *, gallery_keys: Sequence | None = None, ks=(1, 5, 10),
                       ties: str = "pessimistic", groups=None, n_boot: int = 1000, seed: int = 0,
                       alpha: float = 0.05, chunk_size: int = DEFAULT_CHUNK, device=None,
                       return_ranks: bool = False) -> dict:
    """Fig. 2 right: CXR -> ECG Recall@K on paired rows (query i's partner is gallery row i). With
    ``gallery_keys`` (e.g. ECG record ids) repeated gallery items collapse to one item."""
    ks = _check(ties, ks)
    n = len(query_emb)
    if len(gallery_emb) != n:
        raise ValueError("paired retrieval needs as many gallery rows as queries")
    if gallery_keys is None:
        gallery, target = gallery_emb, np.arange(n)
    else:
        target = factorize(list(gallery_keys))[0]
        first = np.unique(target, return_index=True)[1]
        gallery = as_tensor(gallery_emb, device)[torch.as_tensor(first)]
    ranks = target_ranks(query_emb, gallery, target, ties=ties, chunk_size=chunk_size, device=device)
    out = _recall_dict(ranks, ks, groups, n_boot, seed, alpha)
    out.update(n_queries=n, n_gallery=len(gallery), ties=ties, ks=list(ks), n_boot=n_boot, seed=seed,
               groups="patients" if groups is not None else "rows")
    if return_ranks:
        out["ranks"] = ranks
    return out


def text_to_image_precision_recall(text_emb, image_emb, query_keys: Sequence, image_keys: Sequence, *,
                                   ks=(1, 5, 10, 20, 50, 100), dedup_queries: bool = True,
                                   ties: str = "pessimistic", groups=None, n_boot: int = 1000, seed: int = 0,
                                   alpha: float = 0.05, chunk_size: int = DEFAULT_CHUNK, device=None,
                                   return_per_query: bool = False) -> dict:
    """MEDCSP retrieval: text queries vs all images; relevant = images with the query's key (identical
    text via ``text_keys`` or the study id). P@K = relevant in top K / K; R@K = relevant in top K / number
    relevant; ``relevant_per_query`` = their mean relevant count (what sets P@K against R@K: the paper's P@1 12.06
    vs R@1 8.74 implies ~1.4).
    Queries without any relevant image are skipped and counted. ``groups`` are per QUERY row
    (after dedup the first row of each key is kept). ``return_per_query``: also ``per_query`` = {"rows": the
    query rows scored, "P@K"/"R@K": per-query values}, for paired comparisons of two systems on the same
    queries."""
    ks = _check(ties, ks)
    qc, gc = factorize(list(query_keys), list(image_keys))
    keep = np.unique(qc, return_index=True)[1] if dedup_queries else np.arange(len(qc))
    keep.sort()
    q = as_tensor(text_emb, device)[torch.as_tensor(keep)]
    hits, nrel = relevant_in_topk(q, image_emb, qc[keep], gc, ks, ties=ties, chunk_size=chunk_size,
                                  device=device)
    ok = nrel > 0
    grp = None if groups is None else as_numpy(groups)[keep][ok]
    out, per_query = {}, {"rows": keep[ok]}
    for j, k in enumerate(ks):
        p = hits[ok, j] / k * 100.0
        r = hits[ok, j] / nrel[ok] * 100.0
        for name, v in ((f"P@{k}", p), (f"R@{k}", r)):
            per_query[name] = v
            out[name] = float(v.mean()) if len(v) else float("nan")
            if n_boot:
                ci = bootstrap_mean(v, grp, n_boot=n_boot, seed=seed, alpha=alpha)
                out[f"{name}_lo"], out[f"{name}_hi"] = ci["lo"], ci["hi"]
    out.update(n_queries=int(ok.sum()), n_skipped_no_relevant=int((~ok).sum()), n_gallery=len(gc),
               relevant_per_query=float(nrel[ok].mean()) if ok.any() else float("nan"),
               ties=ties, ks=list(ks), dedup_queries=dedup_queries, n_boot=n_boot, seed=seed,
               groups="patients" if groups is not None else "rows")
    if return_per_query:
        out["per_query"] = per_query
    return out


def dense_target_ranks(queries, gallery, target, ties: str = "pessimistic") -> np.ndarray:
    """Reference: the same ranks from one full ``sim = q @ g.T`` (tests and the benchmark baseline)."""
    q, g = as_tensor(queries), as_tensor(gallery)
    t = torch.as_tensor(as_numpy(target), dtype=torch.long)
    sim = q @ g.T
    st = sim.gather(1, t[:, None])
    if ties == "optimistic":
        return (sim > st).sum(1).numpy()
    if ties == "pessimistic":
        return ((sim >= st).sum(1) - 1).numpy()
    col = torch.arange(g.shape[0])
    return ((sim > st).sum(1) + ((sim == st) & (col[None] < t[:, None])).sum(1)).numpy()


def rank_summary(prefix: str, ranks: np.ndarray, n_gallery: int, ks=(1, 5, 10)) -> dict:
    """R@K (%) and the median 1-based rank of the first hit, from 0-based ranks."""
    out = {f"r{k}_{prefix}": 100.0 * float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}
    out[f"medr_{prefix}"] = float(np.median(ranks) + 1) if len(ranks) else float("nan")
    out[f"n_gallery_{prefix}"] = int(n_gallery)
    return out
