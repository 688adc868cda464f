"""The search engine behind the CLI and the API: dense (FAISS), BM25 or hybrid retrieval over ``merged_corpus``,
metadata filters, and one hit per document.

How a query is answered (:meth:`SearchEngine.search_many`):

1. Each retriever fetches ``settings.candidates`` passages (at least ``top_k``). With filters, dense search only
   visits allowed passages (a FAISS id selector, exact on small allowed sets) and BM25 over-fetches by the inverse
   of the filter's selectivity and drops what the filters exclude.
2. ``hybrid`` fuses the two lists per passage (:mod:`~lexdpr_pipeline.search.fusion`: reciprocal rank fusion, or a
   weighted sum of min-max-normalized scores).
3. Passages collapse to their document (``doc_id``) with the best passage's score; that passage gives the snippet
   and the component scores (``dense_score``, ``bm25_score``; ``None`` where that retriever did not return it).
4. When fewer than ``top_k`` documents come out and a retriever could return more, the fetch widens (×4) and the
   query is answered again.
5. Statutes and decisions the query cites ("민법 제750조", "2008다12345") are fused in
   (:mod:`~lexdpr_pipeline.search.linking`, ``settings.citation_linking``): ``boost`` puts them first (with
   ``link_weight >= 1``), ``list`` fuses them as a list of their own by RRF; a cited document no retriever returned
   is added with its first passage, and each hit says which citation linked it (``matched_reference``). ``auto``
   uses the mode, weight and law-name setting model_evaluation chose on valid for the served model and search mode
   (``FusionParams.linking``), else ``boost``.

``threshold`` applies to the final score, whose meaning depends on the mode: the cosine similarity for ``dense``,
the BM25 score for ``bm25``, the fused score for ``hybrid`` (RRF: at most ``2 / (rrf_k + 1)``; weighted: [0, 1]).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from lexdpr_pipeline.artifacts.manifests import FusionParams, IndexPointer
from lexdpr_pipeline.search import fusion, linking

if TYPE_CHECKING:
    from lexdpr_pipeline.index.bm25 import BM25Index
    from lexdpr_pipeline.index.faiss_index import DenseIndex
    from lexdpr_pipeline.models.biencoder import BiEncoder
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder
    from lexdpr_pipeline.settings import SearchSettings, Settings

logger = logging.getLogger(__name__)

SOURCES = ("law", "admrul", "prec")
MODES = ("dense", "bm25", "hybrid")
METADATA_COLUMNS = (
    "section",
    "chunk_index",
    "n_chunks",
    "law_id",
    "law_name",
    "law_kind",
    "article_key",
    "effective_date",
    "court",
    "case_type",
    "case_no",
    "decision_date",
)
_REQUIRED = ("passage_id", "doc_id", "source", "text")
_COLUMNS = (*_REQUIRED, "title", *METADATA_COLUMNS)
_WIDEN = 4  # fetch growth factor when too few documents come out
_QUERY_BATCH = 32


@dataclass
class SearchFilters:
    """Metadata filters; every set field must match (a list matches any of its values; an empty list or ``None``
    does not filter). A date bound excludes passages without a date."""

    sources: list[str] | None = None  # law | admrul | prec
    law_ids: list[str] | None = None  # 법령ID
    law_names: list[str] | None = None  # exact 법령명 match
    courts: list[str] | None = None
    case_types: list[str] | None = None  # 사건종류
    date_from: dt.date | None = None  # on decision_date (prec) / effective_date (law, admrul)
    date_to: dt.date | None = None

    def is_empty(self) -> bool:
        return all(v is None or v == [] for v in asdict(self).values())

    def validate(self) -> None:
        if self.sources:
            unknown = sorted(set(self.sources) - set(SOURCES))
            if unknown:
                raise ValueError(f"unknown sources {unknown}: use {list(SOURCES)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")

    def key(self) -> tuple:
        return tuple(tuple(sorted(v)) if isinstance(v, list) else v for v in asdict(self).values())

    def expression(self) -> pl.Expr:
        """A polars predicate over the corpus columns."""
        expr = pl.lit(True)
        for values, column in (
            (self.sources, "source"),
            (self.law_ids, "law_id"),
            (self.law_names, "law_name"),
            (self.courts, "court"),
            (self.case_types, "case_type"),
        ):
            if values:
                expr = expr & pl.col(column).is_in(list(values))
        date = pl.coalesce("decision_date", "effective_date")
        if self.date_from is not None:
            expr = expr & (date >= self.date_from)
        if self.date_to is not None:
            expr = expr & (date <= self.date_to)
        return expr.fill_null(False)


def _json_safe(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


@dataclass
class SearchHit:
    rank: int  # 1-based
    doc_id: str
    passage_id: str  # the document's best passage
    score: float  # see the module doc for what it means per mode
    title: str
    snippet: str
    source: str
    dense_score: float | None
    bm25_score: float | None
    metadata: dict = field(default_factory=dict)  # law_name, article_key, court, case_no, dates, section, …
    matched_reference: str | None = None  # the query's citation that linked this document ("민법 제750조")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metadata"] = {k: _json_safe(v) for k, v in self.metadata.items()}
        return out


@dataclass
class _Retrieved:
    """One retriever's filtered candidates for one query: corpus rows and scores, best first."""

    rows: list[int]
    scores: list[float]
    exhausted: bool  # asking for more would not return more


