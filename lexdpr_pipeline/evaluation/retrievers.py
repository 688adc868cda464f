"""Systems under evaluation, each turned into rankings: ``{query_id: [passage_id, …]}``, best first, or scored
rankings ``{query_id: [(passage_id, score), …]}`` (what hybrid fusion needs: :mod:`.fusion_tuning`).

Every ranking is ``depth`` long (or shorter when fewer passages qualify) *after* a query's excluded passages are
dropped: retrievers fetch ``depth`` plus as many as the query could lose to exclusions.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.index.exact import exact_search
from lexdpr_pipeline.models.biencoder import BiEncoder

logger = logging.getLogger(__name__)

Rankings = dict[str, list[str]]
ScoredRankings = dict[str, list[tuple[str, float]]]


def ids_of(scored: ScoredRankings) -> Rankings:
    """The rankings without their scores."""
    return {qid: [pid for pid, _ in ranked] for qid, ranked in scored.items()}


def dense_rankings(
    model: BiEncoder,
    queries: EvalQueries,
    corpus_frame: pl.DataFrame,
    depth: int,
    batch_size: int = 64,
    progress: bool = True,
    passage_vecs: np.ndarray | None = None,
) -> tuple[Rankings, np.ndarray]:
    """Exact cosine search with ``model`` (its template applied). Returns the rankings and the passage vectors
    (pass them back as ``passage_vecs`` to rank another split over the same corpus without re-encoding; see
    :func:`encode_corpus` for vectors from the embedding cache)."""
    scored, passage_vecs = dense_scored(
        model, queries, corpus_frame, depth, batch_size=batch_size, progress=progress, passage_vecs=passage_vecs
    )
    return ids_of(scored), passage_vecs


def dense_scored(
    model: BiEncoder,
    queries: EvalQueries,
    corpus_frame: pl.DataFrame,
    depth: int,
    batch_size: int = 64,
    progress: bool = True,
    passage_vecs: np.ndarray | None = None,
) -> tuple[ScoredRankings, np.ndarray]:
    """:func:`dense_rankings` with each passage's cosine similarity."""
    ids = corpus_frame["passage_id"].to_list()
    if passage_vecs is None:
        passage_vecs = encode_corpus(model, corpus_frame, batch_size=batch_size, progress=progress)
    elif passage_vecs.shape[0] != len(ids):
        raise ValueError(f"{passage_vecs.shape[0]} passage vectors for a corpus of {len(ids)} passages")
    if not len(queries):
        return {}, passage_vecs
    query_vecs = model.encode_queries(queries.texts, batch_size=batch_size, progress=progress)
    in_corpus = set(ids)
    extra = max(len(queries.exclude.get(q, set()) & in_corpus) for q in queries.ids)
    sims, idx = exact_search(query_vecs, passage_vecs, depth + extra)
    rankings: ScoredRankings = {}
    for qid, srow, row in zip(queries.ids, sims, idx, strict=True):
        banned = queries.exclude.get(qid, set())
        kept = [(ids[i], float(s)) for s, i in zip(srow, row, strict=True) if ids[i] not in banned]
        rankings[qid] = kept[:depth]
    return rankings, passage_vecs


def encode_corpus(
    model: BiEncoder,
    corpus_frame: pl.DataFrame,
    *,
    batch_size: int = 64,
    progress: bool = True,
    cache: EmbeddingCache | None = None,
) -> np.ndarray:
    """The corpus' passage vectors in row order; with ``cache``, cached ones are read and new ones added to it."""
    texts = corpus_frame["text"].to_list()
    if cache is None:
        return model.encode_passages(texts, batch_size=batch_size, progress=progress)
    hashes = corpus_frame["content_hash"].to_list()
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    unique = list(first)
    by_hash: dict[str, np.ndarray] = {}
    found_pos, found_vecs = cache.lookup(unique)
    if found_vecs is not None:
        by_hash.update(zip((unique[p] for p in found_pos), found_vecs, strict=True))
    todo = [h for h in unique if h not in by_hash]
    if todo:
        vecs = np.asarray(
            model.encode_passages([texts[first[h]] for h in todo], batch_size=batch_size, progress=progress),
            dtype=np.float32,
        )
        cache.add(todo, vecs)
        by_hash.update(zip(todo, vecs, strict=True))
    logger.info("eval corpus: %d passages encoded, %d from the embedding cache", len(todo), len(unique) - len(todo))
    return np.stack([by_hash[h] for h in hashes]).astype(np.float32, copy=False)


def bm25_rankings(index: BM25Index, queries: EvalQueries, depth: int, progress: bool = False) -> Rankings:
    """BM25 rankings (only passages sharing a term with the query are ranked, so a ranking can be short)."""
    return ids_of(bm25_scored(index, queries, depth, progress=progress))


def bm25_scored(index: BM25Index, queries: EvalQueries, depth: int, progress: bool = False) -> ScoredRankings:
    """:func:`bm25_rankings` with each passage's BM25 score."""
    if not len(queries):
        return {}
    exclude = [queries.exclude.get(q, set()) for q in queries.ids]
    hits = index.search_many(queries.texts, k=depth, exclude=exclude, progress=progress)
    return {qid: [(pid, float(score)) for pid, score in row] for qid, row in zip(queries.ids, hits, strict=True)}


def bm25_index_for(
    corpus_frame: pl.DataFrame,
    full_index: BM25Index | None = None,
    progress: bool = True,
    expansion_weight: float | None = None,
) -> BM25Index:
    """``full_index`` when it indexes exactly the eval corpus' passages; otherwise a new index over the corpus.

    ``expansion_weight`` (``eval.bm25_expansion_weight``): None searches with the index's own citation-expansion
    weight; a number overrides it — 0 turns the expansion off, > 0 needs the full index's expansion field (a new
    index over a sampled corpus has none: a clear error, never a silent text-only run)."""
    ids = corpus_frame["passage_id"].to_list()
    index = None
    if full_index is not None:
        if len(full_index) == len(ids) and set(full_index.ids) == set(ids):
            index = full_index
        else:
            logger.info(
                "BM25: the given index (%d passages) is not the eval corpus (%d); building one",
                len(full_index),
                len(ids),
            )
    if index is None:
        index = BM25Index.build(ids, corpus_frame["text"].to_list(), progress=progress)
    return index if expansion_weight is None else index.with_expansion_weight(expansion_weight)
