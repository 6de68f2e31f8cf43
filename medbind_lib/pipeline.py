"""The notebook pipeline, declared once: what each numbered notebook reads, what it waits for, whether it runs
once per variant, and the files that mark it complete.

* ``needs``: producer notebooks whose outputs it reads; ``prereq.require`` checks their ``outputs`` before the
  notebook starts, and the runner starts it only after them.
* ``after``: notebooks that must finish first although it reads none of their completion outputs (10 reuses 07's
  MEDBind_BD feature cache rather than computing the same file at the same time).
* ``variants``: the profile key listing the runs of a notebook that declares a ``variant`` parameter (02:
  ``variants``, 09: ``medcsp_variants``, each plus its seed replicates, ``replicates.py``); ``None`` = one run.
* ``outputs``: completion markers, the last files a producer writes (paths from ``layout.RunLayout``): 01's
  ``link_params.json`` (after its tables), 02's and 09's per-variant checkpoints and embedding folders (after the
  checkpoint), 08's ``params.json`` (after the MEDCSP data), and 00's synthetic cohort stamp. No notebook lists 00
  in ``needs``: every notebook reads the cohort, and the runner's pre-flight (``check.py``) checks it, with every
  missing dataset file, before any notebook starts.

The producers (``producers()``, the notebooks with completion outputs) are what ``make test-notebooks`` runs before
nbval re-executes the golden copies: ``python -m medbind_lib.run --profile smoke --producers``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from . import registry
from .constants import STAMP_NAME
from .registry import UNTRAINED_REFERENCE
from .layout import RunLayout, stage_number
from .replicates import parse_run, replicate_runs, replicated, run_name

__all__ = ["Stage", "PIPELINE", "untrained_reference_run", "stage", "needs", "waits_for", "variant_runs", "outputs",
           "producers", "order"]


@dataclass(frozen=True)
class Stage:
    """One numbered notebook of the pipeline (module docstring)."""
    number: str
    name: str                                            # notebooks/<name>.py / .ipynb
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    variants: Optional[str] = None                       # profile key of its runs (notebooks with `variant`)
    replicates: bool = False                             # + the seed replicates of those variants
    outputs: Optional[Callable[[object, RunLayout, list], list]] = None   # (cfg, layout, runs) -> paths

    def runs(self, cfg) -> Optional[list[str]]:
        """The variant runs of this notebook, or None when it runs once."""
        if self.variants is None:
            return None
        return list(cfg[self.variants]) + (replicate_runs(cfg, self.variants) if self.replicates else [])


# ------------------------------------------------------------------------------------ completion outputs
def _cohort(cfg, L: RunLayout, runs) -> list[Path]:
    """The synthetic cohort's stamp (written last by ``synth.write_cohort``); real data: nothing to mark."""
    if not cfg.get("synthetic", False):
        return []
    return [Path(cfg["data_root"]) / STAMP_NAME]


def _linked(cfg, L: RunLayout, runs) -> list[Path]:
    return [L.link_params]


def _medbind_pretrained(cfg, L: RunLayout, runs) -> list[Path]:
    out = []
    for v in runs:
        out += [L.checkpoint("medbind", v, "best"), L.embeddings(v)]
        if v == UNTRAINED_REFERENCE:                     # the tables' untrained row: BD's initialisation alone
            out.append(L.embeddings(f"{v}_untrained"))
    return out


def _medcsp_data(cfg, L: RunLayout, runs) -> list[Path]:
    return [L.medcsp_params]                             # written last by medcsp.features.build


def _medcsp_pretrained(cfg, L: RunLayout, runs) -> list[Path]:
    refs = dict.fromkeys(untrained_reference_run(cfg, v) for v in runs)
    out = [L.embeddings(f"{r}_untrained") for r in refs if r]   # the untrained reference of each seed
    for v in runs:
        out += [L.checkpoint("medcsp", v, "best"), L.embeddings(v)]
    return out


def untrained_reference_run(cfg, run: str) -> str | None:
    """The run whose untrained initialisation notebook 09's ``run`` exports if absent: MEDCSP's reference
    architecture at the run's seed (``medcsp``, ``medcsp@seed<k>``); None when that seed has no reference (the
    reference variant itself is not replicated: its trained - untrained pair would have one side only)."""
    k = parse_run(run)[1]
    ref = registry.HEADLINE["medcsp"]
    if k and ref not in replicated(cfg, "medcsp_variants"):
        return None
    return run_name(ref, k)


_MEDBIND, _MEDCSP = ("01", "02"), ("08", "09")
PIPELINE: dict[str, Stage] = {s.number: s for s in (
    Stage("00", "00_cohort", outputs=_cohort),
    Stage("01", "01_linking", outputs=_linked),
    Stage("02", "02_pretrain", needs=("01",), variants="variants", replicates=True, outputs=_medbind_pretrained),
    Stage("03", "03_table2_retrieval", needs=_MEDBIND),
    Stage("04", "04_fig2_crossmodal", needs=_MEDBIND),
    Stage("05", "05_fig3_zero_few_shot", needs=_MEDBIND),
    Stage("06", "06_table3_crossmodal_zeroshot", needs=_MEDBIND),
    Stage("07", "07_table4_llm", needs=_MEDBIND),
    Stage("08", "08_medcsp_data", needs=("01",), outputs=_medcsp_data),
    Stage("09", "09_medcsp_pretrain", needs=("01", "08"), variants="medcsp_variants", replicates=True,
          outputs=_medcsp_pretrained),
    Stage("10", "10_medcsp_ehr_tasks", needs=("01", "02", "08", "09"), after=("07",)),
    Stage("11", "11_medcsp_radiology", needs=("01", "02", "09")),
    Stage("12", "12_medcsp_ablations", needs=_MEDCSP),
)}


def stage(nb) -> Stage:
    """The declaration of notebook ``nb``; a notebook the pipeline does not list reads and waits for nothing."""
    n = stage_number(nb)
    return PIPELINE.get(n) or Stage(n, n)


def needs(nb) -> tuple[str, ...]:
    return stage(nb).needs


def waits_for(nb) -> set[str]:
    """Notebooks that must finish before ``nb`` starts (``needs`` + ``after``)."""
    s = stage(nb)
    return set(s.needs) | set(s.after)


def variant_runs(nb, cfg) -> Optional[list[str]]:
    return stage(nb).runs(cfg)


def outputs(cfg, producer) -> list[Path]:
    """Completion markers of ``producer`` for profile ``cfg`` (KeyError for a notebook that declares none)."""
    s = stage(producer)
    if s.outputs is None:
        raise KeyError(s.number)
    return s.outputs(cfg, RunLayout(cfg), s.runs(cfg) or [])


def producers() -> list[str]:
    """Notebooks whose outputs later notebooks read (those with completion outputs), in order."""
    return sorted(n for n, s in PIPELINE.items() if s.outputs is not None)


def order() -> list[str]:
    """Every notebook in an order where each comes after all it waits for (ValueError on a cycle)."""
    done: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: tuple[str, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValueError(f"pipeline cycle: {' -> '.join(path + (n,))}")
        state[n] = 1
        for m in sorted(waits_for(n)):
            visit(m, path + (n,))
        state[n] = 2
        done.append(n)

    for n in sorted(PIPELINE):
        visit(n, ())
    return done
