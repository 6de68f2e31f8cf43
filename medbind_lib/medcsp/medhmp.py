"""MedHMP's pre-training on the suite's EHR source and its task inputs (notebook 10, row ``medhmp``).

Pre-training reads the EHR source's TRAINING records only (``features.load``: the records MEDCSP pre-trains on,
split by the shared patient split), so no validation or test patient, and no patient of the task population
(``medcsp_task_subjects``), is seen: stay level on the first ``medcsp_max_stays`` ICU stays of each of those
records (with its admission's demographics), then admission level on the records themselves (the same stays, ICD and
drug multi-hots, the note's features from the untrained MEDCSP text tower, as the other baselines read notes). The
result is cached in ``runs/<profile>/10/medhmp/pretrained.pt`` (written atomically) with the settings that made it,
and reused while they are unchanged. Architecture and losses: ``models.medhmp``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping

import numpy as np
import torch
from scipy import sparse

from ..layout import RunLayout
from ..models.medhmp import AdmissionEncoder, StayAutoencoder, StayEncoder, leave_one_out_infonce, mcm_loss
from ..runtime import progress
from ..trainer import load_checkpoint, save_checkpoint
from .task_inputs import TaskInputs, _temporal, _temporal_tensors, admission_stay_rows, note_inputs

__all__ = ["MedHMPSettings", "medhmp_settings", "pretraining_data", "pretrain", "load_or_pretrain", "task_x"]


@dataclasses.dataclass(frozen=True)
class MedHMPSettings:
    dim: int = 256
    dropout: float = 0.1
    weight_decay: float = 1e-8
    stay_epochs: int = 200
    stay_lr: float = 5e-4
    stay_batch_size: int = 128
    admission_epochs: int = 300
    admission_lr: float = 2e-5
    admission_batch_size: int = 4096
    mask_rate: float = 0.15
    mcm_loss: str = "mse"
    cl_weight: float = 0.1
    cl_tau: float = 0.1
    max_stays: int = 3
    seed: int = 0


def medhmp_settings(cfg) -> MedHMPSettings:
    fields = {f.name for f in dataclasses.fields(MedHMPSettings)} - {"max_stays", "seed"}
    return MedHMPSettings(**{k: cfg[f"medhmp_{k}"] for k in fields}, max_stays=int(cfg["medcsp_max_stays"]),
                          seed=int(cfg["seed"]))


def pretraining_data(data: Mapping, encode_notes: Callable, max_stays: int) -> dict:
    """Tensors of the EHR source's training records (admission level) and of their stays (stay level)."""
    recs = data["ehr_records"]
    train = np.flatnonzero(recs["split"].astype(str).to_numpy() == "train")
    hadm = recs["hadm_id"].astype(np.int64).to_numpy()[train]
    rows = admission_stay_rows(data["stays"], hadm, max_stays)
    demo = np.asarray(data["demographics"], np.float32)[train]
    notes = data["notes"].drop_duplicates("hadm_id").set_index("hadm_id")["text"]
    texts = [t if isinstance(t, str) and t.strip() else None for t in (notes.get(h) for h in hadm.tolist())]
    on = rows >= 0
    return {"temporal": torch.from_numpy(_temporal(data, rows)), "stays": torch.from_numpy(on),
            "demo": torch.from_numpy(demo),
            "icd": torch.from_numpy(sparse.csr_matrix(data["icd"])[train].toarray().astype(np.float32)),
            "drug": torch.from_numpy(sparse.csr_matrix(data["drug"])[train].toarray().astype(np.float32)),
            "note": torch.from_numpy(np.asarray(encode_notes(texts), np.float32)),
            "note_present": torch.tensor([t is not None for t in texts]),
            # stay level: each present stay of these records, with its admission's demographics
            "stay_temporal": torch.from_numpy(_temporal(data, rows[on][:, None])[:, 0]),
            "stay_demo": torch.from_numpy(np.repeat(demo, on.sum(1), axis=0))}


