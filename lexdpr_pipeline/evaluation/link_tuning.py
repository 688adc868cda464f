"""Query citation linking in the evaluation: every system's "+ linking" variant, its mode and weight chosen on valid.

The search engine fuses the statutes and decisions a query cites into its ranking with
:func:`lexdpr_pipeline.search.linking.apply_links` on the **document** ranking (passages collapsed to their document at
the best passage's score; a cited document no retriever returned enters with its first passage). The evaluation
scores **passages** (a query's relevant set is every passage of its cited documents), so :func:`link_ranking` maps
the engine's step onto a passage ranking:

1. collapse the ranking like the engine (each document at its best passage, with that passage's score);
2. ``apply_links`` on that document ranking — the engine's function, same arguments;
3. expand back to passages: a linked document (cited by article/case number, or a retrieved article of a law named
   without an article when ``law_names``) becomes a block at its fused place — its retrieved passages in their
   retrieved order, then, for a cited document, the rest of its eval-corpus passages in chunk order (a linked
   document contributes its passages); every other passage keeps its place relative to the others. A query
   without a resolved link, or mode ``off``, keeps its ranking unchanged.

The linker is built from the eval corpus (what the systems search). A linked document is only what the query may
retrieve: passages in ``EvalQueries.exclude`` (the query's own decision and its companions) are never added, and a
document all of whose passages are excluded is not linked at all.

:func:`tune_linking` scores the grid (``off``; ``boost`` and ``list`` with weight 0.5 / 1 / 2; each with and without
law names) on the ``valid`` queries only and keeps, per source group of the gold answers (``law`` / ``prec`` /
``all``, as :mod:`.fusion_tuning`), the best mean ``ndcg@10``. Ties go to the engine's default (``boost``, weight 1,
no law names), then ``off``, then the grid order — so law names are kept only when they help on valid. A group
without valid queries keeps the default (``valid_score`` None).

The ``all`` group is what an unfiltered search applies to every query (the engine picks it for mixed candidates),
so it answers to both kinds of answer at once: its choice is the best mean over all valid queries **among the
candidates that keep each source group (``law``, ``prec``) within** :data:`ALL_MAX_GROUP_DROP` (2%) **of that group
without linking** — the project's 2% rule. Lifting the statutes a 판시사항 cites above the decision it asks about
wins overall (statute-answer queries outnumber the others) but costs precedent answers more than that; ``off``
always qualifies. A bare reference still gets its document first (``search.linking.reference_only``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import polars as pl

from lexdpr_pipeline.evaluation.fusion_tuning import ALL, GROUPS, METRIC, TUNE_SPLIT, metric_k, source_group
from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.evaluation.retrievers import Rankings, ScoredRankings
from lexdpr_pipeline.metrics.retrieval import query_metrics
from lexdpr_pipeline.search.linking import (
    LAW_NAME,
    LinkedRef,
    QueryLinker,
    apply_links,
    exact_doc_ids,
    law_name_doc_ids,
    restrict,
)

LINK_WEIGHTS = (1.0, 0.5, 2.0)  # the default (1) first: ties go to it
ALL_MAX_GROUP_DROP = 0.02  # the all group's choice keeps law and prec answers within 2% of no linking
LINK_RRF_K = 60  # list mode's RRF k: the engine passes search.rrf_k, whose default this is
LINKED_SUFFIX = " + linking"
QueryLinks = dict[str, list[LinkedRef]]  # query id → its references, restricted to what the query may retrieve


def linked_name(system: str) -> str:
    """``bm25 + linking``."""
    return f"{system}{LINKED_SUFFIX}"


@dataclass(frozen=True)
class LinkCandidate:
    """One grid point of the linking settings (``search.citation_linking``, ``link_weight``, ``link_law_names``)."""

    mode: str  # off | boost | list
    weight: float = 1.0
    law_names: bool = False


DEFAULT_CANDIDATE = LinkCandidate("boost", 1.0, False)  # the engine's defaults
OFF = LinkCandidate("off", 0.0, False)


def link_grid(weights: Sequence[float] = LINK_WEIGHTS) -> list[LinkCandidate]:
    """In preference order (ties go to the earlier): boost 1, off, the other boosts, the lists, then the same with
    law names."""
    plain = [c for m in ("boost", "list") for w in weights if (c := LinkCandidate(m, w)) != DEFAULT_CANDIDATE]
    named = [LinkCandidate(c.mode, c.weight, True) for c in [DEFAULT_CANDIDATE, *plain]]
    return [DEFAULT_CANDIDATE, OFF, *plain, *named]


@dataclass(frozen=True)
class LinkChoice:
    """The linking chosen for one source group of one system."""

    citation_linking: str
    link_weight: float
    link_law_names: bool
    valid_score: float | None  # mean metric with this choice on the group's valid queries; None: default, unmeasured
    valid_score_off: float | None  # … and without linking
    n_queries: int
    n_linked: int  # valid queries of the group with at least one resolved link
    link_rrf_k: int = LINK_RRF_K

    @property
    def candidate(self) -> LinkCandidate:
        return LinkCandidate(self.citation_linking, self.link_weight, self.link_law_names)


@dataclass
class LinkTuning:
    """What :func:`tune_linking` chose for one system: per source group (``law`` / ``prec`` / ``all``)."""

    by_group: dict[str, LinkChoice]
    metric: str = METRIC
    chosen_on: str = TUNE_SPLIT

    def choice_for(self, query_type: str) -> LinkChoice:
        return self.by_group[source_group(query_type)]

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {g: asdict(c) for g, c in self.by_group.items()}


# links per query ------------------------------------------------------------------------------------------------------


def doc_passages(corpus: pl.DataFrame) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(passage → document, document → its passages in chunk order)`` of the eval corpus."""
    frame = corpus.select("passage_id", "doc_id", pl.col("chunk_index").fill_null(0)).sort("doc_id", "chunk_index")
    doc_of = dict(zip(frame["passage_id"].to_list(), frame["doc_id"].to_list(), strict=True))
    passages: dict[str, list[str]] = {}
    for pid, doc in zip(frame["passage_id"].to_list(), frame["doc_id"].to_list(), strict=True):
        passages.setdefault(doc, []).append(pid)
    return doc_of, passages


