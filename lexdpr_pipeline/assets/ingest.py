"""Group ``ingest``: statutes, admin rules and precedents from the law.go.kr API or the legalize-kr mirrors.

Each ``raw_*`` asset is made by :func:`ingest_asset` from a row of :data:`INGEST_SPECS` and is a thin call into
:func:`lexdpr_pipeline.sources.ingest.ingest_records`; the mirrors are observable source assets whose
data version is a content fingerprint, so ``lex-dpr refresh`` re-reads a mirror only when it changed.
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import Kind
from lexdpr_pipeline.assets.common import count_table, table_output, write_skips
from lexdpr_pipeline.resources import ArtifactStoreResource, LawGoApi, LexDprProject
from lexdpr_pipeline.settings import IngestSettings, LawGoSettings, Settings, with_overrides
from lexdpr_pipeline.sources.fingerprint import tree_fingerprint
from lexdpr_pipeline.sources.ingest import (
    MISSING_IDS_SHOWN,
    Completeness,
    IngestResult,
    SourceUnavailableError,
    completeness,
    ingest_records,
)
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline.sources.lawgo.crawler import CrawlResult, Target
from lexdpr_pipeline.sources.mirror import find_mirror_roots

GROUP = "ingest"
SOURCES_GROUP = "sources"
# Bump when the parsing code changes what the asset would produce.
STATUTES_CODE_VERSION = "statutes-1"
ADMIN_RULES_CODE_VERSION = "admin-rules-1"
PRECEDENTS_CODE_VERSION = "precedents-1"
#: The settings sections an ingest run config may override (``IngestConfig.overrides``).
OVERRIDE_SECTIONS = ("ingest", "lawgo")
#: Metadata keys: where the records came from ("mirror" | "api"), and the completeness check's inputs.
SOURCE_KEY = "source"
MISSING_KEY = "missing"
WANTED_KEY = "wanted"
MISSING_IDS_KEY = "missing_ids"
MAX_MISSING_SHARE_KEY = "max_missing_share"


class IngestConfig(dg.Config):
    """Run config shared by the ingest assets: ``ingest.*`` / ``lawgo.*`` settings overrides (the same
    ``section.field=value`` strings as ``--set``; the settings stay the one declaration of those options), plus what
    only makes sense per run: the date window and incremental or full."""

    overrides: list[str] = []  # noqa: RUF012 (pydantic copies defaults) — e.g. ["ingest.source=api", "ingest.max_items=50"]
    since: str | None = None  # YYYY-MM-DD, API only (공포일자 / 선고일자 / 발령일자 lower bound)
    until: str | None = None  # YYYY-MM-DD, API only
    incremental: bool = True  # API only: ask only for what changed since the last successful crawl


def ingest_settings(settings: Settings, overrides: list[str]) -> Settings:
    """``settings`` with an ingest run's overrides applied; a key outside ``ingest.*`` / ``lawgo.*`` (or a bad value)
    is a ``ValueError`` (the CLI checks its flags with this before any run)."""
    return with_overrides(settings, overrides, sections=OVERRIDE_SECTIONS)


def _effective(config: IngestConfig, project: LexDprProject, lawgo: LawGoApi) -> tuple[IngestSettings, LawGoSettings]:
    """The run's ``ingest`` and ``lawgo`` sections: the project's (the ``lawgo`` resource's client options) plus the
    run config's overrides."""
    base = project.settings.model_copy(update={"lawgo": lawgo.settings})
    try:
        settings = ingest_settings(base, config.overrides)
    except ValueError as exc:
        raise dg.Failure(f"bad ingest run config: {' '.join(str(exc).split())}") from None
    return settings.ingest, settings.lawgo


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


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


def _client_factory(lawgo: LawGoApi) -> Callable[[LawGoSettings], LawGoClient]:
    """The resource's client unless the run overrides lawgo.* (then one built from the overridden section)."""
    return lambda cfg: (lawgo if cfg == lawgo.settings else LawGoApi.from_settings(cfg, oc=lawgo.oc)).client()


def _crawl_metadata(crawl: CrawlResult, ingest: IngestSettings) -> dict[str, dg.MetadataValue]:
    return {
        "api_listed": dg.MetadataValue.int(crawl.listed),
        "api_fetched": dg.MetadataValue.int(crawl.fetched),
        "api_reused": dg.MetadataValue.int(crawl.reused),
        "api_refetched": dg.MetadataValue.int(crawl.refetched),
        "api_since": dg.MetadataValue.text(crawl.since.isoformat() if crawl.since else "(all dates)"),
        "quarantined": dg.MetadataValue.int(len(crawl.quarantined)),
        "not_found": dg.MetadataValue.int(crawl.not_found),
        WANTED_KEY: dg.MetadataValue.int(crawl.wanted),
        MISSING_KEY: dg.MetadataValue.int(len(crawl.missing)),
        "missing_share": dg.MetadataValue.float(round(crawl.missing_share, 6)),
        MISSING_IDS_KEY: dg.MetadataValue.json(crawl.missing[:MISSING_IDS_SHOWN]),
        MAX_MISSING_SHARE_KEY: dg.MetadataValue.float(ingest.max_missing_share),
    }


def ingest_metadata(
    context: dg.AssetExecutionContext, result: IngestResult, ingest: IngestSettings, skipped_report: Path, count_by: str
) -> dict[str, dg.MetadataValue]:
    """Where the records came from, the crawl's numbers (source=api), and the skipped inputs (written to
    ``skipped_report``, so nothing is dropped silently; a warning when there are any)."""
    meta: dict[str, dg.MetadataValue] = {SOURCE_KEY: dg.MetadataValue.text(result.source)}
    if result.crawl is not None:
        meta.update(_crawl_metadata(result.crawl, ingest))
    if result.note is not None:
        meta["note"] = dg.MetadataValue.text(result.note)
    if result.mirror_root is not None:
        meta["mirror_root"] = dg.MetadataValue.path(str(result.mirror_root))
    meta.update(write_skips(result.skipped, skipped_report))
    meta[f"rows_by_{count_by}"] = dg.MetadataValue.md(count_table(result.frame, count_by))
    if "is_deleted" in result.frame.columns:
        meta["deleted_articles"] = dg.MetadataValue.int(int(result.frame["is_deleted"].sum()))
    if result.skipped:
        name = context.asset_key.path[-1]
        context.log.warning(f"{name}: {len(result.skipped)} inputs skipped (see {skipped_report})")
    return meta


@dataclass(frozen=True)
class IngestAssetSpec:
    """One ``raw_*`` asset: its name, the source type it ingests and how the Dagster UI shows it."""

    name: str
    target: Target
    code_version: str
    description: str
    count_by: str  # the column of the rows_by_<column> metadata table
    preview: tuple[str, ...]
    deps: tuple[dg.SourceAsset, ...] = ()


def ingest_asset(spec: IngestAssetSpec) -> dg.AssetsDefinition:
    """The asset that ingests ``spec.target`` (:func:`~lexdpr_pipeline.sources.ingest.ingest_records`)."""

    @dg.asset(
        name=spec.name,
        group_name=GROUP,
        code_version=spec.code_version,
        deps=list(spec.deps) or None,
        kinds={"polars", "parquet"},
        description=spec.description,
    )
    def _ingest(
        context: dg.AssetExecutionContext,
        config: IngestConfig,
        project: LexDprProject,
        artifacts: ArtifactStoreResource,
        lawgo: LawGoApi,
    ) -> dg.Output[pl.DataFrame]:
        started = time.perf_counter()
        ingest, lawgo_cfg = _effective(config, project, lawgo)
        try:
            result = ingest_records(
                spec.target,
                ingest,
                lawgo_cfg,
                client_factory=_client_factory(lawgo),
                raw_dir=artifacts.store.root(Kind.LAWGO_RAW),
                mirror_dir=project.mirror,
                since=_date(config.since),
                until=_date(config.until),
                incremental=config.incremental,
                log=context.log,
            )
        except SourceUnavailableError as exc:
            raise dg.Failure(str(exc)) from None
        report = artifacts.store.report_path(GROUP, f"{spec.name}_skipped.parquet")
        metadata = ingest_metadata(context, result, ingest, report, spec.count_by)
        return table_output(result.frame, started=started, preview_columns=list(spec.preview), metadata=metadata)

    return _ingest


INGEST_SPECS = (
    IngestAssetSpec(
        "raw_statutes",
        "law",
        STATUTES_CODE_VERSION,
        "Statute articles (법령 조문), one row per 조, ids law:{법령ID}:{N}[-{M}].",
        count_by="law_kind",
        preview=("article_id", "law_name", "article_key", "article_title", "text"),
        deps=(legalize_kr_mirror,),
    ),
    IngestAssetSpec(
        "raw_admin_rules",
        "admrul",
        ADMIN_RULES_CODE_VERSION,
        "Administrative-rule articles (행정규칙 조문), ids admrul:{행정규칙ID}:{N}. API only: the public mirrors in "
        "../shared hold no admin rules.",
        count_by="rule_kind",
        preview=("article_id", "rule_name", "article_key", "article_title", "text"),
    ),
    IngestAssetSpec(
        "raw_precedents",
        "prec",
        PRECEDENTS_CODE_VERSION,
        "Court decisions (판례): 판시사항, 판결요지, 참조조문, 참조판례, 판례내용; ids prec:{판례일련번호}.",
        count_by="court_level",
        preview=("prec_id", "case_no", "court", "decision_date", "case_name"),
        deps=(precedent_kr_mirror,),
    ),
)
raw_statutes, raw_admin_rules, raw_precedents = (ingest_asset(spec) for spec in INGEST_SPECS)


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
        from lexdpr_pipeline.orchestration import latest_metadata  # not at import: orchestration imports the jobs

        meta = latest_metadata(context.instance, asset.key)
        verdict = completeness(
            str(meta.get(SOURCE_KEY, "unknown")),
            missing=int(meta.get(MISSING_KEY, 0)),
            wanted=int(meta.get(WANTED_KEY, 0)),
            missing_ids=meta.get(MISSING_IDS_KEY) or [],
            # the limit the run used (a run config may override ingest.max_missing_share), else the project's
            limit=float(meta.get(MAX_MISSING_SHARE_KEY, project.settings.ingest.max_missing_share)),
        )
        return _check_result(verdict)

    return check


def _check_result(verdict: Completeness) -> dg.AssetCheckResult:
    if not verdict.applicable:
        note = {"note": "completeness is checked for source=api only"}
        return dg.AssetCheckResult(passed=True, description=verdict.description, metadata=note)
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={
            "missing": dg.MetadataValue.int(verdict.missing),
            "wanted": dg.MetadataValue.int(verdict.wanted),
            "missing_share": dg.MetadataValue.float(round(verdict.share, 6)),
            MAX_MISSING_SHARE_KEY: dg.MetadataValue.float(verdict.limit),
        },
    )


INGEST_ASSETS = [raw_statutes, raw_admin_rules, raw_precedents]
INGEST_CHECKS = [_completeness_check(asset) for asset in INGEST_ASSETS]
SOURCE_ASSETS = [legalize_kr_mirror, precedent_kr_mirror]
