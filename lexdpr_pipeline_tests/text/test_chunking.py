"""chunk_spans: token budget, exact overlap, full coverage, sentence-end snapping; token counters (whitespace, HF)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from lexdpr_pipeline.text.chunking import (
    Chunk,
    HFTokenCounter,
    Span,
    WhitespaceTokenCounter,
    chunk_spans,
    token_counter,
)
from lexdpr_pipeline_tests.conftest import CORPUS

WS = WhitespaceTokenCounter()


def spans_of(text: str) -> list[Span]:
    return WS.spans_many([text])[0]


def token_range(chunk: Chunk, spans: Sequence[Span]) -> range:
    """Indices of the tokens lying inside the chunk's character range (they must be contiguous)."""
    inside = [i for i, (s, e) in enumerate(spans) if s >= chunk.start and e <= chunk.end]
    assert inside == list(range(inside[0], inside[-1] + 1)) if inside else True
    return range(inside[0], inside[-1] + 1) if inside else range(0)


_END = re.compile(r"(?:다\.|[.!?。])$")


def closes_sentence(text: str, spans: Sequence[Span], cut: int) -> bool:
    """Independent oracle: may a chunk end after token ``cut - 1``?"""
    s, e = spans[cut - 1]
    next_start = spans[cut][0] if cut < len(spans) else len(text)
    if "\n" in text[s:next_start]:
        return True
    return bool(_END.search(text[s:e])) and (e == len(text) or text[e].isspace())


def check_chunks(text: str, spans: Sequence[Span], chunks: list[Chunk], max_tokens: int, overlap: int) -> None:
    """The contract every chunking must meet."""
    n = len(spans)
    ranges = [token_range(c, spans) for c in chunks]
    for c, r in zip(chunks, ranges, strict=True):
        assert c.n_tokens <= max_tokens
        assert len(r) == c.n_tokens, (c, r)
        assert 0 <= c.start <= c.end <= len(text)
    # Coverage: from the first token to the last, nothing skipped.
    assert ranges[0].start == 0 and ranges[-1].stop == n
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for k in range(1, len(chunks)):
        prev, cur = ranges[k - 1], ranges[k]
        assert cur.start > prev.start  # progress
        assert prev.stop - cur.start == overlap, f"chunk {k}: overlap {prev.stop - cur.start} != {overlap}"
        assert chunks[k].start == spans[cur.start][0]  # a chunk starts exactly at its first token
        assert chunks[k - 1].end == spans[prev.stop][0]  # and ends where the next token starts
    # Snapping: a window stops early only at a sentence end, and at the last one in its last quarter.
    for k, r in enumerate(ranges[:-1]):
        floor = r.start + max(1, int(max_tokens * 0.75))
        limit = r.start + max_tokens
        ends = [cut for cut in range(floor + 1, limit + 1) if closes_sentence(text, spans, cut)]
        expected_stop = max(ends) if ends else limit
        assert r.stop == expected_stop, f"chunk {k} stops at token {r.stop}, expected {expected_stop}"


WORDS = ["계약은", "당사자의", "합의로", "성립한다.", "손해를", "배상할", "책임이", "있다.", "3.5배", "제1항의", "경우"]


def random_text(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n_words):
        out.append(rng.choice(WORDS))
        out.append(rng.choice([" ", " ", " ", "  ", "\n"]) if rng.random() < 0.9 else " ")
    return "".join(out).strip()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_tokens", "overlap"), [(8, 0), (8, 2), (16, 4), (32, 8), (12, 9)])
def test_chunk_contract_on_random_text(seed: int, max_tokens: int, overlap: int) -> None:
    text = random_text(seed, 150)
    spans = spans_of(text)
    chunks = chunk_spans(text, spans, max_tokens, overlap)
    assert len(chunks) > 1
    check_chunks(text, spans, chunks, max_tokens, overlap)


def test_without_sentence_ends_windows_are_full_and_stride_is_max_minus_overlap() -> None:
    text = " ".join(f"단어{i}" for i in range(50))
    spans = spans_of(text)
    chunks = chunk_spans(text, spans, 10, 3)
    starts = [token_range(c, spans).start for c in chunks]
    assert starts == [0, 7, 14, 21, 28, 35, 42]
    assert [c.n_tokens for c in chunks] == [10, 10, 10, 10, 10, 10, 8]
    assert text[chunks[1].start : chunks[1].end].split() == [f"단어{i}" for i in range(7, 17)]


