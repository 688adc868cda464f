"""Hybrid retrieval in the evaluation, with its fusion parameters chosen on the valid split and never on test.

A hybrid ranking fuses a dense and a BM25 scored ranking with :mod:`lexdpr_pipeline.search.fusion` — the functions
the search engine uses — by reciprocal rank fusion (``rrf_k``) or a weighted sum of min-max-normalized scores
(``dense_weight`` α). :func:`tune_fusion` scores every grid value (:data:`RRF_KS`, :data:`DENSE_WEIGHTS`) on the
``valid`` queries only and keeps, per source group of the gold answers, the best mean ``ndcg@10``:

- ``law``: ``law``, ``admrul`` and ``cross_law`` queries (their answers are statute / admin-rule articles)
- ``prec``: ``prec`` and ``cross_prec`` queries (their answers are decisions)
- ``all``: every valid query (for a search whose candidates mix sources, where the answer's source is unknown)

Ties go to the value closest to the default (``rrf_k`` 60, α 0.5), then to RRF. A group without valid queries keeps
the defaults (``valid_score`` None). The chosen values are then applied, per query by its type, to every split.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from lexdpr_pipeline.artifacts.manifests import FusionParams
from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.evaluation.retrievers import ScoredRankings
from lexdpr_pipeline.metrics.retrieval import query_metrics
from lexdpr_pipeline.search import fusion as fusion_fns

RRF = "rrf"
WEIGHTED = "weighted"
FUSIONS = (RRF, WEIGHTED)
RRF_KS = (5, 10, 20, 40, 60, 100)
DENSE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_RRF_K = 60
DEFAULT_DENSE_WEIGHT = 0.5
TUNE_SPLIT = "valid"
METRIC = "ndcg@10"
ALL = "all"
#: Query type → the source group of its gold answers.
GROUP_OF_TYPE = {"law": "law", "admrul": "law", "cross_law": "law", "prec": "prec", "cross_prec": "prec"}
GROUPS = ("law", "prec", ALL)


def source_group(query_type: str) -> str:
    """``law`` or ``prec`` (see the module doc); a type outside both counts only in ``all``."""
    return GROUP_OF_TYPE.get(query_type, ALL)


@dataclass(frozen=True)
class Candidate:
    """One grid point: ``rrf`` with ``rrf_k = value``, or ``weighted`` with ``dense_weight = value``."""

    fusion: str
    value: float

    def distance_to_default(self) -> float:
        if self.fusion == RRF:
            return abs(self.value - DEFAULT_RRF_K) / 100
        return abs(self.value - DEFAULT_DENSE_WEIGHT)


def grid(rrf_ks: Sequence[int] = RRF_KS, dense_weights: Sequence[float] = DENSE_WEIGHTS) -> list[Candidate]:
    return [Candidate(RRF, k) for k in rrf_ks] + [Candidate(WEIGHTED, w) for w in dense_weights]


@dataclass(frozen=True)
class Choice:
    """The fusion for one source group: ``fusion`` with both tuned values (each method's own best)."""

    fusion: str
    rrf_k: int
    dense_weight: float
    valid_score: float | None  # mean metric of this fusion on the group's valid queries; None: defaults, unmeasured
    n_queries: int


def fuse(
    fusion: str,
    dense: Sequence[tuple[str, float]],
    bm25: Sequence[tuple[str, float]],
    *,
    rrf_k: int = DEFAULT_RRF_K,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
    depth: int | None = None,
) -> list[tuple[str, float]]:
    """One query's fused ranking, best first (ties by passage id, as the engine orders them), ``depth`` long."""
    if fusion == RRF:
        scored = fusion_fns.rrf([[p for p, _ in dense], [p for p, _ in bm25]], k=rrf_k)
    elif fusion == WEIGHTED:
        scored = fusion_fns.weighted(dict(dense), dict(bm25), dense_weight)
    else:
        raise ValueError(f"unknown fusion {fusion!r}: use one of {list(FUSIONS)}")
    ranked = sorted(scored.items(), key=lambda item: (-item[1], item[0]))
    return ranked if depth is None else ranked[:depth]


def fused_rankings(
    dense: ScoredRankings,
    bm25: ScoredRankings,
    choice_of: Callable[[str], Choice],
    depth: int,
) -> ScoredRankings:
    """Every query of ``dense`` / ``bm25`` fused with ``choice_of(query_id)``."""
    out: ScoredRankings = {}
    for qid in dict.fromkeys([*dense, *bm25]):
        c = choice_of(qid)
        out[qid] = fuse(
            c.fusion, dense.get(qid, []), bm25.get(qid, []), rrf_k=c.rrf_k, dense_weight=c.dense_weight, depth=depth
        )
    return out


def metric_k(metric: str) -> int:
    """``ndcg@10`` → 10."""
    name, _, k = metric.partition("@")
    if not name or not k.isdigit():
        raise ValueError(f"not a metric@k name: {metric!r}")
    return int(k)


def grid_scores(
    dense: ScoredRankings,
    bm25: ScoredRankings,
    queries: EvalQueries,
    candidates: Sequence[Candidate],
    *,
    metric: str = METRIC,
) -> dict[Candidate, dict[str, float]]:
    """Per candidate, ``metric`` of every query of ``queries``."""
    k = metric_k(metric)
    out: dict[Candidate, dict[str, float]] = {}
    for cand in candidates:
        scores: dict[str, float] = {}
        for qid in queries.ids:
            ranked = fuse(
                cand.fusion,
                dense.get(qid, []),
                bm25.get(qid, []),
                rrf_k=int(cand.value) if cand.fusion == RRF else DEFAULT_RRF_K,
                dense_weight=float(cand.value) if cand.fusion == WEIGHTED else DEFAULT_DENSE_WEIGHT,
                depth=k,
            )
            scores[qid] = query_metrics([p for p, _ in ranked], queries.relevant[qid], (k,))[metric]
        out[cand] = scores
    return out


def select(
    scores: Mapping[Candidate, Mapping[str, float]], group_of: Mapping[str, str]
) -> dict[str, dict[str, tuple[Candidate, float | None, int]]]:
    """The pure choice: per fusion and group (``law``/``prec``/``all``), the candidate with the best mean score
    over the group's queries (``group_of``: query id → ``law`` | ``prec`` | other), its mean and query count; a
    group without queries gets the default candidate with mean None."""
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    for qid, group in group_of.items():
        if group in members and group != ALL:
            members[group].append(qid)
        members[ALL].append(qid)
    out: dict[str, dict[str, tuple[Candidate, float | None, int]]] = {}
    for fusion in FUSIONS:
        cands = [c for c in scores if c.fusion == fusion]
        default = Candidate(fusion, DEFAULT_RRF_K if fusion == RRF else DEFAULT_DENSE_WEIGHT)
        out[fusion] = {}
        for group, qids in members.items():
            if not qids or not cands:
                out[fusion][group] = (default, None, len(qids))
                continue
            means = {c: sum(scores[c][q] for q in qids) / len(qids) for c in cands}
            best = min(cands, key=lambda c: (-round(means[c], 12), c.distance_to_default(), c.value))
            out[fusion][group] = (best, means[best], len(qids))
    return out


@dataclass
class FusionTuning:
    """What :func:`tune_fusion` chose: per fusion method and group, and the better method per group."""

    by_method: dict[str, dict[str, Choice]]  # fusion → group → its tuned choice (``Choice.fusion`` is that fusion)
    best: dict[str, Choice]  # group → the better of the two methods on valid (ties: rrf)
    metric: str = METRIC
    chosen_on: str = TUNE_SPLIT

    def choice_for(self, query_type: str, fusion: str | None = None) -> Choice:
        """The choice for a query of ``query_type``: ``fusion``'s own tuned values, or the best method's."""
        group = source_group(query_type)
        return (self.by_method[fusion] if fusion else self.best)[group]

    def to_params(
        self,
        model_version: str,
        dense_system: str = "",
        linking: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
    ) -> FusionParams:
        """The stored form; ``linking``: search mode → group → the linking chosen on valid (see FusionParams)."""
        return FusionParams(
            model_version=model_version,
            by_source={g: asdict(c) for g, c in self.best.items()},
            chosen_on=self.chosen_on,
            metric=self.metric,
            dense_system=dense_system,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            linking={m: {g: dict(c) for g, c in by_group.items()} for m, by_group in (linking or {}).items()},
        )


def tune_fusion(
    dense_by_split: Mapping[str, ScoredRankings],
    bm25_by_split: Mapping[str, ScoredRankings],
    queries_by_split: Mapping[str, EvalQueries],
    *,
    metric: str = METRIC,
    tune_split: str = TUNE_SPLIT,
    candidates: Sequence[Candidate] | None = None,
) -> FusionTuning:
    """Choose the fusion on ``tune_split`` (``valid``) only: the other splits' rankings are never read. Without
    that split every group keeps the defaults (``chosen_on`` says so)."""
    queries = queries_by_split.get(tune_split)
    if queries is None or not len(queries):
        queries, chosen_on = EvalQueries(tune_split, [], [], [], {}, {}, {}), f"defaults (no {tune_split} queries)"
    else:
        chosen_on = tune_split
    scores = grid_scores(
        dense_by_split.get(tune_split, {}),
        bm25_by_split.get(tune_split, {}),
        queries,
        grid() if candidates is None else candidates,
        metric=metric,
    )
    picked = select(scores, {q: source_group(t) for q, t in queries.type_of().items()})
    by_method: dict[str, dict[str, Choice]] = {f: {} for f in FUSIONS}
    for group in GROUPS:
        (rrf_c, rrf_s, n), (w_c, w_s, _) = picked[RRF][group], picked[WEIGHTED][group]
        k, alpha = int(rrf_c.value), float(w_c.value)
        by_method[RRF][group] = Choice(RRF, k, alpha, rrf_s, n)
        by_method[WEIGHTED][group] = Choice(WEIGHTED, k, alpha, w_s, n)
    best = {
        g: by_method[WEIGHTED][g]
        if (by_method[WEIGHTED][g].valid_score or 0.0) > (by_method[RRF][g].valid_score or 0.0) + 1e-12
        else by_method[RRF][g]
        for g in GROUPS
    }
    return FusionTuning(by_method, best, metric=metric, chosen_on=chosen_on)