def query_links(linker: QueryLinker, queries: EvalQueries, passages_of: Mapping[str, list[str]]) -> QueryLinks:
    """Each query's references, their documents limited to the eval corpus minus the query's excluded passages."""
    out: QueryLinks = {}
    for qid, text in zip(queries.ids, queries.texts, strict=True):
        banned = queries.exclude.get(qid, set())
        out[qid] = restrict(linker.link(text), lambda d, b=banned: any(p not in b for p in passages_of.get(d, ())))
    return out


def has_link(refs: Sequence[LinkedRef]) -> bool:
    """At least one resolved article or case reference (what ``boost``/``list`` always fuse in)."""
    return bool(exact_doc_ids(refs))


def has_law_name(refs: Sequence[LinkedRef]) -> bool:
    return any(r.kind == LAW_NAME and r.doc_ids for r in refs)


# one ranking ------------------------------------------------------------------------------------------------------


def link_ranking(
    ranked: Sequence[tuple[str, float]],
    refs: Sequence[LinkedRef],
    cand: LinkCandidate,
    doc_of: Mapping[str, str],
    passages_of: Mapping[str, list[str]],
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    depth: int | None = None,
) -> list[str]:
    """One query's passage ranking with its links fused in (the module doc's three steps), at most ``depth`` long
    (``None``: uncut)."""
    ids = [p for p, _ in ranked]
    if depth is None:
        depth = len(ids) + sum(len(passages_of.get(d, ())) for r in refs for d in r.doc_ids)
    exact = exact_doc_ids(refs)
    named = law_name_doc_ids(refs) if cand.law_names else set()
    if cand.mode == "off" or not (exact or named):
        return ids[:depth]
    docs: list[str] = []
    scores: list[float] = []
    retrieved: dict[str, list[str]] = {}
    for pid, score in ranked:
        doc = doc_of.get(pid, pid)
        if doc not in retrieved:
            docs.append(doc)
            scores.append(score)
            retrieved[doc] = []
        retrieved[doc].append(pid)
    fused = apply_links(docs, scores, refs, cand.mode, cand.weight, rrf_k=LINK_RRF_K, law_names=cand.law_names)
    cited = set(exact)
    linked = cited | (named & set(retrieved))
    rest = [p for p in ids if doc_of.get(p, p) not in linked]  # every other passage, in its order
    out: list[str] = []
    done: set[str] = set()
    i = 0
    for doc, _ in fused:
        if len(out) >= depth:
            break
        if doc in linked:
            block = list(retrieved.get(doc, ()))
            if doc in cited:
                seen = set(block)
                block += [p for p in passages_of.get(doc, ()) if p not in seen and p not in exclude]
            out += [p for p in block if p not in done]
            done.update(block)
            continue
        first = retrieved[doc][0]
        if first in done:
            continue
        while i < len(rest):  # the unlinked passages up to this document's best one keep their order
            pid = rest[i]
            i += 1
            if pid not in done:
                out.append(pid)
                done.add(pid)
            if pid == first:
                break
    out += [p for p in rest[i:] if p not in done]
    return out[:depth]


def linked_rankings(
    scored: ScoredRankings,
    queries: EvalQueries,
    links: QueryLinks,
    choice_of: Mapping[str, LinkCandidate],
    doc_of: Mapping[str, str],
    passages_of: Mapping[str, list[str]],
    depth: int,
) -> Rankings:
    """Every query of ``queries`` linked with ``choice_of[query_id]``."""
    return {
        qid: link_ranking(
            scored.get(qid, []),
            links.get(qid, []),
            choice_of[qid],
            doc_of,
            passages_of,
            exclude=queries.exclude.get(qid, set()),
            depth=depth,
        )
        for qid in queries.ids
    }


