"""Training on several devices: ``train.nproc_per_node`` > 1 runs :func:`train_biencoder` under torchrun (DDP).

The parent (:func:`train_distributed`, called by ``train_tracked`` inside its MLflow run) writes a job folder, launches
``python -m torch.distributed.run --standalone --nproc_per_node N -m lexdpr_pipeline.models.train_worker JOB_DIR``,
streams the workers' output to its log and reads back the result; MLflow, the manifest and everything after training
stay in the parent, so there is one Dagster run, one MLflow run and one model folder whatever N is.

The job folder (no pickles):

- ``job.json``: base model, ``train`` settings, row stats, metadata for ``lexdpr_training.json``, the work folder,
  and the validation's ``validate_dense`` keyword arguments (or null);
- ``rows.parquet``: the training rows (:func:`~lexdpr_pipeline.models.training.training_rows`);
- ``valid_splits.parquet`` / ``valid_corpus.parquet``: the validation split's queries and the merged corpus, from
  which rank 0 rebuilds exactly the validator the in-process training would use;
- ``result.json``: written by rank 0 only (atomically), turned back into a :class:`TrainResult`.

Validation under DDP: sentence-transformers (6.2) runs the trainer's evaluator on rank 0 only, shards the encoding of
that one call over all ranks, and broadcasts the metrics, so every rank's early stopping and best checkpoint agree
(``SentenceTransformerTrainer.evaluation_loop``). Every rank therefore gets a validator (so the evaluator exists and
the evaluation steps line up), but only rank 0 calls it: :class:`ParquetValidator` reads its Parquet inputs on first
use, so other ranks never load the corpus. The final validation and the saved model are rank 0's
(:func:`train_biencoder`); other ranks write no model folder, no result, nothing of MLflow's. (The trainer's
checkpoints are shared: each rank adds its own ``rng_state_<rank>.pth`` to them, which resuming needs.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lexdpr_pipeline.models.training import RowStats, TrainResult, is_main_process, train_biencoder
from lexdpr_pipeline.settings import TrainSettings
from lexdpr_pipeline.storage import atomic_write_text, write_parquet

JOB_FILE = "job.json"
ROWS_FILE = "rows.parquet"
VALID_SPLITS_FILE = "valid_splits.parquet"
VALID_CORPUS_FILE = "valid_corpus.parquet"
RESULT_FILE = "result.json"
STDERR_TAIL_LINES = 40
_log = logging.getLogger(__name__)


class DistributedTrainingError(RuntimeError):
    """torchrun (or a worker under it) failed; the message has the exit code and the tail of its stderr."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class ValidationInputs:
    """What the validator is made of, for the workers to rebuild it: ``validate_dense(model, splits, corpus,
    **kwargs)``. ``kwargs`` must be JSON (``split``, ``max_queries``, ``corpus_max_passages``, ``ks``, ``seed``, …)."""

    splits: pl.DataFrame
    corpus: pl.DataFrame
    kwargs: dict[str, Any]


# ------------------------------------------------------------------------------------------------------ parent side


def check_launchable(cfg: TrainSettings) -> None:
    """Refuse ``train.nproc_per_node`` > 1 where it cannot work, before anything starts."""
    n = cfg.nproc_per_node
    if n == 1:
        return
    device = cfg.device or ""
    if device == "mps":
        raise ValueError("train.nproc_per_node > 1 needs CUDA GPUs or train.device=cpu (gloo), not mps")
    if device.startswith("cuda:"):
        raise ValueError(
            f"train.device={device} names one GPU, but train.nproc_per_node={n} trains one process per GPU: "
            "use train.device=cuda (each rank takes cuda:LOCAL_RANK)"
        )
    import torch

    if device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < n:
        raise ValueError(f"train.nproc_per_node={n}, but this machine has {torch.cuda.device_count()} GPU(s)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda, but torch finds no CUDA GPU")


