"""Passage embeddings: a stored set per (model, corpus) plus an incremental per-model cache.

An :class:`EmbeddingSet` is a folder ``<root>/<key>/`` (``key`` = hash of the model version and the corpus's
passage ids + content hashes) holding ``vectors.npy`` (N×d float32, L2-normalized, row i ↔ id i),
``ids.parquet`` (passage_id, content_hash, row) and ``embeddings.json``. The folder is written as a temp sibling and
renamed into place.

The :class:`EmbeddingCache` (``<root>/cache/<hash of model version>/``) maps a passage's ``content_hash`` to its
vector for one model. It is a set of shards (``shard-*.npy`` + ``shard-*.parquet`` with content_hash and row); the
Parquet file is written last and is the shard's commit marker, so an interrupted run leaves usable shards behind and
resumes where it stopped. After a corpus refresh only passages whose content hash is not cached are encoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from lexdpr_pipeline.artifacts.manifests import EmbeddingSetManifest
from lexdpr_pipeline.artifacts.staging import staged_folder
from lexdpr_pipeline.storage import atomic_write_bytes, atomic_write_text, save_npy_atomic, write_parquet

logger = logging.getLogger(__name__)

FORMAT = "lexdpr-embeddings"
FORMAT_VERSION = 1
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.parquet"
META_FILE = "embeddings.json"
CACHE_DIR = "cache"
SHARD_ROWS = 8192  # passages encoded (and cached) per shard: the unit of progress and of resumption
MAX_SHARDS = 64  # more shards than this and the cache is compacted into one

EXPORT_FORMATS = ("npz", "npy", "hdf5")


class PassageEncoder(Protocol):
    """What embedding needs from a model (:class:`~lexdpr_pipeline.models.biencoder.BiEncoder` has it)."""

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray: ...


def model_version_hash(model_version: str) -> str:
    return hashlib.sha256(f"{FORMAT}:{FORMAT_VERSION}:{model_version}".encode()).hexdigest()[:20]


def embeddings_key(model_version: str, ids: Sequence[str], content_hashes: Sequence[str]) -> str:
    """Content key of an embedding set: the model version and the ordered (passage id, content hash) pairs."""
    h = hashlib.sha256(f"{FORMAT}:{FORMAT_VERSION}:{model_version}\n".encode())
    for pid, chash in zip(ids, content_hashes, strict=True):
        h.update(f"{pid}\0{chash}\1".encode())
    return h.hexdigest()


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass
class EmbeddingSet:
    """Vectors (row i) for passages ``ids[i]`` with content hashes ``content_hashes[i]``."""

    ids: list[str]
    content_hashes: list[str]
    vectors: np.ndarray
    model_version: str
    model_path: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (
            self.vectors.ndim != 2
            or self.vectors.shape[0] != len(self.ids)
            or len(self.ids) != len(self.content_hashes)
        ):
            raise ValueError(
                f"{len(self.ids)} ids, {len(self.content_hashes)} hashes, vectors of shape {self.vectors.shape}"
            )
        if self.key is None:
            self.key = embeddings_key(self.model_version, self.ids, self.content_hashes)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"passage_id": self.ids, "content_hash": self.content_hashes, "row": np.arange(len(self.ids))},
            schema={"passage_id": pl.String(), "content_hash": pl.String(), "row": pl.Int64()},
        )

    def save(self, directory: Path) -> Path:
        """Write the set to ``directory`` atomically (kept as is when it already exists: content-addressed)."""
        directory = Path(directory)
        with staged_folder(directory) as tmp:
            save_npy_atomic(tmp / VECTORS_FILE, self.vectors.astype(np.float32, copy=False))
            write_parquet(self.frame(), tmp / IDS_FILE)
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "key": self.key,
                "model_version": self.model_version,
                "model_path": self.model_path,
                "passages": len(self.ids),
                "dim": self.dim,
            }
            atomic_write_text(tmp / META_FILE, json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> EmbeddingSet:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no embeddings at {directory} ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported embeddings format {meta.get('format')!r}")
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        ids = pl.read_parquet(directory / IDS_FILE).sort("row")
        if vectors.shape != (meta["passages"], meta["dim"]) or ids.height != meta["passages"]:
            raise ValueError(
                f"{directory}: vectors {vectors.shape}, {ids.height} ids, recorded {meta['passages']}×{meta['dim']}; "
                "the folder is damaged"
            )
        return cls(
            ids=ids["passage_id"].to_list(),
            content_hashes=ids["content_hash"].to_list(),
            vectors=vectors,
            model_version=meta["model_version"],
            model_path=meta.get("model_path"),
            key=meta["key"],
        )


class EmbeddingCache:
    """Vectors by content hash for one model version (see module doc)."""

    def __init__(self, root: Path, model_version: str) -> None:
        self.model_version = model_version
        self.dir = Path(root) / model_version_hash(model_version)

    def shards(self) -> list[tuple[Path, Path]]:
        """Committed shards ``(npy, parquet)``, oldest name first."""
        if not self.dir.is_dir():
            return []
        out = []
        for pq in sorted(self.dir.glob("shard-*.parquet")):
            npy = pq.with_suffix(".npy")
            if npy.is_file():
                out.append((npy, pq))
        return out

    def _index(self) -> pl.DataFrame:
        frames = []
        for i, (npy, pq) in enumerate(self.shards()):
            table = pl.read_parquet(pq)
            rows = np.load(npy, mmap_mode="r", allow_pickle=False).shape[0]
            if table.height != rows:
                logger.warning(
                    "embedding cache: skipping damaged shard %s (%d ids, %d vectors)", pq, table.height, rows
                )
                continue
            frames.append(table.select("content_hash", "row").with_columns(pl.lit(i, pl.Int32).alias("shard")))
        if not frames:
            return pl.DataFrame(schema={"content_hash": pl.String(), "row": pl.Int64(), "shard": pl.Int32()})
        return pl.concat(frames).unique("content_hash", keep="first", maintain_order=True)

    def __len__(self) -> int:
        return self._index().height

    def lookup(self, content_hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(positions, vectors)``: which of ``content_hashes`` are cached (their positions in the input) and their
        vectors in the same order (``None`` when none is cached)."""
        index = self._index()
        want = pl.DataFrame(
            {"content_hash": list(content_hashes), "pos": np.arange(len(content_hashes))},
            schema={"content_hash": pl.String(), "pos": pl.Int64()},
        )
        hits = want.join(index, on="content_hash", how="inner").sort("pos")
        if hits.is_empty():
            return np.zeros(0, np.int64), None
        shards = self.shards()
        out: np.ndarray | None = None
        shard_col, row_col = hits["shard"].to_numpy(), hits["row"].to_numpy()
        for shard in np.unique(shard_col):
            arr = np.load(shards[int(shard)][0], mmap_mode="r", allow_pickle=False)
            if out is None:
                out = np.empty((hits.height, arr.shape[1]), np.float32)
            sel = np.flatnonzero(shard_col == shard)
            out[sel] = arr[row_col[sel]]
        return hits["pos"].to_numpy(), out

    def add(self, content_hashes: Sequence[str], vectors: np.ndarray) -> Path:
        """Store one shard: vectors first, then the Parquet commit marker."""
        if len(content_hashes) != vectors.shape[0]:
            raise ValueError(f"{len(content_hashes)} hashes for {vectors.shape[0]} vectors")
        name = f"shard-{uuid.uuid4().hex[:16]}"
        save_npy_atomic(self.dir / f"{name}.npy", vectors.astype(np.float32, copy=False))
        table = pl.DataFrame(
            {"content_hash": list(content_hashes), "row": np.arange(len(content_hashes))},
            schema={"content_hash": pl.String(), "row": pl.Int64()},
        )
        return write_parquet(table, self.dir / f"{name}.parquet")

    def compact(self, keep: set[str] | None = None) -> int:
        """Merge every shard into one (only ``keep``'s hashes when given); returns the vectors kept."""
        shards = self.shards()
        index = self._index()
        if keep is not None:
            index = index.filter(pl.col("content_hash").is_in(list(keep)))
        hashes = index["content_hash"].to_list()
        positions, vectors = self.lookup(hashes)
        if vectors is not None:
            self.add([hashes[i] for i in positions], vectors)
        for npy, pq in shards:
            pq.unlink(missing_ok=True)  # the marker first: a half-removed shard is never read
            npy.unlink(missing_ok=True)
        return len(positions)


