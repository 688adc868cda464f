"""Artifacts: the layout of ``data/`` (:class:`ArtifactStore`), typed manifests, and atomic folder staging."""

from lexdpr_pipeline.artifacts.manifests import (
    MANIFEST_TYPES,
    BaseModelManifest,
    Bm25IndexManifest,
    EmbeddingSetManifest,
    EncoderExportManifest,
    FaissIndexManifest,
    FusionParams,
    IndexPointer,
    Manifest,
    TrainedModelManifest,
)
from lexdpr_pipeline.artifacts.staging import staged_folder
from lexdpr_pipeline.artifacts.store import KEY_CHARS, ArtifactStore, Kind, MissingArtifactError

__all__ = [
    "KEY_CHARS",
    "MANIFEST_TYPES",
    "ArtifactStore",
    "BaseModelManifest",
    "Bm25IndexManifest",
    "EmbeddingSetManifest",
    "EncoderExportManifest",
    "FaissIndexManifest",
    "FusionParams",
    "IndexPointer",
    "Kind",
    "Manifest",
    "MissingArtifactError",
    "TrainedModelManifest",
    "staged_folder",
]
