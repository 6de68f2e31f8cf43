"""Training throughput: a plain fp32 eager step vs the optimised step, in the same run, same model and batch.

- baseline  fp32, eager attention in the text encoder, ``torch.optim.AdamW(foreach=False)``, NCHW;
- optimised what ``medbind_lib.medbind.pretrain`` does: SDPA attention, bf16 autocast (CUDA; ``--cpu-bf16`` to try it
            on a CPU), fused AdamW (CUDA and CPU), channels_last (CUDA), optional
            ``--compile``.
Reports samples/s, the ratio, peak memory, model FLOPs per sample (forward + backward, FlopCounterMode)
and the achieved TFLOP/s (MFU when ``--peak-tflops`` is given, e.g. 989 for H100 SXM bf16 dense). The
data loader is measured separately by ``--data-wait``: a short real ``train()`` run on the profile, whose
per-step log holds the time spent waiting for batches.

    python benchmarks/bench_train.py --config smoke            # CPU: the smoke configuration
    python benchmarks/bench_train.py --config paper --batch 128 --peak-tflops 989 [--compile]   # GPU
    python benchmarks/bench_train.py --method medcsp --config smoke [--data-wait]              # MEDCSP
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch

from medbind_lib.config import load_profile
from medbind_lib.losses import MEDBindLoss
from medbind_lib.models import build_model, flops_per_sample
from medbind_lib.runtime import device_info, seed_everything

WORDS = ("no acute cardiopulmonary process heart size normal mild cardiomegaly small left pleural effusion "
         "pulmonary edema sinus rhythm left ventricular hypertrophy").split()


def bert_base_folder(tmp: Path) -> str:
    """A BERT-base-size text encoder (768 x 12 layers, random init) saved locally with the packaged
    MiniLM tokenizer: the paper's BioBERT size, without any download."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medbind_lib.models.text import packaged_minilm_path

    BertModel(BertConfig()).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(packaged_minilm_path(), local_files_only=True).save_pretrained(tmp)
    return str(tmp)


