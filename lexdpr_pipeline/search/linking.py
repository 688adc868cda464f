"""Query-side citation linking: the statutes and decisions a query names, as corpus document ids.

Korean legal questions name their sources ("민법 제750조", "같은 법 제3조 제1항", "구 소득세법(… 개정되기 전의 것)
제94조", "대법원 2009. 1. 15. 선고 2008다12345 판결", "2008다12345"). :class:`QueryLinker` reads them with the
citation parsers of :mod:`lexdpr_pipeline.citations` (the ones ``precedent_citations`` uses) and resolves them the
same way (:class:`~lexdpr_pipeline.citations.LawNameIndex` + ``resolve_statute_ref``,
:class:`~lexdpr_pipeline.citations.CaseNumberIndex`), against the documents of a search corpus. What the parsers
were not written for is prose around a citation: the word run before an article may be "불법행위에 관한 민법", so
the law is the longest tail of that run (starting at a word) that names a corpus law, or a ``같은 법`` / ``동법``
form (the last law named in the query), or a corpus law named a few words earlier.

:func:`apply_links` fuses the resolved documents into a ranking (``boost`` or ``list``); it works on plain
doc-id lists so evaluation can apply it to stored rankings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import polars as pl

from lexdpr_pipeline.citations import (
    ADDENDA,
    ARTICLE_NOT_IN_LAW,
    LAW_NOT_IN_CORPUS,
    NOT_IN_CORPUS,
    RESOLVED,
    UNPARSEABLE,
    CaseNumberIndex,
    LawEntry,
    LawNameIndex,
    normalize_law_name,
    parse_case_refs,
    parse_statute_refs,
    resolve_case_refs,
    resolve_statute_ref,
)
from lexdpr_pipeline.citations._text import FORMER_MARK, clean
from lexdpr_pipeline.citations.statute_refs import ISSUE_ADDENDA, StatuteRef

ARTICLE, CASE, LAW_NAME = "article", "case", "law_name"
KINDS = (ARTICLE, CASE, LAW_NAME)
NO_ANTECEDENT = "no_antecedent"  # 같은 법 with no law named before it
LINK_MODES = ("off", "boost", "list")
LinkMode = Literal["off", "boost", "list"]
LAW_NAME_SHARE = 0.5  # a law named without an article boosts that law's retrieved articles by this share of weight

# 사건부호 of Korean courts (a case number's letters must be one of these, or one the corpus uses): without the
# check, "제13조의2" reads as case number "13조의2".
DEFAULT_CASE_TYPES = frozenset(
    (
        *("다", "나", "가", "가합", "가단", "가소", "머", "자", "차", "카", "카합", "카단", "카기", "카공", "카확"),
        *("누", "두", "구", "구합", "구단", "아", "도", "노", "고", "고합", "고단", "고정", "고약", "로", "모"),
        *("오", "초", "초기", "감도", "전도", "코", "보", "므", "르", "드", "드합", "드단", "브", "스", "으"),
        *("즈", "즈기", "느", "느합", "느단", "마", "라", "바", "사", "그", "재다", "재나", "재누", "재두", "재도"),
        *("재마", "재스", "후", "허", "특허", "수", "주", "추", "트", "헌가", "헌나", "헌다", "헌라", "헌마"),
        *("헌바", "헌사", "헌아", "타경", "회합", "회단", "하합", "하단", "개회", "파"),
    )
)

_ARTICLE_TOKEN = re.compile(r"(?:제\s*)?\d{1,5}\s*조")
_SAME_LAW = re.compile(r"(?:같은|동|위|본)\s*(?:법률|법|령|영|규칙)?\s*(?:시행령|시행규칙)?")
_LAWISH = re.compile(r"(?:법|법률|령|규칙|규정|조례|협약|조약|협정|통칙|준칙|지침|고시|훈령|예규|요령|규약)$")
_SUBORDINATE = frozenset(("시행령", "시행규칙"))
_EDGE_PUNCT = re.compile(r"^[^\w·]+|[^\w·]+$")
_CASE_TYPE = re.compile(r"^\d{2,4}([가-힣]{1,4}?)\d")
# What may follow a law name in prose ("소득세법상", "민법의", "민법 제750조"); anything else (헌법재판소): no mention.
_AFTER_NAME = re.compile(
    r"(?:$|[^가-힣]|제\s*\d|(?:상의|상|의|에서의|에서|에게|에|과|와|및|은|는|이|가|을|를|으로|로|위반|소정|이나|도|만)"
    r"(?:$|[^가-힣]))"
)
_SUBORDINATE_AFTER = re.compile(r"\s*(?:시행령|시행규칙)")
_NEAR_WORDS = 3  # a corpus law named at most this many words before an article is that article's law


@dataclass(frozen=True)
class LinkedRef:
    """One reference found in a query.

    ``text`` is the matched span (``query[start:end]``, e.g. "민법 제750조"); ``doc_ids`` are the corpus documents
    it resolves to (one for an article or a decision, every article of the law for ``law_name``), empty when it
    does not resolve — then ``status`` says why (the citation statuses: ``law_not_in_corpus``,
    ``article_not_in_law``, ``not_in_corpus``, ``unparseable``, ``addenda``, or ``no_antecedent``) and ``reason``
    says it in words.
    """

    text: str
    start: int
    end: int
    kind: str  # article | case | law_name
    doc_ids: tuple[str, ...]
    status: str
    reason: str | None = None
    former: bool = False  # a 구법 citation (resolved to the current article of that number)

    @property
    def resolved(self) -> bool:
        return bool(self.doc_ids)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"doc_ids": list(self.doc_ids)}


class _Article(NamedTuple):
    """What :meth:`LawNameIndex.from_articles` reads of a statute article (the corpus frame has no records)."""

    law_id: str
    law_name: str
    law_kind: str
    article_key: str
    promulgation_date: Any


class _Decision(NamedTuple):
    """What :meth:`CaseNumberIndex.from_precedents` reads of a precedent."""

    prec_id: str
    serial_no: str
    court: str
    decision_date: Any
    case_no: str


class _Mention(NamedTuple):
    start: int
    end: int
    law: LawEntry
    former: bool


@dataclass
class _Law:
    """The law a reference belongs to: a corpus law, or only a name (not in the corpus)."""

    name: str
    entry: LawEntry | None
    former: bool = False


class QueryLinker:
    """Finds and resolves the references of a query against one corpus (build once, link many queries)."""

    def __init__(
        self,
        laws: LawNameIndex,
        cases: CaseNumberIndex,
        law_docs: dict[str, tuple[str, ...]],
        doc_ids: set[str],
        aliases: dict[str, str] | None = None,
        case_types: frozenset[str] = DEFAULT_CASE_TYPES,
    ) -> None:
        self.laws, self.cases = laws, cases
        self._law_docs = law_docs  # 법령ID → its article documents, in article order
        self._docs = doc_ids
        self._aliases = aliases or {}  # a document deduplicated away → the corpus document that kept its text
        self._case_types = case_types
        self._names = {*laws.by_name, *laws.aliases, *laws.renamed}
        self._max_name = max((len(n) for n in self._names), default=0) + 1  # + a leading 구

    @classmethod
    def from_corpus(cls, corpus: pl.DataFrame) -> QueryLinker:
        """Build from a ``merged_corpus`` frame (``doc_id``, ``source``, ``law_id``, ``law_name``, ``article_key``,
        ``case_no``; optional ``law_kind``, ``effective_date``, ``court``, ``decision_date``, ``aliases``)."""
        frame = corpus.with_columns(
            [pl.lit(None).alias(c) for c in ("law_kind", "effective_date", "court", "decision_date", "aliases")
             if c not in corpus.columns]
        )  # fmt: skip
        docs = frame.unique("doc_id", keep="first", maintain_order=True)
        law = docs.filter(pl.col("source") == "law").drop_nulls(["law_id", "article_key"])
        articles = [
            _Article(r["law_id"], r["law_name"] or "", r["law_kind"] or "", r["article_key"], r["effective_date"])
            for r in law.iter_rows(named=True)
        ]
        aliases = _alias_docs(frame)
        known = {(a.law_id, a.article_key) for a in articles}
        first_of_law = {a.law_id: a for a in articles}
        for alias in aliases:  # articles deduplicated away still resolve (to the document that kept their text)
            parts = alias.split(":")
            if len(parts) == 3 and parts[0] == "law" and parts[1] in first_of_law and (parts[1], parts[2]) not in known:
                articles.append(first_of_law[parts[1]]._replace(article_key=parts[2]))
        laws = LawNameIndex.from_articles(articles)  # type: ignore[arg-type]
        law_docs: dict[str, list[tuple[tuple[int, ...], str]]] = {}
        for doc, law_id, key in law.select("doc_id", "law_id", "article_key").iter_rows():
            law_docs.setdefault(law_id, []).append((_key_order(key), doc))
        prec = docs.filter((pl.col("source") == "prec") & pl.col("case_no").is_not_null())
        decisions = [
            _Decision(r["doc_id"], r["doc_id"].split(":", 1)[-1], r["court"] or "", r["decision_date"], r["case_no"])
            for r in prec.iter_rows(named=True)
        ]
        cases = CaseNumberIndex.from_precedents(decisions)  # type: ignore[arg-type]
        corpus_types = {m.group(1) for n in cases.by_number if (m := _CASE_TYPE.match(n))}
        return cls(
            laws,
            cases,
            {law_id: tuple(d for _, d in sorted(items)) for law_id, items in law_docs.items()},
            set(docs["doc_id"].to_list()),
            aliases,
            DEFAULT_CASE_TYPES | corpus_types,
        )

    # linking ----------------------------------------------------------------------------------------------------------

    def link(self, query: str) -> list[LinkedRef]:
        """Every reference of ``query`` (articles, decisions, laws named without an article), in query order."""
        if not isinstance(query, str) or not query.strip():
            return []
        mentions = self._law_mentions(query)
        articles = self._articles(query, mentions)
        taken = [(r.start, r.end) for r in articles]
        cases = [r for r in self._cases(query) if not _overlaps(r.start, r.end, taken)]
        taken += [(r.start, r.end) for r in cases]
        named: list[LinkedRef] = []
        seen_laws: set[str] = set()
        for m in mentions:
            if _overlaps(m.start, m.end, taken) or m.law.law_id in seen_laws:
                continue
            seen_laws.add(m.law.law_id)
            docs = self._law_docs.get(m.law.law_id, ())
            named.append(LinkedRef(query[m.start : m.end], m.start, m.end, LAW_NAME, docs, RESOLVED, None, m.former))
        return sorted([*articles, *cases, *named], key=lambda r: (r.start, r.end))

    def _articles(self, query: str, mentions: list[_Mention]) -> list[LinkedRef]:
        out: list[LinkedRef] = []
        last: _Law | None = None
        used = 0  # mentions before this index have been read (as the law of a later 같은 법)
        cursor = 0
        for ref in parse_statute_refs(query):
            if ref.article_no <= 0:  # prose with digits, or a law named without an article (a mention, below)
                continue
            start = query.find(ref.raw, cursor)
            if start < 0:
                continue
            cursor, end = start, start + len(ref.raw)
            while used < len(mentions) and mentions[used].end <= start:
                last = _Law(normalize_law_name(mentions[used].law.law_name), mentions[used].law, mentions[used].former)
                used += 1
            law, name_at, problem = self._law_of(ref, query, start, mentions, last)
            while used < len(mentions) and mentions[used].end <= name_at:
                used += 1
            if law is not None:
                last = law
            text_start = name_at
            out.append(self._resolve_article(ref, query[text_start:end], text_start, end, law, problem))
        return out

    def _law_of(
        self, ref: StatuteRef, query: str, start: int, mentions: list[_Mention], last: _Law | None
    ) -> tuple[_Law | None, int, str | None]:
        """The law of an article reference whose parsed span starts at ``start``: ``(law, where its name starts in
        the query, why there is none)``."""
        cleaned = clean(ref.raw)
        art = _ARTICLE_TOKEN.search(cleaned.text)
        art_at = start + (cleaned.pos[art.start()] if art else 0)
        words = cleaned.text[: art.start() if art else 0].replace(FORMER_MARK, " ")
        former = ref.former or FORMER_MARK in cleaned.text[: art.start() if art else 0]
        if not words.strip():  # a bare article: the law carries over from the reference before it
            if not ref.law_name:
                return None, art_at, "no law is named before the article"
            if last is not None:
                return dataclasses.replace(last, former=last.former or former), art_at, None
            entry, via_former = self.laws.find(ref.law_name)
            return _Law(ref.law_name, entry, former or via_former), art_at, None
        word_starts = [p for p, ch in enumerate(words) if not ch.isspace() and (p == 0 or words[p - 1].isspace())]
        for p in word_starts:  # the longest tail of the word run that is a law name or a 같은 법 form
            tail = words[p:].strip()
            at = start + cleaned.pos[p]
            if _SAME_LAW.fullmatch(tail):
                before = [m for m in mentions if start <= m.start and m.end <= at]  # "소득세법상 …, 같은 법 제89조"
                if before:
                    m = before[-1]
                    last = _Law(normalize_law_name(m.law.law_name), m.law, m.former)
                if last is None:
                    return None, at, NO_ANTECEDENT
                return self._same_law(last, tail, former), at, None
            entry, via_former = self.laws.find(tail)
            if entry is not None:
                return _Law(normalize_law_name(tail), entry, former or via_former), at, None
        near = [m for m in mentions if start <= m.start and m.end <= art_at]
        if near and len(query[near[-1].end : art_at].split()) <= _NEAR_WORDS:  # "국가배상법에 의하면 제2조"
            m = near[-1]
            return _Law(normalize_law_name(m.law.law_name), m.law, former or m.former), m.start, None
        # A law the corpus lacks: its last word(s), for the report ("대기환경보전법 시행규칙").
        first = len(word_starts) - 1
        if first > 0 and _EDGE_PUNCT.sub("", words[word_starts[first] :]) in _SUBORDINATE:
            first -= 1
        name_words = _EDGE_PUNCT.sub("", words[word_starts[first] :].strip())
        if _LAWISH.search(name_words):
            at = start + cleaned.pos[word_starts[first]]
            name = normalize_law_name(name_words)
            if name.startswith("구") and len(name) > 2:
                name, former = name[1:], True
            return _Law(name, None, former), at, None
        return None, art_at, "no law is named before the article"

    def _same_law(self, last: _Law, words: str, former: bool) -> _Law:
        """``같은 법`` / ``동법 시행령`` after ``last``, read by the statute parser itself."""
        refs = parse_statute_refs(f"{last.name} 제1조, {words} 제1조")
        name = refs[-1].law_name if refs and refs[-1].law_name else last.name
        if name == last.name:
            return dataclasses.replace(last, former=last.former or former)
        entry, via_former = self.laws.find(name)
        return _Law(name, entry, former or via_former)

    def _resolve_article(
        self, ref: StatuteRef, text: str, start: int, end: int, law: _Law | None, problem: str | None
    ) -> LinkedRef:
        former = ref.former or (law.former if law else False)
        if ref.issue == ISSUE_ADDENDA:
            reason = "부칙 articles are not searchable (their numbering restarts with every amendment)"
            return LinkedRef(text, start, end, ARTICLE, (), ADDENDA, reason, former)
        if law is None:
            status = NO_ANTECEDENT if problem == NO_ANTECEDENT else UNPARSEABLE
            reason = "같은 법 with no law named before it" if status == NO_ANTECEDENT else problem
            return LinkedRef(text, start, end, ARTICLE, (), status, reason, former)
        if law.entry is None:
            reason = f"no law named {law.name!r} in the corpus"
            return LinkedRef(text, start, end, ARTICLE, (), LAW_NOT_IN_CORPUS, reason, former)
        named = dataclasses.replace(ref, law_name=normalize_law_name(law.entry.law_name), issue=None)
        res = resolve_statute_ref(named, self.laws)
        doc = self._doc(res.article_id) if res.article_id else None
        if doc is None:
            reason = f"{law.entry.law_name} has no article {ref.article_key} in the corpus"
            return LinkedRef(text, start, end, ARTICLE, (), ARTICLE_NOT_IN_LAW, reason, former or res.former)
        return LinkedRef(text, start, end, ARTICLE, (doc,), RESOLVED, None, former or res.former)

    def _cases(self, query: str) -> list[LinkedRef]:
        out: list[LinkedRef] = []
        cursor = 0
        refs = [r for r in parse_case_refs(query) if r.case_no and self._case_type_ok(r.case_no)]
        for res in resolve_case_refs(refs, self.cases):
            start = query.find(res.ref.raw, cursor)
            if start < 0:
                continue
            end = start + len(res.ref.raw)
            cursor = start
            doc = self._doc(res.prec_id) if res.prec_id else None
            if doc is None:
                reason = f"no decision numbered {res.ref.case_no} in the corpus"
                out.append(LinkedRef(res.ref.raw, start, end, CASE, (), NOT_IN_CORPUS, reason))
            else:
                out.append(LinkedRef(res.ref.raw, start, end, CASE, (doc,), RESOLVED))
        return out

    def _case_type_ok(self, case_no: str) -> bool:
        m = _CASE_TYPE.match(case_no)
        return m is not None and m.group(1) in self._case_types

    def _law_mentions(self, query: str) -> list[_Mention]:
        """Corpus law names in the query (longest first at each word start, spaces ignored), left to right."""
        chars: list[str] = []
        pos: list[int] = []
        for i, ch in enumerate(query):
            if ch.isspace() or ch in "「」『』":
                continue
            chars.append(normalize_law_name(ch) or ch)
            pos.append(i)
        norm = "".join(chars)
        out: list[_Mention] = []
        k = 0
        while k < len(norm):
            i = pos[k]
            if not _is_hangul(query[i]) or (i > 0 and (_is_hangul(query[i - 1]) or query[i - 1].isalnum())):
                k += 1
                continue
            found = None
            for length in range(min(self._max_name, len(norm) - k), 1, -1):
                key = norm[k : k + length]
                if key not in self._names and not (key[0] == "구" and key[1:] in self._names):
                    continue
                entry, via_former = self.laws.find(key)
                if entry is None:
                    continue
                end = pos[k + length - 1] + 1
                rest = query[end:]
                if _AFTER_NAME.match(rest) and not _SUBORDINATE_AFTER.match(rest):
                    found = _Mention(i, end, entry, via_former), length
                    break
            if found is None:
                k += 1
                continue
            out.append(found[0])
            k += found[1]
        return out

    def _doc(self, doc_id: str) -> str | None:
        """The corpus document for a resolved id (following deduplication), or ``None``."""
        if doc_id in self._docs:
            return doc_id
        kept = self._aliases.get(doc_id)
        return kept if kept in self._docs else None


def _is_hangul(ch: str) -> bool:
    return "가" <= ch <= "힣"


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _key_order(key: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in key.split("-"))
    except ValueError:
        return (1 << 30,)


def _alias_docs(frame: pl.DataFrame) -> dict[str, str]:
    """Document id deduplicated away → the document of the passage that kept its text."""
    out: dict[str, str] = {}
    if frame.schema.get("aliases") != pl.List(pl.String):
        return out
    for doc, aliases in frame.select("doc_id", "aliases").drop_nulls().iter_rows():
        for alias in aliases:
            out.setdefault(alias.split("#", 1)[0], doc)
    return out


# fusion -------------------------------------------------------------------------------------------------------------


def exact_doc_ids(links: Sequence[LinkedRef]) -> list[str]:
    """The documents cited by article or case number, in query order (no repeats)."""
    return list(dict.fromkeys(d for r in links if r.kind != LAW_NAME for d in r.doc_ids))


def law_name_doc_ids(links: Sequence[LinkedRef]) -> set[str]:
    return {d for r in links if r.kind == LAW_NAME for d in r.doc_ids}


def matched_references(links: Sequence[LinkedRef], *, law_names: bool = False) -> dict[str, str]:
    """Document → the query text that linked it (the first reference naming it; law names only when allowed)."""
    out: dict[str, str] = {}
    for r in links:
        if r.kind == LAW_NAME and not law_names:
            continue
        for d in r.doc_ids:
            out.setdefault(d, r.text)
    return out


# What may surround the references of a query that is only a reference: "대법원 2009. 1. 15. 선고 2008다12345 판결",
# "민법 제750조 제1항", "같은 법 3조" — court, dates, 선고 / 판결 / 결정, 항 / 호 / 목 numbers, punctuation.
_REFERENCE_FILLER = re.compile(
    r"대법원|헌법재판소|고등법원|지방법원|선고|판결|결정|전원합의체|및|제?\s*\d+\s*(?:항|호|목|조)?|[^\w]|_"
)


def reference_only(query: str, links: Sequence[LinkedRef]) -> bool:
    """Whether ``query`` is nothing but references (``민법 750조``, ``2008다12345``, ``국가배상법 제3조의2``) with at
    least one resolved article or case: such a query asks for that document, which then comes first whatever the
    linking chosen on valid for descriptive queries (``search.citation_linking: auto``)."""
    if not exact_doc_ids(links):
        return False
    rest, end = [], 0
    for r in sorted(links, key=lambda r: r.start):
        rest.append(query[end : r.start])
        end = max(end, r.end)
    rest.append(query[end:])
    return not _REFERENCE_FILLER.sub("", " ".join(rest)).strip()


def restrict(links: Sequence[LinkedRef], keep: Callable[[str], bool]) -> list[LinkedRef]:
    """``links`` with only the documents ``keep`` allows (e.g. the search filters)."""
    return [dataclasses.replace(r, doc_ids=tuple(d for d in r.doc_ids if keep(d))) for r in links]


def apply_links(
    ranked_doc_ids: Sequence[str],
    scores: Sequence[float],
    links: Sequence[LinkedRef],
    mode: str,
    weight: float,
    *,
    rrf_k: int = 60,
    law_names: bool = False,
) -> list[tuple[str, float]]:
    """Fuse linked documents into a best-first ranking; returns ``(doc_id, score)`` best first.

    - ``off``: the ranking unchanged.
    - ``boost``: scores are min-max normalized over the ranking; a document cited by article or case number gains
      ``weight`` (one not in the ranking enters with 0 + ``weight``), so with ``weight >= 1`` every cited document
      comes first (ties go to cited documents, then to the named law's); a law named without an article
      (``law_names``) raises the retrieved articles of that law by ``LAW_NAME_SHARE · weight`` but adds none.
      Scores are mapped back to the ranking's scale (``lo + normalized · (hi − lo)``).
    - ``list``: the cited documents (retrieved ones by their rank, then the others in query order, then — with
      ``law_names`` — the retrieved articles of named laws) form a second list, fused by RRF:
      ``1/(rrf_k + rank) + weight/(rrf_k + link_rank)``.
    """
    if len(ranked_doc_ids) != len(scores):
        raise ValueError("ranked_doc_ids and scores differ in length")
    if mode not in LINK_MODES:
        raise ValueError(f"unknown citation_linking mode {mode!r}: use one of {list(LINK_MODES)}")
    base = list(zip(ranked_doc_ids, (float(s) for s in scores), strict=True))
    exact = exact_doc_ids(links)
    by_law = law_name_doc_ids(links) if law_names else set()
    if mode == "off" or not (exact or by_law):
        return base
    rank_of = {d: i for i, (d, _) in enumerate(base)}
    exact_set = set(exact)
    cited = sorted(exact, key=lambda d: (rank_of.get(d, len(base)), exact.index(d)))
    if mode == "boost":
        values = [s for _, s in base]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)  # nothing retrieved: cited ones score weight
        span = hi - lo if hi > lo else (abs(hi) or 1.0)
        floor = lo if hi > lo else hi - span  # equal scores normalize to 1.0, as fusion.minmax does
        boosted = {d: (s - floor) / span for d, s in base}
        for d in by_law - exact_set:
            if d in boosted:
                boosted[d] += LAW_NAME_SHARE * weight
        for d in exact:
            boosted[d] = boosted.get(d, 0.0) + weight
        fused = {d: floor + b * span for d, b in boosted.items()}
    else:
        law_list = sorted((d for d in by_law - exact_set if d in rank_of), key=rank_of.__getitem__)
        link_rank = {d: i for i, d in enumerate([*cited, *law_list], start=1)}
        fused = {d: 1.0 / (rrf_k + i) for i, (d, _) in enumerate(base, start=1)}
        for d, r in link_rank.items():
            fused[d] = fused.get(d, 0.0) + weight / (rrf_k + r)
    order = {d: i for i, d in enumerate([*cited, *(d for d, _ in base if d not in exact_set)])}
    tier = {d: 0 for d in exact} | {d: 1 for d in by_law - exact_set}  # ties: cited, then the named law's, then rest
    return sorted(fused.items(), key=lambda kv: (-kv[1], tier.get(kv[0], 2), order[kv[0]]))
