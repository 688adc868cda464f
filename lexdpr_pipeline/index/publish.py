"""The index workflows the ``index`` assets call: build (or reuse) the BM25 and FAISS indexes in the artifact store,
and publish the set the search engine serves.

- :func:`build_or_reuse_bm25`: a BM25 index over the corpus in ``store.folder(Kind.BM25, key)``; an unchanged corpus
  (same :func:`~lexdpr_pipeline.index.bm25.corpus_key`) reuses the stored one.
- :func:`build_or_update_faiss`: the FAISS index of an embedding set in ``store.folder(Kind.FAISS, key)``. The same
  content key reuses the stored index; else the previous index is updated incrementally where the type allows — the
  one the current pointer names when it is compatible, else the newest compatible one — else a full build.
- :func:`publish_index`: writes the :class:`~lexdpr_pipeline.artifacts.IndexPointer` (``data/indexes/CURRENT.json``)
  that the CLI and the API load: one consistent set of model, FAISS index, BM25 index and corpus.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.artifacts import (
    ArtifactStore,
    Bm25IndexManifest,
    EmbeddingSetManifest,
    FaissIndexManifest,
    IndexPointer,
    Kind,
    MissingArtifactError,
)
from lexdpr_pipeline.index.bm25 import BM25Index, BM25Params, corpus_key
from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.index.faiss_index import DenseIndex, IndexSpec, UpdateReport, find_previous, index_key
from lexdpr_pipeline.text.korean import KoreanTokenizer

logger = logging.getLogger(__name__)


# BM25 -----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bm25Build:
    manifest: Bm25IndexManifest
    reused: bool  # the index with this content key was already stored


def build_or_reuse_bm25(
    corpus: pl.DataFrame,
    store: ArtifactStore,
    *,
    tokenizer: KoreanTokenizer | None = None,
    params: BM25Params | None = None,
    progress: bool = True,
    expansions: list[str] | None = None,
    expansion_weight: float = 0.0,
) -> Bm25Build:
    """BM25 over ``corpus`` (``passage_id``, ``text``) at its content-addressed folder, built unless stored.
    ``expansions`` (one per passage, :func:`~lexdpr_pipeline.citations.expansion.passage_expansions`): the second
    field, searched with ``expansion_weight``; None: the plain index, under the key it always had."""
    tokenizer, params = tokenizer or KoreanTokenizer(), params or BM25Params()
    key = corpus_key(corpus, tokenizer, params, expansions=expansions, expansion_weight=expansion_weight)
    path = store.folder(Kind.BM25, key)
    reused = BM25Index.is_saved(path)
    if not reused:
        ids, texts = corpus["passage_id"].to_list(), corpus["text"].to_list()
        BM25Index.build(
            ids,
            texts,
            tokenizer=tokenizer,
            params=params,
            progress=progress,
            expansions=expansions,
            expansion_weight=expansion_weight,
        ).save(path)
    return Bm25Build(Bm25IndexManifest(path=str(path), passages=corpus.height, content_hash=key), reused)


# FAISS ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaissBuild:
    """Where the index of an embedding set is, and how it got there."""

    path: Path
    key: str  # the content key (embeddings key + build parameters)
    spec: IndexSpec
    report: UpdateReport  # reused | built | rebuilt | incremental
    meta: dict[str, Any]  # the stored faiss_index.json (params, info, ntotal, …)
    embeddings: EmbeddingSet
    previous: Path | None = None  # the index updated (incremental or rebuilt from), if any

    def manifest(self, embeddings: EmbeddingSetManifest, bm25: Bm25IndexManifest | None) -> FaissIndexManifest:
        """The ``faiss_index`` asset's manifest (the embeddings' manifest gives the model path it was chosen by)."""
        return FaissIndexManifest(
            path=str(self.path),
            faiss_type=self.spec.faiss_type,
            params=self.meta["params"],
            info=self.meta.get("info", {}),
            dim=self.embeddings.dim,
            passages=len(self.embeddings),
            model_path=embeddings.model_path,
            model_version=self.embeddings.model_version,
            embeddings_path=embeddings.path,
            bm25_path=bm25.path if bm25 is not None else None,
            content_hash=self.key,
            update=self.report.describe(),
        )


def _pointer_faiss_path(store: ArtifactStore) -> Path | None:
    """The FAISS folder the current pointer names; a missing or unreadable pointer is no preference (this build
    replaces it), said in the log when it is broken."""
    try:
        return Path(store.read_pointer().faiss_path)
    except MissingArtifactError:
        return None
    except ValueError as exc:
        logger.warning("ignoring the current index pointer when looking for a previous index: %s", exc)
        return None


def build_or_update_faiss(
    embeddings: EmbeddingSet, spec: IndexSpec, store: ArtifactStore, *, progress: bool = True
) -> FaissBuild:
    """The FAISS index of ``embeddings`` with ``spec``'s build parameters, stored under its content key."""
    key = index_key(str(embeddings.key), spec)
    path = store.folder(Kind.FAISS, key)
    previous: Path | None = None
    if DenseIndex.is_saved(path):
        report = UpdateReport("reused", reason="an index with this content key exists")
    else:
        previous = find_previous(
            store.root(Kind.FAISS),
            model_version=embeddings.model_version,
            spec=spec,
            dim=embeddings.dim,
            prefer=_pointer_faiss_path(store),
        )
        if previous is not None:
            logger.info("FAISS: updating the index at %s", previous)
            index, report = DenseIndex.load(previous).update(embeddings, spec=spec, progress=progress)
        else:
            index = DenseIndex.build(embeddings, spec, progress=progress)
            report = UpdateReport("built", reason="no previous index of this model and type")
        index.save(path)
    return FaissBuild(path, key, spec, report, DenseIndex.read_meta(path), embeddings, previous)


# the pointer ----------------------------------------------------------------------------------------------------------


def publish_index(
    store: ArtifactStore,
    *,
    embeddings: EmbeddingSetManifest,
    faiss: FaissIndexManifest,
    bm25: Bm25IndexManifest | None,
    corpus_path: Path,
) -> IndexPointer:
    """Point the search engine at this set (atomically replacing ``CURRENT.json``); refuses an inconsistent one."""
    if faiss.embeddings_path != embeddings.path or faiss.model_version != embeddings.model_version:
        raise ValueError(
            f"the FAISS index {faiss.path} was built from {faiss.embeddings_path} ({faiss.model_version}), "
            f"not from {embeddings.path} ({embeddings.model_version}): not publishing it"
        )
    if not Path(corpus_path).is_file():
        raise FileNotFoundError(f"the corpus {corpus_path} does not exist: not publishing an index over it")
    pointer = IndexPointer(
        model_path=embeddings.model_path,
        model_version=embeddings.model_version,
        faiss_path=faiss.path,
        faiss_type=faiss.faiss_type,
        corpus_path=str(corpus_path),
        embeddings_path=embeddings.path,
        bm25_path=bm25.path if bm25 is not None else None,
        passages=faiss.passages,
        index_version=faiss.content_hash,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        encoder_backend=embeddings.encoder_backend,
        encoder_path=embeddings.encoder_path,
        query_backend=embeddings.query_backend,
        query_path=embeddings.query_path,
    )
    store.write_pointer(pointer)
    logger.info("published index %s (%s, %d passages)", faiss.content_hash[:20], faiss.faiss_type, faiss.passages)
    return pointer
