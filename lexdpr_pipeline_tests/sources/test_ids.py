import pytest

from lexdpr_pipeline.sources.ids import (
    admin_rule_article_id,
    article_key,
    chunk_id,
    doc_id_of,
    parse_article_number,
    precedent_id,
    statute_article_id,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("제750조(불법행위의 내용)", (750, 0)), ("제10조의2", (10, 2)), ("제 3 조 의 4", (3, 4)), ("부칙", None)],
)
def test_parse_article_number(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_article_number(text) == expected


def test_id_contract() -> None:
    assert statute_article_id("001706", 750) == "law:001706:750"
    assert statute_article_id("001706", 10, 2) == "law:001706:10-2"
    assert admin_rule_article_id("36934", 3, 1) == "admrul:36934:3-1"
    assert precedent_id("212907") == "prec:212907"
    assert chunk_id("prec:212907", 3) == "prec:212907#3"
    assert doc_id_of("prec:212907#3") == "prec:212907"
    assert article_key(5) == "5"


@pytest.mark.parametrize(
    "bad", [lambda: statute_article_id("", 1), lambda: precedent_id("12a"), lambda: article_key(0)]
)
def test_bad_ids_raise(bad) -> None:
    with pytest.raises(ValueError):
        bad()
