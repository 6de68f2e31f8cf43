"""Build one preprocessed cache on several machines (or processes) at once: shards, then a join.

    python -m medbind_lib.cache_shards --profile P --dataset mimic_cxr --shard K/N   # K = 0 .. N-1, one per machine
    python -m medbind_lib.cache_shards --profile P --dataset mimic_cxr --join N      # once all N are in cache_dir

Shard ``K`` of ``N`` holds rows ``[K*R//N, (K+1)*R//N)`` of the cache's manifest (``R`` rows, in order),
written atomically (temp dir, then rename) to ``cache_dir/<name>-<key16>.shard-<K>-of-<N>/``; its
``meta.json`` carries the key of the WHOLE cache and the key's part digests (``cache._key``). The join
checks every shard against the manifest and concatenates them into ``cache_dir/<name>-<key16>/``: the
directory one ``cache.build`` writes, byte for byte (``data.npy``, ``manifest.parquet``,
``excluded.parquet``; ``meta.json`` differs only in ``created``), so notebook 01 and every later load reuse
it. The shards are removed after a join (``--keep-shards`` keeps them). A missing shard, or one built for
another configuration (other params or code version, other records, or source files with another size or
mtime: a copy of the data that did not keep mtimes), is a ``DataError`` that names it and says which.

The CLI computes the manifests as notebook 01 does (``cohort.mimic_cohort`` / ``external_cohort`` with the
profile's ``01`` layer) and calls ``cohort.build_caches`` inside :func:`sharded`, so a shard's recipe (load
function, params, shape, dtype) is the notebook's by construction. Every machine needs the same data at the
same paths and the same code; ``n_workers`` processes load records inside each shard.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache as C
from .errors import ConfigError, DataError

_SHARD_DIR = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{16})\.shard-(?P<k>\d+)-of-(?P<n>\d+)$")
_PARTS = {"config": "name, params (incl. the preprocessing version), shape, dtype or load function",
          "records": "record ids, paths or their order (another linking or manifest)",
          "files": "source files' size or mtime (another copy of the data)"}


@dataclass
class CacheShard:
    """One finished shard (``complete``: the whole cache already exists, nothing was built)."""

    path: Path
    shard: tuple[int, int]
    rows: tuple[int, int]
    counts: dict
    reused: bool
    complete: bool = False


def parse_shard(spec) -> tuple[int, int]:
    """``"K/N"`` or ``(K, N)`` -> ``(K, N)`` with ``0 <= K < N``."""
    try:
        k, n = (int(x) for x in (spec.split("/") if isinstance(spec, str) else spec))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"shard must be K/N (K = 0 .. N-1), got {spec!r}") from e
    if not 0 <= k < n:
        raise ConfigError(f"shard must be K/N with 0 <= K < N, got {spec!r}")
    return k, n


def shard_rows(n_records: int, k: int, n: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of shard ``k`` of ``n``: contiguous blocks in manifest order, sizes differ by <= 1."""
    return k * n_records // n, (k + 1) * n_records // n


def shard_dir(cache_dir, name: str, key: str, k: int, n: int) -> Path:
    return Path(cache_dir) / f"{name}-{key[:16]}.shard-{k}-of-{n}"


def _meta(path: Path) -> dict | None:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _differs(meta: dict, parts: dict) -> str:
    theirs = meta.get("key_parts") or {}
    diff = [_PARTS[p] for p in _PARTS if theirs.get(p) != parts[p]]
    return "built for another configuration: other " + ("; other ".join(diff) if diff else "key")


def _problem(path: Path, key: str, parts: dict, k: int, n: int, rows: tuple[int, int], n_records: int) -> str | None:
    """Why the directory ``path`` is not shard ``k`` of ``n`` of this cache (None: it is)."""
    meta = _meta(path)
    if meta is None:
        return "no readable meta.json (unfinished or damaged)"
    if meta.get("key") != key:
        return _differs(meta, parts)
    if (meta.get("shard"), meta.get("shards"), meta.get("n_records")) != (k, n, n_records) \
            or list(meta.get("rows", ())) != list(rows):
        return (f"holds shard {meta.get('shard')} of {meta.get('shards')} (rows {meta.get('rows')} of "
                f"{meta.get('n_records')}), expected {k} of {n} (rows {list(rows)} of {n_records})")
    missing = [f for f in ("data.npy", "manifest.parquet", "excluded.parquet") if not (path / f).is_file()]
    return f"lacks {missing}" if missing else None