# the choice on valid ------------------------------------------------------------------------------------------------


def tune_linking(
    scored_by_split: Mapping[str, ScoredRankings],
    queries_by_split: Mapping[str, EvalQueries],
    links_by_split: Mapping[str, QueryLinks],
    doc_of: Mapping[str, str],
    passages_of: Mapping[str, list[str]],
    *,
    metric: str = METRIC,
    tune_split: str = TUNE_SPLIT,
    candidates: Sequence[LinkCandidate] | None = None,
) -> LinkTuning:
    """Choose the linking on ``tune_split`` (``valid``) only: the other splits are never read. Without that split
    every group keeps the default (``chosen_on`` says so)."""
    cands = list(candidates) if candidates is not None else link_grid()
    queries = queries_by_split.get(tune_split)
    if queries is None or not len(queries):
        default = LinkChoice(DEFAULT_CANDIDATE.mode, DEFAULT_CANDIDATE.weight, False, None, None, 0, 0)
        return LinkTuning({g: default for g in GROUPS}, metric, f"defaults (no {tune_split} queries)")
    k = metric_k(metric)
    scored, links = scored_by_split.get(tune_split, {}), links_by_split.get(tune_split, {})
    off: dict[str, float] = {}
    per_cand: dict[LinkCandidate, dict[str, float]] = {c: {} for c in cands}
    for qid in queries.ids:
        ranked, refs, relevant = scored.get(qid, []), links.get(qid, []), queries.relevant[qid]
        off[qid] = query_metrics([p for p, _ in ranked[:k]], relevant, (k,))[metric]
        named = has_law_name(refs)
        for c in cands:
            if c.mode == "off" or not (has_link(refs) or (c.law_names and named)):
                per_cand[c][qid] = off[qid]  # nothing to fuse: the ranking is unchanged
                continue
            top = link_ranking(ranked, refs, c, doc_of, passages_of, exclude=queries.exclude.get(qid, set()), depth=k)
            per_cand[c][qid] = query_metrics(top, relevant, (k,))[metric]
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    for qid, qtype in queries.type_of().items():
        group = source_group(qtype)
        if group != ALL:
            members[group].append(qid)
        members[ALL].append(qid)
    by_group: dict[str, LinkChoice] = {}
    for group, qids in members.items():
        n_linked = sum(has_link(links.get(q, [])) for q in qids)
        if not qids:
            by_group[group] = LinkChoice(DEFAULT_CANDIDATE.mode, DEFAULT_CANDIDATE.weight, False, None, None, 0, 0)
            continue
        means = {c: sum(per_cand[c][q] for q in qids) / len(qids) for c in cands}
        order = {c: i for i, c in enumerate(cands)}
        allowed = cands
        if group == ALL:  # every source group within the cap of its own score without linking (module doc)
            parts = [members[g] for g in GROUPS if g != ALL and members[g]]
            allowed = [
                c
                for c in cands
                if all(
                    sum(per_cand[c][q] for q in part) >= (1 - ALL_MAX_GROUP_DROP) * sum(off[q] for q in part) - 1e-12
                    for part in parts
                )
            ] or [OFF if OFF in per_cand else cands[0]]
        best = min(allowed, key=lambda c: (-round(means[c], 12), order[c]))
        mean_off = sum(off[q] for q in qids) / len(qids)
        by_group[group] = LinkChoice(best.mode, best.weight, best.law_names, means[best], mean_off, len(qids), n_linked)
    return LinkTuning(by_group, metric, tune_split)


def link_shares(queries: EvalQueries, links: QueryLinks) -> pl.DataFrame:
    """Per query type (and ``all``): queries, the share with ≥1 resolved article/case link, and with a law named
    without an article (a ``law_names`` link)."""
    rows = []
    types = queries.type_of()
    for group in ["all", *sorted(set(queries.types))]:
        qids = [q for q in queries.ids if group == "all" or types[q] == group]
        n = len(qids)
        linked = sum(has_link(links.get(q, [])) for q in qids)
        named = sum(has_law_name(links.get(q, [])) for q in qids)
        rows.append(
            {
                "split": queries.split,
                "query_type": group,
                "n_queries": n,
                "linked_share": linked / n if n else 0.0,
                "law_name_share": named / n if n else 0.0,
            }
        )
    return pl.DataFrame(rows, schema=LINK_SHARE_SCHEMA)


LINK_SHARE_SCHEMA = pl.Schema(
    {
        "split": pl.String(),
        "query_type": pl.String(),
        "n_queries": pl.Int64(),
        "linked_share": pl.Float64(),
        "law_name_share": pl.Float64(),
    }
)
