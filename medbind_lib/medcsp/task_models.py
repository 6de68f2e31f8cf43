"""The models of MEDCSP's EHR-task rows (notebook 10): MEDCSP's encoders in front of the shared MLP head,
frozen or fine-tuned, the from-scratch baselines and MedHMP (pre-trained, ``medcsp.medhmp``).

Why a module of its own: the task definitions (``task_inputs``) say what each row sees; this module says what
reads it, so the training loop (``medbind_lib.finetune``) and the table (``reports.ehr_tasks``) take a built
module and never reach into the encoders.

Every row ends in the same MLP head (``MLPHead``). For the MEDCSP rows the head reads the task's per-modality
embeddings (``encode_medcsp``), concatenated with presence flags (``medcsp_task_pool: concat``: keeps which modality
said what) or their masked mean (``mean``: Eq. 2's record embedding) - ``head_features``.
``medcsp_task_finetune: false`` computes each row's embeddings once (``frozen_features``) and trains only the head
(the CPU budget); ``true`` trains a copy of the encoders with the head (``FinetunedMEDCSP``). Each builder
(``head``, ``finetuned``, ``fiddle``) seeds torch with the run's seed before it builds, so a run's
initialisation depends on its seed only.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..models.ehr_baselines import DCMN, RAIM
from ..models.fiddle import FIDDLENet, HeadOnly, MLPHead
from ..models.medhmp import MedHMPAdmissionTask, MedHMPStayTask
from ..models.yang_wu import YangWu
from ..replicates import n_seeds, replicated, run_name, with_run_seed
from .medhmp import load_or_pretrain
from .task_inputs import POOLS, TaskInputs, TaskSettings, note_features

__all__ = ["encode_medcsp", "head_features", "frozen_features", "FinetunedMEDCSP", "head", "finetuned", "fiddle",
           "icu_baseline", "ICU_BASELINES", "yang_wu", "YANG_WU_ROWS", "medhmp", "load_models", "MLPHead",
           "HeadOnly", "FIDDLENet"]


# ----------------------------------------------------------------------------------------------------
# MEDCSP embeddings of a task's rows
# ----------------------------------------------------------------------------------------------------
def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_medcsp(model, inputs: TaskInputs) -> dict:
    """{modality: [n, D]} for the task's modalities through the model's per-modality encoders (unit norm in the
    present rows, zeros in the absent ones, as ``MEDCSPModel.forward``). Differentiable: the fine-tuned row calls
    it under autograd, the frozen rows under ``no_grad``."""
    dev, n, out = _device(model), len(inputs), {}
    for m in inputs.modalities:
        rows = torch.from_numpy(np.flatnonzero(inputs.present[m])).to(dev)
        z = torch.zeros(n, model.embed_dim, device=dev)
        if len(rows):
            if m == "note":
                e = model.encode_text([inputs.notes[i] for i in rows.tolist()], "note")
            elif m == "temporal":
                e = model.encode(m, torch.from_numpy(inputs.arrays[m]).to(dev)[rows],
                                 torch.from_numpy(inputs.stays).to(dev)[rows])
            else:
                e = model.encode(m, torch.from_numpy(inputs.arrays[m]).to(dev)[rows])
            z = z.index_copy(0, rows, e.to(z.dtype))
        out[m] = z
    return out


def head_features(emb: Mapping[str, torch.Tensor], present: Mapping[str, np.ndarray], modalities: Sequence[str],
                  pool: str = "concat") -> torch.Tensor:
    """The head's input: ``concat`` = every modality's embedding (zeros if absent) + presence flags; ``mean`` =
    the masked mean over the present modalities (Eq. 2's record embedding)."""
    ref = emb[modalities[0]]
    flags = torch.stack([torch.as_tensor(present[m], dtype=ref.dtype, device=ref.device) for m in modalities], 1)
    if pool == "concat":
        return torch.cat([emb[m] for m in modalities] + [flags], 1)
    if pool == "mean":
        total = sum(emb[m] for m in modalities)
        return total / flags.sum(1, keepdim=True).clamp_min(1.0)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


@torch.no_grad()
def frozen_features(model, inputs: TaskInputs, pool: str, batch_size: int = 256) -> torch.Tensor:
    """Head inputs of every row, computed once with the encoders in eval mode (the frozen rows)."""
    was = model.training
    model.eval()
    parts = []
    for s in range(0, len(inputs), batch_size):
        sub = inputs.take(np.arange(s, min(s + batch_size, len(inputs))))
        parts.append(head_features(encode_medcsp(model, sub), sub.present, sub.modalities, pool).float().cpu())
    model.train(was)
    return torch.cat(parts) if parts else torch.zeros(0, 0)


# ----------------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------------
class FinetunedMEDCSP(nn.Module):
    """A COPY of the MEDCSP model's encoders trained with the head (X is a :class:`TaskInputs`); the model given
    is never modified, so every run starts from the same encoders."""

    def __init__(self, model, modalities: Sequence[str], pool: str, hidden: int, dropout: float):
        super().__init__()
        self.encoder = copy.deepcopy(model)
        self.modalities, self.pool = tuple(modalities), pool
        d = self.encoder.embed_dim * (len(self.modalities) if pool == "concat" else 1)
        d += len(self.modalities) if pool == "concat" else 0
        self.head = MLPHead(d, hidden, dropout).to(_device(self.encoder))

    def trainable(self) -> list:
        """Head + the encoders and projections of the task's modalities (the image tower is never trained)."""
        from ..models.medcsp import ENCODER_OF

        keys = {ENCODER_OF[m] for m in self.modalities}
        ps = list(self.head.parameters())
        ps += [p for k in keys for p in self.encoder.encoders[k].parameters()]
        ps += [p for m in self.modalities for p in self.encoder.projections[m].parameters()]
        return [p for p in ps if p.requires_grad]

    def forward(self, x: TaskInputs) -> torch.Tensor:
        emb = encode_medcsp(self.encoder, x)
        return self.head(head_features(emb, x.present, self.modalities, self.pool))


# ----------------------------------------------------------------------------------------------------
# each row's module, built under its run's seed (``make(seed) -> (module, trainable params or None)``)
# ----------------------------------------------------------------------------------------------------
def head(d: int, s: TaskSettings, seed: int):
    """The MLP head alone on ``d`` precomputed features (the frozen MEDCSP rows and the MEDBind_BD row)."""
    torch.manual_seed(seed)
    return HeadOnly(d, s.head_hidden, s.head_dropout), None


def finetuned(model, ti: TaskInputs, s: TaskSettings, seed: int):
    """A copy of ``model``'s encoders with the head; its trainable parameters (``FinetunedMEDCSP.trainable``)."""
    torch.manual_seed(seed)
    m = FinetunedMEDCSP(model, ti.modalities, s.pool, s.head_hidden, s.head_dropout)
    return m, m.trainable()


def fiddle(kind: str, x: tuple, s: TaskSettings, seed: int):
    """F-LSTM (``kind="lstm"``) or F-CNN (``"cnn"``) for the ``fiddle_inputs`` tuple ``x``, reading the static
    inputs as ``s.fiddle_input`` says (``medcsp_fiddle_input``)."""
    torch.manual_seed(seed)
    return FIDDLENet(kind, x[0].shape[-1], x[2].shape[1], s.fiddle_hidden, s.head_hidden, s.head_dropout,
                     fusion=s.fiddle_input), None


#: the in-ICU tasks' supervised baselines of MEDCSP's Figure 5 (models.ehr_baselines)
ICU_BASELINES = ("raim", "dcmn")


def icu_baseline(row: str, x: tuple, s: TaskSettings, seed: int):
    """RAIM or DCMN (``models.ehr_baselines``) for the ``fiddle_inputs`` tuple ``x``, the F-models' hidden size."""
    torch.manual_seed(seed)
    if row == "raim":
        return RAIM(x[0].shape[-1], x[2].shape[1], s.fiddle_hidden, s.head_hidden, s.head_dropout), None
    if row == "dcmn":
        return DCMN(x[0].shape[-1], x[2].shape[1], s.fiddle_hidden, s.head_hidden, s.head_dropout, s.dcmn_hops), None
    raise ValueError(f"row must be one of {ICU_BASELINES}, got {row!r}")


#: Yang and Wu's eight: table row -> their class name (models.yang_wu.VARIANTS); readmission only (Figure 6)
YANG_WU_ROWS = {"yw_bert_lstm": "MBertLstm", "yw_lstm_bert": "MLstmBert", "yw_bert_star": "MBertStar",
                "yw_star_bert": "MStarBert", "yw_bert_encoder": "MBertEncoder", "yw_encoder_bert": "MEncoderBert",
                "yw_bert_cnn": "MBertCnn", "yw_cnn_bert": "MCnnBert"}


def yang_wu(row: str, x: tuple, s: TaskSettings, seed: int):
    """One of Yang and Wu's eight for the ``task_inputs.yang_wu_inputs`` tuple ``x``, the F-models' hidden size."""
    torch.manual_seed(seed)
    return YangWu(YANG_WU_ROWS[row], x[0].shape[-1], x[2].shape[1], x[3].shape[1], s.fiddle_hidden, s.head_hidden,
                  s.head_dropout, s.star_cycles), None


def load_models(cfg, data, s: TaskSettings, log, device="cpu") -> dict:
    """The pre-trained variant, the untrained architecture (same seed) and the baselines' note encoder; with seed
    replicates of the variant, both again per seed (keys ``medcsp@seed<k>``, ``medcsp_untrained@seed<k>``)."""
    from .embed import load_medcsp_model
    from .pretrain import MEDCSPMethod

    dims = MEDCSPMethod.input_dims_of(data)
    out = {}
    seeds = range(n_seeds(cfg)) if s.variant in replicated(cfg, "medcsp_variants") else range(1)
    for k in seeds:                               # the variant's pre-training seeds (replicates.py), k = 0 first
        run = run_name(s.variant, k)
        if "medcsp" in s.rows:
            model, step, name = load_medcsp_model(cfg, run, "best", device, input_dims=dims)
            out[run_name("medcsp", k)] = (model, {"checkpoint": f"09/{run}/{name} (step {step})"})
        if k == 0 or "medcsp_untrained" in s.rows:
            model, _, _ = load_medcsp_model(cfg, run, "untrained", device, input_dims=dims)
            info = {"checkpoint": f"untrained {s.variant} architecture (seed {with_run_seed(cfg, run).seed})"}
            out[run_name("medcsp_untrained", k)] = (model, info)
    untrained = out["medcsp_untrained"][0]
    text = untrained.encoders["text"] if "text" in untrained.encoders else None
    encode_notes = (lambda notes: note_features(text, notes) if text is not None
                    else np.zeros((len(notes), 0), np.float32))
    out["note_features"] = lambda ti: encode_notes(ti.notes)
    if "medhmp" in s.rows:                          # pre-trained on the EHR source once (cached), then per task
        out["medhmp"] = load_or_pretrain(cfg, data, encode_notes, log, device)[0]
    return out


def medhmp(enc, task: str, s: TaskSettings, seed: int):
    """A copy of MedHMP's pre-trained stay encoder (in-ICU tasks) or admission encoder (readmission) with the shared
    head; every parameter trains, as the release fine-tunes."""
    torch.manual_seed(seed)
    if task == "readmission":
        return MedHMPAdmissionTask(copy.deepcopy(enc), s.head_hidden, s.head_dropout), None
    return MedHMPStayTask(copy.deepcopy(enc.stay), s.head_hidden, s.head_dropout), None
