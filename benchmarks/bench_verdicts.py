"""Verdict stability: how many paired verdicts ("a beats b beyond the CI", "below", "within the noise") flip
between two runs of the same profile that differ only at the float level (e.g. ``--set notebook_lanes=1``: two
threads per notebook instead of one, so other reduction orders and kernels).

Reads every paired table both runs wrote (a CSV under ``runs/<...>/tables/`` with ``a_minus_b``, ``lo`` and
``hi``), matches rows by their identifying columns, and counts the rows whose verdict differs. Rows without a CI
(rank correlations) are not verdicts and are skipped. Tables computed over several pre-training seeds carry
``n_pretrain_seeds``; the count is split by it, so the effect of the seeds on stability is visible.

    python benchmarks/bench_verdicts.py runs/default runs/default_lanes1 [--out benchmarks/verdicts.csv]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ("item", "metric", "system_a", "system_b", "a", "b", "set", "task", "term", "measure")


def verdicts(tables: Path) -> pd.DataFrame:
    """One row per paired verdict of a run: table, key, diff, CI, verdict (+1 above 0, -1 below, 0 holds 0)."""
    out = []
    for f in sorted(Path(tables).glob("*.csv")):
        d = pd.read_csv(f)
        if not {"a_minus_b", "lo", "hi"} <= set(d.columns):
            continue
        keys = [c for c in KEYS if c in d.columns]
        d = d[np.isfinite(d["lo"]) & np.isfinite(d["hi"])]
        for _, r in d.iterrows():
            out.append({"table": f.stem, "key": " | ".join(str(r[c]) for c in keys), "diff": r["a_minus_b"],
                        "lo": r["lo"], "hi": r["hi"], "seeds": int(r.get("n_pretrain_seeds", 1) or 1),
                        "verdict": 1 if r["lo"] > 0 else -1 if r["hi"] < 0 else 0})
    return pd.DataFrame(out)


def compare(run_a: Path, run_b: Path) -> pd.DataFrame:
    va, vb = verdicts(Path(run_a) / "tables"), verdicts(Path(run_b) / "tables")
    m = va.merge(vb, on=["table", "key"], suffixes=("_a", "_b"))
    m["flipped"] = m["verdict_a"] != m["verdict_b"]
    return m


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    m = compare(Path(a.run_a), Path(a.run_b))
    if a.out:
        m.to_csv(a.out, index=False)
    print(f"{len(m)} paired verdicts in both runs; flipped: {int(m['flipped'].sum())} "
          f"({100 * m['flipped'].mean():.1f} %)")
    by = m.groupby(m["seeds_a"].rename("pre-training seeds"))["flipped"].agg(["size", "sum"])
    print(by.rename(columns={"size": "verdicts", "sum": "flipped"}).to_string())
    print(m.groupby("table")["flipped"].agg(["size", "sum"]).rename(columns={"size": "verdicts", "sum": "flipped"})
          .to_string())
    flips = m[m["flipped"]]
    if len(flips):
        print("\nflipped:\n" + flips[["table", "key", "diff_a", "lo_a", "hi_a", "diff_b", "lo_b", "hi_b"]]
              .round(1).to_string(index=False))


if __name__ == "__main__":
    main()
