"""bf16 autocast forced on the CPU for every pre-training of a profile (the second half of ``make check-paper-config``).

On a GPU the ``gpu`` / ``paper`` profiles train under bf16 autocast (``amp: auto``), which is off on the CPU, so a
CPU run of those profiles never executes the autocast paths (bf16 activations reaching the losses, the
``.float()`` casts before NumPy in validation and retrieval, ``metrics.json`` recording the dtype). This script
runs each variant of notebook 02 (``variants``) and notebook 09 (``medcsp_variants``) through
``trainer.fit`` with ``amp: bf16`` (which ``trainer.amp_dtype_of`` honours on any device: no special key is
needed) for the profile's ``max_steps`` (the Makefile sets 2): the untrained validation, the training steps, the
final validation and the checkpoints, all under CPU autocast. Then the embedding export (``export.write_embeddings``,
which autocasts on CUDA only) of the headline MEDBind and MEDCSP models is run on a few evaluation sets inside a CPU
bf16 autocast, as on a GPU. Outputs go to
``<runs_dir>/bf16/`` (never the notebooks' own checkpoints); it needs notebooks 01 and 08 of the same runs_dir.

    python benchmarks/check_bf16.py --profile gpu --set runs_dir=runs/gpu-check data_root=data/gpu-check max_steps=2 ...

Exit status 0 when every run finished with finite losses whose first step is within 5 % of the notebook's fp32 run
of the same variant (same seed, weights and batch, when that run exists), and every loss term saw enough anchors in
some step to be more than a constant (``MIN_ANCHORS``: e.g. EMCL needs 2 pairs in a batch); a failure names the
variant and raises.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from medbind_lib.config import load_profile, parse_overrides
from medbind_lib.layout import RunLayout
from medbind_lib.trainer import amp_dtype_of


def _finite_steps(out: Path) -> int:
    steps = pd.read_parquet(out / "steps.parquet")
    bad = [c for c in ("loss", "grad_norm") if not steps[c].map(math.isfinite).all()]
    if bad:
        raise AssertionError(f"{out}: non-finite {bad} in steps.parquet")
    return len(steps)


def _vs_fp32(out: Path, fp32_dir: Path) -> float | None:
    """Relative difference of the FIRST step's loss from the notebook's fp32 run of the same variant (same seed,
    weights and batch: only bf16 rounding differs; measured < 0.5 %), or None without that run."""
    ref = fp32_dir / "steps.parquet"
    if not ref.exists():
        return None
    a, b = pd.read_parquet(ref)["loss"].iloc[0], pd.read_parquet(out / "steps.parquet")["loss"].iloc[0]
    rel = abs(b - a) / max(abs(a), 1e-9)
    if rel > FP32_TOLERANCE:
        raise AssertionError(f"{out}: first-step loss {b:.4f} under bf16 vs {a:.4f} in fp32 ({ref}): "
                             f"{100 * rel:.1f} % apart (> {100 * FP32_TOLERANCE:.0f} %)")
    return rel


FP32_TOLERANCE = 0.05
# a term computed on too few anchors is a constant 0 (EMCL with m <= 1 pairs, TMCL of a modality with one sample), so a
# tiny batch can "run" a loss without its arithmetic: each term below must see this many anchors in some step
MIN_ANCHORS = {"emcl": ("m_pairs", 2), "tmcl_cxr": ("n_cxr", 2), "tmcl_ecg": ("n_ecg", 2), "lp": ("lp_anchors", 1),
               "ld": ("ld_anchors", 1)}


def _terms_exercised(out: Path) -> None:
    steps = pd.read_parquet(out / "steps.parquet")
    thin = [f"{term} ({col} <= {steps[col].max():g})" for term, (col, k) in MIN_ANCHORS.items()
            if term in steps and col in steps and steps[col].max() < k]
    if thin:
        raise AssertionError(f"{out}: no step computed {', '.join(thin)}: raise the batch size of the check")


def _check(metrics: dict, out: Path, expect_steps: int, fp32_dir: Path) -> dict:
    if metrics.get("amp") != str(torch.bfloat16):
        raise AssertionError(f"{out}: metrics.json says amp={metrics.get('amp')!r}, expected bf16")
    n = _finite_steps(out)
    if n != expect_steps or metrics["steps"] != expect_steps:
        raise AssertionError(f"{out}: {metrics['steps']} steps ({n} logged), expected {expect_steps}")
    _terms_exercised(out)
    rel = _vs_fp32(out, fp32_dir)
    return {"variant": metrics["variant"], "steps": n, "first_loss": round(metrics["first_loss"], 4),
            "last_loss": round(metrics["last_loss"], 4),
            "first_loss_vs_fp32_%": None if rel is None else round(100 * rel, 2),
            "train_s": round(metrics["train_seconds"], 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="profile overrides (sizes)")
    ap.add_argument("--skip-export", action="store_true", help="pre-training steps only")
    args = ap.parse_args(argv)
    overrides = {**parse_overrides(args.set), "amp": "bf16"}
    if overrides.get("max_steps") is None:
        raise SystemExit("set max_steps (e.g. --set max_steps=2): this check runs a few steps, not whole epochs")
    device = torch.device("cpu")
    t_all = time.time()
    rows = []

    from medbind_lib.medbind.embed import load_model
    from medbind_lib.medbind.pretrain import train
    from medbind_lib.medcsp.pretrain import train_medcsp

    for notebook, key, fn in (("02", "variants", train), ("09", "medcsp_variants", train_medcsp)):
        cfg = load_profile(args.profile, notebook=notebook, overrides=overrides)
        if amp_dtype_of(cfg, device) != torch.bfloat16:
            raise AssertionError("amp: bf16 did not give bf16 autocast on the CPU")
        root = RunLayout(cfg).root / "bf16" / notebook
        for v in cfg[key]:
            t0 = time.time()
            print(f"[bf16] {notebook} {v} ...", flush=True)
            out = root / v
            m = fn(cfg, v, out_dir=out, resume=False, device=device)
            expect = min(int(cfg.max_steps), m["total_steps"])
            fp32 = RunLayout(cfg).checkpoint_dir(notebook, v)
            rows.append({"notebook": notebook, **_check(m, out, expect, fp32), "wall_s": round(time.time() - t0, 1)})
            print(f"[bf16] {notebook} {v}: {json.dumps(rows[-1])}", flush=True)

    if not args.skip_export:
        # the export autocasts on CUDA only (export._amp): run it inside a CPU bf16 autocast, as on a GPU
        from medbind_lib.export import write_embeddings
        from medbind_lib.registry import HEADLINE

        cfg = load_profile(args.profile, notebook="02", overrides=overrides)
        bf = RunLayout(cfg).root / "bf16"
        v = HEADLINE["medbind"] if HEADLINE["medbind"] in cfg.variants else cfg.variants[-1]
        t0 = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loaded = load_model(cfg, v, bf / "02" / v / "best.pt", device)
            written = write_embeddings(cfg, v, "best", bf / "embeddings" / v, ("mimic_pair", "openi", "icbeb"),
                                       device=device, loaded=loaded)
        rows.append({"notebook": "export", "variant": v, "files": len(written), "wall_s": round(time.time() - t0, 1)})
        print(f"[bf16] export {v}: {json.dumps(rows[-1])}", flush=True)
        from medbind_lib.medcsp.embed import CXRView, load_medcsp_model

        cfg9 = load_profile(args.profile, notebook="09", overrides=overrides)
        v9 = HEADLINE["medcsp"] if HEADLINE["medcsp"] in cfg9.medcsp_variants else cfg9.medcsp_variants[0]
        t0 = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model, step, name = load_medcsp_model(cfg9, v9, str(bf / "09" / v9 / "best.pt"), device)
            written = write_embeddings(cfg9, v9, "best", bf / "embeddings" / v9, ("openi", "covid"), device=device,
                                       loaded=(CXRView(model), step, name))
        rows.append({"notebook": "export", "variant": v9, "files": len(written), "wall_s": round(time.time() - t0, 1)})
        print(f"[bf16] export {v9}: {json.dumps(rows[-1])}", flush=True)

    print(pd.DataFrame(rows).to_string(index=False))
    print(f"[bf16] every run finished under bf16 autocast in {(time.time() - t_all) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
