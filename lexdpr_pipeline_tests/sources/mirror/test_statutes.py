"""legalize-kr statute reader: the whole ../shared sample, then small inline snippets."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from lexdpr_pipeline.sources.mirror import MirrorFormatError, parse_statute_markdown
from lexdpr_pipeline.sources.records import StatuteArticle, to_frame
from lexdpr_pipeline_tests.sources.mirror.conftest import TimedRead

ARTICLE_HEADING = re.compile(r"^##### 제(\d+)조(?:의(\d+))?(?: ?\((.*)\))?$", re.M)
ADDENDA_HEADING = re.compile(r"^## 부칙$", re.M)
DELETED = re.compile(r"^삭제 <[^>]+>$")
SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
BOLD_MARKER = re.compile(r"^\*\*[^*\s]{1,4}\*\*")


def _by_file(records: list[StatuteArticle]) -> dict[str, list[StatuteArticle]]:
    grouped: dict[str, list[StatuteArticle]] = defaultdict(list)
    for r in records:
        grouped[r.source_ref].append(r)
    return grouped


def _article(records: list[StatuteArticle], ref: str, key: str) -> StatuteArticle:
    [found] = [r for r in records if r.source_ref == ref and r.article_key == key]
    return found


# --- the whole sample -------------------------------------------------------------------------------------------


def test_every_article_heading_becomes_one_record_in_file_order(
    statutes_read: TimedRead[StatuteArticle], statute_mirror: Path
) -> None:
    result = statutes_read.result
    assert result.skipped == []
    by_file = _by_file(result.records)
    files = sorted(statute_mirror.glob("kr/*/*.md"))
    assert len(files) == 200
    assert set(by_file) == {p.relative_to(statute_mirror).as_posix() for p in files}
    total = 0
    for path in files:
        headings = ARTICLE_HEADING.findall(path.read_text(encoding="utf-8"))
        assert len(headings) == path.read_text(encoding="utf-8").count("\n##### 제")
        got = by_file[path.relative_to(statute_mirror).as_posix()]
        assert [(r.article_no, r.article_branch, r.article_title) for r in got] == [
            (int(n), int(m or 0), title) for n, m, title in headings
        ], path
        total += len(headings)
    assert total == len(result.records) == 28_093


def test_ids_unique_and_well_formed(statutes_read: TimedRead[StatuteArticle]) -> None:
    records = statutes_read.result.records
    assert len({r.article_id for r in records}) == len(records)
    for r in records[:: max(1, len(records) // 500)]:
        assert r.article_id == f"law:{r.law_id}:{r.article_key}"
        assert r.article_key == (f"{r.article_no}-{r.article_branch}" if r.article_branch else str(r.article_no))
        assert r.source == "mirror"
    assert len({r.law_id for r in records}) == 200


def test_texts_are_clean(statutes_read: TimedRead[StatuteArticle]) -> None:
    for r in statutes_read.result.records:
        assert r.text, r.article_id
        assert r.text == r.text.strip()
        assert "\\." not in r.text, r.article_id  # Markdown escapes undone
        assert not r.text.startswith("#")
        # no bold paragraph markers left ("**①**"); a table line may still start with a literal "**" footnote mark
        assert all(line and not BOLD_MARKER.match(line) for line in r.text.split("\n")), r.article_id


def test_deleted_articles_are_flagged(statutes_read: TimedRead[StatuteArticle]) -> None:
    records = statutes_read.result.records
    deleted = [r for r in records if r.is_deleted]
    # every "삭제 <date>" body is flagged, and nothing else except the 9 articles without any body in the source
    assert {r.article_id for r in records if DELETED.match(r.text)} <= {r.article_id for r in deleted}
    vacated = [r for r in deleted if not r.text.startswith("삭제")]
    assert len(vacated) == 9
    for r in vacated:  # kept as their bare label, e.g. "제192조의4"
        assert r.text == "제" + r.article_key.replace("-", "조의") + ("" if r.article_branch else "조")
        assert r.article_title == ""
    assert len(deleted) == 1_832 + 9
    assert all(r.text.startswith("삭제") for r in deleted if r not in vacated)


def test_addenda_are_not_parsed(statutes_read: TimedRead[StatuteArticle], statute_mirror: Path) -> None:
    by_file = _by_file(statutes_read.result.records)
    for ref, articles in by_file.items():
        text = (statute_mirror / ref).read_text(encoding="utf-8")
        m = ADDENDA_HEADING.search(text)
        assert m is not None, ref
        first_addendum_line = next(line for line in text[m.end() :].split("\n") if line.strip())
        assert first_addendum_line not in articles[-1].text, ref
    assert "부칙 <제471호" not in by_file["kr/민법/법률.md"][-1].text


def test_law_metadata_from_front_matter(statutes_read: TimedRead[StatuteArticle]) -> None:
    article = _article(statutes_read.result.records, "kr/민법/법률.md", "3")
    assert article.article_id == "law:001706:3"
    assert (article.law_id, article.law_mst, article.law_name, article.law_kind) == ("001706", "284415", "민법", "법률")
    assert article.ministry == "법무부"
    assert article.promulgation_date == dt.date(2026, 3, 17)
    assert article.promulgation_no == "21454"
    assert article.effective_date == dt.date(2026, 3, 17)
    assert article.status == "시행"
    assert article.article_title == "권리능력의 존속기간"
    assert article.text == "사람은 생존한 동안 권리와 의무의 주체가 된다."


def test_law_name_is_the_law_title_not_an_attachment_title(
    statutes_read: TimedRead[StatuteArticle], statute_mirror: Path
) -> None:
    by_file = _by_file(statutes_read.result.records)
    checked = 0
    for ref, articles in by_file.items():
        meta = yaml.load((statute_mirror / ref).read_text(encoding="utf-8").split("\n---\n", 1)[0][4:], Loader=SAFE)
        attachment_titles = {a.get("제목") for a in meta.get("첨부파일") or []}
        assert {a.law_name for a in articles} == {meta["제목"]}, ref
        if attachment_titles - {meta["제목"]}:
            assert not attachment_titles & {a.law_name for a in articles}
            checked += 1
    assert checked >= 40
    labor = by_file["kr/근로기준법/법률(법률).md"]
    assert {a.law_name for a in labor} == {"근로기준법"}  # its 첨부파일 item has 제목 "신체장해등급과 재해보상표(…)"


def test_headings_context(statutes_read: TimedRead[StatuteArticle]) -> None:
    records = statutes_read.result.records
    civil = "kr/민법/법률.md"
    assert _article(records, civil, "1").headings == ["제1편 총칙", "제1장 통칙"]
    assert _article(records, civil, "3").headings == ["제1편 총칙", "제2장 인", "제1절 능력"]
    assert _article(records, civil, "18").headings == ["제1편 총칙", "제2장 인", "제2절 주소"]
    assert _article(records, civil, "31").headings == ["제1편 총칙", "제3장 법인", "제1절 총칙"]
    # a 관 subdivided by "**제N항 …**" lines (민법 제4편 제4장 제2절 제3관)
    base = ["제4편 친족", "제4장 부모와 자", "제2절 양자(養子) <개정 2012.2.10>", "제3관 파양(罷養) <개정 2012.2.10>"]
    assert _article(records, civil, "904").headings == [*base, "제1항 협의상 파양 <개정 2012.2.10>"]
    assert _article(records, civil, "905").headings == [*base, "제2항 재판상 파양 <개정 2012.2.10>"]
    assert "재판상 파양" not in _article(records, civil, "904").text
    # 장의M
    assert _article(records, "kr/법무사법/법률.md", "47-2").headings == ["제4장의2 법무사법인(유한) <신설 2016.2.3>"]
    labor = _article(records, "kr/근로기준법/법률(법률).md", "2")
    assert labor.headings == ["제1장 총칙"]
    assert Counter(len(r.headings) for r in records)[5] == 11


def test_paragraph_items_and_subitems(statutes_read: TimedRead[StatuteArticle]) -> None:
    labor = _article(statutes_read.result.records, "kr/근로기준법/법률(법률).md", "2")
    lines = labor.text.split("\n")
    assert lines[0].startswith("① 이 법에서 사용하는 용어의 뜻은 다음과 같다.")
    assert [line.split(" ", 1)[0] for line in lines] == ["①", *[f"{i}." for i in range(1, 10)], "②"]
    assert (
        lines[1]
        == '1. "근로자"란 직업의 종류와 관계없이 임금을 목적으로 사업이나 사업장에 근로를 제공하는 사람을 말한다.'
    )


def test_frame_matches_schema(statutes_read: TimedRead[StatuteArticle]) -> None:
    frame = to_frame(statutes_read.result.records, StatuteArticle)
    assert frame.height == 28_093
    assert frame["article_id"].is_unique().all()


def test_read_is_fast(statutes_read: TimedRead[StatuteArticle]) -> None:
    assert statutes_read.seconds < 30  # ~1.5 s on 2 cores; a generous bound against pathological slowdowns


# --- parse_statute_markdown on small snippets -------------------------------------------------------------------

FRONT = """---
제목: 시험법
법령MST: 1000
법령ID: '009999'
법령구분: 법률
소관부처:
- 법무부
- 행정안전부
공포일자: 2024-01-02
공포번호: '123'
시행일자: '2024-07-01'
상태: 시행
첨부파일:
- 제목: 별표 제목
---

