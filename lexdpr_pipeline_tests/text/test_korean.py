"""KoreanTokenizer: legal references stay whole, particles/endings go, output is deterministic and robust."""

from __future__ import annotations

import threading

import pytest

from lexdpr_pipeline.text.korean import (
    CASE_CODES,
    KoreanTokenizer,
    TokenizerConfig,
    find_legal_refs,
    get_kiwi,
)


@pytest.fixture(scope="module")
def tok() -> KoreanTokenizer:
    return KoreanTokenizer()


# (text, tokens that must appear whole, in this order)
REFERENCE_CASES = [
    ("민법 제750조에 따라 손해를 배상한다", ["제750조"]),
    ("제10조의2에 따른 신고", ["제10조의2"]),
    ("같은 조 제1항 제2호에 해당하는 자", ["제1항", "제2호"]),
    ("제2조제1항제2호가목", ["제2조", "제1항", "제2호", "가목"]),
    ("같은 항 제3호 나목에 따른", ["제3호", "나목"]),
    ("제 3 조 (목적)", ["제3조"]),
    ("민사소송법 제451조 제1항 제9호, 제460조의3", ["제451조", "제1항", "제9호", "제460조의3"]),
    ("제3편 채권 제5장 불법행위", ["제3편", "제5장"]),
    ("대법원 1991. 12. 10. 선고 91다41118 판결", ["91다41118"]),
    ("대법원 2019. 1. 31. 선고 2017두52153 판결(공2019상, 640)", ["2017두52153"]),
    ("2000므1257 친생자관계부존재확인", ["2000므1257"]),
    ("대법원 1989. 4. 11. 선고 88다카1234 판결", ["88다카1234"]),
    ("헌법재판소 2005. 2. 3. 선고 2001헌가9 결정, 2005헌바12", ["2001헌가9", "2005헌바12"]),
    ("서울중앙지방법원 2016가합512345 판결", ["2016가합512345"]),
    ("대법원 2010. 9. 9. 선고 2010도6924 판결, 대법원 2016. 3. 10.자 2015모2041 결정", ["2010도6924", "2015모2041"]),
    ("재심대상판결(대법원 2014재다1234)", ["2014재다1234"]),
    ("선고91다41118판결", ["91다41118"]),
    ("２０１７두５２１５３ 판결과 제７５０조", ["2017두52153", "제750조"]),  # full-width digits
]


@pytest.mark.parametrize(("text", "expected"), REFERENCE_CASES)
def test_legal_references_stay_whole(tok: KoreanTokenizer, text: str, expected: list[str]) -> None:
    tokens = tok.tokenize(text)
    refs = [t for t in tokens if t in expected]
    assert refs == expected, tokens


@pytest.mark.parametrize(
    ("text", "not_refs"),
    [
        ("2019년12월에 계약했다", ["2019년12"]),
        ("발병 전12주11주10주", ["12주11"]),
        ("경제3조원 규모", ["제3조"]),
        ("제5조의 2개월 이내", ["제5조의2"]),
        ("제3자에게 대항하지 못한다", ["제3자"]),
    ],
)
def test_lookalikes_are_not_references(tok: KoreanTokenizer, text: str, not_refs: list[str]) -> None:
    tokens = tok.tokenize(text)
    assert not set(not_refs) & set(tokens), tokens


def test_find_legal_refs_spans_and_normalization() -> None:
    text = "제 10 조의2 및 91다41118"
    refs = find_legal_refs(text)
    assert [r[2] for r in refs] == ["제10조의2", "91다41118"]
    for start, end, _ in refs:
        assert text[start:end].strip() == text[start:end]
    assert [r[2] for r in find_legal_refs("제3호 나목에 따른 제2호가목")] == ["제3호", "나목", "제2호", "가목"]
    assert find_legal_refs("아동 보호 가목") == []  # 가목 only right after a 호 reference


def test_case_codes_are_longest_first() -> None:
    lengths = [len(c) for c in CASE_CODES]
    assert lengths == sorted(lengths, reverse=True)
    assert {"다", "다카", "두", "므", "도", "헌바"} <= set(CASE_CODES)


def test_particles_and_endings_dropped(tok: KoreanTokenizer) -> None:
    tokens = tok.tokenize("고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있다.")
    for particle in ("로", "에게", "를", "는", "이", "다", "."):
        assert particle not in tokens
    for content in ("고의", "과실", "위법", "행위", "타인", "손해", "배상", "책임"):
        assert content in tokens
    assert "가하다" not in tokens  # the default scheme keeps nouns only …
    assert "위법행위" in tokens  # … plus the compound as written
    assert "가하다" in KoreanTokenizer(TokenizerConfig(pos="nouns_verbs")).tokenize("손해를 가한 자")  # verb lemma


def test_latin_lowercased_hanja_kept(tok: KoreanTokenizer) -> None:
    tokens = tok.tokenize("OECD 가이드라인과 ＡＢＣ 法院")
    assert "oecd" in tokens
    assert "abc" in tokens  # full-width folded, then lowercased
    assert "法院" in tokens


