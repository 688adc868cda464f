"""A code location for the end-to-end test: the real definitions plus one downstream probe asset.

The probe stands in for the corpus stage: it lets the test see whether re-running ingest makes downstream stale.
"""

import dagster as dg
import polars as pl

from lexdpr_pipeline.definitions import build_definitions
from lexdpr_pipeline.storage import frame_content_hash


@dg.asset(code_version="probe-1")
def statute_probe(raw_statutes: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    frame = raw_statutes.select("article_id", "text")
    return dg.Output(frame, data_version=dg.DataVersion(frame_content_hash(frame)))


defs = dg.Definitions.merge(build_definitions(), dg.Definitions(assets=[statute_probe]))