def build_shard(name, manifest, load_fn, shape, dtype, params, cache_dir, shard, quality=None, n_workers: int = 0,
                progress: bool = True, dataset=None, path_root=None, chunk_size=None, mp_context=None) -> CacheShard:
    """Build (or reuse) shard ``K/N`` of the cache ``cache.build`` would write for these arguments."""
    k, n = parse_shard(shard)
    shape, dtype, cache_dir, key, parts = C._prepare(name, manifest, shape, dtype, params, cache_dir, load_fn,
                                                     path_root)
    rows = shard_rows(len(manifest), k, n)
    whole = cache_dir / f"{name}-{key[:16]}"
    if C._valid(whole, key):
        return CacheShard(whole, (k, n), rows, _meta(whole)["counts"], reused=True, complete=True)
    final = shard_dir(cache_dir, name, key, k, n)
    if _problem(final, key, parts, k, n, rows, len(manifest)) is None:
        return CacheShard(final, (k, n), rows, _meta(final)["counts"], reused=True)
    tmp = C._tmp_dir(cache_dir, final.name)
    extra = {"shard": k, "shards": n, "rows": list(rows), "n_records": len(manifest), "key_parts": parts}
    try:
        C._write(tmp, name, manifest.iloc[rows[0]:rows[1]], load_fn, shape, dtype, params, key, n_workers, progress,
                 chunk_size, mp_context, extra_meta=extra)
        C._publish(tmp, final, lambda: _problem(final, key, parts, k, n, rows, len(manifest)) is None)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CacheShard(final, (k, n), rows, _meta(final)["counts"], reused=False)


def _others(cache_dir: Path, name: str, key: str, n: int, parts: dict) -> list[str]:
    """Shard directories of this cache name that do not belong to this join, with the reason."""
    out = []
    for p in sorted(cache_dir.iterdir()):
        m = _SHARD_DIR.match(p.name)
        if not m or m["name"] != name or (m["key"] == key[:16] and int(m["n"]) == n):
            continue
        meta = _meta(p) or {}
        why = (f"one of {m['n']} shards, this join expects {n}" if meta.get("key") == key
               else _differs(meta, parts) if meta else "no readable meta.json")
        out.append(f"{p.name} ({why})")
    return out


def _check_rows(path: Path, ids: list[str], lo: int, shape, dtype) -> tuple[list[int], list[tuple], np.ndarray]:
    """Global positions of the shard's kept rows, its exclusions, its array; the shard must partition ``ids``."""
    kept = pd.read_parquet(path / "manifest.parquet", columns=["record_id"])["record_id"].astype(str).tolist()
    exc = pd.read_parquet(path / "excluded.parquet")
    keep = set(kept)
    pos = [lo + i for i, r in enumerate(ids) if r in keep]
    rest = [r for r in ids if r not in keep]
    arr = np.load(path / "data.npy", mmap_mode="r")
    if [ids[p - lo] for p in pos] != kept or rest != exc["record_id"].astype(str).tolist() \
            or arr.shape != (len(kept), *shape) or arr.dtype != dtype:
        raise DataError(path, f"shard does not match the manifest rows {lo}..{lo + len(ids)} (its records, "
                              f"exclusions or array {arr.shape} {arr.dtype} differ): rebuild it")
    return pos, list(exc[["record_id", "reason", "problem"]].itertuples(index=False, name=None)), arr


def join_shards(name, manifest, load_fn, shape, dtype, params, cache_dir, n_shards: int, quality=None,
                progress: bool = True, dataset=None, path_root=None, keep_shards: bool = False,
                **_loading) -> C.CachedArrays:
    """Assemble shards ``0..N-1`` into the cache ``cache.build`` writes for these arguments (or reuse it)."""
    from .runtime import progress as bar

    n = int(n_shards)
    if n < 1:
        raise ConfigError(f"join needs the number of shards N >= 1, got {n_shards!r}")
    shape, dtype, cache_dir, key, parts = C._prepare(name, manifest, shape, dtype, params, cache_dir, load_fn,
                                                     path_root)
    dataset, final = dataset or name, cache_dir / f"{name}-{key[:16]}"
    dirs = [shard_dir(cache_dir, name, key, k, n) for k in range(n)]
    reused = C._valid(final, key)
    if not reused:
        missing = [d.name for d in dirs if not d.is_dir()]
        bad = [f"{d.name} ({why})" for k, d in enumerate(dirs) if d.is_dir() and
               (why := _problem(d, key, parts, k, n, shard_rows(len(manifest), k, n), len(manifest)))]
        if missing or bad:
            others = _others(cache_dir, name, key, n, parts)
            raise DataError(final, f"cannot join {n} shards of cache {name!r} ({len(manifest)} records, key "
                                   f"{key[:16]}): missing {missing or 'none'}; unusable {bad or 'none'}; other "
                                   f"shards of {name!r} in {cache_dir}: {others or 'none'}. Build each "
                                   f"missing shard with the same profile, code and data files "
                                   f"(python -m medbind_lib.cache_shards --shard K/{n})")
        ids = manifest["record_id"].astype(str).tolist()
        tmp = C._tmp_dir(cache_dir, final.name)
        try:
            ok_pos, excluded, arrays = [], [], []
            for k, d in enumerate(dirs):
                lo, hi = shard_rows(len(manifest), k, n)
                pos, exc, arr = _check_rows(d, ids[lo:hi], lo, shape, dtype)
                ok_pos, excluded, arrays = ok_pos + pos, excluded + exc, arrays + [arr]
            data = np.lib.format.open_memmap(tmp / "data.npy", mode="w+", dtype=dtype, shape=(len(ok_pos), *shape))
            i = 0
            with bar(total=len(ok_pos), enabled=progress, desc=f"join {name}", unit="rec") as pbar:
                for arr in arrays:
                    for s in range(0, len(arr), 1024):
                        block = arr[s:s + 1024]
                        data[i:i + len(block)] = block
                        i += len(block)
                        pbar.update(len(block))
            data.flush()
            del data, arrays, arr
            C._write_side(tmp, name, manifest, ok_pos, excluded, key, params, shape, dtype, C._fn_name(load_fn))
            C._publish(tmp, final, lambda: C._valid(final, key))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if not keep_shards:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    out = C.CachedArrays.open(final, manifest, reused=reused)
    C._log(quality, dataset, name, len(manifest), out.excluded)
    return out


