"""Citation-context expansion of statute articles (and cited decisions): how courts describe the issue they govern.

An article's own words rarely match a question; the 판시사항 of the decisions that cite it do. For each statute
article this collects the 판시사항 of its citing decisions (``precedent_citations`` rows resolved to ``law:`` ids) —
only decisions the split puts in **train** (``temporal``: decided before ``valid_from``; ``digit``: the decision's
group digit in the train digits), decided by :func:`~lexdpr_pipeline.pairs.splits.assign_splits` on the same
``group_id``/``group_date`` the query builder gives a decision, so no valid/test decision can ever contribute.

Per article: the most recent decisions first, identical texts once, at most ``max_decisions`` texts, at most
``max_chars`` characters. A numbered 판시사항 (``[1] … [2] …``) whose citation carries numbers contributes only those
parts (as ``cross_law`` queries do). The result is a table of its own (:data:`EXPANSION_SCHEMA`), joined to passages
by ``doc_id`` for BM25's second field; it never changes the ``text`` users see. ``decision_ids`` and ``cutoff`` are
its provenance.

Precedents (``ExpansionConfig.sources`` with ``prec``): a decision cited by later train-split decisions (their
참조판례, resolved to ``prec:`` ids) gets those decisions' 판시사항 the same way — how later courts restated the rule it
is cited for, which is exactly what a new decision citing it says. The cited decision is always older than the
citing one, so it is a train-split decision too; a valid/test decision is never expanded and never contributes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.pairs.queries import numbered_parts
from lexdpr_pipeline.pairs.splits import SplitConfig, assign_splits
from lexdpr_pipeline.storage import atomic_write_bytes
from lexdpr_pipeline.text.passages import duplicate_groups

EXPANSION_SCHEMA = pl.Schema(
    {
        "doc_id": pl.String(),  # the statute article (law:…) or, with sources incl. prec, the cited decision (prec:…)
        "expansion_text": pl.String(),  # the citing decisions' 판시사항, most recent first, "\n"-joined
        "n_decisions": pl.Int32(),  # decisions whose text is in expansion_text (len(decision_ids))
        "n_citing": pl.Int32(),  # train-split decisions citing the article, before dedup and the cap
        "decision_ids": pl.List(pl.String()),  # provenance: the prec: ids used, in text order
        "cutoff": pl.String(),  # provenance: the split rule that admitted them (cutoff_label)
    }
)
SEPARATOR = "\n"
EXPANDABLE = ("law", "prec")
_KIND = {"law": "statute", "prec": "case"}  # precedent_citations.kind of the citations that expand each source


@dataclass(frozen=True)
class ExpansionConfig:
    max_decisions: int = 8
    max_chars: int = 2000
    include_former: bool = True  # 구법 citations count (they resolve to the current article, as for pairs)
    sources: tuple[str, ...] = ("law",)  # expand statute articles (law) and/or cited decisions (prec)

    def __post_init__(self) -> None:
        if self.max_decisions < 1 or self.max_chars < 1:
            raise ValueError(f"need max_decisions >= 1 and max_chars >= 1, got {self}")
        if not self.sources or set(self.sources) - set(EXPANDABLE):
            raise ValueError(f"expansion sources must be a non-empty subset of {EXPANDABLE}, got {self.sources}")


@dataclass
class ExpansionStats:
    cutoff: str
    statute_articles: int = 0  # law: documents in the corpus
    articles_expanded: int = 0
    citing_decisions: int = 0  # decisions with ≥ 1 resolved statute citation
    decisions_used: int = 0  # of those, admitted by the split (train) with a 판시사항
    excluded_by_split: int = 0  # citing decisions in valid/test: never used
    skipped: Counter[str] = field(default_factory=Counter)
    duplicate_texts: int = 0
    truncated_articles: int = 0
    precedents: int = 0  # prec: documents in the corpus (counted when sources include prec)
    precedents_expanded: int = 0

    @property
    def share_expanded(self) -> float:
        return self.articles_expanded / self.statute_articles if self.statute_articles else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "statute_articles": self.statute_articles,
            "articles_expanded": self.articles_expanded,
            "share_expanded": round(self.share_expanded, 4),
            "citing_decisions": self.citing_decisions,
            "decisions_used": self.decisions_used,
            "excluded_by_split": self.excluded_by_split,
            "duplicate_texts": self.duplicate_texts,
            "truncated_articles": self.truncated_articles,
            "precedents": self.precedents,
            "precedents_expanded": self.precedents_expanded,
            "skipped": dict(self.skipped),
        }


def cutoff_label(split: SplitConfig) -> str:
    """The admission rule in words, stored with every row (``temporal: decision_date < 2019-01-01``)."""
    if split.mode == "temporal":
        return f"temporal: decision_date < {split.valid_from} (train split; undated decisions count as train)"
    return f"digit: group digit in {list(split.train_digits)} (train split)"


def train_decisions(raw_precedents: pl.DataFrame, merged_corpus: pl.DataFrame, split: SplitConfig) -> pl.DataFrame:
    """``prec_id, decision_date, holdings, split`` of every decision, the split assigned by the pairs' own rule on
    the pairs' own group (the canonical decision of its companion group) and date."""
    groups = duplicate_groups(merged_corpus)
    frame = raw_precedents.select("prec_id", "decision_date", "holdings")
    group_ids = [groups.get(pid, pid) for pid in frame["prec_id"].to_list()]
    frame = frame.with_columns(
        pl.Series("group_id", group_ids, dtype=pl.String),
        pl.col("decision_date").alias("group_date"),
    )
    return assign_splits(frame, split).drop("group_id", "group_date")