def _batches(n: int, batch_size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _admission_loss(enc: AdmissionEncoder, x: dict, s: MedHMPSettings, gen: torch.Generator) -> dict:
    """Masked code modelling on ICD and drugs + leave-one-out InfoNCE of note, ICD and drugs (models.medhmp)."""
    full = enc.tokens(x)
    others = [k for k in ("note", "icd", "drug", "stays") if k in full]
    losses = {}
    for m in ("icd", "drug"):                      # the other tokens are shared: only the masked one changes
        masked = (torch.rand(x[m].shape, generator=gen) < s.mask_rate).to(x[m].device)
        tok = {**full, m: enc.code_token(x[m], m, masked)}
        z = enc.fuse(tok, others, enc.ffn[f"mcm_{m}"])
        losses[f"mcm_{m}"] = mcm_loss(enc.predict[m](z), x[m] * masked.float(), s.mcm_loss)
    cl = []
    for m in ("note", "icd", "drug"):
        if m in full and len(full[m]) > 1:
            z = enc.fuse(full, [k for k in others if k != m], enc.ffn[f"cl_{m}"])
            cl.append(leave_one_out_infonce(full[m], z, s.cl_tau))
    losses["cl"] = torch.stack(cl).mean() if cl else full["stays"].sum() * 0
    losses["loss"] = (losses["mcm_icd"] + losses["mcm_drug"]) / 2 + s.cl_weight * losses["cl"]
    return losses


def pretrain(xs: dict, s: MedHMPSettings, device="cpu", show: bool = True, log: Callable = print) -> tuple:
    """Stay level, then admission level (module docstring); returns (AdmissionEncoder, history rows)."""
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    c, sd = xs["temporal"].shape[-1], xs["demo"].shape[1]
    stay = StayEncoder(c, sd, s.dim, s.dropout)
    ae = StayAutoencoder(stay, c, s.dropout).to(device)
    history = []
    opt = torch.optim.Adam(ae.parameters(), lr=s.stay_lr, weight_decay=s.weight_decay)
    n = len(xs["stay_temporal"])
    for epoch in progress(range(s.stay_epochs), enabled=show, desc="MedHMP stay pre-training"):
        tot = 0.0
        for idx in _batches(n, s.stay_batch_size, gen):
            loss = ae.loss(xs["stay_temporal"][idx].to(device), xs["stay_demo"][idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        history.append({"level": "stay", "epoch": epoch, "loss": tot / max(n, 1)})
    enc = AdmissionEncoder(stay, xs["icd"].shape[1], xs["drug"].shape[1], xs["note"].shape[1], s.max_stays,
                           s.dropout).to(device)
    opt = torch.optim.Adam(enc.parameters(), lr=s.admission_lr, weight_decay=s.weight_decay)
    keys = ("temporal", "stays", "demo", "icd", "drug", "note", "note_present")
    n = len(xs["icd"])
    for epoch in progress(range(s.admission_epochs), enabled=show, desc="MedHMP admission pre-training"):
        tot = {}
        for idx in _batches(n, s.admission_batch_size, gen):
            losses = _admission_loss(enc, {k: xs[k][idx].to(device) for k in keys}, s, gen)
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                tot[k] = tot.get(k, 0.0) + float(v.detach()) * len(idx)
        history.append({"level": "admission", "epoch": epoch, **{k: v / max(n, 1) for k, v in tot.items()}})
    last = {k: round(v, 4) for k, v in history[-1].items() if k not in ("level", "epoch")} if history else {}
    log(f"MedHMP pre-trained on {len(xs['stay_temporal'])} stays / {n} admissions (EHR source, training split): "
        f"{s.stay_epochs} + {s.admission_epochs} epochs; last {last}")
    return enc.cpu().eval(), history


def load_or_pretrain(cfg, data: Mapping, encode_notes: Callable, log: Callable = print, device="cpu"):
    """The pre-trained admission encoder (its ``stay`` is the stay encoder), from the cache when its settings and
    notebook 08's parameters match, else pre-trained now and cached."""
    s = medhmp_settings(cfg)
    notes = {k: cfg.get(k) for k in ("medcsp_task_variant", "medcsp_text_model_path", "text_model_path",
                                     "medcsp_text_max_length", "seed")}      # what the note features come from
    key = {"settings": dataclasses.asdict(s), "features": data.get("params"), "note_encoder": notes}
    path = RunLayout(cfg).ehr_tasks / "medhmp" / "pretrained.pt"
    dims = (2 * data["temporal_values"].shape[-1], np.asarray(data["demographics"]).shape[1], data["icd"].shape[1],
            data["drug"].shape[1], np.asarray(encode_notes([])).shape[1])        # [0, note width]
    if path.is_file():
        ck = load_checkpoint(path)
        if ck.get("key") == key and tuple(ck.get("dims", ())) == dims:
            enc = AdmissionEncoder(StayEncoder(dims[0], dims[1], s.dim, s.dropout), *dims[2:], s.max_stays, s.dropout)
            enc.load_state_dict(ck["state_dict"])
            log(f"MedHMP pre-trained encoders reused: {path}")
            return enc.eval(), ck["history"]
    t0 = time.time()
    xs = pretraining_data(data, encode_notes, s.max_stays)
    enc, history = pretrain(xs, s, device, show=bool(cfg.get("progress", True)), log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"key": key, "dims": dims, "state_dict": enc.state_dict(), "history": history,
                           "seconds": time.time() - t0})
    return enc, history


def task_x(ti: TaskInputs, notes) -> tuple:
    """A task's inputs for MedHMP: in-ICU tasks (temporal, stays, demo); readmission (temporal, stays, demo, icd,
    drug, note features, note present), the pre-training record's layout."""
    x = (*_temporal_tensors(ti), torch.from_numpy(np.asarray(ti.arrays["demo"], np.float32)))
    if "icd" not in ti.arrays:
        return x
    return (*x, torch.from_numpy(ti.arrays["icd"]), torch.from_numpy(ti.arrays["drug"]), *note_inputs(ti, notes))

