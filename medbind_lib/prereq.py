"""What each notebook reads from earlier notebooks, checked before it starts.

The runner calls :func:`require` before a notebook's kernel starts and each notebook calls it in its first
cell, so a notebook run out of order says which notebook to run first instead of failing deep inside with a
``KeyError``. Which notebooks a notebook reads and the completion markers of each producer (the last files it
writes) are declared once, in :mod:`medbind_lib.pipeline`.
"""
from __future__ import annotations

from pathlib import Path

from . import pipeline

__all__ = ["MissingArtifacts", "missing", "require"]


class MissingArtifacts(RuntimeError):
    """A notebook's inputs from an earlier notebook are absent."""


def _present(p: Path) -> bool:
    return p.is_file() or (p.is_dir() and next(p.glob("*.npz"), None) is not None)


def missing(cfg, notebook: str) -> dict[str, list[Path]]:
    """producer notebook -> its outputs that ``notebook`` needs and that are absent."""
    out = {}
    for producer in pipeline.needs(notebook):
        absent = [p for p in pipeline.outputs(cfg, producer) if not _present(p)]
        if absent:
            out[producer] = absent
    return out


def require(cfg, notebook: str) -> None:
    """Raise MissingArtifacts naming the notebooks to run first (and what is missing) for ``notebook``."""
    gaps = missing(cfg, notebook)
    if not gaps:
        return
    producers = ",".join(sorted(gaps))
    lines = [f"notebook {str(notebook).zfill(2)} reads outputs of notebook(s) {producers} of profile "
             f"{cfg.profile!r} that are missing:"]
    for prod, paths in sorted(gaps.items()):
        lines += [f"  from {prod}: {p}" for p in paths[:6]]
        if len(paths) > 6:
            lines.append(f"  ... and {len(paths) - 6} more")
    lines.append(f"run them first: python -m medbind_lib.run --profile {cfg.profile} --only {producers}")
    raise MissingArtifacts("\n".join(lines))
