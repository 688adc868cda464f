"""Hyperparameter sweeps: a YAML search space (:mod:`.space`), the Optuna study with MLflow runs (:mod:`.runner`),
and the summary it leaves behind (:mod:`.report`). No Dagster imports: ``assets/sweeps.py`` is the Dagster layer."""
