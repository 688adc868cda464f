"""Group ``index``: the BM25 index, passage embeddings, the FAISS index, their checks, and the pointer the search
engine loads.

Each asset is a thin call into :mod:`lexdpr_pipeline.index` (``publish.py``: the build/reuse/update decisions and the
pointer); folders come from the ``artifacts`` store. ``faiss_index`` publishes ``data/indexes/CURRENT.json`` (model,
FAISS, BM25, corpus) so the CLI and the API load one consistent set.
"""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lexdpr_pipeline.artifacts import (
    ArtifactStore,
    BaseModelManifest,
    Bm25IndexManifest,
    EmbeddingSetManifest,
    EncoderExportManifest,
    FaissIndexManifest,
    Kind,
    TrainedModelManifest,
)
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.index.embeddings import EmbeddingSet, EmbedResult, embed_corpus
from lexdpr_pipeline.index.faiss_index import IDS_FILE, DenseIndex, IndexSpec, approximate_recall
from lexdpr_pipeline.index.publish import (
    Bm25Build,
    FaissBuild,
    build_or_reuse_bm25,
    build_or_update_faiss,
    publish_index,
)
from lexdpr_pipeline.models.encoders import load_encoder
from lexdpr_pipeline.models.resolve import choose_model
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject

GROUP = "index"
RECALL_K = 10


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def _seconds(started: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(time.perf_counter() - started, 3))


@dg.asset(group_name=GROUP, code_version="bm25-1", kinds={"bm25"})
def bm25_index(artifacts: ArtifactStoreResource, merged_corpus: pl.DataFrame) -> dg.Output[Bm25IndexManifest]:
    """BM25 over ``merged_corpus`` with Korean morphological tokens (kiwipiepy; article references and case
    numbers kept whole), stored at a content-addressed folder; an unchanged corpus reuses the stored index."""
    started = time.perf_counter()
    return bm25_output(build_or_reuse_bm25(merged_corpus, artifacts.store), started)


def bm25_output(built: Bm25Build, started: float, **extra: object) -> dg.Output[Bm25IndexManifest]:
    """The ``bm25_index`` output (also of its citation-expansion variant, ``assets.citation_expansion``)."""
    manifest = built.manifest
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(manifest.content_hash),
        metadata={
            "path": dg.MetadataValue.path(manifest.path),
            "passages": dg.MetadataValue.int(manifest.passages),
            "reused_existing": built.reused,
            **extra,
            "wall_time_s": _seconds(started),
        },
    )


def _embedding_metadata(result: EmbedResult, manifest: EmbeddingSetManifest, model: str, started: float) -> dict:
    elapsed = time.perf_counter() - started
    return {
        "path": dg.MetadataValue.path(manifest.path),
        "model": model,
        "model_path": manifest.model_path,
        "encoder_backend": manifest.encoder_backend,
        "query_backend": manifest.query_backend or manifest.encoder_backend,
        "content_hash": manifest.content_hash,
        "passages": dg.MetadataValue.int(manifest.passages),
        "dim": dg.MetadataValue.int(manifest.dim),
        "encoded": dg.MetadataValue.int(result.encoded),
        "reused": dg.MetadataValue.int(result.reused),
        "existing_set_reused": result.from_existing,
        "passages_per_s": dg.MetadataValue.float(round(result.encoded / elapsed, 1) if result.encoded else 0.0),
        "size_mb": dg.MetadataValue.float(round(_folder_bytes(result.path) / 2**20, 2)),
        "wall_time_s": dg.MetadataValue.float(round(elapsed, 3)),
    }


