"""The ``encoder_export`` workflow: export a model to ONNX, gate each backend against torch fp32, choose one.

For the model ``embed.model`` names, every backend ``embed.backend`` may use is prepared — the ONNX ones exported
into the store (:func:`~lexdpr_pipeline.models.export.export_to_store`, content-addressed, reused), ``torch-bf16``
needs nothing — embedded on a fixed sample (:func:`gate_sample`) and compared with the torch fp32 vectors
(:func:`.quality_gate.quality_gate`).

The choice (:func:`choose_backend`):

- ``torch``: nothing is exported;
- ``torch-bf16`` / ``onnx`` / ``onnx-int8``: that backend, passed or not (a failed one fails the blocking asset
  check, so nothing downstream embeds with it);
- ``auto``: the first of :func:`auto_order` that passed, else torch — ``torch-bf16`` where the CPU multiplies bf16
  natively (AMX / AVX-512 BF16: measured ~4x torch fp32 here, near-lossless), then int8, then fp32 ONNX; on a
  machine where torch sees a CUDA GPU, torch without exporting (the exports run on onnxruntime's CPU provider, and
  a GPU encodes faster in torch). The order is fixed rather than re-measured on every run: the throughput of two
  close backends on a small sample is noisy, and a flip between runs would re-embed the whole corpus. The measured
  passages/s of every backend are recorded beside the choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.artifacts.manifests import EncoderExportManifest
from lexdpr_pipeline.models.encoders import (
    ONNX_BACKENDS,
    TORCH,
    TORCH_BF16,
    check_backend,
    cpu_supports_bf16,
    encoder_version,
    load_encoder,
    needs_export,
)
from lexdpr_pipeline.models.export import export_to_store
from lexdpr_pipeline.models.quality_gate import Vectors, quality_gate

logger = logging.getLogger(__name__)

SAMPLE_SEED = 0
GATE_SPLIT = "valid"


@dataclass(frozen=True)
class GateSample:
    """Passages (id -> text), valid queries (id -> text) and their positives among the sampled passages."""

    passages: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        scored = sum(1 for rel in self.qrels.values() if rel)
        return f"{len(self.passages)} passages, {len(self.queries)} {GATE_SPLIT} queries ({scored} with positives)"


def gate_sample(
    corpus: pl.DataFrame,
    splits: pl.DataFrame | None,
    *,
    n_passages: int,
    n_queries: int,
    seed: int = SAMPLE_SEED,
) -> GateSample:
    """A seeded sample: ``n_queries`` valid-split queries of ``splits`` (when given), the passages they name as
    positives, then random corpus passages up to ``n_passages`` — so the gate's nDCG ranks real positives."""
    corpus = corpus.select("passage_id", "text").sort("passage_id")
    known = set(corpus["passage_id"].to_list())
    queries: dict[str, str] = {}
    qrels: dict[str, list[str]] = {}
    if splits is not None and {"query_id", "query_text", "split", "positive_ids"} <= set(splits.columns):
        valid = splits.filter(pl.col("split") == GATE_SPLIT).sort("query_id")
        valid = valid.sample(min(n_queries, valid.height), seed=seed) if valid.height else valid
        for qid, text, positives in valid.select("query_id", "query_text", "positive_ids").iter_rows():
            queries[str(qid)] = str(text)
            qrels[str(qid)] = [p for p in (positives or []) if p in known]
    chosen: list[str] = list(dict.fromkeys(p for rel in qrels.values() for p in rel))[:n_passages]
    rest = corpus.filter(~pl.col("passage_id").is_in(chosen))
    fill = min(max(n_passages - len(chosen), 0), rest.height)
    if fill:
        chosen += rest.sample(fill, seed=seed)["passage_id"].to_list()
    text_of = dict(corpus.filter(pl.col("passage_id").is_in(chosen)).iter_rows())
    return GateSample({pid: text_of[pid] for pid in chosen}, queries, qrels)


@dataclass
class BackendResult:
    """One backend on the gate's sample (torch is the reference: no gate)."""

    backend: str
    path: str | None = None
    passed: bool = False
    error: str | None = None
    gate: dict[str, Any] | None = None
    passages_per_s: float | None = None
    queries_per_s: float | None = None
    query_p50_ms: float | None = None  # one query at a time (what search pays per request)


SINGLE_QUERIES = 16  # queries encoded one at a time for the single-query latency


def _single_query_ms(encoder: Any, sample: GateSample) -> float | None:
    texts = list(sample.queries.values())[:SINGLE_QUERIES]
    if not texts:
        return None
    encoder.encode_queries(texts[:1], batch_size=1)  # warm-up
    times = []
    for text in texts:
        started = time.perf_counter()
        encoder.encode_queries([text], batch_size=1)
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 2)