def test_short_text_is_one_chunk_covering_everything() -> None:
    text = "  민법 제750조 고의 또는 과실로  "
    spans = spans_of(text)
    assert chunk_spans(text, spans, 5, 2) == [Chunk(0, len(text), 5)]
    assert chunk_spans("", [], 5, 2) == [Chunk(0, 0, 0)]


def words(n: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_snaps_to_sentence_end_in_last_quarter() -> None:
    tokens = words(20)
    tokens[8] = "끝났다."  # token 9 of a 10-token window: inside the last quarter (more than 7 tokens in)
    text = " ".join(tokens)
    chunks = chunk_spans(text, spans_of(text), 10, 2)
    assert chunks[0].n_tokens == 9
    assert text[chunks[0].start : chunks[0].end].rstrip().endswith("끝났다.")
    assert text[chunks[1].start :].split()[:2] == ["w7", "끝났다."]  # overlap still 2 tokens after the snap


def test_does_not_snap_before_the_last_quarter() -> None:
    tokens = words(20)
    tokens[5] = "끝났다."  # a 6-token chunk would waste 40% of the budget
    text = " ".join(tokens)
    chunks = chunk_spans(text, spans_of(text), 10, 2)
    assert chunks[0].n_tokens == 10


def test_snaps_to_the_latest_sentence_end_and_to_line_breaks() -> None:
    tokens = words(20)
    tokens[7] = "하였다."
    tokens[8] = "있다."
    text = " ".join(tokens)
    assert chunk_spans(text, spans_of(text), 10, 2)[0].n_tokens == 9
    text = " ".join(words(8)) + "\n" + " ".join(words(12, "v"))  # a line break after token 8
    assert chunk_spans(text, spans_of(text), 10, 2)[0].n_tokens == 8
    text = " ".join(words(8)) + " 1.5 " + " ".join(words(12, "v"))  # "1.5" does not end a sentence
    assert chunk_spans(text, spans_of(text), 10, 2)[0].n_tokens == 10


def test_snap_fraction_widens_the_zone() -> None:
    tokens = words(20)
    tokens[5] = "끝났다."
    text = " ".join(tokens)
    assert chunk_spans(text, spans_of(text), 10, 2, snap_fraction=0.5)[0].n_tokens == 6


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (-3, 0), (10, -1), (10, 10), (10, 11)])
def test_invalid_arguments_raise(max_tokens: int, overlap: int) -> None:
    text = " ".join(words(30))
    with pytest.raises(ValueError):
        chunk_spans(text, spans_of(text), max_tokens, overlap)


# --- Hugging Face tokenizers, trained here on a few hundred lines of 민법 -------------------------------------------


def civil_code_lines(n: int = 400) -> list[str]:
    path = CORPUS / "legalize-kr" / "kr" / "민법" / "법률.md"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the tests read the ../shared sample corpus")
    lines = [line.strip("*# ") for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if len(line) > 10 and re.search("[가-힣]", line)][:n]


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        civil_code_lines(), trainers.WordPieceTrainer(vocab_size=1500, special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    )
    # Like a real model: encode() adds [CLS]/[SEP]; the counter must not count them.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    folder = tmp_path_factory.mktemp("tiny-wordpiece")
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def wordpiece(wordpiece_dir: Path) -> HFTokenCounter:
    return HFTokenCounter.from_dir(wordpiece_dir)


ARTICLE = (
    "① 피상속인은 상속인이 될 사람이 다음 각 호의 어느 하나에 해당하는 경우에는 제1068조에 따른 공정증서에 의한 "
    "유언으로 상속권 상실의 의사를 표시할 수 있다. 이 경우 유언집행자는 가정법원에 그 사람의 상속권 상실을 "
    "청구하여야 한다. <개정 2026.3.17>\n1. 피상속인에 대한 부양의무를 중대하게 위반한 경우\n"
    "② 제1항의 유언에 따라 상속권 상실의 대상이 될 사람은 유언집행자가 되지 못한다."
)