@dataclass
class EmbedResult:
    embeddings: EmbeddingSet
    path: Path
    encoded: int  # passages encoded now
    reused: int  # passages whose vectors came from the cache or an existing set
    from_existing: bool  # the whole set already existed under its key

    def manifest(
        self,
        model_path: str,
        encoder_backend: str = "torch",
        encoder_path: str | None = None,
        *,
        query_backend: str | None = None,
        query_path: str | None = None,
    ) -> EmbeddingSetManifest:
        """What the ``passage_embeddings`` asset records (``model_path``: the model as it was chosen for this run;
        ``encoder_backend`` / ``encoder_path``: the runtime that embedded it, which queries use too unless
        ``query_backend`` / ``query_path`` name another one gated against these vectors)."""
        emb = self.embeddings
        return EmbeddingSetManifest(
            path=str(self.path),
            model_path=model_path,
            model_version=emb.model_version,
            dim=emb.dim,
            passages=len(emb),
            content_hash=str(emb.key),
            reused=self.reused,
            encoded=self.encoded,
            encoder_backend=encoder_backend,
            encoder_path=encoder_path,
            query_backend=query_backend,
            query_path=query_path,
        )


def _corpus_columns(corpus: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    missing = {"passage_id", "content_hash", "text"} - set(corpus.columns)
    if missing:
        raise ValueError(f"corpus lacks columns {sorted(missing)}")
    if corpus.is_empty():
        raise ValueError("cannot embed an empty corpus")
    nulls = {c: corpus[c].null_count() for c in ("passage_id", "content_hash", "text") if corpus[c].null_count()}
    if nulls:
        raise ValueError(f"corpus has null values (column: count) {nulls}")
    if corpus["passage_id"].n_unique() != corpus.height:
        dupes = corpus.filter(pl.col("passage_id").is_duplicated())["passage_id"].unique().head(5).to_list()
        raise ValueError(f"passage ids must be unique, e.g. {dupes}")
    return corpus["passage_id"].to_list(), corpus["content_hash"].to_list(), corpus["text"].to_list()


def embed_corpus(
    corpus: pl.DataFrame,
    encoder: PassageEncoder | Callable[[], PassageEncoder],
    *,
    model_version: str,
    root: Path,
    cache_root: Path | None = None,
    model_path: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    use_cache: bool = True,
) -> EmbedResult:
    """Embed ``corpus`` (passage_id, content_hash, text) into ``<root>/<key>/``, encoding only what the cache lacks.

    ``encoder`` may be a zero-argument factory: the model is then only loaded when something needs encoding.
    ``cache_root``: where the per-model caches live (default ``<root>/cache``; the pipeline passes the store's
    ``Kind.EMBEDDING_CACHE`` root, which evaluation shares).
    """
    ids, hashes, texts = _corpus_columns(corpus)
    key = embeddings_key(model_version, ids, hashes)
    target = Path(root) / key[:20]
    if (target / META_FILE).is_file():
        existing = EmbeddingSet.load(target)
        if existing.key == key:
            return EmbedResult(existing, target, encoded=0, reused=len(ids), from_existing=True)
        raise ValueError(f"{target} holds embeddings with key {existing.key}, expected {key}")

    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    unique = list(first)
    cache_dir = Path(cache_root) if cache_root is not None else Path(root) / CACHE_DIR
    cache = EmbeddingCache(cache_dir, model_version) if use_cache else None
    vectors_by_hash: dict[str, np.ndarray] = {}
    found_pos, found_vecs = cache.lookup(unique) if cache else (np.zeros(0, np.int64), None)
    if found_vecs is not None:
        for pos, vec in zip(found_pos, found_vecs, strict=True):
            vectors_by_hash[unique[pos]] = vec
    todo = [h for h in unique if h not in vectors_by_hash]
    todo.sort(key=lambda h: len(texts[first[h]]), reverse=True)  # similar lengths share batches (less padding)
    if todo and not hasattr(encoder, "encode_passages"):
        encoder = encoder()
    with tqdm(total=len(todo), desc="embed passages", unit="passage", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), SHARD_ROWS):
            chunk = todo[start : start + SHARD_ROWS]
            batch = [texts[first[h]] for h in chunk]
            vecs = np.asarray(encoder.encode_passages(batch, batch_size=batch_size))  # type: ignore[union-attr]
            if vecs.ndim != 2 or vecs.shape[0] != len(chunk):
                raise ValueError(f"encoder returned shape {vecs.shape} for {len(chunk)} passages")
            if not np.isfinite(vecs).all():
                raise ValueError("encoder returned non-finite values (NaN/inf)")
            vecs = _normalize(vecs)
            if cache is not None:
                cache.add(chunk, vecs)
            vectors_by_hash.update(zip(chunk, vecs, strict=True))
            bar.update(len(chunk))
    dims = {v.shape[0] for v in vectors_by_hash.values()}
    if len(dims) != 1:
        raise ValueError(
            f"vectors of different widths {sorted(dims)} for one model version: clear {cache and cache.dir}"
        )
    vectors = np.stack([vectors_by_hash[h] for h in hashes]).astype(np.float32, copy=False)
    encoded_hashes = set(todo)
    encoded = sum(1 for h in hashes if h in encoded_hashes)
    result = EmbeddingSet(ids, hashes, vectors, model_version, model_path, key)
    result.save(target)
    if cache is not None and len(cache.shards()) > MAX_SHARDS:
        cache.compact()
    logger.info("embeddings %s: %d passages, %d encoded, %d reused", target, len(ids), encoded, len(ids) - encoded)
    return EmbedResult(result, target, encoded=encoded, reused=len(ids) - encoded, from_existing=False)