def test_compounds() -> None:
    text = "손해배상청구권을 행사한 원고들은 민사소송법 제451조에 따라"
    with_compounds = KoreanTokenizer(TokenizerConfig(compounds=True)).tokenize(text)
    plain = KoreanTokenizer(TokenizerConfig(compounds=False)).tokenize(text)
    for part in ("손해", "배상", "청구", "원고", "민사", "소송법", "제451조"):
        assert part in plain and part in with_compounds
    assert set(with_compounds) - set(plain) == {"손해배상청구권", "원고들", "민사소송법"}
    # a reference never becomes part of a compound, even when written against a word
    assert "동법제3조" not in KoreanTokenizer(TokenizerConfig(compounds=True)).tokenize("동법제3조")


def test_schemes_differ_as_documented() -> None:
    text = "채권자는 손해배상을 청구할 수 있다"
    nouns = KoreanTokenizer(TokenizerConfig(pos="nouns", compounds=False)).tokenize(text)
    verbs = KoreanTokenizer(TokenizerConfig(pos="nouns_verbs", compounds=False)).tokenize(text)
    everything = KoreanTokenizer(TokenizerConfig(pos="all", compounds=False)).tokenize(text)
    assert "있다" not in nouns and "있다" in verbs
    assert set(nouns) <= set(verbs) <= set(everything)
    assert any(t.endswith("/JX") for t in everything)  # 는/JX
    with pytest.raises(ValueError):
        TokenizerConfig(pos="verbs")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\t  \n", "😀🔥👍", "😀 제750조 😀", "\u200b\ufeff", "ㅋㅋㅋ", "!!!???", "a" * 5000, "\x00\x01"],
)
def test_odd_input_does_not_crash(tok: KoreanTokenizer, text: str) -> None:
    tokens = tok.tokenize(text)
    assert isinstance(tokens, list)
    assert all(isinstance(t, str) and t and not t.isspace() for t in tokens)
    assert tok.tokenize_many([text]) == [tokens]


def test_empty_and_whitespace_give_no_tokens(tok: KoreanTokenizer) -> None:
    assert tok.tokenize("") == []
    assert tok.tokenize("   \n") == []
    assert tok.tokenize("😀😀") == []


def test_very_long_input(tok: KoreanTokenizer) -> None:
    text = "민법 제750조에 의하여 손해배상책임을 진다. " * 2000  # ~50k characters
    tokens = tok.tokenize(text)
    assert tokens.count("제750조") == 2000
    assert tok.tokenize("가" * 20000) is not None  # no spaces at all


def test_non_str_rejected(tok: KoreanTokenizer) -> None:
    with pytest.raises(TypeError):
        tok.tokenize(None)  # type: ignore[arg-type]


def test_deterministic_and_batch_equals_single(tok: KoreanTokenizer) -> None:
    texts = [text for text, _ in REFERENCE_CASES] + ["", "손해배상 청구의 소", "😀"]
    single = [tok.tokenize(t) for t in texts]
    assert [tok.tokenize(t) for t in texts] == single
    assert tok.tokenize_many(texts) == single
    assert tok.tokenize_many(texts, batch_size=3) == single
    assert KoreanTokenizer(num_workers=1).tokenize_many(texts) == single
    assert tok.tokenize_many([]) == []


def test_thread_safe_concurrent_use(tok: KoreanTokenizer) -> None:
    texts = [text for text, _ in REFERENCE_CASES] * 4
    expected = [tok.tokenize(t) for t in texts]
    results: dict[int, list[list[str]]] = {}

    def work(n: int) -> None:
        results[n] = [tok.tokenize(t) for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


def test_one_kiwi_per_process() -> None:
    assert get_kiwi(1) is get_kiwi(1)


def test_signature_carries_config_and_versions() -> None:
    sig = KoreanTokenizer(TokenizerConfig(pos="nouns")).signature()
    assert sig["config"]["pos"] == "nouns"
    assert sig["kiwipiepy"] and sig["kiwipiepy_model"] and sig["scheme_version"] >= 1
    assert TokenizerConfig.from_dict(sig["config"]) == TokenizerConfig(pos="nouns")
    with pytest.raises(ValueError):
        TokenizerConfig.from_dict({"pos": "nouns", "stemmer": "porter"})


def test_real_statutes_keep_every_reference(tok: KoreanTokenizer) -> None:
    """On real 민법 text, every reference the regexes find comes out as one token, in text order."""
    from lexdpr_pipeline.sources.mirror import read_statutes
    from lexdpr_pipeline_tests.conftest import CORPUS

    articles = [a for a in read_statutes(CORPUS, progress=False).records if a.law_name == "민법"][:400]
    texts = [a.text for a in articles]
    with_refs = 0
    for text, tokens in zip(texts, tok.tokenize_many(texts), strict=True):
        refs = [r for _, _, r in find_legal_refs(text)]
        with_refs += bool(refs)
        ref_set = set(refs)
        assert [t for t in tokens if t in ref_set] == refs, text
    assert with_refs > 30
