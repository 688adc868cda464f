"""Asset jobs. The mirrors are observable source assets: a job that reads them observes them first, so every
materialization records which version of the mirror it read."""

import dagster as dg

from lexdpr_pipeline.assets.ingest import GROUP as INGEST_GROUP
from lexdpr_pipeline.assets.ingest import SOURCES_GROUP

OBSERVE_JOB_NAME = "observe_sources_job"

_sources = dg.AssetSelection.groups(SOURCES_GROUP, include_sources=True)

observe_sources_job = dg.define_asset_job(
    OBSERVE_JOB_NAME,
    selection=_sources,
    description="Fingerprint the source mirrors, so a changed mirror makes its ingest asset stale.",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=_sources | dg.AssetSelection.groups(INGEST_GROUP),
    description="Observe the mirrors, then (re)read or (re)crawl every source; API crawls are incremental.",
)

downstream_refresh_job = dg.define_asset_job(
    "downstream_refresh_job",
    selection=dg.AssetSelection.groups(INGEST_GROUP).downstream(include_self=False),
    description="Everything below ingest; the refresh sensor asks for its stale assets only.",
)
