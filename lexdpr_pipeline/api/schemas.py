"""Request and response bodies of the HTTP API (they are also its OpenAPI schema).

Requests forbid unknown fields, so a misspelt option (``topk``) is a 422, not silently ignored. Limits that come
from the settings (texts per request, characters per text, ``top_k``) are checked by the endpoints, not here.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_json, too_many_texts, rate_limited")
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


class Filters(_Request):
    """Every given filter must hold (AND); within a list any value may match (OR)."""

    sources: list[Source] | None = Field(None, description="law, admrul, prec")
    law_ids: list[str] | None = Field(None, description="법령ID / 행정규칙ID of statute or rule passages")
    law_names: list[str] | None = Field(None, description="Statute names, e.g. 민법")
    courts: list[str] | None = Field(None, description="Court names of precedents, e.g. 대법원")
    case_types: list[str] | None = Field(None, description="Case types of precedents, e.g. 민사")
    date_from: dt.date | None = Field(None, description="Effective / decision date on or after (YYYY-MM-DD)")
    date_to: dt.date | None = Field(None, description="Effective / decision date on or before (YYYY-MM-DD)")

    @model_validator(mode="after")
    def _dates_in_order(self) -> Filters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        return self

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the engine's ``SearchFilters`` (plain strings and dates)."""
        data = self.model_dump(exclude_none=True)
        if "sources" in data:
            data["sources"] = [s.value for s in self.sources or []]
        return data


class SearchRequest(_Request):
    query: str = Field(
        description="Free text: a question, a fact pattern, an article …", examples=["불법행위 손해배상"]
    )
    top_k: int = Field(10, ge=1, strict=True, description="Results wanted (at most api.max_top_k)")
    threshold: float | None = Field(None, allow_inf_nan=False, description="Drop results scoring below this")
    mode: Mode | None = Field(None, description="dense, bm25 or hybrid (default: search.mode)")
    filters: Filters | None = None

    @model_validator(mode="after")
    def _query_not_blank(self) -> SearchRequest:
        if not self.query.strip():
            raise ValueError("query is empty")
        return self


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


class SearchResponse(BaseModel):
    query: str
    mode: str | None
    results: list[Hit] = Field(description="Best first; one passage per document")
    took_ms: float
    index_version: str | None
    model_version: str | None


class EmbedRequest(_Request):
    texts: list[str] = Field(min_length=1, description="At most api.max_texts texts of at most api.max_chars each")


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
    last_reload: dict[str, Any] | None = Field(None, description="The last load attempt: at, reason, ok, error")


class ReloadResponse(BaseModel):
    ok: bool
    seconds: float
    health: HealthResponse
