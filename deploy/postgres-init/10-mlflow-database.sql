-- Run once by the postgres image on an empty data volume: MLflow's backend store gets its own database next to
-- Dagster's (POSTGRES_DB=dagster); both have a `runs` table, so they cannot share one.
CREATE DATABASE mlflow;
