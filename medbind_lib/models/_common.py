"""Shared helpers of the model package: the missing-weights error and local-path checks."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


class MissingWeightsError(ConfigError, FileNotFoundError):
    """A profile names local weights that are not on disk.  Nothing is ever downloaded instead."""


def require_path(path, key: str, what: str) -> Path:
    """Return ``path`` as a Path if it exists, else raise :class:`MissingWeightsError` naming it and ``key``."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise MissingWeightsError(
            f"{what} not found at {str(p)!r} (profile key {key!r}). Weights are never downloaded: put the "
            f"checkpoint there, point {key!r} at a local copy, or set it to null for random initialisation"
            + (" / the packaged MiniLM." if key == "text_model_path" else "."))
    return p
