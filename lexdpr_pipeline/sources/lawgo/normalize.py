"""XML and JSON bodies of the DRF API → one plain-Python shape, plus the OC-key scrubbing used on everything stored.

The JSON API is a mechanical rendering of the XML one: a repeated child becomes a list but a single child stays an
object, an attribute of an element with children becomes a sibling key (``{"조문키": …, "조문번호": …}``) and an
attribute of a text-only element becomes ``{"content": text, "<attr>": value}``. :func:`element_to_obj` renders
ElementTree elements the same way, so the parsers see one shape whatever the format; :func:`as_list` and
:func:`text_of` absorb the single-vs-list and attribute-bearing cases.

Known XML quirks are fixed before parsing (:func:`fix_xml_quirks`): HTML named entities echoed unescaped
(``&middot;`` in 키워드), bare ``&``, whitespace inside closing tags (``</사건번호 >``), control characters, and a
BOM or blank lines before the XML declaration. CDATA sections are left exactly as they are.
"""

from __future__ import annotations

import html.entities
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from lexdpr_pipeline.logging_setup import scrub_secrets, scrub_secrets_bytes
from lexdpr_pipeline.sources.lawgo.errors import LawGoMalformedResponseError

# --- OC scrubbing -------------------------------------------------------------------------------------------------

# A query parameter OC=… after "?", "&", "&amp;" (XML) or "\u0026" (escaped JSON), with its trailing separator.
_OC_TEXT = re.compile(r"(\?|&amp;|&|\\u0026)OC=[^&#\s\"'<>\\]*(&amp;|&|\\u0026)?", re.I)


def _oc_repl(m: re.Match[str]) -> str:
    # "?OC=k&x=1" → "?x=1"; "&OC=k&x=1" → "&x=1"; "…&OC=k" (last) → "…"; "?OC=k" (only) → "".
    return m.group(1) if m.group(2) else ""


def strip_oc(url_or_text: str) -> str:
    """Remove every ``OC=…`` query parameter from a URL or from any text holding URLs (listing rows, bodies)."""
    if "oc=" not in url_or_text.lower():
        return url_or_text
    return _OC_TEXT.sub(_oc_repl, url_or_text)


_OC_BYTES = re.compile(rb"(\?|&amp;|&|\\u0026)OC=[^&#\s\"'<>\\]*(&amp;|&|\\u0026)?", re.I)


def redact_oc_bytes(body: bytes, oc: str | None = None) -> tuple[bytes, bool]:
    """``body`` with every ``OC=…`` parameter removed and, as a last resort, the key masked in any form.

    Returns ``(bytes, changed)``. Listing rows echo the caller's key inside ``…상세링크``; nothing holding it may be
    written to disk. URL parameters (``?OC=k&…``) are removed so stored links stay usable; what remains — the key in
    any spelling, ``OC=`` in any other form (an error page echoing the request) — is masked by
    :func:`~lexdpr_pipeline.logging_setup.scrub_secrets_bytes`.
    """
    out = body
    if b"oc=" in body.lower():
        out = _OC_BYTES.sub(lambda m: m.group(1) if m.group(2) else b"", body)
    out = scrub_secrets_bytes(out, [oc] if oc else ())
    return out, out != body


def preview(text: str, limit: int = 40) -> str:
    """The first ``limit`` characters of ``text`` for an error message, scrubbed *before* the cut so no prefix of a
    secret survives it."""
    return scrub_secrets(text[: limit + 1024])[:limit]


# --- XML quirks ---------------------------------------------------------------------------------------------------

_CDATA = re.compile(r"(<!\[CDATA\[.*?\]\]>)", re.S)
_AMP = re.compile(r"&(#[0-9]+;|#[xX][0-9A-Fa-f]+;|[A-Za-z][A-Za-z0-9]*;)?")
_XML_ENTITIES = {"amp;", "lt;", "gt;", "quot;", "apos;"}
_XML_ESCAPE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_CLOSE_TAG_WS = re.compile(r"</\s*([^\s<>/]+)\s*>")
# Characters XML 1.0 forbids even inside CDATA.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9_.:-]+)[\"']")


