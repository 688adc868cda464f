from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.sources.fingerprint import tree_fingerprint
from lexdpr_pipeline.storage import atomic_write_bytes, frame_content_hash, write_parquet


def test_atomic_write_leaves_no_temp_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "x.bin"
    atomic_write_bytes(target, b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"  # the old content survives a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]  # no temp files left


def test_parquet_roundtrip_and_content_hash(tmp_path: Path) -> None:
    a = pl.DataFrame({"id": ["b", "a"], "tags": [["x"], []]})
    path = write_parquet(a, tmp_path / "t.parquet")
    assert pl.read_parquet(path).equals(a)
    assert frame_content_hash(a) == frame_content_hash(a.reverse())  # order-insensitive
    assert frame_content_hash(a) != frame_content_hash(a.with_columns(pl.lit("z").alias("id")))


def test_tree_fingerprint_tracks_content_not_mtime(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "a.md"
    f.write_text("one", encoding="utf-8")
    first, n = tree_fingerprint(tmp_path)
    assert n == 1
    f.write_text("one", encoding="utf-8")  # rewritten, same content
    assert tree_fingerprint(tmp_path)[0] == first
    f.write_text("two", encoding="utf-8")
    assert tree_fingerprint(tmp_path)[0] != first
    assert tree_fingerprint(tmp_path / "nope") == ("absent", 0)