@dg.asset(group_name=GROUP, code_version="embeddings-2", kinds={"numpy", "onnx"}, op_tags=MODEL_STEP_TAGS)
def passage_embeddings(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    merged_corpus: pl.DataFrame,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
    encoder_export: EncoderExportManifest,
) -> dg.Output[EmbeddingSetManifest]:
    """``merged_corpus`` embedded with the model ``embed.model`` names (trained | base | a folder) on the backend
    ``encoder_export`` chose: float32 normalized vectors + ids at ``data/embeddings/<key>/``. Only passages whose
    content hash the per-encoder cache (``data/embeddings/cache/``, keyed by model version + backend) lacks are
    encoded."""
    started = time.perf_counter()
    settings, store = project.settings, artifacts.store
    choice = choose_model(settings.embed.model, trained_model, base_model)
    if encoder_export.model_version != choice.version:
        raise ValueError(
            f"encoder_export was made for model version {encoder_export.model_version}, embed.model now names "
            f"{choice.version}: materialize encoder_export again"
        )
    backend, export_path = encoder_export.chosen, encoder_export.chosen_path
    context.log.info(f"embedding {merged_corpus.height} passages with {choice.path} ({settings.embed.model}/{backend})")
    result = embed_corpus(
        merged_corpus,
        lambda: load_encoder(choice.path, backend, export_path, threads=settings.embed.threads),
        model_version=encoder_export.encoder_version,
        model_path=choice.path,
        root=store.root(Kind.EMBEDDINGS),
        cache_root=store.root(Kind.EMBEDDING_CACHE),
        batch_size=settings.embed.batch_size,
        progress=True,
    )
    manifest = result.manifest(
        choice.path,
        backend,
        export_path,
        query_backend=encoder_export.query_backend,
        query_path=encoder_export.query_path,
    )
    # The query runtime is part of what downstream serves (faiss_index publishes it in the pointer), not of the vectors.
    version = manifest.content_hash + (f"|queries={manifest.query_backend}" if manifest.query_backend else "")
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(version),
        metadata=_embedding_metadata(result, manifest, settings.embed.model, started),
    )


def _faiss_metadata(build: FaissBuild, pointer_file: Path, started: float) -> dict:
    report = build.report
    return {
        "path": dg.MetadataValue.path(str(build.path)),
        "pointer": dg.MetadataValue.path(str(pointer_file)),
        "faiss_type": build.spec.faiss_type,
        "built_as": build.meta.get("info", {}).get("built_as", build.spec.faiss_type),  # ivfpq: flat on small corpora
        "content_hash": build.key,
        "params": dg.MetadataValue.json({**build.meta["params"], **build.meta.get("info", {})}),
        "passages": dg.MetadataValue.int(len(build.embeddings)),
        "update": report.describe(),
        "added": dg.MetadataValue.int(report.added),
        "removed": dg.MetadataValue.int(report.removed),
        "size_mb": dg.MetadataValue.float(round(_folder_bytes(build.path) / 2**20, 2)),
        "wall_time_s": _seconds(started),
    }


@dg.asset(group_name=GROUP, code_version="faiss-1", kinds={"faiss"})
def faiss_index(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    passage_embeddings: EmbeddingSetManifest,
    bm25_index: Bm25IndexManifest,
) -> dg.Output[FaissIndexManifest]:
    """A FAISS index (``index.faiss_type``: flat | ivf | ivfpq | hnsw) over the passage embeddings at
    ``data/indexes/faiss/<key>/``, updated incrementally from the previous index where the type allows. Writes
    ``data/indexes/CURRENT.json`` (model, FAISS, BM25, corpus) for the search engine."""
    started = time.perf_counter()
    store = artifacts.store
    embeddings = EmbeddingSet.load(Path(passage_embeddings.path))
    build = build_or_update_faiss(embeddings, IndexSpec.from_settings(project.settings.index), store)
    context.log.info(f"FAISS {build.spec.faiss_type}: {build.report.describe()}")
    manifest = build.manifest(passage_embeddings, bm25_index)
    corpus_path = store.table_path("merged_corpus")
    publish_index(store, embeddings=passage_embeddings, faiss=manifest, bm25=bm25_index, corpus_path=corpus_path)
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(manifest.content_hash),
        metadata=_faiss_metadata(build, store.pointer_path, started),
    )


@dg.asset_check(
    asset=faiss_index,
    blocking=False,
    additional_ins={"merged_corpus": dg.AssetIn("merged_corpus")},
    description="The index holds exactly the passages of merged_corpus (ids and content hashes), each once.",
)
def faiss_index_matches_corpus(faiss_index: FaissIndexManifest, merged_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    table = pl.read_parquet(Path(faiss_index.path) / IDS_FILE)
    indexed = set(table["passage_id"].to_list())
    corpus = set(merged_corpus["passage_id"].to_list())
    missing, extra = sorted(corpus - indexed), sorted(indexed - corpus)
    duplicates = table.height - len(indexed)
    stale = table.join(merged_corpus.select("passage_id", "content_hash"), on="passage_id", suffix="_corpus").filter(
        pl.col("content_hash") != pl.col("content_hash_corpus")
    )
    passed = not missing and not extra and not duplicates and stale.is_empty()
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="index ids == merged_corpus ids" if passed else "the index and merged_corpus differ",
        metadata={
            "indexed": dg.MetadataValue.int(table.height),
            "corpus": dg.MetadataValue.int(len(corpus)),
            "missing_from_index": dg.MetadataValue.int(len(missing)),
            "not_in_corpus": dg.MetadataValue.int(len(extra)),
            "duplicate_ids": dg.MetadataValue.int(duplicates),
            "stale_content": dg.MetadataValue.int(stale.height),
            "examples": dg.MetadataValue.json(
                {"missing": missing[:5], "extra": extra[:5], "stale": stale["passage_id"].head(5).to_list()}
            ),
        },
    )


