"""What each notebook reads from earlier notebooks, checked before it starts.

The runner calls :func:`require` before a notebook's kernel starts and each notebook calls it in its first
cell, so a notebook run out of order says which notebook to run first instead of failing deep inside with a
``KeyError``. Completion markers are the last files a producer writes: notebook 01's ``link_params.json``
(after its tables), notebook 02's and notebook 09's per-variant embedding folders (after the checkpoint),
notebook 08's ``params.json`` (after the MEDCSP data).
"""
from __future__ import annotations

from pathlib import Path

from .constants import UNTRAINED_REFERENCE
from .replicates import replicate_runs

__all__ = ["MissingArtifacts", "missing", "require", "NEEDS"]

# notebook -> producer notebooks whose outputs it reads
NEEDS: dict[str, tuple[str, ...]] = {"02": ("01",), "03": ("01", "02"), "04": ("01", "02"), "05": ("01", "02"),
                                     "06": ("01", "02"), "07": ("01", "02"), "08": ("01",), "09": ("01", "08"),
                                     "10": ("01", "02", "08", "09"), "11": ("01", "02", "09"), "12": ("08", "09")}


class MissingArtifacts(RuntimeError):
    """A notebook's inputs from an earlier notebook are absent."""


def _outputs(cfg, producer: str) -> list[Path]:
    runs = Path(cfg.runs_dir)
    if producer == "01":
        return [runs / "01" / "link_params.json"]
    if producer == "02":
        out = []
        for v in list(cfg.variants) + replicate_runs(cfg):
            out += [runs / "02" / v / "best.pt", runs / "embeddings" / v]
            if v == UNTRAINED_REFERENCE:
                out.append(runs / "embeddings" / f"{v}_untrained")
        return out
    if producer == "08":
        return [runs / "08" / "params.json"]               # written last by medcsp.features.build
    if producer == "09":                                   # each MEDCSP variant + the untrained reference
        out = [runs / "embeddings" / "medcsp_untrained"]
        for v in cfg.medcsp_variants:
            out += [runs / "09" / v / "best.pt", runs / "embeddings" / v]
        return out
    raise KeyError(producer)


def _present(p: Path) -> bool:
    return p.is_file() or (p.is_dir() and next(p.glob("*.npz"), None) is not None)


def missing(cfg, notebook: str) -> dict[str, list[Path]]:
    """producer notebook -> its outputs that ``notebook`` needs and that are absent."""
    out = {}
    for producer in NEEDS.get(str(notebook).zfill(2), ()):
        absent = [p for p in _outputs(cfg, producer) if not _present(p)]
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
