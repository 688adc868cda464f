"""Text clean-up shared by the statute and case citation parsers.

Both parsers work on a *cleaned* copy of the citation string (bracketed notes removed, look-alike characters
folded) but report ``raw`` substrings of the original, so :func:`clean` keeps a map from every cleaned character
back to its original position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One-to-one character folds (the string keeps its length, so positions stay valid).
_FOLD = str.maketrans(
    {
        "［": "[",
        "］": "]",
        "〔": "[",
        "〕": "]",
        "【": "[",
        "】": "]",
        "（": "(",
        "）": ")",
        "｛": "{",
        "｝": "}",
        "，": ",",
        "／": "/",
        "～": "~",
        "∼": "~",
        "〜": "~",
        "－": "-",
        "．": ".",
        "\u00a0": " ",
        "\u3000": " ",
        "\u2009": " ",
        "\u200b": " ",
        "\ufeff": " ",
        "\u318d": "·",
        "\u30fb": "·",
        "\u2027": "·",
        "\uff65": "·",
        **{chr(0xFF10 + d): str(d) for d in range(10)},
    }
)

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = frozenset(OPENERS.values())

# Placeholders the cleaner writes for bracketed notes the parsers care about.
FORMER_MARK = "\x01"  # (… 개정되기 전의 것), (… 폐지), (구)
APPENDIX_MARK = "\x02"  # [별표 2]

_FORMER_NOTE = re.compile(r"전\s*의\s*것|폐\s*지|실\s*효|^\s*구\s*(?:법)?\s*$")
_GROUP_NOTE = re.compile(r"\s*\d{1,3}\s*")
_LETTER_NOTE = re.compile(r"\s*([가나다라마바사아자차카타파하])\s*")


def fold(text: str) -> str:
    """Fold full-width brackets/digits, odd spaces and middle-dot look-alikes (length-preserving)."""
    return text.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The cleaned text plus, for each of its characters, the index of the original character it came from."""

    text: str
    pos: list[int]
    original: str

    def raw(self, start: int, end: int) -> str:
        """The original substring behind cleaned ``text[start:end]`` (whitespace-trimmed)."""
        if start >= end or start >= len(self.pos):
            return ""
        a = self.pos[start]
        b = self.pos[min(end, len(self.pos)) - 1] + 1
        return self.original[a:b].strip()


def _bracket_pairs(text: str) -> dict[int, int]:
    """Opening index → closing index for every balanced bracket pair (one linear pass).

    A closer that does not match the innermost open bracket is ignored (``(가)목 2)`` inside ``[…]``), and openers
    still open at the end stay unmatched.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for j, ch in enumerate(text):
        if ch in OPENERS:
            stack.append(j)
        elif ch in CLOSERS and stack and OPENERS[text[stack[-1]]] == ch:
            pairs[stack.pop()] = j
    return pairs


def clean(text: str, *, keep_letters: bool = True) -> Cleaned:
    """Remove bracketed notes, keeping what the parsers need as placeholders.

    - ``[1]`` group markers are kept as written; ``[별표 …]`` becomes :data:`APPENDIX_MARK`;
    - ``(…개정되기 전의 것)``, ``(…폐지)``, ``(구)`` become :data:`FORMER_MARK`;
    - ``(가)`` becomes ``가`` when ``keep_letters`` (so ``(가)목`` reads ``가목``);
    - any other ``(…)``, ``[…]``, ``{…}`` becomes one space; 「」『』 quote marks are dropped, their text kept;
    - an unbalanced bracket is dropped on its own.
    """
    src = fold(text)
    out: list[str] = []
    pos: list[int] = []
    pairs = _bracket_pairs(src)
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch in OPENERS:
            j = pairs.get(i, -1)
            if j < 0:
                out.append(" ")
                pos.append(i)
                i += 1
                continue
            inner = src[i + 1 : j]
            if ch == "[" and _GROUP_NOTE.fullmatch(inner):
                out.extend(src[i : j + 1])
                pos.extend(range(i, j + 1))
            elif ch == "[" and "별표" in inner:
                out.append(APPENDIX_MARK)
                pos.append(i)
            elif ch == "(" and keep_letters and (m := _LETTER_NOTE.fullmatch(inner)):
                out.extend((" ", m.group(1)))
                pos.extend((i, i + 1 + m.start(1)))
            elif ch == "(" and not inner.lstrip().startswith("현행") and _FORMER_NOTE.search(inner):
                out.append(FORMER_MARK)
                pos.append(i)
            else:
                out.append(" ")
                pos.append(i)
            i = j + 1
            continue
        if ch in CLOSERS or ch in "「」『』":
            out.append(" ")
        else:
            out.append(ch)
        pos.append(i)
        i += 1
    return Cleaned("".join(out), pos, text)


_KOREAN_LABELS = "가나다라마바사아자차카타파하"


def label_index(label: str) -> int:
    """``"가"`` → 1, ``"나"`` → 2, … (the order Korean lists are lettered in)."""
    return _KOREAN_LABELS.index(label) + 1