# 시험법

"""


def _parse(body: str) -> list[StatuteArticle]:
    return parse_statute_markdown(FRONT + body, "kr/시험법/법률.md")


PARAGRAPHS = """##### 제1조 (정의)

**①** 이 법에서 사용하는 용어의 뜻은 다음과 같다. <개정 2020.1.1>

  1\\. "가"란 다음 각 목의 것을 말한다.
    가\\. 첫째 목
    나\\. 둘째 목
  2\\. "나"란 것을 말한다.
  2의2\\. 끼운 호
 1) 세목

**②** 둘째 항.
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            PARAGRAPHS,
            [
                (
                    "law:009999:1",
                    "정의",
                    "① 이 법에서 사용하는 용어의 뜻은 다음과 같다. <개정 2020.1.1>\n"
                    '1. "가"란 다음 각 목의 것을 말한다.\n'
                    "가. 첫째 목\n나. 둘째 목\n"
                    '2. "나"란 것을 말한다.\n2의2. 끼운 호\n1) 세목\n'
                    "② 둘째 항.",
                    False,
                )
            ],
        ),
        (
            "##### 제3조의2 (특례)\n\n본문.\n\n##### 제3조의10(붙은 제목)\n\n본문 둘.\n",
            [("law:009999:3-2", "특례", "본문.", False), ("law:009999:3-10", "붙은 제목", "본문 둘.", False)],
        ),
        (
            "##### 제5조\n\n제목 없는 조문.\n\n##### 제6조 (정의(定義))\n\n본문.\n",
            [("law:009999:5", "", "제목 없는 조문.", False), ("law:009999:6", "정의(定義)", "본문.", False)],
        ),
        (
            "##### 제7조\n\n삭제 <2007.12.31>\n\n##### 제8조\n\n삭제 <2001.1.1, 2002.2.2>\n",
            [("law:009999:7", "", "삭제 <2007.12.31>", True), ("law:009999:8", "", "삭제 <2001.1.1, 2002.2.2>", True)],
        ),
        (
            "##### 제9조\n\n##### 제10조 (계속)\n\n**①** 삭제 <2000.1.1>\n\n**②** 남은 항.\n",
            [("law:009999:9", "", "제9조", True), ("law:009999:10", "계속", "① 삭제 <2000.1.1>\n② 남은 항.", False)],
        ),
        (
            "##### 제1조 (목적)\n\n목적.\n\n## 부칙\n\n부칙 <제1호,2024.1.2>\n\n"
            "제1조 (시행일) 이 법은 공포한 날부터 시행한다.\n\n##### 제2조 (가짜)\n\n부칙 안의 조문 모양.\n",
            [("law:009999:1", "목적", "목적.", False)],
        ),
        (
            "##### 제1조 (표)\n\n다음 표와 같다.\n\t\t\t\t┌──┐\n\t\t\t\t│가│\n \u3000 └──┘\n",
            [("law:009999:1", "표", "다음 표와 같다.\n┌──┐\n│가│\n└──┘", False)],
        ),
    ],
    ids=["paragraphs-items-subitems", "branch-articles", "no-title", "deleted", "empty-body", "addenda", "table"],
)
def test_parse_snippets(body: str, expected: list[tuple[str, str, str, bool]]) -> None:
    got = _parse(body)
    assert [(a.article_id, a.article_title, a.text, a.is_deleted) for a in got] == expected


