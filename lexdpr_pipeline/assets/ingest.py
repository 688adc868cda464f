"""Group ``ingest``: statutes, admin rules and precedents from the law.go.kr API or the legalize-kr mirrors.

Each asset is a thin call into :mod:`lexdpr_pipeline.sources`; the mirrors are observable source assets whose
data version is a content fingerprint, so ``lex-dpr refresh`` re-reads a mirror only when it changed.
"""

import datetime as dt
import time
from enum import Enum
from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.assets.common import count_table, table_output, write_skips
from lexdpr_pipeline.logging_setup import scrub_secrets
from lexdpr_pipeline.resources import LawGoApi, LexDprProject
from lexdpr_pipeline.sources.fingerprint import tree_fingerprint
from lexdpr_pipeline.sources.lawgo.crawler import CrawlResult, crawl
from lexdpr_pipeline.sources.mirror import find_mirror_roots, read_precedents, read_statutes
from lexdpr_pipeline.sources.records import (
    AdminRuleArticle,
    Precedent,
    ReadResult,
    Skipped,
    StatuteArticle,
    to_frame,
)

GROUP = "ingest"
SOURCES_GROUP = "sources"
# Bump when the parsing code changes what the asset would produce.
STATUTES_CODE_VERSION = "statutes-1"
ADMIN_RULES_CODE_VERSION = "admin-rules-1"
PRECEDENTS_CODE_VERSION = "precedents-1"
MISSING_IDS_SHOWN = 50  # ids of missing documents listed in the metadata (the count is always complete)


class IngestSource(Enum):
    mirror = "mirror"
    api = "api"


class IngestConfig(dg.Config):
    """Run config shared by the ingest assets. Unset fields fall back to the project settings."""

    source: IngestSource | None = None  # None: the project setting (ingest.source)
    max_items: int | None = None
    since: str | None = None  # YYYY-MM-DD, API only (공포일자 / 선고일자 / 발령일자 lower bound)
    until: str | None = None  # YYYY-MM-DD, API only
    incremental: bool = True  # API only: ask only for what changed since the last successful crawl


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _source(config: IngestConfig, project: LexDprProject) -> str:
    return config.source.value if config.source else project.settings.ingest.source


def _max_items(config: IngestConfig, project: LexDprProject) -> int | None:
    return config.max_items if config.max_items is not None else project.settings.ingest.max_items


def _mirror_fingerprint(root: Path | None) -> dg.ObserveResult:
    digest, files = tree_fingerprint(root) if root is not None else ("absent", 0)
    return dg.ObserveResult(
        data_version=dg.DataVersion(digest),
        metadata={"path": str(root) if root else "(not found)", "files": dg.MetadataValue.int(files)},
    )


@dg.observable_source_asset(group_name=SOURCES_GROUP, description="legalize-kr/legalize-kr statute mirror (kr/…)")
def legalize_kr_mirror(project: LexDprProject) -> dg.ObserveResult:
    return _mirror_fingerprint(find_mirror_roots(project.mirror)[0])


@dg.observable_source_asset(group_name=SOURCES_GROUP, description="legalize-kr/precedent-kr precedent mirror")
def precedent_kr_mirror(project: LexDprProject) -> dg.ObserveResult:
    return _mirror_fingerprint(find_mirror_roots(project.mirror)[1])


