"""The evaluation as the search engine serves it: one hit per document.

The engine collapses passages to their document (a statute article, a decision) at the best passage's place and
shows that one hit (``search.engine``). The headline evaluation scores **passages** — a query's relevant set is every
passage of its gold documents (a cited decision's 판시사항, 판결요지 and each 판례내용 chunk) — so it also rewards a
ranking that fills the top 10 with several passages of one decision, which no user ever sees, and it moves when
passages are reordered inside what the engine would show as the same hits. This view scores what is shown: each
ranking collapsed to its documents in order of first appearance, relevant = the documents of the relevant passages.
The issue's own first measurement counted one passage per decision, which is this view.

The passage rankings were already cut to what each query may retrieve (its own decision's excluded passages are
gone), so a ``prec`` query's own decision counts only through its 판결요지 — the answer — as in the passage view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from lexdpr_pipeline.evaluation.queries import EvalQueries


def document_ranking(ranked: Sequence[str], doc_of: Mapping[str, str]) -> list[str]:
    """Passages → their documents, best first, each document once (a passage not in ``doc_of`` is its own)."""
    return list(dict.fromkeys(doc_of.get(p, p) for p in ranked))


def document_rankings(
    systems: Mapping[str, Mapping[str, Sequence[str]]], doc_of: Mapping[str, str]
) -> dict[str, dict[str, list[str]]]:
    """Every system's rankings (system → query → passages) collapsed to documents."""
    return {
        name: {qid: document_ranking(ranked, doc_of) for qid, ranked in rankings.items()}
        for name, rankings in systems.items()
    }


def document_queries(queries: EvalQueries, doc_of: Mapping[str, str]) -> EvalQueries:
    """``queries`` with each relevant set turned into the documents of its passages. Nothing is excluded any more:
    the passage rankings being collapsed already left the excluded passages out."""
    return replace(
        queries,
        relevant={q: {doc_of.get(p, p) for p in rel} for q, rel in queries.relevant.items()},
        exclude={q: set() for q in queries.ids},
    )
