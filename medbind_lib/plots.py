"""Figures: one saving convention (PNG + PDF under figures/<profile>/) and the cohort plots."""
from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .constants import LEADS  # noqa: E402


def save_figure(fig, cfg, name: str) -> list[Path]:
    """Write ``figures/<profile>/<name>.png`` and ``.pdf`` (deterministic metadata) and return the paths."""
    out = Path(cfg["figures_dir"])
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return paths


def image_grid(images: dict[str, list[np.ndarray]], ncols: int = 4, size: float = 2.0):
    """Rows = findings, columns = examples; empty cells say 'none in cohort' instead of vanishing."""
    rows = list(images)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * size, len(rows) * size), squeeze=False)
    for r, name in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(images[name]):
                ax.imshow(images[name][c], cmap="gray", vmin=0, vmax=255)
            else:
                ax.text(0.5, 0.5, "none in cohort", ha="center", va="center", fontsize=7, color="0.5")
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


def ecg_12lead(signal: np.ndarray, fs: float, title: str = "", ax_height: float = 0.55, leads=LEADS):
    """Classic stacked 12-lead plot (mV vs s) of a [12, T] signal, with a light ECG-paper grid."""
    n, t = signal.shape
    time = np.arange(t) / fs
    fig, axes = plt.subplots(n, 1, figsize=(10, n * ax_height), sharex=True)
    half = max(float(np.nanmax(np.abs(signal))), 0.5) * 1.05  # one mV scale for every lead, as on paper
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(time, signal[i], lw=0.7, color="k")
        ax.set_ylim(-half, half)
        ax.set_ylabel(leads[i], rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
        ax.grid(True, which="major", color="#f4a6a6", lw=0.5)
        ax.set_xticks(np.arange(0, time[-1] + 1e-9, 0.2), minor=True)
        ax.grid(True, which="minor", color="#fbdcdc", lw=0.3)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    np.atleast_1d(axes)[-1].set_xlabel(f"time (s); every lead on the same scale, ±{half:.1f} mV")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=0.05)
    return fig
