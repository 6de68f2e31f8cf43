"""Preprocessed ECG / CXR arrays, written ONCE as memory-mapped ``.npy`` files with parquet manifests.

A cache directory ``cache_dir/<name>-<key[:16]>/`` holds

- ``data.npy``          the arrays, shape ``[n_ok, *shape]`` (``np.lib.format.open_memmap``; opened read-only
                        with ``mmap_mode="r"`` so DataLoader workers share pages instead of copying);
- ``manifest.parquet``  the input rows whose load succeeded, with an ``index`` column into ``data.npy``;
- ``excluded.parquet``  ``record_id, reason, problem`` of the records whose load raised ``DataError``;
- ``meta.json``         name, params, key, shape, dtype, created, counts.

The key is the sha256 of (name, params as sorted JSON, shape, dtype, the load function's qualified
name, the ORDERED ``record_id``/``path`` list and a cheap signature ``size, mtime_ns`` of each source
file). A changed parameter, record list or source file gives a new key and a new build; an unchanged
one reuses the directory without calling ``load_fn``. The key does not see the CODE of ``load_fn``:
put a preprocessing ``version`` into ``params`` and bump it when the code changes.

Atomicity: a build writes into a hidden sibling ``.<name>-<key16>.tmp-<host>-<pid>-<rand>/`` and
``os.replace``s it into place only when complete (``meta.json`` written last); a crash leaves only the
hidden temp dir, which never looks like a valid cache and is removed by a later build once its owning
process is gone (same host) or after a day. Two processes building the same key both finish; the
first rename wins and the second reuses it.

``load_fn(row: dict) -> np.ndarray`` receives the manifest row as a dict (``record_id``, ``path`` and
every other column) and returns one array of ``shape`` (cast to ``dtype``). Raise
:class:`medbind_lib.errors.DataError` for a bad record: it is excluded and counted (QualityLog and
``excluded.parquet``). Any other exception is a bug and propagates. With ``n_workers > 0`` records are
loaded in a process pool, so ``load_fn`` must be picklable: a module-level function, or a
``functools.partial`` of one with picklable arguments (no lambdas, no closures, no bound methods of
objects holding open files).

Sharded builds (several machines or processes) live in :mod:`medbind_lib.cache_shards`: each process writes
one shard of the manifest's rows, a join assembles exactly the directory one ``build`` writes. Inside its
``sharded(...)`` context every ``build`` call is handed to it (``BUILD_HOOK``), so callers that only know
``build`` (``cohort``) build shards unchanged.
"""
from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import os
import shutil
import socket
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError
from .io import check_unique

CACHE_FORMAT = 1          # bump when the on-disk layout of a cache directory changes
STALE_TMP_SECONDS = 24 * 3600
# set by cache_shards.sharded(): every build() call inside goes to this function (same arguments) instead
BUILD_HOOK: ContextVar[Callable | None] = ContextVar("medbind_cache_build_hook", default=None)


# --------------------------------------------------------------------------------------------------
# the cache object
# --------------------------------------------------------------------------------------------------
@dataclass
class CachedArrays:
    """A finished cache: ``.array`` (read-only memmap), ``.manifest``, ``.excluded``, ``.meta``."""

    path: Path
    manifest: pd.DataFrame
    excluded: pd.DataFrame
    meta: dict
    reused: bool = False
    _array: np.ndarray | None = field(default=None, repr=False)
    _index: dict | None = field(default=None, repr=False)

    @property
    def array(self) -> np.ndarray:
        """``[n_ok, *shape]`` memory map, opened read-only on first use."""
        if self._array is None:
            self._array = np.load(self.path / "data.npy", mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.manifest)

    def index_of(self, record_id) -> int:
        """Row of ``record_id`` in ``.array``; KeyError says whether it was excluded (and why) or unknown."""
        if self._index is None:
            self._index = dict(zip(self.manifest["record_id"].astype(str), self.manifest["index"].astype(int)))
        rid = str(record_id)
        if rid in self._index:
            return self._index[rid]
        why = self.excluded.loc[self.excluded["record_id"] == rid, "reason"]
        raise KeyError(f"{rid}: excluded from cache {self.path.name} ({why.iloc[0]})" if len(why)
                       else f"{rid}: not in cache {self.path.name}")

    def get(self, record_id) -> np.ndarray:
        """The cached array of one record (a read-only view into the memmap)."""
        return self.array[self.index_of(record_id)]

    @classmethod
    def open(cls, path, manifest: pd.DataFrame | None = None, reused: bool = True) -> "CachedArrays":
        """Open a finished cache directory. With ``manifest`` (the caller's current rows) the returned
        ``.manifest`` holds those rows (current columns, e.g. a new split) with the cached ``index``."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        stored = pd.read_parquet(path / "manifest.parquet")
        excluded = pd.read_parquet(path / "excluded.parquet")
        if manifest is not None:
            stored = _current_rows(manifest, stored)
        return cls(path=path, manifest=stored, excluded=excluded, meta=meta, reused=reused)


class ArrayCache:
    """Holds the run settings (cache_dir, workers, progress, quality log) so callers pass only data.

    ``ArrayCache.from_config(cfg, quality).build(name, manifest, load_fn, shape, dtype, params)``.
    """

    def __init__(self, cache_dir, quality=None, n_workers: int = 0, progress: bool = True, **build_kw):
        self.cache_dir, self.quality, self.n_workers, self.progress = Path(cache_dir), quality, n_workers, progress
        self.build_kw = build_kw

    @classmethod
    def from_config(cls, cfg: Mapping, quality=None, **build_kw) -> "ArrayCache":
        return cls(cfg["cache_dir"], quality, int(cfg.get("n_workers", 0)), bool(cfg.get("progress", True)), **build_kw)

    def build(self, name, manifest, load_fn, shape, dtype, params, **kw) -> CachedArrays:
        opts = {**self.build_kw, **kw}
        return build(name, manifest, load_fn, shape, dtype, params, self.cache_dir, quality=self.quality,
                     n_workers=self.n_workers, progress=self.progress, **opts)


# --------------------------------------------------------------------------------------------------
# key
# --------------------------------------------------------------------------------------------------
def _fn_name(fn) -> str:
    """Qualified name of the load function (partials unwrapped): renaming it rebuilds."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _resolve(path, path_root) -> Path:
    p = Path(str(path))
    return p if p.is_absolute() or path_root is None else Path(path_root) / p


