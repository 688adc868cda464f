"""Asset jobs. The mirrors are observable source assets: a job that reads them observes them first, so every
materialization records which version of the mirror it read."""

import dagster as dg

from lexdpr_pipeline.assets.ingest import GROUP as INGEST_GROUP
from lexdpr_pipeline.assets.ingest import SOURCES_GROUP

OBSERVE_JOB_NAME = "observe_sources_job"

_sources = dg.AssetSelection.groups(SOURCES_GROUP, include_sources=True)

observe_sources_job = dg.define_asset_job(
    OBSERVE_JOB_NAME,
    selection=_sources,
    description="Fingerprint the source mirrors, so a changed mirror makes its ingest asset stale.",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=_sources | dg.AssetSelection.groups(INGEST_GROUP),
    description="Observe the mirrors, then (re)read or (re)crawl every source; API crawls are incremental.",
)

# Named by string, not imported: the CLI imports this module and must not pull in the training stack.
TRAINED_MODEL_KEY = dg.AssetKey("trained_model")
MODEL_TRAINING_SELECTION = dg.AssetSelection.assets(TRAINED_MODEL_KEY, "model_evaluation") | dg.AssetSelection.groups(
    "evaluation", "sweeps"
)
#: What a corpus change refreshes: everything below ingest except training, evaluation and sweeps. passage_embeddings
#: and faiss_index stay in: they embed the changed passages with the current (last materialized) trained model.
REFRESH_SELECTION = dg.AssetSelection.groups(INGEST_GROUP).downstream(include_self=False) - MODEL_TRAINING_SELECTION
#: What a retraining runs: the model and everything that depends on it (evaluation, embeddings, FAISS index).
RETRAIN_SELECTION = dg.AssetSelection.assets(TRAINED_MODEL_KEY).downstream(include_self=True)

downstream_refresh_job = dg.define_asset_job(
    "downstream_refresh_job",
    selection=REFRESH_SELECTION,
    description="Everything below ingest except model training and evaluation: passages, corpus, BM25, citations, "
    "pairs, splits, and the embeddings + FAISS index of changed passages with the current model. The refresh "
    "sensor asks for what changed only.",
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=RETRAIN_SELECTION,
    description="Train the model on the current pairs, evaluate it, re-embed the corpus with it and rebuild the "
    "FAISS index. Runs only when launched (UI), by the retrain_when_pairs_grow sensor (schedule.retrain_min_growth) "
    "or by the retrain schedule (schedule.retrain_cron); `lex-dpr train` trains the model alone.",
)
