"""Preprocessing speed: ECG records/s and CXR images/s into the cache vs a naive per-record baseline.

Every figure is a ratio against a baseline measured in the same run, on the same records:
- build:  ``cache.build`` (memory-mapped, optional worker pool) vs the naive loop that preprocesses each
  record and ``np.save``s it to its own file;
- epoch:  reading every record once in random order from the cache vs preprocessing on the fly (what a
  training loop without a cache pays each epoch);
- cohort generation: patients/s of ``synth.write_cohort`` (no baseline: reported as a rate).

    python benchmarks/bench_preprocess.py [--n-patients 200] [--workers 2]
"""
from __future__ import annotations

import argparse
import functools
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from medbind_lib import cache, cohort, synth
from medbind_lib.config import load_profile
from medbind_lib.datasets import load_manifest
from medbind_lib.quality import QualityLog
from medbind_lib.runtime import device_info


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def naive_build(load_fn, rows, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in rows:
        np.save(out_dir / f"{r['record_id']}.npy", load_fn(r))


def epoch_on_the_fly(load_fn, rows, rng) -> float:
    s = 0.0
    for i in rng.permutation(len(rows)):
        s += float(load_fn(rows[i]).ravel()[0])
    return s


def epoch_cached(cached, rng, batch: int = 64) -> float:
    s, order = 0.0, rng.permutation(len(cached))
    for i in range(0, len(order), batch):
        idx = np.sort(order[i:i + batch])
        s += float(np.asarray(cached.array[idx]).ravel()[0])
    return s


def bench_modality(name, manifest, load_fn, shape, dtype, params, tmp: Path, workers: int, rng) -> dict:
    rows = manifest.to_dict("records")
    _, t_naive = timed(naive_build, load_fn, rows, tmp / f"naive-{name}")
    res = {"records": len(rows), "naive_per_s": len(rows) / t_naive}
    for w in sorted({0, workers}):
        _, t = timed(cache.build, f"bench-{name}-w{w}", manifest, load_fn, shape, dtype, params, tmp / "cache",
                     None, w, False)
        res[f"cache_w{w}_per_s"] = len(rows) / t
    cached = cache.build(f"bench-{name}-w0", manifest, load_fn, shape, dtype, params, tmp / "cache", None, 0, False)
    assert cached.reused
    _, t_fly = timed(epoch_on_the_fly, load_fn, rows, rng)
    _, t_mm = timed(epoch_cached, cached, rng)
    res.update(epoch_on_the_fly_per_s=len(rows) / t_fly, epoch_cached_per_s=len(rows) / t_mm)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-patients", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="medbind-bench-"))
    try:
        cfg = load_profile("default", overrides={"data_root": str(tmp / "data"), "n_patients": args.n_patients,
                                                 "synth_image_size": args.image_size, "progress": False,
                                                 "cache_dir": str(tmp / "cache")})
        summary, t_gen = timed(synth.write_cohort, cfg)
        q = QualityLog()
        ecg = load_manifest("mimic_ecg", cfg, q)
        cxr = load_manifest("mimic_cxr", cfg, q)
        rng = np.random.default_rng(0)
        ecg_params = {**cohort._ecg_params(cfg), "version": cohort.CACHE_VERSION}
        n = int(round(cfg.ecg_fs * cfg.ecg_seconds))
        ecg_fn = functools.partial(cohort.load_ecg_row, params=ecg_params, dataset="mimic_ecg")
        cxr_fn = functools.partial(cohort.load_cxr_row, size=cfg.cxr_cache_size, mode=cfg.cxr_resize)
        results = {
            "ECG (MIMIC-IV-ECG 500 Hz 10 s -> 12x1000)": bench_modality("ecg", ecg, ecg_fn, (12, n), np.float32,
                                                                      ecg_params, tmp, args.workers, rng),
            f"CXR (JPG {args.image_size}px -> {cfg.cxr_cache_size}px)": bench_modality(
                "cxr", cxr, cxr_fn, (cfg.cxr_cache_size,) * 2, np.uint8,
                {"size": cfg.cxr_cache_size, "mode": cfg.cxr_resize}, tmp, args.workers, rng),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    info = device_info()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {info['cpu_count']} cores, "
          f"torch threads {info.get('torch_threads')}, CUDA {info.get('cuda')}")
    print(f"cohort generation: {args.n_patients} patients in {t_gen:.1f} s = {args.n_patients / t_gen:.1f} "
          f"patients/s ({sum(summary['counts'].values()) if isinstance(summary.get('counts'), dict) else '?'} "
          "records/files written)\n")
    w = args.workers
    print(f"| data | records | naive build /s | cache build /s (1 proc) | cache build /s ({w} workers) | "
          "build ratio | epoch on the fly /s | epoch from cache /s | epoch ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        best = r.get(f"cache_w{w}_per_s", r["cache_w0_per_s"])
        print(f"| {name} | {r['records']} | {r['naive_per_s']:.0f} | {r['cache_w0_per_s']:.0f} | {best:.0f} | "
              f"{best / r['naive_per_s']:.2f}x | {r['epoch_on_the_fly_per_s']:.0f} | {r['epoch_cached_per_s']:.0f} | "
              f"{r['epoch_cached_per_s'] / r['epoch_on_the_fly_per_s']:.0f}x |")


if __name__ == "__main__":
    main()
