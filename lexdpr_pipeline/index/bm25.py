"""BM25 over Korean legal passages: bm25s's sparse index fed with :class:`~lexdpr_pipeline.text.korean.KoreanTokenizer`
tokens.

Used for BM25 hard-negative mining, as the lexical baseline in evaluation and as the lexical half of hybrid search.
The vocabulary is built here (sorted, so the same corpus always gives byte-identical index files) and bm25s gets
token ids, never raw text, so bm25s's own English tokenizer/stemmer is never involved.

Results only contain documents that share at least one weighted query term with the query; a query with no known
terms returns ``[]`` — bm25s would otherwise fill the top-k with arbitrary zero-score documents, which would be
disastrous as "hard" negatives.

On disk (:meth:`BM25Index.save`) an index is a folder: bm25s's files (``*.index.npy``, ``vocab.index.json``,
``params.index.json``; numpy arrays saved without pickle), ``ids.parquet`` (document ids, in index order) and
``lexdpr_bm25.json`` (format version, BM25 parameters, tokenizer signature). The folder is written as a temp
sibling and renamed into place, so readers never see a half-written index. :meth:`BM25Index.load` refuses an index
whose tokenizer signature (config, scheme version, kiwipiepy versions) differs from the tokenizer it would use.

Optional second field (citation-context expansion, :mod:`lexdpr_pipeline.citations.expansion`): a second bm25s index
over each document's expansion text (own vocabulary, own length normalization), saved in ``expansion/``. A document
scores ``bm25(text) + w · bm25(expansion)`` (``w``: :attr:`BM25Index.expansion_weight`, stored with the index and
overridable with :meth:`BM25Index.with_expansion_weight`) — two indexes rather than token repetition, so the text's
own scores, vocabulary and length normalization stay exactly what they are without the field. An index without the
field, or with ``w == 0``, searches exactly as before (the same code path and scores).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from lexdpr_pipeline.artifacts.staging import staged_folder
from lexdpr_pipeline.text.korean import KoreanTokenizer, TokenizerConfig

logger = logging.getLogger(__name__)

FORMAT = "lexdpr-bm25"
FORMAT_VERSION = 1
EXPANSION_FORMAT_VERSION = 2  # an index with the expansion field: older readers must refuse it, not ignore it
EXPANSION_DIR = "expansion"
META_FILE = "lexdpr_bm25.json"
IDS_FILE = "ids.parquet"

BM25Method = Literal["robertson", "lucene", "atire", "bm25l", "bm25+"]
_METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")

Hit = tuple[str, float]


class TokenizerMismatchError(ValueError):
    """A saved index was built with a different tokenizer (config or version) than the one it is loaded with."""


@dataclass(frozen=True, slots=True)
class BM25Params:
    """BM25 scoring parameters (bm25s naming). ``delta`` only matters for ``bm25l``/``bm25+``."""

    k1: float = 1.2
    b: float = 0.75
    method: BM25Method = "lucene"
    delta: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


def _check_corpus(ids: Sequence[str], n_texts: int) -> list[str]:
    ids = [str(i) for i in ids]
    if len(ids) != n_texts:
        raise ValueError(f"{len(ids)} ids for {n_texts} texts")
    if not ids:
        raise ValueError("cannot build a BM25 index over an empty corpus")
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"ids must be unique; {len(dupes)} repeated, e.g. {dupes[:5]}")
    return ids


def _replaceable(path: Path) -> bool:
    """What :meth:`BM25Index.save` may replace: an empty folder or a saved BM25 index (never a file or other data)."""
    return path.is_dir() and (not any(path.iterdir()) or BM25Index.is_saved(path))


def corpus_key(
    corpus: pl.DataFrame,
    tokenizer: KoreanTokenizer,
    params: BM25Params,
    *,
    expansions: Sequence[str] | None = None,
    expansion_weight: float = 0.0,
) -> str:
    """Content key of the index over ``corpus`` (``passage_id``, ``text``): the texts in order, the tokenizer's
    signature and the BM25 parameters (+ the expansion texts and weight when there are any; without them the key
    is what it always was). The folder of the ``bm25_index`` asset is named by it."""
    h = hashlib.sha256(json.dumps([tokenizer.signature(), repr(params)], sort_keys=True).encode())
    for pid, text in corpus.select("passage_id", "text").iter_rows():
        h.update(pid.encode())
        h.update(b"\0")
        h.update(text.encode())
        h.update(b"\1")
    if expansions is not None:
        h.update(f"expansion weight {expansion_weight!r}\2".encode())
        for text in expansions:
            h.update(text.encode())
            h.update(b"\1")
    return h.hexdigest()


def _bm25s_index(corpus_tokens: Sequence[Sequence[str]], params: BM25Params, progress: bool) -> Any:
    """A bm25s retriever over the token lists (sorted vocabulary: byte-identical files for the same input)."""
    import bm25s
    from bm25s.tokenization import Tokenized

    vocab_list = sorted({tok for doc in corpus_tokens for tok in doc})
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    token_ids = [[vocab[tok] for tok in doc] for doc in corpus_tokens]
    retriever = bm25s.BM25(k1=params.k1, b=params.b, delta=params.delta, method=params.method)
    retriever.index(Tokenized(ids=token_ids, vocab=vocab), create_empty_token=False, show_progress=progress)
    return retriever


def _baseline(retriever: Any, token_ids: Sequence[int]) -> float:
    """The score of a document sharing no term with the query (0, or the BM25L/BM25+ non-occurrence sum)."""
    nonocc = getattr(retriever, "nonoccurrence_array", None)
    return float(nonocc[np.asarray(token_ids, dtype=int)].sum()) if nonocc is not None and len(token_ids) else 0.0


class BM25Index:
    """A searchable BM25 index over ``(ids, texts)``: :meth:`build`, :meth:`from_tokens` or :meth:`load` one."""

    def __init__(
        self,
        retriever: Any,
        ids: list[str],
        tokenizer: KoreanTokenizer,
        params: BM25Params,
        expansion: Any | None = None,
        expansion_weight: float = 0.0,
    ) -> None:
        if expansion_weight < 0:
            raise ValueError(f"expansion_weight must be >= 0, got {expansion_weight}")
        self._retriever = retriever
        self._ids = ids
        self._id_array = np.asarray(ids, dtype=object)
        self.tokenizer = tokenizer
        self.params = params
        self._expansion = expansion  # the second field's bm25s retriever (same documents, same order), or None
        self.expansion_weight = float(expansion_weight)

    # construction -----------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        *,
        tokenizer: KoreanTokenizer | None = None,
        params: BM25Params | None = None,
        progress: bool = False,
        expansions: Sequence[str] | None = None,
        expansion_weight: float = 0.0,
    ) -> BM25Index:
        """Tokenize ``texts`` and index them under ``ids`` (unique, same length). ``expansions`` (one text per
        document, ``""`` for none): the optional second field, weighted ``expansion_weight`` at search time."""
        ids = _check_corpus(ids, len(texts))
        tokenizer = tokenizer or KoreanTokenizer()
        started = time.perf_counter()
        tokens = tokenizer.tokenize_many(texts, progress=progress, desc="BM25 tokenize")
        logger.info("BM25: tokenized %d texts in %.1fs", len(texts), time.perf_counter() - started)
        expansion_tokens = None
        if expansions is not None:
            if len(expansions) != len(ids):
                raise ValueError(f"{len(expansions)} expansion texts for {len(ids)} documents")
            expansion_tokens = tokenizer.tokenize_many(expansions, progress=progress, desc="BM25 expansion tokenize")
        return cls.from_tokens(
            ids,
            tokens,
            tokenizer=tokenizer,
            params=params,
            progress=progress,
            expansion_tokens=expansion_tokens,
            expansion_weight=expansion_weight,
        )

    @classmethod
    def from_tokens(
        cls,
        ids: Sequence[str],
        corpus_tokens: Sequence[Sequence[str]],
        *,
        tokenizer: KoreanTokenizer,
        params: BM25Params | None = None,
        progress: bool = False,
        expansion_tokens: Sequence[Sequence[str]] | None = None,
        expansion_weight: float = 0.0,
    ) -> BM25Index:
        """Index already-tokenized documents. ``tokenizer`` must be the one that produced the tokens (it tokenizes
        queries and is recorded with the index). ``expansion_tokens``: the second field's tokens per document; when
        no document has any, the index has no second field (said in the log)."""
        ids = _check_corpus(ids, len(corpus_tokens))
        params = params or BM25Params()
        started = time.perf_counter()
        if not any(corpus_tokens):
            raise ValueError("no document has any token; nothing to index")
        retriever = _bm25s_index(corpus_tokens, params, progress)
        n_empty = sum(1 for doc in corpus_tokens if not doc)
        logger.info(
            "BM25: indexed %d documents (%d without tokens), vocabulary %d, in %.1fs",
            len(ids),
            n_empty,
            len(retriever.vocab_dict),
            time.perf_counter() - started,
        )
        expansion = None
        if expansion_tokens is not None:
            if len(expansion_tokens) != len(ids):
                raise ValueError(f"{len(expansion_tokens)} expansion token lists for {len(ids)} documents")
            if any(expansion_tokens):
                expansion = _bm25s_index(expansion_tokens, params, progress)
                n_expanded = sum(1 for doc in expansion_tokens if doc)
                logger.info(
                    "BM25: expansion field on %d of %d documents (weight %s)", n_expanded, len(ids), expansion_weight
                )
            else:
                logger.warning("BM25: no document has expansion tokens; the index has no expansion field")
        return cls(retriever, ids, tokenizer, params, expansion, expansion_weight if expansion is not None else 0.0)

    def with_expansion_texts(
        self, expansions: Sequence[str], weight: float = 1.0, *, progress: bool = False
    ) -> BM25Index:
        """This index with a second field built from ``expansions`` (one text per document in :attr:`ids` order,
        ``""`` for none) at ``weight``; the text field is shared as it is, nothing of the corpus is re-tokenized."""
        if len(expansions) != len(self._ids):
            raise ValueError(f"{len(expansions)} expansion texts for {len(self._ids)} documents")
        tokens = self.tokenizer.tokenize_many(expansions, progress=progress, desc="BM25 expansion tokenize")
        if not any(tokens):
            logger.warning("BM25: no document has expansion tokens; the index has no expansion field")
            return BM25Index(self._retriever, self._ids, self.tokenizer, self.params)
        field = _bm25s_index(tokens, self.params, progress)
        return BM25Index(self._retriever, self._ids, self.tokenizer, self.params, field, weight)

    # introspection ----------------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def vocab_size(self) -> int:
        return len(self._retriever.vocab_dict)

    @property
    def has_expansion(self) -> bool:
        """Whether the index has the second (expansion) field; it counts in scores only with a weight > 0."""
        return self._expansion is not None

    def with_expansion_weight(self, weight: float) -> BM25Index:
        """The same index (shared arrays) searching with expansion weight ``weight`` (0: the text field alone)."""
        if weight > 0 and self._expansion is None:
            raise ValueError(
                f"expansion weight {weight} asked of a BM25 index without an expansion field: build it with the "
                "citation expansion (index.bm25_expansion_weight > 0)"
            )
        return BM25Index(self._retriever, self._ids, self.tokenizer, self.params, self._expansion, weight)

    def __repr__(self) -> str:
        field = f", expansion weight {self.expansion_weight}" if self.has_expansion else ""
        return f"BM25Index(n_docs={len(self)}, vocab={self.vocab_size}, {self.params}{field}, {self.tokenizer!r})"

    # search -----------------------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, *, exclude: set[str] | None = None) -> list[Hit]:
        """Top-``k`` ``(id, score)`` for one query, best first (fewer when fewer documents match)."""
        return self.search_many([query], k, exclude=None if exclude is None else [exclude])[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        exclude: Sequence[set[str]] | None = None,
        n_threads: int = 0,
        progress: bool = False,
    ) -> list[list[Hit]]:
        """Top-``k`` per query. ``exclude[i]``: ids never returned for query ``i`` (e.g. its positives when mining
        hard negatives); ``k`` results are still returned when enough other documents match. ``n_threads``: bm25s
        scoring threads (0 = in this thread, -1 = all cores)."""
        query_tokens = self.tokenizer.tokenize_many(queries, progress=progress, desc="BM25 query tokenize")
        return self.search_tokens_many(query_tokens, k, exclude=exclude, n_threads=n_threads, progress=progress)

    def search_tokens_many(
        self,
        query_tokens: Sequence[Sequence[str]],
        k: int = 10,
        *,
        exclude: Sequence[set[str]] | None = None,
        n_threads: int = 0,
        progress: bool = False,
    ) -> list[list[Hit]]:
        """:meth:`search_many` for queries already tokenized with :attr:`tokenizer`."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if exclude is not None and len(exclude) != len(query_tokens):
            raise ValueError(f"exclude has {len(exclude)} sets for {len(query_tokens)} queries")
        if self._expansion is not None and self.expansion_weight > 0:
            return self._search_two_fields(query_tokens, k, exclude)
        vocab = self._retriever.vocab_dict
        n_docs = len(self._ids)
        results: list[list[Hit]] = [[] for _ in query_tokens]
        # Queries grouped by how many candidates they need (k + their exclusions); bm25s takes one k per call.
        groups: dict[int, list[int]] = {}
        query_ids: list[list[int]] = []
        for qi, tokens in enumerate(query_tokens):
            ids = [vocab[t] for t in tokens if t in vocab]
            query_ids.append(ids)
            if ids and k > 0:
                need = min(n_docs, k + (len(exclude[qi]) if exclude is not None else 0))
                groups.setdefault(need, []).append(qi)
        nonocc = getattr(self._retriever, "nonoccurrence_array", None)
        for need, members in sorted(groups.items()):
            docs, scores = self._retriever.retrieve(
                [query_ids[qi] for qi in members],
                k=need,
                sorted=True,
                n_threads=n_threads,
                show_progress=progress,
                backend_selection="numpy",
            )
            for row, qi in enumerate(members):
                # Documents that share no term score exactly the baseline (0, or the BM25L/BM25+ non-occurrence sum).
                baseline = nonocc[np.asarray(query_ids[qi])].sum() if nonocc is not None else 0.0
                banned = exclude[qi] if exclude is not None else ()
                hits: list[Hit] = []
                for doc, score in zip(self._id_array[docs[row]], scores[row], strict=True):
                    if not score > baseline:
                        break  # sorted: nothing after this matches either
                    if doc in banned:
                        continue
                    hits.append((doc, float(score)))
                    if len(hits) == k:
                        break
                results[qi] = hits
        return results

    def _search_two_fields(
        self, query_tokens: Sequence[Sequence[str]], k: int, exclude: Sequence[set[str]] | None
    ) -> list[list[Hit]]:
        """``bm25(text) + w · bm25(expansion)`` over every document sharing a term with the query in either field."""
        fields = [(self._retriever, 1.0), (self._expansion, self.expansion_weight)]
        n_docs = len(self._ids)
        results: list[list[Hit]] = []
        for qi, tokens in enumerate(query_tokens):
            banned = exclude[qi] if exclude is not None else set()
            total = np.zeros(n_docs, dtype=np.float64)
            matched = np.zeros(n_docs, dtype=bool)
            for retriever, weight in fields:
                vocab = retriever.vocab_dict
                ids = [vocab[t] for t in tokens if t in vocab]
                if not ids:
                    continue
                scores = np.asarray(retriever.get_scores_from_ids(ids), dtype=np.float64)
                matched |= scores > _baseline(retriever, ids)
                total += weight * scores
            candidates = np.flatnonzero(matched)
            if k == 0 or not candidates.size:
                results.append([])
                continue
            need = min(candidates.size, k + len(banned))
            top = (
                candidates[np.argpartition(-total[candidates], need - 1)[:need]]
                if need < candidates.size
                else candidates
            )
            top = top[np.lexsort((top, -total[top]))]  # best first; ties in index order
            hits: list[Hit] = []
            for i in top:
                doc = self._id_array[i]
                if doc in banned:
                    continue
                hits.append((doc, float(total[i])))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    # persistence ------------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index to ``directory`` atomically (:func:`~lexdpr_pipeline.artifacts.staging.staged_folder`); an
        existing index there is replaced.

        Refuses to replace a non-empty folder that is not a saved BM25 index.
        """
        import bm25s

        target = Path(directory)
        with staged_folder(target, on_exists="replace", replaceable=_replaceable) as tmp:
            self._retriever.save(tmp, show_progress=False)
            pl.DataFrame({"id": self._ids}, schema={"id": pl.String()}).write_parquet(
                tmp / IDS_FILE, compression="zstd"
            )
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION if self._expansion is None else EXPANSION_FORMAT_VERSION,
                "n_docs": len(self._ids),
                "vocab_size": self.vocab_size,
                "params": asdict(self.params),
                "tokenizer": self.tokenizer.signature(),
                "bm25s": bm25s.__version__,
            }
            meta["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
            if self._expansion is not None:
                self._expansion.save(tmp / EXPANSION_DIR, show_progress=False)
                meta["expansion"] = {
                    "weight": self.expansion_weight,
                    "vocab_size": len(self._expansion.vocab_dict),
                    "files": {p.name: p.stat().st_size for p in sorted((tmp / EXPANSION_DIR).iterdir())},
                }
            (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        logger.info("BM25: saved %d documents to %s", len(self._ids), target)
        return target

    @staticmethod
    def is_saved(directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` holds a saved index (its metadata file: written last, inside the staged folder)."""
        return (Path(directory) / META_FILE).is_file()

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        tokenizer: KoreanTokenizer | None = None,
        mmap: bool = False,
        expansion_weight: float | None = None,
    ) -> BM25Index:
        """Load a saved index. Without ``tokenizer`` one is made from the stored config; either way its signature
        must equal the stored one (else :class:`TokenizerMismatchError`). ``mmap``: memory-map the score arrays.
        ``expansion_weight``: None searches with the stored weight of the expansion field (if any)."""
        import bm25s

        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no BM25 index at {path} ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") not in (FORMAT_VERSION, EXPANSION_FORMAT_VERSION):
            raise ValueError(
                f"{path}: unsupported index format {meta.get('format')!r} v{meta.get('format_version')!r} "
                f"(expected {FORMAT!r} v{FORMAT_VERSION} or v{EXPANSION_FORMAT_VERSION})"
            )
        expansion_meta = meta.get("expansion") if meta["format_version"] == EXPANSION_FORMAT_VERSION else None
        if meta["format_version"] == EXPANSION_FORMAT_VERSION and not expansion_meta:
            raise ValueError(f"{path}: a v{EXPANSION_FORMAT_VERSION} index without its expansion field; rebuild it")
        recorded = [(name, size, path / name) for name, size in meta.get("files", {}).items()]
        recorded += [
            (f"{EXPANSION_DIR}/{n}", s, path / EXPANSION_DIR / n)
            for n, s in (expansion_meta or {}).get("files", {}).items()
        ]
        for name, size, file in recorded:
            actual = file.stat().st_size if file.is_file() else None
            if actual != size:
                raise ValueError(f"{path}: {name} is {actual} bytes, the index recorded {size}; the index is damaged")
        stored = meta["tokenizer"]
        if tokenizer is None:
            tokenizer = KoreanTokenizer(TokenizerConfig.from_dict(stored["config"]))
        current = tokenizer.signature()
        if current != stored:
            diff = {key: (stored.get(key), current.get(key)) for key in stored.keys() | current.keys()}
            diff = {key: pair for key, pair in diff.items() if pair[0] != pair[1]}
            raise TokenizerMismatchError(
                f"{path} was built with a different tokenizer; rebuild it. Differences (index, now): {diff}"
            )
        retriever = bm25s.BM25.load(path, mmap=mmap, show_progress=False)
        ids = pl.read_parquet(path / IDS_FILE)["id"].to_list()
        if len(ids) != meta["n_docs"] or retriever.scores["num_docs"] != meta["n_docs"]:
            raise ValueError(
                f"{path}: {len(ids)} ids, {retriever.scores['num_docs']} indexed, {meta['n_docs']} recorded"
            )
        expansion = None
        weight = 0.0
        if expansion_meta:
            expansion = bm25s.BM25.load(path / EXPANSION_DIR, mmap=mmap, show_progress=False)
            if expansion.scores["num_docs"] != meta["n_docs"]:
                raise ValueError(f"{path}: the expansion field indexes {expansion.scores['num_docs']} documents")
            weight = float(expansion_meta["weight"])
        index = cls(retriever, ids, tokenizer, BM25Params(**meta["params"]), expansion, weight)
        return index if expansion_weight is None else index.with_expansion_weight(expansion_weight)
