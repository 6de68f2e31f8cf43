"""Evaluation speed: the vectorised few-shot probe vs the scikit-learn loop, chunked retrieval vs dense.

(a) Few-shot: the SAME 300 balanced support sets per (C, K) are fit by ``fewshot.probe_predictions``
    (all sets at once; default solver "ncg", and the previous joint L-BFGS, solver="lbfgs") and by
    ``fewshot.sklearn_probe_predictions`` (one LogisticRegression each, the reference); time ratio (best of
    ``--repeats``, the three methods interleaved) and the difference in mean balanced accuracy.
(b) Retrieval: Table-2 ranks at N x N (random unit vectors, d=256, duplicate texts: gallery = distinct
    keys) with ``retrieval.target_ranks`` in query chunks vs a dense ``sim = q @ g.T``; each method runs
    in its own subprocess; peak RSS above the loaded data (VmHWM after a clear_refs reset) is its own. Also the
    MEDCSP top-K path (``relevant_in_topk``, K in 1..100).

    python benchmarks/bench_eval.py [--threads 1] [--repeats 2] [--n-retrieval 25000] [--skip-dense]
                                    [--skip-fewshot] [--skip-retrieval]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _set_threads(n: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


def blobs(n_classes, d=256, n_train=5000, n_test=2000, scale=0.02, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n_classes, d))

    def draw(n):
        y = rng.integers(0, n_classes, n)
        x = mu[y] * scale + rng.normal(size=(n, d)) * 3 / np.sqrt(d)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

    return draw(n_train), draw(n_test)


def bench_fewshot(args) -> list[dict]:
    from medbind_lib.metrics import (balanced_accuracy_batched, probe_predictions, sample_support_sets,
                                      sklearn_probe_predictions)
    from medbind_lib.metrics import fewshot

    rows = []
    (xw, yw), _ = blobs(2, n_train=200, n_test=10)
    for solver in ("ncg", "lbfgs"):                                           # warm-up (LAPACK / MKL init)
        probe_predictions(xw, yw, xw, sample_support_sets(yw, 2, 4), 2, solver=solver)
    for c in (2, 5):
        (xtr, ytr), (xte, yte) = blobs(c, seed=c)
        for k in (1, 4, 16):
            sup = sample_support_sets(ytr, k, args.n_sets, seed=0, n_classes=c)
            t_vec, t_old, t_sk = [], [], []
            for _ in range(args.repeats):               # interleaved, so load changes hit all three alike
                t0 = time.perf_counter()
                pv = probe_predictions(xtr, ytr, xte, sup, c)                  # default solver: "ncg"
                t_vec.append(time.perf_counter() - t0)
                state = dict(fewshot._LAST_STATE)
                t0 = time.perf_counter()
                po = probe_predictions(xtr, ytr, xte, sup, c, solver="lbfgs")  # the previous joint L-BFGS
                t_old.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ps = sklearn_probe_predictions(xtr, ytr, xte, sup)
                t_sk.append(time.perf_counter() - t0)
            av, ao, as_ = (100 * balanced_accuracy_batched(yte, p, c) for p in (pv, po, ps))
            rows.append(dict(C=c, K=k, sets=args.n_sets, vec_s=min(t_vec), old_s=min(t_old), sk_s=min(t_sk),
                             ratio=min(t_sk) / min(t_vec), old_ratio=min(t_sk) / min(t_old), acc_vec=av.mean(),
                             acc_sk=as_.mean(), diff=av.mean() - as_.mean(), old_diff=ao.mean() - as_.mean(),
                             max_set_diff=float(np.abs(av - as_).max()), agree=float((pv == ps).mean()),
                             iters=state.get("n_iter")))
            print(f"  fewshot C={c} K={k}: {rows[-1]['ratio']:.1f}x (previous solver {rows[-1]['old_ratio']:.1f}x)",
                  file=sys.stderr, flush=True)
    return rows


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux clear_refs 5) so the peak measured next is this method's
    own; returns the current RSS in KiB (falls back to ru_maxrss where clear_refs is unavailable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _retrieval_child(method: str, n: int, chunk: int, threads: int) -> dict:
    """Runs in a fresh process: data, then one method; peak RSS above the data."""
    _set_threads(threads)
    import torch

    from medbind_lib.metrics import dense_target_ranks, relevant_in_topk, target_ranks
    rng = np.random.default_rng(0)
    d = 256
    keys = rng.integers(0, int(n * 0.8), n)                 # ~ 55% distinct texts at n: duplicates
    codes = np.unique(keys, return_inverse=True)[1]
    g = rng.normal(size=(codes.max() + 1, d)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = g[codes] + rng.normal(size=(n, d)).astype(np.float32) * 0.3    # noisy: R@1 well below 100
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    torch.zeros(1) @ torch.zeros(1)                          # init before the baseline RSS
    base = _reset_peak_rss()
    t0 = time.perf_counter()
    if method == "dense":
        r = dense_target_ranks(q, g, codes)
    elif method == "chunked":
        r = target_ranks(q, g, codes, chunk_size=chunk)
    else:                                                   # MEDCSP top-K path, K up to 100
        r = relevant_in_topk(q, g, codes, np.arange(len(g)), (1, 5, 10, 20, 50, 100), chunk_size=chunk)[0][:, 0]
    secs = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    r1 = np.asarray(r) >= 1 if method == "topk" else np.asarray(r) < 1   # topk path returns hits in the top 1
    return {"method": method, "n_queries": n, "n_gallery": len(g), "chunk": chunk, "seconds": secs,
            "peak_extra_mib": max(peak - base, 0) / 1024, "r1": float(np.mean(r1) * 100),
            "checksum": int(np.asarray(r, dtype=np.int64).sum()) if method != "topk" else None}


def bench_retrieval(args) -> list[dict]:
    runs = [("chunked", c) for c in (256, 1024, 4096)] + [("topk", 1024)]
    if not args.skip_dense:
        runs.insert(0, ("dense", 0))
    out = []
    for method, chunk in runs:
        p = subprocess.run([sys.executable, __file__, "--child", method, "--n-retrieval", str(args.n_retrieval),
                            "--chunk", str(chunk), "--threads", str(args.threads)], capture_output=True, text=True)
        if p.returncode != 0:
            out.append({"method": method, "chunk": chunk, "error": p.stderr.strip().splitlines()[-1:]})
        else:
            out.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(f"  retrieval {method} chunk={chunk}: {out[-1].get('seconds', 'failed')}", file=sys.stderr, flush=True)
    return out


def bench_bootstrap(args) -> list[dict]:
    """Patient-bootstrap CIs of AUROC and of precision/recall/F1 (notebooks 05, 06, 10, 11): the vectorised
    replicates of ``metrics.binary`` vs the loop over resampled rows (``bootstrap.with_ci`` with scikit-learn),
    same replicates, same seed, best of ``repeats``."""
    from sklearn.metrics import f1_score, roc_auc_score

    from medbind_lib.metrics.binary import auroc_replicates, binary_counts_replicates
    from medbind_lib.metrics.bootstrap import with_ci
    from medbind_lib.reports.radiology import prf_from_counts

    rng = np.random.default_rng(0)
    rows = []
    for n, n_groups in ((343, 130), (2000, 700)):
        y = rng.random(n) < 0.1
        score = np.round(rng.normal(size=n) + y, 2)
        pred = score > 0.8
        g = rng.integers(0, n_groups, n)
        auc = lambda a, b: roc_auc_score(a, b) if 0 < a.sum() < len(a) else np.nan  # noqa: E731
        f1 = lambda a, b: f1_score(a, b, zero_division=np.nan) if a.sum() + b.sum() else np.nan  # noqa: E731
        for name, vec, loop in (
                ("AUROC", lambda: auroc_replicates(y, score, g, args.n_boot, 0),
                 lambda: with_ci(auc, y, score, groups=g, n_boot=args.n_boot, seed=0)["lo"]),
                ("F1", lambda: prf_from_counts(binary_counts_replicates(y, pred, g, args.n_boot, 0))[:, 2],
                 lambda: with_ci(f1, y, pred, groups=g, n_boot=args.n_boot, seed=0)["lo"])):
            tv = min(_timed(vec) for _ in range(args.repeats))
            tl = min(_timed(loop) for _ in range(args.repeats))
            ref = with_ci(auc if name == "AUROC" else f1, y, score if name == "AUROC" else pred, groups=g,
                          n_boot=args.n_boot, seed=0)
            reps = vec() * (1 if name == "AUROC" else 0.01)
            lo, hi = np.nanpercentile(reps, [2.5, 97.5])
            rows.append({"metric": name, "n": n, "groups": n_groups, "vec_s": tv, "loop_s": tl,
                         "same_ci": bool(np.isclose(lo, ref["lo"]) and np.isclose(hi, ref["hi"]))})
    return rows


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--n-sets", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--n-retrieval", type=int, default=25000)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-fewshot", action="store_true")
    ap.add_argument("--skip-retrieval", action="store_true")
    ap.add_argument("--skip-bootstrap", action="store_true")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_retrieval_child(args.child, args.n_retrieval, args.chunk, args.threads)))
        return
    _set_threads(args.threads)
    from medbind_lib.runtime import device_info

    info = device_info()
    print(f"**Machine:** {info} ; torch/BLAS threads = {args.threads}; load average at start = "
          f"{os.getloadavg()[0]:.2f}\n")
    if not args.skip_fewshot:
        rows = bench_fewshot(args)
        print(f"### Few-shot probe: vectorised (torch) vs scikit-learn loop, same support sets (best of "
              f"{args.repeats})\n")
        print("| C | K | support sets | vectorised ncg /s | ncg iterations | sklearn loop /s | speed-up | "
              "previous joint L-BFGS /s (speed-up) | bal. acc. ncg | bal. acc. sklearn | diff (points) | "
              "largest per-set diff | prediction agreement | diff previous solver |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['C']} | {r['K']} | {r['sets']} | {r['vec_s']:.4f} | {r['iters']} | {r['sk_s']:.3f} | "
                  f"{r['ratio']:.1f}x | {r['old_s']:.4f} ({r['old_ratio']:.1f}x) | {r['acc_vec']:.2f} | "
                  f"{r['acc_sk']:.2f} | {r['diff']:+.3f} | {r['max_set_diff']:.2f} | {100 * r['agree']:.2f}% | "
                  f"{r['old_diff']:+.3f} |")
        print()
    if not args.skip_bootstrap:
        print(f"### Patient-bootstrap CIs ({args.n_boot} replicates): vectorised vs loop over resampled rows "
              f"(best of {args.repeats})\n")
        print("| metric | rows | patients | vectorised /s | loop (with_ci + scikit-learn) /s | speed-up | same CI |")
        print("|---|---|---|---|---|---|---|")
        for r in bench_bootstrap(args):
            print(f"| {r['metric']} | {r['n']} | {r['groups']} | {r['vec_s']:.4f} | {r['loop_s']:.3f} | "
                  f"{r['loop_s'] / r['vec_s']:.0f}x | {r['same_ci']} |")
        print()
    if args.skip_retrieval:
        return
    rows = bench_retrieval(args)
    print(f"### Retrieval ranks, {args.n_retrieval} queries (d=256, duplicate texts deduplicated)\n")
    print("| method | chunk | gallery | time /s | peak extra RSS /MiB | R@1 | ranks checksum |")
    print("|---|---|---|---|---|---|---|")
    dense = next((r for r in rows if r.get("method") == "dense" and "seconds" in r), None)
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['chunk'] or '-'} | - | failed: {r['error']} | | | |")
            continue
        rel = f" ({r['seconds'] / dense['seconds']:.2f}x dense)" if dense and r is not dense else ""
        mem = f" ({r['peak_extra_mib'] / dense['peak_extra_mib']:.3f}x dense)" \
            if dense and r is not dense and dense["peak_extra_mib"] > 0 else ""
        print(f"| {r['method']} | {r['chunk'] or '-'} | {r['n_gallery']} | {r['seconds']:.2f}{rel} | "
              f"{r['peak_extra_mib']:.0f}{mem} | {r['r1']:.2f} | {r['checksum']} |")


if __name__ == "__main__":
    main()
