"""An exported encoder run by onnxruntime on the CPU, with the same encode API as :class:`BiEncoder`.

An export folder (written by :func:`lexdpr_pipeline.models.export.export_encoder`) holds:

- ``model.onnx`` (fp32) or ``model_qint8.onnx`` (dynamic int8): the transformer, ``input_ids`` + ``attention_mask``
  in, ``last_hidden_state`` out;
- ``tokenizer.json``: the model's fast tokenizer, exactly as sentence-transformers used it;
- ``lexdpr_template.json``: the query/passage prefixes (:class:`~lexdpr_pipeline.models.biencoder.Template`);
- ``export.json``: the manifest (:class:`ExportInfo`): backend, source model hash, pooling, max_seq_length, versions.

Pooling and L2 normalization run in numpy after the forward pass, exactly as the sentence-transformers ``Pooling``
config says (right padding only). Texts are tokenized before the forward loop, sorted by token count and batched by a
token budget (:func:`token_budget_batches`), so a batch pads to similar lengths; vectors come back in input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lexdpr_pipeline.models.biencoder import Template

EXPORT_FILE = "export.json"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FORMAT = 1
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
DEFAULT_TOKEN_BUDGET = 2048  # padded tokens per forward batch (rows x longest row); 4096+ measured slower (cache)
_TOKENIZE_CHUNK = 2048  # texts tokenized per encode_batch call (keeps only the ids, not the Encoding objects)


class ExportFormatError(ValueError):
    """An export folder that is missing files or has a manifest this code cannot run."""


@dataclass(frozen=True)
class ExportInfo:
    """``export.json``: what an export folder holds and where it came from."""

    backend: str  # "onnx" | "onnx-int8"
    onnx_file: str
    source_model: str  # the folder it was exported from (informational)
    source_hash: str  # the content hash of that model (keys the export folder)
    exporter_version: int
    max_seq_length: int
    dimension: int  # sentence embedding size
    pooling_mode: list[str]  # one or more of POOLING_MODES, concatenated in this order
    pad_token_id: int
    normalize: bool = True
    optimization: dict[str, Any] = field(default_factory=dict)  # graph fusions applied
    quantization: dict[str, Any] = field(default_factory=dict)  # empty for fp32
    versions: dict[str, str] = field(default_factory=dict)
    format: int = EXPORT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: Path) -> ExportInfo:
        path = Path(folder) / EXPORT_FILE
        if not path.is_file():
            raise ExportFormatError(f"{folder} is not an encoder export: no {EXPORT_FILE}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {f for f in cls.__dataclass_fields__}
            info = cls(**{k: v for k, v in data.items() if k in names})
        except (json.JSONDecodeError, TypeError) as exc:
            raise ExportFormatError(f"{path} is not a valid export manifest: {exc}") from exc
        if info.format != EXPORT_FORMAT:
            raise ExportFormatError(f"{path}: export format {info.format}, this code reads {EXPORT_FORMAT}")
        bad = [m for m in info.pooling_mode if m not in POOLING_MODES]
        if bad or not info.pooling_mode:
            raise ExportFormatError(f"{path}: unknown pooling mode(s) {bad or info.pooling_mode}")
        return info


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def token_budget_batches(lengths: Sequence[int], token_budget: int, max_rows: int) -> list[np.ndarray]:
    """Indices of ``lengths`` grouped into batches: longest first, each batch at most ``max_rows`` rows and at most
    ``token_budget`` padded tokens (rows x its longest row; a single row longer than the budget is a batch of one)."""
    if token_budget < 1 or max_rows < 1:
        raise ValueError("token_budget and max_rows must be positive")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lens[order[start]]), 1)
        rows = max(1, min(max_rows, token_budget // longest))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers' ``Pooling`` on right-padded ``hidden`` (batch, seq, dim) with ``mask`` (batch, seq)."""
    m = mask.astype(hidden.dtype)[..., None]
    n_tokens = np.clip(m.sum(axis=1), 1e-9, None)
    out: list[np.ndarray] = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(np.where(m > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            summed = np.einsum("bsd,bs->bd", hidden, mask.astype(hidden.dtype))
            out.append(summed / (n_tokens if mode == "mean" else np.sqrt(n_tokens)))
        elif mode == "weightedmean":
            w = m * np.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
            out.append((hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None))
        elif mode == "lasttoken":
            last = np.maximum(mask.sum(axis=1).astype(np.int64) - 1, 0)
            out.append(hidden[np.arange(hidden.shape[0]), last] * m[np.arange(hidden.shape[0]), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return np.concatenate(out, axis=-1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Like ``torch.nn.functional.normalize`` (eps 1e-12)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class OnnxEncoder:
    """An exported model on onnxruntime (CPU). Embeddings are L2-normalized float32, like :class:`BiEncoder`'s."""

    def __init__(
        self,
        folder: Path,
        *,
        threads: int | None = None,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        info: ExportInfo | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.info = info or ExportInfo.read(self.folder)
        template = Template.load(self.folder)
        if template is None:
            raise ExportFormatError(f"{self.folder} has no template file; re-export the model")
        self.template = template
        onnx_path = self.folder / self.info.onnx_file
        tok_path = self.folder / TOKENIZER_FILE
        for need in (onnx_path, tok_path):
            if not need.is_file():
                raise ExportFormatError(f"{self.folder} is an incomplete export: {need.name} is missing")
        self.threads = threads or available_cores()
        self.token_budget = token_budget
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.info.max_seq_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self._inputs:
            raise ExportFormatError(f"{onnx_path} does not take input_ids and attention_mask: {sorted(self._inputs)}")

    @property
    def backend(self) -> str:
        return self.info.backend

    @property
    def dimension(self) -> int:
        return self.info.dimension

    def tokenize(self, texts: Sequence[str], prefix: str = "") -> list[np.ndarray]:
        """Token ids per text (``prefix`` + text, truncated to max_seq_length, special tokens added)."""
        ids: list[np.ndarray] = []
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = [prefix + t for t in texts[start : start + _TOKENIZE_CHUNK]]
            ids += [np.asarray(e.ids, dtype=np.int64) for e in self.tokenizer.encode_batch(chunk)]
        return ids

    def forward(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """One padded batch through the model, pooled and normalized."""
        longest = max(max(len(x) for x in ids), 1)
        input_ids = np.full((len(ids), longest), self.info.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self.session.run(None, feed)[0]
        vectors = pool(hidden.astype(np.float32, copy=False), mask, self.info.pooling_mode)
        return l2_normalize(vectors) if self.info.normalize else vectors

    def _encode(self, texts: Sequence[str], prefix: str, batch_size: int, progress: bool, unit: str) -> np.ndarray:
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts, prefix)  # all tokenization happens before the forward loop
        batches = token_budget_batches([len(x) for x in ids], self.token_budget, batch_size)
        with tqdm(total=len(texts), desc=f"encode ({self.backend})", unit=unit, disable=not progress) as bar:
            for batch in batches:
                out[batch] = self.forward([ids[i] for i in batch])
                bar.update(len(batch))
        return out

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.template.query, batch_size, progress, "queries")

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.template.passage, batch_size, progress, "passages")


def load_encoder(
    path: str | Path, *, threads: int | None = None, token_budget: int = DEFAULT_TOKEN_BUDGET
) -> OnnxEncoder:
    """The encoder of an export folder; ``threads``: onnxruntime intra-op threads (default: every available core)."""
    return OnnxEncoder(Path(path), threads=threads, token_budget=token_budget)
