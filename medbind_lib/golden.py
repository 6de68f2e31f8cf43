"""Refresh ``tests/golden/`` from the executed smoke notebooks (``make golden``).

nbval runs the code stored in the file it checks, so golden copies must carry the same code as
``notebooks/``; ``tests/test_golden_sync.py`` fails when they drift.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from . import ROOT
from .io import write_text_atomic

GOLDEN = ROOT / "tests" / "golden"
VOLATILE_CELL_KEYS = ("papermill", "execution")


def code_cells(nb) -> list[str]:
    """Source of each code cell, without papermill's injected-parameters cell."""
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def clean(nb):
    """Drop timing metadata so refreshing the golden copies gives small, reviewable diffs."""
    nb.metadata.pop("papermill", None)
    for c in nb.cells:
        for k in VOLATILE_CELL_KEYS:
            c.metadata.pop(k, None)
    return nb


def executed_copy(notebook: Path, runs: Path) -> Path:
    """The executed copy that stands for ``notebook``: itself, or the run of its default ``variant``."""
    import papermill as pm

    variant = pm.inspect_notebook(str(notebook)).get("variant")
    if variant is None:
        return runs / notebook.name
    return runs / f"{notebook.stem}-{variant['default'].strip(chr(34) + chr(39))}.ipynb"


def refresh(runs: Path = ROOT / "runs" / "smoke", golden: Path = GOLDEN,
            notebooks: Path = ROOT / "notebooks") -> list[Path]:
    written = []
    for nb_path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        src = executed_copy(nb_path, runs)
        if not src.exists():
            raise SystemExit(f"{src} missing: run `python -m medbind_lib.run --profile smoke` first")
        nb = clean(nbformat.read(src, as_version=4))
        dst = golden / nb_path.name
        write_text_atomic(dst, nbformat.writes(nb) + "\n")
        written.append(dst)
    return written


if __name__ == "__main__":
    paths = refresh()
    print("\n".join(str(p.relative_to(ROOT)) for p in paths) or "no executed smoke notebooks in runs/smoke/")
    sys.exit(0 if paths else 1)