def test_snippet_metadata_and_branch_fields() -> None:
    [article] = _parse("##### 제12조의3 (특례)\n\n본문.\n")
    assert (article.article_no, article.article_branch, article.article_key) == (12, 3, "12-3")
    assert article.law_name == "시험법"  # not the attachment's 제목
    assert article.ministry == "법무부, 행정안전부"
    assert article.law_mst == "1000"
    assert article.promulgation_date == dt.date(2024, 1, 2)
    assert article.effective_date == dt.date(2024, 7, 1)
    assert article.source == "mirror"
    assert article.source_ref == "kr/시험법/법률.md"


def test_heading_levels_reset() -> None:
    body = """# 제1편 총칙

## 제1장 통칙

### 제1절 능력

#### 제1관 세부

##### 제1조 (가)

가.

## 제1장의2 끼운 장

##### 제2조 (나)

나.

### 제1절 다른 절

##### 제3조 (다)

다.

# 제2편 각칙

##### 제4조 (라)

라.

## 제1장 각칙 통칙 <개정 2020.1.1>

**제1항 구분 <개정 2020.1.1>**

##### 제5조 (마)

마.

**제2항 다른 구분**

##### 제6조 (바)

바.

### 제1절 새 절

##### 제7조 (사)

사.
"""
    got = {a.article_key: a.headings for a in _parse(body)}
    assert got == {
        "1": ["제1편 총칙", "제1장 통칙", "제1절 능력", "제1관 세부"],
        "2": ["제1편 총칙", "제1장의2 끼운 장"],
        "3": ["제1편 총칙", "제1장의2 끼운 장", "제1절 다른 절"],
        "4": ["제2편 각칙"],
        "5": ["제2편 각칙", "제1장 각칙 통칙 <개정 2020.1.1>", "제1항 구분 <개정 2020.1.1>"],
        "6": ["제2편 각칙", "제1장 각칙 통칙 <개정 2020.1.1>", "제2항 다른 구분"],
        "7": ["제2편 각칙", "제1장 각칙 통칙 <개정 2020.1.1>", "제1절 새 절"],
    }


