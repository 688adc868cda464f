"""Group ``index``: passage embeddings, the FAISS index, their checks, and the pointer the search engine loads.

``bm25_index`` (the lexical half of hybrid search) lives in ``assets/training_data.py``; ``faiss_index`` names it in
``data/indexes/CURRENT.json`` so the CLI and the API load one consistent set (model, FAISS, BM25, corpus).
"""

import datetime as dt
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, TrainedModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.index.embeddings import EmbeddingSet, embed_corpus
from lexdpr_pipeline.index.faiss_index import (
    IDS_FILE,
    META_FILE,
    DenseIndex,
    IndexSpec,
    UpdateReport,
    approximate_recall,
    find_previous,
    index_key,
)
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.models.resolve import choose_model
from lexdpr_pipeline.resources import LexDprProject
from lexdpr_pipeline.search.engine import pointer_path
from lexdpr_pipeline.storage import atomic_write_text

GROUP = "index"
RECALL_K = 10


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


@dg.asset(group_name=GROUP, code_version="embeddings-1", kinds={"numpy", "pytorch"}, op_tags=MODEL_STEP_TAGS)
def passage_embeddings(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    merged_corpus: pl.DataFrame,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
) -> dg.Output[dict]:
    """``merged_corpus`` embedded with the model ``embed.model`` names (trained | base | a folder): float32
    normalized vectors + ids at ``data/embeddings/<key>/``. Only passages whose content hash the per-model cache
    lacks are encoded."""
    started = time.perf_counter()
    settings = project.settings
    choice = choose_model(settings.embed.model, trained_model, base_model)
    context.log.info(f"embedding {merged_corpus.height} passages with {choice.path} ({settings.embed.model})")
    result = embed_corpus(
        merged_corpus,
        lambda: BiEncoder.load(choice.path),
        model_version=choice.version,
        model_path=choice.path,
        root=project.data / "embeddings",
        batch_size=settings.embed.batch_size,
        progress=True,
    )
    emb = result.embeddings
    manifest = {
        "path": str(result.path),
        "model_path": choice.path,
        "model_version": choice.version,
        "dim": emb.dim,
        "passages": len(emb),
        "content_hash": emb.key,
        "reused": result.reused,
        "encoded": result.encoded,
    }
    elapsed = time.perf_counter() - started
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(str(emb.key)),
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "model": settings.embed.model,
            "model_path": choice.path,
            "content_hash": str(emb.key),
            "passages": dg.MetadataValue.int(len(emb)),
            "dim": dg.MetadataValue.int(emb.dim),
            "encoded": dg.MetadataValue.int(result.encoded),
            "reused": dg.MetadataValue.int(result.reused),
            "existing_set_reused": result.from_existing,
            "passages_per_s": dg.MetadataValue.float(round(result.encoded / elapsed, 1) if result.encoded else 0.0),
            "size_mb": dg.MetadataValue.float(round(_folder_bytes(result.path) / 2**20, 2)),
            "wall_time_s": dg.MetadataValue.float(round(elapsed, 3)),
        },
    )


