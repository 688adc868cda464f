"""The dense passage index: FAISS (flat | ivf | ivfpq | hnsw, inner product on normalized vectors = cosine).

Flat and HNSW indexes are an ``IndexIDMap2`` around the base index; IVF and IVF-PQ indexes store ids themselves
(``IndexIDMap.remove_ids`` renumbers as if the inner index were flat, which corrupts an IVF's ids). FAISS ids
("labels") are int64 numbers assigned here; ``ids.parquet`` (label, passage_id, content_hash) maps them to passages.
Labels stay stable across incremental updates (new passages get new labels, removed ones leave gaps).

On disk (:meth:`DenseIndex.save`) an index is a folder: ``index.faiss``, ``ids.parquet`` and ``faiss_index.json``
(type, build and search parameters, dim, model version, embeddings key), written as a temp sibling and renamed.

Search-time parameters (``ivf_nprobe``, ``hnsw_ef_search``, ``pq_rerank``) are not part of the index identity: they
come from the settings when an index is loaded.

IVF-PQ (``ivfpq``) keeps only ``pq_m·pq_nbits/8`` bytes of code per passage (plus its 8-byte id), not the float
vectors: its coarse lists and codebooks are trained on a seeded sample (at most ``PQ_TRAIN_MAX`` vectors, or 39 per
list if that is more). Its scores are approximate, so when the passage vectors are attached (:meth:`attach_vectors`,
memory-mapped by the search engine) the top ``pq_rerank`` candidates are re-scored exactly. PQ codebooks need
``39·2^pq_nbits`` training points (9,984 at 8 bits): a smaller corpus gets an exact flat index instead, recorded in
``info`` (``built_as: flat``, ``fallback``) and rebuilt as IVF-PQ once an update has enough passages.

Incremental updates (:meth:`DenseIndex.update`) compare the stored (passage_id, content_hash) pairs with a new
embedding set: flat, IVF and IVF-PQ remove the changed/dropped passages and add the changed/new ones (new IVF-PQ
vectors are encoded with the existing codebooks); HNSW cannot remove (FAISS limitation), so any removal rebuilds it;
IVF and IVF-PQ also rebuild when too much changed (their centroids would no longer fit the data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from lexdpr_pipeline.artifacts.staging import staged_folder
from lexdpr_pipeline.index.embeddings import EmbeddingSet
from lexdpr_pipeline.index.exact import exact_search
from lexdpr_pipeline.storage import atomic_write_text, write_parquet

logger = logging.getLogger(__name__)

FORMAT = "lexdpr-faiss"
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
META_FILE = "faiss_index.json"
FAISS_TYPES = ("flat", "ivf", "ivfpq", "hnsw")
IVF_TYPES = ("ivf", "ivfpq")
ADD_CHUNK = 16384  # vectors added per step (progress for the slow HNSW build)
IVF_MAX_CHANGED_FRACTION = 0.2  # more changed than this and an IVF index is retrained instead of updated
EXACT_FILTER_MAX = 20000  # filtered search on ivf/ivfpq/hnsw: exact over the allowed passages up to this many
# Flat indexes answer batches of at most this many queries with one BLAS matrix-vector product over FAISS's own
# storage (a zero-copy view) + argpartition: for a single query over 142k passages ~6 ms, against ~15-35 ms for
# FAISS's per-query heap search; larger batches go to FAISS (its matrix-matrix path).
FLAT_NUMPY_MAX_QUERIES = 16
PQ_TRAIN_MAX = 50_000  # IVF-PQ training sample cap (raised to 39 points per coarse list / code where that is more)
PQ_TRAIN_SEED = 0
POINTS_PER_CENTROID = 39  # FAISS's minimum k-means training points per centroid

Hit = tuple[str, float]


@dataclass(frozen=True)
class IndexSpec:
    """What kind of index to build (``settings.index``)."""

    faiss_type: str = "flat"
    ivf_nlist: int | None = None  # None: about 4·sqrt(passages)
    ivf_nprobe: int = 16
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    pq_m: int | None = None  # IVF-PQ sub-quantizers (bytes of code at 8 bits); None: dim/8 (48 for 384-d)
    pq_nbits: int = 8  # bits per sub-quantizer code
    pq_rerank: int = 100  # IVF-PQ candidates re-scored exactly when the vectors are attached (0: off)

    def __post_init__(self) -> None:
        if self.faiss_type not in FAISS_TYPES:
            raise ValueError(f"faiss_type must be one of {FAISS_TYPES}, got {self.faiss_type!r}")
        for name in ("ivf_nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.ivf_nlist is not None and self.ivf_nlist < 1:
            raise ValueError("ivf_nlist must be >= 1 or None")
        if self.pq_m is not None and self.pq_m < 1:
            raise ValueError("pq_m must be >= 1 or None")
        if not 1 <= self.pq_nbits <= 16:
            raise ValueError(f"pq_nbits must be between 1 and 16, got {self.pq_nbits}")
        if self.pq_rerank < 0:
            raise ValueError("pq_rerank must be >= 0")

    @classmethod
    def from_settings(cls, index_settings: Any) -> IndexSpec:
        """From a :class:`~lexdpr_pipeline.settings.IndexSettings` (or anything with the same fields)."""
        return cls(**{f: getattr(index_settings, f) for f in cls.__dataclass_fields__})

    def build_params(self) -> dict[str, Any]:
        """The parameters that shape the index (search-time ones excluded)."""
        if self.faiss_type == "ivf":
            return {"faiss_type": "ivf", "ivf_nlist": self.ivf_nlist}
        if self.faiss_type == "ivfpq":
            return {"faiss_type": "ivfpq", "ivf_nlist": self.ivf_nlist, "pq_m": self.pq_m, "pq_nbits": self.pq_nbits}
        if self.faiss_type == "hnsw":
            return {"faiss_type": "hnsw", "hnsw_m": self.hnsw_m, "hnsw_ef_construction": self.hnsw_ef_construction}
        return {"faiss_type": "flat"}

    def pq_m_for(self, dim: int) -> int:
        """IVF-PQ sub-quantizers for ``dim``-d vectors: the setting, which must divide ``dim``, or (None) the largest
        divisor of ``dim`` up to dim/8 (8 dimensions per sub-quantizer: 48 for 384-d, 96 for 768-d)."""
        if self.pq_m is None:
            return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)
        if dim % self.pq_m:
            divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 128]
            raise ValueError(
                f"index.pq_m={self.pq_m} must divide the embedding dimension {dim}: choose one of {divisors} "
                "(or leave it unset for dim/8)"
            )
        return self.pq_m

    def pq_min_points(self) -> int:
        """Passages IVF-PQ needs to train its codebooks (39 per code centroid: 9,984 at 8 bits); fewer: flat."""
        return POINTS_PER_CENTROID * 2**self.pq_nbits

    def nlist_for(self, n: int) -> int:
        """IVF lists for ``n`` vectors: the setting (or 4·sqrt(n)), clipped so each list gets ≥ 39 training points
        (FAISS's minimum) — a tiny corpus gets a single list."""
        wanted = self.ivf_nlist or max(1, round(4 * math.sqrt(n)))
        return max(1, min(wanted, n // 39))


def index_key(embeddings_key: str, spec: IndexSpec) -> str:
    """Content key of an index: its vectors (the embeddings key) and its build parameters."""
    payload = json.dumps({"format": FORMAT, "v": FORMAT_VERSION, "emb": embeddings_key, **spec.build_params()})
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class UpdateReport:
    mode: str  # built | rebuilt | incremental
    added: int = 0
    removed: int = 0
    reason: str = ""

    def describe(self) -> str:
        if self.mode == "incremental":
            return f"incremental (added {self.added}, removed {self.removed})"
        return f"{self.mode} ({self.reason})" if self.reason else self.mode


def _base_index(spec: IndexSpec, dim: int, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
    import faiss

    if spec.faiss_type == "flat":
        return faiss.IndexFlatIP(dim), {}
    if spec.faiss_type == "ivf":
        nlist = spec.nlist_for(vectors.shape[0])
        base = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        logger.info("FAISS IVF: training %d lists on %d vectors", nlist, vectors.shape[0])
        base.train(np.ascontiguousarray(vectors, dtype=np.float32))
        return base, {"nlist": nlist}
    if spec.faiss_type == "ivfpq":
        return _ivfpq_index(spec, dim, vectors)
    base = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    base.hnsw.efConstruction = spec.hnsw_ef_construction
    return base, {}


def _ivfpq_index(spec: IndexSpec, dim: int, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """A trained IVF-PQ index, or an exact flat one when the corpus is too small to train the PQ codebooks."""
    import faiss

    m = spec.pq_m_for(dim)  # a bad pq_m is a configuration error whatever the corpus size
    n, need = vectors.shape[0], spec.pq_min_points()
    if n < need:
        reason = f"{n} passages < {need} needed to train IVF-PQ codebooks (39·2^pq_nbits): exact flat index"
        logger.warning("FAISS ivfpq: %s", reason)
        return faiss.IndexFlatIP(dim), {"built_as": "flat", "fallback": reason}
    nlist = spec.nlist_for(n)
    n_train = min(n, max(PQ_TRAIN_MAX, POINTS_PER_CENTROID * nlist, need))
    rows = np.sort(np.random.default_rng(PQ_TRAIN_SEED).choice(n, size=n_train, replace=False))
    sample = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    base = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x{spec.pq_nbits}", faiss.METRIC_INNER_PRODUCT)
    base.do_polysemous_training = False  # only for polysemous (Hamming-filtered) search, which is not used: slow
    logger.info(
        "FAISS IVF-PQ: training %d lists and %d×%d-bit codebooks on %d of %d vectors",
        nlist,
        m,
        spec.pq_nbits,
        n_train,
        n,
    )
    base.train(sample)
    info = {"nlist": nlist, "pq_m": m, "pq_nbits": spec.pq_nbits, "train_points": n_train, "train_seed": PQ_TRAIN_SEED}
    return base, info


def _add(index: Any, vectors: np.ndarray, labels: np.ndarray, progress: bool, desc: str) -> None:
    n = vectors.shape[0]
    with tqdm(total=n, desc=desc, unit="vec", disable=not progress or n == 0) as bar:
        for start in range(0, n, ADD_CHUNK):
            stop = min(n, start + ADD_CHUNK)
            index.add_with_ids(
                np.ascontiguousarray(vectors[start:stop], dtype=np.float32),
                np.ascontiguousarray(labels[start:stop], dtype=np.int64),
            )
            bar.update(stop - start)


class DenseIndex:
    """A FAISS index over passage vectors with passage-id lookup. Build, :meth:`load` or :meth:`update` one."""

    def __init__(
        self,
        index: Any,
        table: pl.DataFrame,
        *,
        spec: IndexSpec,
        dim: int,
        model_version: str,
        embeddings_key: str,
        info: dict[str, Any] | None = None,
    ) -> None:
        self._index = index
        self.spec = spec
        self.dim = dim
        self.model_version = model_version
        self.embeddings_key = embeddings_key
        self.info = dict(info or {})  # e.g. the IVF nlist actually used
        self._set_table(table)
        self._vectors: np.ndarray | None = None
        self._vector_row_by_label: np.ndarray | None = None

    def _set_table(self, table: pl.DataFrame) -> None:
        self.table = table.select(
            pl.col("label").cast(pl.Int64), pl.col("passage_id").cast(pl.String), pl.col("content_hash")
        ).sort("label")
        labels = self.table["label"].to_numpy()
        size = int(labels.max()) + 1 if labels.size else 0
        by_label = np.full(size, None, dtype=object)
        by_label[labels] = np.asarray(self.table["passage_id"].to_list(), dtype=object)
        self._id_by_label = by_label

    # construction -----------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, embeddings: EmbeddingSet, spec: IndexSpec, *, progress: bool = False) -> DenseIndex:
        """Index every vector of ``embeddings`` (labels 0..N-1 in its row order)."""
        import faiss

        if len(embeddings) == 0:
            raise ValueError("cannot index an empty embedding set")
        vectors = np.asarray(embeddings.vectors, dtype=np.float32)
        base, info = _base_index(spec, embeddings.dim, vectors)
        index = base if faiss.try_extract_index_ivf(base) is not None else faiss.IndexIDMap2(base)
        labels = np.arange(len(embeddings), dtype=np.int64)
        _add(index, vectors, labels, progress, f"FAISS {spec.faiss_type} add")
        table = pl.DataFrame(
            {"label": labels, "passage_id": embeddings.ids, "content_hash": embeddings.content_hashes},
            schema={"label": pl.Int64(), "passage_id": pl.String(), "content_hash": pl.String()},
        )
        return cls(
            index,
            table,
            spec=spec,
            dim=embeddings.dim,
            model_version=embeddings.model_version,
            embeddings_key=str(embeddings.key),
            info=info,
        )

    def update(
        self, embeddings: EmbeddingSet, *, spec: IndexSpec | None = None, progress: bool = False
    ) -> tuple[DenseIndex, UpdateReport]:
        """Bring the index in line with ``embeddings``: in place where the type allows, else a fresh build.

        Returns the index to use (``self`` or a new one) and what was done.
        """
        spec = spec or self.spec
        reason = ""
        if embeddings.model_version != self.model_version:
            reason = "model changed"
        elif embeddings.dim != self.dim:
            reason = "dimension changed"
        elif spec.build_params() != self.spec.build_params():
            reason = "index parameters changed"
        if reason:
            return DenseIndex.build(embeddings, spec, progress=progress), UpdateReport("rebuilt", reason=reason)

        new = embeddings.frame()
        old = self.table
        removed = old.join(new, on=["passage_id", "content_hash"], how="anti")
        added = new.join(old, on=["passage_id", "content_hash"], how="anti").sort("row")
        n_changed = removed.height + added.height
        if removed.height and self.kind == "hnsw":
            reason = f"HNSW cannot remove vectors ({removed.height} to remove)"
        elif self.kind in IVF_TYPES and n_changed > IVF_MAX_CHANGED_FRACTION * max(1, new.height):
            reason = f"{n_changed} of {new.height} passages changed: IVF lists retrained"
        elif self.spec.faiss_type == "ivfpq" and self.kind == "flat" and new.height >= spec.pq_min_points():
            reason = f"{new.height} passages are enough to train IVF-PQ (flat fallback replaced)"
        if reason:
            return DenseIndex.build(embeddings, spec, progress=progress), UpdateReport("rebuilt", reason=reason)

        if removed.height:
            n = self._index.remove_ids(np.ascontiguousarray(removed["label"].to_numpy(), dtype=np.int64))
            if n != removed.height:
                raise RuntimeError(f"FAISS removed {n} vectors, expected {removed.height}")
        start = int(old["label"].max()) + 1 if old.height else 0
        labels = np.arange(start, start + added.height, dtype=np.int64)
        rows = added["row"].to_numpy()
        _add(self._index, np.asarray(embeddings.vectors)[rows], labels, progress, "FAISS add (incremental)")
        kept = old.join(removed.select("label"), on="label", how="anti")
        fresh = added.select(pl.Series("label", labels, pl.Int64), "passage_id", "content_hash")
        self._set_table(pl.concat([kept, fresh]))
        self.spec = replace(
            self.spec, ivf_nprobe=spec.ivf_nprobe, hnsw_ef_search=spec.hnsw_ef_search, pq_rerank=spec.pq_rerank
        )
        self.embeddings_key = str(embeddings.key)
        self._vectors = self._vector_row_by_label = None
        if self._index.ntotal != len(embeddings):
            raise RuntimeError(f"index holds {self._index.ntotal} vectors after the update, expected {len(embeddings)}")
        return self, UpdateReport("incremental", added=added.height, removed=removed.height)

    # introspection ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ids(self) -> list[str]:
        """Passage ids in label order."""
        return self.table["passage_id"].to_list()

    @property
    def ids_by_label(self) -> np.ndarray:
        """Object array: label → passage id (``None`` for labels of removed passages)."""
        return self._id_by_label

    @property
    def kind(self) -> str:
        """The FAISS structure actually built: the spec's type, or ``flat`` where IVF-PQ fell back to it."""
        return str(self.info.get("built_as") or self.spec.faiss_type)

    def __repr__(self) -> str:
        return f"DenseIndex({self.spec.faiss_type}, n={len(self)}, dim={self.dim})"

    # search -----------------------------------------------------------------------------------------------------

    def attach_vectors(self, embeddings: EmbeddingSet) -> None:
        """Keep the passage vectors at hand (e.g. memory-mapped) so filtered searches on IVF/HNSW can be exact and
        IVF-PQ candidates are re-scored exactly."""
        rows = dict(zip(embeddings.ids, range(len(embeddings)), strict=True))
        by_label = np.full(self._id_by_label.shape[0], -1, dtype=np.int64)
        for label, pid in zip(self.table["label"].to_list(), self.table["passage_id"].to_list(), strict=True):
            by_label[label] = rows.get(pid, -1)
        self._vectors = embeddings.vectors
        self._vector_row_by_label = by_label

    def _params(self, k: int, allowed: np.ndarray | None) -> tuple[Any, list[Any]]:
        import faiss

        keep: list[Any] = []  # the selector and its bitmap must outlive the search call
        sel = None
        fraction = 1.0
        if allowed is not None:
            bitmap = np.packbits(allowed.astype(bool), bitorder="little")
            sel = faiss.IDSelectorBitmap(allowed.shape[0], faiss.swig_ptr(bitmap))
            keep += [bitmap, sel]
            fraction = max(float(allowed.mean()), 1e-6) if allowed.size else 1e-6
        if self.kind in IVF_TYPES:
            nlist = faiss.extract_index_ivf(self._index).nlist
            nprobe = min(nlist, math.ceil(self.spec.ivf_nprobe / fraction))
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        elif self.kind == "hnsw":
            ef = min(max(len(self), k), max(self.spec.hnsw_ef_search, k, math.ceil(k / fraction)))
            params = faiss.SearchParametersHNSW(efSearch=ef)
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        keep.append(params)
        return params, keep

    def search_labels(
        self, query_vecs: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, labels)`` per query, best first; ``-1`` labels pad missing results.

        ``allowed``: a boolean mask over labels (``len(ids_by_label)``); only those passages are returned. On flat
        indexes this is exact; on IVF/IVF-PQ/HNSW it is exact when vectors are attached and at most
        ``EXACT_FILTER_MAX`` passages are allowed, else approximate with nprobe/efSearch raised by the filter's
        selectivity. IVF-PQ with attached vectors re-scores its top ``pq_rerank`` candidates exactly.
        """
        queries = np.ascontiguousarray(query_vecs, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        if allowed is not None and allowed.shape[0] != self._id_by_label.shape[0]:
            raise ValueError(f"allowed mask has {allowed.shape[0]} entries, expected {self._id_by_label.shape[0]}")
        k = min(k, len(self))
        if k <= 0 or queries.shape[0] == 0:
            return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), np.int64)
        if (
            allowed is not None
            and self.kind != "flat"
            and self._vectors is not None
            and int(allowed.sum()) <= EXACT_FILTER_MAX
        ):
            return self._exact_subset(queries, k, allowed)
        if queries.shape[0] <= FLAT_NUMPY_MAX_QUERIES:
            storage = self._flat_storage()
            if storage is not None:
                return _top_k(queries, k, *storage, allowed)
        rerank = self.kind == "ivfpq" and self._vectors is not None and self.spec.pq_rerank > 0
        fetch = min(len(self), max(k, self.spec.pq_rerank)) if rerank else k
        params, _keep = self._params(fetch, allowed)
        scores, labels = self._index.search(queries, fetch, params=params)
        if rerank:
            return self._rerank(queries, scores, labels, k)
        return scores, labels

    def _flat_storage(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vectors, labels)`` of a flat inner-product index (also IVF-PQ's flat fallback): a zero-copy view of
        FAISS's storage and the label of each stored row; None for any other index. Taken per call, so an index
        updated in place is never read through a stale view."""
        import faiss

        if not isinstance(self._index, faiss.IndexIDMap2):
            return None
        inner = faiss.downcast_index(self._index.index)
        if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            return None
        n = int(inner.ntotal)
        if n == 0:
            return None
        vectors = faiss.rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim)
        return vectors, faiss.vector_to_array(self._index.id_map)

    def _rerank(
        self, queries: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products for the candidate ``labels`` (PQ scores kept for any without an attached vector)."""
        assert self._vectors is not None and self._vector_row_by_label is not None
        valid = labels >= 0
        rows = np.where(valid, self._vector_row_by_label[np.where(valid, labels, 0)], -1)
        have = rows >= 0
        exact = np.where(valid, scores, -np.inf).astype(np.float32)
        if have.any():
            flat_rows = rows[have]
            order = np.argsort(flat_rows, kind="stable")  # sorted reads from a memory-mapped file
            vecs = np.empty((flat_rows.size, self.dim), np.float32)
            vecs[order] = np.asarray(self._vectors[flat_rows[order]], dtype=np.float32)
            q_rows = np.broadcast_to(np.arange(queries.shape[0])[:, None], labels.shape)[have]
            exact[have] = np.einsum("ij,ij->i", vecs, queries[q_rows])
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        out_s = np.take_along_axis(exact, top, axis=1)
        out_l = np.where(np.isfinite(out_s), np.take_along_axis(labels, top, axis=1), -1)
        return out_s, out_l

    def _exact_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._vectors is not None and self._vector_row_by_label is not None
        labels = np.flatnonzero(allowed)
        labels = labels[self._vector_row_by_label[labels] >= 0]
        out_s = np.full((queries.shape[0], k), -np.inf, np.float32)
        out_l = np.full((queries.shape[0], k), -1, np.int64)
        if labels.size == 0:
            return out_s, out_l
        sub = np.asarray(self._vectors[self._vector_row_by_label[labels]], dtype=np.float32)
        scores, idx = exact_search(queries, sub, k)
        out_s[:, : scores.shape[1]] = scores
        out_l[:, : idx.shape[1]] = labels[idx]
        return out_s, out_l

    def search(self, query_vecs: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-``k`` ``(passage_id, cosine)`` per query, best first."""
        scores, labels = self.search_labels(query_vecs, k)
        out: list[list[Hit]] = []
        for srow, lrow in zip(scores, labels, strict=True):
            out.append([(self._id_by_label[lab], float(s)) for s, lab in zip(srow, lrow, strict=True) if lab >= 0])
        return out

    # persistence ------------------------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write to ``directory`` atomically; an existing folder (same content key) is kept."""
        import faiss

        directory = Path(directory)
        with staged_folder(directory) as tmp:
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            write_parquet(self.table, tmp / IDS_FILE)
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "faiss_type": self.spec.faiss_type,
                "params": asdict(self.spec),
                "info": self.info,
                "dim": self.dim,
                "ntotal": len(self),
                "model_version": self.model_version,
                "embeddings_key": self.embeddings_key,
                "faiss": faiss.__version__,
            }
            atomic_write_text(tmp / META_FILE, json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        return directory

    @staticmethod
    def is_saved(directory: Path) -> bool:
        """Whether ``directory`` holds a saved index (its metadata file, written inside the staged folder)."""
        return (Path(directory) / META_FILE).is_file()

    @staticmethod
    def read_meta(directory: Path) -> dict[str, Any]:
        meta_path = Path(directory) / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no FAISS index at {directory} ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported index format {meta.get('format')!r}")
        return meta

    @classmethod
    def load(
        cls, directory: Path, *, nprobe: int | None = None, ef_search: int | None = None, rerank: int | None = None
    ) -> DenseIndex:
        """Load a saved index; ``nprobe`` / ``ef_search`` / ``rerank`` override the stored search-time parameters."""
        import faiss

        directory = Path(directory)
        meta = cls.read_meta(directory)
        index = faiss.read_index(str(directory / INDEX_FILE))
        table = pl.read_parquet(directory / IDS_FILE)
        stored = np.sort(_stored_labels(index))
        if index.ntotal != table.height or not np.array_equal(stored, np.sort(table["label"].to_numpy())):
            raise ValueError(f"{directory}: the index and {IDS_FILE} disagree ({index.ntotal} vs {table.height})")
        spec = IndexSpec(**meta["params"])
        spec = replace(
            spec,
            ivf_nprobe=nprobe or spec.ivf_nprobe,
            hnsw_ef_search=ef_search or spec.hnsw_ef_search,
            pq_rerank=spec.pq_rerank if rerank is None else rerank,
        )
        return cls(
            index,
            table,
            spec=spec,
            dim=int(meta["dim"]),
            model_version=meta["model_version"],
            embeddings_key=meta["embeddings_key"],
            info=meta.get("info"),
        )


def _stored_labels(index: Any) -> np.ndarray:
    """The labels a FAISS index holds (IDMap's id map, or an IVF's inverted-list ids)."""
    import faiss

    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def find_previous(
    root: Path, *, model_version: str, spec: IndexSpec, dim: int, prefer: Path | None = None
) -> Path | None:
    """The index folder to update incrementally: ``prefer`` (e.g. the current pointer's) when it matches, else the
    newest folder under ``root`` built with the same model version, dimension and build parameters."""
    candidates: list[Path] = []
    if prefer is not None:
        candidates.append(Path(prefer))
    if Path(root).is_dir():
        others = [p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")]
        candidates += sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            meta = DenseIndex.read_meta(path)
        except (FileNotFoundError, ValueError, json.JSONDecodeError):
            continue
        params = IndexSpec(**meta["params"]).build_params()
        if meta["model_version"] == model_version and meta["dim"] == dim and params == spec.build_params():
            return path
    return None


def approximate_recall(index: DenseIndex, embeddings: EmbeddingSet, queries: np.ndarray, k: int = 10) -> float:
    """Mean recall@k of ``index`` against exact search over ``embeddings`` (the same vectors) for ``queries``."""
    if queries.shape[0] == 0:
        raise ValueError("no queries to measure recall with")
    _, exact_idx = exact_search(queries, np.asarray(embeddings.vectors, dtype=np.float32), k)
    approx = index.search(queries, k)
    ids = embeddings.ids
    recalls = []
    for truth_row, hits in zip(exact_idx, approx, strict=True):
        truth = {ids[i] for i in truth_row}
        recalls.append(len(truth & {pid for pid, _ in hits}) / len(truth))
    return float(np.mean(recalls))


_BLAS: Any = None


def _one_blas_thread() -> Any:
    """A context that runs BLAS on one thread. The product is memory-bound (one thread reads as fast as two), and
    BLAS worker threads spin-waiting beside the query encoder's (torch / onnxruntime) own doubled single-query
    latency on 2 cores (scripts/bench_search.py --full-corpus: p50 122 ms -> 37 ms with torch)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _top_k(
    queries: np.ndarray, k: int, vectors: np.ndarray, labels: np.ndarray, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` against ``vectors`` (rows labelled ``labels``), best first, in
    FAISS's result format: ``-1`` labels and the lowest float pad what the ``allowed`` label mask leaves short."""
    with _one_blas_thread():
        scores = vectors @ queries.T  # (rows, queries)
    if allowed is not None:
        scores[~allowed[labels]] = -np.inf
    n_rows = scores.shape[0]
    out_scores = np.full((queries.shape[0], k), np.finfo(np.float32).min, dtype=np.float32)
    out_labels = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for qi in range(queries.shape[0]):
        column = scores[:, qi]
        top = np.argpartition(-column, k - 1)[:k] if k < n_rows else np.arange(n_rows)
        top = top[np.lexsort((labels[top], -column[top]))]  # best first; ties by label, as FAISS
        top = top[np.isfinite(column[top])]
        out_scores[qi, : top.size] = column[top]
        out_labels[qi, : top.size] = labels[top]
    return out_scores, out_labels
