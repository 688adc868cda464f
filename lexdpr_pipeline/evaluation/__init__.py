"""Retrieval evaluation: the fine-tuned model vs the zero-shot base model vs BM25, on the valid/test queries.

- :mod:`.queries`: which queries, what is relevant, what is excluded (the query's own decision)
- :mod:`.corpus`: the corpus searched (all, or positives + a seeded random sample)
- :mod:`.retrievers`: dense (exact cosine) and BM25 rankings
- :mod:`.scoring`: metrics per system, overall / per query type / per source, and per-query ranks
- :mod:`.validation`: the quick dense validation used for early stopping while training
- :mod:`.report`: the markdown report and bar chart
- :mod:`.run`: one evaluation end to end; :mod:`.tracked`: that evaluation as an MLflow run (the ``model_evaluation``
  asset's workflow)
"""