def file_signature(path) -> str:
    """Cheap content signature ``size:mtime_ns`` (no hashing of bytes; 'missing' when absent)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cache_key(name: str, manifest: pd.DataFrame, params: Mapping, shape, dtype, load_fn=None,
              path_root=None) -> str:
    """sha256 over name, params, shape, dtype, load_fn name, and every (record_id, path, signature)."""
    return _key(name, manifest, params, shape, dtype, load_fn, path_root)[0]


def _key(name, manifest, params, shape, dtype, load_fn, path_root) -> tuple[str, dict]:
    """The cache key and digests of its three parts (``config``, ``records``, ``files``), which say why two
    builds' keys differ (a shard from another machine: params, linking, or the source files' size/mtime)."""
    try:
        head = json.dumps({"format": CACHE_FORMAT, "name": name, "params": params, "shape": list(shape),
                           "dtype": np.dtype(dtype).str, "load_fn": _fn_name(load_fn) if load_fn else None},
                          sort_keys=True, default=_json_default)
    except TypeError as e:
        raise TypeError(f"cache {name!r}: params must be JSON-serialisable ({e})") from e
    h, recs, files = hashlib.sha256(head.encode()), hashlib.sha256(), hashlib.sha256()
    paths = manifest["path"].astype(object).where(manifest["path"].notna(), None).tolist()
    for rid, p in zip(manifest["record_id"].astype(str).tolist(), paths):
        sig = "none" if p is None else file_signature(_resolve(p, path_root))
        h.update(f"\n{rid}\t{p}\t{sig}".encode())
        recs.update(f"\n{rid}\t{p}".encode())
        files.update(f"\n{sig}".encode())
    parts = {"config": hashlib.sha256(head.encode()).hexdigest()[:16], "records": recs.hexdigest()[:16],
             "files": files.hexdigest()[:16]}
    return h.hexdigest(), parts


def _json_default(o):
    if isinstance(o, (Path, np.dtype)):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------------------------------
# loading (module-level so a process pool can pickle it)
# --------------------------------------------------------------------------------------------------
def _load_one(load_fn, row: dict):
    try:
        return ("ok", load_fn(row))
    except DataError as e:  # sent as text: DataError's constructor does not round-trip through pickle
        return ("err", str(e), e.problem)


def _load_chunk(load_fn, rows: list) -> list:
    return [_load_one(load_fn, r) for r in rows]


def _results(load_fn, rows: list, n_workers: int, chunk_size: int | None, mp_context) -> Iterator[list]:
    """Yield result lists chunk by chunk, in input order."""
    if n_workers <= 0:
        step = chunk_size or 16
        for i in range(0, len(rows), step):
            yield _load_chunk(load_fn, rows[i:i + step])
        return
    step = chunk_size or max(1, min(64, len(rows) // (4 * n_workers) or 1))
    chunks = [rows[i:i + step] for i in range(0, len(rows), step)]
    ctx = None
    if mp_context is not None:
        import multiprocessing as mp

        ctx = mp.get_context(mp_context) if isinstance(mp_context, str) else mp_context
    fn = functools.partial(_load_chunk, load_fn)
    ex = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx)
    try:
        # a bounded window of chunks in flight: order is kept and finished arrays never pile up in memory
        it = iter(chunks)
        pending = deque(ex.submit(fn, c) for c in itertools.islice(it, 4 * n_workers))
        while pending:
            res = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(fn, nxt))
            yield res
    finally:  # on an error (or a closed generator) do not wait for the remaining chunks
        ex.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------------
def build(name: str, manifest: pd.DataFrame, load_fn: Callable[[dict], np.ndarray], shape: Sequence[int], dtype,
          params: Mapping, cache_dir, quality=None, n_workers: int = 0, progress: bool = True,
          dataset: str | None = None, path_root=None, chunk_size: int | None = None,
          mp_context=None) -> CachedArrays:
    """Build (or reuse) the cache of ``load_fn(row)`` for every row of ``manifest`` (see module doc).

    ``manifest`` needs unique ``record_id`` and a ``path`` column (relative paths resolve against
    ``path_root`` for the file signature; ``load_fn`` resolves them itself). ``dataset`` names the
    QualityLog rows (default ``name``; stage ``cache:<name>``). Exclusions are logged again when a
    cache is reused, so data-quality tables do not depend on whether the cache was fresh. Inside
    ``cache_shards.sharded(...)`` the call builds one shard (a ``CacheShard``) or joins the shards instead.
    """
    hook = BUILD_HOOK.get()
    if hook is not None:                       # cache_shards.sharded(): build one shard, or join the shards
        return hook(name, manifest, load_fn, shape, dtype, params, cache_dir, quality=quality, n_workers=n_workers,
                    progress=progress, dataset=dataset, path_root=path_root, chunk_size=chunk_size,
                    mp_context=mp_context)
    shape, dtype, cache_dir, key, _ = _prepare(name, manifest, shape, dtype, params, cache_dir, load_fn, path_root)
    dataset = dataset or name
    final = cache_dir / f"{name}-{key[:16]}"
    if _valid(final, key):
        out = CachedArrays.open(final, manifest, reused=True)
        _log(quality, dataset, name, len(manifest), out.excluded)
        return out
    tmp = _tmp_dir(cache_dir, final.name)
    try:
        _write(tmp, name, manifest, load_fn, shape, dtype, params, key, n_workers, progress, chunk_size, mp_context)
        _publish(tmp, final, lambda: _valid(final, key))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = CachedArrays.open(final, manifest, reused=False)
    _log(quality, dataset, name, len(manifest), out.excluded)
    return out


def _prepare(name, manifest, shape, dtype, params, cache_dir, load_fn, path_root):
    """Checked manifest columns and ids, normalised shape/dtype, the cache dir (created, stale temps removed),
    the key and its part digests."""
    for c in ("record_id", "path"):
        if c not in manifest.columns:
            raise DataError(name, f"manifest lacks column {c!r}")
    check_unique(manifest, "record_id", name, "record_id")
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key, parts = _key(name, manifest, params, shape, dtype, load_fn, path_root)
    clean_stale(cache_dir, name)
    return shape, dtype, cache_dir, key, parts


def _tmp_dir(cache_dir: Path, final_name: str) -> Path:
    tmp = cache_dir / f".{final_name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, final: Path, valid: Callable[[], bool]) -> None:
    """Rename the finished ``tmp`` into place; a broken or foreign ``final`` is replaced, a valid one that a
    concurrent build of the same key renamed first is kept (``tmp`` removed)."""
    if final.exists() and not valid():
        shutil.rmtree(final)
    try:
        os.replace(tmp, final)
    except OSError:
        if not valid():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _write(tmp: Path, name, manifest, load_fn, shape, dtype, params, key, n_workers, progress, chunk_size,
           mp_context, extra_meta: Mapping | None = None) -> None:
    """Load every record into ``tmp/data.npy`` (successes packed in input order) and write the side files."""
    from .runtime import progress as bar

    n = len(manifest)
    rows = manifest.to_dict("records")
    ids = manifest["record_id"].astype(str).tolist()
    data = np.lib.format.open_memmap(tmp / "data.npy", mode="w+", dtype=dtype, shape=(n, *shape))
    ok_pos, excluded, i = [], [], 0
    with bar(total=n, enabled=progress, desc=f"cache {name}", unit="rec") as pbar:
        for chunk in _results(load_fn, rows, n_workers, chunk_size, mp_context):
            for res in chunk:
                if res[0] == "ok":
                    arr = np.asarray(res[1])
                    if arr.shape != shape:
                        raise ValueError(f"cache {name!r}: load_fn returned shape {arr.shape} for record "
                                         f"{ids[i]}, expected {shape}")
                    data[len(ok_pos)] = arr
                    ok_pos.append(i)
                else:
                    excluded.append((ids[i], res[1], res[2]))
                i += 1
            pbar.update(len(chunk))
    data.flush()
    del data
    if len(ok_pos) < n:
        _shrink_npy(tmp / "data.npy", len(ok_pos))
    _write_side(tmp, name, manifest, ok_pos, excluded, key, params, shape, dtype, _fn_name(load_fn), extra_meta)


def _write_side(tmp: Path, name, manifest, ok_pos, excluded, key, params, shape, dtype, fn_name,
                extra_meta: Mapping | None = None) -> None:
    """``manifest.parquet`` (the rows at ``ok_pos`` with their ``index``), ``excluded.parquet``, ``meta.json``."""
    n, n_ok = len(manifest), len(ok_pos)
    kept = manifest.iloc[ok_pos].copy()
    kept["index"] = np.arange(n_ok, dtype=np.int64)
    kept.to_parquet(tmp / "manifest.parquet", index=False)
    pd.DataFrame(excluded, columns=["record_id", "reason", "problem"]).astype(str).to_parquet(
        tmp / "excluded.parquet", index=False)
    meta = {"format": CACHE_FORMAT, "name": name, "key": key, "params": params, "shape": list(shape),
            "dtype": np.dtype(dtype).str, "load_fn": fn_name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "counts": {"input": n, "ok": n_ok, "excluded": n - n_ok}, **(extra_meta or {})}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))


def _shrink_npy(path: Path, n_ok: int, in_place: bool = True) -> None:
    """Cut ``data.npy`` to its first ``n_ok`` rows: rewrite the header in place and truncate the file
    (no copy), or copy into a smaller file when the new header would not have the same length."""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        offset = f.tell()
        new_shape = (n_ok, *shape[1:])
        buf = io.BytesIO()
        writer = fmt.write_array_header_1_0 if version == (1, 0) else fmt.write_array_header_2_0
        writer(buf, {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape})
        header = buf.getvalue()
        if in_place and len(header) == offset:
            f.seek(0)
            f.write(header)
            f.truncate(offset + n_ok * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
            return
    src = np.load(path, mmap_mode="r")
    dst_path = path.with_name("data.shrink.npy")
    dst = fmt.open_memmap(dst_path, mode="w+", dtype=dtype, shape=new_shape)
    for s in range(0, n_ok, 1024):
        e = min(s + 1024, n_ok)
        dst[s:e] = src[s:e]
    dst.flush()
    del dst, src
    os.replace(dst_path, path)


def _valid(path: Path, key: str) -> bool:
    """A finished cache of this key: every file present and meta.json naming the same key."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("key") == key and meta.get("format") == CACHE_FORMAT
            and all((path / f).is_file() for f in ("data.npy", "manifest.parquet", "excluded.parquet")))


