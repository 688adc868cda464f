"""Dagster resources: project settings, the artifact store, the law.go.kr API client, and the Parquet IO manager."""

import dataclasses
import json
import typing
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from lexdpr_pipeline.artifacts import ArtifactStore, Manifest
from lexdpr_pipeline.settings import LawGoSettings, Settings
from lexdpr_pipeline.sources.lawgo.client import LawGoClient
from lexdpr_pipeline.storage import atomic_write_text, write_parquet


class LexDprProject(dg.ConfigurableResource):
    """The project's effective settings (secrets excluded), as the YAML ``lex-dpr config show`` prints.

    One resource instead of a field per knob: every stage reads its section (``settings.text``, ``.pairs`` …), and
    the Dagster UI shows the whole configuration a run used.
    """

    settings_yaml: str

    @property
    def settings(self) -> Settings:
        cached = getattr(self, "_parsed", None)
        if cached is None:
            cached = Settings.model_validate(yaml.safe_load(self.settings_yaml) or {})
            object.__setattr__(self, "_parsed", cached)
        return cached

    @property
    def mirror(self) -> Path:
        return self.settings.paths.mirror_dir.resolve()


class ArtifactStoreResource(dg.ConfigurableResource):
    """The layout of ``data/`` (:class:`~lexdpr_pipeline.artifacts.ArtifactStore`): every asset that writes or reads
    a model, embedding set, index or report asks it for the folder, never joins paths itself."""

    data_dir: str

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(Path(self.data_dir))


class LawGoApi(dg.ConfigurableResource):
    """The law.go.kr DRF client: its options are the ``lawgo`` settings section (declared once, in
    :class:`~lexdpr_pipeline.settings.LawGoSettings`); ``oc`` comes from ``EnvVar("LAW_GO_KR_OC")`` and is never
    logged or stored in run config."""

    lawgo_yaml: str = ""  # the lawgo section without the key; empty: the defaults
    oc: str | None = None

    @classmethod
    def from_settings(cls, cfg: LawGoSettings, oc: str | dg.EnvVar | None) -> "LawGoApi":
        return cls(lawgo_yaml=yaml.safe_dump(cfg.model_dump(mode="json", exclude={"oc"}), allow_unicode=True), oc=oc)

    @property
    def settings(self) -> LawGoSettings:
        return LawGoSettings.model_validate(yaml.safe_load(self.lawgo_yaml) or {})

    def client(self) -> LawGoClient:
        if not self.oc:
            raise dg.Failure(
                "The law.go.kr API needs an OC key: set LAW_GO_KR_OC (the e-mail id of your open.law.go.kr "
                "account) or use source=mirror."
            )
        return LawGoClient.from_settings(self.settings, oc=self.oc)


class LexDprIOManager(dg.ConfigurableIOManager):
    """Polars frames as ``{base_dir}/{asset key path}.parquet``; small JSON values (artifact manifests) as ``.json``.

    Big artifacts (models, indexes) are not passed through here: their assets write them to content-addressed
    folders under ``data/`` and return a manifest (a dict with the path and hash).
    """

    base_dir: str

    def _path(self, key: dg.AssetKey, suffix: str) -> Path:
        return Path(self.base_dir).resolve().joinpath(*key.path).with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict | Manifest) -> None:
        if isinstance(obj, pl.DataFrame):
            path = write_parquet(obj, self._path(context.asset_key, ".parquet"))
        elif isinstance(obj, Manifest):
            path = obj.write(self._path(context.asset_key, ".json"))
        elif isinstance(obj, dict):
            path = atomic_write_text(
                self._path(context.asset_key, ".json"), json.dumps(obj, ensure_ascii=False, indent=2, default=str)
            )
        else:
            raise TypeError(
                f"{context.asset_key.to_user_string()} must return a polars DataFrame, a manifest or a dict"
            )
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict | Manifest:
        for suffix in (".parquet", ".json"):
            path = self._path(context.asset_key, suffix)
            if path.exists():
                if suffix == ".parquet":
                    return pl.read_parquet(path)
                data = json.loads(path.read_text(encoding="utf-8"))
                manifest_type = _manifest_type(context)
                return manifest_type.from_dict(data) if manifest_type is not None else data
        raise FileNotFoundError(
            f"no stored value for {context.asset_key.to_user_string()} under {self.base_dir}: materialize it first"
        )


def _manifest_type(context: dg.InputContext) -> type[Manifest] | None:
    """The manifest class the consuming asset's parameter is annotated with (``trained_model: TrainedModelManifest``),
    so a stored JSON manifest arrives typed — also one written before manifests carried their kind."""
    try:
        typing_type = getattr(context.dagster_type, "typing_type", None)
    except dg.DagsterInvariantViolationError:  # a bare build_input_context() has no type: hand over the dict
        return None
    if isinstance(typing_type, type) and issubclass(typing_type, Manifest) and dataclasses.is_dataclass(typing_type):
        return typing_type
    for arg in typing.get_args(typing_type):
        if isinstance(arg, type) and issubclass(arg, Manifest):
            return arg
    return None


def project_resources(settings: Settings) -> dict[str, object]:
    """The resources every asset needs, built from the settings (definitions and tests use this one function).

    The law.go.kr key is read from ``LAW_GO_KR_OC`` at run time and never stored in run config.
    """
    import os

    from lexdpr_pipeline.settings import dump, shareable

    return {
        "project": LexDprProject(settings_yaml=dump(shareable(settings))),
        "artifacts": ArtifactStoreResource(data_dir=str(settings.data_dir)),
        "lawgo": LawGoApi.from_settings(
            settings.lawgo, oc=dg.EnvVar("LAW_GO_KR_OC") if os.environ.get("LAW_GO_KR_OC") else None
        ),
        "io_manager": LexDprIOManager(base_dir=str(ArtifactStore.from_settings(settings).tables_dir)),
    }
