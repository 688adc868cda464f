"""Hyperparameter sweeps: a YAML search space (:mod:`.space`), the Optuna study with MLflow runs (:mod:`.runner`),
the sweep over the stored training data that ``sweep_job`` runs (:mod:`.stored`) and the summary it leaves behind
(:mod:`.report`). No Dagster imports: ``assets/sweeps.py`` is the Dagster layer."""
