"""Data-quality log: every record excluded on purpose is counted here, never dropped silently."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class QualityLog:
    """Collects exclusions as (dataset, stage, reason) -> count, with a few example record ids."""

    max_examples: int = 3
    _counts: dict = field(default_factory=lambda: defaultdict(int))
    _examples: dict = field(default_factory=lambda: defaultdict(list))
    _seen: dict = field(default_factory=dict)  # (dataset, stage) -> records seen before exclusion
    _flagged: set = field(default_factory=set)  # keys of rows that were kept, only flagged

    def seen(self, dataset: str, stage: str, n: int) -> None:
        """Record how many records entered a stage, so exclusions can be shown as fractions."""
        self._seen[(dataset, stage)] = self._seen.get((dataset, stage), 0) + int(n)

    def exclude(self, dataset: str, stage: str, reason: str, records=(), n: int | None = None) -> None:
        """Count excluded records (``records`` ids, or an explicit ``n``) under one reason."""
        records = [str(r) for r in records]
        count = len(records) if n is None else int(n)
        if count == 0:
            return
        key = (dataset, stage, reason)
        self._counts[key] += count
        room = self.max_examples - len(self._examples[key])
        if room > 0:
            self._examples[key].extend(records[:room])

    def flag(self, dataset: str, stage: str, reason: str, records=(), n: int | None = None) -> None:
        """Count records that were KEPT but deserve a note (no admission, shortfall of a sample, ...)."""
        self.exclude(dataset, stage, reason, records, n)
        self._flagged.add((dataset, stage, reason))

    def merge(self, other: "QualityLog") -> None:
        for key, c in other._counts.items():
            self._counts[key] += c
            self._examples[key].extend(other._examples[key][: self.max_examples - len(self._examples[key])])
        self._flagged |= other._flagged
        for key, n in other._seen.items():
            self._seen[key] = self._seen.get(key, 0) + n

    def count(self, dataset: str | None = None, stage: str | None = None, reason: str | None = None,
              flagged: bool | None = None) -> int:
        """Records counted under the filters (``flagged=False``: excluded only; ``True``: kept-but-flagged only)."""
        return sum(c for (d, s, r), c in self._counts.items()
                   if (dataset is None or d == dataset) and (stage is None or s == stage)
                   and (reason is None or r == reason)
                   and (flagged is None or ((d, s, r) in self._flagged) == flagged))

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: dataset, stage, reason, action (excluded | kept), records, seen, examples."""
        rows = [dict(dataset=d, stage=s, reason=r, action="kept" if (d, s, r) in self._flagged else "excluded",
                     records=c, seen=self._seen.get((d, s)), examples=", ".join(self._examples[(d, s, r)]))
                for (d, s, r), c in sorted(self._counts.items())]
        cols = ["dataset", "stage", "reason", "action", "records", "seen", "examples"]
        return pd.DataFrame(rows, columns=cols).astype({"seen": "Int64"})


def quality_or_new(quality: QualityLog | None) -> QualityLog:
    """The caller's log, or a fresh one (readers count into the log they are given)."""
    return quality if quality is not None else QualityLog()
