"""Text processing: passages, chunking to a token budget, Korean tokenization."""