class SearchEngine:
    """Search over a corpus frame (``merged_corpus`` columns) with a dense index, a BM25 index, or both."""

    def __init__(
        self,
        corpus: pl.DataFrame,
        *,
        model: BiEncoder | OnnxEncoder | None,
        dense: DenseIndex | None,
        bm25: BM25Index | None,
        settings: SearchSettings,
        versions: dict | None = None,
    ) -> None:
        missing = [c for c in _REQUIRED if c not in corpus.columns]
        if missing:
            raise ValueError(f"corpus lacks columns {missing}")
        if dense is not None and model is None:
            raise ValueError("a dense index needs the model that encodes queries")
        extra = [pl.lit(None).alias(c) for c in _COLUMNS if c not in corpus.columns]
        self._corpus = corpus.with_columns(extra).select(_COLUMNS)
        self.model, self.dense, self.bm25, self.settings = model, dense, bm25, settings
        self._versions = dict(versions or {})
        self._row_of = {pid: i for i, pid in enumerate(self._corpus["passage_id"].to_list())}
        self._doc = self._corpus["doc_id"].to_list()
        self._pid = self._corpus["passage_id"].to_list()
        self._source = self._corpus["source"].to_list()
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._masks_lock = threading.Lock()  # the API searches from several threads
        self.stale_passages = 0  # indexed passages the corpus no longer has (never returned)
        self._aliases = corpus.select("doc_id", "aliases") if "aliases" in corpus.columns else None
        self._linker: linking.QueryLinker | None = None  # built on the first query that needs it
        # Where queries use another runtime than the index's passages: how to load the passages' one (embed_passages)
        self.passage_loader: Callable[[], BiEncoder | OnnxEncoder] | None = None
        self._passage_model: BiEncoder | OnnxEncoder | None = None
        self._first_row: dict[str, int] = {}
        self._linker_lock = threading.Lock()
        self._dense_rows: np.ndarray | None = None
        self._dense_all_known = True
        if dense is not None:
            rows = np.array([self._row_of.get(pid, -1) if pid else -1 for pid in dense.ids_by_label], dtype=np.int64)
            self._dense_rows = rows
            n_stale = sum(1 for pid in dense.ids if pid not in self._row_of)
            self._dense_all_known = n_stale == 0
            self.stale_passages += n_stale
        if bm25 is not None:
            self.stale_passages += sum(1 for pid in bm25.ids if pid not in self._row_of)
        if self.stale_passages:
            logger.warning(
                "search: %d indexed passages are not in the corpus (an index older than the corpus?); they are "
                "never returned — rebuild the indexes",
                self.stale_passages,
            )

    # what is loaded -------------------------------------------------------------------------------------------------

    @property
    def modes(self) -> list[str]:
        out = []
        if self.dense is not None:
            out.append("dense")
        if self.bm25 is not None:
            out.append("bm25")
        if len(out) == 2:
            out.append("hybrid")
        return out

    @property
    def default_mode(self) -> str:
        """``settings.mode``, or the one retriever there is when that mode needs both."""
        modes = self.modes
        if not modes:
            raise ValueError("the engine has neither a dense nor a BM25 index")
        return self.settings.mode if self.settings.mode in modes else modes[0]

    @property
    def versions(self) -> dict:
        by_source = self._corpus.group_by("source").len().sort("source")
        return {
            **self._versions,
            "model_version": self._versions.get("model_version"),
            "index_version": self._versions.get("index_version"),
            "faiss_type": self.dense.spec.faiss_type if self.dense is not None else None,
            "passages": self._corpus.height,
            "by_source": dict(by_source.iter_rows()),
            "modes": self.modes,
            "default_mode": self.default_mode,
            "stale_passages": self.stale_passages,
        }

    # encoding -------------------------------------------------------------------------------------------------------

    def _need_model(self) -> BiEncoder | OnnxEncoder:
        if self.model is None:
            raise ValueError("no model loaded: this engine only has a BM25 index")
        return self.model

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._need_model().encode_queries(list(texts), batch_size=_QUERY_BATCH)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Passages by the encoder that embedded the index (loaded on first use where queries use another)."""
        if self.passage_loader is not None:
            if self._passage_model is None:
                self._passage_model = self.passage_loader()
            return self._passage_model.encode_passages(list(texts), batch_size=_QUERY_BATCH)
        return self._need_model().encode_passages(list(texts), batch_size=_QUERY_BATCH)

    # search -----------------------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        top_k: int = 10,
        mode: str | None = None,
        filters: SearchFilters | None = None,
        threshold: float | None = None,
    ) -> list[SearchHit]:
        """Top ``top_k`` documents for ``query`` (see the module doc)."""
        return self.search_many([query], top_k=top_k, mode=mode, filters=filters, threshold=threshold)[0]

    def search_many(
        self,
        queries: list[str],
        *,
        top_k: int = 10,
        mode: str | None = None,
        filters: SearchFilters | None = None,
        threshold: float | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for several queries, their encoding and first retrieval round batched."""
        mode = self._mode(mode)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        blank = [i for i, q in enumerate(queries) if not isinstance(q, str) or not q.strip()]
        if blank:
            raise ValueError(f"queries must be non-empty text (blank at positions {blank[:10]})")
        if not queries:
            return []
        mask = self._mask(filters)
        allowed_n = self._corpus.height if mask is None else int(mask.sum())
        if allowed_n == 0:
            return [[] for _ in queries]
        qvecs = self.embed_queries(queries) if mode in ("dense", "hybrid") else None
        qtokens = self.bm25.tokenizer.tokenize_many(queries) if mode in ("bm25", "hybrid") and self.bm25 else None
        base = max(self.settings.candidates, top_k)
        selectivity = allowed_n / self._corpus.height
        fetch = dict.fromkeys(range(len(queries)), base)
        links = self._links(queries, mask)
        results: dict[int, list[SearchHit]] = {}
        while fetch:
            by_k: dict[int, list[int]] = {}
            for qi, k in fetch.items():
                by_k.setdefault(k, []).append(qi)
            next_fetch: dict[int, int] = {}
            for k, members in sorted(by_k.items()):
                dense_lists = bm25_lists = None
                if qvecs is not None:
                    dense_lists = self._dense(qvecs[members], k, mask)
                if qtokens is not None:
                    bm25_k = min(len(self.bm25), math.ceil(k / selectivity)) if mask is not None else k
                    bm25_lists = self._bm25([qtokens[qi] for qi in members], bm25_k, mask)
                for j, qi in enumerate(members):
                    dense_r = dense_lists[j] if dense_lists is not None else None
                    bm25_r = bm25_lists[j] if bm25_lists is not None else None
                    passages = self._fuse(mode, dense_r, bm25_r)
                    docs = self._collapse(passages)
                    exhausted = all(r is None or r.exhausted for r in (dense_r, bm25_r))
                    if len(docs) < top_k and not exhausted:
                        next_fetch[qi] = k * _WIDEN
                    else:
                        docs, cited = self._link(docs, links[qi], mode, queries[qi])
                        results[qi] = self._hits(docs[:top_k], dense_r, bm25_r, threshold, cited)
            fetch = next_fetch
        return [results[i] for i in range(len(queries))]

    # citation linking ---------------------------------------------------------------------------------------------

    @property
    def linker(self) -> linking.QueryLinker:
        """The citation linker of this corpus (built on first use)."""
        with self._linker_lock:
            if self._linker is None:
                frame = self._corpus if self._aliases is None else self._corpus.with_columns(self._aliases["aliases"])
                self._linker = linking.QueryLinker.from_corpus(frame)
                first = (
                    self._corpus.with_row_index("row")
                    .select("row", "doc_id", pl.col("chunk_index").fill_null(0))
                    .sort(["doc_id", "chunk_index", "row"])
                    .unique("doc_id", keep="first")
                )
                self._first_row = dict(zip(first["doc_id"].to_list(), first["row"].to_list(), strict=True))
            return self._linker

    def _links(self, queries: list[str], mask: np.ndarray | None) -> list[list[linking.LinkedRef]]:
        """Each query's references (none when ``citation_linking`` is off), limited to documents the filters allow."""
        if self.settings.citation_linking == "off":
            return [[] for _ in queries]
        linker = self.linker
        out = []
        for query in queries:
            refs = linker.link(query)
            if mask is not None:
                refs = linking.restrict(refs, lambda doc: bool(mask[self._first_row[doc]]))
            out.append(refs)
        return out

    def _link(
        self, docs: list[tuple[int, float]], refs: list[linking.LinkedRef], mode: str, query: str = ""
    ) -> tuple[list[tuple[int, float]], dict[str, str]]:
        """Collapsed documents with the cited ones fused in (:func:`linking.apply_links`); a cited document no
        retriever returned comes with its first passage. Also: document → the citation that linked it."""
        if not any(r.doc_ids for r in refs):
            return docs, {}
        how, weight, law_names, rrf_k = self._link_settings(mode, docs)
        if self.settings.citation_linking == "auto" and linking.reference_only(query, refs):
            # The choice stored for descriptive queries (a light boost, or off, for mixed candidates) must not
            # bury the one document a bare reference asks for: boost ≥ 1 puts it first.
            how, weight = "boost", max(weight if how == "boost" else 0.0, 1.0)
        if how == "off":
            return docs, {}
        ranked = [self._doc[row] for row, _ in docs]
        fused = linking.apply_links(
            ranked, [score for _, score in docs], refs, how, weight, rrf_k=rrf_k, law_names=law_names
        )
        row_of = dict(zip(ranked, (row for row, _ in docs), strict=True))
        out = [(row_of[d] if d in row_of else self._first_row[d], score) for d, score in fused]
        return out, linking.matched_references(refs, law_names=law_names)

    def _link_settings(self, mode: str, docs: list[tuple[int, float]]) -> tuple[str, float, bool, int]:
        """``(citation_linking, link_weight, link_law_names, rrf_k)`` for this query. ``auto``: what
        model_evaluation chose on valid for the served model (``FusionParams.linking``), for this search mode (a
        hybrid by its fusion) and the source group of the candidates (all statute/admin-rule → law, all precedents →
        prec, mixed → all); nothing stored → ``boost`` with ``link_weight`` / ``link_law_names``."""
        s = self.settings
        if s.citation_linking != "auto":
            return s.citation_linking, s.link_weight, s.link_law_names, s.rrf_k
        params = self.fusion_params
        group = self._source_group(row for row, _ in docs)
        key = mode
        if mode == "hybrid":
            key = s.fusion
            if key == "auto":
                by_source = params.by_source if params is not None else {}
                key = (by_source.get(group) or by_source.get("all") or {}).get("fusion", "rrf")
        by_group = (params.linking if params is not None else {}).get(key, {})
        chosen = by_group.get(group) or by_group.get("all")
        if not chosen:
            return "boost", s.link_weight, s.link_law_names, s.rrf_k
        return (
            str(chosen["citation_linking"]),
            float(chosen["link_weight"]),
            bool(chosen["link_law_names"]),
            int(chosen.get("link_rrf_k", s.rrf_k)),
        )

    def _source_group(self, rows: Iterable[int]) -> str:
        """The source group of candidate rows whose stored choices apply (:func:`fusion.candidate_group`)."""
        return fusion.candidate_group(self._source[row] for row in rows)

    def _mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {list(MODES)}")
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not available: this engine has {self.modes or 'no index'}")
        return mode

    def _mask(self, filters: SearchFilters | None) -> np.ndarray | None:
        """Allowed corpus rows (``None``: everything)."""
        if filters is None or filters.is_empty():
            return None
        filters.validate()
        key = filters.key()
        with self._masks_lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        mask = self._corpus.select(filters.expression().alias("m"))["m"].to_numpy().astype(bool)
        with self._masks_lock:
            self._masks[key] = mask
            if len(self._masks) > 64:
                self._masks.popitem(last=False)
        return mask

    def _dense(self, qvecs: np.ndarray, k: int, mask: np.ndarray | None) -> list[_Retrieved]:
        assert self.dense is not None and self._dense_rows is not None
        rows_of_label = self._dense_rows
        allowed = None
        if mask is not None:
            allowed = np.zeros(rows_of_label.shape[0], dtype=bool)
            known = rows_of_label >= 0
            allowed[known] = mask[rows_of_label[known]]
        elif not self._dense_all_known:
            allowed = rows_of_label >= 0
        scores, labels = self.dense.search_labels(qvecs, k, allowed=allowed)
        available = len(self.dense) if allowed is None else int(allowed.sum())
        out = []
        for srow, lrow in zip(scores, labels, strict=True):
            rows, vals = [], []
            for s, lab in zip(srow, lrow, strict=True):
                if lab < 0 or rows_of_label[lab] < 0:
                    continue
                rows.append(int(rows_of_label[lab]))
                vals.append(float(s))
            out.append(_Retrieved(rows, vals, exhausted=len(rows) < k or k >= available))
        return out

    def _bm25(self, tokens: list[list[str]], k: int, mask: np.ndarray | None) -> list[_Retrieved]:
        assert self.bm25 is not None
        out = []
        for hits in self.bm25.search_tokens_many(tokens, k):
            rows, vals = [], []
            for pid, score in hits:
                row = self._row_of.get(pid)
                if row is None or (mask is not None and not mask[row]):
                    continue
                rows.append(row)
                vals.append(score)
            out.append(_Retrieved(rows, vals, exhausted=len(hits) < k or k >= len(self.bm25)))
        return out

    fusion_params: FusionParams | None = None  # search.fusion auto: set by load_engine from the store

    def _fuse(self, mode: str, dense: _Retrieved | None, bm25: _Retrieved | None) -> list[tuple[int, float]]:
        """Passage rows with their final score, best first (ties by passage id)."""
        if mode == "dense":
            assert dense is not None
            scored = dict(zip(dense.rows, dense.scores, strict=True))
        elif mode == "bm25":
            assert bm25 is not None
            scored = dict(zip(bm25.rows, bm25.scores, strict=True))
        else:
            assert dense is not None and bm25 is not None
            method, rrf_k, dense_weight = self.settings.fusion, self.settings.rrf_k, self.settings.dense_weight
            if method == "auto":
                # The values model_evaluation chose on valid for this model: per source group of the candidates
                # (all statute/admin-rule → law, all precedents → prec, mixed → all); none stored → rrf.
                method = "rrf"
                by_source = self.fusion_params.by_source if self.fusion_params is not None else {}
                chosen = by_source.get(self._source_group([*dense.rows, *bm25.rows])) or by_source.get("all")
                if chosen:
                    method = chosen.get("fusion", "rrf")
                    rrf_k = int(chosen.get("rrf_k", rrf_k))
                    dense_weight = float(chosen.get("dense_weight", dense_weight))
            if method == "rrf":
                scored = fusion.rrf([dense.rows, bm25.rows], k=rrf_k)
            else:
                scored = fusion.weighted(
                    dict(zip(dense.rows, dense.scores, strict=True)),
                    dict(zip(bm25.rows, bm25.scores, strict=True)),
                    dense_weight,
                )
        return sorted(scored.items(), key=lambda item: (-item[1], self._pid[item[0]]))

    def _collapse(self, passages: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """One entry per document: its best passage (the list is best first)."""
        seen: set[str] = set()
        out = []
        for row, score in passages:
            doc = self._doc[row]
            if doc not in seen:
                seen.add(doc)
                out.append((row, score))
        return out

    def _hits(
        self,
        docs: list[tuple[int, float]],
        dense: _Retrieved | None,
        bm25: _Retrieved | None,
        threshold: float | None,
        cited: dict[str, str] | None = None,
    ) -> list[SearchHit]:
        dense_of = dict(zip(dense.rows, dense.scores, strict=True)) if dense else {}
        bm25_of = dict(zip(bm25.rows, bm25.scores, strict=True)) if bm25 else {}
        hits: list[SearchHit] = []
        for row, score in docs:
            if threshold is not None and score < threshold:
                continue
            rec = self._corpus.row(row, named=True)
            hits.append(
                SearchHit(
                    rank=len(hits) + 1,
                    doc_id=rec["doc_id"],
                    passage_id=rec["passage_id"],
                    score=float(score),
                    title=rec["title"] or "",
                    snippet=(rec["text"] or "")[: self.settings.snippet_chars],
                    source=rec["source"],
                    dense_score=dense_of.get(row),
                    bm25_score=bm25_of.get(row),
                    metadata={c: rec[c] for c in METADATA_COLUMNS},
                    matched_reference=(cited or {}).get(rec["doc_id"]),
                )
            )
        return hits


# loading the current index ------------------------------------------------------------------------------------------


def load_engine(settings: Settings, pointer: Path | IndexPointer | None = None) -> SearchEngine:
    """The engine for the index a pointer names: ``pointer`` (a pointer file or an :class:`IndexPointer`), by default
    the store's ``data/indexes/CURRENT.json`` (written by ``index.publish.publish_index``)."""
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.index.bm25 import BM25Index
    from lexdpr_pipeline.index.embeddings import EmbeddingSet
    from lexdpr_pipeline.index.faiss_index import DenseIndex
    from lexdpr_pipeline.models.encoders import load_encoder

    store = ArtifactStore.from_settings(settings)
    if isinstance(pointer, IndexPointer):
        ptr, where = pointer, "the index pointer"
    else:
        ptr_path = Path(pointer) if pointer is not None else store.pointer_path
        ptr, where = store.read_pointer(ptr_path), str(ptr_path)
    corpus_path = Path(ptr.corpus_path)
    if not corpus_path.is_file():
        raise FileNotFoundError(f"{where} names the corpus {corpus_path}, which does not exist")
    available = set(pl.read_parquet_schema(corpus_path))
    corpus = pl.read_parquet(corpus_path, columns=[c for c in (*_COLUMNS, "aliases") if c in available])
    dense = DenseIndex.load(
        Path(ptr.faiss_path),
        nprobe=settings.index.ivf_nprobe,
        ef_search=settings.index.hnsw_ef_search,
        rerank=settings.index.pq_rerank,
    )
    if dense.spec.faiss_type != "flat" and ptr.embeddings_path and Path(ptr.embeddings_path).is_dir():
        dense.attach_vectors(EmbeddingSet.load(Path(ptr.embeddings_path), mmap=True))
    # Queries are encoded by the runtime the pointer names for them: the one that embedded the passages, or another
    # gated against those vectors (encoder_export's query backend). Passages (embed_passages) always by the former.
    query_backend, query_path = ptr.query_encoder()
    threads = settings.embed.threads
    model = load_encoder(ptr.model_path, query_backend, query_path, threads=threads)
    bm25 = BM25Index.load(ptr.bm25_path) if ptr.bm25_path else None
    keys = ("model_version", "index_version", "faiss_type", "model_path", "created_at", "passages", "encoder_backend")
    versions = {k: getattr(ptr, k) for k in keys}
    versions["query_backend"] = query_backend
    versions["pointer"] = where
    engine = SearchEngine(corpus, model=model, dense=dense, bm25=bm25, settings=settings.search, versions=versions)
    if query_backend != ptr.encoder_backend:
        engine.passage_loader = partial(
            load_encoder, ptr.model_path, ptr.encoder_backend, ptr.encoder_path, threads=threads
        )
    if "auto" in (settings.search.fusion, settings.search.citation_linking):
        try:
            engine.fusion_params = store.find_fusion_params(ptr.model_version)
        except ValueError as exc:  # a damaged fusion.json: serve with the rrf fallback rather than not at all
            logger.warning(
                "search: fusion parameters of %s unreadable (%s); auto uses rrf / boost", ptr.model_version, exc
            )
        if engine.fusion_params is None:
            logger.info(
                "search: no fusion/linking chosen on valid for model %s; auto uses rrf / boost", ptr.model_version
            )
    return engine
