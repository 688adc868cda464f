"""Parse 참조조문 strings (``민법 제168조 제2호, 제174조, 민사소송법 제524조의2``) into statute references.

The string is cleaned (bracketed notes removed, see :mod:`._text`), cut into *structural* tokens (articles,
paragraphs, items, sub-items, commas, ``/``, group markers, ``부칙``, ``별표``, range words), and the text between
two tokens is a *word* run: a law name, ``같은 법`` / ``동법``, a qualifier such as ``단서``, or noise. A small state
machine walks the tokens; the law name carries forward until another one appears. Nothing here raises on input:
what cannot be read becomes a reference with ``issue="unparseable"`` whose ``raw`` is the fragment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lexdpr_pipeline.citations._text import FORMER_MARK, Cleaned, clean, label_index
from lexdpr_pipeline.citations.law_names import normalize_law_name

ISSUE_ADDENDA = "addenda"
ISSUE_UNPARSEABLE = "unparseable"

MAX_RANGE = 30  # a 제N조 내지 제M조 range wider than this keeps its two ends only


@dataclass(frozen=True, slots=True)
class StatuteRef:
    """One cited article (or one 항/호/목 of it).

    ``issue`` is ``None`` for a normal reference, ``"addenda"`` for a 부칙 article (not resolvable: addenda
    numbering restarts per amendment), ``"unparseable"`` for a fragment that names no law or no article.
    """

    law_name: str  # normalized (see normalize_law_name); "" when unknown
    article_no: int  # 0 when unknown
    article_branch: int = 0  # M of 제N조의M
    paragraph: int | None = None  # 항
    item: str | None = None  # 호: "2", "2의3"
    subitem: str | None = None  # 목: "가"
    former: bool = False  # 구 …법 / (… 개정되기 전의 것)
    issue: str | None = None
    groups: tuple[int, ...] = ()  # [1][2] → (1, 2); 가.나. → (1, 2); () when not numbered
    raw: str = ""

    @property
    def group(self) -> int | None:
        """The first group index (``None`` when the text is not numbered)."""
        return self.groups[0] if self.groups else None

    @property
    def article_key(self) -> str:
        """``"N"`` or ``"N-M"``, as in ``StatuteArticle.article_key``."""
        return f"{self.article_no}-{self.article_branch}" if self.article_branch else str(self.article_no)


_TOKEN = re.compile(
    r"""
    (?P<group>\[\s*(?P<group_n>\d{1,3})\s*\])
  | (?P<slash>/)
  | (?P<comma>[,;])
  | (?P<former>\x01)
  | (?P<appendix>\x02|별\s*표(?:\s*제?\s*\d+(?:\s*의\s*\d+)?\s*호?)?)
  | (?P<addenda>부\s*칙)
  | (?P<range>내\s*지|~|부터)
  | (?P<art>(?:제\s*)?(?P<art_n>\d{1,5})\s*조(?:\s*의\s*(?P<art_m>\d{1,3})(?![\d\s]*[항호]))?)
  | (?P<para>(?:제\s*)?(?P<para_n>\d{1,3}(?:\s*[,·]\s*\d{1,3})*)\s*항)
  | (?P<item>(?:제\s*)?(?P<item_n>\d{1,3}(?:\s*의\s*\d{1,3})?(?:\s*[,·]\s*\d{1,3})*)\s*호
             (?:\s*의\s*(?P<item_m>\d{1,3}))?)
  | (?P<sub>(?<![가-힣])(?P<sub_c>[가나다라마바사아자차카타파하])\s*목)
    """,
    re.VERBOSE,
)

_SPACES = re.compile(r"\s+")
_LABELS = re.compile(r"^\s*((?:[가나다라마바사아자차카타파하]\s*\.\s*)+)")
_LEADING_CONNECTOR = re.compile(r"^(?:및|또는|그리고|와|과|등)\s+")
_TRAILING_QUALIFIER = re.compile(r"\s+(?:전문|본문|단서|전단|후단|각\s*호|중|등)$")
_FORMER_PREFIX = re.compile(r"^구\s+")
_NOISE_CHARS = re.compile(r"[\s.,:·\-\x01\"'`]+")
_NOISE_WORDS = frozenset(
    (
        *("단서", "본문", "전단", "후단", "전문", "후문", "본문및단서", "단서및본문", "본문전단", "본문후단"),
        *("단서전단", "단서후단", "각호", "각목", "각", "항", "호", "목", "조", "제", "참조", "현행", "삭제"),
        *("같은취지", "이하", "등", "및", "또는", "중", "내", "의", "까지", "에서", "에"),
    )
)
_LAWISH = re.compile(r"(?:법|법률|령|규칙|규정|조례|협약|조약|통칙|고시|훈령|예규|요령|지침|규약|협정|조치)$")
_SAME_LAW = re.compile(r"^(?:같은|동|위|본)(?P<what>법률|법|령|영|규칙)?(?P<suffix>시행령|시행규칙)?$")
_SUBORDINATE = re.compile(r"(?:시행령|시행규칙)$")
_DESCRIPTION = re.compile(r"^(?:(?:본문|단서|전단|후단|각\s*호)\s*)?(?:의|에|에서|에서의|에\s*관한)\s")
_NUM_SPLIT = re.compile(r"\s*[,·]\s*")


@dataclass(slots=True)
class _Leaf:
    law: str
    former: bool
    issue: str | None
    groups: tuple[int, ...]
    start: int  # cleaned-text span
    end: int
    article_no: int = 0
    article_branch: int = 0
    paragraph: int | None = None
    item: str | None = None
    subitem: str | None = None

    def freeze(self, cleaned: Cleaned) -> StatuteRef:
        return StatuteRef(
            law_name=self.law,
            article_no=self.article_no,
            article_branch=self.article_branch,
            paragraph=self.paragraph,
            item=self.item,
            subitem=self.subitem,
            former=self.former,
            issue=self.issue,
            groups=self.groups,
            raw=cleaned.raw(self.start, self.end),
        )


@dataclass(slots=True)
class _Words:
    text: str
    start: int
    end: int


@dataclass(slots=True)
class _State:
    leaves: list[_Leaf] = field(default_factory=list)
    law: str | None = None  # the law bare articles belong to
    former: bool = False
    addenda: bool = False
    appendix: bool = False  # after [별표 …]: 항/호/목 describe the table, not the article
    groups: tuple[int, ...] = ()
    last_was_group: bool = False
    bracket_groups: bool = False  # the text numbers its groups [1] [2]: then 가. is a 목 label, not a group
    words: _Words | None = None  # pending word run (a law name until proven otherwise)
    words_former: bool = False
    range_pending: bool = False
    cur: _Leaf | None = None  # the reference 항/호/목 attach to
    orphan: _Leaf | None = None  # an unparseable fragment being extended
    name_start: int | None = None  # where the law name just taken starts (a reference's raw begins there)
    addenda_start: int | None = None  # where "X법 부칙" starts
    dangling: _Leaf | None = None  # a law cited without an article, until an article for it turns up
    after_separator: bool = True  # no token but separators since the start or the last ",", "/", "[n]"


def parse_statute_refs(text: str) -> list[StatuteRef]:
    """Every statute reference in a 참조조문 string, in order. Never raises; see :class:`StatuteRef`."""
    try:
        return _parse(text if isinstance(text, str) else str(text or ""))
    except Exception:  # a parser bug must not stop a pipeline run: report the whole string instead
        return [StatuteRef("", 0, issue=ISSUE_UNPARSEABLE, raw=str(text).strip())] if str(text).strip() else []


def _parse(text: str) -> list[StatuteRef]:
    cleaned = clean(text)
    st = _State()
    pos = 0
    src = cleaned.text
    for m in _TOKEN.finditer(src):
        _gap(st, src, pos, m.start())
        pos = m.end()
        kind = m.lastgroup
        after_separator, st.after_separator = st.after_separator, kind in ("group", "slash", "comma")
        if kind == "former":
            st.after_separator = after_separator
        if kind == "group":
            _on_group(st, int(m.group("group_n")))
            continue
        st.last_was_group = False
        if kind == "slash":
            _flush_words(st)
            st.orphan = None
            st.groups, st.cur, st.range_pending, st.dangling = (), None, False, None
            continue
        if kind == "comma":
            _flush_words(st)
            st.orphan = None
            st.range_pending = False
        elif kind == "former":
            if st.words is not None:  # "구 소득세법(… 개정되기 전의 것)"
                st.words_former = True
                st.words.end = m.end()
            elif st.after_separator:  # "(구)하천법": the note comes first
                st.words_former = True
        elif kind == "appendix":
            _on_appendix(st, m.start(), m.end())
        elif kind == "addenda":
            _on_addenda(st, m.start(), m.end())
        elif kind == "range":
            st.range_pending = True
        elif kind == "art":
            _on_article(st, int(m.group("art_n")), int(m.group("art_m") or 0), m.start(), m.end())
        elif kind == "para":
            _on_modifier(st, "paragraph", m.group("para_n"), m.start(), m.end())
        elif kind == "item":
            value = _SPACES.sub("", m.group("item_n"))
            if m.group("item_m"):
                value = f"{value}의{m.group('item_m')}"
            _on_modifier(st, "item", value, m.start(), m.end())
        elif kind == "sub":
            _on_modifier(st, "subitem", m.group("sub_c"), m.start(), m.end())
    _gap(st, src, pos, len(src))
    _flush_words(st)
    st.orphan = None
    return [leaf.freeze(cleaned) for leaf in st.leaves]


def _gap(st: _State, src: str, start: int, end: int) -> None:
    """Text between two tokens: collect it as a word run (noise is dropped right away)."""
    chunk = src[start:end]
    if not chunk.strip():
        return
    if st.words is None and (lm := _LABELS.match(chunk)):  # "가.나." list labels, usually after "/"
        if not st.bracket_groups:  # in "[2] … 제2조 제1항 가. (2) 제1호" the 가. is a 목, and the group stays [2]
            st.groups = tuple(label_index(c) for c in lm.group(1) if c not in ". \t\r\n")
        start += lm.end()
        chunk = src[start:end]
        if not chunk.strip():
            return
    st.last_was_group = False
    lead = len(chunk) - len(chunk.lstrip())
    trail = len(chunk.rstrip())
    if st.words is None:
        st.words = _Words(chunk.strip(), start + lead, start + trail)
    else:  # e.g. "구" + FORMER_MARK + more text
        st.words = _Words(src[st.words.start : start + trail], st.words.start, start + trail)


def _bare_words(words: str) -> str:
    """A word run without placeholders, leading connectors (``및``) or trailing qualifiers (``헌법 전문``)."""
    text = _LEADING_CONNECTOR.sub("", words.replace(FORMER_MARK, " ").strip())
    return _TRAILING_QUALIFIER.sub("", text)


def _is_noise(words: str) -> bool:
    bare = _NOISE_CHARS.sub("", words)
    return not bare or bare in _NOISE_WORDS or bare.isdigit() or (len(bare) == 1 and "가" <= bare <= "힣")


def _take_law(st: _State) -> bool:
    """Consume the pending word run as the law for what follows. False when the run is only noise."""
    w = st.words
    if w is None:
        return False
    st.words = None
    former_mark = st.words_former or FORMER_MARK in w.text
    st.words_former = False
    text = _bare_words(w.text)
    if _is_noise(text):
        return False
    former = former_mark
    if m := _FORMER_PREFIX.match(text):
        text, former = text[m.end() :], True
    name = normalize_law_name(text)
    if same := _SAME_LAW.match(name):
        name, prev_former = _same_law(st, same.group("what"), same.group("suffix"))
        former = former or prev_former
    st.law, st.former, st.addenda, st.appendix = name, former, False, False
    st.cur = None
    st.range_pending = False
    st.name_start = w.start
    return True


def _same_law(st: _State, what: str | None, suffix: str | None) -> tuple[str, bool]:
    """``같은 법`` / ``동법 시행령`` / ``같은 령`` → the law it points back to ("" when nothing came before)."""
    prev = st.law or ""
    if not prev:
        return "", False
    base = _SUBORDINATE.sub("", prev)
    if suffix:
        return base + suffix, st.former
    if what in ("령", "영"):
        return (prev if prev.endswith("시행령") else base + "시행령"), st.former
    if what == "규칙":
        return (prev if prev.endswith("규칙") else base + "시행규칙"), st.former
    return base, st.former


def _flush_words(st: _State) -> None:
    """A word run followed by no article: a qualifier/noise (dropped) or a law cited without an article."""
    w = st.words
    if w is None:
        return
    former = st.words_former
    st.words = None
    st.words_former = False
    text = w.text.replace(FORMER_MARK, " ").strip()
    if _is_noise(text):
        return
    bare = _bare_words(text)
    if _DESCRIPTION.match(bare):  # "…제3조 제1항 본문의 법정이율에 관한 규정": prose about the article
        return
    if _LAWISH.search(_SPACES.sub("", bare)):
        # A law named with no article. Bare articles that follow belong to it ("구 사방사업법(…), 제2조"), and
        # then it was no fragment after all: _on_article drops the leaf again.
        st.words, st.words_former = w, former
        _take_law(st)
        st.name_start = None
        st.dangling = _Leaf("", False, ISSUE_UNPARSEABLE, st.groups, w.start, w.end)
        st.leaves.append(st.dangling)
    elif any(c.isdigit() for c in bare):
        st.leaves.append(_Leaf("", False, ISSUE_UNPARSEABLE, st.groups, w.start, w.end))


def _span_start(st: _State, fallback: int) -> int:
    """Start of the reference being opened: the law name just taken, else ``fallback``."""
    start, st.name_start = st.name_start, None
    return fallback if start is None else start


def _on_group(st: _State, n: int) -> None:
    _flush_words(st)
    st.orphan = None
    st.groups = (*st.groups, n) if st.last_was_group else (n,)
    st.last_was_group = True
    st.bracket_groups = True
    st.cur = None
    st.dangling = None
    st.range_pending = False


def _on_appendix(st: _State, start: int, end: int) -> None:
    if st.words is not None:
        w = st.words
        if _take_law(st):  # "도로교통법시행규칙 별표 16": a table cited without an article
            st.leaves.append(_Leaf("", False, ISSUE_UNPARSEABLE, st.groups, w.start, end))
            _span_start(st, start)
    st.appendix = True


def _on_addenda(st: _State, start: int, end: int) -> None:
    _take_law(st)
    st.addenda = True
    st.appendix = False
    st.cur = None
    st.addenda_start = _span_start(st, start)


def _on_article(st: _State, n: int, m: int, start: int, end: int) -> None:
    named = _take_law(st)
    span_start = _span_start(st, start) if named else start
    if st.dangling is not None:
        if not named and st.leaves and st.leaves[-1] is st.dangling:
            st.leaves.pop()
            span_start = st.dangling.start
        st.dangling = None
    if st.addenda_start is not None and st.addenda:
        span_start = min(span_start, st.addenda_start)
    st.addenda_start = None
    st.appendix = False
    st.orphan = None
    law = st.law or ""
    issue = ISSUE_ADDENDA if st.addenda else (None if law else ISSUE_UNPARSEABLE)
    prev = st.cur
    if st.range_pending and prev is not None and prev.law == law:
        for k_n, k_m in _article_range(prev.article_no, prev.article_branch, n, m):
            st.leaves.append(_Leaf(law, st.former, issue, st.groups, prev.start, end, k_n, k_m))
    st.range_pending = False
    leaf = _Leaf(law, st.former, issue, st.groups, span_start, end, n, m)
    st.leaves.append(leaf)
    st.cur = leaf


def _article_range(n0: int, m0: int, n1: int, m1: int) -> list[tuple[int, int]]:
    """The articles strictly between two range ends (``제3조 내지 제5조`` → 제4조)."""
    if m0 == 0 and m1 == 0 and 0 < n1 - n0 <= MAX_RANGE:
        return [(k, 0) for k in range(n0 + 1, n1)]
    if n0 == n1 and 0 <= m0 < m1 and m1 - m0 <= MAX_RANGE:
        return [(n0, k) for k in range(m0 + 1, m1)]
    return []


_LEVELS = ("paragraph", "item", "subitem")


def _on_modifier(st: _State, level: str, value: str, start: int, end: int) -> None:
    """A 항/호/목 token: refine the current reference, or start a sibling reference of the same article."""
    if st.words is not None:
        w = st.words
        st.words = None
        st.words_former = False
        text = w.text.replace(FORMER_MARK, " ")
        if not _is_noise(text):  # "건설부고시 제897호": a named thing with no article
            st.law, st.former, st.addenda, st.cur = normalize_law_name(text), False, False, None
            st.orphan = _Leaf("", False, ISSUE_UNPARSEABLE, st.groups, w.start, end)
            st.leaves.append(st.orphan)
            return
    if st.orphan is not None:
        st.orphan.end = end
        return
    if st.appendix:
        return
    values: list[str] = [v for v in _NUM_SPLIT.split(value) if v] if level != "subitem" else [value]
    cur = st.cur
    if cur is None:
        if st.addenda and level == "paragraph":  # old-style addenda: "부칙 제2항"
            a_start = start if st.addenda_start is None else st.addenda_start
            leaf = _Leaf(st.law or "", st.former, ISSUE_ADDENDA, st.groups, a_start, end)
            leaf.paragraph = _int(values[0])
            st.leaves.append(leaf)
            st.cur = leaf
            st.addenda_start = None
            return
        st.orphan = _Leaf("", False, ISSUE_UNPARSEABLE, st.groups, start, end)
        st.leaves.append(st.orphan)
        return
    if st.range_pending and level == "paragraph" and cur.paragraph is not None and values:
        hi = _int(values[0])
        lo = cur.paragraph
        if hi is not None and 0 < hi - lo <= MAX_RANGE:
            values = [str(k) for k in range(lo + 1, hi + 1)]
    st.range_pending = False
    idx = _LEVELS.index(level)
    for raw_value in values:
        v: int | str | None = _int(raw_value) if level == "paragraph" else raw_value
        if v is None:
            continue
        if cur.groups == st.groups and all(getattr(cur, lv) is None for lv in _LEVELS[idx:]):
            setattr(cur, level, v)
            cur.end = max(cur.end, end)
            continue
        leaf = _Leaf(cur.law, cur.former, cur.issue, st.groups, start, end, cur.article_no, cur.article_branch)
        for lv in _LEVELS[:idx]:
            setattr(leaf, lv, getattr(cur, lv))
        setattr(leaf, level, v)
        st.leaves.append(leaf)
        cur = leaf
    st.cur = cur


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
