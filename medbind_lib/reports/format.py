"""Saving and formatting shared by every table: CSV + Markdown + parameters, 'ours [lo, hi] (paper)'
cells, and the one-legend-under-the-panels helper of the figures."""
from __future__ import annotations

import json
import math
from typing import Sequence

import pandas as pd

from .. import registry
from ..layout import RunLayout
from ..metrics.paired import rests_on


def _fmt_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v).replace("|", "/").replace("\n", " ")


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """GitHub Markdown of ``df`` (floats to 1 decimal, NaN blank), without optional dependencies."""
    d = df.reset_index() if index else df
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v) for v in row) + " |")
    return "\n".join(lines)


def save_table(df: pd.DataFrame, cfg, name: str, params: dict | None = None, title: str = "",
               display: pd.DataFrame | dict | None = None, notes: Sequence[str] = ()) -> dict:
    """Write ``runs/<profile>/tables/<name>.csv`` (full, CI columns included), ``<name>.md`` (``display``
    - one frame or {heading: frame} - or ``df``, then the notes and parameters) and ``<name>.params.json``;
    returns the paths."""
    out = RunLayout(cfg).tables
    out.mkdir(parents=True, exist_ok=True)
    params = params if params is not None else df.attrs.get("params", {})
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "params": out / f"{name}.params.json"}
    df.to_csv(paths["csv"], index=False, float_format="%.4f")
    md = [f"# {title or name}", "", f"Profile `{cfg['profile']}`. Values in percent; [lo, hi] = patient-level "
          f"bootstrap {100 * (1 - params.get('alpha', 0.05)):.0f}% CI.", "",
          ]
    shown = display if display is not None else df
    for head, frame in (shown.items() if isinstance(shown, dict) else [("", shown)]):
        md += ([f"## {head}", ""] if head else []) + [markdown_table(frame), ""]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    md += ["Parameters:", "", "```json", json.dumps(params, indent=1, sort_keys=True, default=str), "```", ""]
    paths["md"].write_text("\n".join(md))
    paths["params"].write_text(json.dumps(params, indent=1, sort_keys=True, default=str) + "\n")
    return paths


def ci_str(v, lo, hi, ref=None, mark: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        s = "n/a"
    elif lo is None or (isinstance(lo, float) and math.isnan(lo)):
        s = f"{v:.1f}"
    else:
        s = f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
    if ref is not None and not (isinstance(ref, float) and math.isnan(ref)):
        s += f" ({ref:.1f}{mark})"
    return s


def fmt_ci(x, v="rsum") -> str:
    return f"{x[v]:.1f} [{x[v + '_lo']:.1f}, {x[v + '_hi']:.1f}]"



def shared_legend(fig, axes, extra: dict, bottom: float) -> None:
    """One legend under a panel figure: each label once (first handle), the extra markers, a chance line."""
    from matplotlib.lines import Line2D

    seen: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    seen.update(extra)
    seen["chance"] = Line2D([], [], ls="--", color="k", lw=0.8)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 4), fontsize=8,
               bbox_to_anchor=(0.5, bottom))


def verdict(lo: float, hi: float) -> str:
    """The reading of a paired CI of a - b."""
    return "above 0 beyond the CI" if lo > 0 else "below 0 beyond the CI" if hi < 0 else "within the noise"


def row_label(key) -> str:
    """A row's label from the registry, the key itself when the registry has none."""
    try:
        return registry.label(str(key))
    except KeyError:
        return str(key)


def describe_paired(df: pd.DataFrame, label=row_label) -> list[str]:
    """One sentence per row of a paired-difference table (``metrics.paired``: ``system_a``, ``system_b``, ``item``,
    ``a_minus_b``, ``lo``, ``hi``, ``n_pretrain_seeds``, ``n_patients``; ``seed_sd`` / ``per_seed`` when averaged
    over seeds), each saying what it rests on."""
    out = []
    for _, r in df.iterrows():
        n = int(r["n_pretrain_seeds"])
        spread = f", seed SD {r['seed_sd']:.1f} (per seed {r['per_seed']})" if n > 1 else ""
        out.append(f"{label(r['system_a'])} - {label(r['system_b'])}, {r['item']} {r['metric']}: "
                   f"{r['a_minus_b']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]{spread}: {verdict(r['lo'], r['hi'])} "
                   f"({rests_on(n, int(r['n_patients']))})")
    return out