def recall_queries(
    store: ArtifactStore, faiss_index: FaissIndexManifest, embeddings: EmbeddingSet, n: int
) -> tuple[np.ndarray, str]:
    """Query vectors for the recall check: ``n`` seeded valid-split queries of ``dataset_splits`` (never test
    queries: the check gates the index) encoded by the runtime that embedded the passages (the published pointer's
    backend when it names this index, else torch) when that table exists, else ``n`` seeded passage vectors (said so
    in the returned description).

    ``dataset_splits`` is read from its table rather than declared as an input, so the index can be built (and
    checked) before any training data exists.
    """
    if store.has_table("dataset_splits"):
        valid = store.read_table("dataset_splits", columns=["query_text", "split"]).filter(pl.col("split") == "valid")
        if valid.height:
            texts = valid.sample(min(n, valid.height), seed=0)["query_text"].to_list()
            backend, export = "torch", None
            if store.pointer_path.is_file():
                pointer = store.read_pointer()
                if pointer.faiss_path == faiss_index.path:
                    backend, export = pointer.query_encoder()
            encoder = load_encoder(faiss_index.model_path, backend, export)
            return encoder.encode_queries(texts), f"{len(texts)} valid queries of dataset_splits ({backend})"
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(embeddings), size=min(n, len(embeddings)), replace=False))
    vectors = np.asarray(embeddings.vectors[rows], dtype=np.float32)
    return vectors, f"{rows.size} passage vectors as queries (no dataset_splits valid queries)"


@dg.asset_check(
    asset=faiss_index,
    blocking=False,
    description="IVF/IVF-PQ/HNSW: recall@10 against exact search ≥ index.recall_floor on a seeded query sample "
    "(valid-split queries when dataset_splits exists, else passage vectors; IVF-PQ re-ranked with the stored vectors "
    "as served). Flat (and IVF-PQ's flat fallback on small corpora) is exact.",
)
def faiss_recall_at_10(
    project: LexDprProject, artifacts: ArtifactStoreResource, faiss_index: FaissIndexManifest
) -> dg.AssetCheckResult:
    settings = project.settings.index
    if faiss_index.faiss_type == "flat" or faiss_index.info.get("built_as") == "flat":
        fallback = faiss_index.info.get("fallback")
        return dg.AssetCheckResult(
            passed=True,
            description=f"flat index: exact search ({fallback})" if fallback else "flat index: exact search",
            metadata={"recall_at_10": dg.MetadataValue.float(1.0)},
        )
    emb = EmbeddingSet.load(Path(faiss_index.embeddings_path))
    index = DenseIndex.load(
        Path(faiss_index.path), nprobe=settings.ivf_nprobe, ef_search=settings.hnsw_ef_search, rerank=settings.pq_rerank
    )
    index.attach_vectors(emb)  # as the search engine serves it (IVF-PQ re-ranks with the vectors)
    queries, source = recall_queries(artifacts.store, faiss_index, emb, settings.recall_sample_queries)
    recall = approximate_recall(index, emb, queries, RECALL_K)
    return dg.AssetCheckResult(
        passed=recall >= settings.recall_floor,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"recall@{RECALL_K} {recall:.3f} (floor {settings.recall_floor}) on {source}",
        metadata={
            "recall_at_10": dg.MetadataValue.float(round(recall, 4)),
            "recall_floor": dg.MetadataValue.float(settings.recall_floor),
            "queries": source,
            "nprobe": dg.MetadataValue.int(settings.ivf_nprobe),
            "ef_search": dg.MetadataValue.int(settings.hnsw_ef_search),
            "pq_rerank": dg.MetadataValue.int(settings.pq_rerank),
        },
    )


SEARCH_INDEX_ASSETS = [bm25_index, passage_embeddings, faiss_index]
SEARCH_INDEX_CHECKS = [faiss_index_matches_corpus, faiss_recall_at_10]