def make_batch(model, n: int, cfg, device, words: int = 100) -> dict:
    g = torch.Generator().manual_seed(0)
    texts = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (words,), generator=g).tolist()) for _ in range(n)]
    tok = model.tokenize(texts)
    samples = int(model.model_config.get("ecg_samples") or cfg.ecg_fs * cfg.ecg_seconds)
    return {"cxr": torch.randn(n, 3, cfg.cxr_size, cfg.cxr_size, generator=g).to(device),
            "ecg": torch.randn(n, 12, samples, generator=g).to(device),
            "tok": {k: v.to(device) for k, v in tok.items()},
            "keys": torch.randint(0, max(2, n // 3), (n,), generator=g).to(device),
            "pairs": torch.stack([torch.arange(n // 2)] * 2, 1).to(device),
            "n": n, "device": torch.device(device), "terms": medbind_terms}


MEDCSP_DIMS = {"icd": 2000, "drug": 1000, "demo": 40, "temporal": 2 * 100}   # MIMIC-scale vocabularies, 100 items


def make_medcsp_batch(model, n: int, cfg, device, words: int = 100) -> dict:
    """n records, half EHR (ICD, drugs, demographics, 48 h x 100 items of up to 3 stays, a note), half CXR
    (image, report), same-patient pairs within theta: every encoder and every loss term works."""
    from medbind_lib.models.medcsp import MEDCSP_MODALITIES

    g = torch.Generator().manual_seed(0)
    ne, nc = n // 2, n - n // 2
    texts = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (words,), generator=g).tolist()) for _ in range(n)]
    mask = torch.zeros(n, len(MEDCSP_MODALITIES), dtype=torch.bool)
    mask[:ne, :5], mask[ne:, 5:] = True, True
    hot = lambda d: (torch.rand(ne, d, generator=g) < 0.02).float()        # noqa: E731
    stays = torch.zeros(ne, 3, dtype=torch.bool)
    stays[:, 0] = True
    stays[: ne // 3, 1] = True
    b = {"mask": mask, "icd": hot(MEDCSP_DIMS["icd"]), "drug": hot(MEDCSP_DIMS["drug"]),
         "demo": hot(MEDCSP_DIMS["demo"]), "temporal": torch.randn(ne, 3, 48, MEDCSP_DIMS["temporal"], generator=g),
         "temporal_stays": stays, "image": torch.randn(nc, 3, cfg.cxr_size, cfg.cxr_size, generator=g),
         "text_tokens": model.tokenize(texts), "note_index": torch.arange(ne), "report_index": torch.arange(ne, n),
         "sources": torch.cat([torch.zeros(ne), torch.ones(nc)]).long(),
         "patients": torch.cat([torch.arange(ne), torch.arange(nc) % max(ne, 1)]),
         "times": torch.rand(n, generator=g, dtype=torch.float64) * 20,
         "histories": (torch.rand(n, 500, generator=g) < 0.05).float()}
    out = {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
           for k, v in b.items()}
    return {**out, "n": n, "device": torch.device(device), "terms": medcsp_terms}


def medbind_terms(model, loss_fn, batch, channels_last):
    cxr = batch["cxr"].contiguous(memory_format=torch.channels_last) if channels_last else batch["cxr"]
    t = model.encode_text(batch["tok"])
    return loss_fn({"cxr": model.encode_cxr(cxr), "cxr_text": t, "cxr_text_keys": batch["keys"],
                    "ecg": model.encode_ecg(batch["ecg"]), "ecg_text": t, "ecg_text_keys": batch["keys"],
                    "pairs": batch["pairs"]})


def medcsp_terms(model, loss_fn, batch, channels_last):
    if channels_last:
        batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    return loss_fn({"embeddings": model(batch), "mask": batch["mask"], "sources": batch["sources"],
                    "patients": batch["patients"], "times": batch["times"], "histories": batch["histories"]})


def step_fn(model, loss_fn, opt, batch, amp_dtype, channels_last):
    dev = batch["device"]
    ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    with ctx:
        out = batch["terms"](model, loss_fn, batch, channels_last)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def measure(model, loss_fn, opt, batch, amp_dtype, channels_last, warmup: int, iters: int, device) -> dict:
    for _ in range(warmup):
        step_fn(model, loss_fn, opt, batch, amp_dtype, channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        step_fn(model, loss_fn, opt, batch, amp_dtype, channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / iters
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"step_s": dt, "samples_per_s": batch["n"] / dt, "peak_gib": peak}


def build(cfg, attn: str, device, channels_last: bool, method: str = "medbind"):
    if method == "medcsp":
        from medbind_lib.models.medcsp import build_medcsp_model

        model = build_medcsp_model(cfg, input_dims=MEDCSP_DIMS).to(device)
    else:
        model = build_model(cfg).to(device)
    if attn == "eager":  # the HF text encoder's attention implementation (our ECG blocks always use SDPA)
        hf = model.encoders["text"].model
        if hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation("eager")
        else:
            hf.config._attn_implementation = "eager"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def medcsp_flops(model, batch) -> float:
    """FLOPs per record of one forward + backward of the whole batch (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        emb = model(batch)
        sum(v.float().sum() for v in emb.values()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["n"]


def data_wait(profile: str, steps: int = 6, method: str = "medbind") -> dict:
    """A short real training run (notebook 01's / 08's data of the profile): fraction of step time spent
    waiting for the data loader."""
    import pandas as pd

    cfg = load_profile(profile, overrides={"max_steps": steps, "progress": False})
    with tempfile.TemporaryDirectory() as d:
        if method == "medcsp":
            from medbind_lib.medcsp.pretrain import train_medcsp

            train_medcsp(cfg, "medcsp", out_dir=d, resume=False, log=lambda *_: None)
        else:
            from medbind_lib.medbind.pretrain import train

            train(cfg, "medbind_bd", out_dir=d, resume=False, log=lambda *_: None)
        s = pd.read_parquet(Path(d) / "steps.parquet")
    return {"steps": steps, "data_wait_ms_per_step": 1000 * s["data_wait_s"].mean(),
            "data_wait_fraction": s["data_wait_s"].sum() / s["step_s"].sum()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="smoke", help="profile whose encoders to use (smoke, default, paper)")
    ap.add_argument("--batch", type=int, default=None, help="default: the profile's batch_size")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cpu-bf16", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--bert-base", action="store_true", help="BERT-base-size text encoder (paper: BioBERT)")
    ap.add_argument("--data-wait", action="store_true")
    ap.add_argument("--method", default="medbind", choices=("medbind", "medcsp"),
                    help="medbind: MEDBind_BD's model and loss; medcsp: MEDCSP's model and full loss")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = {"ecg_patch": 1, "cxr_size": 224, "text_max_length": 160} if args.config == "paper" else {}
    medcsp = args.method == "medcsp"
    with tempfile.TemporaryDirectory() as tmp:
        if args.bert_base or args.config == "paper":
            overrides["text_model_path"] = bert_base_folder(Path(tmp))
        cfg = load_profile(args.config, overrides=overrides)
        n = args.batch or (cfg.medcsp_batch_size if medcsp else cfg.batch_size)
        if medcsp:
            from medbind_lib.medcsp.pretrain import loss_from_profile

            loss_fn = loss_from_profile(cfg, "medcsp")
        else:
            loss_fn = MEDBindLoss("medbind_bd", tau=cfg.tau)
        results = {}
        for name in ("fp32 eager", "optimised"):
            seed_everything(0)
            opt_mode = name == "optimised"
            cl = opt_mode and device.type == "cuda" and cfg.cxr_channels_last is not False
            model = build(cfg, "sdpa" if opt_mode else "eager", device, cl, args.method)
            if opt_mode and args.compile and not medcsp:
                model.encode_cxr = torch.compile(model.encode_cxr)
                model.encode_ecg = torch.compile(model.encode_ecg)
            kw = {"fused": True} if opt_mode else {"foreach": False}   # fused on CPU too (trainer.build_optimizer)
            opt = torch.optim.AdamW(model.param_groups(0.1), lr=1e-4, **kw)
            amp = torch.bfloat16 if opt_mode and (device.type == "cuda" or args.cpu_bf16) else None
            batch = (make_medcsp_batch if medcsp else make_batch)(model, n, cfg, device)
            results[name] = measure(model, loss_fn, opt, batch, amp, cl, args.warmup, args.iters, device)
            if name == "fp32 eager" and medcsp:   # model FLOPs per record (the batch's mix), fwd + bwd
                flops = medcsp_flops(model, batch)
            elif name == "fp32 eager":  # model FLOPs of one sample (image + ECG + its text), fwd + bwd
                small = {"cxr": batch["cxr"][:2], "ecg": batch["ecg"][:2],
                         "cxr_text": {k: v[:2] for k, v in batch["tok"].items()}}
                flops = flops_per_sample(model, small, backward=True, n_samples=2)
            del model, opt
    for r in results.values():
        r["tflops"] = flops * r["samples_per_s"] / 1e12
        r["mfu"] = r["tflops"] / args.peak_tflops if args.peak_tflops else None
    out = {"device": device_info(), "method": args.method, "config": args.config, "batch": n,
           "flops_per_sample": flops,
           "results": results, "ratio": results["optimised"]["samples_per_s"] / results["fp32 eager"]["samples_per_s"]}
    if args.data_wait:
        out["data_wait"] = data_wait(args.config, method=args.method)
    print(json.dumps(out, indent=2, default=str))
    print(f"\n| loop | samples/s | step (s) | peak GiB | TFLOP/s | MFU |\n|---|---|---|---|---|---|")
    for k, r in results.items():
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] else "-"
        print(f"| {k} | {r['samples_per_s']:.1f} | {r['step_s']:.3f} | {peak} | {r['tflops']:.3f} | {mfu} |")
    print(f"optimised / fp32 eager = {out['ratio']:.2f}x; {flops / 1e9:.2f} GFLOP per sample (fwd + bwd)")
    return out


if __name__ == "__main__":
    main()
