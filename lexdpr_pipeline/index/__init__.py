"""Vector search over passage embeddings (exact inner product; the FAISS index assets build on it)."""
