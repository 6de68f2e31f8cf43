"""Plan the paper-size pre-trainings before a GPU is lent: FLOPs, memory and hours, measured on the CPU.

For the encoders a profile builds (``paper``: Swin-T at 224 px, the ECG transformer with one token per 12-lead
sample, MEDCSP's ViT-B/16 at 224 px, EHR MLPs + LSTM, and the text tower), each encoder (with its projection)
runs one forward + backward on the CPU at batch 1 and 2 on random inputs, under

* ``torch.utils.flop_counter.FlopCounterMode``: matmul / conv / attention FLOPs (the MFU convention); the
  backward of ``sum(embeddings)``. Two additions to the counter: (a) torch's table has no formula for the CPU
  flash-attention kernel (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), so a counter
  on the CPU silently drops every attention FLOP whenever SDPA takes that kernel; the formulas of the GPU SDPA
  kernels are added for it here. (b) ``nn.LSTM`` is not counted on the CPU; its FLOPs are added analytically
  (8 h (C + h) per time step forward, 2x that backward).
* ``torch.autograd.graph.saved_tensors_hooks``: bytes of the tensors saved for backward (distinct storages),
  in fp32 and under CPU bf16 autocast; per-sample activation bytes = saved(batch 2) - saved(batch 1), so
  weights (and autocast's cached bf16 weight copies) drop out.

Attention-probability dropout is set to 0 while measuring: on a GPU the flash / memory-efficient SDPA kernels
apply it inside the kernel, while on the CPU SDPA with dropout falls back to the math path and saves the full
L x L attention matrix (FLOPs are the same either way). Everything else (hidden dropout, drop path) is as in
training. No download: the BERT-base-size text tower (the paper's BioBERT / MEDCSP's PubMedBERT size) is a
randomly initialised ``transformers.BertModel(BertConfig())`` saved to a temporary folder with the packaged
MiniLM tokenizer; the packaged MiniLM is what the profile builds offline (``text_model_path: null``).

Then per pre-training: FLOPs per sample / record, training FLOPs = epochs x per-epoch encodes x (fwd + bwd),
hours on one GPU at a given MFU, and an ANALYTIC memory estimate at the profile's batch (weights, fp32 AdamW
moments, gradients, bf16 weight copies, activations scaled linearly from the per-sample slope).

    python benchmarks/bench_flops.py --config paper            # a few minutes on 2 CPU cores
    python benchmarks/bench_flops.py --config gpu --threads 1

Dataset sizes default to the papers' (METHOD.md Table 1 training splits; MEDCSP.md Table 4 pre-training records);
``--medbind-counts`` / ``--medcsp-counts`` replace them (e.g. a synthetic ``gpu`` cohort's notebook 01 / 08 counts).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils import flop_counter as fc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from medbind_lib.config import load_profile  # noqa: E402
from medbind_lib.models import build_medcsp_model, build_model, count_parameters  # noqa: E402

GiB = 2 ** 30
#: METHOD.md "Dataset sizes (Table 1)": training splits of MIMIC-CXR, MIMIC-ECG and MIMIC-PAIR (MEDBind)
PAPER_MEDBIND = {"cxr": 86_853, "ecg": 88_291, "pairs": 22_397}
#: MEDCSP.md "Data (Table 4)": pre-training records, MIMIC-IV (EHR) and MIMIC-CXR
PAPER_MEDCSP = {"ehr": 41_230, "cxr": 156_837}
#: MEDCSP encoder input widths at MIMIC-IV scale: an ASSUMPTION (notebook 08 decides them from the data:
#: ICD / drug vocabularies of codes in >= 5 training admissions, 1 + 8 age bins + 5 one-hot fields of <= 10
#: categories (+ other), temporal = values + observed channels of the items seen in >= 5 % of training stays)
MEDCSP_DIMS = {"icd": 6000, "drug": 3000, "demo": 64, "temporal": 2 * 400}
HOURS = 48          # medcsp_prediction_hours / medcsp_bin_hours: time steps of the LSTM
STAYS = 1           # present ICU stays per EHR record the LSTM reads (<= medcsp_max_stays = 3; most have 1)


# ----------------------------------------------------------------------------------------------------------
# counting
# ----------------------------------------------------------------------------------------------------------
def _cpu_flash_fwd(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_flop_count(q, k, v)


def _cpu_flash_bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    """Model FLOPs of the attention backward: grad V, grad scores, grad Q, grad K = 2x the forward's two matmuls,
    as the math path counts them. (torch's formula for the GPU kernels adds the recomputed Q K^T of flash
    attention, a hardware FLOP that MFU leaves out.)"""
    return 2 * fc.sdpa_flop_count(q, k, v)


def extra_formulas() -> dict:
    aten = torch.ops.aten
    extra = {}
    for name, f in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_flash_fwd),
                    ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_flash_bwd)):
        op = getattr(aten, name, None)
        if op is not None and op not in fc.flop_registry:
            extra[op] = f
    return extra


def zero_attention_dropout(module: torch.nn.Module) -> None:
    """Attention-probability dropout off (see the module docstring); hidden dropout untouched."""
    for m in module.modules():
        name = type(m).__name__
        if name == "Attention" and isinstance(getattr(m, "attn_drop", None), float):   # ECG transformer
            m.attn_drop = 0.0
        elif "SelfAttention" in name and isinstance(getattr(m, "dropout", None), torch.nn.Dropout):   # HF BERT
            m.dropout.p = 0.0
        elif isinstance(getattr(m, "attn_drop", None), torch.nn.Dropout):                  # timm
            m.attn_drop.p = 0.0


def lstm_flops(module: torch.nn.Module, n: int, steps: int, stays: int) -> tuple[float, float]:
    """Analytic (forward, backward) FLOPs of the nn.LSTMs in ``module`` for n records of ``stays`` stays."""
    fwd = 0.0
    for m in module.modules():
        if isinstance(m, torch.nn.LSTM):
            for layer in range(m.num_layers):
                c = m.input_size if layer == 0 else m.hidden_size
                fwd += 2 * 4 * m.hidden_size * (c + m.hidden_size) * steps * stays * n
    return fwd, 2 * fwd


@dataclass
class Unit:
    """One encoder + its projection: a callable of the batch size that returns the embeddings."""
    name: str
    what: str
    run: object                  # n -> output tensor (builds its own random inputs)
    params: int
    module: torch.nn.Module
    lstm_steps: int = 0
    res: dict = field(default_factory=dict)


def measure(unit: Unit, amp: bool, n: int, count: bool, extra: dict) -> dict:
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.nbytes():
            saved[s.data_ptr()] = s.nbytes()
        return t

    unit.module.train()
    torch.manual_seed(0)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    cf = fc.FlopCounterMode(display=False, custom_mapping=extra) if count else contextlib.nullcontext()
    cb = fc.FlopCounterMode(display=False, custom_mapping=extra) if count else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with ctx, cf:
            out = unit.run(n)
    with cb:
        out.float().sum().backward()
    unit.module.zero_grad(set_to_none=True)
    r = {"saved": sum(saved.values())}
    if count:
        lf, lb = lstm_flops(unit.module, n, unit.lstm_steps, STAYS) if unit.lstm_steps else (0.0, 0.0)
        r["fwd"] = (cf.get_total_flops() + lf) / n
        r["bwd"] = (cb.get_total_flops() + lb) / n
    return r


def profile_unit(unit: Unit, extra: dict, log) -> None:
    t0 = time.perf_counter()
    f1 = measure(unit, False, 1, False, extra)
    f2 = measure(unit, False, 2, True, extra)
    b1 = measure(unit, True, 1, False, extra)
    b2 = measure(unit, True, 2, False, extra)
    unit.res = {"fwd": f2["fwd"], "bwd": f2["bwd"], "fb": f2["fwd"] + f2["bwd"],
                "act32": f2["saved"] - f1["saved"], "act16": b2["saved"] - b1["saved"]}
    log(f"  {unit.name}: {unit.res['fb'] / 1e9:.2f} GFLOP/sample fwd+bwd, "
        f"{unit.res['act32'] / 2**20:.1f} / {unit.res['act16'] / 2**20:.1f} MiB/sample (fp32 / bf16), "
        f"{time.perf_counter() - t0:.1f} s")


# ----------------------------------------------------------------------------------------------------------
# the encoders of the profile
# ----------------------------------------------------------------------------------------------------------
def bert_base_folder(tmp: Path) -> str:
    """A BERT-base-size text encoder (768 x 12 layers, random init) with the packaged MiniLM tokenizer (same
    uncased 30,522-piece vocabulary as BERT-base), saved locally: the paper's BioBERT size, no download."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medbind_lib.models.text import packaged_minilm_path

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    BertModel(BertConfig()).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(packaged_minilm_path(), local_files_only=True).save_pretrained(tmp)
    return str(tmp)