def _timed_vectors(encoder: Any, sample: GateSample, batch_size: int) -> tuple[Vectors, float | None, float | None]:
    def rate(n: int, seconds: float) -> float | None:
        return round(n / seconds, 1) if n and seconds > 0 else None

    started = time.perf_counter()
    passages = np.asarray(encoder.encode_passages(list(sample.passages.values()), batch_size=batch_size))
    middle = time.perf_counter()
    texts = list(sample.queries.values())
    queries = np.asarray(encoder.encode_queries(texts, batch_size=batch_size)) if texts else None
    ended = time.perf_counter()
    if queries is None:  # torch and onnx disagree on the shape of "nothing"
        queries = np.zeros((0, passages.shape[1]), np.float32)
    vectors = Vectors(passages.astype(np.float32), queries.astype(np.float32))
    return vectors, rate(len(sample.passages), middle - started), rate(len(sample.queries), ended - middle)


def gpu_available() -> bool:
    """Whether torch sees a CUDA device (``auto`` then keeps torch)."""
    import torch

    return bool(torch.cuda.is_available())


def auto_order(*, bf16: bool) -> tuple[str, ...]:
    """``auto``'s candidates, fastest first: ``torch-bf16`` only where the CPU has native bf16 (``bf16``)."""
    return ((TORCH_BF16,) if bf16 else ()) + ONNX_BACKENDS


def batch_backend(requested: str, *, gpu: bool | None = None, bf16: bool | None = None) -> str:
    """The backend for bulk encoding without a gate run (``eval.backend``): ``requested`` unless ``auto``, which is
    torch on a CUDA GPU, else ``torch-bf16`` on a CPU with native bf16, else ``onnx-int8`` (both within 1% nDCG@10 of
    torch fp32 wherever ``encoder_export`` gated them; the report names the backend)."""
    if requested != "auto":
        return check_backend(requested)
    if gpu_available() if gpu is None else gpu:
        return TORCH
    return TORCH_BF16 if (cpu_supports_bf16() if bf16 is None else bf16) else ONNX_BACKENDS[0]


def backends_to_try(requested: str, *, gpu: bool = False, bf16: bool = False) -> tuple[str, ...]:
    """The backends ``embed.backend`` gates: none for torch (or auto on a GPU machine), one when forced, and
    :func:`auto_order` for auto (``bf16``: whether the CPU multiplies bf16 natively)."""
    if requested == "auto":
        return () if gpu else auto_order(bf16=bf16)
    return () if check_backend(requested) == TORCH else (requested,)


def choose_backend(requested: str, results: dict[str, BackendResult]) -> str:
    """The backend ``embed.backend`` = ``requested`` gets (see the module doc): auto takes the first candidate that
    passed, in the order they were tried."""
    if requested != "auto":
        return requested
    return next((b for b, r in results.items() if b != TORCH and r.passed), TORCH)


def choose_query_backend(requested: str, chosen: str, results: dict[str, BackendResult]) -> str | None:
    """The backend whose query vectors may stand in for ``chosen``'s (module doc), or None: queries use ``chosen``.
    Only under auto, only for ``torch-bf16`` passages: the first ONNX backend that passed its own gate."""
    if requested != "auto" or chosen != TORCH_BF16:
        return None
    return next((b for b in ONNX_BACKENDS if b in results and results[b].passed), None)


