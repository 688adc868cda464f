"""The indexes over passages: exact inner-product search, embeddings + cache, FAISS (:mod:`.faiss_index`) and BM25
(:mod:`.bm25`)."""