def test_hf_counter_spans_map_back_to_the_text(wordpiece: HFTokenCounter, wordpiece_dir: Path) -> None:
    assert wordpiece.name == f"hf:{wordpiece_dir.name}"
    raw = Tokenizer.from_file(str(wordpiece_dir / "tokenizer.json"))
    texts = [ARTICLE, "민법 제750조(불법행위의 내용)", ""]
    spans = wordpiece.spans_many(texts)
    assert len(spans) == 3 and spans[2] == []
    for text, sp in zip(texts[:2], spans[:2], strict=True):
        enc = raw.encode(text)
        assert len(sp) == len(enc.ids) - 2  # [CLS] and [SEP] left out
        pieces = [text[s:e] for s, e in sp]
        tokens = [t.removeprefix("##") for t in enc.tokens[1:-1]]
        assert [p for p, t in zip(pieces, tokens, strict=True) if t != "[UNK]"] == [t for t in tokens if t != "[UNK]"]
        assert all(0 <= s < e <= len(text) for s, e in sp)
        assert [s for s, _ in sp] == sorted(s for s, _ in sp)
        assert "".join(pieces) == re.sub(r"\s+", "", text)  # every non-space character belongs to a token


def test_chunking_with_hf_spans(wordpiece: HFTokenCounter) -> None:
    spans = wordpiece.spans_many([ARTICLE])[0]
    assert len(spans) > 60
    chunks = chunk_spans(ARTICLE, spans, 24, 4)
    check_chunks(ARTICLE, spans, chunks, 24, 4)
    assert ARTICLE[chunks[0].start : chunks[-1].end] == ARTICLE


def dot_index(counter: HFTokenCounter, text: str) -> int | None:
    return next((i for i, (s, e) in enumerate(counter.spans_many([text])[0]) if text[s:e] == "."), None)


def test_hf_subword_dot_is_not_a_sentence_end(wordpiece: HFTokenCounter) -> None:
    """A subword tokenizer makes the "." of "3.5" or "2015.2.3" a token; cutting there splits a number."""
    for middle in ("3.5배", "<개정 2015.2.3>"):
        # Pad so that the first "." is token 14 of a 16-token window (inside the last quarter).
        pad = next(m for m in range(20) if dot_index(wordpiece, "가 " * m + middle) == 13)
        text = "가 " * pad + middle + " 나" * 12
        spans = wordpiece.spans_many([text])[0]
        first = chunk_spans(text, spans, 16, 2)[0]
        assert first.n_tokens == 16, text[first.start : first.end]
    text = "가 " * 11 + "끝났다. 나" + " 나" * 12  # a real sentence end there still snaps
    spans = wordpiece.spans_many([text])[0]
    assert text[: chunk_spans(text, spans, 16, 2)[0].end].rstrip().endswith("끝났다.")


def test_unigram_metaspace_pieces_still_count(tmp_path: Path, shared_dir: Path) -> None:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        civil_code_lines(300), trainers.UnigramTrainer(vocab_size=400, special_tokens=["<unk>"], unk_token="<unk>")
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    counter = HFTokenCounter.from_dir(tmp_path)
    text = "고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있다."
    enc = tok.encode(text, add_special_tokens=False)
    assert "▁" in enc.tokens  # bare word-boundary pieces exist in this vocabulary…
    assert len(counter.spans_many([text])[0]) == len(enc.ids)  # …and each costs a token


def test_from_dir_without_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        HFTokenCounter.from_dir(tmp_path)


def test_token_counter_spec(wordpiece_dir: Path) -> None:
    assert isinstance(token_counter("whitespace", None), WhitespaceTokenCounter)
    assert isinstance(token_counter("whitespace", wordpiece_dir), WhitespaceTokenCounter)
    model = token_counter("model", wordpiece_dir)
    assert isinstance(model, HFTokenCounter) and model.name == f"hf:{wordpiece_dir.name}"
    folder = token_counter(str(wordpiece_dir), None)
    assert isinstance(folder, HFTokenCounter)
    assert folder.spans_many(["민법 제750조"]) == model.spans_many(["민법 제750조"])
    with pytest.raises(ValueError, match="base model"):
        token_counter("model", None)
    with pytest.raises(FileNotFoundError):
        token_counter(str(wordpiece_dir / "missing"), None)


def test_whitespace_counter() -> None:
    text = " 고의 또는\n과실로  인한 "
    assert WS.spans_many([text, ""]) == [[(1, 3), (4, 6), (7, 10), (12, 14)], []]
    assert WS.name == "whitespace"


def test_token_counter_name_matches_the_loaded_counter(tiny_tokenizer_dir: Path) -> None:
    from lexdpr_pipeline.text.chunking import token_counter, token_counter_name

    for spec, path in (("whitespace", None), ("model", tiny_tokenizer_dir), (str(tiny_tokenizer_dir), None)):
        assert token_counter_name(spec, path) == token_counter(spec, path).name
