"""Why the runner's ``notebook_lanes`` and the fused AdamW pay on a small CPU: ratios in one run.

1. Training throughput of the real loop (``medbind_lib.medbind.pretrain``, MEDBind_BD on the profile's notebook-01 data,
   ``--steps`` optimizer steps, median step time after ``--skip`` warm-up steps), three ways:
   ``one process x all cores`` (what a single notebook gets), ``one process x 1 thread``, and
   ``N processes x 1 thread at once`` (what ``notebook_lanes = N`` does); the throughput of the last is the sum.
2. AdamW step on the MEDBind_BD model's trainable tensors: for-loop vs foreach vs fused (ms per step).

Needs the profile's notebook-01 outputs (``make reproduce`` or ``python -m medbind_lib.run --only 00,01``).

    python benchmarks/bench_lanes.py --profile default --steps 30
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from medbind_lib.runtime import device_info


def worker(profile: str, steps: int, out: str) -> None:
    """One short training run; writes the per-step log to ``out``."""
    from medbind_lib.config import load_profile
    from medbind_lib.medbind.pretrain import train

    cfg = load_profile(profile, notebook="02", overrides={"max_steps": steps, "progress": False})
    train(cfg, "medbind_bd", out_dir=out, resume=False, log=lambda *_: None)


def _runs(profile: str, steps: int, procs: int, threads: int) -> list[Path]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    dirs = [Path(tempfile.mkdtemp(prefix="bench_lanes_")) for _ in range(procs)]
    ps = [subprocess.Popen([sys.executable, __file__, "--worker", str(d), "--profile", profile, "--steps", str(steps)],
                           env=env) for d in dirs]
    if any(p.wait() for p in ps):
        raise SystemExit("a training worker failed")
    return dirs


def _throughput(dirs: list[Path], skip: int) -> dict:
    import pandas as pd

    per = []
    for d in dirs:
        s = pd.read_parquet(d / "steps.parquet").iloc[skip:]
        per.append(float((s["samples_per_s"]).median()))
    return {"processes": len(dirs), "samples_per_s_each": [round(x, 1) for x in per],
            "samples_per_s": round(sum(per), 1)}


def optimizer_ms(profile: str, iters: int = 20) -> dict:
    from medbind_lib.config import load_profile
    from medbind_lib.medbind.pretrain import model_for_variant

    cfg = load_profile(profile, notebook="02")
    params = [p for p in model_for_variant(cfg, "medbind_bd").parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    out = {"n_params": sum(p.numel() for p in params), "threads": torch.get_num_threads()}
    for name, kw in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        for _ in range(3):
            opt.step()
        t0 = time.perf_counter()
        for _ in range(iters):
            opt.step()
        out[f"{name}_ms"] = round(1000 * (time.perf_counter() - t0) / iters, 1)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the median")
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.profile, args.steps, args.worker)
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    res = {"device": device_info(), "cores": cores, "profile": args.profile, "steps": args.steps}
    res["one_process_all_cores"] = _throughput(_runs(args.profile, args.steps, 1, cores), args.skip)
    res["one_process_1_thread"] = _throughput(_runs(args.profile, args.steps, 1, 1), args.skip)
    res["lanes_1_thread_each"] = _throughput(_runs(args.profile, args.steps, args.lanes, max(1, cores // args.lanes)),
                                             args.skip)
    base = res["one_process_all_cores"]["samples_per_s"]
    res["lanes_over_one_process"] = round(res["lanes_1_thread_each"]["samples_per_s"] / base, 2)
    res["all_cores_over_1_thread"] = round(base / res["one_process_1_thread"]["samples_per_s"], 2)
    res["adamw"] = optimizer_ms(args.profile)
    print(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
