"""Where a run's things live: the one place that joins ``runs/<profile>/`` paths.

``RunLayout(cfg)`` takes a loaded profile (``config.Profile``), any mapping with ``runs_dir`` (and optionally
``figures_dir`` / ``cache_dir``), an object with those attributes, another ``RunLayout`` or the runs folder
itself. It only computes paths: nothing is created or read. Bottom floor: stdlib only (no models, no torch), so
every module may use it.

::

    runs/<profile>/                      root
    ├── <NN>/                            stage("NN"): notebook NN's own folder
    ├── 01/link_params.json              link_params (written last by notebook 01)
    ├── 02/<run>/{best,last}.pt          checkpoint_dir("medbind" | "02", run), checkpoint(..., "best" | "last")
    ├── 06/support_embeddings/           support_embeddings (Table 3's training-split embeddings)
    ├── 07/features/<variant>/<m>_<ck>.npz   llm_features(variant, modality, checkpoint)
    ├── 07/predictions/<task>/<system>/  llm_predictions(task, system)
    ├── 07/task_<task>.parquet, quality.csv  llm_task_frame(task), llm_quality
    ├── 08/params.json                   medcsp_params (written last by notebook 08)
    ├── 09/<variant>/{best,last}.pt      checkpoint_dir("medcsp" | "09", variant)
    ├── 10/                              ehr_tasks
    ├── embeddings/<tag>/                embeddings(tag)
    ├── tables/                          tables
    ├── progress/<name>.log              progress_log(name)
    ├── timings.csv, env.json            timings, env
    ├── figures/                         figures (the profile's ``figures_dir``)
    └── cache/                           cache (the profile's ``cache_dir``), cache/text_features: text_features
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["RunLayout", "CHECKPOINT_STAGES", "stage_number"]

# pre-training method (or its notebook number) -> the notebook whose folder holds its checkpoints
CHECKPOINT_STAGES = {"medbind": "02", "02": "02", "medcsp": "09", "09": "09"}


def stage_number(nb) -> str:
    """``2``, ``"2"``, ``"02"`` -> ``"02"``."""
    s = str(nb).strip()
    if not s.isdigit():
        raise ValueError(f"notebook number expected (e.g. '02'), got {nb!r}")
    return s.zfill(2)


def _key(cfg: Any, key: str, default=None):
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


class RunLayout:
    """The paths of one profile's run (module docstring)."""

    def __init__(self, cfg: Any):
        if isinstance(cfg, RunLayout):
            self.root, self._figures, self._cache = cfg.root, cfg._figures, cfg._cache
            return
        if isinstance(cfg, (str, os.PathLike)):          # the runs folder itself (the runner's out_dir)
            self.root, self._figures, self._cache = Path(cfg), None, None
            return
        runs = _key(cfg, "runs_dir")
        if runs is None:
            raise KeyError("runs_dir: RunLayout needs a profile or a mapping with 'runs_dir'")
        self.root = Path(runs)
        self._figures = _key(cfg, "figures_dir")
        self._cache = _key(cfg, "cache_dir")

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # ------------------------------------------------------------------------------------ notebook folders
    def stage(self, nb) -> Path:
        """``runs/<profile>/<NN>/``: notebook NN's folder."""
        return self.root / stage_number(nb)

    def executed(self, name: str) -> Path:
        """An executed notebook copy (``runs/<profile>/<name>``)."""
        return self.root / name

    def progress_log(self, name: str) -> Path:
        """The progress mirror of one notebook execution (``runs/<profile>/progress/<stem>.log``)."""
        return self.root / "progress" / f"{Path(name).stem}.log"

    timings = property(lambda self: self.root / "timings.csv", doc="the runner's per-notebook time table")
    env = property(lambda self: self.root / "env.json", doc="versions, threads and device of the run")

    # ------------------------------------------------------------------------------ pre-training checkpoints
    def checkpoint_dir(self, method_or_stage: str, run: str) -> Path:
        """``02/<run>/`` (MEDBind variants and seed replicates: ``"medbind"`` or ``"02"``) or ``09/<variant>/``
        (MEDCSP: ``"medcsp"`` or ``"09"``)."""
        key = str(method_or_stage)
        if key not in CHECKPOINT_STAGES:
            raise ValueError(f"checkpoint_dir: {method_or_stage!r} is none of {sorted(CHECKPOINT_STAGES)}")
        return self.stage(CHECKPOINT_STAGES[key]) / run

    def checkpoint(self, method_or_stage: str, run: str, which: str = "best") -> Path:
        """``<checkpoint_dir>/<which>.pt``, ``which`` = ``best`` | ``last`` (the files ``trainer.fit`` keeps)."""
        return self.checkpoint_dir(method_or_stage, run) / f"{which}.pt"

    # ------------------------------------------------------------------------------------- shared outputs
    def embeddings(self, tag: str | None = None) -> Path:
        """``embeddings/`` or ``embeddings/<tag>/`` (one folder per exported model: variant, run, ``*_untrained``)."""
        root = self.root / "embeddings"
        return root if tag is None else root / tag

    tables = property(lambda self: self.root / "tables", doc="every table: CSV + Markdown + parameters")

    @property
    def figures(self) -> Path:
        return Path(self._figures) if self._figures is not None else self.root / "figures"

    @property
    def cache(self) -> Path:
        return Path(self._cache) if self._cache is not None else self.root / "cache"

    @property
    def text_features(self) -> Path:
        """Frozen text encoders' feature cache shared by every notebook kernel (``models.text``)."""
        return self.cache / "text_features"

    # --------------------------------------------------------------------------------- per-notebook files
    @property
    def linked(self) -> Path:
        """Notebook 01's folder: linked frames, Table 1, quality table."""
        return self.stage("01")

    link_params = property(lambda self: self.linked / "link_params.json", doc="written last by notebook 01")
    support_embeddings = property(lambda self: self.stage("06") / "support_embeddings",
                                  doc="Table 3's training-split embeddings")

    @property
    def llm(self) -> Path:
        """Notebook 07's folder (Table 4)."""
        return self.stage("07")

    def llm_features(self, variant: str, modality: str, checkpoint: str) -> Path:
        return self.llm / "features" / variant / f"{modality}_{checkpoint}.npz"

    def llm_predictions(self, task: str, system: str) -> Path:
        return self.llm / "predictions" / task / system

    def llm_task_frame(self, task: str) -> Path:
        return self.llm / f"task_{task}.parquet"

    llm_quality = property(lambda self: self.llm / "quality.csv", doc="Table 4's data-quality table")

    @property
    def medcsp_data(self) -> Path:
        """Notebook 08's folder (MEDCSP records and features)."""
        return self.stage("08")

    medcsp_params = property(lambda self: self.medcsp_data / "params.json", doc="written last by notebook 08")

    @property
    def ehr_tasks(self) -> Path:
        """Notebook 10's folder (MEDCSP EHR tasks)."""
        return self.stage("10")
