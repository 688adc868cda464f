"""A small stand-in for ``SearchEngine`` (same methods and attributes) for API and CLI tests that are about the
server / command plumbing rather than retrieval quality. Integration tests use the real engine."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DIM = 8


@dataclass
class FakeHit:
    rank: int
    doc_id: str
    passage_id: str
    score: float
    title: str
    snippet: str
    source: str
    dense_score: float | None
    bm25_score: float | None
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _vector(text: str, salt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:4], "little")
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


class FakeEngine:
    """Three documents; scores depend on the query so results are deterministic. ``gate``: when set, ``search``
    waits for it (a request held in flight while the test swaps engines)."""

    def __init__(self, version: str = "v1", *, fail_on: str | None = None) -> None:
        self.versions: dict[str, Any] = {
            "model_version": f"model-{version}",
            "index_version": f"index-{version}",
            "faiss_type": "flat",
            "passages": 3,
            "by_source": {"law": 2, "prec": 1},
            "default_mode": "hybrid",
        }
        self.calls: list[dict[str, Any]] = []
        self.fail_on = fail_on
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def search(self, query: str, *, top_k: int = 10, mode=None, filters=None, threshold=None) -> list[FakeHit]:
        self.calls.append({"query": query, "top_k": top_k, "mode": mode, "filters": filters, "threshold": threshold})
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.fail_on is not None and self.fail_on in query:
            raise RuntimeError(f"cannot search {query!r}")
        docs = [
            ("law:001:750", "민법 제750조(불법행위의 내용)", "law"),
            ("law:001:751", "민법 제751조(재산 이외의 손해의 배상)", "law"),
            ("prec:12345", "대법원 2020다12345 판결", "prec"),
        ]
        hits = []
        for i, (doc_id, title, source) in enumerate(docs):
            score = round(1.0 / (i + 1) + len(query) / 1000, 4)
            if threshold is not None and score < threshold:
                continue
            hits.append(
                FakeHit(i + 1, doc_id, f"{doc_id}#0", score, title, f"{title} … {query}", source, score, 10.0 - i)
            )
        return hits[:top_k]

    def search_many(self, queries, **options) -> list[list[FakeHit]]:
        if self.fail_on is not None and any(self.fail_on in q for q in queries):
            raise RuntimeError("batch failed")
        return [self.search(q, **options) for q in queries]

    def embed_queries(self, texts) -> np.ndarray:
        return np.stack([_vector(t, "query") for t in texts])

    def embed_passages(self, texts) -> np.ndarray:
        return np.stack([_vector(t, "passage") for t in texts])
