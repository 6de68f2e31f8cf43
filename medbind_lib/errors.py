"""One error type for bad input, so users see file, record and problem, never a deep library traceback."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data: names the file, the record (if any) and what is wrong."""

    def __init__(self, file, problem: str, record=None):
        self.file = str(file) if file is not None else None
        self.record = None if record is None else str(record)
        self.problem = problem
        where = self.file or "<input>"
        if self.record is not None:
            where += f" [record {self.record}]"
        super().__init__(f"{where}: {problem}")


class ConfigError(ValueError):
    """Bad profile: unknown keys, wrong types, missing weights or data roots."""
