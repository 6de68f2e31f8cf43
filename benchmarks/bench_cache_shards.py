"""Sharded cache build: one process building the whole CXR cache vs N processes each building one shard at once
(``medbind_lib.cache_shards``), plus the join; the in-process worker pool (``n_workers``) as a second reference.

Records: full-resolution synthetic JPGs (2544 x 3056, q95, smooth content + noise, as ``bench_scale.py``) ->
256 x 256 uint8, the ``paper`` profile's CXR cache (the suite's long preprocessing step). Every figure is a
ratio against the one-process build measured in the same run, on the same records; each round runs the three
builds (and each shard alone, what one of N machines spends) one after another, order rotated per round; the
least time of each over the rounds is reported. Times are taken inside the build processes, from the call to
the renamed directory (forked from this process, which imported everything first: no interpreter start-up or
import is timed); the sharded wall time runs from the first shard's start to the last shard's end. The joined
cache is checked to equal the one-process cache byte for byte.

    python benchmarks/bench_cache_shards.py [--records 200] [--shards 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet  # noqa: F401  (imported before the forks, as pandas' first to_parquet would)
from PIL import Image

from medbind_lib import cache, cohort, runtime  # noqa: F401  (runtime: imported once here, before the forks)
from medbind_lib.cache_shards import build_shard, join_shards

SIZE = 256


def write_images(d: Path, n_files: int = 6) -> list[str]:
    rng, paths = np.random.default_rng(0), [str(d / f"cxr{i}.jpg") for i in range(n_files)]
    for p in paths:                                                  # smooth content + noise, 2544 x 3056, q95
        small = Image.fromarray(rng.integers(0, 255, (40, 32), dtype=np.uint8)).resize((2544, 3056), Image.BICUBIC)
        arr = np.asarray(small, float) + rng.normal(0, 1.5, (3056, 2544))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p, quality=95)
    return paths


def recipe(manifest):
    params = {"size": SIZE, "mode": "squash", "version": cohort.CACHE_VERSION}
    fn = functools.partial(cohort.load_cxr_row, size=SIZE, mode="squash")
    return ("cxr-bench", manifest, fn, (SIZE, SIZE), np.uint8, params)


def _child(what: str, manifest, cache_dir: str, out: str, shard=None, workers: int = 0) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    t0, c0 = time.time(), time.process_time()
    if what == "shard":
        build_shard(*recipe(manifest), cache_dir, shard, progress=False)
    else:
        cache.build(*recipe(manifest), cache_dir, n_workers=workers, progress=False)
    Path(out).write_text(json.dumps([t0, time.time(), time.process_time() - c0]))


def run_procs(jobs: list[tuple], tmp: Path) -> tuple[float, float]:
    """Start every job's process at once: wall seconds from the first start to the last end (inside the workers),
    and the CPU seconds of the job processes (a pool's worker processes not counted)."""
    ctx = mp.get_context("fork")
    outs = [str(tmp / f"t{i}.json") for i in range(len(jobs))]
    procs = [ctx.Process(target=_child, args=(*job[:3], out, *job[3:])) for job, out in zip(jobs, outs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"a build process failed ({p.exitcode})"
    spans = [json.loads(Path(o).read_text()) for o in outs]
    return max(e for _, e, _ in spans) - min(s for s, _, _ in spans), sum(c for _, _, c in spans)


def one_round(manifest, tmp: Path, n: int, order: list[str]) -> dict:
    res = {}
    for what in order:
        d = tmp / what
        shutil.rmtree(d, ignore_errors=True)
        if what == "one":
            res["one"], res["one_cpu"] = run_procs([("one", manifest, str(d))], tmp)
        elif what == "pool":
            res["pool"], _ = run_procs([("pool", manifest, str(d), None, n)], tmp)
        elif what == "alone":                   # each shard by itself: what one machine of N spends on its shard
            res["alone"] = max(run_procs([("shard", manifest, str(d), (k, n))], tmp)[0] for k in range(n))
        else:
            res["shards"], res["shards_cpu"] = run_procs([("shard", manifest, str(d), (k, n)) for k in range(n)], tmp)
            t0 = time.perf_counter()
            join_shards(*recipe(manifest), d, n, progress=False)
            res["join"] = time.perf_counter() - t0
    one = next((tmp / "one").glob("cxr-bench-*"))
    joined = tmp / "shards" / one.name
    for f in ("data.npy", "manifest.parquet", "excluded.parquet"):
        assert (one / f).read_bytes() == (joined / f).read_bytes(), f"joined {f} differs from the one-process build"
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="medbind-bench-shards-"))
    try:
        paths = write_images(tmp)
        mb = np.mean([os.path.getsize(p) for p in paths]) / 1e6
        manifest = pd.DataFrame({"record_id": [f"img{i}" for i in range(args.records)],
                                 "path": [paths[i % len(paths)] for i in range(args.records)]})
        kinds = ["one", "shards", "pool", "alone"]
        rounds = [one_round(manifest, tmp, args.shards, kinds[r % 4:] + kinds[:r % 4]) for r in range(args.rounds)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: min(r[k] for r in rounds) for k in rounds[0]}
    n, rec = args.shards, args.records
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end; "
          f"{rec} records of {len(paths)} JPGs 2544 x 3056 ({mb:.1f} MB) -> {SIZE} x {SIZE} uint8; "
          f"{args.rounds} rounds: " + "; ".join(", ".join(f"{k} {v:.2f} s" for k, v in r.items()) for r in rounds))
    extra = best["shards_cpu"] / best["one_cpu"] - 1
    print(f"CPU seconds (least of the rounds): one process {best['one_cpu']:.2f}, {n} concurrent shards together "
          f"{best['shards_cpu']:.2f} ({extra:+.1%}); join {best['join']:.2f} s wall")
    print(f"| build | seconds (least of {args.rounds}) | records/s | ratio vs one process |")
    print("|---|---|---|---|")
    rows = [("one process, whole cache (baseline)", best["one"]),
            (f"{n} processes at once, one shard each", best["shards"]),
            ("join of the shards", best["join"]),
            (f"{n} shards + join", best["shards"] + best["join"]),
            (f"one process, `n_workers={n}` pool", best["pool"]),
            (f"the slowest shard alone + join ({n} machines, projected)", best["alone"] + best["join"])]
    for name, t in rows:
        rate, ratio = ("", "") if name.startswith("join") else (f"{rec / t:.1f}", f"{best['one'] / t:.2f}x")
        print(f"| {name} | {t:.2f} | {rate} | {ratio} |")


if __name__ == "__main__":
    main()
