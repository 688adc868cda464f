"""Dagster resources: project paths, the law.go.kr API client, and the Parquet IO manager."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from lexdpr_pipeline.settings import Settings
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
    def data(self) -> Path:
        return self.settings.data_dir

    @property
    def mirror(self) -> Path:
        return self.settings.paths.mirror_dir.resolve()

    @property
    def raw_lawgo(self) -> Path:
        return self.data / "raw" / "lawgo"

    @property
    def reports(self) -> Path:
        return self.settings.reports_dir

    @property
    def models_dir(self) -> Path:
        return self.data / "models"


class LawGoApi(dg.ConfigurableResource):
    """law.go.kr DRF API client settings. ``oc`` comes from ``EnvVar("LAW_GO_KR_OC")`` and is never logged."""

    base_url: str = "https://www.law.go.kr/DRF"
    oc: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    rate_limit_per_s: float = 2.0
    user_agent: str = "LexDPR/0.1"

    def client(self) -> LawGoClient:
        if not self.oc:
            raise dg.Failure(
                "The law.go.kr API needs an OC key: set LAW_GO_KR_OC (the e-mail id of your open.law.go.kr "
                "account) or use source=mirror."
            )
        return LawGoClient(
            base_url=self.base_url,
            oc=self.oc,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            rate_limit_per_s=self.rate_limit_per_s,
            user_agent=self.user_agent,
        )


class LexDprIOManager(dg.ConfigurableIOManager):
    """Polars frames as ``{base_dir}/{asset key path}.parquet``; small JSON values (artifact manifests) as ``.json``.

    Big artifacts (models, indexes) are not passed through here: their assets write them to content-addressed
    folders under ``data/`` and return a manifest (a dict with the path and hash).
    """

    base_dir: str

    def _path(self, key: dg.AssetKey, suffix: str) -> Path:
        return Path(self.base_dir).resolve().joinpath(*key.path).with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict) -> None:
        if isinstance(obj, pl.DataFrame):
            path = write_parquet(obj, self._path(context.asset_key, ".parquet"))
        elif isinstance(obj, dict):
            path = atomic_write_text(
                self._path(context.asset_key, ".json"), json.dumps(obj, ensure_ascii=False, indent=2, default=str)
            )
        else:
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame or a dict")
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | dict:
        for suffix in (".parquet", ".json"):
            path = self._path(context.asset_key, suffix)
            if path.exists():
                return pl.read_parquet(path) if suffix == ".parquet" else json.loads(path.read_text(encoding="utf-8"))
        raise FileNotFoundError(
            f"no stored value for {context.asset_key.to_user_string()} under {self.base_dir}: materialize it first"
        )
