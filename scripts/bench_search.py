"""Benchmark embeddings, FAISS indexes and the search engine on a slice of merged_corpus; prints the figures.

    .venv/bin/python scripts/bench_search.py --limit 5000            # base model (or the served index's model)
    .venv/bin/python scripts/bench_search.py --model data/models/trained/<key>/model --limit 20000 --json out.json

Figures: embedding passages/s; the re-embedding cost after one law changes vs a full embed; per FAISS type
(flat/ivf/hnsw) build time, size on disk, recall@10 vs flat on real queries (dataset_splits test split, else a
sample of passage texts, said so) and batch queries/s; single-query latency p50/p95/p99 per engine mode (query
encoding included) and the engine's batch queries/s, for each query encoder in ``--backends`` (torch fp32, or an ONNX
export made into the workdir: onnx, onnx-int8).

``--full-corpus`` times the engine over the WHOLE merged_corpus (every passage searchable, BM25 over all of it — pass
``--bm25`` with the bm25_index asset's folder to skip building it): the slice's passages keep their real vectors and the
rest of the corpus gets real vectors of the slice tiled with small noise (synthetic, labelled so), so the FAISS search
costs what it costs at full size without embedding every passage first. Everything is written under --workdir (a temp
folder by default), never under data/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.artifacts import ArtifactStore  # noqa: E402
from lexdpr_pipeline.index.bm25 import BM25Index  # noqa: E402
from lexdpr_pipeline.index.embeddings import EmbeddingSet, embed_corpus  # noqa: E402
from lexdpr_pipeline.index.faiss_index import DenseIndex, IndexSpec, approximate_recall  # noqa: E402
from lexdpr_pipeline.models.biencoder import BiEncoder  # noqa: E402
from lexdpr_pipeline.models.encoders import BACKENDS, TORCH, load_encoder, needs_export  # noqa: E402
from lexdpr_pipeline.models.export import export_encoder  # noqa: E402
from lexdpr_pipeline.search.engine import SearchEngine  # noqa: E402
from lexdpr_pipeline.settings import load_settings  # noqa: E402
from lexdpr_pipeline.text.passages import content_hash  # noqa: E402


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder (default: the served index's model, else the base model)")
    p.add_argument("--corpus", type=Path, help="merged_corpus parquet (default: data/tables/merged_corpus.parquet)")
    p.add_argument("--splits", type=Path, help="dataset_splits parquet (default: data/tables/dataset_splits.parquet)")
    p.add_argument("--bm25", type=Path, help="a saved BM25 index to use instead of building one over the slice")
    p.add_argument("--limit", type=int, default=5000, help="passages of merged_corpus to use (seeded sample)")
    p.add_argument("--types", default="flat,ivf,hnsw", help="FAISS types to build")
    p.add_argument("--queries", type=int, default=200, help="queries for recall and batch throughput")
    p.add_argument("--latency-queries", type=int, default=50, help="single queries timed per mode")
    p.add_argument("--batch-size", type=int, default=None, help="embedding batch (default: embed.batch_size)")
    p.add_argument("--workdir", type=Path, help="where embeddings and indexes go (default: a temp folder, removed)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api", action="store_true", help="also time single queries through the HTTP API (uvicorn)")
    p.add_argument(
        "--backends", default=TORCH, help=f"query encoders timed in the engine, comma-separated of {','.join(BACKENDS)}"
    )
    p.add_argument(
        "--full-corpus",
        action="store_true",
        help="time the engine over the whole corpus (unembedded passages get synthetic vectors, labelled so)",
    )
    p.add_argument("--threads", type=int, default=None, help="encoder intra-op threads (default: every core)")
    p.add_argument(
        "--embed-backend", default=TORCH, choices=BACKENDS, help="the encoder that embeds the passages (and the slice)"
    )
    p.add_argument(
        "--scale-to",
        type=int,
        default=None,
        help="also time FAISS build/size on N vectors: the real ones tiled with small noise (synthetic, labelled so)",
    )
    return p.parse_args(argv)


def _api_latency(settings, engine, texts: list[str], modes: list[str]) -> dict:
    """p50/p99 of POST /search through a real uvicorn server on 127.0.0.1 (HTTP, JSON, validation included)."""
    import socket
    import threading

    import httpx
    import uvicorn

    from lexdpr_pipeline.api.app import create_app

    api_settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"rate_limit_per_minute": None, "reload_check_s": 0})}
    )
    app = create_app(api_settings, engine_loader=lambda: engine)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    out: dict = {}
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for mode in modes:
                client.post("/search", json={"query": texts[0], "top_k": 10, "mode": mode}).raise_for_status()
                samples = []
                for q in texts:
                    started = time.perf_counter()
                    client.post("/search", json={"query": q, "top_k": 10, "mode": mode}).raise_for_status()
                    samples.append(time.perf_counter() - started)
                out[mode] = {
                    "p50_ms": round(_percentile_ms(samples, 50), 2),
                    "p99_ms": round(_percentile_ms(samples, 99), 2),
                    "n": len(samples),
                }
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return out


def _scaled(embs: EmbeddingSet, n: int, seed: int) -> EmbeddingSet:
    """``n`` vectors from the real ones, tiled with small Gaussian noise and renormalized (synthetic)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(embs.vectors, dtype=np.float32)
    rows = rng.integers(0, len(base), size=n)
    vecs = base[rows] + rng.normal(0, 0.02, size=(n, base.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"synthetic:{i}" for i in range(n)]
    return EmbeddingSet(ids, ["x"] * n, vecs, model_version=f"{embs.model_version}:scaled")


def _full_corpus_vectors(embs: EmbeddingSet, corpus: pl.DataFrame, seed: int) -> tuple[EmbeddingSet, int]:
    """Vectors for every passage of ``corpus``: the real ones where ``embs`` has them, else a real vector of ``embs``
    plus small noise (synthetic). Returns the set and how many vectors are synthetic."""
    real = dict(zip(embs.ids, range(len(embs.ids)), strict=True))
    ids = corpus["passage_id"].to_list()
    base = np.asarray(embs.vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    vecs = np.empty((len(ids), base.shape[1]), dtype=np.float32)
    missing = [i for i, pid in enumerate(ids) if pid not in real]
    for i, pid in enumerate(ids):
        if pid in real:
            vecs[i] = base[real[pid]]
    if missing:
        filler = base[rng.integers(0, len(base), size=len(missing))]
        filler = filler + rng.normal(0, 0.02, size=filler.shape).astype(np.float32)
        vecs[missing] = filler / np.linalg.norm(filler, axis=1, keepdims=True)
    hashes = corpus["content_hash"].to_list() if "content_hash" in corpus.columns else ["x"] * len(ids)
    return EmbeddingSet(ids, hashes, vecs, model_version=f"{embs.model_version}:full-synthetic"), len(missing)


def _query_encoder(backend: str, model_path: str, work: Path, threads: int | None):
    """The query encoder of ``backend``: the torch backends load the model; an ONNX backend exports it into ``work``
    first."""
    if not needs_export(backend):
        return load_encoder(model_path, backend, threads=threads)
    export = export_encoder(model_path, work / "export" / backend, backend)
    return load_encoder(model_path, backend, export, threads=threads)


def _default_model(settings, store: ArtifactStore) -> str:
    from lexdpr_pipeline.models.resolve import model_for_serving

    return model_for_serving(settings.embed.model, settings.models.base_model, store).path


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 2**20


def _changed_law(corpus: pl.DataFrame) -> tuple[pl.DataFrame, str, int]:
    """The slice with its largest law re-worded (new texts and content hashes)."""
    laws = corpus.filter(pl.col("law_id").is_not_null()).group_by("law_id").len().sort(["len", "law_id"])
    if laws.is_empty():
        raise SystemExit("the slice has no statute passages to change; raise --limit")
    law_id, n = laws.row(-1)
    hit = pl.col("law_id") == law_id
    changed = corpus.with_columns(pl.when(hit).then(pl.col("text") + " (개정)").otherwise(pl.col("text")).alias("text"))
    hashes = [
        content_hash(t) if lid == law_id else h
        for t, h, lid in changed.select("text", "content_hash", "law_id").iter_rows()
    ]
    return changed.with_columns(pl.Series("content_hash", hashes)), law_id, n


def _percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def run(args: argparse.Namespace) -> dict:
    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    corpus_path = args.corpus or store.table_path("merged_corpus")
    splits_path = args.splits or store.table_path("dataset_splits")
    model_path = str(args.model) if args.model else _default_model(settings, store)
    batch_size = args.batch_size or settings.embed.batch_size
    figures: dict = {"model": model_path, "corpus": str(corpus_path)}

    full = pl.read_parquet(corpus_path)
    corpus = full.sample(min(args.limit, full.height), seed=args.seed).sort("passage_id")
    figures["passages"] = corpus.height
    print(f"corpus: {corpus.height} of {full.height} passages from {corpus_path}")
    print(f"model:  {model_path}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lexdpr-bench-"))
    try:
        if args.embed_backend == TORCH:
            model = BiEncoder.load(model_path)
        else:
            model = _query_encoder(args.embed_backend, model_path, work, args.threads)
        version = f"bench:{model_path}|{args.embed_backend}"
        figures["embed_backend"] = args.embed_backend
        print(f"passages embedded with: {args.embed_backend}")

        # 1. embedding, and the re-embedding cost after one law changes
        started = time.perf_counter()
        first = embed_corpus(corpus, model, model_version=version, root=work / "emb", batch_size=batch_size)
        full_s = time.perf_counter() - started
        changed, law_id, n_law = _changed_law(corpus)
        started = time.perf_counter()
        again = embed_corpus(changed, model, model_version=version, root=work / "emb", batch_size=batch_size)
        inc_s = time.perf_counter() - started
        figures["embed"] = {
            "passages_per_s": round(first.encoded / full_s, 2),
            "full": {"encoded": first.encoded, "seconds": round(full_s, 2)},
            "one_law_change": {
                "law_id": law_id,
                "law_passages": n_law,
                "encoded": again.encoded,
                "reused": again.reused,
                "seconds": round(inc_s, 2),
            },
        }
        print("\n## Embedding")
        print(
            f"passages/s: {first.encoded / full_s:.1f}  "
            f"({first.encoded} passages in {full_s:.1f}s, dim {first.embeddings.dim})"
        )
        print(
            f"one-law change (law {law_id}, {n_law} passages): encoded {again.encoded}, reused {again.reused} in "
            f"{inc_s:.2f}s  vs full embed: encoded {first.encoded} in {full_s:.1f}s"
        )
        embs: EmbeddingSet = first.embeddings

        # 2. queries: real test-split queries when there are some
        texts: list[str] = []
        if splits_path.is_file():
            splits = pl.read_parquet(splits_path, columns=["query_text", "split"]).filter(pl.col("split") == "test")
            texts = splits.sample(min(args.queries, splits.height), seed=args.seed)["query_text"].to_list()
            source = f"{len(texts)} test-split queries of {splits_path}"
        if not texts:
            texts = corpus.sample(min(args.queries, corpus.height), seed=args.seed)["text"].to_list()
            source = f"{len(texts)} passage texts as queries (no dataset_splits test queries)"
        figures["queries"] = source
        qvecs = model.encode_queries(texts, batch_size=batch_size)

        # 3. FAISS per type
        print(f"\n## FAISS (recall@10 vs flat on {source})")
        print("| type | build s | size MB | recall@10 | batch queries/s |")
        print("|---|---|---|---|---|")
        figures["faiss"] = {}
        indexes: dict[str, DenseIndex] = {}
        for faiss_type in [t.strip() for t in args.types.split(",") if t.strip()]:
            spec = IndexSpec.from_settings(settings.index.model_copy(update={"faiss_type": faiss_type}))
            started = time.perf_counter()
            index = DenseIndex.build(embs, spec)
            build_s = time.perf_counter() - started
            path = index.save(work / "faiss" / faiss_type)
            recall = approximate_recall(index, embs, qvecs, 10)
            started = time.perf_counter()
            index.search(qvecs, 10)
            qps = len(texts) / max(time.perf_counter() - started, 1e-9)
            indexes[faiss_type] = index
            figures["faiss"][faiss_type] = {
                "build_s": round(build_s, 3),
                "size_mb": round(_folder_mb(path), 3),
                "recall_at_10": round(recall, 4),
                "batch_qps": round(qps, 1),
                "params": {**spec.build_params(), **index.info},
            }
            print(f"| {faiss_type} | {build_s:.2f} | {_folder_mb(path):.2f} | {recall:.4f} | {qps:.0f} |")

        if args.scale_to:
            big = _scaled(embs, args.scale_to, args.seed)
            figures["faiss_scaled"] = {"vectors": args.scale_to, "note": "real vectors tiled with noise (synthetic)"}
            print(f"\n## FAISS at {args.scale_to} vectors (real vectors tiled with small noise: synthetic)")
            print("| type | build s | size MB | batch queries/s |")
            print("|---|---|---|---|")
            for faiss_type in [t.strip() for t in args.types.split(",") if t.strip()]:
                spec = IndexSpec.from_settings(settings.index.model_copy(update={"faiss_type": faiss_type}))
                started = time.perf_counter()
                index = DenseIndex.build(big, spec)
                build_s = time.perf_counter() - started
                path = index.save(work / "faiss-scaled" / faiss_type)
                started = time.perf_counter()
                index.search(qvecs, 10)
                qps = len(texts) / max(time.perf_counter() - started, 1e-9)
                figures["faiss_scaled"][faiss_type] = {
                    "build_s": round(build_s, 2),
                    "size_mb": round(_folder_mb(path), 1),
                    "batch_qps": round(qps, 1),
                }
                print(f"| {faiss_type} | {build_s:.2f} | {_folder_mb(path):.1f} | {qps:.0f} |")
                del index

        # 4. the engine: latency per mode and query encoder, batch throughput
        engine_corpus, synthetic = corpus, 0
        if args.full_corpus:
            engine_corpus = full
            embs, synthetic = _full_corpus_vectors(embs, full, args.seed)
            spec = IndexSpec.from_settings(settings.index)
            indexes = {settings.index.faiss_type: DenseIndex.build(embs, spec)}
            print(
                f"\n(full corpus: {full.height} passages searchable, {synthetic} of the vectors synthetic — real "
                f"vectors of the slice plus noise; latency does not depend on the values)"
            )
        if args.bm25:
            bm25 = BM25Index.load(args.bm25)
            bm25_note = f"loaded {args.bm25}"
        else:
            started = time.perf_counter()
            bm25 = BM25Index.build(
                engine_corpus["passage_id"].to_list(), engine_corpus["text"].to_list(), progress=True
            )
            bm25_note = f"built over {engine_corpus.height} passages in {time.perf_counter() - started:.1f}s"
        dense = indexes.get(settings.index.faiss_type) or next(iter(indexes.values()), None)
        dense_type = dense.spec.faiss_type if dense else None
        figures["engine"] = {
            "dense_type": dense_type,
            "passages": engine_corpus.height,
            "synthetic_vectors": synthetic,
            "bm25": bm25_note,
            "by_backend": {},
        }
        single = texts[: args.latency_queries]
        engine = None
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            reuse = backend == args.embed_backend and (backend != TORCH or args.threads is None)
            encoder = model if reuse else _query_encoder(backend, model_path, work, args.threads)
            engine = SearchEngine(engine_corpus, model=encoder, dense=dense, bm25=bm25, settings=settings.search)
            print(
                f"\n## Search engine, query encoder {backend} (dense: {dense_type} over {engine_corpus.height} "
                f"passages, BM25 {bm25_note}, candidates {settings.search.candidates})"
            )
            print("| mode | p50 ms | p95 ms | p99 ms | batch queries/s |")
            print("|---|---|---|---|---|")
            rows: dict = {}
            for mode in engine.modes:
                engine.search_many(single[:3], mode=mode)  # warm-up
                samples = []
                for q in single:
                    started = time.perf_counter()
                    engine.search(q, mode=mode)
                    samples.append(time.perf_counter() - started)
                started = time.perf_counter()
                engine.search_many(texts, mode=mode)
                qps = len(texts) / max(time.perf_counter() - started, 1e-9)
                p50, p95, p99 = (_percentile_ms(samples, q) for q in (50, 95, 99))
                rows[mode] = {
                    "p50_ms": round(p50, 2),
                    "p95_ms": round(p95, 2),
                    "p99_ms": round(p99, 2),
                    "batch_qps": round(qps, 1),
                    "n": len(samples),
                }
                print(f"| {mode} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {qps:.1f} |")
            figures["engine"]["by_backend"][backend] = rows
        if args.api and engine is not None:
            api_modes = [m for m in ("dense", "hybrid") if m in engine.modes]
            figures["api"] = _api_latency(settings, engine, single, api_modes)
            print("\n## Through the HTTP API (uvicorn on 127.0.0.1, one client, JSON)")
            print("| mode | p50 ms | p99 ms |")
            print("|---|---|---|")
            for mode, row in figures["api"].items():
                print(f"| {mode} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8")
    return figures


def main(argv: list[str] | None = None) -> int:
    run(_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
