"""The index part of the graph on a real corpus slice, with the tiny model standing in for the trained one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.assets.encoder_export import ENCODER_EXPORT_ASSETS, ENCODER_EXPORT_CHECKS
from lexdpr_pipeline.assets.models import base_model
from lexdpr_pipeline.assets.search_index import SEARCH_INDEX_ASSETS, SEARCH_INDEX_CHECKS
from lexdpr_pipeline.resources import project_resources


def index_defs(settings, model_dir: Path, corpus: pl.DataFrame) -> dg.Definitions:
    """merged_corpus (the slice) + trained_model (the tiny model) → base_model, encoder_export, the index assets."""

    @dg.asset(name="merged_corpus", code_version="slice-1")
    def merged_corpus_slice() -> pl.DataFrame:
        return corpus

    @dg.asset(name="trained_model", code_version="stand-in-1")
    def trained_model_stand_in() -> dict:
        return {"path": str(model_dir), "content_hash": "tiny-trained-v1"}

    return dg.Definitions(
        assets=[merged_corpus_slice, trained_model_stand_in, base_model, *ENCODER_EXPORT_ASSETS, *SEARCH_INDEX_ASSETS],
        asset_checks=[*ENCODER_EXPORT_CHECKS, *SEARCH_INDEX_CHECKS],
        resources=project_resources(settings),
    )
