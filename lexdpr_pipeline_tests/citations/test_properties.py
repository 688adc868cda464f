"""Property tests: the parsers never raise, whatever the text, and what they return is well-formed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexdpr_pipeline.citations import ISSUE_ADDENDA, ISSUE_UNPARSEABLE, parse_case_refs, parse_statute_refs
from lexdpr_pipeline.citations import case_refs as case_module
from lexdpr_pipeline.citations import statute_refs as statute_module

# Pieces citations are made of, so that generated text reaches deep into the parsers' state machines.
LEGAL_PIECES = [
    *("제", "조", "의", "항", "호", "목", "가", "나", "다", "갸", "1", "2", "3", "12", "0", "99999"),
    *(",", ", ", " ", "\n", ".", "/", " / ", "·", "ㆍ", "・", "~", "내지", "부터", "까지", "및", "단서", "본문"),
    *("(", ")", "[", "]", "［", "］", "「", "」", "[1]", "[2]", "가.", "나.", "(가)", "\x01", "\x02"),
    *("구 ", "구", "같은 법", "같은법시행령", "동법", "동 시행령", "같은 령", "부칙", "별표", "[별표 2]"),
    *("민법", "형법", "헌법", "시행령", "시행규칙", "법", "법률", "규칙", "고시"),
    *("(2010. 12. 27. 법률 제10408호로 개정되기 전의 것)", "(현행 제5조 참조)", "(구)"),
    *("대법원", "헌법재판소", "서울고법", "1992. 2. 11.", "1963.8.31", "선고", "자", "판결", "결정", "전원합의체"),
    *("91다41118", "2007다63089", "63096", "94헌바40", "공1992, 1046", "(공1992, 1046)", "다", "다카"),
]
legal_text = st.lists(st.sampled_from(LEGAL_PIECES), max_size=40).map("".join)
any_text = st.text(max_size=300)
STATUTE_ISSUES = {None, ISSUE_ADDENDA, ISSUE_UNPARSEABLE}
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_statute_parse(text: str) -> None:
    statute_module._parse(text)  # the unguarded parser: a bug must show here, not hide behind the catch-all
    for ref in parse_statute_refs(text):
        assert ref.issue in STATUTE_ISSUES
        assert ref.article_no >= 0 and ref.article_branch >= 0
        assert ref.raw in text
        assert ref.issue is not None or (ref.law_name and ref.article_no > 0)


def _check_case_parse(text: str) -> None:
    case_module._parse(text)
    for ref in parse_case_refs(text):
        assert ref.raw in text
        assert ref.case_no == "".join(ref.case_no.split())


@FAST
@given(any_text)
def test_statute_parser_never_raises_on_any_text(text: str) -> None:
    _check_statute_parse(text)


@FAST
@given(legal_text)
def test_statute_parser_never_raises_on_legal_looking_text(text: str) -> None:
    _check_statute_parse(text)


@FAST
@given(any_text)
def test_case_parser_never_raises_on_any_text(text: str) -> None:
    _check_case_parse(text)


@FAST
@given(legal_text)
def test_case_parser_never_raises_on_legal_looking_text(text: str) -> None:
    _check_case_parse(text)


def test_non_string_input_does_not_raise() -> None:
    assert parse_statute_refs(None) == []  # type: ignore[arg-type]
    assert parse_case_refs(None) == []  # type: ignore[arg-type]
    assert parse_statute_refs("(" * 5000 + "민법 제1조")[0].law_name == "민법"