def _tokens(vocab: int, n: int, pieces: int) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, vocab, (n, pieces), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102      # [CLS] ... [SEP]: a text that fills all `pieces` (no padding)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _params(*modules) -> int:
    seen, total = set(), 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                total += p.numel()
    return total


def medbind_units(cfg, bert_path: str, pieces: list[int]) -> list[Unit]:
    """Swin-T CXR, ECG transformer, text (MiniLM as the profile builds it, and BERT-base) at each length."""
    mb = build_model(cfg, modalities=("cxr", "ecg", "text"))
    bert = build_model(cfg, modalities=("text",), text_model_path=bert_path)
    for m in (mb, bert):
        zero_attention_dropout(m)
    mc = mb.model_config
    s, leads = int(mc["ecg_samples"] or 1000), int(mc["ecg_leads"])
    g = torch.Generator().manual_seed(0)
    img = lambda n: torch.randn(n, 3, cfg.cxr_size, cfg.cxr_size, generator=g)      # noqa: E731
    units = [
        Unit("cxr", f"{mc['cxr_model']} at {cfg.cxr_size} px (+ Linear -> {mc['embed_dim']})",
             lambda n: mb.encode_cxr(img(n)), _params(mb.encoders["cxr"], mb.projections["cxr"]), mb),
        Unit("ecg", f"ECG transformer {mc['ecg_dim']} x {mc['ecg_depth']} blocks, {mb.encoders['ecg'].n_tokens} "
                    f"tokens ({leads} x {s}, patch {mc['ecg_patch']})",
             lambda n: mb.encode_ecg(torch.randn(n, leads, s, generator=g)),
             _params(mb.encoders["ecg"], mb.projections["ecg"]), mb)]
    for label, model in (("minilm", mb), ("bert", bert)):
        enc = model.encoders["text"]
        hf = enc.model.config
        desc = (f"{'MiniLM-L6 (packaged)' if label == 'minilm' else 'BERT-base (random init)'} "
                f"{hf.hidden_size} x {hf.num_hidden_layers}")
        for L in pieces:
            units.append(Unit(f"text_{label}_{L}", f"{desc} at {L} pieces",
                              (lambda model, L: lambda n: model.encode_text(_tokens(model.encoders["text"].model.config
                                                                                    .vocab_size, n, L)))(model, L),
                              _params(enc, model.projections["text"]), model))
    return units


