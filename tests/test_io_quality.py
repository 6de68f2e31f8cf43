"""Shared helpers: tolerant CSV reading, duplicate checks, atomic writes, the data-quality log."""
import gzip
import os
import stat

import pandas as pd
import pytest

from medbind_lib.errors import DataError
from medbind_lib.io import (atomic_path, check_unique, find_table, read_table, write_csv_atomic, write_json_atomic,
                            write_parquet_atomic)
from medbind_lib.quality import QualityLog


def test_find_table_prefers_csv_then_gz(tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"x\n1\n"))
    assert find_table(tmp_path, "a").name == "a.csv.gz"
    (tmp_path / "a.csv").write_text("x\n1\n")
    assert find_table(tmp_path, "a").name == "a.csv"
    with pytest.raises(DataError, match=r"b\.csv\[\.gz\].*not found"):
        find_table(tmp_path, "b")


def test_read_table_by_name_and_missing_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("extra,b,a\n9,2,1\n")
    df = read_table(p, ["a", "b"], optional=["c"], dtype={"a": str})
    assert list(df.columns) == ["a", "b"] and df.loc[0, "a"] == "1"
    with pytest.raises(DataError) as e:
        read_table(p, ["a", "renamed"])
    assert "t.csv" in str(e.value) and "renamed" in str(e.value)


def test_read_table_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        read_table(p, ["a"])


def test_check_unique_names_duplicates(tmp_path):
    df = pd.DataFrame({"id": [1, 2, 2]})
    with pytest.raises(DataError, match=r"duplicate id.*'id': 2"):
        check_unique(df, "id", tmp_path / "x.csv")
    check_unique(df.drop_duplicates(), "id", "x")


def test_atomic_path_leaves_nothing_on_crash(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.csv.gz")
    assert pd.read_csv(tmp_path / "t.csv.gz").a.tolist() == [1]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    """Atomic writes get the mode a plain open() would (mkstemp alone gives 0600 whatever the umask)."""
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "env.json", {"a": 1})
        write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
        with atomic_path(tmp_path / "ck.pt") as tmp:
            tmp.write_bytes(b"x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    for name in ("env.json", "t.parquet", "ck.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_quality_log_counts_and_examples():
    q = QualityLog(max_examples=2)
    q.seen("ds", "load", 10)
    q.exclude("ds", "load", "bad header", records=["r1", "r2", "r3"])
    q.exclude("ds", "load", "bad header", n=2)
    q.exclude("ds", "load", "nothing", records=[])
    other = QualityLog()
    other.exclude("ds2", "link", "no admission", records=["x"])
    q.merge(other)
    df = q.to_frame()
    row = df[df.reason == "bad header"].iloc[0]
    assert (row.records, row.seen, row.examples, row.action) == (5, 10, "r1, r2", "excluded")
    assert q.count("ds") == 5 and q.count() == 6 and len(df) == 2


def test_flagged_rows_are_kept_not_excluded():
    q = QualityLog()
    q.exclude("ds", "link", "gone", records=["a"])
    q.flag("ds", "link", "no admission (kept)", records=["b", "c"])
    df = q.to_frame().set_index("reason")
    assert df.loc["gone", "action"] == "excluded" and df.loc["no admission (kept)", "action"] == "kept"
    assert q.count("ds", flagged=False) == 1 and q.count("ds", flagged=True) == 2 and q.count("ds") == 3
