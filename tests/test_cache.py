"""The array cache: reuse, rebuild on change, exclusions, atomicity, parallel == serial."""
from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medbind_lib import cache
from medbind_lib.cache import ArrayCache, CachedArrays, build, clean_stale
from medbind_lib.errors import DataError
from medbind_lib.quality import QualityLog

SHAPE = (3, 4)


# module-level loaders (picklable for the process pool)
def load_txt(row: dict, scale: float = 1.0) -> np.ndarray:
    """Array from the number in the source file; 'bad' files are a DataError."""
    text = Path(row["path"]).read_text()
    if text.startswith("bad"):
        raise DataError(row["path"], "unreadable signal", record=row["record_id"])
    v = float(text)
    return (np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) + v) * scale


def load_counting(row: dict, counter: str, scale: float = 1.0) -> np.ndarray:
    """load_txt that appends one line per call to ``counter`` (works across processes)."""
    with open(counter, "a") as f:
        f.write(row["record_id"] + "\n")
    return load_txt(row, scale)


def load_bug_after(row: dict, k: int) -> np.ndarray:
    """A bug (not a DataError) from record k on."""
    if int(row["record_id"][1:]) >= k:
        raise RuntimeError("bug in the loader")
    return load_txt(row)


def load_die_after(row: dict, k: int) -> np.ndarray:
    """Simulates a hard crash (process killed) at record k."""
    if int(row["record_id"][1:]) >= k:
        os._exit(3)
    return load_txt(row)


def load_wrong_shape(row: dict) -> np.ndarray:
    return np.zeros((2, 2))


def calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def src(tmp_path):
    """10 source files (r3 and r7 bad) and their manifest."""
    d = tmp_path / "src"
    d.mkdir()
    rows = []
    for i in range(10):
        p = d / f"r{i}.txt"
        p.write_text("bad" if i in (3, 7) else str(i * 10))
        rows.append({"dataset": "toy", "record_id": f"r{i}", "subject_id": str(100 + i), "path": str(p),
                     "time": pd.Timestamp("2180-01-01") + pd.Timedelta(hours=i), "split": pd.NA})
    return pd.DataFrame(rows)


def expected(i: int, scale: float = 1.0) -> np.ndarray:
    return (np.arange(12, dtype=np.float64).reshape(SHAPE) + i * 10) * scale


def test_build_values_exclusions_and_layout(src, tmp_path):
    q = QualityLog()
    c = build("ecg", src, load_txt, SHAPE, "float32", {"fs": 100}, tmp_path / "cache", quality=q, progress=False)
    assert isinstance(c, CachedArrays) and not c.reused
    assert len(c) == 8 and c.array.shape == (8, *SHAPE) and c.array.dtype == np.float32
    assert not c.array.flags.writeable
    assert c.manifest["record_id"].tolist() == [f"r{i}" for i in range(10) if i not in (3, 7)]
    assert c.manifest["index"].tolist() == list(range(8))
    for i in (0, 4, 9):
        np.testing.assert_array_equal(c.get(f"r{i}"), load_txt(src.iloc[i].to_dict()).astype(np.float32))
    assert c.excluded["record_id"].tolist() == ["r3", "r7"]
    assert "unreadable signal" in c.excluded["reason"].iloc[0] and "r3" in c.excluded["reason"].iloc[0]
    assert q.count("ecg", "cache:ecg", "unreadable signal") == 2
    with pytest.raises(KeyError, match="excluded"):
        c.get("r3")
    d = c.path
    assert d.parent == tmp_path / "cache" and d.name == f"ecg-{c.meta['key'][:16]}"
    assert {p.name for p in d.iterdir()} == {"data.npy", "manifest.parquet", "excluded.parquet", "meta.json"}
    meta = json.loads((d / "meta.json").read_text())
    assert meta["params"] == {"fs": 100} and meta["counts"] == {"input": 10, "ok": 8, "excluded": 2}
    assert list(pd.read_parquet(d / "excluded.parquet").columns[:2]) == ["record_id", "reason"]
    # the .npy on disk is a normal array file of exactly n_ok rows (header shrunk, file truncated)
    assert np.load(d / "data.npy").shape == (8, *SHAPE)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [d.name]          # no temp dir left