# export ---------------------------------------------------------------------------------------------------------------


def export_formats_available() -> list[str]:
    """``npz`` and ``npy`` always; ``hdf5`` only where h5py is installed."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        return ["npz", "npy"]
    return list(EXPORT_FORMATS)


def export_embeddings(embeddings: EmbeddingSet, path: Path, fmt: str | None = None) -> list[Path]:
    """Write ``embeddings`` for use elsewhere; returns the files written.

    - ``npz``: one file with ``ids``, ``content_hashes`` (unicode arrays, no pickles) and ``vectors``.
    - ``npy``: the vectors at ``path`` plus ``<stem>.ids.parquet`` (passage_id, content_hash, row).
    - ``hdf5``: datasets ``ids``, ``content_hashes``, ``vectors`` (needs h5py; a clear error otherwise).

    ``fmt`` defaults to the suffix of ``path``.
    """
    import io

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    fmt = {"h5": "hdf5"}.get(fmt, fmt)
    vectors = np.asarray(embeddings.vectors, dtype=np.float32)
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(
            buf,
            ids=np.asarray(embeddings.ids, dtype=str),
            content_hashes=np.asarray(embeddings.content_hashes, dtype=str),
            vectors=vectors,
        )
        return [atomic_write_bytes(path, buf.getvalue())]
    if fmt == "npy":
        ids_path = path.with_name(f"{path.stem}.ids.parquet")
        return [save_npy_atomic(path, vectors), write_parquet(embeddings.frame(), ids_path)]
    if fmt == "hdf5":
        try:
            import h5py
        except ImportError as exc:
            raise RuntimeError("HDF5 export needs h5py, which is not installed: use npz or npy") from exc
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            with h5py.File(tmp, "w") as fh:
                fh.create_dataset("ids", data=np.asarray(embeddings.ids, dtype=object), dtype=h5py.string_dtype())
                fh.create_dataset(
                    "content_hashes",
                    data=np.asarray(embeddings.content_hashes, dtype=object),
                    dtype=h5py.string_dtype(),
                )
                fh.create_dataset("vectors", data=vectors)
                fh.attrs["model_version"] = embeddings.model_version
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return [path]
    raise ValueError(f"unknown export format {fmt!r}: use one of {list(EXPORT_FORMATS)}")
