"""Speed of MEDCSP's EHR feature extraction: the temporal tensor and the chunked event reader.

Why: the ``paper`` profile reads MIMIC-IV's chartevents (~330M rows, ~30 GB uncompressed) and labevents
(~120M rows) and bins the first 48 h of ~70k ICU stays; a per-stay Python loop or an unchunked read does not
finish there. Two measurements on the ``default`` synthetic cohort (``python -m medbind_lib.synth --profile
default`` first), each against a baseline in the same run:

1. Temporal tensor, stays/s: the library (``ehr.temporal``: one merge, one groupby, one scatter) against a
   straightforward per-stay pandas loop (filter the stay's events, bin, average per item, fill the array),
   asserted equal on the same stays. The events are replicated ``--replicate`` times with fresh stay ids so the
   timing is not dominated by fixed costs.
2. Chunked reader, rows/s: ``datasets.mimic_icu.read_events('chartevents', itemids=..., stay_ids=...)`` against
   ``pandas.read_csv`` of the whole file, on a chartevents written ``--replicate`` times larger; extrapolated to
   the real table's row count (hours).

    nice -n 10 python benchmarks/bench_medcsp_features.py [--replicate 50]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medbind_lib.config import load_profile
from medbind_lib.datasets.mimic_icu import read_events, read_icustays
from medbind_lib.ehr import temporal as T
from medbind_lib.ehr.items import LABS, VITALS

REAL_CHARTEVENTS_ROWS = 313_645_063      # MIMIC-IV 2.2 icu/chartevents
REAL_STAYS = 73_181                      # MIMIC-IV 2.2 icu/icustays


def _replicate(events: pd.DataFrame, stays: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """k copies with disjoint stay ids (same times and values): more stays, same per-stay work."""
    off = int(stays["stay_id"].max()) + 1
    ev = pd.concat([events.assign(stay_id=events["stay_id"] + i * off) for i in range(k)], ignore_index=True)
    st = pd.concat([stays.assign(stay_id=stays["stay_id"] + i * off) for i in range(k)], ignore_index=True)
    return ev, st


def per_stay_loop(events, stays, items, stats, spec) -> np.ndarray:
    """Baseline: one stay at a time, plain pandas."""
    out = np.zeros((len(stays), spec.n_bins, len(items)), np.float32)
    col = {it: j for j, it in enumerate(items)}
    by = dict(tuple(events.groupby("stay_id")))
    for i, (sid, t0) in enumerate(zip(stays["stay_id"], stays["intime"])):
        e = by.get(sid)
        if e is None:
            continue
        h = (e["time"] - t0).dt.total_seconds() / 3600
        e = e[(h >= 0) & (h < spec.hours) & e["itemid"].isin(col)].assign(bin=(h // spec.bin_hours).astype(int))
        for (b, it), v in e.groupby(["bin", "itemid"])["value"].mean().items():
            j = col[it]
            out[i, b, j] = (v - stats["mean"][j]) / stats["sd"][j]
    return out


def bench_tensor(cfg, k: int) -> dict:
    root = cfg.mimic_iv_root
    stays = read_icustays(root)
    events = T.stay_events(root, stays, ("chartevents", "labevents", "outputevents"))
    ev, st = _replicate(events, stays, k)
    spec = T.TemporalSpec()
    t = time.perf_counter()
    b = T.bin_events(ev, st, spec)
    items = T.select_items(b, st["stay_id"], spec)
    stats = T.fit_stats(b, st["stay_id"], items)
    values, _ = T.temporal_tensor(b, st["stay_id"].tolist(), stats, spec)
    lib = time.perf_counter() - t
    n_loop = min(len(st), 400)
    t = time.perf_counter()
    ref = per_stay_loop(ev[ev["stay_id"].isin(st["stay_id"].iloc[:n_loop])], st.iloc[:n_loop], items, stats, spec)
    loop = (time.perf_counter() - t) * len(st) / n_loop
    np.testing.assert_allclose(values[:n_loop], ref, rtol=1e-5, atol=1e-5)
    return {"stays": len(st), "events": len(ev), "items": len(items), "library_s": lib, "loop_s_extrapolated": loop,
            "stays_per_s": len(st) / lib, "speedup": loop / lib,
            "real_stays_s": REAL_STAYS / (len(st) / lib)}


def bench_reader(cfg, k: int) -> dict:
    root = Path(cfg.mimic_iv_root)
    src = pd.read_csv(root / "icu" / "chartevents.csv.gz")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "icu"
        big.mkdir()
        pd.concat([src] * k, ignore_index=True).to_csv(big / "chartevents.csv.gz", index=False)
        shutil.copy(root / "icu" / "d_items.csv.gz", big / "d_items.csv.gz")
        stays = read_icustays(root)["stay_id"].iloc[::2]
        t = time.perf_counter()
        got = read_events(tmp, "chartevents", itemids=list(VITALS), stay_ids=stays, progress=False)
        lib = time.perf_counter() - t
        t = time.perf_counter()
        full = pd.read_csv(big / "chartevents.csv.gz")
        base = time.perf_counter() - t
        ref = full[full["itemid"].isin(list(VITALS)) & full["stay_id"].isin(set(stays))]
        assert len(got) == len(ref)
        rows = len(full)
    return {"rows": rows, "library_s": lib, "read_csv_all_columns_s": base, "rows_per_s": rows / lib,
            "ratio_vs_read_csv": base / lib, "real_chartevents_hours": REAL_CHARTEVENTS_ROWS / (rows / lib) / 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--replicate", type=int, default=50)
    args = ap.parse_args()
    cfg = load_profile(args.profile, overrides={"progress": False})
    out = {"profile": args.profile, "replicate": args.replicate, "labs": len(LABS),
           "tensor": bench_tensor(cfg, args.replicate), "reader": bench_reader(cfg, max(1, args.replicate // 5))}
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