def test_reuse_does_not_call_load_fn(src, tmp_path):
    counter = tmp_path / "calls.txt"
    fn = functools.partial(load_counting, counter=str(counter))
    q1, q2 = QualityLog(), QualityLog()
    a = build("ecg", src, fn, SHAPE, "float32", {"fs": 100}, tmp_path / "c", quality=q1, progress=False)
    assert calls(counter) == 10
    src2 = src.copy()
    src2["split"] = "train"                        # a non-key column changed: reuse, but current rows returned
    b = build("ecg", src2, fn, SHAPE, "float32", {"fs": 100}, tmp_path / "c", quality=q2, progress=False)
    assert calls(counter) == 10 and b.reused and b.path == a.path
    assert (b.manifest["split"] == "train").all() and b.manifest["index"].tolist() == list(range(8))
    np.testing.assert_array_equal(np.asarray(a.array), np.asarray(b.array))
    assert q2.count("ecg", "cache:ecg") == q1.count("ecg", "cache:ecg") == 2      # exclusions re-logged
    # ArrayCache front end reuses the same directory
    c = ArrayCache.from_config({"cache_dir": str(tmp_path / "c"), "n_workers": 0, "progress": False}).build(
        "ecg", src, fn, SHAPE, "float32", {"fs": 100})
    assert c.reused and calls(counter) == 10


def test_rebuild_on_param_source_and_order_change(src, tmp_path):
    counter = tmp_path / "calls.txt"
    fn = functools.partial(load_counting, counter=str(counter))
    kw = dict(cache_dir=tmp_path / "c", progress=False)
    a = build("ecg", src, fn, SHAPE, "float32", {"fs": 100}, **kw)
    b = build("ecg", src, fn, SHAPE, "float32", {"fs": 500}, **kw)            # param changed
    assert calls(counter) == 20 and b.path != a.path and a.path.exists()
    p = Path(src.loc[0, "path"])
    p.write_text("1000")                                                       # a source file changed
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    c = build("ecg", src, fn, SHAPE, "float32", {"fs": 500}, **kw)
    assert calls(counter) == 30 and c.path not in (a.path, b.path)
    np.testing.assert_array_equal(c.get("r0"), (np.arange(12).reshape(SHAPE) + 1000).astype(np.float32))
    d = build("ecg", src.iloc[::-1], fn, SHAPE, "float32", {"fs": 500}, **kw)  # record order changed
    assert calls(counter) == 40 and d.manifest["record_id"].iloc[0] == "r9"
    e = build("ecg", src, fn, SHAPE, "float16", {"fs": 500}, **kw)             # dtype is part of the key
    assert calls(counter) == 50 and e.array.dtype == np.float16


def test_generic_exception_propagates_and_leaves_no_cache(src, tmp_path):
    cdir = tmp_path / "c"
    with pytest.raises(RuntimeError, match="bug in the loader"):
        build("ecg", src, functools.partial(load_bug_after, k=5), SHAPE, "float32", {}, cdir, progress=False)
    assert list(cdir.iterdir()) == []                                          # no valid (or half) cache
    with pytest.raises(ValueError, match="shape"):
        build("ecg", src, load_wrong_shape, SHAPE, "float32", {}, cdir, progress=False)
    assert list(cdir.iterdir()) == []
    ok = build("ecg", src, load_txt, SHAPE, "float32", {}, cdir, progress=False)
    assert len(ok) == 8 and [p.name for p in cdir.iterdir()] == [ok.path.name]


def _crash_build(manifest, cdir):
    build("ecg", manifest, functools.partial(load_die_after, k=5), SHAPE, "float32", {}, cdir, progress=False)


