"""One evaluation end to end: queries per split, one shared corpus, every system ranked and scored, the report.

Each dense model encodes the corpus once and reuses the vectors for every split; BM25 reuses the full index only
when the eval corpus is the full corpus (else it indexes the sample). With BM25 and ``plan.hybrid``, each dense model
is also fused with BM25 (``hybrid rrf (fine-tuned+bm25)``, ``hybrid weighted (…)``), the fusion parameters chosen
on the valid split per source group (:mod:`.fusion_tuning`) and applied to every split. With
``plan.citation_linking``, every system (dense, BM25, hybrids) also gets its ``+ linking`` variant: the statutes and
decisions each query cites fused into its ranking (:mod:`.link_tuning`), mode and weight chosen on valid per source
group. Both apply, per query, the choice of its answer's source group; ``served, unfiltered (…)`` (with both) is what
the engine returns for a query with no source filter, its choices picked by the candidates' sources
(:func:`served_rankings`). Every system is scored twice: over passages (``EvalRun.table``) and as served, one hit per
document (``EvalRun.document_table``, :mod:`.documents`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from lexdpr_pipeline.evaluation.corpus import eval_corpus
from lexdpr_pipeline.evaluation.documents import document_queries, document_rankings
from lexdpr_pipeline.evaluation.fusion_tuning import (
    ALL,
    FUSIONS,
    METRIC,
    Choice,
    FusionTuning,
    fused_rankings,
    tune_fusion,
)
from lexdpr_pipeline.evaluation.link_tuning import (
    LinkCandidate,
    LinkTuning,
    QueryLinks,
    doc_passages,
    link_shares,
    linked_name,
    linked_rankings,
    query_links,
    tune_linking,
)
from lexdpr_pipeline.evaluation.queries import EvalQueries, build_exclusion_index, eval_queries, source_of_passage
from lexdpr_pipeline.evaluation.report import (
    EvalReport,
    document_section,
    fusion_section,
    hybrid_vs_parts,
    linking_section,
    write_report,
)
from lexdpr_pipeline.evaluation.retrievers import (
    Rankings,
    ScoredRankings,
    bm25_index_for,
    bm25_scored,
    dense_scored,
    encode_corpus,
    ids_of,
)
from lexdpr_pipeline.evaluation.scoring import PER_QUERY_SCHEMA, evaluate_systems, table_schema
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.index.embeddings import EmbeddingCache
from lexdpr_pipeline.models.biencoder import BiEncoder
from lexdpr_pipeline.search.fusion import candidate_group
from lexdpr_pipeline.search.linking import QueryLinker
from lexdpr_pipeline.settings import EvalSettings
from lexdpr_pipeline.storage import write_parquet

logger = logging.getLogger(__name__)

FINE_TUNED = "fine-tuned"
BASE = "base (zero-shot)"
BM25 = "bm25"
RANKS_FILE = "per_query_ranks.parquet"
WHOLE, SAMPLED = "whole", "sampled"  # what the eval corpus is (every report and MLflow run says which)


def hybrid_name(fusion: str, dense_system: str) -> str:
    """``hybrid rrf (fine-tuned+bm25)``, ``hybrid weighted (base+bm25)``."""
    return f"hybrid {fusion} ({dense_system.split(' ')[0]}+{BM25})"


def served_name(dense_system: str) -> str:
    """``served, unfiltered (fine-tuned+bm25)``: what ``lex-dpr search`` returns for a query with no source filter."""
    return f"served, unfiltered ({dense_system.split(' ')[0]}+{BM25})"


def corpus_label(plan_max_passages: int | None, passages: int) -> str:
    """How every report names the corpus searched: the whole ``merged_corpus`` or a labelled sample."""
    if plan_max_passages is None:
        return f"{WHOLE} merged_corpus ({passages} passages)"
    return (
        f"{SAMPLED}: every positive + a seeded uniform sample, cap {plan_max_passages} ({passages} passages; "
        "positives + seeded sample — a fast option: scores are higher than on the whole corpus)"
    )


@dataclass(frozen=True)
class EvalPlan:
    """What to evaluate on (the ``eval`` settings section, without Dagster)."""

    ks: tuple[int, ...] = (1, 5, 10, 100)
    splits: tuple[str, ...] = ("valid", "test")
    max_queries_per_split: int | None = None
    corpus_max_passages: int | None = None
    exclude_query_document: bool = True
    batch_size: int = 64
    seed: int = 13
    hybrid: bool = True
    citation_linking: bool = True
    bm25_expansion_weight: float | None = None  # BM25's citation-expansion weight; None: the index's own

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) <= 0:
            raise ValueError(f"eval.ks must be positive integers, got {list(self.ks)}")
        if not self.splits:
            raise ValueError("eval.splits is empty: nothing to evaluate")

    @property
    def depth(self) -> int:
        return max(self.ks)

    @classmethod
    def from_settings(cls, s: EvalSettings) -> EvalPlan:
        return cls(
            ks=tuple(sorted(set(s.ks))),
            splits=tuple(s.splits),
            max_queries_per_split=s.max_queries_per_split,
            corpus_max_passages=s.corpus_max_passages,
            exclude_query_document=s.exclude_query_document,
            batch_size=s.batch_size,
            seed=s.seed,
            hybrid=s.hybrid,
            citation_linking=s.citation_linking,
            bm25_expansion_weight=s.bm25_expansion_weight,
        )


@dataclass
class EvalRun:
    table: pl.DataFrame  # system, split, group, n_queries, metric columns
    per_query: pl.DataFrame  # PER_QUERY_SCHEMA
    corpus_size: int
    queries_per_split: dict[str, int]
    skipped: dict[str, dict[str, int]]  # split → reason → count
    timings_s: dict[str, float] = field(default_factory=dict)
    report: EvalReport | None = None
    ranks_path: Path | None = None
    corpus: str = WHOLE  # whole | sampled
    corpus_label: str = ""
    fusion: dict[str, FusionTuning] = field(default_factory=dict)  # dense system → fusion chosen on valid
    hybrid_parts: dict[str, tuple[str, str]] = field(default_factory=dict)  # hybrid system → (dense, bm25)
    hybrid_check: pl.DataFrame | None = None  # per split and query type: hybrid vs each of its parts
    linking: dict[str, LinkTuning] = field(default_factory=dict)  # system → its linking chosen on valid
    linked_parts: dict[str, str] = field(default_factory=dict)  # "<system> + linking" → system
    link_shares: pl.DataFrame | None = None  # per split and query type: share of queries with a resolved link
    # The same systems as served, one hit per document (:mod:`.documents`); the schema of ``table``.
    document_table: pl.DataFrame | None = None

    def best_linked_system(self, metric: str = METRIC) -> str | None:
        """The system whose ``+ linking`` variant scores best overall on valid (else on the first split there is):
        the one the report's with/without-linking table is about."""
        if not self.linked_parts or metric not in self.table.columns:
            return None
        rows = self.table.filter((pl.col("group") == "all") & pl.col("system").is_in(list(self.linked_parts)))
        splits = rows["split"].unique(maintain_order=True).to_list()
        if not splits:
            return None
        split = "valid" if "valid" in splits else splits[0]
        best = (
            rows.filter(pl.col("split") == split).sort([metric, "system"], descending=[True, False]).row(0, named=True)
        )
        return self.linked_parts[best["system"]]

    def hybrid_below_parts(self, split: str = "test") -> list[str]:
        """``"cross_prec: hybrid rrf (fine-tuned+bm25) 0.41 < bm25 0.44"`` for each (type, hybrid) below a part."""
        if self.hybrid_check is None:
            return []
        rows = self.hybrid_check.filter((pl.col("split") == split) & ~pl.col("ge_parts"))
        return [
            f"{r['query_type']}: {r['hybrid']} {r['hybrid_score']:.4f} < {r['best_part']} {r['best_part_score']:.4f}"
            for r in rows.iter_rows(named=True)
        ]

    def overall(self, documents: bool = False) -> dict[tuple[str, str], dict[str, float]]:
        """``(split, system)`` → overall mean metrics (``documents``: of the one-hit-per-document view)."""
        table = self.document_table if documents else self.table
        if table is None:
            return {}
        metrics = [c for c in table.columns if "@" in c]
        rows = table.filter(pl.col("group") == "all")
        return {(r["split"], r["system"]): {m: r[m] for m in metrics} for r in rows.iter_rows(named=True)}


