"""The HTTP API (FastAPI): health, embeddings and search over the current index. See docs/API.md."""
