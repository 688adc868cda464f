"""A real, tiny published index (corpus, embeddings, FAISS, BM25, CURRENT.json) built with the library, for the
integration tests of the API and the CLI: the same files the ``faiss_index`` asset publishes, at toy size."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl

from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA

# (doc_id, chunk, source, title, text, law_name, court, case_type, date)
PASSAGES = [
    ("law:001706:750", 0, "law", "민법 제750조(불법행위의 내용)",
     "고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 책임이 있다.",
     "민법", None, None, dt.date(2025, 1, 31)),
    ("law:001706:751", 0, "law", "민법 제751조(재산 이외의 손해의 배상)",
     "타인의 신체, 자유 또는 명예를 해하거나 기타 정신상고통을 가한 자는 재산 이외의 손해에 대하여도 "
     "배상할 책임이 있다.",
     "민법", None, None, dt.date(2025, 1, 31)),
    ("law:001706:390", 0, "law", "민법 제390조(채무불이행과 손해배상)",
     "채무자가 채무의 내용에 좇은 이행을 하지 아니한 때에는 채권자는 손해배상을 청구할 수 있다.",
     "민법", None, None, dt.date(2025, 1, 31)),
    ("law:001692:2", 0, "law", "민사소송법 제2조(보통재판적)",
     "소는 피고의 보통재판적이 있는 곳의 법원이 관할한다.",
     "민사소송법", None, None, dt.date(2024, 1, 16)),
    ("prec:100001", 0, "prec", "대법원 2019다12345 판결 [판시사항]",
     "불법행위로 인한 손해배상청구권의 소멸시효 기산점에 관한 판단.",
     None, "대법원", "민사", dt.date(2019, 5, 30)),
    ("prec:100001", 1, "prec", "대법원 2019다12345 판결 [판결요지]",
     "불법행위로 인한 손해배상청구권은 피해자가 손해 및 가해자를 안 날부터 3년간 행사하지 아니하면 소멸한다.",
     None, "대법원", "민사", dt.date(2019, 5, 30)),
    ("prec:100002", 0, "prec", "서울고등법원 2021나2000 판결 [판시사항]",
     "임대차 계약 해지에 따른 보증금 반환 의무와 동시이행 관계.",
     None, "서울고등법원", "민사", dt.date(2021, 9, 1)),
    ("prec:100003", 0, "prec", "대법원 2022도3000 판결 [판시사항]",
     "사기죄에서 기망행위와 재산상 이익 취득 사이의 인과관계.",
     None, "대법원", "형사", dt.date(2022, 3, 10)),
]  # fmt: skip


def tiny_corpus() -> pl.DataFrame:
    rows = []
    for doc_id, chunk, source, title, text, law_name, court, case_type, date in PASSAGES:
        n_chunks = sum(1 for p in PASSAGES if p[0] == doc_id)
        rows.append(
            {
                "passage_id": f"{doc_id}#{chunk}" if n_chunks > 1 else doc_id,
                "doc_id": doc_id,
                "source": source,
                "section": "article" if source == "law" else ("holdings" if chunk == 0 else "summary"),
                "chunk_index": chunk,
                "n_chunks": n_chunks,
                "title": title,
                "text": text,
                "n_tokens": len(text.split()),
                "law_id": doc_id.split(":")[1] if source == "law" else None,
                "law_name": law_name,
                "law_kind": "법률" if source == "law" else None,
                "article_key": doc_id.split(":")[2] if source == "law" else None,
                "effective_date": date if source == "law" else None,
                "court": court,
                "case_type": case_type,
                "case_no": title.split()[1] if source == "prec" else None,
                "decision_date": date if source == "prec" else None,
                "content_hash": hashlib.sha256(text.encode()).hexdigest(),
            }
        )
    return pl.DataFrame(rows, schema=PASSAGE_SCHEMA, orient="row")


def build_tiny_index(root: Path, model_dir: Path, version: str = "v1", *, faiss_type: str = "flat") -> Path:
    """Build everything in the artifact store at ``root`` and return its pointer file (index_version
    ``index-{version}``)."""
    from lexdpr_pipeline.artifacts import ArtifactStore, IndexPointer, Kind
    from lexdpr_pipeline.index.bm25 import BM25Index
    from lexdpr_pipeline.index.embeddings import embed_corpus
    from lexdpr_pipeline.index.faiss_index import DenseIndex, IndexSpec
    from lexdpr_pipeline.models.biencoder import BiEncoder
    from lexdpr_pipeline.storage import write_parquet

    store = ArtifactStore(root)
    corpus = tiny_corpus()
    corpus_path = write_parquet(corpus, store.table_path("merged_corpus"))
    model = BiEncoder.load(model_dir)
    embedded = embed_corpus(
        corpus,
        model,
        model_version=f"model-{version}",
        root=store.root(Kind.EMBEDDINGS),
        progress=False,
        use_cache=False,
    )
    faiss_path = DenseIndex.build(embedded.embeddings, IndexSpec(faiss_type=faiss_type)).save(
        store.folder(Kind.FAISS, version)
    )
    bm25_path = BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list()).save(
        store.folder(Kind.BM25, version)
    )
    pointer = IndexPointer(
        model_path=str(model_dir),
        model_version=f"model-{version}",
        faiss_path=str(faiss_path),
        faiss_type=faiss_type,
        bm25_path=str(bm25_path),
        corpus_path=str(corpus_path),
        embeddings_path=str(embedded.path),
        passages=corpus.height,
        index_version=f"index-{version}",
        created_at=dt.datetime.now(dt.UTC).isoformat(),
    )
    return store.write_pointer(pointer)