def _text_for(holdings: str, groups: list[int]) -> str:
    """The 판시사항 (whitespace collapsed); only the cited numbered parts when the citation names numbers."""
    if groups:
        parts = numbered_parts(holdings)
        if parts and set(groups) <= set(parts):
            holdings = " ".join(parts[g] for g in sorted(set(groups)))
    return " ".join(holdings.split())


def citation_expansion(
    citations: pl.DataFrame,
    raw_precedents: pl.DataFrame,
    merged_corpus: pl.DataFrame,
    split: SplitConfig,
    config: ExpansionConfig | None = None,
) -> tuple[pl.DataFrame, ExpansionStats]:
    """One row per statute article (and, with ``config.sources`` incl. ``prec``, per decision) of ``merged_corpus``
    cited by ≥ 1 train-split decision (see the module doc)."""
    config = config or ExpansionConfig()
    cutoff = cutoff_label(split)
    stats = ExpansionStats(cutoff)
    articles = set(merged_corpus.filter(pl.col("source") == "law")["doc_id"].to_list())
    stats.statute_articles = len(articles)
    targets: set[str] = set()
    wanted = []
    for source in config.sources:
        docs = set(merged_corpus.filter(pl.col("source") == source)["doc_id"].to_list())
        targets |= docs
        wanted.append((pl.col("kind") == _KIND[source]) & pl.col("target_id").str.starts_with(f"{source}:"))
    if "prec" in config.sources:
        stats.precedents = len(targets - articles)

    cited = citations.filter((pl.col("status") == "resolved") & pl.any_horizontal(wanted))
    if not config.include_former:
        cited = cited.filter(~pl.col("former"))
    decisions = train_decisions(raw_precedents, merged_corpus, split)
    citing = set(cited["prec_id"].to_list())
    stats.citing_decisions = len(citing & set(decisions["prec_id"].to_list()))
    stats.skipped["citing decision not in raw_precedents"] = len(citing - set(decisions["prec_id"].to_list()))
    allowed = decisions.filter(pl.col("prec_id").is_in(list(citing)))
    stats.excluded_by_split = allowed.filter(pl.col("split") != "train").height
    allowed = allowed.filter(pl.col("split") == "train")
    no_text = allowed.filter(pl.col("holdings").fill_null("").str.strip_chars() == "")
    stats.skipped["citing decision without 판시사항"] = no_text.height
    allowed = allowed.join(no_text.select("prec_id"), on="prec_id", how="anti")
    stats.decisions_used = allowed.height

    rows = (
        cited.join(allowed.select("prec_id", "decision_date", "holdings"), on="prec_id", how="inner")
        .group_by("target_id", "prec_id", "decision_date", "holdings")
        .agg(
            # An unnumbered citation of the article applies to the whole 판시사항: then no part is singled out.
            pl.when((pl.col("groups").list.len() == 0).any())
            .then(pl.lit([], dtype=pl.List(pl.Int32)))
            .otherwise(pl.col("groups").flatten().drop_nulls().unique().sort().implode())
            .first()
            .alias("groups")
        )
    )
    not_in_corpus = rows.filter(~pl.col("target_id").is_in(list(targets)))["target_id"].n_unique()
    stats.skipped["cited document not in merged_corpus"] = not_in_corpus
    rows = rows.filter(pl.col("target_id").is_in(list(targets))).sort(
        ["target_id", "decision_date", "prec_id"], descending=[False, True, False], nulls_last=True
    )

    out: list[dict[str, Any]] = []
    for (doc_id,), part in rows.group_by(["target_id"], maintain_order=True):
        seen: set[str] = set()
        texts: list[str] = []
        used: list[str] = []
        length = 0
        for prec_id, holdings, groups in part.select("prec_id", "holdings", "groups").iter_rows():
            if len(used) == config.max_decisions or length >= config.max_chars:
                break
            text = _text_for(holdings, groups or [])
            if text in seen:
                stats.duplicate_texts += 1
                continue
            seen.add(text)
            sep = len(SEPARATOR) if texts else 0
            room = config.max_chars - length - sep
            if room <= 0:
                break
            if len(text) > room:
                text = text[:room]
                stats.truncated_articles += 1
            texts.append(text)
            used.append(prec_id)
            length += sep + len(text)
        if used:
            out.append(
                {
                    "doc_id": doc_id,
                    "expansion_text": SEPARATOR.join(texts),
                    "n_decisions": len(used),
                    "n_citing": part["prec_id"].n_unique(),
                    "decision_ids": used,
                    "cutoff": cutoff,
                }
            )
    stats.articles_expanded = sum(1 for row in out if row["doc_id"].startswith("law:"))
    stats.precedents_expanded = len(out) - stats.articles_expanded
    stats.skipped = Counter({k: v for k, v in stats.skipped.items() if v})
    frame = pl.DataFrame(out, schema=EXPANSION_SCHEMA, orient="row") if out else pl.DataFrame(schema=EXPANSION_SCHEMA)
    return frame.sort("doc_id"), stats


