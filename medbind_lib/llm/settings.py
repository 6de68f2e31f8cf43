"""The Table 4 protocol as one frozen record, built from the profile's ``llm_*`` keys.

Why a record and not the profile: it holds only what changes the numbers, so it can be fingerprinted
(cached predictions are reused only under identical settings) and written beside every result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..registry import table_rows

TABLE4_ROWS = table_rows("table4")


@dataclass(frozen=True)
class LLMSettings:
    """Defaults = ``config.SCHEMA``; ``llm_settings(cfg)`` fills them from a profile."""
    profile: str = "smoke"
    model_path: str | None = None           # resolved by model.resolve_lm_path (None = packaged MiniLM)
    tasks: tuple = ("readmission", "mortality")
    systems: tuple = TABLE4_ROWS
    checkpoint: str = "best"
    admissions: str = "all"
    discharge_sections: tuple = ("chief complaint", "history of present illness", "brief hospital course",
                                 "discharge disposition", "discharge diagnosis")
    max_length: int = 512
    num_layers: int | None = None           # None = every layer of the language model
    modality_tokens: int = 1
    pool: str = "cls"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: tuple = ("query", "value")
    lr: float = 5e-4
    weight_decay: float = 0.01
    epochs: int = 10
    batch_size: int = 16
    grad_clip: float = 1.0
    class_weighting: str = "balanced"
    select: str = "valid_loss"
    threshold: str = "valid_accuracy"       # metrics.choose_threshold: Table 4 reports accuracy
    seeds: tuple = (0, 1, 2)
    n_boot: int = 1000
    alpha: float = 0.05
    boot_seed: int = 0
    torch_threads: int | None = None
    show_progress: bool = True

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def fingerprint(self, *extra) -> str:
        """Hash of everything that changes a fine-tuning result (not the bootstrap, the display or the threshold
        rule: table.py applies the rule to the stored validation predictions, so changing it needs no refit)."""
        d = {k: v for k, v in self.as_dict().items() if k not in ("n_boot", "alpha", "boot_seed", "show_progress",
                                                                   "systems", "tasks", "seeds", "profile",
                                                                   "threshold")}
        blob = json.dumps([d, *extra], sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def llm_settings(cfg, **overrides) -> LLMSettings:
    """Settings of profile ``cfg`` (``llm_model_path`` null -> ``text_model_path``)."""
    g = cfg.get
    base = dict(profile=cfg["profile"], model_path=g("llm_model_path") or g("text_model_path"),
                tasks=tuple(g("llm_tasks")), systems=tuple(g("llm_systems")), checkpoint=g("llm_checkpoint"),
                admissions=g("llm_admissions"), discharge_sections=tuple(g("llm_discharge_sections")),
                max_length=int(g("llm_max_length")), num_layers=g("llm_num_layers"),
                modality_tokens=int(g("llm_modality_tokens")),
                pool=g("llm_pool"), lora_r=int(g("llm_lora_r")), lora_alpha=int(g("llm_lora_alpha")),
                lora_dropout=float(g("llm_lora_dropout")), lora_targets=tuple(g("llm_lora_targets")),
                lr=float(g("llm_lr")), weight_decay=float(g("llm_weight_decay")), epochs=int(g("llm_epochs")),
                batch_size=int(g("llm_batch_size")), grad_clip=float(g("llm_grad_clip") or 0.0),
                class_weighting=g("llm_class_weighting"), select=g("llm_select"),
                threshold=g("llm_threshold") or LLMSettings.threshold,
                seeds=tuple(int(s) for s in g("llm_seeds")), n_boot=int(g("llm_n_boot")),
                boot_seed=int(g("seed", 0)), torch_threads=g("llm_torch_threads"),
                show_progress=bool(g("progress", True)))
    base.update(overrides)
    return LLMSettings(**base)