def _previous_faiss_path(project: LexDprProject) -> Path | None:
    try:
        return Path(json.loads(pointer_path(project.settings).read_text(encoding="utf-8"))["faiss_path"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None


@dg.asset(group_name=GROUP, code_version="faiss-1", kinds={"faiss"})
def faiss_index(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    passage_embeddings: dict,
    bm25_index: dict,
) -> dg.Output[dict]:
    """A FAISS index (``index.faiss_type``: flat | ivf | hnsw) over the passage embeddings at
    ``data/indexes/faiss/<key>/``, updated incrementally from the previous index where the type allows. Writes
    ``data/indexes/CURRENT.json`` (model, FAISS, BM25, corpus) for the search engine."""
    started = time.perf_counter()
    settings = project.settings
    emb = EmbeddingSet.load(Path(passage_embeddings["path"]))
    spec = IndexSpec.from_settings(settings.index)
    key = index_key(str(emb.key), spec)
    root = project.data / "indexes" / "faiss"
    path = root / key[:20]
    if (path / META_FILE).is_file():
        report = UpdateReport("reused", reason="an index with this content key exists")
        meta = DenseIndex.read_meta(path)
    else:
        previous = find_previous(
            root, model_version=emb.model_version, spec=spec, dim=emb.dim, prefer=_previous_faiss_path(project)
        )
        if previous is not None:
            context.log.info(f"updating the index at {previous}")
            index, report = DenseIndex.load(previous).update(emb, spec=spec, progress=True)
        else:
            index = DenseIndex.build(emb, spec, progress=True)
            report = UpdateReport("built", reason="no previous index of this model and type")
        index.save(path)
        meta = DenseIndex.read_meta(path)
    context.log.info(f"FAISS {spec.faiss_type}: {report.describe()}")
    created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    pointer = {
        "model_path": passage_embeddings["model_path"],
        "model_version": emb.model_version,
        "faiss_path": str(path),
        "faiss_type": spec.faiss_type,
        "bm25_path": bm25_index.get("path"),
        "corpus_path": str(settings.tables_dir / "merged_corpus.parquet"),
        "embeddings_path": str(passage_embeddings["path"]),
        "passages": len(emb),
        "index_version": key,
        "created_at": created_at,
    }
    pointer_file = atomic_write_text(pointer_path(settings), json.dumps(pointer, ensure_ascii=False, indent=2) + "\n")
    manifest = {
        "path": str(path),
        "faiss_type": spec.faiss_type,
        "params": meta["params"],
        "info": meta.get("info", {}),
        "dim": emb.dim,
        "passages": len(emb),
        "model_path": passage_embeddings["model_path"],
        "model_version": emb.model_version,
        "embeddings_path": str(passage_embeddings["path"]),
        "bm25_path": bm25_index.get("path"),
        "content_hash": key,
        "update": report.describe(),
    }
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(key),
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "pointer": dg.MetadataValue.path(str(pointer_file)),
            "faiss_type": spec.faiss_type,
            "content_hash": key,
            "params": dg.MetadataValue.json({**meta["params"], **meta.get("info", {})}),
            "passages": dg.MetadataValue.int(len(emb)),
            "update": report.describe(),
            "added": dg.MetadataValue.int(report.added),
            "removed": dg.MetadataValue.int(report.removed),
            "size_mb": dg.MetadataValue.float(round(_folder_bytes(path) / 2**20, 2)),
            "wall_time_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )


@dg.asset_check(
    asset=faiss_index,
    blocking=False,
    additional_ins={"merged_corpus": dg.AssetIn("merged_corpus")},
    description="The index holds exactly the passages of merged_corpus (ids and content hashes), each once.",
)
def faiss_index_matches_corpus(faiss_index: dict, merged_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    table = pl.read_parquet(Path(faiss_index["path"]) / IDS_FILE)
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


def recall_queries(project: LexDprProject, model_path: str, embeddings: EmbeddingSet, n: int) -> tuple[np.ndarray, str]:
    """Query vectors for the recall check: ``n`` seeded test-split queries of ``dataset_splits`` encoded with the
    model when that table exists, else ``n`` seeded passage vectors (said so in the returned description).

    ``dataset_splits`` is read from its table rather than declared as an input, so the index can be built (and
    checked) before any training data exists.
    """
    splits_path = project.settings.tables_dir / "dataset_splits.parquet"
    if splits_path.is_file():
        test = pl.read_parquet(splits_path, columns=["query_text", "split"]).filter(pl.col("split") == "test")
        if test.height:
            texts = test.sample(min(n, test.height), seed=0)["query_text"].to_list()
            return BiEncoder.load(model_path).encode_queries(texts), f"{len(texts)} test queries of dataset_splits"
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(embeddings), size=min(n, len(embeddings)), replace=False))
    vectors = np.asarray(embeddings.vectors[rows], dtype=np.float32)
    return vectors, f"{rows.size} passage vectors as queries (no dataset_splits test queries)"


@dg.asset_check(
    asset=faiss_index,
    blocking=False,
    description="IVF/HNSW: recall@10 against exact search ≥ index.recall_floor on a seeded query sample "
    "(test-split queries when dataset_splits exists, else passage vectors). Flat is exact.",
)
def faiss_recall_at_10(project: LexDprProject, faiss_index: dict) -> dg.AssetCheckResult:
    settings = project.settings.index
    if faiss_index["faiss_type"] == "flat":
        return dg.AssetCheckResult(
            passed=True, description="flat index: exact search", metadata={"recall_at_10": dg.MetadataValue.float(1.0)}
        )
    emb = EmbeddingSet.load(Path(faiss_index["embeddings_path"]))
    index = DenseIndex.load(Path(faiss_index["path"]), nprobe=settings.ivf_nprobe, ef_search=settings.hnsw_ef_search)
    queries, source = recall_queries(project, faiss_index["model_path"], emb, settings.recall_sample_queries)
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
        },
    )


SEARCH_INDEX_ASSETS = [passage_embeddings, faiss_index]
SEARCH_INDEX_CHECKS = [faiss_index_matches_corpus, faiss_recall_at_10]
