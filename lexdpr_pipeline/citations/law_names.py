"""Law-name normalization and the name → 법령ID index that citation resolution looks names up in.

Citations write law names the way people type them: with or without spaces (``특정범죄가중처벌등에관한법률``),
with any of the middle dots (ㆍ U+318D, · U+00B7, ・ U+30FB, ‧ U+2027), in 「」 quotes, or shortened
(``헌법`` for ``대한민국헌법``). :func:`normalize_law_name` folds all of these to one key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lexdpr_pipeline.sources.records import StatuteArticle

# Every middle-dot look-alike seen in law names, folded to U+00B7.
_DOTS = str.maketrans({"\u318d": "·", "\u30fb": "·", "\u2027": "·", "\u2022": "·", "\u22c5": "·", "\uff65": "·"})
_DROP = re.compile(r"[\s「」『』〈〉《》\u200b\ufeff]+")

# Short spellings people cite for a law whose official name is longer (same law, same version).
DEFAULT_ALIASES: dict[str, str] = {
    "헌법": "대한민국헌법",
}

# Former names of laws that were renamed *without* renumbering (same 법령ID): a citation by the old name is a
# citation of a former version. Laws replaced by a new enactment (회사정리법, 증권거래법, 상속세법 …) are not here:
# their article numbers do not carry over.
RENAMED_LAWS: dict[str, str] = {
    "공직선거및선거부정방지법": "공직선거법",  # renamed 2005-08-04 (법률 제7681호)
    "부정경쟁방지법": "부정경쟁방지및영업비밀보호에관한법률",  # renamed 1998-12-31 (법률 제5621호)
}


def normalize_law_name(name: str) -> str:
    """Fold a law name to its lookup key: no whitespace, one middle dot (U+00B7), no 「」 quotes."""
    return _DROP.sub("", name.translate(_DOTS))


@dataclass(frozen=True, slots=True)
class LawEntry:
    """One law (법령) of the corpus as the index knows it."""

    law_id: str
    law_name: str  # as the corpus spells it
    law_kind: str
    promulgation_date: dt.date | None
    article_keys: frozenset[str]  # "N" / "N-M"


@dataclass(slots=True)
class LawNameIndex:
    """Normalized law name → the corpus law of that name (the most recently promulgated one on a clash)."""

    by_name: dict[str, LawEntry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_articles(
        cls,
        articles: Iterable[StatuteArticle],
        aliases: dict[str, str] | None = None,
        renamed: dict[str, str] | None = None,
    ) -> LawNameIndex:
        """Build the index from statute article records (any order; deleted articles still count as keys)."""
        keys: dict[str, set[str]] = {}
        meta: dict[str, StatuteArticle] = {}
        for art in articles:
            keys.setdefault(art.law_id, set()).add(art.article_key)
            meta.setdefault(art.law_id, art)
        by_name: dict[str, LawEntry] = {}
        for law_id, art in meta.items():
            entry = LawEntry(law_id, art.law_name, art.law_kind, art.promulgation_date, frozenset(keys[law_id]))
            name = normalize_law_name(art.law_name)
            old = by_name.get(name)
            if old is None or _newer(entry, old):
                by_name[name] = entry
        alias_map = {normalize_law_name(k): normalize_law_name(v) for k, v in (aliases or DEFAULT_ALIASES).items()}
        renamed_map = {normalize_law_name(k): normalize_law_name(v) for k, v in (renamed or RENAMED_LAWS).items()}
        return cls(by_name=by_name, aliases=alias_map, renamed=renamed_map)

    def lookup(self, name: str) -> LawEntry | None:
        """The law cited as ``name`` (any spelling), or ``None`` when the corpus lacks it."""
        return self.find(name)[0]

    def find(self, name: str) -> tuple[LawEntry | None, bool]:
        """``(law, via_former_name)``: the law cited as ``name``, and whether only a former name matched.

        Tries the name, then a known short alias, then a known former name of a renamed law, then — for
        ``구하천법`` written without the space after ``구`` — the name without its leading ``구``.
        """
        key = normalize_law_name(name)
        entry = self.by_name.get(key) or self.by_name.get(self.aliases.get(key, ""))
        if entry is not None:
            return entry, False
        if key in self.renamed:
            entry = self.by_name.get(self.renamed[key])
            if entry is not None:
                return entry, True
        if key.startswith("구") and len(key) > 2 and key[1:] not in ("법", "법률"):
            entry, _ = self.find(key[1:])
            if entry is not None:
                return entry, True
        return None, False

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __len__(self) -> int:
        return len(self.by_name)


def _newer(a: LawEntry, b: LawEntry) -> bool:
    """Whether ``a`` was promulgated after ``b`` (unknown dates lose; ties go to the larger 법령ID)."""
    da, db = a.promulgation_date or dt.date.min, b.promulgation_date or dt.date.min
    return (da, a.law_id) > (db, b.law_id)