def train_distributed(
    base: str | Path,
    rows: pl.DataFrame,
    row_stats: RowStats,
    cfg: TrainSettings,
    work_dir: Path,
    *,
    validation: ValidationInputs | None = None,
    metadata: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> TrainResult:
    """:func:`~lexdpr_pipeline.models.training.train_biencoder` on ``cfg.nproc_per_node`` processes: the same
    arguments, except that the validator is given as :class:`ValidationInputs` and there are no trainer callbacks
    (they cannot cross into the workers; the caller replays ``TrainResult.history`` instead). Returns rank 0's
    ``TrainResult``; raises :class:`DistributedTrainingError` when the launch fails."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=".train-job-", dir=work_dir))  # the data volume, not a small /tmp
    try:
        write_job(job_dir, base, rows, row_stats, cfg, work_dir, validation=validation, metadata=metadata)
        launch(job_dir, cfg.nproc_per_node, log=log)
        result = read_result(job_dir)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    return result


def write_job(
    job_dir: Path,
    base: str | Path,
    rows: pl.DataFrame,
    row_stats: RowStats,
    cfg: TrainSettings,
    work_dir: Path,
    *,
    validation: ValidationInputs | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """The job folder the workers read (see the module doc). Returns ``job_dir``."""
    job_dir = Path(job_dir)
    write_parquet(rows, job_dir / ROWS_FILE)
    if validation is not None:
        split = validation.kwargs.get("split", "valid")
        # validate_dense only looks at its split's rows; the corpus goes whole (its sample and exclusions need it)
        write_parquet(validation.splits.filter(pl.col("split") == split), job_dir / VALID_SPLITS_FILE)
        write_parquet(validation.corpus, job_dir / VALID_CORPUS_FILE)
    job = {
        "base": str(base),
        "train": cfg.model_dump(mode="json"),
        "row_stats": dataclasses.asdict(row_stats),
        "metadata": dict(metadata or {}),
        "work_dir": str(Path(work_dir).resolve()),
        "validation": dict(validation.kwargs) if validation is not None else None,
    }
    atomic_write_text(job_dir / JOB_FILE, json.dumps(job, ensure_ascii=False, indent=2, default=str))
    return job_dir


def torchrun_command(job_dir: Path, nproc: int) -> list[str]:
    """torchrun of this interpreter (the venv's torch), one process per device, on a local rendezvous."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "lexdpr_pipeline.models.train_worker",
        str(job_dir),
    ]


def launch(job_dir: Path, nproc: int, *, log: logging.Logger | None = None) -> None:
    """Run the workers on ``job_dir`` and wait. Their stdout and stderr go to ``log`` line by line (from this thread:
    a Dagster logger is not called from reader threads); a non-zero exit raises :class:`DistributedTrainingError`
    with the exit code and the last :data:`STDERR_TAIL_LINES` lines of stderr. If this process is interrupted, the
    workers are terminated."""
    log = log or _log
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("TQDM_MININTERVAL", "30")  # progress bars as a log line every 30 s, not every update
    command = torchrun_command(job_dir, nproc)
    log.info(f"training on {nproc} processes: {' '.join(command)}")
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env
    )
    readers = [
        threading.Thread(target=_pump, args=(stream, name, lines), daemon=True)
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
    ]
    for reader in readers:
        reader.start()
    try:
        open_streams = len(readers)
        while open_streams:
            name, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            if name == "stderr":
                tail.append(line)
            if line.strip():
                log.info(f"[torchrun] {line}")
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            _stop(proc)
    if returncode != 0:
        raise DistributedTrainingError(
            f"distributed training failed: torchrun ({nproc} processes) exited with code {returncode}; "
            f"last lines of its stderr:\n" + "\n".join(tail),
            returncode,
        )


def _pump(stream: Any, name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    for line in stream:
        lines.put((name, line.rstrip("\n")))
    lines.put((name, None))


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM torchrun (it forwards the signal to its workers), then SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_result(job_dir: Path) -> TrainResult:
    """Rank 0's ``result.json`` as a :class:`~lexdpr_pipeline.models.training.TrainResult`."""
    path = Path(job_dir) / RESULT_FILE
    if not path.is_file():
        raise DistributedTrainingError(f"torchrun exited with code 0, but rank 0 wrote no {RESULT_FILE}", 0)
    data = json.loads(path.read_text(encoding="utf-8"))
    return TrainResult(
        model_dir=Path(data["model_dir"]),
        metrics=data["metrics"],
        train_metrics=data["train_metrics"],
        history=data["history"],
        rows=_row_stats(data["rows"]),
        duplicates=data["duplicates"],
        resumed_from=data["resumed_from"],
        global_step=data["global_step"],
        wall_time_s=data["wall_time_s"],
        world_size=data["world_size"],
    )


def _row_stats(data: Mapping[str, Any]) -> RowStats:
    return RowStats(**{**data, "skipped": Counter(data.get("skipped", {}))})


# ------------------------------------------------------------------------------------------------------ worker side


class ParquetValidator:
    """``validate_dense`` on the Parquet inputs of a job folder, read on the first call only (under DDP only rank 0
    validates, so the other ranks never load the corpus)."""

    def __init__(self, job_dir: Path, kwargs: Mapping[str, Any]) -> None:
        self.job_dir = Path(job_dir)
        self.kwargs = {**kwargs, **({"ks": tuple(kwargs["ks"])} if "ks" in kwargs else {})}
        self._inputs: tuple[pl.DataFrame, pl.DataFrame] | None = None

    def __call__(self, model: Any) -> dict[str, float]:
        from lexdpr_pipeline.evaluation.validation import validate_dense

        if self._inputs is None:
            splits = pl.read_parquet(self.job_dir / VALID_SPLITS_FILE)
            corpus = pl.read_parquet(self.job_dir / VALID_CORPUS_FILE)
            self._inputs = (splits, corpus)
        splits, corpus = self._inputs
        return validate_dense(model, splits, corpus, **self.kwargs)


def run_job(job_dir: Path) -> TrainResult:
    """One rank's part: train on the job folder; rank 0 writes ``result.json``. Returns this rank's result."""
    job_dir = Path(job_dir)
    job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    cfg = TrainSettings.model_validate(job["train"])
    rows = pl.read_parquet(job_dir / ROWS_FILE)
    validate: Callable[[Any], dict[str, float]] | None = None
    if job["validation"] is not None:
        validate = ParquetValidator(job_dir, job["validation"])
    result = train_biencoder(
        job["base"],
        rows,
        _row_stats(job["row_stats"]),
        cfg,
        Path(job["work_dir"]),
        validate=validate,
        metadata=job["metadata"],
    )
    if is_main_process():
        data = {
            **{f.name: getattr(result, f.name) for f in dataclasses.fields(result)},
            "model_dir": str(result.model_dir),
            "rows": dataclasses.asdict(result.rows),
        }
        atomic_write_text(job_dir / RESULT_FILE, json.dumps(data, ensure_ascii=False, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    """The worker under torchrun. A failure is recorded for torchrun's summary (``record``), so the parent's error
    ends with the root cause's traceback."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_main)(argv)


def _main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lexdpr_pipeline.models.train_worker JOB_DIR (under torchrun)", file=sys.stderr)
        return 2
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run_job(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
