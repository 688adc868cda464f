"""Request and response bodies of the HTTP API (they are also its OpenAPI schema).

The request models are built per app by :func:`request_models` from the configured limits, so the schema a client
reads (``maxLength``, ``maxItems``, ``maximum``) is exactly what the server enforces. Requests forbid unknown fields
(a misspelt ``topk`` is a 422, not silently ignored) and do not coerce types: ``top_k`` must be a JSON integer,
``threshold`` a number, dates ``YYYY-MM-DD`` strings, texts strings. Every text field is one type,
:func:`text_type`: at most ``max_chars`` characters of well-formed Unicode (a lone UTF-16 surrogate such as the
JSON escape ``"\\ud800"`` cannot be encoded as UTF-8, so no tokenizer or index could take it).
"""

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

#: What ``str.strip()`` removes (``str.isspace``); a query made only of these is blank.
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
#: JSON Schema ``pattern`` (ECMA / Python regex, unanchored) of a non-blank text: one character that is not
#: whitespace. Same set as ``str.strip``, so the schema and the check below never disagree.
NON_BLANK_PATTERN = "[^" + "".join(f"\\u{ord(c):04x}" for c in _WHITESPACE) + "]"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def well_formed_unicode(value: Any) -> Any:
    """Refuse a string holding a lone surrogate (anything else passes on to the type's own validation)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PydanticCustomError(
                "invalid_unicode",
                "text must be valid Unicode: lone surrogate at position {position}",
                {"position": exc.start},
            ) from None
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_text", "text is blank (empty or only whitespace)")
    return value


def text_type(max_chars: int, description: str | None = None, *, non_blank: bool = False, **schema: Any) -> Any:
    """The one type of every text field: a JSON string of at most ``max_chars`` characters, well-formed Unicode;
    ``non_blank``: with a character that is not whitespace (declared as the schema's ``pattern``)."""
    note = "Well-formed Unicode (no lone surrogates)" + (", not blank" if non_blank else "")
    if non_blank:
        schema = {"pattern": NON_BLANK_PATTERN, **schema}
    return Annotated[
        str,
        Field(
            strict=True,
            max_length=max_chars,
            description=f"{description}. {note}" if description else note,
            json_schema_extra=schema or None,
        ),
        *([AfterValidator(not_blank)] if non_blank else []),
        BeforeValidator(well_formed_unicode),
    ]


def _iso_date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # Python callers
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_format", "a date must be a string YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_invalid", "not a calendar date (YYYY-MM-DD)") from None


def _integral(value: Any) -> Any:
    """JSON Schema counts ``98.0`` as an integer; ``98.5``, ``true`` and ``"98"`` stay refused by the strict int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: A JSON integer (``98`` or ``98.0``), never a bool, a string or a fraction.
Integer = Annotated[int, Field(strict=True), BeforeValidator(_integral)]

#: A ``YYYY-MM-DD`` string, nothing else (pydantic's own date would take ``0`` as a Unix timestamp).
IsoDate = Annotated[dt.date, PlainValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_json, text_too_long, rate_limited")
    message: str
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems of an invalid request")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Mode(StrEnum):
    dense = "dense"
    bm25 = "bm25"
    hybrid = "hybrid"


class Source(StrEnum):
    law = "law"
    admrul = "admrul"
    prec = "prec"


class EmbedType(StrEnum):
    query = "query"
    passage = "passage"


@dataclass(frozen=True)
class RequestModels:
    """The request bodies of one app, with its limits."""

    search: type[BaseModel]
    embed: type[BaseModel]
    filters: type[BaseModel]


def request_models(*, max_chars: int, max_texts: int, max_top_k: int) -> RequestModels:
    """Build the request models with the configured limits (``api.max_chars`` / ``max_texts`` / ``max_top_k``)."""
    Text = text_type(max_chars)
    NonBlankText = text_type(max_chars, non_blank=True)

    class Filters(_Request):
        """Every given filter must hold (AND); within a list any value may match (OR). A range with date_from after
        date_to matches nothing."""

        sources: list[Annotated[Source, Field(strict=False)]] | None = Field(None, description="law, admrul, prec")
        law_ids: list[Text] | None = Field(None, description="법령ID / 행정규칙ID of statute or rule passages")
        law_names: list[Text] | None = Field(None, description="Statute names, e.g. 민법")
        courts: list[Text] | None = Field(None, description="Court names of precedents, e.g. 대법원")
        case_types: list[Text] | None = Field(None, description="Case types of precedents, e.g. 민사")
        date_from: IsoDate | None = Field(None, description="Effective / decision date on or after (YYYY-MM-DD)")
        date_to: IsoDate | None = Field(None, description="Effective / decision date on or before (YYYY-MM-DD)")

        def empty_range(self) -> bool:
            return self.date_from is not None and self.date_to is not None and self.date_from > self.date_to

        def to_kwargs(self) -> dict[str, Any]:
            """Keyword arguments of the engine's ``SearchFilters`` (plain strings and dates)."""
            data = self.model_dump(exclude_none=True)
            if "sources" in data:
                data["sources"] = [s.value for s in self.sources or []]
            return data

    class SearchRequest(_Request):
        query: text_type(
            max_chars,
            f"Free text: a question, a fact pattern, an article … At most {max_chars} characters",
            non_blank=True,
            examples=["불법행위 손해배상"],
        )
        top_k: Integer = Field(10, ge=1, le=max_top_k, description=f"Documents wanted (at most {max_top_k})")
        threshold: float | None = Field(
            None, allow_inf_nan=False, description="Drop results scoring below this (a number)"
        )
        mode: Annotated[Mode, Field(strict=False)] | None = Field(
            None, description="dense, bm25 or hybrid (default: search.mode)"
        )
        filters: Filters | None = None

    class EmbedRequest(_Request):
        texts: list[NonBlankText] = Field(
            min_length=1,
            max_length=max_texts,
            description=f"1 to {max_texts} texts of at most {max_chars} characters each, none blank",
        )

    return RequestModels(SearchRequest, EmbedRequest, Filters)


class Hit(BaseModel):
    rank: int
    doc_id: str
    passage_id: str
    score: float
    title: str
    snippet: str
    source: str
    dense_score: float | None = None
    bm25_score: float | None = None
    metadata: dict[str, Any] = {}
    matched_reference: str | None = Field(
        None, description='The citation in the query that linked this document ("민법 제750조"); null otherwise'
    )


class SearchResponse(BaseModel):
    query: str
    mode: str | None
    results: list[Hit] = Field(description="Best first; one passage per document")
    took_ms: float
    index_version: str | None
    model_version: str | None


class EmbedResponse(BaseModel):
    type: EmbedType
    embeddings: list[list[float]] = Field(description="L2-normalized, one row per text, in order")
    dim: int
    count: int
    model_version: str | None


class HealthResponse(BaseModel):
    status: str = Field(description="ok | degraded (serving, but the last reload failed) | unavailable (503)")
    loaded_at: str | None = Field(description="When the served engine was loaded (UTC)")
    model_version: str | None = None
    index_version: str | None = None
    passages: int | None = None
    passages_by_source: dict[str, int] = {}
    versions: dict[str, Any] = Field({}, description="What the engine reports about itself (paths left out)")
    loads: int = Field(0, description="Engines loaded since start")
    last_reload: dict[str, Any] | None = Field(
        None, description="The last load attempt: at, reason, ok, error (a reason, never a file path), seconds"
    )


class ReloadResponse(BaseModel):
    ok: bool
    reloaded: bool = Field(description="false: the published index is the one already served, nothing was loaded")
    reason: str = Field(description="loaded | unchanged")
    seconds: float
    health: HealthResponse