def _fix_amp(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref is None:
        return "&amp;"  # a bare "&" (e.g. an unescaped URL)
    if ref.startswith("#") or ref in _XML_ENTITIES:
        return m.group(0)
    char = html.entities.html5.get(ref)
    if char is None:
        return "&amp;" + ref  # unknown entity: keep its text
    return "".join(_XML_ESCAPE.get(c, c) for c in char)


def _fix_markup(segment: str) -> str:
    segment = _AMP.sub(_fix_amp, segment) if "&" in segment else segment
    return _CLOSE_TAG_WS.sub(r"</\1>", segment) if "</" in segment else segment


def decode_body(body: bytes) -> str:
    """Bytes → text: UTF-8 (the API's encoding), else the encoding the XML declaration names."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        m = _DECL_ENCODING.match(body)
        if m and m.group(1).decode().lower().replace("_", "-") not in ("utf-8", "utf8"):
            try:
                return body.decode(m.group(1).decode())
            except (LookupError, UnicodeDecodeError):
                pass
        raise LawGoMalformedResponseError(
            f"body is not valid UTF-8 at byte {exc.start} of {len(body)} (truncated transfer?)"
        ) from None


def fix_xml_quirks(text: str) -> str:
    """Make a DRF XML text well-formed without touching CDATA content (see the module doc)."""
    text = _CONTROL.sub(" ", text.lstrip("\ufeff"))
    text = _XML_DECL.sub("", text, count=1).lstrip()  # already decoded: drop the encoding pseudo-attribute
    parts = _CDATA.split(text)
    return "".join(part if i % 2 else _fix_markup(part) for i, part in enumerate(parts))


def parse_xml(body: bytes) -> ET.Element:
    """Parse a DRF XML body (quirks fixed first); raises :class:`LawGoMalformedResponseError`."""
    text = fix_xml_quirks(decode_body(body))
    if not text:
        raise LawGoMalformedResponseError("empty body")
    if not text.startswith("<"):
        raise LawGoMalformedResponseError(f"not XML (starts with {preview(text)!r})")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise LawGoMalformedResponseError(f"XML not well-formed ({exc}; {len(body)} bytes — truncated?)") from None


def element_to_obj(elem: ET.Element) -> Any:
    """An element in the JSON API's shape (see the module doc)."""
    children = list(elem)
    if not children:
        text = elem.text or ""
        return {"content": text, **elem.attrib} if elem.attrib else text
    out: dict[str, Any] = dict(elem.attrib)
    repeated: set[str] = set()
    seen: set[str] = set()
    for child in children:
        value = element_to_obj(child)
        tag = child.tag
        if tag in seen:
            if tag not in repeated:
                out[tag] = [out[tag]]
                repeated.add(tag)
            out[tag].append(value)
        else:
            out[tag] = value  # a child wins over a same-named attribute
            seen.add(tag)
    if elem.text and elem.text.strip():
        out.setdefault("content", elem.text)
    return out


# --- JSON ---------------------------------------------------------------------------------------------------------

_ENTITY_REF = re.compile(r"&(#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")


def _entity_char(m: re.Match[str]) -> str:
    ref = m.group(1)
    try:
        if ref.startswith(("#x", "#X")):
            return chr(int(ref[2:], 16))
        if ref.startswith("#"):
            return chr(int(ref[1:]))
    except (ValueError, OverflowError):
        return m.group(0)
    return html.entities.html5.get(ref + ";", m.group(0))


def resolve_entities(text: str) -> str:
    """``&middot;``/``&#183;`` → ``·`` (only ``&name;`` forms with the semicolon, so URLs stay intact)."""
    return _ENTITY_REF.sub(_entity_char, text) if "&" in text else text


def _resolve_json(obj: Any) -> Any:
    if isinstance(obj, str):
        return resolve_entities(obj)
    if isinstance(obj, list):
        return [_resolve_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _resolve_json(v) for k, v in obj.items()}
    return obj


def parse_json(body: bytes) -> Any:
    """Parse a DRF JSON body; entity references the server echoed into strings are resolved like XML's."""
    text = decode_body(body).strip()
    if not text:
        raise LawGoMalformedResponseError("empty body")
    try:
        return _resolve_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise LawGoMalformedResponseError(f"JSON not parseable ({exc}; {len(body)} bytes — truncated?)") from None


# --- one shape ----------------------------------------------------------------------------------------------------


def load_body(body: bytes, fmt: str) -> tuple[str, Any]:
    """``(root name, content)`` of an XML or JSON body, content in the JSON shape."""
    kind = fmt.upper()
    if kind == "XML":
        root = parse_xml(body)
        return root.tag, element_to_obj(root)
    if kind == "JSON":
        obj = parse_json(body)
        if not isinstance(obj, dict) or len(obj) != 1:
            keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise LawGoMalformedResponseError(f"JSON root must be an object with one key, got {keys}")
        ((name, content),) = obj.items()
        return name, content
    raise ValueError(f"fmt must be 'XML' or 'JSON', not {fmt!r}")


def as_list(x: Any) -> list[Any]:
    """A repeated child as a list whether the source gave one object, a list, or nothing."""
    if x is None or x == "":
        return []
    return x if isinstance(x, list) else [x]


def text_of(x: Any) -> str:
    """The text of a value: ``{"content": …}`` → content, ``None`` → ``""``, a list (multi-part) → lines."""
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return text_of(x.get("content"))
    if isinstance(x, list):
        return "\n".join(text_of(v) for v in x)
    return str(x)
