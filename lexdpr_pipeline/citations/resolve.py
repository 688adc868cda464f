"""Resolve parsed statute references to corpus article ids, and count how that went."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lexdpr_pipeline.citations.law_names import LawNameIndex
from lexdpr_pipeline.citations.statute_refs import ISSUE_ADDENDA, StatuteRef
from lexdpr_pipeline.sources.ids import statute_article_id

RESOLVED = "resolved"
LAW_NOT_IN_CORPUS = "law_not_in_corpus"
ARTICLE_NOT_IN_LAW = "article_not_in_law"
UNPARSEABLE = "unparseable"
ADDENDA = "addenda"
STATUTE_STATUSES = (RESOLVED, LAW_NOT_IN_CORPUS, ARTICLE_NOT_IN_LAW, UNPARSEABLE, ADDENDA)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one statute reference resolved to.

    ``former`` is carried from the reference (or set when only ``구``-prefixed spelling matched, ``구하천법``):
    a former-version citation resolves to the *current* article with the same number, so training code can
    weigh or drop it.
    """

    ref: StatuteRef
    article_id: str | None
    status: str
    former: bool

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED


def resolve_statute_ref(ref: StatuteRef, index: LawNameIndex) -> Resolution:
    """Resolve one reference (see :func:`resolve_statute_refs`)."""
    if ref.issue == ISSUE_ADDENDA:
        return Resolution(ref, None, ADDENDA, ref.former)
    if ref.issue is not None or not ref.law_name or ref.article_no <= 0:
        return Resolution(ref, None, UNPARSEABLE, ref.former)
    law, via_former_name = index.find(ref.law_name)
    former = ref.former or via_former_name
    if law is None:
        return Resolution(ref, None, LAW_NOT_IN_CORPUS, former)
    if ref.article_key not in law.article_keys:
        return Resolution(ref, None, ARTICLE_NOT_IN_LAW, former)
    return Resolution(ref, statute_article_id(law.law_id, ref.article_no, ref.article_branch), RESOLVED, former)


def resolve_statute_refs(refs: Iterable[StatuteRef], index: LawNameIndex) -> list[Resolution]:
    """Resolve references to ``law:{법령ID}:{N}[-{M}]`` ids; each gets one of :data:`STATUTE_STATUSES`."""
    return [resolve_statute_ref(ref, index) for ref in refs]


@dataclass(slots=True)
class CitationStats:
    """Running counts of resolution outcomes (statute or case), for logs and asset metadata."""

    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    former: int = 0  # resolved references that cite a former version

    def add(self, resolutions: Iterable[Any]) -> CitationStats:
        """Count resolutions (anything with ``.status``; ``.former`` counted when present). Returns ``self``."""
        for r in resolutions:
            self.total += 1
            self.by_status[r.status] += 1
            if r.status == RESOLVED and getattr(r, "former", False):
                self.former += 1
        return self

    @property
    def resolved(self) -> int:
        return self.by_status[RESOLVED]

    @property
    def resolution_rate(self) -> float:
        return self.resolved / self.total if self.total else 0.0

    def rate(self, status: str) -> float:
        return self.by_status[status] / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able counts: total, resolved, rate, former, and one entry per status seen."""
        return {
            "total": self.total,
            "resolved": self.resolved,
            "resolution_rate": round(self.resolution_rate, 4),
            "resolved_former": self.former,
            "by_status": dict(sorted(self.by_status.items())),
        }
