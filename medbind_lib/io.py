"""File helpers shared by every module: tolerant table reading, text decoding and atomic writes."""
from __future__ import annotations

import codecs
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .errors import DataError


def find_table(directory, stem: str) -> Path:
    """Return ``directory/stem.csv`` or ``directory/stem.csv.gz`` (users often gunzip MIMIC tables)."""
    directory = Path(directory)
    for suffix in (".csv", ".csv.gz"):
        p = directory / f"{stem}{suffix}"
        if p.exists():
            return p
    raise DataError(directory / f"{stem}.csv[.gz]", "file not found (looked for .csv and .csv.gz)")


def read_table(path, required: Iterable[str], optional: Iterable[str] = (),
               dtype: Mapping[str, object] | None = None, **kw) -> pd.DataFrame:
    """Read a CSV(.gz) selecting columns BY NAME; a missing required column is a DataError naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    required, optional = list(required), list(optional)
    try:
        header = pd.read_csv(path, nrows=0, **{k: v for k, v in kw.items() if k in ("sep", "encoding")})
    except Exception as e:  # empty or undecodable file
        raise DataError(path, f"cannot read CSV header ({type(e).__name__}: {e})") from e
    cols = set(header.columns)
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(path, f"missing required column(s) {missing}; found {sorted(map(str, cols))}")
    use = required + [c for c in optional if c in cols and c not in required]
    dtype = {k: v for k, v in (dtype or {}).items() if k in use}
    try:
        return pd.read_csv(path, usecols=use, dtype=dtype, keep_default_na=True, **kw)[use]
    except Exception as e:
        raise DataError(path, f"cannot parse CSV ({type(e).__name__}: {e})") from e


def check_unique(df: pd.DataFrame, cols, path, what: str = "id") -> None:
    """Duplicate ids are an error naming the first duplicates (a silent merge would double-count)."""
    cols = [cols] if isinstance(cols, str) else list(cols)
    dup = df.duplicated(cols, keep=False)
    if dup.any():
        ex = df.loc[dup, cols].drop_duplicates().head(3).to_dict("records")
        raise DataError(path, f"duplicate {what} {cols}: {int(dup.sum())} rows, e.g. {ex}")


LATIN1_FALLBACK_REASON = "not valid UTF-8: stray bytes read as latin-1 (kept)"


def _latin1_bytes(err: UnicodeDecodeError):
    return err.object[err.start:err.end].decode("latin-1"), err.end


codecs.register_error("medbind_latin1", _latin1_bytes)


def decode_text(raw: bytes, path, quality=None, dataset: str = "text", stage: str = "text",
                strict: bool = False) -> str:
    """UTF-8 text; bytes that are not valid UTF-8 are read as latin-1 (0xE9 -> 'é') and the file is counted.

    Why: one stray byte (a report edited in a latin-1 tool) must not cost the whole text. Only the invalid
    bytes fall back, so the valid UTF-8 around them stays right. Each such file is counted in ``quality``
    (a QualityLog; kept, the file path as the example) under ``dataset``/``stage``. ``strict``: a DataError
    naming the file and the first bad byte instead.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if strict:
            raise DataError(path, f"not valid UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from e
    if quality is not None:
        quality.flag(dataset, stage, LATIN1_FALLBACK_REASON, records=[str(path)])
    return raw.decode("utf-8", errors="medbind_latin1")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename onto it only if the block succeeds.

    The file ends with the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not
    mkstemp's 0600, so a lab's shared ``runs/`` stays readable by the group."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():                  # writers that replace the temp file keep their own mode: set ours
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_parquet_atomic(df: pd.DataFrame, path) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def write_csv_atomic(df: pd.DataFrame, path, **kw) -> None:
    """Atomic CSV; gzip when the name ends in .gz (pandas infers compression from the temp suffix)."""
    path = Path(path)
    suffix = ".csv.gz" if path.name.endswith(".gz") else ".csv"
    with atomic_path(path, suffix=suffix) as tmp:
        df.to_csv(tmp, index=False, **kw)
