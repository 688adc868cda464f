"""A job for the concurrency test: two independent model-tagged steps and one untagged, on the project's executor.

Each step records when it ran in ``$LEXDPR_TEST_SPANS`` (one file per step), so the test can see what overlapped.
"""

import os
import time
from pathlib import Path

import dagster as dg

from lexdpr_pipeline.assets.common import MODEL_STEP_TAGS
from lexdpr_pipeline.definitions import run_executor


def _span(name: str) -> None:
    start = time.time()
    time.sleep(1.5)
    out = Path(os.environ["LEXDPR_TEST_SPANS"]) / name
    out.write_text(f"{start} {time.time()}")


@dg.op(tags=MODEL_STEP_TAGS)
def model_a() -> None:
    _span("model_a")


@dg.op(tags=MODEL_STEP_TAGS)
def model_b() -> None:
    _span("model_b")


@dg.op
def plain() -> None:
    _span("plain")


@dg.job(executor_def=run_executor(1, max_concurrent=3))
def concurrency_job() -> None:
    model_a()
    model_b()
    plain()
