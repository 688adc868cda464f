"""Parse 참조판례 strings (``대법원 1992. 2. 11. 선고 91다41118 판결(공1992, 1046)``) and resolve them to precedents.

Like the statute parser this cleans the text (bracketed notes such as ``(공1992, 1046)`` go), then walks tokens:
court names, dates, case numbers, bare numbers that share the previous number's year and type
(``2007다63089, 63096``), and the decision kind (``판결``/``결정``) that closes a citation. The court carries
forward (``대법원 1991. 7. 23. 선고 …, 1991. 8. 13. 선고 …``). Never raises on input.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lexdpr_pipeline.citations._text import clean, label_index
from lexdpr_pipeline.sources.ids import precedent_id
from lexdpr_pipeline.sources.records import Precedent

RESOLVED = "resolved"
NOT_IN_CORPUS = "not_in_corpus"
UNPARSEABLE = "unparseable"
CASE_STATUSES = (RESOLVED, NOT_IN_CORPUS, UNPARSEABLE)


@dataclass(frozen=True, slots=True)
class CaseRef:
    """One cited decision (one case number; a citation of several numbers gives several refs)."""

    court: str | None  # "대법원", "헌법재판소", "서울고등법원", … (None when the text names none)
    date: dt.date | None  # 선고일 / 결정일
    case_no: str  # normalized, no spaces: "91다41118"; "" when the citation has no readable number
    kind: str | None  # 판결, 결정, 명령, 재정
    en_banc: bool = False  # 전원합의체 / 전원재판부
    groups: tuple[int, ...] = ()
    raw: str = ""

    @property
    def group(self) -> int | None:
        return self.groups[0] if self.groups else None


_CASE_NO = r"(?P<year>\d{2,4})\s*(?P<type>[가-힣]{1,4}?)\s*(?P<num>\d{1,7})(?P<suffix>-\d{1,2})?(?!\d)"
_COURT = r"대법원|헌법재판소|(?:[가-힣]{1,12}법원|[가-힣]{1,6}(?:고법|지법|가법|행법))(?:\s*[가-힣]{1,5}지원)?"
_TOKEN = re.compile(
    rf"""
    (?P<group>\[\s*(?P<group_n>\d{{1,3}})\s*\])
  | (?P<slash>/)
  | (?P<court>{_COURT})
  | (?P<date>(?P<y>\d{{4}})\s*\.\s*(?P<m>\d{{1,2}})\s*\.\s*(?P<d>\d{{1,2}})(?!\d)\s*\.?)
  | (?P<case>{_CASE_NO})
  | (?P<bare>(?<![\d.])\d{{1,7}}(?![\d.]))
  | (?P<kind>(?P<bench>전원\s*(?:합의체|재판부|합의부))?\s*(?P<kind_w>판\s*결|결\s*정|명\s*령|재\s*정))
  | (?P<sep>[,·ㆍ]|내지)
    """,
    re.VERBOSE,
)
_SPACES = re.compile(r"\s+")
_LABELS = re.compile(r"^\s*((?:[가나다라마바사아자차카타파하]\s*\.\s*)+)")
_NUMBER = re.compile(_CASE_NO)
_NUMBER_OR_BARE = re.compile(rf"{_CASE_NO}|(?P<bare>(?<![\d.])\d{{1,7}}(?![\d.]))")
_NOT_A_TYPE = frozenset({"선고", "자", "고지", "판결", "결정", "등", "및", "내지", "호", "공", "집"})


def _case_type_ok(case_type: str) -> bool:
    return case_type not in _NOT_A_TYPE and not case_type.startswith(("선고", "판결", "결정"))


def normalize_case_no(text: str) -> str:
    """``"91 다 41118"`` → ``"91다41118"`` (whitespace removed; nothing else changes)."""
    return _SPACES.sub("", text)


def split_case_numbers(text: str) -> list[str]:
    """Every case number in a 사건번호 field: ``2000므1257(본소), 1264(반소)`` → ``["2000므1257", "2000므1264"]``.

    A bare number takes the year and type of the number before it; one with nothing before it is dropped.
    """
    out: list[str] = []
    prefix: str | None = None
    for m in _NUMBER_OR_BARE.finditer(clean(text).text):
        if m.group("bare"):
            if prefix is not None:
                out.append(prefix + m.group("bare"))
            continue
        if not _case_type_ok(m.group("type")):
            continue
        prefix = m.group("year") + m.group("type")
        out.append(prefix + m.group("num") + (m.group("suffix") or ""))
    return list(dict.fromkeys(out))


@dataclass(slots=True)
class _Pending:
    case_no: str
    start: int


@dataclass(slots=True)
class _CaseState:
    court: str | None = None
    court_start: int | None = None  # a court token not yet used by a citation
    date: dt.date | None = None
    cite_start: int | None = None
    numbers: list[_Pending] = field(default_factory=list)
    prefix: str | None = None  # year+type of the last full number, for bare numbers
    last_number: bool = False  # the previous token was a number (or a separator after one)
    groups: tuple[int, ...] = ()
    last_was_group: bool = False
    segment_start: bool = True
    kind: str | None = None  # a 판결/결정 seen before the citation's number
    en_banc: bool = False
    kind_end: int = 0
    last_end: int = 0  # end of the last token that belongs to the open citation


def parse_case_refs(text: str) -> list[CaseRef]:
    """Every cited decision in a 참조판례 string, in order. Never raises."""
    try:
        return _parse(text if isinstance(text, str) else str(text or ""))
    except Exception:  # a parser bug must not stop a pipeline run: report the whole string instead
        raw = str(text).strip()
        return [CaseRef(None, None, "", None, raw=raw)] if raw else []


def _parse(text: str) -> list[CaseRef]:
    cleaned = clean(text, keep_letters=False)
    src = cleaned.text
    st = _CaseState()
    out: list[CaseRef] = []

    def emit(kind: str | None, en_banc: bool, end: int) -> None:
        start = st.cite_start if st.cite_start is not None else (st.numbers[0].start if st.numbers else end)
        raw = cleaned.raw(start, max(end, st.kind_end))
        if st.numbers:
            out.extend(CaseRef(st.court, st.date, p.case_no, kind, en_banc, st.groups, raw) for p in st.numbers)
        elif kind is not None and st.date is not None:  # a dated decision whose number could not be read
            out.append(CaseRef(st.court, st.date, "", kind, en_banc, st.groups, raw))
        st.numbers = []
        st.date = None
        st.cite_start = None
        st.last_number = False
        st.kind, st.en_banc, st.kind_end = None, False, 0

    def flush() -> None:
        """Close an open citation (its numbers, or a kind seen before its number: "1962.1.29 결정 1961행항13")."""
        if st.numbers or st.kind is not None:
            emit(st.kind, st.en_banc, st.last_end)

    pos = 0
    for m in _TOKEN.finditer(src):
        gap = src[pos : m.start()]
        if st.segment_start and gap.strip() and (lm := _LABELS.match(gap)):
            st.groups = tuple(label_index(c) for c in lm.group(1) if c not in ". \t\r\n")
        if gap.strip():
            st.segment_start = False
            st.last_was_group = False
            st.last_number = False
        pos = m.end()
        kind = m.lastgroup
        if kind == "group":
            flush()
            n = int(m.group("group_n"))
            st.groups = (*st.groups, n) if st.last_was_group else (n,)
            st.last_was_group = True
            st.segment_start = True
            continue
        st.last_was_group = False
        if kind == "slash":
            flush()
            st.groups, st.segment_start = (), True
            continue
        st.segment_start = False
        if kind == "court":
            flush()
            st.court = _SPACES.sub(" ", m.group("court"))
            st.court_start = m.start()
            st.last_number = False
        elif kind == "date":
            flush()
            st.date = _date(m.group("y"), m.group("m"), m.group("d"))
            st.cite_start = st.court_start if st.court_start is not None else m.start()
            st.court_start = None
            st.last_number = False
        elif kind == "case":
            if not _case_type_ok(m.group("type")):
                st.last_number = False
                continue
            if st.cite_start is None:
                st.cite_start = st.court_start if st.court_start is not None else m.start()
                st.court_start = None
            st.prefix = m.group("year") + m.group("type")
            st.numbers.append(_Pending(st.prefix + m.group("num") + (m.group("suffix") or ""), m.start()))
            st.last_number = True
            st.last_end = m.end()
        elif kind == "bare":
            if st.last_number and st.prefix is not None and st.numbers:
                st.numbers.append(_Pending(st.prefix + m.group("bare"), m.start()))
                st.last_end = m.end()
            else:
                st.last_number = False
        elif kind == "sep":
            pass  # keeps last_number: "63089, 63096" / "1792·1793"
        elif kind == "kind":
            kind_w, en_banc = _SPACES.sub("", m.group("kind_w")), m.group("bench") is not None
            if st.numbers or st.date is None:
                emit(kind_w, en_banc, m.end())
            else:  # the number may still follow
                st.kind, st.en_banc, st.kind_end = kind_w, en_banc, m.end()
    flush()
    return _dedupe(out)


def _dedupe(refs: list[CaseRef]) -> list[CaseRef]:
    """Drop exact repeats within one group (sources sometimes list the same decision twice)."""
    seen: set[tuple[object, ...]] = set()
    out: list[CaseRef] = []
    for r in refs:
        key = (r.court, r.date, r.case_no, r.kind, r.groups)
        if r.case_no and key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def _date(y: str, m: str, d: str) -> dt.date | None:
    try:
        return dt.date(int(y), int(m), int(d))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _CaseEntry:
    prec_id: str
    court: str
    date: dt.date | None


@dataclass(slots=True)
class CaseNumberIndex:
    """Normalized case number → the corpus precedents filed under it (one decision may carry several numbers)."""

    by_number: dict[str, list[_CaseEntry]] = field(default_factory=dict)

    @classmethod
    def from_precedents(cls, precedents: Iterable[Precedent]) -> CaseNumberIndex:
        by_number: dict[str, list[_CaseEntry]] = {}
        for p in precedents:
            try:
                pid = p.prec_id or precedent_id(p.serial_no)
            except ValueError:
                continue
            entry = _CaseEntry(pid, p.court, p.decision_date)
            for number in split_case_numbers(p.case_no):
                by_number.setdefault(number, []).append(entry)
        return cls(by_number)

    def lookup(self, case_no: str, *, date: dt.date | None = None, court: str | None = None) -> str | None:
        """The ``prec:`` id of the decision numbered ``case_no``; date and court break ties between courts."""
        entries = self.by_number.get(normalize_case_no(case_no))
        if not entries:
            return None
        if len(entries) > 1:
            ranked = sorted(entries, key=lambda e: (e.date != date, e.court != court, e.prec_id))
            return ranked[0].prec_id
        return entries[0].prec_id

    def __len__(self) -> int:
        return len(self.by_number)


@dataclass(frozen=True, slots=True)
class CaseResolution:
    ref: CaseRef
    prec_id: str | None
    status: str  # one of CASE_STATUSES

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED


def resolve_case_refs(refs: Iterable[CaseRef], index: CaseNumberIndex) -> list[CaseResolution]:
    """Resolve case references to ``prec:`` ids: ``resolved``, ``not_in_corpus`` or ``unparseable``."""
    out: list[CaseResolution] = []
    for ref in refs:
        if not ref.case_no:
            out.append(CaseResolution(ref, None, UNPARSEABLE))
            continue
        pid = index.lookup(ref.case_no, date=ref.date, court=ref.court)
        out.append(CaseResolution(ref, pid, RESOLVED if pid else NOT_IN_CORPUS))
    return out