def export_and_gate(
    store: ArtifactStore,
    model_path: str,
    model_version: str,
    requested: str,
    sample: GateSample,
    *,
    threads: int | None = None,
    min_mean_cosine: float = 0.99,
    max_ndcg_drop: float = 0.01,
    batch_size: int = 64,
    exporter: Callable[..., Path] | None = None,
    gpu: bool | None = None,
    bf16: bool | None = None,
) -> EncoderExportManifest:
    """Export, gate and choose (module doc). ``exporter``: ``export_to_store`` by default (tests pass a broken
    one). An export that raises is recorded as failed with its error; it never stops the others. ``gpu``: whether
    a CUDA device is there (None: ask torch); ``bf16``: whether the CPU multiplies bf16 natively (None: read the
    CPU flags)."""
    exporter = exporter or export_to_store
    results: dict[str, BackendResult] = {TORCH: BackendResult(TORCH, passed=True)}
    wanted = backends_to_try(
        requested,
        gpu=gpu_available() if gpu is None else gpu,
        bf16=cpu_supports_bf16() if bf16 is None else bf16,
    )
    candidates: dict[str, Vectors] = {}  # each gated backend's vectors on the sample
    if wanted:
        reference = load_encoder(model_path, TORCH, threads=threads)
        ref_vectors, p_rate, q_rate = _timed_vectors(reference, sample, batch_size)
        results[TORCH].passages_per_s, results[TORCH].queries_per_s = p_rate, q_rate
        results[TORCH].query_p50_ms = _single_query_ms(reference, sample)
        del reference
    for backend in wanted:
        result = results.setdefault(backend, BackendResult(backend))
        try:
            path = exporter(store, model_path, model_version, backend) if needs_export(backend) else None
            result.path = None if path is None else str(path)
            candidate = load_encoder(model_path, backend, path, threads=threads)
            vectors, result.passages_per_s, result.queries_per_s = _timed_vectors(candidate, sample, batch_size)
            result.query_p50_ms = _single_query_ms(candidate, sample)
            del candidate
        except Exception as exc:  # a failed export is a gate failure: reported, never a crash
            logger.warning("encoder export %s of %s failed: %s", backend, model_path, exc)
            result.error = f"{type(exc).__name__}: {exc}"
            continue
        report = quality_gate(
            ref_vectors,
            vectors,
            sample.passages,
            sample.queries,
            sample.qrels,
            min_mean_cosine=min_mean_cosine,
            ndcg_tolerance=max_ndcg_drop,
        )
        result.gate, result.passed = report.to_dict(), report.passed
        candidates[backend] = vectors
    chosen = choose_backend(requested, results)
    chosen_result = results.get(chosen, BackendResult(chosen))
    key = {"model": model_version, "chosen": chosen, "path": chosen_result.path, "passed": chosen_result.passed}
    query_backend = choose_query_backend(requested, chosen, results)
    query_gate = None
    if query_backend is not None:
        pair = Vectors(candidates[chosen].passages, candidates[query_backend].queries)
        report = quality_gate(
            ref_vectors,
            pair,
            sample.passages,
            sample.queries,
            sample.qrels,
            min_mean_cosine=min_mean_cosine,
            ndcg_tolerance=max_ndcg_drop,
        )
        query_gate = {"passages": chosen, "queries": query_backend, **report.to_dict()}
        if report.passed:
            key["query_backend"] = query_backend  # only then: manifests without a split keep their hash
        else:
            logger.warning(
                "%s queries against %s passages failed the gate: queries use %s", query_backend, chosen, chosen
            )
            query_backend = None
    return EncoderExportManifest(
        model_path=model_path,
        model_version=model_version,
        requested=requested,
        chosen=chosen,
        chosen_path=chosen_result.path,
        chosen_passed=chosen_result.passed,
        encoder_version=encoder_version(model_version, chosen),
        content_hash=hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest(),
        sample=sample.describe(),
        backends={name: asdict(r) for name, r in results.items()},
        query_backend=query_backend,
        query_path=results[query_backend].path if query_backend else None,
        query_gate=query_gate,
    )


def gate_table(manifest: EncoderExportManifest) -> str:
    """A markdown table of the backends: gate numbers, throughput, verdict; then the query/passage pair, if split."""

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, int | float) and value == value else "–"

    lines = [
        "| backend | passed | mean cos | min cos | nDCG@10 torch → backend | passages/s | queries/s | 1-query p50 ms "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in manifest.backends.items():
        gate = r.get("gate") or {}
        ndcg = (
            f"{num(gate.get('ndcg_reference'), '.4f')} → {num(gate.get('ndcg_candidate'), '.4f')}"
            if gate.get("ndcg_reference") is not None
            else "–"
        )
        note = "reference" if name == TORCH else (r.get("error") or "; ".join(gate.get("reasons") or []))
        chosen = " (chosen)" if name == manifest.chosen else ""
        chosen += " (queries)" if name == manifest.query_backend else ""
        lines.append(
            f"| {name}{chosen} | {'yes' if r.get('passed') else 'no'} | {num(gate.get('mean_cosine'), '.5f')} | "
            f"{num(gate.get('min_cosine'), '.5f')} | {ndcg} | {num(r.get('passages_per_s'), '.1f')} | "
            f"{num(r.get('queries_per_s'), '.1f')} | {num(r.get('query_p50_ms'), '.1f')} | {note.replace('|', '/')} |"
        )
    pair = manifest.query_gate
    if pair:
        verdict = "passed: queries use it" if manifest.query_backend else "failed: queries use the passage backend"
        lines.append(
            f"\nQueries by {pair['queries']} against passages by {pair['passages']}: mean cos "
            f"{num(pair.get('mean_cosine'), '.5f')}, nDCG@10 {num(pair.get('ndcg_reference'), '.4f')} → "
            f"{num(pair.get('ndcg_candidate'), '.4f')} ({verdict})."
        )
    return "\n".join(lines)