def medcsp_units(cfg, bert_path: str) -> list[Unit]:
    """ViT-B/16 image, the EHR encoders (ICD / drug / demographics MLPs, temporal LSTM) and the shared text tower
    (MiniLM and BERT-base) at medcsp_text_max_length, each with its modality's projection."""
    csp = build_medcsp_model(cfg, input_dims=MEDCSP_DIMS)
    bert = build_medcsp_model(cfg, input_dims=MEDCSP_DIMS, medcsp_modalities=["note", "report"],
                              medcsp_text_model_path=bert_path)
    for m in (csp, bert):
        zero_attention_dropout(m)
    L = int(cfg.medcsp_text_max_length)
    g = torch.Generator().manual_seed(0)
    E, P = csp.encoders, csp.projections
    hot = lambda n, d: (torch.rand(n, d, generator=g) < 0.02).float()      # noqa: E731

    def temporal(n):
        x = torch.randn(n, STAYS, HOURS, MEDCSP_DIMS["temporal"], generator=g)
        return csp.encode("temporal", x, torch.ones(n, STAYS, dtype=torch.bool))

    units = [
        Unit("image", f"{cfg.medcsp_image_model} at {cfg.cxr_size} px (+ Linear -> {cfg.medcsp_embed_dim})",
             lambda n: csp.encode("image", torch.randn(n, 3, cfg.cxr_size, cfg.cxr_size, generator=g)),
             _params(E["image"], P["image"]), csp)]
    for m in ("icd", "drug", "demo"):
        units.append(Unit(m, f"{m} MLP {MEDCSP_DIMS[m]} -> {cfg.medcsp_mlp_hidden} x {cfg.medcsp_mlp_layers}",
                          (lambda m: lambda n: csp.encode(m, hot(n, MEDCSP_DIMS[m])))(m), _params(E[m], P[m]), csp))
    units.append(Unit("temporal", f"LSTM {MEDCSP_DIMS['temporal']} -> {cfg.medcsp_lstm_hidden}, {HOURS} h x "
                                  f"{STAYS} stay", temporal, _params(E["temporal"], P["temporal"]), csp,
                      lstm_steps=HOURS))
    for label, model in (("minilm", csp), ("bert", bert)):
        enc = model.encoders["text"]
        hf = enc.model.config
        desc = (f"{'MiniLM-L6 (packaged)' if label == 'minilm' else 'BERT-base (random init)'} "
                f"{hf.hidden_size} x {hf.num_hidden_layers} at {L} pieces")
        units.append(Unit(f"csp_text_{label}", desc,
                          (lambda model: lambda n: model.encode_text(_tokens(model.encoders["text"].model.config
                                                                             .vocab_size, n, L), "note"))(model),
                          _params(enc, model.projections["note"], model.projections["report"]), model))
    return units


