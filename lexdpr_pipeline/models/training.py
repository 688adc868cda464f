"""Fine-tuning the bi-encoder on citation-linked pairs (sentence-transformers trainer, optional LoRA via peft).

The pieces, in the order :func:`train_biencoder` uses them:

- :func:`training_rows`: ``dataset_splits`` → rows ``(anchor, positive, negative_1..n, label)``; the label holds the
  integer keys the duplicate-aware losses mask with (:mod:`lexdpr_pipeline.models.losses`).
- :func:`duplicate_report`: how many rows each in-batch duplicate strategy keeps, and how many in-batch false
  negatives plain batching would have.
- :func:`train_biencoder`: the trainer run — warmup, scheduler, clipping, gradient checkpointing, bf16/fp16 on a GPU,
  validation nDCG@10 with early stopping, checkpoints and resume, then the model saved with ``lexdpr_training.json``.
  Against forgetting: an optional distillation term to the frozen base (``train.distill_weight``, see losses.py) and
  WiSE-FT interpolation with the base (``train.interpolate``, see interpolate.py), applied to what is validated and
  saved.

Under torchrun (``train.nproc_per_node`` > 1, see :mod:`lexdpr_pipeline.models.train_worker`) every rank runs
:func:`train_biencoder`; the trainer sets up DDP from torchrun's environment, and only rank 0 validates at the end and
saves the model.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.artifacts import staged_folder
from lexdpr_pipeline.models.biencoder import ADAPTER_FILE, BiEncoder, Template
from lexdpr_pipeline.models.interpolate import base_state_dict, interpolate_, interpolated
from lexdpr_pipeline.models.losses import DistillToBase, build_loss, row_keys
from lexdpr_pipeline.settings import TrainSettings
from lexdpr_pipeline.storage import atomic_write_text

TRAINING_FILE = "lexdpr_training.json"
SECTION_ORDER = {"holdings": 0, "summary": 1, "article": 2, "body": 3}
_log = logging.getLogger(__name__)


def template_for(cfg: TrainSettings) -> Template:
    if cfg.template == "custom":
        if cfg.query_prompt is None or cfg.passage_prompt is None:
            raise ValueError("template 'custom' needs train.query_prompt and train.passage_prompt")
        return Template.custom(cfg.query_prompt, cfg.passage_prompt)
    return Template.named(cfg.template)


# --------------------------------------------------------------------------------------------------- training rows


@dataclass
class RowStats:
    queries: int = 0  # queries considered (after train.query_types and an unweighted max_train_queries sample)
    rows: int = 0
    by_type: dict[str, int] = field(default_factory=dict)  # rows per query type, as trained
    skipped: Counter[str] = field(default_factory=Counter)
    type_weights: dict[str, float] | None = None  # effective weights of the types present (None: not weighted)
    rows_before: dict[str, int] = field(default_factory=dict)  # rows per type before the weighted sampling

    def mix(self) -> dict[str, Any]:
        """The effective query-type mix: weights, rows per type before and after sampling, shares after."""
        return {
            "type_weights": self.type_weights,
            "rows_before": self.rows_before,
            "rows_after": self.by_type,
            "share_after": {t: round(n / self.rows, 4) for t, n in self.by_type.items()} if self.rows else {},
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "rows": self.rows,
            "by_type": self.by_type,
            "skipped": dict(self.skipped),
            "mix": self.mix(),
        }


def _sample(frame: pl.DataFrame, n: int | None, seed: int) -> pl.DataFrame:
    if n is None or frame.height <= n:
        return frame
    return frame.sort(pl.col("query_id").hash(seed=seed)).head(n).sort("query_id")


def effective_type_weights(weights: dict[str, float] | None, types: Sequence[str]) -> dict[str, float] | None:
    """``train.type_weights`` for the query types present (unnamed ones weigh 1.0); None when there is nothing to
    weight (no setting, or every present type weighs the same — then rows are exactly the unweighted ones)."""
    if weights is None:
        return None
    present = {t: float(weights.get(t, 1.0)) for t in sorted(set(types))}
    if len(set(present.values())) <= 1 and all(w > 0 for w in present.values()):
        return None
    if present and max(present.values()) == 0:
        raise ValueError(f"train.type_weights {weights} drops every query type present ({sorted(present)})")
    return present


def weighted_query_sample(
    ids_by_type: dict[str, list[str]], weights: dict[str, float], budget: int | None, seed: int
) -> set[str]:
    """Query ids kept per type: each query of type t is kept with probability ∝ its type's weight.

    Type t keeps ``n_t · w_t / max(w)`` queries; when that is more than ``budget`` (``train.max_train_queries``) all
    counts shrink in proportion. Counts are rounded by largest remainder (ties: type name); within a type the
    queries come in a seeded hash order, so the sample is deterministic and a smaller one is part of a larger one.
    """
    top = max(weights.values())
    target = {t: len(ids) * weights.get(t, 1.0) / top for t, ids in ids_by_type.items()}
    total = sum(target.values())
    if budget is not None and total > budget:
        target = {t: v * budget / total for t, v in target.items()}
        total = float(budget)
    counts = {t: math.floor(v) for t, v in target.items()}
    left = round(total) - sum(counts.values())
    for t in sorted(target, key=lambda t: (-(target[t] - counts[t]), t))[: max(left, 0)]:
        counts[t] += 1
    keep: set[str] = set()
    for t, ids in ids_by_type.items():
        if counts[t] and ids:
            order = pl.Series("query_id", ids).to_frame().sort(pl.col("query_id").hash(seed=seed))
            keep.update(order["query_id"].head(counts[t]).to_list())
    return keep


def training_rows(
    splits: pl.DataFrame, corpus: pl.DataFrame, cfg: TrainSettings, *, split: str = "train"
) -> tuple[pl.DataFrame, RowStats]:
    """Rows for the trainer from one split of ``dataset_splits``.

    A query gives ``positives_per_query`` rows, positives ordered 판시사항/판결요지 before 판례내용, then chunk order
    (a cited decision's holdings say what it is about; its 300th body chunk rarely does). Hard negatives come from
    ``negative_ids`` (mined by the pairs stage, positives and the query's own decision already excluded); a query
    with fewer than ``hard_negatives`` of them is skipped and counted, never padded with a guess.

    ``train.type_weights`` samples the usable queries by type (:func:`weighted_query_sample`, ``max_train_queries``
    as the budget); without it ``max_train_queries`` is a uniform sample. ``RowStats.mix()`` has the effect.
    """
    stats = RowStats()
    frame = splits.filter(pl.col("split") == split)
    if cfg.query_types:
        frame = frame.filter(pl.col("query_type").is_in(cfg.query_types))
    weights = effective_type_weights(cfg.type_weights, frame["query_type"].unique().to_list())
    if weights is None:
        frame = _sample(frame, cfg.max_train_queries, cfg.seed)
    text = dict(corpus.select("passage_id", "text").iter_rows())
    order = {
        pid: (SECTION_ORDER.get(section, 9), chunk)
        for pid, section, chunk in corpus.select("passage_id", "section", "chunk_index").iter_rows()
    }
    n_neg = cfg.hard_negatives
    rows: dict[str, list] = {"query_id": [], "query_type": [], "anchor": [], "positive": [], "positive_id": []}
    for k in range(1, n_neg + 1):
        rows[f"negative_{k}"] = []
    rows["label"] = []
    usable: dict[str, list[str]] = {}
    for qid, qtype, qtext, positives, negatives in frame.select(
        "query_id", "query_type", "query_text", "positive_ids", "negative_ids"
    ).iter_rows():
        stats.queries += 1
        known = sorted((p for p in positives if p in text), key=lambda p: order.get(p, (9, 0)))
        if not known:
            stats.skipped["no positive text in corpus"] += 1
            continue
        negs = [n for n in (negatives or []) if n in text and n not in set(positives)][:n_neg]
        if len(negs) < n_neg:
            stats.skipped[f"fewer than {n_neg} hard negatives"] += 1
            continue
        usable.setdefault(qtype, []).append(qid)
        for pos in known[: cfg.positives_per_query]:
            rows["query_id"].append(qid)
            rows["query_type"].append(qtype)
            rows["anchor"].append(qtext)
            rows["positive"].append(text[pos])
            rows["positive_id"].append(pos)
            for k, neg in enumerate(negs, start=1):
                rows[f"negative_{k}"].append(text[neg])
            rows["label"].append(row_keys(qid, pos, negs, positives))
    out = pl.DataFrame(rows, schema_overrides={"label": pl.List(pl.Int64)})
    stats.rows_before = _rows_by_type(out)
    if weights is not None:
        keep = weighted_query_sample(usable, weights, cfg.max_train_queries, cfg.seed)
        out = out.filter(pl.col("query_id").is_in(sorted(keep)))
        stats.type_weights = weights
    stats.rows = out.height
    stats.by_type = _rows_by_type(out)
    if weights is not None:
        _log.info("training mix, rows per type (type_weights %s): %s → %s", weights, stats.rows_before, stats.by_type)
    return out, stats


def _rows_by_type(rows: pl.DataFrame) -> dict[str, int]:
    return {t: int(n) for t, n in sorted(rows.group_by("query_type").len().iter_rows())} if rows.height else {}


def trainer_columns(rows: pl.DataFrame) -> list[str]:
    """The columns the trainer sees, in the order the loss expects (label last)."""
    negs = sorted((c for c in rows.columns if c.startswith("negative_")), key=lambda c: int(c.split("_")[1]))
    return ["anchor", "positive", *negs, "label"]


# ------------------------------------------------------------------------------------------- duplicate strategies


def duplicate_report(rows: pl.DataFrame, batch_size: int, seed: int = 42) -> dict[str, Any]:
    """What each duplicate strategy does to one epoch of these rows.

    - ``none``: random batches; counts anchors whose batch holds a candidate relevant to them (false negatives).
    - ``mask``: the same batches, every row kept; those candidates are masked in the loss instead.
    - ``no_duplicates_sampler``: sentence-transformers' sampler keeps a text out of a batch that already holds it;
      rows it cannot place in a full batch are dropped (``drop_last``) — counted here by running the real sampler.
    """
    import random

    import datasets
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    n = rows.height
    if n == 0:
        return {"rows": 0}
    cols = trainer_columns(rows)
    pos_ids = rows["positive_id"].to_list()
    qids = rows["query_id"].to_list()
    labels = rows["label"].to_list()
    order = list(range(n))
    random.Random(seed).shuffle(order)
    affected = collisions = 0
    n_docs = len(cols) - 2  # positive + negatives
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        cand: Counter[int] = Counter()
        for i in batch:
            for key in labels[i][1 : 1 + n_docs]:
                cand[key] += 1
        for i in batch:
            own = labels[i][1]
            relevant = {k for k in labels[i][1 + n_docs :] if k >= 0} | {own}
            same_query_pos = sum(1 for j in batch if j != i and qids[j] == qids[i])
            hits = sum(cand[k] for k in relevant) - 1 + same_query_pos  # minus the anchor's own positive column
            if hits > 0:
                affected += 1
                collisions += hits
    ds = datasets.Dataset.from_dict({c: rows[c].to_list() for c in cols if c != "label"})
    sampler = NoDuplicatesBatchSampler(ds, batch_size=batch_size, drop_last=True, seed=seed)
    kept = sum(len(b) for b in sampler)
    unique_positive = len(set(pos_ids))
    return {
        "rows": n,
        "batch_size": batch_size,
        "unique_positive_passages": unique_positive,
        "none": {"rows_kept": n, "anchors_with_in_batch_false_negatives": affected, "false_negative_pairs": collisions},
        "mask": {"rows_kept": n, "masked_pairs": collisions},
        "no_duplicates_sampler": {"rows_kept": kept, "rows_dropped": n - kept},
    }


# ------------------------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]  # final validation metrics (mean, keys like "ndcg@10")
    train_metrics: dict[str, float]  # trainer's: train_runtime, train_samples_per_second, train_loss, …
    history: list[dict[str, Any]]  # the trainer's log history (loss per logging step, validations)
    rows: RowStats
    duplicates: dict[str, Any]
    resumed_from: str | None
    global_step: int
    wall_time_s: float
    world_size: int = 1  # training processes (torchrun ranks); 1: in-process training


def world_size() -> int:
    """Training processes of this run: torchrun's ``WORLD_SIZE``, 1 outside a distributed launch."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a distributed launch (torchrun's ``RANK``), or the only process: the one that writes results."""
    return int(os.environ.get("RANK", "0")) == 0


def _rank_device(device: str | None) -> str | None:
    """The device of this process. Under torchrun with CUDA, each rank loads onto its own GPU (``cuda:LOCAL_RANK``)
    rather than all onto ``cuda:0`` before the trainer moves them; otherwise ``device`` unchanged."""
    if world_size() == 1 or "LOCAL_RANK" not in os.environ or device not in (None, "cuda"):
        return device
    import torch

    return f"cuda:{int(os.environ['LOCAL_RANK'])}" if torch.cuda.is_available() else device


def _precision(cfg: TrainSettings) -> tuple[bool, bool]:
    """(bf16, fp16) for the trainer: ``auto`` uses bf16 on a CUDA GPU that has it, else fp16 on CUDA, else fp32."""
    import torch

    cuda = torch.cuda.is_available() and (cfg.device is None or cfg.device.startswith("cuda"))
    if cfg.precision == "fp32" or not cuda:
        if cfg.precision in ("bf16", "fp16") and not cuda:
            _log.warning("precision %s needs a CUDA GPU; training in fp32", cfg.precision)
        return False, False
    if cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported()):
        return True, False
    return False, True


def _package_versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", "sentence-transformers", "peft", "lexdpr-pipeline"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _last_checkpoint(checkpoints: Path) -> str | None:
    if not checkpoints.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(checkpoints))


class ValidationEvaluator:
    """sentence-transformers evaluator: validation nDCG@10 (and the rest) on a fixed sample of valid queries."""

    def __init__(self, validate: Callable[[BiEncoder], dict[str, float]], template: Template) -> None:
        from sentence_transformers.base.evaluation import BaseEvaluator

        class _Eval(BaseEvaluator):
            def __init__(self) -> None:
                super().__init__()
                self.primary_metric = "ndcg@10"
                self.name = "valid"

            def __call__(self, model, output_path=None, epoch=-1, steps=-1):  # type: ignore[override]
                metrics = validate(BiEncoder(model, template))
                out = self.prefix_name_to_metrics(metrics, self.name)
                self.store_metrics_in_model_card_data(model, out, epoch, steps)
                return out

        self.evaluator = _Eval()


def train_biencoder(
    base: str | Path,
    rows: pl.DataFrame,
    row_stats: RowStats,
    cfg: TrainSettings,
    work_dir: Path,
    *,
    validate: Callable[[BiEncoder], dict[str, float]] | None = None,
    callbacks: Sequence[Any] = (),
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train from ``base`` on ``rows`` (:func:`training_rows`) into ``work_dir/model``.

    ``work_dir/checkpoints`` holds the trainer's checkpoints; a second call with the same ``work_dir`` after an
    interruption resumes from the last one (``cfg.resume``). ``validate`` scores a model on validation queries
    (``{"ndcg@10": …}``); with it, the best checkpoint by nDCG@10 is kept and early stopping applies.

    Under torchrun (world size > 1) every rank calls this with the same arguments; ``cfg.batch_size`` is per rank.
    The in-training validations run on rank 0 only (sentence-transformers shards their encoding over the ranks and
    broadcasts the metrics, so early stopping and the best checkpoint agree everywhere); the final validation and the
    saved model are rank 0's alone, and other ranks return a result with empty metrics and nothing saved.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import EarlyStoppingCallback

    started = time.perf_counter()
    if rows.height == 0:
        raise ValueError("no training rows: check the train split and train.query_types / hard_negatives")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = work_dir / "checkpoints"
    template = template_for(cfg)
    torch.manual_seed(cfg.seed)
    if Path(str(base)).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    world = world_size()
    device = _rank_device(cfg.device)
    model = SentenceTransformer(str(base), device=device)
    serving_length = model.max_seq_length  # training may use fewer tokens (speed); the saved model keeps the base's
    model.max_seq_length = cfg.max_seq_length
    if cfg.lora:
        from peft import LoraConfig, TaskType

        model.add_adapter(
            LoraConfig(
                task_type=TaskType.FEATURE_EXTRACTION,
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules),
            )
        )
    if cfg.gradient_checkpointing:
        model.transformers_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    import datasets

    cols = trainer_columns(rows)
    train_ds = datasets.Dataset.from_dict({c: rows[c].to_list() for c in cols})
    prompts = {"anchor": template.query, **{c: template.passage for c in cols if c not in ("anchor", "label")}}
    loss = build_loss(
        model,
        kind=cfg.loss,
        temperature=cfg.temperature,
        mask_duplicates=cfg.duplicates == "mask",
        mini_batch_size=cfg.mini_batch_size,
        distill_weight=cfg.distill_weight,
        distill_base=base,
        distill_metric=cfg.distill_metric,
        device=device,
        gather_across_devices=world > 1,  # in-batch negatives from the whole global batch, not one rank's share
    )
    # WiSE-FT (train.interpolate < 1): what is validated and saved is base + interpolate·(fine-tuned − base). LoRA
    # scales its adapter instead and needs no copy of the base weights; full fine-tuning needs them once.
    base_state = None
    if cfg.interpolate < 1 and not cfg.lora:
        base_state = loss.__dict__["base"].state_dict() if isinstance(loss, DistillToBase) else base_state_dict(base)
    score = validate
    if validate is not None and cfg.interpolate < 1:
        score = partial(_validate_mixed, validate, base_state, cfg.interpolate)
    steps_per_epoch = math.ceil(rows.height / (cfg.batch_size * cfg.gradient_accumulation_steps * world))
    max_steps = cfg.test_run_steps if cfg.test_run else (cfg.max_steps or -1)
    total = max_steps if max_steps > 0 else math.ceil(steps_per_epoch * cfg.epochs)
    evaluator = ValidationEvaluator(score, template).evaluator if score else None
    eval_steps = cfg.eval_steps or (total if max_steps > 0 else steps_per_epoch)
    eval_steps = max(1, min(eval_steps, total))
    bf16, fp16 = _precision(cfg)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=math.ceil(cfg.warmup_ratio * total),
        lr_scheduler_type=cfg.scheduler,
        max_grad_norm=cfg.max_grad_norm,
        bf16=bf16,
        fp16=fp16,
        batch_sampler=BatchSamplers.NO_DUPLICATES if cfg.duplicates == "no_duplicates_sampler" else "batch_sampler",
        prompts=prompts,
        eval_strategy="steps" if evaluator else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model="eval_valid_ndcg@10" if evaluator else None,
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        # under DDP every rank needs full, equal batches (gathered in-batch negatives); sentence-transformers would
        # force this itself, with a warning
        dataloader_drop_last=cfg.duplicates == "no_duplicates_sampler" or world > 1,
        disable_tqdm=False,
        use_cpu=device == "cpu",
    )
    trainer_callbacks = list(callbacks)
    if evaluator is not None and cfg.early_stopping_patience:
        trainer_callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_ds, loss=loss, evaluator=evaluator, callbacks=trainer_callbacks
    )
    resume = _last_checkpoint(checkpoints) if cfg.resume else None
    if resume:
        _log.info("resuming from %s", resume)
    output = trainer.train(resume_from_checkpoint=resume)
    model_dir = work_dir / "model"

    def result(metrics: dict[str, float]) -> TrainResult:
        return TrainResult(
            model_dir=model_dir,
            metrics=metrics,
            train_metrics=dict(output.metrics),
            history=list(trainer.state.log_history),
            rows=row_stats,
            duplicates={},
            resumed_from=resume,
            global_step=trainer.state.global_step,
            wall_time_s=time.perf_counter() - started,
            world_size=world,
        )

    if not trainer.is_world_process_zero():  # DDP: rank 0 validates and saves; the others are done
        return result({})
    model.max_seq_length = serving_length
    interpolation = interpolate_(model, base_state, cfg.interpolate)  # the best checkpoint, mixed with the base
    final = validate(BiEncoder(model, template)) if validate else {}
    save_trained(
        model,
        template,
        model_dir,
        base=base,
        cfg=cfg,
        merge=cfg.lora and cfg.merge_lora,
        info={
            **(metadata or {}),
            "training_args": cfg.model_dump(mode="json"),
            "interpolate": cfg.interpolate,
            "interpolation": interpolation,
            "final_validation": final,
            "train_metrics": dict(output.metrics),
            "rows": row_stats.as_dict(),
            "global_step": trainer.state.global_step,
            "world_size": world,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "packages": _package_versions(),
            "masked_in_batch_pairs": getattr(loss, "masked_total", None),
        },
    )
    return result(final)


def _validate_mixed(
    validate: Callable[[BiEncoder], dict[str, float]], base_state: Any, alpha: float, encoder: BiEncoder
) -> dict[str, float]:
    """Score the model as it will be saved: interpolated with its base for the call, restored afterwards.

    Under DDP the interpolation exists on rank 0 only, so the other ranks must not encode shards of this validation
    with their (not interpolated) replicas: sentence-transformers' sharded evaluator inference is switched off for
    the call (``_distributed_inference``, set by ``distributed_evaluation``), and rank 0 encodes everything."""
    model = encoder.model
    sharded = getattr(model, "_distributed_inference", None)
    if sharded is not None:
        model._distributed_inference = None
    try:
        with interpolated(model, base_state, alpha):
            return validate(encoder)
    finally:
        if sharded is not None:
            model._distributed_inference = sharded


# ---------------------------------------------------------------------------------------------- saving / loading


def save_trained(
    model: Any,
    template: Template,
    out_dir: Path,
    *,
    base: str | Path,
    cfg: TrainSettings,
    merge: bool,
    info: dict[str, Any],
) -> Path:
    """Save in sentence-transformers format into ``out_dir`` atomically: staged in a sibling temp folder that replaces
    ``out_dir`` only once complete (:func:`~lexdpr_pipeline.artifacts.staged_folder`), so a failure while saving
    leaves the previous model as it was. An existing ``out_dir`` that is not a saved model is never replaced.

    With LoRA and no merge, only the adapter is stored, and ``lexdpr_adapter.json`` names the base model by a path
    *relative to the model folder* (or a hub id), so the data folder can move. With a merge, the adapter is folded into
    the base weights and the folder is a plain model (the fastest to serve).
    """
    out_dir = Path(out_dir)
    with staged_folder(out_dir, on_exists="replace", replaceable=_is_saved_model) as tmp:
        adapter = None
        if cfg.lora and merge:
            merged = _merge_lora(model)
            merged.save(str(tmp))
        else:
            model.save(str(tmp))
        if cfg.lora and not merge:
            # relative to out_dir (the staged folder becomes out_dir, a sibling: the same relative path)
            base_path = Path(str(base))
            base_ref = os.path.relpath(base_path.resolve(), out_dir.resolve()) if base_path.is_dir() else str(base)
            adapter = {"base": base_ref, "base_is_path": base_path.is_dir()}
            atomic_write_text(tmp / ADAPTER_FILE, json.dumps(adapter, ensure_ascii=False, indent=2))
            cfg_file = tmp / "adapter_config.json"
            if cfg_file.exists():  # transformers wrote the absolute base path: keep the folder relocatable
                data = json.loads(cfg_file.read_text(encoding="utf-8"))
                data["base_model_name_or_path"] = base_ref
                atomic_write_text(cfg_file, json.dumps(data, indent=2))
        template.save(tmp)
        meta = {
            "base_model": str(base),
            "template": {"name": template.name, "query": template.query, "passage": template.passage},
            "lora": {"enabled": cfg.lora, "merged": bool(cfg.lora and merge), "adapter": adapter},
            **info,
        }
        atomic_write_text(tmp / TRAINING_FILE, json.dumps(meta, ensure_ascii=False, indent=2, default=str))
    return out_dir


def _is_saved_model(folder: Path) -> bool:
    """What :func:`save_trained` may replace: an earlier saved model (or an empty folder)."""
    return (folder / TRAINING_FILE).is_file() or (folder / "modules.json").is_file() or not any(folder.iterdir())


def _merge_lora(model: Any) -> Any:
    """Fold the LoRA weights into the base layers, in place, and drop the adapter layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = model.transformers_model
    modules = dict(inner.named_modules())
    for name, layer in list(inner.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else inner, child, layer.get_base_layer())
    # transformers' PEFT integration marks the model as carrying an adapter; a merged model no longer does.
    if getattr(inner, "_hf_peft_config_loaded", False):
        inner._hf_peft_config_loaded = False
    if hasattr(inner, "peft_config"):
        del inner.peft_config
    return model


def read_training_metadata(model_dir: Path) -> dict[str, Any] | None:
    path = Path(model_dir) / TRAINING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _unmeasured(name: str, value: float) -> bool:
    """A runtime counter the trainer reports as 0 because it measured nothing: ``eval_samples_per_second`` /
    ``eval_steps_per_second`` of an evaluator-only validation (no eval dataset, so 0 samples), ``total_flos`` of a
    sentence-transformers model. Logging those zeros would chart a throughput that never happened."""
    return value == 0 and (name.endswith("_per_second") or name == "total_flos")


def metrics_callback(log: Callable[[dict[str, float], int], None]) -> Any:
    """A trainer callback handing every numeric log entry (loss, learning rate, validation, and at the end the
    trainer's train_runtime / train_samples_per_second / train_loss) to ``log(metrics, step)`` at the global step —
    the asset points it at MLflow, so per-step loss lands in the tracking run. Counters that measured nothing
    (:func:`_unmeasured`) are left out."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
            numeric = _loggable(logs or {})
            if numeric:
                log(numeric, state.global_step)

    return _Callback()


def _loggable(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in logs.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not _unmeasured(k, float(v))
    }


def replay_log_history(history: Sequence[dict[str, Any]], log: Callable[[dict[str, float], int], None]) -> None:
    """Hand a finished run's log history to ``log(metrics, step)`` as :func:`metrics_callback` would have during it:
    for training in torchrun workers, whose trainer cannot reach the parent's MLflow run. Each entry is what the
    trainer logged plus its ``step``."""
    for entry in history:
        numeric = _loggable({k: v for k, v in entry.items() if k != "step"})
        if numeric:
            log(numeric, int(entry.get("step", 0)))
