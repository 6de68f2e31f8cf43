"""The pre-training notebooks' first retrieval checks (02, 09): trained vs untrained vs chance.

Chance over a gallery of ``n`` items with one relevant item per query: R@K = 100 min(K, n) / n, median rank =
(n + 1) / 2. The numbers come from the validation metrics ``trainer.fit`` records (``final_valid`` and
``untrained_valid`` of ``metrics.json``, keys ``<r1|r5|r10|medr>_<direction>`` and ``n_gallery_<direction>``) or from
ranks computed in the notebook (``ranks_vs_chance``); full tables with CIs are the evaluation notebooks'.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["METRIC_NAMES", "chance_level", "validation_check", "ranks_vs_chance"]

METRIC_NAMES = {"r1": "R@1", "r5": "R@5", "r10": "R@10", "medr": "median rank"}


def chance_level(metric: str, n: int) -> float:
    """``"r<K>"`` -> 100 min(K, n) / n; ``"medr"`` -> (n + 1) / 2 (gallery of ``n``, one relevant item)."""
    return (n + 1) / 2 if metric == "medr" else 100 * min(int(metric[1:]), n) / n


def validation_check(final: Mapping, untrained: Mapping, directions: Sequence[str],
                     metrics: Sequence[str] = ("r1", "r10", "medr"), blind: bool = False,
                     count: str = "gallery") -> pd.DataFrame:
    """One row per (direction, metric) present in ``final``: untrained, trained, chance, (``blind``: the
    ``blind_<key>`` image-blind baseline), and the gallery size as column ``count``. Indexed by (direction,
    metric), or by metric alone for a single direction."""
    rows = []
    for d in directions:
        n = final.get(f"n_gallery_{d}")
        for k in metrics:
            key = f"{k}_{d}"
            if key not in final:
                continue
            row = {"direction": d.replace("_", "->"), "metric": METRIC_NAMES[k],
                   "untrained": untrained.get(key, float("nan")), "trained": final[key], "chance": chance_level(k, n)}
            if blind:
                row["image-blind"] = final.get(f"blind_{key}", float("nan"))
            rows.append({**row, count: n})
    if len(directions) > 1:
        return pd.DataFrame(rows).set_index(["direction", "metric"])
    return pd.DataFrame(rows).drop(columns="direction", errors="ignore").set_index("metric")


def ranks_vs_chance(ranks: Mapping[str, np.ndarray], ks: Sequence[int] = (1, 5, 10), index: str = "model",
                    count: str = "studies") -> pd.DataFrame:
    """R@K and median rank of each model's 0-based ranks of the relevant item (``retrieval.target_ranks``), then a
    ``chance`` row for the first model's gallery (one relevant item per query, gallery = queries)."""
    rows = [{index: tag, **{f"R@{k}": 100 * float(np.mean(r < k)) for k in ks}, "median rank": float(np.median(r) + 1),
             count: len(r)} for tag, r in ranks.items()]
    n = rows[0][count]
    rows.append({index: "chance", **{f"R@{k}": 100 * min(k, n) / n for k in ks}, "median rank": (n + 1) / 2, count: n})
    return pd.DataFrame(rows).set_index(index)
