"""Size and time the FAISS index types at scale on synthetic vectors; prints a markdown table and JSON.

    .venv/bin/python scripts/bench_index_scale.py                       # N = 200,000 384-d vectors, all four types
    .venv/bin/python scripts/bench_index_scale.py --n 50000 --types flat,ivfpq --json out.json

The vectors are seeded and normalized, drawn around N/200 random centres (real embeddings are clustered; iid noise
has no neighbours worth finding, which makes every approximate index look broken). Queries are fresh draws from the
same mixture. Each type is built in its own process through the project's :class:`DenseIndex` (the settings'
defaults: ivf/ivfpq nlist 4·sqrt(N), nprobe 16; ivfpq pq_m dim/8 × 8 bits, exact re-ranking of 100 candidates with
the vectors attached; hnsw M 32, efConstruction 200, efSearch 128), so peak RSS is per type. Figures per type: build
seconds, index.faiss bytes per vector, peak and after-build RSS, single-query and batch latency p50/p95 at k=10 and
recall@10 against exact search. ``--extrapolate`` adds RAM and latency for larger corpora from the formulas and the
measured point (labelled as extrapolation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.index.embeddings import EmbeddingSet  # noqa: E402
from lexdpr_pipeline.index.faiss_index import INDEX_FILE, DenseIndex, IndexSpec  # noqa: E402
from lexdpr_pipeline.settings import IndexSettings  # noqa: E402

TYPES = ("flat", "ivf", "ivfpq", "hnsw")
K = 10


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="vectors to index")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--types", default=",".join(TYPES), help="FAISS types, comma-separated")
    p.add_argument("--queries", type=int, default=200, help="queries for recall and latency")
    p.add_argument("--batch", type=int, default=32, help="queries per batch for the batch latency")
    p.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extrapolate", default="1000000,10000000,100000000", help="corpus sizes to extrapolate to")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one type in this process
    return p.parse_args(argv)


def synthetic(n: int, dim: int, seed: int, *, centres_seed: int = 1234) -> np.ndarray:
    """``n`` normalized float32 vectors around ``max(10, n // 200)`` seeded centres (noise as strong as a centre)."""
    centres = np.random.default_rng(centres_seed).standard_normal((max(10, n // 200), dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 65536):  # in chunks: no float64 copy of the whole set
        stop = min(n, start + 65536)
        x = centres[rng.integers(centres.shape[0], size=stop - start)]
        x = x + rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _rss_mb() -> float:
    """Current resident set size (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def measure(faiss_type: str, n: int, dim: int, n_queries: int, batch: int, seed: int, threads: int) -> dict[str, Any]:
    """Build one index type over the synthetic set and measure it (run in a fresh process per type)."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    vectors = synthetic(n, dim, seed)
    queries = synthetic(n_queries, dim, seed + 1)
    ids = [f"p{i}" for i in range(n)]
    embs = EmbeddingSet(ids, ids, vectors, "synthetic", key="synthetic")
    _, truth = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)  # no copy of the vectors
    spec = IndexSpec.from_settings(IndexSettings(faiss_type=faiss_type))
    rss_before = _rss_mb()
    started = time.perf_counter()
    index = DenseIndex.build(embs, spec)
    build_s = time.perf_counter() - started
    rss_after = _rss_mb()
    if faiss_type != "flat":
        index.attach_vectors(embs)  # as load_engine serves it (memory-mapped there): ivfpq re-ranks with them
    with tempfile.TemporaryDirectory() as tmp:
        disk = (index.save(Path(tmp) / "idx") / INDEX_FILE).stat().st_size
    for q in queries[:5]:  # warm up
        index.search_labels(q[None, :], K)
    single = []
    for q in queries:
        t = time.perf_counter()
        index.search_labels(q[None, :], K)
        single.append(time.perf_counter() - t)
    batches, found = [], []
    for start in range(0, n_queries, batch):
        t = time.perf_counter()
        _, labels = index.search_labels(queries[start : start + batch], K)
        batches.append(time.perf_counter() - t)
        found.append(labels)
    labels = np.concatenate(found)
    recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(labels, truth, strict=True)]))
    return {
        "type": faiss_type,
        "n": n,
        "dim": dim,
        "params": {**spec.build_params(), **index.info},
        "build_s": round(build_s, 2),
        "disk_bytes": disk,
        "bytes_per_vector": round(disk / n, 1),
        "rss_vectors_mb": round(rss_before, 1),
        "rss_after_build_mb": round(rss_after, 1),
        "index_rss_mb": round(rss_after - rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "single": _percentiles(single),
        "batch": {**_percentiles(batches), "size": batch},
        "qps_batch": round(n_queries / sum(batches), 1),
        "recall_at_10": round(recall, 4),
        "threads": faiss.omp_get_max_threads(),
    }


def ram_bytes_per_vector(faiss_type: str, dim: int, params: dict[str, Any]) -> dict[str, float]:
    """Resident bytes a passage costs in each index (ids 8 B; FAISS list/graph overheads left out)."""
    if faiss_type == "flat":
        return {"resident": 4 * dim + 8, "mmap": 0}
    if faiss_type == "ivf":
        return {"resident": 4 * dim + 8, "mmap": 4 * dim}  # + the vectors mapped for exact filtered search
    if faiss_type == "ivfpq":
        return {"resident": params["pq_m"] * params["pq_nbits"] / 8 + 8, "mmap": 4 * dim}  # mapped for re-ranking
    return {"resident": 4 * dim + 2 * params["hnsw_m"] * 4 + 8, "mmap": 4 * dim}


def extrapolate(row: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """RAM from the formulas and single-query p50 scaled from the measured point: flat ∝ N; ivf/ivfpq ∝ sqrt(N)
    (nlist = 4·sqrt(N), nprobe fixed: the lists scanned grow as sqrt(N)); hnsw ∝ log(N). Estimates, not figures."""
    per = ram_bytes_per_vector(row["type"], row["dim"], row["params"])
    n0, p50 = row["n"], row["single"]["p50_ms"]
    scale = {
        "flat": lambda n: n / n0,
        "ivf": lambda n: math.sqrt(n / n0),
        "ivfpq": lambda n: math.sqrt(n / n0),
        "hnsw": lambda n: math.log(n) / math.log(n0),
    }[row["type"]]
    return [
        {
            "type": row["type"],
            "n": n,
            "resident_gb": round(per["resident"] * n / 1e9, 2),
            "mmap_gb": round(per["mmap"] * n / 1e9, 2),
            "single_p50_ms": round(p50 * scale(n), 2),
        }
        for n in sizes
    ]


def _run_worker(faiss_type: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", faiss_type, "--n", str(args.n), "--dim", str(args.dim)]
    cmd += ["--queries", str(args.queries), "--batch", str(args.batch), "--threads", str(args.threads)]
    cmd += ["--seed", str(args.seed)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _label(row: dict[str, Any]) -> str:
    return f"{row['type']} (flat fallback)" if row["params"].get("built_as") else row["type"]


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| type | build s | bytes/vector (disk) | index RSS MB | peak RSS MB | single p50/p95 ms | "
        "batch of {b} p50/p95 ms | recall@10 |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head.format(b=rows[0]["batch"]["size"])]
    for r in rows:
        lines.append(
            f"| {_label(r)} | {r['build_s']:.1f} | {r['bytes_per_vector']:.0f} | {r['index_rss_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['single']['p50_ms']:.2f} / {r['single']['p95_ms']:.2f} | "
            f"{r['batch']['p50_ms']:.1f} / {r['batch']['p95_ms']:.1f} | {r['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def _extrapolation_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| type | passages | resident RAM GB | memory-mapped vectors GB | single-query p50 ms |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['type']} | {r['n']:,} | {r['resident_gb']} | {r['mmap_gb'] or '-'} | ~{r['single_p50_ms']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.n, args.dim, args.queries, args.batch, args.seed, args.threads)))
        return 0
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise SystemExit(f"unknown types {unknown}: choose from {TYPES}")
    rows = []
    for faiss_type in types:
        print(f"measuring {faiss_type} at N={args.n:,} …", file=sys.stderr, flush=True)
        rows.append(_run_worker(faiss_type, args))
    print(f"N = {args.n:,} synthetic {args.dim}-d vectors, k = {K}, {args.queries} queries\n")
    print(_table(rows))
    sizes = [int(s) for s in args.extrapolate.split(",") if s.strip()]
    extra = [e for r in rows for e in extrapolate(r, sizes)]
    if extra:
        print(f"\nExtrapolated from the measured point (N = {args.n:,}), not measured:\n")
        print(_extrapolation_table(extra))
    figures = {"measured": rows, "extrapolated": extra}
    print("\n" + json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