def run_evaluation(
    models: Mapping[str, BiEncoder | Callable[[], BiEncoder]],
    splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    plan: EvalPlan,
    *,
    bm25: bool = True,
    full_bm25: Callable[[], BM25Index] | None = None,
    out_dir: Path | None = None,
    notes: Mapping[str, object] | None = None,
    progress: bool = True,
    embedding_caches: Mapping[str, EmbeddingCache] | None = None,
) -> EvalRun:
    """Score each dense model in ``models`` (name → model, or a loader called once) and, with ``bm25``, BM25, on
    ``plan.splits``. ``full_bm25`` loads the index over all of ``merged_corpus`` (used only for a full-corpus
    evaluation). With ``out_dir`` the per-query ranks and the report are written there. ``embedding_caches`` (name →
    that model's cache) spares re-encoding passages an earlier evaluation or embedding run already encoded: the
    zero-shot base model is then encoded once, not in every evaluation."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    excl = build_exclusion_index(merged_corpus) if plan.exclude_query_document else None
    queries: list[EvalQueries] = []
    skipped: dict[str, dict[str, int]] = {}
    for split in plan.splits:
        q = eval_queries(
            splits,
            merged_corpus,
            split,
            max_queries=plan.max_queries_per_split,
            seed=plan.seed,
            exclude_query_document=plan.exclude_query_document,
            exclusion_index=excl,
        )
        skipped[split] = dict(q.skipped)
        if not len(q):
            logger.warning("evaluation: split %r has no query to evaluate; skipped", split)
            skipped[split]["split without queries"] = 1
            continue
        queries.append(q)
    if not queries:
        raise ValueError(f"no queries to evaluate in splits {list(plan.splits)} (see dataset_splits)")
    corpus = eval_corpus(merged_corpus, queries, plan.corpus_max_passages, plan.seed)
    timings["prepare_s"] = time.perf_counter() - started
    logger.info("evaluation: %d passages, queries %s", corpus.height, {q.split: len(q) for q in queries})

    rankings: dict[str, dict[str, ScoredRankings]] = {q.split: {} for q in queries}  # split → system → rankings
    for name, model_or_loader in models.items():
        t0 = time.perf_counter()
        model = model_or_loader if hasattr(model_or_loader, "encode_passages") else model_or_loader()
        vecs = encode_corpus(
            model,
            corpus,
            batch_size=plan.batch_size,
            progress=progress,
            cache=(embedding_caches or {}).get(name),
        )
        for q in queries:
            rankings[q.split][name], _ = dense_scored(
                model, q, corpus, plan.depth, batch_size=plan.batch_size, progress=progress, passage_vecs=vecs
            )
        del model, vecs
        timings[f"{name}_s"] = time.perf_counter() - t0
    if bm25:
        t0 = time.perf_counter()
        full = full_bm25() if full_bm25 is not None and plan.corpus_max_passages is None else None
        index = bm25_index_for(corpus, full, progress=progress, expansion_weight=plan.bm25_expansion_weight)
        if index.has_expansion:
            notes = {**(notes or {}), "bm25 citation-expansion weight": index.expansion_weight}
        for q in queries:
            rankings[q.split][BM25] = bm25_scored(index, q, plan.depth, progress=progress)
        timings[f"{BM25}_s"] = time.perf_counter() - t0
    fusion: dict[str, FusionTuning] = {}
    parts: dict[str, tuple[str, str]] = {}
    if bm25 and plan.hybrid and models:
        t0 = time.perf_counter()
        fusion, parts = _add_hybrids(rankings, queries, list(models), plan.depth)
        timings["hybrid_s"] = time.perf_counter() - t0
    linking: dict[str, LinkTuning] = {}
    linked: dict[str, dict[str, Rankings]] = {q.split: {} for q in queries}
    shares = None
    served: dict[str, dict[str, Rankings]] = {q.split: {} for q in queries}
    doc_of, passages_of = doc_passages(corpus)  # linking, the served rows and the document view all map with it
    if plan.citation_linking and rankings[queries[0].split]:
        t0 = time.perf_counter()
        linking, linked, shares, links = _add_linking(rankings, queries, corpus, doc_of, passages_of, plan.depth)
        timings["linking_s"] = time.perf_counter() - t0
        if fusion:
            served = served_rankings(rankings, queries, fusion, linking, links, doc_of, passages_of, plan.depth)

    tables, ranks, doc_tables = [], [], []
    for q in queries:
        systems: dict[str, Rankings] = {}
        for name, scored in rankings[q.split].items():
            systems[name] = ids_of(scored)
            if linked_name(name) in linked[q.split]:
                systems[linked_name(name)] = linked[q.split][linked_name(name)]
        systems.update(served[q.split])
        table, per_query = evaluate_systems(systems, q, plan.ks)
        tables.append(table)
        ranks.append(per_query)
        doc_tables.append(evaluate_systems(document_rankings(systems, doc_of), document_queries(q, doc_of), plan.ks)[0])
    run = EvalRun(
        table=pl.concat(tables) if tables else pl.DataFrame(schema=table_schema(plan.ks)),
        per_query=pl.concat(ranks) if ranks else pl.DataFrame(schema=PER_QUERY_SCHEMA),
        corpus_size=corpus.height,
        queries_per_split={q.split: len(q) for q in queries},
        skipped=skipped,
        timings_s=timings,
        corpus=WHOLE if plan.corpus_max_passages is None else SAMPLED,
        corpus_label=corpus_label(plan.corpus_max_passages, corpus.height),
        fusion=fusion,
        hybrid_parts=parts,
        linking=linking,
        linked_parts={linked_name(n): n for n in linking},
        link_shares=shares,
        document_table=pl.concat(doc_tables) if doc_tables else None,
    )
    run.hybrid_check = hybrid_vs_parts(run.table, parts) if parts else None
    sections = fusion_section(run.fusion, run.hybrid_check, run.hybrid_below_parts()) if fusion else []
    if linking:
        sections += linking_section(run.table, run.linking, run.link_shares, run.best_linked_system())
    if run.document_table is not None:
        sections += document_section(run.document_table)
    if out_dir is not None:
        run.ranks_path = write_parquet(run.per_query, Path(out_dir) / RANKS_FILE)
        excluded = {q.split: sum(len(e) for e in q.exclude.values()) for q in queries}
        run.report = write_report(
            run.table,
            Path(out_dir),
            notes={
                **(notes or {}),
                "eval corpus": run.corpus_label,
                "queries per split": run.queries_per_split,
                "excluded own-decision passages per split": excluded,
                "ks": list(plan.ks),
                "seed": plan.seed,
            },
            sections=sections,
        )
    timings["total_s"] = time.perf_counter() - started
    return run


def _add_hybrids(
    rankings: dict[str, dict[str, ScoredRankings]],
    queries: list[EvalQueries],
    dense_systems: list[str],
    depth: int,
) -> tuple[dict[str, FusionTuning], dict[str, tuple[str, str]]]:
    """Per dense system: the fusion chosen on valid (never on test), and its ``rrf`` / ``weighted`` hybrids with
    BM25 added to every split's rankings (each query fused with its source group's values)."""
    by_split = {q.split: q for q in queries}
    fusion: dict[str, FusionTuning] = {}
    parts: dict[str, tuple[str, str]] = {}
    for name in dense_systems:
        tuning = tune_fusion(
            {s: r[name] for s, r in rankings.items()}, {s: r[BM25] for s, r in rankings.items()}, by_split
        )
        fusion[name] = tuning
        for method in FUSIONS:
            system = hybrid_name(method, name)
            parts[system] = (name, BM25)
            for q in queries:
                types = q.type_of()
                rankings[q.split][system] = fused_rankings(
                    rankings[q.split][name],
                    rankings[q.split][BM25],
                    lambda qid, t=types, m=method, f=tuning: f.choice_for(t[qid], m),  # type: ignore[misc]
                    depth,
                )
    return fusion, parts


def _add_linking(
    rankings: dict[str, dict[str, ScoredRankings]],
    queries: list[EvalQueries],
    corpus: pl.DataFrame,
    doc_of: Mapping[str, str],
    passages_of: Mapping[str, list[str]],
    depth: int,
) -> tuple[dict[str, LinkTuning], dict[str, dict[str, Rankings]], pl.DataFrame, dict[str, QueryLinks]]:
    """Per system: the linking chosen on valid (never on test) and its ``+ linking`` rankings on every split (each
    query linked with its source group's choice); also the share of queries with a resolved link per type, and each
    split's query links."""
    needed = ("law_id", "law_name", "article_key", "case_no")  # a hand-made corpus may lack them: nothing links
    frame = corpus.with_columns([pl.lit(None, pl.String).alias(c) for c in needed if c not in corpus.columns])
    linker = QueryLinker.from_corpus(frame)  # what the systems search, as the engine builds it from its corpus
    by_split = {q.split: q for q in queries}
    links = {q.split: query_links(linker, q, passages_of) for q in queries}
    tunings: dict[str, LinkTuning] = {}
    linked: dict[str, dict[str, Rankings]] = {q.split: {} for q in queries}
    for name in list(rankings[queries[0].split]):
        tuning = tune_linking({s: r[name] for s, r in rankings.items()}, by_split, links, doc_of, passages_of)
        tunings[name] = tuning
        for q in queries:
            choice = {qid: tuning.choice_for(t).candidate for qid, t in q.type_of().items()}
            linked[q.split][linked_name(name)] = linked_rankings(
                rankings[q.split][name], q, links[q.split], choice, doc_of, passages_of, depth
            )
    shares = pl.concat([link_shares(q, links[q.split]) for q in queries])
    return tunings, linked, shares, links


def served_rankings(
    rankings: dict[str, dict[str, ScoredRankings]],
    queries: list[EvalQueries],
    fusion: Mapping[str, FusionTuning],
    linking: Mapping[str, LinkTuning],
    links: Mapping[str, QueryLinks],
    doc_of: Mapping[str, str],
    passages_of: Mapping[str, list[str]],
    depth: int,
) -> dict[str, dict[str, Rankings]]:
    """Per dense model, what ``lex-dpr search`` (``search.fusion: auto``, ``citation_linking: auto``, no source
    filter) returns: the engine picks the stored choices by the sources of a query's **candidates**, not by what the
    answer is — fusion by the dense and BM25 candidates (mixed on the whole corpus: the ``all`` choice), linking by
    the fused list's. The per-type rows instead apply the choice of the answer's source group: the choice a search
    filtered to that source (a 법령 or 판례 tab) applies, though there its candidates are that source alone. The
    engine's one other rule, a bare reference's document first (``linking.reference_only``), is left out: evaluation
    queries are 판시사항, descriptions rather than bare references."""
    out: dict[str, dict[str, Rankings]] = {q.split: {} for q in queries}
    for name, tuning in fusion.items():
        for q in queries:
            dense, bm25 = rankings[q.split][name], rankings[q.split][BM25]
            fusion_of = {
                qid: _served_choice(tuning, _candidate_group((*dense.get(qid, []), *bm25.get(qid, []))))
                for qid in q.ids
            }
            fused = fused_rankings(dense, bm25, fusion_of.__getitem__, 2 * depth)
            choice: dict[str, LinkCandidate] = {}
            for qid in q.ids:
                by_group = linking[hybrid_name(fusion_of[qid].fusion, name)].by_group
                group = _candidate_group(fused.get(qid, []))
                choice[qid] = (by_group.get(group) or by_group[ALL]).candidate
            out[q.split][served_name(name)] = linked_rankings(
                fused, q, links[q.split], choice, doc_of, passages_of, depth
            )
    return out


def _candidate_group(scored: Iterable[tuple[str, float]]) -> str:
    """The engine's source group (:func:`~lexdpr_pipeline.search.fusion.candidate_group`) of scored candidates."""
    return candidate_group(source_of_passage(p) for p, _ in scored)


def _served_choice(tuning: FusionTuning, group: str) -> Choice:
    return tuning.best.get(group) or tuning.best[ALL]