def test_hard_crash_leaves_only_a_stale_temp_dir_that_is_cleaned(src, tmp_path):
    cdir = tmp_path / "c"
    proc = mp.get_context("fork").Process(target=_crash_build, args=(src, cdir))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 3
    left = list(cdir.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".ecg-") and ".tmp-" in left[0].name
    # the half-written temp dir is never taken for a cache; the next build removes it (owner pid gone)
    counter = tmp_path / "calls.txt"
    fn = functools.partial(load_counting, counter=str(counter))
    ok = build("ecg", src, fn, SHAPE, "float32", {}, cdir, progress=False)
    assert calls(counter) == 10 and len(ok) == 8
    assert [p.name for p in cdir.iterdir()] == [ok.path.name]
    # an alive owner's temp dir is left alone
    live = cdir / f".ecg-0123456789abcdef.tmp-{cache.socket.gethostname()}-{os.getpid()}-abcd1234"
    live.mkdir()
    assert clean_stale(cdir, "ecg") == [] and live.exists()


def test_parallel_equals_serial(src, tmp_path):
    q0, q2 = QualityLog(), QualityLog()
    s = build("ecg", src, functools.partial(load_txt, scale=0.5), SHAPE, "float32", {"v": 1}, tmp_path / "a",
              quality=q0, progress=False)
    p = build("ecg", src, functools.partial(load_txt, scale=0.5), SHAPE, "float32", {"v": 1}, tmp_path / "b",
              quality=q2, n_workers=2, chunk_size=1, progress=False)
    np.testing.assert_array_equal(np.asarray(s.array), np.asarray(p.array))
    assert s.manifest.drop(columns="time").equals(p.manifest.drop(columns="time"))
    assert s.excluded.equals(p.excluded) and q2.count("ecg") == q0.count("ecg") == 2
    np.testing.assert_array_equal(p.get("r9"), expected(9, 0.5).astype(np.float32))
    with pytest.raises(RuntimeError, match="bug in the loader"):               # bugs propagate from workers
        build("ecg", src, functools.partial(load_bug_after, k=5), SHAPE, "float32", {}, tmp_path / "c",
              n_workers=2, chunk_size=2, progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_all_excluded_and_duplicate_ids(src, tmp_path):
    bad = src.copy()
    for p in bad["path"]:
        Path(p).write_text("bad")
    c = build("ecg", bad, load_txt, SHAPE, "float32", {}, tmp_path / "c", progress=False)
    assert len(c) == 0 and c.array.shape == (0, *SHAPE) and len(c.excluded) == 10
    with pytest.raises(DataError, match="duplicate"):
        build("ecg", pd.concat([src, src.iloc[:1]]), load_txt, SHAPE, "float32", {}, tmp_path / "d", progress=False)


@pytest.mark.parametrize("in_place", [True, False])
def test_shrink_npy(tmp_path, in_place):
    """Header rewrite + truncate, and the copy used when the new header would change length."""
    p = tmp_path / "data.npy"
    m = np.lib.format.open_memmap(p, mode="w+", dtype="float32", shape=(10, 2))
    m[:] = np.arange(20).reshape(10, 2)
    m.flush()
    del m
    cache._shrink_npy(p, 4, in_place=in_place)
    np.testing.assert_array_equal(np.load(p), np.arange(8, dtype=np.float32).reshape(4, 2))
    assert p.stat().st_size == len(np.lib.format.magic(1, 0)) + 2 + 118 + 4 * 2 * 4
    assert [x.name for x in tmp_path.iterdir()] == ["data.npy"]


# --------------------------------------------------------------------------------------------------
# sharded builds (cache_shards): shards on several machines, joined into the one-machine cache
# --------------------------------------------------------------------------------------------------
def _same_cache(a: Path, b: Path) -> None:
    """Byte-for-byte the same cache directory (meta.json: all but the creation time)."""
    assert a.name == b.name and {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()}
    for f in ("data.npy", "manifest.parquet", "excluded.parquet"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mb = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    assert ma.pop("created") and mb.pop("created") and ma == mb


@pytest.mark.parametrize("n", [1, 2, 3, 12])
def test_shards_joined_equal_one_machine_build(src, tmp_path, n):
    """n shards (12 > 10 records: some empty), built out of order, joined: the one-machine cache byte for byte;
    a later build reuses it without loading a record, and the shards are gone."""
    from medbind_lib.cache_shards import CacheShard, build_shard, join_shards, shard_rows

    counter = tmp_path / "calls.txt"
    fn = functools.partial(load_counting, counter=str(counter))
    args = ("ecg", src, fn, SHAPE, "float32", {"fs": 100})
    q1, q2 = QualityLog(), QualityLog()
    one = build(*args, tmp_path / "one", quality=q1, progress=False)
    sdir = tmp_path / "sharded"
    shards = [build_shard(*args, sdir, (k, n), progress=False) for k in reversed(range(n))]
    assert all(isinstance(s, CacheShard) and not s.reused for s in shards)
    assert sorted(s.rows for s in shards) == [shard_rows(10, k, n) for k in range(n)]
    assert sum(s.counts["input"] for s in shards) == 10 and calls(counter) == 20
    assert build_shard(*args, sdir, f"0/{n}", progress=False).reused and calls(counter) == 20   # idempotent
    joined = join_shards(*args, sdir, n, quality=q2, progress=False)
    _same_cache(one.path, joined.path)
    assert [p.name for p in sdir.iterdir()] == [one.path.name]                                    # shards removed
    assert joined.manifest.drop(columns="time").equals(one.manifest.drop(columns="time"))
    assert q2.count("ecg", "cache:ecg") == q1.count("ecg", "cache:ecg") == 2
    again = build(*args, sdir, progress=False)
    assert again.reused and calls(counter) == 20
    np.testing.assert_array_equal(again.get("r9"), expected(9).astype(np.float32))


def test_sharded_context_routes_build_and_join_cli_style(src, tmp_path):
    """Inside ``sharded()`` plain ``build`` calls (what cohort makes) build a shard or join; all-excluded
    records and a parallel loader give the same bytes too; --keep-shards keeps them."""
    from medbind_lib.cache_shards import CacheShard, parse_shard, sharded

    bad = src.copy()
    for p in bad["path"].iloc[:6]:
        Path(p).write_text("bad")                  # shard 0 of 2 has no loadable record at all
    args = ("ecg", bad, functools.partial(load_txt, scale=0.5), SHAPE, "float32", {"v": 1})
    one = build(*args, tmp_path / "one", progress=False)
    cache_dir = ArrayCache(tmp_path / "sh", n_workers=2, progress=False)
    for k in (1, 0):
        with sharded(shard=f"{k}/2"):
            s = cache_dir.build(*args, chunk_size=1)
        assert isinstance(s, CacheShard) and s.shard == (k, 2)
    with sharded(join=2, keep_shards=True):
        joined = cache_dir.build(*args)
    _same_cache(one.path, joined.path)
    assert len(joined) == 3 and len(list((tmp_path / "sh").glob("ecg-*.shard-*-of-2"))) == 2
    with sharded(shard="1/2"):                     # the whole cache exists: nothing to build
        assert cache_dir.build(*args).complete
    assert not isinstance(build(*args, tmp_path / "sh", progress=False), CacheShard)    # context left: normal
    for spec in ("2/2", "-1/2", "a/b", "1"):
        with pytest.raises(Exception, match="K/N"):
            parse_shard(spec)
    with pytest.raises(Exception, match="exactly one"):
        with sharded():
            pass
    with pytest.raises(Exception, match="N >= 1"), sharded(join=0):
        build(*args, tmp_path / "sh", progress=False)


def test_join_names_missing_shards_and_shards_of_another_configuration(src, tmp_path):
    from medbind_lib.cache_shards import build_shard, join_shards

    cdir = tmp_path / "c"
    args = ("ecg", src, load_txt, SHAPE, "float32")
    s0 = build_shard(*args, {"fs": 100}, cdir, "0/2", progress=False)
    with pytest.raises(DataError, match=r"missing \['ecg-[0-9a-f]{16}\.shard-1-of-2'\]"):
        join_shards(*args, {"fs": 100}, cdir, 2, progress=False)
    # other params: the fs=100 shard is named, with what differs
    with pytest.raises(DataError) as e:
        join_shards(*args, {"fs": 500}, cdir, 2, progress=False)
    assert s0.path.name in str(e.value) and "other name, params" in str(e.value)
    # a shard of another split count; source files changed since the shards were built (a copy without mtimes)
    build_shard(*args, {"fs": 100}, cdir, "2/3", progress=False)
    build_shard(*args, {"fs": 100}, cdir, "1/2", progress=False)
    p = Path(src.loc[0, "path"])
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    with pytest.raises(DataError) as e:
        join_shards(*args, {"fs": 100}, cdir, 2, progress=False)
    msg = str(e.value)
    assert s0.path.name in msg and "other source files' size or mtime" in msg
    assert "other name, params" not in msg and "other record ids" not in msg
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))          # back to the files the shards were built from
    with pytest.raises(DataError, match=r"shard-0-of-2 \(one of 2 shards, this join expects 3\)"):
        join_shards(*args, {"fs": 100}, cdir, 3, progress=False)
    ok = join_shards(*args, {"fs": 100}, cdir, 2, progress=False)
    assert len(ok) == 8 and not ok.reused
    assert sorted(p.name for p in cdir.iterdir()) == sorted([ok.path.name, s0.path.name.replace("0-of-2", "2-of-3")])
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".")] == []


