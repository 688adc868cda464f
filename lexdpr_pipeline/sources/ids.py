"""Stable ids, the contract other tools rely on.

- statute article: ``law:{법령ID}:{N}``; 제N조의M → ``law:{법령ID}:{N}-{M}``
- admin-rule article: ``admrul:{행정규칙ID}:{N}`` (same ``-M`` rule for 조의M)
- precedent: ``prec:{판례일련번호}``
- a chunk of any of these adds ``#k``.
"""

from __future__ import annotations

import re

_ARTICLE_HEADING = re.compile(r"제\s*(\d+)\s*조(?:\s*의\s*(\d+))?")


def article_key(number: int, branch: int = 0) -> str:
    """``제N조`` → ``"N"``; ``제N조의M`` → ``"N-M"``."""
    if number <= 0 or branch < 0:
        raise ValueError(f"invalid article number {number}/{branch}")
    return f"{number}-{branch}" if branch else str(number)


def parse_article_number(text: str) -> tuple[int, int] | None:
    """Find the first ``제N조(의M)`` in ``text`` and return ``(N, M)`` (``M`` = 0 when absent)."""
    m = _ARTICLE_HEADING.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def statute_article_id(law_id: str, number: int, branch: int = 0) -> str:
    if not law_id:
        raise ValueError("statute article id needs a 법령ID")
    return f"law:{law_id}:{article_key(number, branch)}"


def admin_rule_article_id(rule_id: str, number: int, branch: int = 0) -> str:
    if not rule_id:
        raise ValueError("admin-rule article id needs a 행정규칙ID")
    return f"admrul:{rule_id}:{article_key(number, branch)}"


def precedent_id(serial_no: str | int) -> str:
    serial = str(serial_no).strip()
    if not serial.isdigit():
        raise ValueError(f"판례일련번호 must be digits, got {serial_no!r}")
    return f"prec:{int(serial)}"


def chunk_id(doc_id: str, k: int) -> str:
    if k < 0:
        raise ValueError("chunk index must be >= 0")
    return f"{doc_id}#{k}"


def doc_id_of(passage_id: str) -> str:
    """The document id of a passage or chunk id (strips ``#k``)."""
    return passage_id.split("#", 1)[0]
