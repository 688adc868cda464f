"""The leak check behind the honest evaluation: nothing derived from a held-out decision reaches training.

A *held-out decision* is the decision a ``valid`` or ``test`` query was taken from (the ``group_id`` of a
precedent-derived query: ``prec``, ``cross_law``, ``cross_prec``). Its passages are those the evaluation excludes
from that query's ranking (:meth:`~lexdpr_pipeline.pairs.negatives.ExclusionIndex.exclusions`: the decision, its
companions sharing passages, its own query passage). A ``train`` row leaks when

- its query comes from a held-out decision (its group, or its query passage, is one of those), or
- one of its positives is a passage of a held-out decision (e.g. a newer training decision citing a test decision
  teaches the model that decision's 판결요지 — the very answer of the test query).

A citation expansion (``citation_expansion``, BM25's second field) leaks when one of its ``decision_ids`` is a
held-out decision (or a companion of one): its 판시사항 would be the test query's own text inside the index.

The evaluation must also exclude each query's own decision (``eval.exclude_query_document``), or a precedent query's
own 판시사항 — the query text itself — would rank first. The ``temporal`` split cannot leak by construction except
through companions or data errors; the ``digit`` split routinely does (test decisions share training's period and
are cited by training decisions), which is why the check blocks only in temporal mode (see ``assets.evaluation``).
"""

from __future__ import annotations

import polars as pl

from lexdpr_pipeline.evaluation.queries import SOURCE_DOCUMENT_TYPES, build_exclusion_index
from lexdpr_pipeline.pairs.checks import CheckResult
from lexdpr_pipeline.pairs.negatives import ExclusionIndex

CHECK_NAME = "no_heldout_decision_in_training"
HELDOUT_SPLITS = ("valid", "test")


def heldout_passages(
    splits: pl.DataFrame, excl: ExclusionIndex, heldout: tuple[str, ...] = HELDOUT_SPLITS
) -> tuple[dict[str, str], dict[str, str]]:
    """``(passage → held-out decision, duplicate group → held-out decision)`` of every held-out decision."""
    rows = splits.filter(pl.col("split").is_in(list(heldout)) & pl.col("query_type").is_in(SOURCE_DOCUMENT_TYPES))
    by_passage: dict[str, str] = {}
    by_group: dict[str, str] = {}
    for group, qpid in rows.select("group_id", "query_passage_id").unique().iter_rows():
        if not group:
            continue
        by_group.setdefault(excl.group_of(group), group)
        for pid in excl.exclusions([qpid] if qpid else [], [group]):
            by_passage.setdefault(pid, group)
    return by_passage, by_group


def heldout_leaks(
    splits: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    *,
    exclude_query_document: bool = True,
    heldout: tuple[str, ...] = HELDOUT_SPLITS,
    expansion: pl.DataFrame | None = None,
) -> tuple[CheckResult, dict[str, int]]:
    """The check (see the module doc) and counts: ``query_leaks``, ``positive_leaks`` (train rows),
    ``heldout_decisions``, and ``negatives_from_heldout`` (train rows whose mined negatives include a held-out
    decision's passage — reported, not a failure: pushing a passage away teaches nothing about its answer).
    With ``expansion`` (the ``citation_expansion`` table in use) also ``expansion_leaks``: its articles built from
    a held-out decision's 판시사항."""
    excl = build_exclusion_index(merged_corpus)
    by_passage, by_group = heldout_passages(splits, excl, heldout)
    bad: list[str] = []
    counts = {"heldout_decisions": len(set(by_group.values())), "query_leaks": 0, "positive_leaks": 0}
    counts["negatives_from_heldout"] = 0
    if not exclude_query_document:
        bad.append("eval.exclude_query_document is off: a decision's own passages would answer its queries")
    train = splits.filter(pl.col("split") == "train")
    has_negatives = "negative_ids" in train.columns
    cols = ["query_id", "group_id", "query_passage_id", "positive_ids", *(["negative_ids"] if has_negatives else [])]
    for row in train.select(cols).iter_rows(named=True):
        qid, group, qpid = row["query_id"], row["group_id"], row["query_passage_id"]
        source = by_group.get(excl.group_of(group)) if group else None
        source = source or (by_passage.get(qpid) if qpid else None)
        if source:
            counts["query_leaks"] += 1
            bad.append(f"{qid} (train): query taken from held-out decision {source}")
        leaked = [p for p in row["positive_ids"] or [] if p in by_passage]
        if leaked:
            counts["positive_leaks"] += 1
            bad.append(f"{qid} (train): positive {leaked[0]} is a passage of held-out decision {by_passage[leaked[0]]}")
        if has_negatives and any(p in by_passage for p in row["negative_ids"] or []):
            counts["negatives_from_heldout"] += 1
    what = "no train query or positive"
    if expansion is not None:
        what = "no train query, positive or citation-expansion text"
        counts["expansion_leaks"] = 0
        for doc_id, decisions in expansion.select("doc_id", "decision_ids").iter_rows():
            leaked = [d for d in decisions or [] if by_group.get(excl.group_of(d))]
            if leaked:
                counts["expansion_leaks"] += 1
                source = by_group[excl.group_of(leaked[0])]
                bad.append(f"{doc_id} (citation_expansion): built from {leaked[0]}, held-out decision {source}")
    result = CheckResult(
        CHECK_NAME,
        not bad,
        f"{what} comes from a {'/'.join(heldout)} decision, and evaluation excludes each query's own decision",
        len(bad),
        bad[:10],
    )
    return result, counts