def _crawl(
    context: dg.AssetExecutionContext,
    target: str,
    config: IngestConfig,
    project: LexDprProject,
    lawgo: LawGoApi,
) -> tuple[CrawlResult, dict[str, dg.MetadataValue]]:
    result = crawl(
        lawgo.client(),
        target,  # type: ignore[arg-type]
        project.raw_lawgo,
        since=_date(config.since),
        until=_date(config.until),
        max_items=_max_items(config, project),
        fmt=project.settings.ingest.fmt,  # type: ignore[arg-type]
        incremental=config.incremental,
        progress=True,
        detail_parse_retries=project.settings.lawgo.detail_parse_retries,
        incremental_overlap_days=project.settings.lawgo.incremental_overlap_days,
    )
    context.log.info(
        f"{target}: listed {result.listed}, fetched {result.fetched}, reused {result.reused}, "
        f"re-fetched {result.refetched}, quarantined {len(result.quarantined)}, not found {result.not_found}"
    )
    meta = {
        "api_listed": dg.MetadataValue.int(result.listed),
        "api_fetched": dg.MetadataValue.int(result.fetched),
        "api_reused": dg.MetadataValue.int(result.reused),
        "api_refetched": dg.MetadataValue.int(result.refetched),
        "api_since": dg.MetadataValue.text(result.since.isoformat() if result.since else "(all dates)"),
        "quarantined": dg.MetadataValue.int(len(result.quarantined)),
        "not_found": dg.MetadataValue.int(result.not_found),
        "wanted": dg.MetadataValue.int(result.wanted),
        "missing": dg.MetadataValue.int(len(result.missing)),
        "missing_share": dg.MetadataValue.float(round(result.missing_share, 6)),
        "missing_ids": dg.MetadataValue.json(result.missing[:MISSING_IDS_SHOWN]),
    }
    if result.missing:
        context.log.warning(
            f"{target}: {len(result.missing)} of {result.wanted} documents still missing after "
            f"{project.settings.lawgo.detail_parse_retries} re-fetches each ({result.missing_share:.1%}; quarantined "
            f"under {project.raw_lawgo / target / 'quarantine'}, retried on the next run): "
            + ", ".join(result.missing[:MISSING_IDS_SHOWN])
        )
    return result, meta


def _ingest(
    context: dg.AssetExecutionContext,
    *,
    target: str,
    cls: type,
    config: IngestConfig,
    project: LexDprProject,
    lawgo: LawGoApi,
    read_mirror,
    mirror_root: Path | None,
    count_by: str,
    preview: list[str],
) -> dg.Output[pl.DataFrame]:
    started = time.perf_counter()
    source = _source(config, project)
    meta: dict[str, dg.MetadataValue] = {"source": dg.MetadataValue.text(source)}
    skipped: list[Skipped]
    if source == "api":
        crawled, crawl_meta = _crawl(context, target, config, project, lawgo)
        # Scrubbed again here: these reasons reach a Parquet report and Dagster's run history.
        skipped = [Skipped(scrub_secrets(s.ref), scrub_secrets(s.reason)) for s in crawled.quarantined]
        skipped += [Skipped(scrub_secrets(s.ref), scrub_secrets(s.reason)) for s in crawled.skipped]
        records = crawled.records
        meta.update(crawl_meta)
    elif read_mirror is None:
        context.log.warning(f"no mirror reader for {target}: the mirrors hold no {target} records; use source=api")
        records, skipped = [], []
        meta["note"] = dg.MetadataValue.text(f"mirror source has no {target} data; use source=api")
    elif mirror_root is None:
        raise dg.Failure(
            f"no {target} mirror under {project.mirror}: set LEXDPR_MIRROR_DIR (or paths.mirror_dir) to a folder "
            "holding legalize-kr/ and precedent-kr/, or use source=api"
        )
    else:
        include = project.settings.ingest.mirror_include  # a demo slice chosen by name (configs/demo.yaml)
        read: ReadResult = read_mirror(
            mirror_root, max_files=_max_items(config, project), include=include, progress=True
        )
        records, skipped = read.records, read.skipped
        meta["mirror_root"] = dg.MetadataValue.path(str(mirror_root))
    frame = to_frame(records, cls)
    asset_name = context.asset_key.path[-1]
    meta.update(write_skips(skipped, project.reports / GROUP / f"{asset_name}_skipped.parquet"))
    meta[f"rows_by_{count_by}"] = dg.MetadataValue.md(count_table(frame, count_by))
    if "is_deleted" in frame.columns:
        meta["deleted_articles"] = dg.MetadataValue.int(int(frame["is_deleted"].sum()))
    if skipped:
        context.log.warning(f"{asset_name}: {len(skipped)} inputs skipped (see {meta['skipped_report'].value})")
    return table_output(frame, started=started, preview_columns=preview, metadata=meta)


