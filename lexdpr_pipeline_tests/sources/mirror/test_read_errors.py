"""read_statutes / read_precedents on small mirrors in tmp_path: bad files are skipped with a reason, never raised;
duplicates are resolved deterministically and recorded; the mirror folders are found from a parent folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lexdpr_pipeline.sources.mirror import find_mirror_roots, read_precedents, read_statutes


def _law(
    law_id: str = "'000001'", title: str = "좋은법", date: str = "2024-01-02", mst: str = "10", body: str = ""
) -> str:
    return (
        f"---\n제목: {title}\n법령MST: {mst}\n법령ID: {law_id}\n법령구분: 법률\n소관부처:\n- 법무부\n"
        f"공포일자: {date}\n공포번호: '1'\n시행일자: {date}\n상태: 시행\n첨부파일: []\n---\n\n# {title}\n\n"
        + (body or "##### 제1조 (목적)\n\n목적.\n\n##### 제2조\n\n삭제 <2020.1.1>\n\n## 부칙\n\n제1조 시행.\n")
    )


def _prec(serial: str = "'100'", case_no: str = "2020다1") -> str:
    return (
        f"---\n판례일련번호: {serial}\n사건번호: {case_no}\n사건명: 손해배상\n법원명: 대법원\n법원등급: 대법원\n"
        "사건종류: 민사\n선고일자: 2021-01-02\n---\n\n# 손해배상\n\n## 판시사항\n\n쟁점.\n\n## 판례내용\n\n본문.\n"
    )


def _write(root: Path, rel: str, content: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


BAD_STATUTES: dict[str, tuple[str | bytes, str]] = {
    "kr/가법/법률.md": ("# 가법\n\n##### 제1조\n\n본문.\n", "no YAML front matter"),
    "kr/나법/법률.md": ("---\n제목: [나법\n법령ID: '2'\n---\n##### 제1조\n\n본문.\n", "invalid YAML"),
    "kr/다법/법률.md": (_law(law_id="''"), "no 법령ID"),
    "kr/라법/법률.md": (bytes(range(256)) * 4, "binary"),
    "kr/마법/법률.md": (b"", "no YAML front matter"),
    "kr/바법/법률.md": ("---\n제목: 바법\n법령ID: '6'\n---\n".encode("cp949") + "본문".encode("cp949"), "UTF-8"),
    "kr/사법/법률.md": (_law(law_id="'7'", body="## 제1장 총칙\n\n조문 없는 글.\n"), "no articles"),
    "kr/아법/법률.md": (
        _law(law_id="'8'", body="\n").replace("첨부파일: []", "첨부파일:\n- 제목: 서식\n- 제목: 별표"),
        "attachment-only",
    ),
}


def test_bad_statute_files_are_skipped_with_reasons(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "legalize-kr"
    _write(root, "kr/좋은법/법률.md", _law())
    _write(root, "kr/좋은법/시행령.md", _law(law_id="'000002'", title="좋은법 시행령"))
    _write(root, "README.md", "# not a law\n")
    for rel, (content, _) in BAD_STATUTES.items():
        _write(root, rel, content)
    with caplog.at_level(logging.WARNING):
        result = read_statutes(root, progress=False)
    assert [r.article_id for r in result.records] == [
        "law:000001:1",
        "law:000001:2",
        "law:000002:1",
        "law:000002:2",
    ]
    assert [r.source_ref for r in result.records] == ["kr/좋은법/법률.md"] * 2 + ["kr/좋은법/시행령.md"] * 2
    reasons = {s.ref: s.reason for s in result.skipped}
    assert set(reasons) == set(BAD_STATUTES)
    for rel, (_, expected) in BAD_STATUTES.items():
        assert expected in reasons[rel], (rel, reasons[rel])
    for rel in set(BAD_STATUTES) - {"kr/아법/법률.md"}:  # the attachment-only shell is an info, not a warning
        assert rel in caplog.text


def test_statute_max_files_and_progress(tmp_path: Path) -> None:
    root = tmp_path / "legalize-kr"
    for i in range(3):
        _write(root, f"kr/법{i}/법률.md", _law(law_id=f"'{i + 1:06d}'", title=f"법{i}"))
    result = read_statutes(root, max_files=2, progress=True)
    assert sorted({r.law_name for r in result.records}) == ["법0", "법1"]
    assert read_statutes(root, max_files=0, progress=False).records == []


def test_duplicate_law_id_keeps_the_newer_version(tmp_path: Path) -> None:
    root = tmp_path / "legalize-kr"
    # "가" sorts first but is the older version: the newer 공포일자 wins, whatever the path order
    _write(root, "kr/가/법률.md", _law(law_id="'000009'", title="옛법", date="1990-01-01", mst="5"))
    _write(root, "kr/나/법률.md", _law(law_id="'000009'", title="새법", date="2020-01-01", mst="6"))
    result = read_statutes(root, progress=False)
    assert {r.law_name for r in result.records} == {"새법"}
    assert len(result.records) == 2
    [skip] = result.skipped
    assert skip.ref == "kr/가/법률.md"
    assert "duplicate 법령ID 000009" in skip.reason and "kr/나/법률.md" in skip.reason


def test_duplicate_article_in_one_file_keeps_the_first(tmp_path: Path) -> None:
    root = tmp_path / "legalize-kr"
    _write(root, "kr/가/법률.md", _law(body="##### 제1조 (가)\n\n첫째.\n\n##### 제1조 (가)\n\n둘째.\n"))
    result = read_statutes(root, progress=False)
    assert [r.text for r in result.records] == ["첫째."]
    [skip] = result.skipped
    assert skip.ref == "kr/가/법률.md#1"
    assert "duplicate article id law:000001:1" in skip.reason


BAD_PRECEDENTS: dict[str, tuple[str | bytes, str]] = {
    "민사/대법원/no-front.md": ("# 제목\n\n## 판례내용\n\n본문.\n", "no YAML front matter"),
    "민사/대법원/broken.md": ("---\n판례일련번호: [1\n---\n", "invalid YAML"),
    "민사/대법원/no-serial.md": (_prec().replace("판례일련번호: '100'\n", ""), "no 판례일련번호"),
    "민사/대법원/bad-serial.md": (_prec(serial="'12a'"), "digits"),
    "민사/하급심/binary.md": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    "형사/대법원/empty.md": (b"", "no YAML front matter"),
}


def test_bad_precedent_files_are_skipped_with_reasons(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "precedent-kr"
    _write(root, "민사/대법원/2020다1.md", _prec())
    _write(root, "민사/대법원/2020다2 내지 3.md", _prec(serial="'101'", case_no="2020다2 내지 3"))
    _write(root, "README.md", "# Precedent KR\n")
    for rel, (content, _) in BAD_PRECEDENTS.items():
        _write(root, rel, content)
    with caplog.at_level(logging.WARNING):
        result = read_precedents(root, progress=False)
    assert [(r.prec_id, r.source_ref) for r in result.records] == [
        ("prec:100", "민사/대법원/2020다1.md"),
        ("prec:101", "민사/대법원/2020다2 내지 3.md"),
    ]
    reasons = {s.ref: s.reason for s in result.skipped}
    assert set(reasons) == set(BAD_PRECEDENTS)
    for rel, (_, expected) in BAD_PRECEDENTS.items():
        assert expected in reasons[rel], (rel, reasons[rel])
        assert rel in caplog.text


def test_duplicate_precedent_keeps_the_first_path(tmp_path: Path) -> None:
    root = tmp_path / "precedent-kr"
    _write(root, "민사/대법원/b.md", _prec(serial="'7'", case_no="B"))
    _write(root, "민사/대법원/a.md", _prec(serial="'007'", case_no="A"))  # same number, spelt differently
    result = read_precedents(root, progress=False)
    assert [(r.prec_id, r.case_no) for r in result.records] == [("prec:7", "A")]
    [skip] = result.skipped
    assert skip.ref == "민사/대법원/b.md"
    assert "duplicate prec:7" in skip.reason and "민사/대법원/a.md" in skip.reason


def test_precedent_max_files(tmp_path: Path) -> None:
    root = tmp_path / "precedent-kr"
    for i in range(5):
        _write(root, f"민사/대법원/{i}.md", _prec(serial=f"'{i + 1}'"))
    assert [r.prec_id for r in read_precedents(root, max_files=3, progress=False).records] == [
        "prec:1",
        "prec:2",
        "prec:3",
    ]


def test_find_mirror_roots(tmp_path: Path) -> None:
    parent = tmp_path / "mirror"
    _write(parent / "legalize-kr", "kr/가/법률.md", _law())
    _write(parent / "precedent-kr", "민사/대법원/1.md", _prec())
    statutes, precedents = parent / "legalize-kr", parent / "precedent-kr"
    assert find_mirror_roots(parent) == (statutes, precedents)
    assert find_mirror_roots(statutes) == (statutes, None)
    assert find_mirror_roots(precedents) == (None, precedents)
    assert find_mirror_roots(tmp_path / "absent") == (None, None)
    # the readers accept the parent folder too, and refer to files relative to the checkout
    assert {r.source_ref for r in read_statutes(parent, progress=False).records} == {"kr/가/법률.md"}
    assert [r.source_ref for r in read_precedents(parent, progress=False).records] == ["민사/대법원/1.md"]


def test_find_mirror_roots_by_layout_under_other_names(tmp_path: Path) -> None:
    _write(tmp_path / "laws-clone", "kr/가/법률.md", _law())
    _write(tmp_path / "cases-clone", "형사/하급심/1.md", _prec())
    assert find_mirror_roots(tmp_path) == (tmp_path / "laws-clone", tmp_path / "cases-clone")


def test_missing_mirror_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_statutes(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError):
        read_precedents(tmp_path / "absent", progress=False)


def test_shared_sample_roots(corpus_dir: Path) -> None:
    assert find_mirror_roots(corpus_dir) == (corpus_dir / "legalize-kr", corpus_dir / "precedent-kr")