@contextlib.contextmanager
def sharded(shard=None, join: int | None = None, keep_shards: bool = False):
    """Inside, every ``cache.build`` call builds shard ``shard`` (``"K/N"``) of its cache and returns a
    :class:`CacheShard`, or (``join=N``) joins its N shards and returns the finished cache."""
    if (shard is None) == (join is None):
        raise ConfigError("sharded(): give exactly one of shard='K/N' or join=N")
    if join is not None:
        def hook(*a, **kw):
            return join_shards(*a, int(join), keep_shards=keep_shards, **kw)
    else:
        spec = parse_shard(shard)

        def hook(*a, **kw):
            return build_shard(*a, spec, **kw)
    token = C.BUILD_HOOK.set(hook)
    try:
        yield
    finally:
        C.BUILD_HOOK.reset(token)


def notebook_manifests(cfg, datasets=None) -> dict:
    """The manifests notebook 01 passes to ``cohort.build_caches`` (only the linking each dataset needs)."""
    from . import cohort
    from .quality import QualityLog
    from .runtime import seed_everything

    want = list(datasets or (*cohort.ECG_DATASETS, *cohort.CXR_DATASETS))
    seed_everything(cfg.seed)
    q, out = QualityLog(), {}
    if {"mimic_cxr", "mimic_ecg"} & set(want):
        linked = cohort.mimic_cohort(cfg, q)
        out.update(mimic_cxr=linked["cxr"], mimic_ecg=linked["ecg"])
    if set(want) - {"mimic_cxr", "mimic_ecg"}:
        out.update(cohort.external_cohort(cfg, q))
    return {k: out[k] for k in want}


def main(argv=None) -> int:
    from . import cohort
    from .config import load_profile, parse_overrides, profiles_help
    from .quality import QualityLog
    from .runtime import log_line

    ap = argparse.ArgumentParser(prog="python -m medbind_lib.cache_shards", description=__doc__, epilog=profiles_help(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml (default: smoke)")
    ap.add_argument("--dataset", nargs="+", choices=(*cohort.ECG_DATASETS, *cohort.CXR_DATASETS), default=None,
                    help="the caches to build (default: every cache of notebook 01)")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--shard", metavar="K/N", help="build shard K (0 .. N-1) of N of each cache")
    how.add_argument("--join", type=int, metavar="N", help="join the N shards of each cache into the cache")
    ap.add_argument("--keep-shards", action="store_true", help="keep the shard directories after a join")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="profile overrides")
    args = ap.parse_args(argv)
    try:
        if args.shard is not None:
            parse_shard(args.shard)                         # a bad K/N fails before the linking runs
        cfg = load_profile(args.profile, notebook="01", overrides=parse_overrides(args.set) or None)
        manifests = notebook_manifests(cfg, args.dataset)
        with sharded(shard=args.shard, join=args.join, keep_shards=args.keep_shards):
            out = cohort.build_caches(cfg, manifests, QualityLog())
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in out.items():
        if isinstance(r, CacheShard):
            what = ("the whole cache exists already" if r.complete else "reused" if r.reused else "built")
            log_line(f"{name}: shard {r.shard[0]}/{r.shard[1]} rows {r.rows[0]}..{r.rows[1]} {what}: {r.path}")
        else:
            log_line(f"{name}: {len(r)} records joined into {r.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
