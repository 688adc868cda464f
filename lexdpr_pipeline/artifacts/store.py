"""The layout of ``data/``: where each kind of artifact lives, and the one reader of stored manifests.

Content-addressed folders are ``<data>/<root of kind>/<key[:20]>``. Code outside this module never joins paths under
``data/`` itself: it asks the store (:meth:`ArtifactStore.folder`, :meth:`table_path`, :meth:`read_manifest`,
:meth:`read_pointer`). Dagster sees it as the ``artifacts`` resource; the CLI, the search engine, the API and the
bench scripts build it from the settings (:meth:`ArtifactStore.from_settings`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from lexdpr_pipeline.artifacts.manifests import FusionParams, IndexPointer, Manifest

if TYPE_CHECKING:
    from lexdpr_pipeline.settings import Settings

KEY_CHARS = 20  # folder names: the first 20 hex digits of a sha256 content key
POINTER_FILE = "CURRENT.json"
FUSION_FILE = "fusion.json"

M = TypeVar("M", bound=Manifest)


class Kind(StrEnum):
    BASE_MODEL = "base_model"
    TRAINED_MODEL = "trained_model"
    ENCODER_EXPORT = "encoder_export"
    EMBEDDINGS = "embeddings"
    EMBEDDING_CACHE = "embedding_cache"
    BM25 = "bm25"
    FAISS = "faiss"
    REPORTS = "reports"
    LAWGO_RAW = "lawgo_raw"
    SWEEP = "sweep"  # one folder per sweep name: optuna.db, trials table, best.yaml, trial folders
    FUSION = "fusion"  # one folder per dense model version: fusion.json (FusionParams chosen on valid)


_ROOTS: dict[Kind, tuple[str, ...]] = {
    Kind.BASE_MODEL: ("models", "base"),
    Kind.TRAINED_MODEL: ("models", "trained"),
    Kind.ENCODER_EXPORT: ("models", "exported"),
    Kind.EMBEDDINGS: ("embeddings",),
    Kind.EMBEDDING_CACHE: ("embeddings", "cache"),
    Kind.BM25: ("indexes", "bm25"),
    Kind.FAISS: ("indexes", "faiss"),
    Kind.REPORTS: ("reports",),
    Kind.LAWGO_RAW: ("raw", "lawgo"),  # the crawler's resumable store of law.go.kr responses
    Kind.SWEEP: ("sweeps",),
    Kind.FUSION: ("indexes", "fusion"),
}


class MissingArtifactError(FileNotFoundError):
    """An artifact a command needs has not been materialized yet (the message says which and how)."""


@dataclass(frozen=True)
class ArtifactStore:
    data_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        return cls(settings.data_dir)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())

    # folders ---------------------------------------------------------------------------------------------------
    def root(self, kind: Kind | str) -> Path:
        return self.data_dir.joinpath(*_ROOTS[Kind(kind)])

    def folder(self, kind: Kind | str, key: str) -> Path:
        """The folder of one artifact: content keys (64 hex digits) are cut to their first 20; names are kept."""
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"not an artifact key: {key!r}")
        is_hash = len(key) > KEY_CHARS and all(c in "0123456789abcdef" for c in key)
        return self.root(kind) / (key[:KEY_CHARS] if is_hash else key)

    def report_path(self, *parts: str) -> Path:
        return self.root(Kind.REPORTS).joinpath(*parts)

    # tables and manifests (written by the Dagster IO manager) ------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        return self.data_dir / "tables"

    def table_path(self, asset: str, suffix: str = ".parquet") -> Path:
        return self.tables_dir.joinpath(*asset.split("/")).with_suffix(suffix)

    def read_table(self, asset: str, columns: list[str] | None = None) -> pl.DataFrame:
        path = self.table_path(asset)
        if not path.is_file():
            raise MissingArtifactError(f"no {asset} table at {path}: materialize it first (lex-dpr materialize)")
        return pl.read_parquet(path, columns=columns)

    def has_table(self, asset: str) -> bool:
        return self.table_path(asset).is_file()

    def read_manifest(self, asset: str, kind: type[M]) -> M:
        path = self.table_path(asset, ".json")
        if not path.is_file():
            raise MissingArtifactError(f"no {asset} manifest at {path}: materialize {asset} first")
        return kind.read(path)

    def find_manifest(self, asset: str, kind: type[M]) -> M | None:
        """The stored manifest, or None when the asset was never materialized."""
        try:
            return self.read_manifest(asset, kind)
        except MissingArtifactError:
            return None

    # the served index ------------------------------------------------------------------------------------------
    @property
    def pointer_path(self) -> Path:
        """``data/indexes/CURRENT.json``: written by ``faiss_index`` (``index.publish.publish_index``)."""
        return self.data_dir / "indexes" / POINTER_FILE

    def read_pointer(self, path: Path | None = None) -> IndexPointer:
        path = Path(path) if path is not None else self.pointer_path
        if not path.is_file():
            raise MissingArtifactError(
                f"no search index at {path}: materialize the index first (lex-dpr materialize --select +faiss_index)"
            )
        try:
            return IndexPointer.read(path)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def find_pointer(self) -> IndexPointer | None:
        try:
            return self.read_pointer()
        except (MissingArtifactError, ValueError):
            return None

    def write_pointer(self, pointer: IndexPointer) -> Path:
        return pointer.write(self.pointer_path)

    def pointer_bytes(self, path: Path | None = None) -> bytes | None:
        """The raw pointer file (hot-swap change detection compares bytes, not parsed values)."""
        try:
            return (Path(path) if path is not None else self.pointer_path).read_bytes()
        except FileNotFoundError:
            return None

    # hybrid fusion parameters (chosen on the valid split by model_evaluation / `lex-dpr eval --model`) ---------
    def fusion_params_path(self, model_version: str) -> Path:
        """``data/indexes/fusion/<key>/fusion.json``; the key is the version's first 20 hex digits when it is a
        content hash, else the sha256 of the version (a model version may hold ``:`` or ``|``)."""
        if not model_version:
            raise ValueError("fusion parameters need a model version")
        version = model_version.split("|", 1)[0]  # an ONNX encoder of a model shares the model's fusion
        is_hash = len(version) > KEY_CHARS and all(c in "0123456789abcdef" for c in version)
        key = version if is_hash else hashlib.sha256(version.encode("utf-8")).hexdigest()
        return self.folder(Kind.FUSION, key) / FUSION_FILE

    def write_fusion_params(self, params: FusionParams) -> Path:
        return params.write(self.fusion_params_path(params.model_version))

    def find_fusion_params(self, model_version: str) -> FusionParams | None:
        """The stored choice for ``model_version`` (or the torch model an ``…|onnx`` version encodes), else None."""
        path = self.fusion_params_path(model_version)
        return FusionParams.read(path) if path.is_file() else None

    def describe(self) -> dict[str, str]:
        return {kind.value: str(self.root(kind)) for kind in Kind} | {"tables": str(self.tables_dir)}


def manifest_json(obj: Manifest | dict) -> str:
    data = obj.to_dict() if isinstance(obj, Manifest) else obj
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)