def passage_expansions(corpus: pl.DataFrame, expansion: pl.DataFrame) -> list[str]:
    """The expansion text of each passage of ``corpus`` in row order (every chunk of an article gets the article's;
    ``""`` for passages without one) — BM25's second field."""
    joined = corpus.select("doc_id").join(
        expansion.select("doc_id", "expansion_text"), on="doc_id", how="left", maintain_order="left"
    )
    return joined["expansion_text"].fill_null("").to_list()


def decisions_per_article(expansion: pl.DataFrame, statute_articles: int) -> dict[str, int]:
    """Histogram buckets of train-split citing decisions per statute article (articles without any: ``0``)."""
    bounds = [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64)]
    counts = expansion.filter(pl.col("doc_id").str.starts_with("law:"))["n_citing"].to_list()
    out = {"0": max(statute_articles - len(counts), 0)}
    for lo, hi in bounds:
        out[str(lo) if lo == hi else f"{lo}-{hi}"] = sum(1 for c in counts if lo <= c <= hi)
    out[">64"] = sum(1 for c in counts if c > 64)
    return out


def plot_decisions_per_article(histogram: dict[str, int], path: Path, cap: int) -> Path:
    """Bar chart of :func:`decisions_per_article` (PNG, written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(list(histogram), list(histogram.values()), color="#4c72b0")
    ax.set_xlabel(f"train-split decisions citing the article (at most {cap} used)")
    ax.set_ylabel("statute articles")
    ax.set_yscale("symlog")
    ax.set_title("citation_expansion: citing decisions per statute article")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