def _current_rows(manifest: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The caller's current rows that are in the cache, in cache order, with ``index``.

    Why: the key covers record ids and paths, not other columns; a reused cache must not hand back
    stale labels or splits from the time it was built.
    """
    idx = dict(zip(stored["record_id"].astype(str), stored["index"].astype(np.int64)))
    cur = manifest.copy()
    pos = cur["record_id"].astype(str).map(idx)
    cur = cur[pos.notna().to_numpy()].copy()
    cur["index"] = pos[pos.notna()].astype(np.int64).to_numpy()
    return cur.sort_values("index", kind="mergesort").reset_index(drop=True)


def _log(quality, dataset: str, name: str, n: int, excluded: pd.DataFrame) -> None:
    if quality is None:
        return
    stage = f"cache:{name}"
    quality.seen(dataset, stage, n)
    for problem, grp in excluded.groupby("problem", sort=True):
        quality.exclude(dataset, stage, problem, records=grp["record_id"].tolist())


def clean_stale(cache_dir, name: str | None = None) -> list[Path]:
    """Remove temp build dirs left by crashed builds: owner process gone (same host) or older than a day."""
    removed = []
    host = socket.gethostname()
    for p in Path(cache_dir).glob(f".{name or ''}*.tmp-*"):
        if not p.is_dir():
            continue
        try:
            owner = p.name.rsplit(".tmp-", 1)[1]
            h, pid, _ = owner.rsplit("-", 2)
            pid = int(pid)
        except (IndexError, ValueError):
            h, pid = None, None
        old = time.time() - p.stat().st_mtime > STALE_TMP_SECONDS
        dead = h == host and pid is not None and not _alive(pid)
        if old or dead:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    from .runtime import pid_alive

    return pid == os.getpid() or pid_alive(pid)