@dg.asset(
    group_name=GROUP,
    code_version=STATUTES_CODE_VERSION,
    deps=[legalize_kr_mirror],
    kinds={"polars", "parquet"},
    description="Statute articles (법령 조문), one row per 조, ids law:{법령ID}:{N}[-{M}].",
)
def raw_statutes(
    context: dg.AssetExecutionContext, config: IngestConfig, project: LexDprProject, lawgo: LawGoApi
) -> dg.Output[pl.DataFrame]:
    return _ingest(
        context,
        target="law",
        cls=StatuteArticle,
        config=config,
        project=project,
        lawgo=lawgo,
        read_mirror=read_statutes,
        mirror_root=find_mirror_roots(project.mirror)[0],
        count_by="law_kind",
        preview=["article_id", "law_name", "article_key", "article_title", "text"],
    )


@dg.asset(
    group_name=GROUP,
    code_version=ADMIN_RULES_CODE_VERSION,
    kinds={"polars", "parquet"},
    description="Administrative-rule articles (행정규칙 조문), ids admrul:{행정규칙ID}:{N}. API only: the public "
    "mirrors in ../shared hold no admin rules.",
)
def raw_admin_rules(
    context: dg.AssetExecutionContext, config: IngestConfig, project: LexDprProject, lawgo: LawGoApi
) -> dg.Output[pl.DataFrame]:
    return _ingest(
        context,
        target="admrul",
        cls=AdminRuleArticle,
        config=config,
        project=project,
        lawgo=lawgo,
        read_mirror=None,
        mirror_root=None,
        count_by="rule_kind",
        preview=["article_id", "rule_name", "article_key", "article_title", "text"],
    )


@dg.asset(
    group_name=GROUP,
    code_version=PRECEDENTS_CODE_VERSION,
    deps=[precedent_kr_mirror],
    kinds={"polars", "parquet"},
    description="Court decisions (판례): 판시사항, 판결요지, 참조조문, 참조판례, 판례내용; ids prec:{판례일련번호}.",
)
def raw_precedents(
    context: dg.AssetExecutionContext, config: IngestConfig, project: LexDprProject, lawgo: LawGoApi
) -> dg.Output[pl.DataFrame]:
    return _ingest(
        context,
        target="prec",
        cls=Precedent,
        config=config,
        project=project,
        lawgo=lawgo,
        read_mirror=read_precedents,
        mirror_root=find_mirror_roots(project.mirror)[1],
        count_by="court_level",
        preview=["prec_id", "case_no", "court", "decision_date", "case_name"],
    )


def _completeness_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]

    @dg.asset_check(
        asset=asset,
        name=f"{name}_completeness",
        blocking=False,
        description="source=api: the share of documents the crawl wanted but still lacks after its re-fetches "
        "(quarantined bodies) is at most ingest.max_missing_share. source=mirror: passes (nothing is fetched).",
    )
    def check(context: dg.AssetCheckExecutionContext, project: LexDprProject) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(asset.key)
        materialization = event.asset_materialization if event is not None else None
        meta = {k: getattr(v, "value", v) for k, v in (materialization.metadata if materialization else {}).items()}
        limit = project.settings.ingest.max_missing_share
        if meta.get("source") != "api":
            return dg.AssetCheckResult(
                passed=True,
                description=f"source={meta.get('source', 'unknown')}: no API crawl, nothing can be missing",
                metadata={"note": "completeness is checked for source=api only"},
            )
        missing, wanted = int(meta.get("missing", 0)), int(meta.get("wanted", 0))
        share = missing / wanted if wanted else 0.0
        return dg.AssetCheckResult(
            passed=share <= limit,
            severity=dg.AssetCheckSeverity.ERROR,
            description=scrub_secrets(
                f"{missing} of {wanted} wanted documents missing ({share:.2%}; limit {limit:.2%})"
                + (f": {', '.join(map(str, meta.get('missing_ids') or []))}" if missing else "")
            ),
            metadata={
                "missing": dg.MetadataValue.int(missing),
                "wanted": dg.MetadataValue.int(wanted),
                "missing_share": dg.MetadataValue.float(round(share, 6)),
                "max_missing_share": dg.MetadataValue.float(limit),
            },
        )

    return check


INGEST_ASSETS = [raw_statutes, raw_admin_rules, raw_precedents]
INGEST_CHECKS = [_completeness_check(asset) for asset in INGEST_ASSETS]
SOURCE_ASSETS = [legalize_kr_mirror, precedent_kr_mirror]