def test_headings_lists_are_independent_copies() -> None:
    first, second = _parse("## 제1장 가\n\n##### 제1조\n\n가.\n\n##### 제2조\n\n나.\n")
    assert first.headings == second.headings == ["제1장 가"]
    assert first.headings is not second.headings


def test_law_title_without_front_matter_title_falls_back_to_heading() -> None:
    text = FRONT.replace("제목: 시험법\n", "") + "##### 제1조\n\n가.\n"
    [article] = parse_statute_markdown(text, "x.md")
    assert article.law_name == "시험법"


def test_text_outside_articles_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    got = _parse("## 제1장 가\n\n떠도는 문장.\n\n##### 제1조\n\n본문.\n")
    assert [a.text for a in got] == ["본문."]
    assert "outside any article" in caplog.text


def test_file_without_articles_parses_to_nothing() -> None:
    assert _parse("## 부칙\n\n부칙 <제1호,2024.1.2>\n") == []


@pytest.mark.parametrize(
    "text",
    [
        "# 시험법\n\n##### 제1조\n\n가.\n",
        FRONT.replace("법령ID: '009999'\n", "") + "##### 제1조\n\n가.\n",
        "---\n제목: [broken\n---\n##### 제1조\n",
    ],
    ids=["no-front-matter", "no-law-id", "broken-yaml"],
)
def test_malformed_statute_raises(text: str) -> None:
    with pytest.raises(MirrorFormatError):
        parse_statute_markdown(text, "x.md")
