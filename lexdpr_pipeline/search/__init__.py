"""Retrieval over the indexes (:mod:`lexdpr_pipeline.index`): the dense/BM25/hybrid engine, fusion, batch search."""
