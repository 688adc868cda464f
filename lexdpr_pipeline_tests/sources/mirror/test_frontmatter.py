from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lexdpr_pipeline.sources.mirror.frontmatter import (
    MirrorFormatError,
    as_date,
    as_str,
    as_str_list,
    parse_front_matter,
    read_markdown,
    split_front_matter,
)

LAW_WITH_ATTACHMENTS = """---
제목: 근로기준법
법령MST: 284443
법령ID: '001872'
공포번호: '21472'
소관부처:
- 고용노동부
공포일자: 2026-03-17
첨부파일:
- 별표번호: '0000'
  별표구분: 별표
  제목: 신체장해등급과 재해보상표(제80조 관련)
- 제목: 다른 별표
---

# 근로기준법
"""


def test_split_returns_yaml_and_body() -> None:
    yaml_text, body = split_front_matter("---\na: 1\n---\n\n# Title\ntext\n")
    assert yaml_text.strip() == "a: 1"
    assert body == "# Title\ntext\n"


def test_nested_attachment_titles_do_not_overwrite_the_law_title() -> None:
    meta, body = parse_front_matter(LAW_WITH_ATTACHMENTS)
    assert meta["제목"] == "근로기준법"
    assert [a["제목"] for a in meta["첨부파일"]] == ["신체장해등급과 재해보상표(제80조 관련)", "다른 별표"]
    assert body.startswith("# 근로기준법")


def test_ids_stay_strings_as_spelt() -> None:
    meta, _ = parse_front_matter(LAW_WITH_ATTACHMENTS)
    assert meta["법령ID"] == "001872"
    assert meta["공포번호"] == "21472"
    assert meta["법령MST"] == "284443"  # unquoted, still a string
    # yaml.safe_load would read an unquoted 001706 as the octal int 966
    meta, _ = parse_front_matter("---\n법령ID: 001706\n판례일련번호: 145683\n---\n")
    assert meta == {"법령ID": "001706", "판례일련번호": "145683"}


def test_dates_as_strings_or_yaml_dates() -> None:
    meta, _ = parse_front_matter("---\n공포일자: 2026-03-17\n선고일자: '2003-11-14'\n시행일자: 2026-02-30\n---\n")
    assert as_date(meta["공포일자"]) == dt.date(2026, 3, 17)
    assert as_date(meta["선고일자"]) == dt.date(2003, 11, 14)
    assert as_date(meta["시행일자"]) is None  # impossible date: no exception, just empty


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(2024, 1, 2), dt.date(2024, 1, 2)),
        (dt.datetime(2024, 1, 2, 10, 30), dt.date(2024, 1, 2)),
        ("2024-01-02", dt.date(2024, 1, 2)),
        ("2024.1.2", dt.date(2024, 1, 2)),
        ("2024. 1. 2.", dt.date(2024, 1, 2)),
        ("20240102", dt.date(2024, 1, 2)),
        (20240102, dt.date(2024, 1, 2)),
        (None, None),
        ("", None),
        ("unknown", None),
        ("0000-00-00", None),
    ],
)
def test_as_date(value: object, expected: dt.date | None) -> None:
    assert as_date(value) == expected


def test_scalar_helpers() -> None:
    assert as_str(None) == ""
    assert as_str(" 시행 ") == "시행"
    assert as_str_list(["법무부", "", None, "행정안전부"]) == ["법무부", "행정안전부"]
    assert as_str_list("법무부") == ["법무부"]
    assert as_str_list(None) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# no front matter\n", "no YAML front matter"),
        ("", "no YAML front matter"),
        ("---\n제목: x\n", "unterminated"),
        ("---\n제목: [unclosed\n---\n", "invalid YAML"),
        ("---\n- a\n- b\n---\n", "not a mapping"),
        ("---\n---\nbody\n", "empty YAML front matter"),
    ],
)
def test_malformed_front_matter(text: str, reason: str) -> None:
    with pytest.raises(MirrorFormatError, match=reason):
        parse_front_matter(text)


def test_read_markdown_normalizes_and_rejects_binary(tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_bytes("\ufeff---\r\na: 1\r\n---\r\n본문\r\n".encode())
    assert read_markdown(good) == "---\na: 1\n---\n본문\n"
    binary = tmp_path / "binary.md"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(MirrorFormatError, match="binary"):
        read_markdown(binary)
    latin = tmp_path / "latin.md"
    latin.write_bytes("---\na: é\n---\n".encode("latin-1"))
    with pytest.raises(MirrorFormatError, match="UTF-8"):
        read_markdown(latin)