# ----------------------------------------------------------------------------------------------------------
# pre-trainings: encodes per epoch, per-batch mix
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    name: str
    variants: str
    n_variants: int
    samples: int                         # samples / records per epoch before batching
    epochs: int
    batch: int
    per_epoch: dict                      # unit -> encodes per epoch
    per_batch: dict                      # unit -> encodes in an average batch
    bound: dict                          # unit -> encodes in the heaviest plausible batch
    bound_note: str
    params_units: tuple                  # units whose parameters the model trains
    sample_types: list                   # (label, {unit: count})


def medbind_plans(cfg, counts: dict, text: str, batch: int) -> list[Plan]:
    C, E, P = counts["cxr"], counts["ecg"], counts["pairs"]
    ep, plans = int(cfg.epochs), []
    t = text
    # BD / NM: a pair is one sample; CXRs and ECGs outside every pair are single samples (medbind/data.py)
    n = P + (C - P) + (E - P)
    nb = max(1, n // batch)
    k = nb * batch / n                                      # share of the samples an epoch sees (drop the rest)
    plans.append(Plan("MEDBind_BD / _NM", "medbind_bd, medbind_nm", 2, n, ep, batch,
                      {"cxr": C * k, "ecg": E * k, t: (C + E) * k},
                      {"cxr": batch * C / n, "ecg": batch * E / n, t: batch * (C + E) / n},
                      {"cxr": batch, "ecg": batch, t: 2 * batch}, "every sample a pair",
                      ("cxr", "ecg", t),
                      [("pair sample", {"cxr": 1, "ecg": 1, t: 2}), ("CXR-only sample", {"cxr": 1, t: 1}),
                       ("ECG-only sample", {"ecg": 1, t: 1})]))
    for name, variants, nv, mod, N in (("CXR-CLIP / MedCLIP-style", "cxr_clip, medclip", 2, "cxr", C),
                                       ("ECG-CLIP", "ecg_clip", 1, "ecg", E)):
        nb = max(1, N // batch)
        plans.append(Plan(name, variants, nv, N, ep, batch, {mod: nb * batch, t: nb * batch},
                          {mod: batch, t: batch}, {mod: batch, t: batch}, "same", (mod, t),
                          [(f"{mod.upper()} sample", {mod: 1, t: 1})]))
    return plans


def medcsp_plans(cfg, counts: dict, text: str, batch: int) -> list[Plan]:
    Re, Rc = counts["ehr"], counts["cxr"]
    ep = int(cfg.medcsp_epochs)
    ehr = {"icd": 1, "drug": 1, "demo": 1, "temporal": 1, text: 1}
    cxr = {"image": 1, text: 1}
    n = Re + Rc
    nb = max(1, n // batch)
    rate = cfg.medcsp_pair_rate
    k = int(round(rate * batch / 2)) if rate else 0         # forced same-patient pairs (medcsp/batches.py)
    e_batch = k + (batch - 2 * k) * Re / n                  # EHR records in an average batch
    c_batch = batch - e_batch

    def mix(ne, nc):
        out = {u: ne * c for u, c in ehr.items()}
        for u, c in cxr.items():
            out[u] = out.get(u, 0) + nc * c
        return out

    full = Plan("MEDCSP", "medcsp_a, medcsp_a_p, medcsp_a_d, medcsp", 4, n, ep, batch,
                mix(nb * e_batch, nb * c_batch), mix(e_batch, c_batch), mix(k, batch - k),
                f"{k} EHR + {batch - k} CXR records", ("icd", "drug", "demo", "temporal", text, "image"),
                [("EHR record", ehr), ("CXR record", cxr)])
    nb1 = max(1, Rc // batch)
    single = Plan("MEDCSP single-source", "medcsp_single", 1, Rc, ep, batch, mix(0, nb1 * batch), mix(0, batch),
                  mix(0, batch), "same", ("image", text), [("CXR record", cxr)])
    return [full, single]


def flops_of(mix: dict, units: dict, key: str = "fb") -> float:
    return sum(c * units[u].res[key] for u, c in mix.items())


# ----------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except Exception:   # noqa: BLE001
        return "?"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
    return f"{cpu}, {os.cpu_count()} cores{mem}; {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def g(x: float, d: int = 2) -> str:
    return f"{x / 1e9:,.{d}f}"


def report(args, cfg, units: dict, mb_plans: dict, csp_plans: dict, elapsed: float) -> str:
    out = []
    w = out.append
    w(f"`python benchmarks/bench_flops.py --config {args.config}` - {_dt.date.today().isoformat()}, commit "
      f"{git_commit()}, {elapsed:.0f} s")
    w(f"Machine: {machine()}.")
    w("")
    w("**FLOPs and activations per sample, per encoder** (FlopCounterMode, forward + backward of one batch of 2 on "
      "the CPU, fp32, training mode with attention-probability dropout 0; CPU flash attention counted as the math "
      "path counts it (model FLOPs: torch's formula for the GPU kernels adds flash's recomputed Q K^T to the "
      "backward); LSTM analytic. Activations = bytes saved for backward per sample, saved(batch 2) - saved(batch 1), "
      "in fp32 and under CPU bf16 autocast; CUDA autocast keeps LayerNorm and softmax outputs in fp32 where CPU "
      "autocast does not, so a GPU may save somewhat more than the bf16 column, never more than the fp32 one)")
    w("")
    w("| encoder (+ projection) | params (M) | forward GFLOP | fwd + bwd GFLOP | bwd / fwd | activations fp32 (MiB) "
      "| activations bf16 (MiB) |")
    w("|---|---|---|---|---|---|---|")
    for u in units.values():
        r = u.res
        w(f"| {u.what} | {u.params / 1e6:.1f} | {g(r['fwd'], 3)} | {g(r['fb'], 3)} | {r['bwd'] / r['fwd']:.2f} "
          f"| {r['act32'] / 2**20:.2f} | {r['act16'] / 2**20:.2f} |")
    w("")
    peaks = {"H100": args.peak_h100, "H200": args.peak_h200}
    w(f"**Per sample / record and projected hours** (training FLOPs = epochs x per-epoch encodes x counted fwd + bwd; "
      f"hours on ONE GPU = training FLOPs / (peak x MFU); peak dense bf16: H100 SXM {args.peak_h100:g}, "
      f"H200 SXM {args.peak_h200:g} TFLOP/s; 'samples/s' = what the GPU must be fed at 50 % MFU on the H100)")
    w("")
    head = "| pre-training (variants) | text | sample kind: GFLOP fwd + bwd | samples / epoch (batch) | epochs " \
           "| mean GFLOP / sample | PFLOP per run |"
    cols = [(gpu, m) for gpu in peaks for m in args.mfu]
    head += "".join(f" h {gpu} @ {100 * m:.0f} % |" for gpu, m in cols) + " samples/s @ 50 % (H100) |"
    w(f"Dataset sizes: {args.counts_source}. Epochs and batches: the {args.config} profile's (`epochs` "
      f"{cfg.epochs}, `batch_size` {cfg.batch_size}; `medcsp_epochs` {cfg.medcsp_epochs}, `medcsp_batch_size` "
      f"{cfg.medcsp_batch_size}).")
    w("")
    w(head)
    w("|" + "---|" * (7 + len(cols) + 1))
    totals = {}
    for text, plans in list(mb_plans.items()) + list(csp_plans.items()):
        for p in plans:
            per_epoch = flops_of(p.per_epoch, units)
            n_seen = (p.samples // p.batch) * p.batch
            run = per_epoch * p.epochs
            kinds = "; ".join(f"{lbl} {g(flops_of(mix, units), 1)}" for lbl, mix in p.sample_types)
            hours = [run / (peaks[gpu] * 1e12 * m) / 3600 for gpu, m in cols]
            key = ("MEDBind" if p.name.startswith(("MEDBind", "CXR", "ECG")) else "MEDCSP", text)
            t = totals.setdefault(key, [0.0] * len(cols))
            for i, h in enumerate(hours):
                t[i] += h * p.n_variants
            rate = peaks["H100"] * 1e12 * 0.5 / (per_epoch / n_seen)
            w(f"| {p.name} ({p.variants}) | {TEXT_LABEL[text]} | {kinds} | {n_seen:,} ({p.batch}) | {p.epochs} "
              f"| {g(per_epoch / n_seen, 1)} | {run / 1e15:,.0f} |" + "".join(f" {h:,.1f} |" for h in hours)
              + f" {rate:,.0f} |")
    for (method, text), t in totals.items():
        nv = {"MEDBind": 5, "MEDCSP": 5}[method]
        w(f"| **all {nv} {method} variants, one after another** | {TEXT_LABEL[text]} | | | | | |"
          + "".join(f" **{h:,.1f}** |" for h in t) + " |")
    mb = next(iter(mb_plans.values()))[0]
    cs = next(iter(csp_plans.values()))[0]
    t_mb = next(u for u in mb.per_batch if u not in ("cxr", "ecg"))
    t_cs = next(u for u in cs.per_batch if u.startswith("csp_text"))
    C, E, P = args.medbind_counts
    w("")
    w(f"Batch mix. MEDBind_BD / _NM: {P:,} MIMIC-PAIR pairs, {C - P:,} unpaired CXRs and {E - P:,} unpaired ECGs are "
      f"{mb.samples:,} samples; a batch of {mb.batch} draws Binomial({mb.batch}, {P / mb.samples:.3f}) pairs "
      f"(`pair_fraction: null` = the pairs' share), on average {mb.batch * P / mb.samples:.1f} pairs + "
      f"{mb.per_batch['cxr'] - mb.batch * P / mb.samples:.1f} CXR-only + "
      f"{mb.per_batch['ecg'] - mb.batch * P / mb.samples:.1f} ECG-only samples = {mb.per_batch['cxr']:.1f} CXR, "
      f"{mb.per_batch['ecg']:.1f} ECG and {mb.per_batch[t_mb]:.1f} texts; every text counted (no `text_dedup` "
      f"saving: identical texts in a batch are encoded once, so repeated ECG statements cost less). CXR-CLIP / "
      f"MedCLIP see every CXR once an epoch, ECG-CLIP every ECG. MEDCSP: {cs.samples:,} records "
      f"({args.medcsp_counts[0]:,} EHR, {args.medcsp_counts[1]:,} CXR); each batch of {cs.batch} holds "
      f"round(medcsp_pair_rate {cfg.medcsp_pair_rate} x {cs.batch} / 2) forced same-patient EHR-CXR pairs, the "
      f"rest drawn from all records: on average {cs.per_batch['temporal']:.1f} EHR + "
      f"{cs.per_batch['image']:.1f} CXR records; an EHR record runs the ICD, drug and demographics MLPs, the LSTM "
      f"and its note through the text tower, a CXR record its image and report; {cs.per_batch[t_cs]:.0f} texts a "
      f"batch. An epoch = samples // batch batches.")
    t256 = f"text_bert_{int(cfg.medcsp_text_max_length)}"
    if t256 in units and t256 != t_mb:
        alt = dict(mb.per_epoch)
        alt[t256] = alt.pop(t_mb)
        base, other = flops_of(mb.per_epoch, units), flops_of(alt, units)
        w("")
        w(f"Text length: MEDBind's texts are the first 100 words, taken here as {args.medbind_pieces} word pieces "
          f"(`--medbind-pieces`, an assumption: ~1.3-1.6 pieces a word, padded to the batch's longest). At "
          f"{t256.rsplit('_', 1)[1]} pieces a BERT-base text costs {g(units[t256].res['fb'], 1)} instead of "
          f"{g(units[t_mb].res['fb'], 1)} GFLOP and MEDBind_BD {g(other / (mb.samples // mb.batch * mb.batch), 1)} "
          f"instead of {g(base / (mb.samples // mb.batch * mb.batch), 1)} GFLOP a sample (x{other / base:.2f}).")
    w("")
    w(f"**Memory at the batch, one GPU: an ANALYTIC ESTIMATE, not a measurement** (weights fp32 4 B + gradients fp32 "
      f"4 B + AdamW 2 moments fp32 8 B + autocast's bf16 weight copies 2 B = 18 B per trained parameter; "
      f"activations = per-sample saved bytes x the batch's encodes; no CUDA context, allocator slack or "
      f"kernel workspaces; text = BERT-base size)")
    w("")
    w("| pre-training | batch | encodes in the batch | params (M) | weights + grads + AdamW + bf16 copies (GiB) "
      "| activations bf16 (GiB) | activations fp32 (GiB) | total bf16 (GiB) | heaviest batch | its total bf16 (GiB) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    bert = {"bert_mb": mb_plans, "bert_csp": csp_plans}
    for key, plans_by_text in bert.items():
        text = next(t for t in plans_by_text if "bert" in t)
        for p in plans_by_text[text]:
            params = sum(units[u].params for u in p.params_units)
            state = params * 18 / GiB
            a16, a32 = flops_of(p.per_batch, units, "act16") / GiB, flops_of(p.per_batch, units, "act32") / GiB
            b16 = flops_of(p.bound, units, "act16") / GiB
            enc = ", ".join(f"{c:.1f} {SHORT[u]}" for u, c in p.per_batch.items() if u not in ("drug", "demo", "icd"))
            w(f"| {p.name} | {p.batch} | {enc} | {params / 1e6:.1f} | {state:.2f} | {a16:.1f} | {a32:.1f} "
              f"| {state + a16:.1f} | {p.bound_note} | {state + b16:.1f} |")
    return "\n".join(out)


TEXT_LABEL: dict = {}
SHORT = {"cxr": "CXR", "ecg": "ECG", "image": "images", "temporal": "EHR records"}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="paper", choices=("paper", "gpu"), help="profile whose encoders to build")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--medbind-pieces", type=int, default=160,
                    help="word pieces of a MEDBind text: the paper cuts texts at 100 words, ~1.3-1.6 pieces a word "
                         "(punctuation included), padded to the batch's longest (assumption)")
    ap.add_argument("--mfu", type=float, nargs="+", default=[0.3, 0.5])
    ap.add_argument("--peak-h100", type=float, default=989.0, help="dense bf16 TFLOP/s, H100 SXM")
    ap.add_argument("--peak-h200", type=float, default=989.0, help="dense bf16 TFLOP/s, H200 SXM")
    ap.add_argument("--medbind-counts", type=int, nargs=3, metavar=("CXR", "ECG", "PAIRS"), default=None,
                    help="MEDBind training records and pairs (default: METHOD.md Table 1, the paper's)")
    ap.add_argument("--medcsp-counts", type=int, nargs=2, metavar=("EHR", "CXR"), default=None,
                    help="MEDCSP pre-training records (default: MEDCSP.md Table 4, the paper's)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.counts_source = ("given" if args.medbind_counts or args.medcsp_counts else
                          "the papers': MEDBind training splits of METHOD.md Table 1 (MIMIC-CXR 86,853, MIMIC-ECG "
                          "88,291, MIMIC-PAIR 22,397), MEDCSP pre-training records of MEDCSP.md Table 4 (MIMIC-IV "
                          "41,230, MIMIC-CXR 156,837)")
    if args.config != "paper" and not (args.medbind_counts or args.medcsp_counts):
        args.counts_source += (f"; NOT the {args.config} profile's synthetic cohort, which is smaller: pass its "
                               "notebook 01 / 08 counts with --medbind-counts / --medcsp-counts")
    args.medbind_counts = args.medbind_counts or [PAPER_MEDBIND[k] for k in ("cxr", "ecg", "pairs")]
    args.medcsp_counts = args.medcsp_counts or [PAPER_MEDCSP[k] for k in ("ehr", "cxr")]
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    cfg = load_profile(args.config)
    L_csp = int(cfg.medcsp_text_max_length)
    pieces = sorted({args.medbind_pieces, L_csp})
    extra = extra_formulas()
    with tempfile.TemporaryDirectory() as tmp:
        log("building a random BERT-base folder ...")
        bert_path = bert_base_folder(Path(tmp))
        units = {}
        for u in medbind_units(cfg, bert_path, pieces) + medcsp_units(cfg, bert_path):
            profile_unit(u, extra, log)
            units[u.name] = u
    TEXT_LABEL.update({f"text_minilm_{args.medbind_pieces}": f"MiniLM, {args.medbind_pieces} pieces",
                       f"text_bert_{args.medbind_pieces}": f"BERT-base, {args.medbind_pieces} pieces",
                       "csp_text_minilm": f"MiniLM, {L_csp} pieces", "csp_text_bert": f"BERT-base, {L_csp} pieces"})
    SHORT.update({k: "texts" for k in TEXT_LABEL})
    mbc = dict(zip(("cxr", "ecg", "pairs"), args.medbind_counts))
    cspc = dict(zip(("ehr", "cxr"), args.medcsp_counts))
    mb_plans = {t: medbind_plans(cfg, mbc, t, int(cfg.batch_size))
                for t in (f"text_bert_{args.medbind_pieces}", f"text_minilm_{args.medbind_pieces}")}
    csp_plans = {t: medcsp_plans(cfg, cspc, t, int(cfg.medcsp_batch_size))
                 for t in ("csp_text_bert", "csp_text_minilm")}
    text = report(args, cfg, units, mb_plans, csp_plans, time.perf_counter() - t0)
    print(text)
    return text


if __name__ == "__main__":
    main()
