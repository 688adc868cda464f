"""Retrieval: BM25 (and later dense/FAISS and hybrid) search."""
