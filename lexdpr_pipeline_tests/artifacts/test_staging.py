"""The one folder-staging primitive: keep / replace semantics, rollback, and nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lexdpr_pipeline.artifacts import staged_folder
from lexdpr_pipeline.artifacts import staging as staging_mod


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_new_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "a" / "key"
    with staged_folder(target) as tmp:
        assert not target.exists() and tmp.parent == target.parent
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.txt").write_text("x")
    assert (target / "sub" / "f.txt").read_text() == "x"
    assert _leftovers(target.parent) == []


def test_keep_drops_the_fresh_copy_when_the_key_exists(tmp_path: Path) -> None:
    target = tmp_path / "key"
    target.mkdir()
    (target / "f").write_text("old")
    with staged_folder(target, on_exists="keep") as tmp:
        (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_replace_swaps_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale").write_text("old")
    with staged_folder(target, on_exists="replace") as tmp:
        (tmp / "f").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["f"]
    assert _leftovers(tmp_path) == []


def test_an_error_in_the_block_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "f").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), staged_folder(target, on_exists="replace") as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("boom")
    assert (target / "f").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "f").write_text("old")
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if Path(dst) == target and ".tmp-" in Path(src).name:  # the new folder's rename
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(staging_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"), staged_folder(target, on_exists="replace") as tmp:
        (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "old"  # rolled back
    assert len(calls) == 3  # old aside, new in (failed), old back
    assert _leftovers(tmp_path) == []


def test_replace_refuses_a_folder_that_is_not_the_expected_artifact(tmp_path: Path) -> None:
    target = tmp_path / "home"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    is_artifact = lambda p: (p / "meta.json").is_file()  # noqa: E731
    with (
        pytest.raises(FileExistsError, match="not an artifact"),
        staged_folder(target, on_exists="replace", replaceable=is_artifact),
    ):
        pytest.fail("the block must not run")
    assert (target / "precious.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []


def test_unknown_mode_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_exists"), staged_folder(tmp_path / "x", on_exists="merge"):  # type: ignore[arg-type]
        pass
