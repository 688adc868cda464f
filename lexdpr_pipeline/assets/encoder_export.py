"""Group ``models``: the ONNX exports of the embedding model, their quality gate, and the backend to embed with.

``encoder_export`` exports the model ``embed.model`` names (fp32 and int8 ONNX, content-addressed under
``data/models/exported/``), gates each against torch fp32 on a seeded sample (merged_corpus passages, valid-split
queries of ``dataset_splits`` with their positives) and chooses the backend ``embed.backend`` asks for
(:mod:`lexdpr_pipeline.models.export_gate`). ``passage_embeddings`` embeds with the chosen one; the blocking check
``encoder_export_quality_gate`` stops it when a forced backend failed the gate.
"""

import time

import dagster as dg
import polars as pl

from lexdpr_pipeline.artifacts import BaseModelManifest, EncoderExportManifest, TrainedModelManifest
from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.models.export_gate import export_and_gate, gate_sample, gate_table
from lexdpr_pipeline.models.resolve import choose_model
from lexdpr_pipeline.resources import ArtifactStoreResource, LexDprProject

GROUP = "models"
#: Metadata keys (the CLI and tests read them).
CHOSEN_KEY = "chosen_backend"
GATE_TABLE_KEY = "gate"


@dg.asset(group_name=GROUP, code_version="encoder-export-1", kinds={"onnx"}, op_tags=MODEL_STEP_TAGS)
def encoder_export(
    context: dg.AssetExecutionContext,
    project: LexDprProject,
    artifacts: ArtifactStoreResource,
    merged_corpus: pl.DataFrame,
    trained_model: TrainedModelManifest,
    base_model: BaseModelManifest,
) -> dg.Output[EncoderExportManifest]:
    """ONNX fp32/int8 exports of the ``embed.model`` model, each gated against torch fp32 (mean cosine, nDCG@10 on
    a seeded sample), and the backend ``embed.backend`` gets (auto: int8, else fp32 ONNX, whichever passed, else
    torch). Its data version changes only with the model and the choice."""
    started = time.perf_counter()
    settings, store = project.settings, artifacts.store
    embed = settings.embed
    choice = choose_model(embed.model, trained_model, base_model)
    splits = store.read_table("dataset_splits") if store.has_table("dataset_splits") else None
    sample = gate_sample(
        merged_corpus, splits, n_passages=embed.gate_sample_passages, n_queries=embed.gate_sample_queries
    )
    context.log.info(f"exporting {choice.path} (embed.backend={embed.backend}); gate sample: {sample.describe()}")
    manifest = export_and_gate(
        store,
        choice.path,
        choice.version,
        embed.backend,
        sample,
        threads=embed.threads,
        min_mean_cosine=embed.gate_min_mean_cosine,
        max_ndcg_drop=embed.gate_max_ndcg_drop,
        batch_size=embed.batch_size,
    )
    return dg.Output(
        manifest, data_version=dg.DataVersion(manifest.content_hash), metadata=_export_metadata(manifest, started)
    )


def _export_metadata(manifest: EncoderExportManifest, started: float) -> dict:
    rates = {name: r.get("passages_per_s") for name, r in manifest.backends.items()}
    return {
        CHOSEN_KEY: manifest.chosen,
        "requested_backend": manifest.requested,
        "chosen_path": dg.MetadataValue.path(manifest.chosen_path) if manifest.chosen_path else "",
        "encoder_version": manifest.encoder_version,
        "query_backend": manifest.query_backend or manifest.chosen,
        GATE_TABLE_KEY: dg.MetadataValue.md(gate_table(manifest)),
        "passages_per_s": dg.MetadataValue.json(rates),
        "sample": manifest.sample,
        "wall_time_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
    }


@dg.asset_check(
    asset=encoder_export,
    blocking=True,
    description="The backend passage_embeddings will use passed the quality gate against torch fp32 (mean cosine "
    "≥ embed.gate_min_mean_cosine, nDCG@10 drop ≤ embed.gate_max_ndcg_drop). auto never chooses a failing export.",
)
def encoder_export_quality_gate(encoder_export: EncoderExportManifest) -> dg.AssetCheckResult:
    chosen = encoder_export.backends.get(encoder_export.chosen, {})
    gate = chosen.get("gate") or {}
    why = chosen.get("error") or "; ".join(gate.get("reasons") or []) or "torch is the reference"
    failed = sorted(n for n, r in encoder_export.backends.items() if not r.get("passed"))
    return dg.AssetCheckResult(
        passed=encoder_export.chosen_passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{encoder_export.chosen} (embed.backend={encoder_export.requested}): "
        + ("passed" if encoder_export.chosen_passed else f"failed the gate: {why}"),
        metadata={
            "chosen": encoder_export.chosen,
            "failed_backends": dg.MetadataValue.json(failed),
            "mean_cosine": dg.MetadataValue.float(float(gate.get("mean_cosine", 1.0))),
            "min_cosine": dg.MetadataValue.float(float(gate.get("min_cosine", 1.0))),
        },
    )


ENCODER_EXPORT_ASSETS = [encoder_export]
ENCODER_EXPORT_CHECKS = [encoder_export_quality_gate]