def test_join_names_a_shard_that_holds_other_rows(src, tmp_path):
    from medbind_lib.cache_shards import build_shard, join_shards

    args = ("ecg", src, load_txt, SHAPE, "float32", {})
    s1 = build_shard(*args, tmp_path, "1/2", progress=False)
    shutil.copytree(s1.path, Path(str(s1.path).replace("1-of-2", "0-of-2")))
    with pytest.raises(DataError, match=r"unusable \['ecg-[0-9a-f]{16}\.shard-0-of-2 \(holds shard 1 of 2 "
                                        r"\(rows \[5, 10\] of 10\), expected 0 of 2 \(rows \[0, 5\] of 10\)\)'\]"):
        join_shards(*args, tmp_path, 2, progress=False)
    assert not any(p.name.startswith("ecg-") and ".shard" not in p.name for p in tmp_path.iterdir())


def test_cli_shards_and_join_equal_notebook_01s_cache(tmp_path, capsys):
    """``python -m medbind_lib.cache_shards`` on the smoke profile: two shards and a join give the cache notebook 01's
    ``cohort.build_caches`` writes (same directory name, same bytes); a join with a shard missing exits 2 naming it."""
    from test_data import ensure_smoke_artifacts

    from medbind_lib import cache_shards, cohort
    from medbind_lib.config import load_profile

    ensure_smoke_artifacts(load_profile("smoke", overrides={"progress": False}))
    sets = ["--set", f"cache_dir={tmp_path / 'sharded'}", "progress=false"]
    cli = ["--profile", "smoke", "--dataset", "covid"]
    assert cache_shards.main([*cli, "--shard", "1/2", *sets]) == 0
    assert cache_shards.main([*cli, "--join", "2", *sets]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and ".shard-0-of-2'" in err and "missing" in err
    assert cache_shards.main([*cli, "--shard", "0/2", *sets]) == 0
    assert cache_shards.main([*cli, "--join", "2", *sets]) == 0
    cfg = load_profile("smoke", notebook="01", overrides={"progress": False, "cache_dir": str(tmp_path / "one")})
    one = cohort.build_caches(cfg, cache_shards.notebook_manifests(cfg, ["covid"]), QualityLog())["covid"]
    _same_cache(one.path, tmp_path / "sharded" / one.path.name)
    assert [p.name for p in (tmp_path / "sharded").iterdir()] == [one.path.name]
