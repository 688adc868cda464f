"""The sweep file: a YAML search space over ``train.*`` settings, the strategy, the budget and the objective.

```yaml
name: lr-temp                 # the study; results under data/sweeps/<name>/
strategy: tpe                 # grid | random | tpe
n_trials: 8                   # total budget, counting trials already in the study (resume)
timeout_s: 3600               # and/or: no new trial starts after this many seconds (this invocation)
metric: ndcg@10               # a validation metric (valid split only); default ndcg@10
pruner: {kind: median, n_startup_trials: 2, n_warmup_steps: 0}
base:                         # settings applied to every trial (settings YAML layout: train / eval sections)
  train: {max_steps: 80, eval_steps: 40}
params:
  train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-4, log: true}
  train.batch_size: {type: categorical, choices: [16, 32]}
  train.type_weights.prec: {type: float, low: 0.0, high: 1.0, step: 0.25}   # one entry of a mapping setting
```
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lexdpr_pipeline.pairs.queries import QUERY_TYPES
from lexdpr_pipeline.settings import EvalSettings, TrainSettings

if TYPE_CHECKING:
    import optuna


class Strategy(StrEnum):
    grid = "grid"
    random = "random"
    tpe = "tpe"


#: Settings a sweep may not search: they change the yardstick (validation sample), not the model, or only how a
#: run goes. Searching them would compare trials on different measurements.
NOT_SEARCHABLE = frozenset(
    {
        "eval_max_queries",
        "eval_corpus_max_passages",
        "eval_steps",
        "device",
        "resume",
        "test_run",
        "test_run_steps",
        "logging_steps",
        "save_total_limit",
    }
)
#: LoRA knobs: only sampled in trials where LoRA is on.
LORA_PARAMS = frozenset({"train.lora_r", "train.lora_alpha", "train.lora_dropout", "train.merge_lora"})
#: Parameters that change the effective batch (see ``runner.fair_batch_adjustments``).
BATCH_PARAMS = frozenset({"train.batch_size", "train.gradient_accumulation_steps"})
BASE_SECTIONS = {"train": TrainSettings, "eval": EvalSettings}
#: Mapping-valued ``train`` settings searched one entry at a time (``train.type_weights.prec``): the entries a sweep
#: may name, and the value an entry has when the mapping leaves it out.
MAPPING_PARAMS: dict[str, tuple[frozenset[str], Any]] = {"type_weights": (frozenset(QUERY_TYPES), 1.0)}
METRIC_RE = re.compile(r"^(ndcg|recall|mrr|accuracy|precision|map)@([1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Scalar = str | int | float | bool | None


def validation_metric(metric: str) -> str:
    """``ndcg@10`` or ``valid.ndcg@10`` → ``ndcg@10``; anything naming another split is refused."""
    name = metric.strip()
    if "." in name:
        split, _, name = name.partition(".")
        if split != "valid":
            raise ValueError(
                f"metric {metric!r}: the objective must be a validation metric (valid.<metric>); sweeps never "
                "look at the test split (or score on the training split)"
            )
    if not METRIC_RE.match(name):
        raise ValueError(f"metric {metric!r}: use ndcg@k, recall@k, mrr@k, accuracy@k, precision@k or map@k")
    return name


def metric_k(metric: str) -> int:
    match = METRIC_RE.match(metric)
    assert match is not None
    return int(match.group(2))


class ParamSpec(BaseModel):
    """One searched setting: ``float`` / ``int`` ranges (``log``, ``step``) or ``categorical`` choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty choices list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical parameter takes only choices (no low/high/step/log)")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low/high (choices are for type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be positive")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and value != int(value):
                    raise ValueError(f"an int parameter needs an integer {name}, not {value}")
        return self

    def grid_values(self) -> list[Scalar]:
        """The values a grid search tries: the choices, or low..high by step (ints: step 1 by default)."""
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError("a float parameter in a grid needs a step (or use type: categorical with choices)")
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices or []))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class PrunerSpec(BaseModel):
    """Stops a trial whose intermediate validation score is worse than the median (or a percentile) of the earlier
    trials at the same step. ``n_startup_trials`` finished trials come first; ``n_warmup_steps`` are never pruned."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["median", "percentile", "none"] = "median"
    n_startup_trials: int = Field(2, ge=0)
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile pruner: keep trials above this")


class SweepSpec(BaseModel):
    """A sweep file (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    strategy: Strategy = Strategy.tpe
    n_trials: int | None = Field(None, ge=1, description="Total trials, counting those already in the study")
    timeout_s: float | None = Field(None, gt=0, description="No new trial starts after this (per invocation)")
    metric: str = "ndcg@10"
    direction: Literal["maximize", "minimize"] = "maximize"
    pruner: PrunerSpec = PrunerSpec()
    seed: int = 42
    tpe_startup_trials: int = Field(4, ge=0, description="tpe: random trials before the model takes over")
    fair_batches: bool = Field(
        True,
        description="When batch_size or gradient_accumulation_steps are searched: cached_mnrl over the whole "
        "effective batch (see runner.fair_batch_adjustments)",
    )
    keep_trial_models: bool = Field(False, description="Keep each trial's model folder (disk!)")
    baseline_trial: bool = Field(
        True,
        description="A new random/tpe sweep first runs the settings' own values (the default configuration), so "
        "the summary compares the best trial with it",
    )
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    params: dict[str, ParamSpec]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"name {value!r}: letters, digits, '_', '-', '.' only (it names a folder)")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return validation_metric(value)

    @field_validator("base")
    @classmethod
    def _base(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for section, fields in value.items():
            model = BASE_SECTIONS.get(section)
            if model is None:
                raise ValueError(f"base.{section}: only the sections {sorted(BASE_SECTIONS)} can be set by a sweep")
            if not isinstance(fields, dict):
                raise ValueError(f"base.{section} must be a mapping of settings")
            unknown = sorted(set(fields) - set(model.model_fields))
            if unknown:
                raise ValueError(f"base.{section}: unknown settings {unknown}")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if not value:
            raise ValueError("params is empty: name at least one train.* setting to search")
        for name in value:
            section, _, field = name.partition(".")
            field, _, entry = field.partition(".")
            if section != "train" or field not in TrainSettings.model_fields:
                raise ValueError(f"params.{name}: not a train.* setting (see `lex-dpr config show`)")
            if entry or field in MAPPING_PARAMS:
                keys = MAPPING_PARAMS.get(field, (frozenset(), None))[0]
                if entry not in keys:
                    raise ValueError(
                        f"params.{name}: search one entry of train.{field}: train.{field}.<one of {sorted(keys)}>"
                        if keys
                        else f"params.{name}: train.{field} has no entries"
                    )
            if field in NOT_SEARCHABLE:
                raise ValueError(f"params.{name}: cannot be searched (it changes the measurement, not the model)")
        return value

    @model_validator(mode="after")
    def _budget(self) -> SweepSpec:
        if self.strategy == Strategy.grid:
            if "train.lora" in self.params and LORA_PARAMS & set(self.params):
                raise ValueError(
                    "grid: LoRA settings are only sampled when train.lora is on; fix train.lora in base instead of "
                    "searching it, or use random/tpe"
                )
            size = self.grid_size()  # raises on a float range without a step
            if self.n_trials is None or self.n_trials > size:
                self.n_trials = size
        elif self.n_trials is None and self.timeout_s is None:
            raise ValueError("give a budget: n_trials and/or timeout_s")
        return self

    def grid(self) -> dict[str, list[Scalar]]:
        return {name: spec.grid_values() for name, spec in self.params.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def grid_points(self) -> list[dict[str, Scalar]]:
        names = list(self.params)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.grid().values())]

    def ordered_params(self) -> list[tuple[str, ParamSpec]]:
        """``train.lora`` first (the LoRA knobs depend on it), then the file's order."""
        return sorted(self.params.items(), key=lambda item: item[0] != "train.lora")

    def with_budget(
        self, n_trials: int | None = None, timeout_s: float | None = None, strategy: Strategy | str | None = None
    ) -> SweepSpec:
        """A copy with the command line's budget / strategy (validated again)."""
        data = self.model_dump(mode="python")
        if strategy is not None:
            data["strategy"] = Strategy(strategy)
            if data["strategy"] == Strategy.grid and n_trials is None:
                data["n_trials"] = None  # the grid's size
        if n_trials is not None:
            data["n_trials"] = n_trials
        if timeout_s is not None:
            data["timeout_s"] = timeout_s
        return SweepSpec.model_validate(data)

    def fingerprint(self) -> str:
        """What makes trials comparable: the space, the fixed settings and the objective."""
        data = self.model_dump(mode="json", include={"params", "base", "metric", "direction", "fair_batches"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def set_param(train: dict[str, Any], name: str, value: Any) -> None:
    """Set a sampled parameter in a ``train`` settings dict: ``train.x`` sets x, ``train.type_weights.prec`` one
    entry of the mapping (created when the setting is None; the other entries stay as they are)."""
    field, _, entry = name.split(".", 1)[1].partition(".")
    if entry:
        train[field] = {**(train.get(field) or {}), entry: value}
    else:
        train[field] = value


def param_value(train: TrainSettings, name: str) -> Any:
    """The value ``train`` gives a parameter (an entry the mapping leaves out: its default, e.g. weight 1.0)."""
    field, _, entry = name.split(".", 1)[1].partition(".")
    value = getattr(train, field)
    if entry:
        return (value or {}).get(entry, MAPPING_PARAMS[field][1])
    return value


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a sweep file; every problem is a ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"sweep file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"sweep file {path} must hold a mapping (name, strategy, params, …)")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"sweep file {path}: {problems}") from exc
