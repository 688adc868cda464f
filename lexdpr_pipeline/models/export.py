"""Export a sentence-transformers model to ONNX (fp32, or dynamically quantized int8) for fast CPU inference.

Why ``torch.onnx.export`` + ``onnxruntime.quantization`` and not the maintained wrappers: with the pinned stack
(transformers 5.23) sentence-transformers' ``backend="onnx"`` needs optimum-onnx, whose only release (0.1.0) wants
transformers < 4.58, and optimum-intel 2.2.0 (OpenVINO) wants transformers < 5.6 and torch 2.14 (DEVELOPERS.md).

The export:

1. loads the model with :meth:`BiEncoder.load` (so the template is the one everything else uses) and switches the
   transformer to eager attention: its graph is the one onnxruntime's BERT optimizer fuses into ``Attention`` ops;
2. traces the transformer (``input_ids`` + ``attention_mask`` -> ``last_hidden_state``, dynamic batch and length)
   with the TorchScript exporter — the torch.export-based one gives a graph the fusions do not recognize;
3. fuses it with ``onnxruntime.transformers.optimizer`` (BERT-family models; its graph-level fusions only, so the
   file runs on any CPU);
4. for ``onnx-int8``, quantizes the weights per channel to int8 (``quantize_dynamic``): per-tensor int8 fell to
   ~0.985 mean cosine on multilingual-e5-small, per-channel keeps ~0.996;
5. checks the result against the torch model on a few probe texts (a broken export fails here and is not kept),
   and writes everything through :func:`staged_folder` — nothing partial is ever left at the target.

Pooling and normalization are not in the graph; :class:`~lexdpr_pipeline.models.onnx_encoder.OnnxEncoder` applies
them from ``export.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lexdpr_pipeline.artifacts import ArtifactStore, Kind
from lexdpr_pipeline.artifacts.staging import staged_folder
from lexdpr_pipeline.models.biencoder import BiEncoder, Template
from lexdpr_pipeline.models.onnx_encoder import (
    EXPORT_FILE,
    ONNX_FILES,
    POOLING_MODES,
    TOKENIZER_FILE,
    ExportInfo,
    OnnxEncoder,
    load_encoder,
)
from lexdpr_pipeline.storage import atomic_write_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EXPORTER_VERSION = 1  # bump when an export of the same model would come out different
BACKENDS = tuple(ONNX_FILES)  # ("onnx", "onnx-int8")
OPSET = 17
_BERT_FAMILY = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "mpnet"}
_SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}
_PROBES = ("query: 민법 제1조 법원", "passage: 계약의 해제는 상대방에 대한 의사표시로 한다. " * 8, "x")
_FP32_TOLERANCE = 1e-3  # max abs difference of normalized vectors, fp32 export vs torch, on the probe texts
_INT8_MIN_COSINE = 0.9  # a sanity floor only; the quality gate (quality_gate.py) is the real check
_LARGE_BYTES = 1_800_000_000

__all__ = [
    "BACKENDS",
    "EXPORTER_VERSION",
    "ExportError",
    "export_encoder",
    "export_key",
    "export_to_store",
    "load_encoder",
]


class ExportError(RuntimeError):
    """The model cannot be exported, or the export does not reproduce the torch model."""


def export_key(model_hash: str, backend: str, exporter_version: int = EXPORTER_VERSION) -> str:
    """The content key of an export folder: sha256 of (model content hash, backend, exporter version)."""
    _check_backend(backend)
    payload = json.dumps({"model": model_hash, "backend": backend, "exporter": exporter_version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def export_to_store(
    store: ArtifactStore, model_dir: str | Path, model_hash: str, backend: str, *, template: Template | None = None
) -> Path:
    """Export into the store's content-addressed folder (``Kind.ENCODER_EXPORT``); an existing export is reused."""
    target = store.folder(Kind.ENCODER_EXPORT, export_key(model_hash, backend))
    return export_encoder(model_dir, target, backend, template=template, source_hash=model_hash)


def export_encoder(
    model_dir: str | Path,
    out_dir: str | Path,
    backend: str = "onnx",
    *,
    template: Template | None = None,
    source_hash: str | None = None,
) -> Path:
    """Export ``model_dir`` to ``out_dir`` (``model.onnx`` or ``model_qint8.onnx``, ``tokenizer.json``, the template,
    ``export.json``) and return ``out_dir``. An existing complete export at ``out_dir`` is kept as it is (the folder
    is content-addressed). ``source_hash`` defaults to the fingerprint of the model folder's files."""
    _check_backend(backend)
    out_dir = Path(out_dir)
    if (out_dir / EXPORT_FILE).is_file():
        return out_dir
    model_dir = Path(model_dir)
    if source_hash is None:
        from lexdpr_pipeline.models.resolve import folder_version

        source_hash = folder_version(model_dir)
    encoder = BiEncoder.load(model_dir, template=template)
    info = _describe(encoder.model, backend, str(model_dir), source_hash)
    probes = encoder.encode_passages(list(_PROBES), batch_size=len(_PROBES))  # the torch vectors to reproduce
    with staged_folder(out_dir, on_exists="keep") as tmp:
        work = tmp / "_work"
        work.mkdir()
        raw = work / "raw.onnx"
        _torch_export(encoder.model, raw)
        encoder.model[0].tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        encoder.template.save(tmp)
        config, large = encoder.model[0].auto_model.config, _is_large(encoder.model)
        del encoder  # the torch weights are not needed any more: free them before the memory-hungry steps
        _release_memory()
        fp32 = tmp / ONNX_FILES["onnx"] if backend == "onnx" else work / "fp32.onnx"
        fused = _fuse(raw, fp32, config, large)
        _release_memory()
        quantization: dict[str, Any] = {}
        if backend == "onnx-int8":
            quantization = _quantize(fp32, tmp / ONNX_FILES["onnx-int8"], large)
        shutil.rmtree(work)
        info = replace(info, optimization=fused, quantization=quantization)
        _verify(probes, tmp, info)
        atomic_write_text(tmp / EXPORT_FILE, json.dumps(info.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return out_dir


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown export backend {backend!r}: use one of {list(BACKENDS)}")


def _describe(st: SentenceTransformer, backend: str, source: str, source_hash: str) -> ExportInfo:
    """What the encoder needs to reproduce the model: refuses module stacks it cannot reproduce."""
    names = [type(module).__name__ for module in st]
    unsupported = [n for n in names if n not in _SUPPORTED_MODULES]
    if unsupported or not names or names[0] != "Transformer" or "Pooling" not in names:
        raise ExportError(
            f"cannot export a model made of {names}: only Transformer -> Pooling [-> Normalize] is supported "
            "(use the torch backend for this model)"
        )
    transformer, pooling = st[0], st[names.index("Pooling")]
    if getattr(transformer, "do_lower_case", False):
        raise ExportError("cannot export a model with do_lower_case=True (use the torch backend)")
    if not getattr(pooling, "include_prompt", True):
        raise ExportError("cannot export a model whose pooling excludes the prompt (use the torch backend)")
    modes = [pooling.pooling_mode] if isinstance(pooling.pooling_mode, str) else list(pooling.pooling_mode)
    if any(m not in POOLING_MODES for m in modes):
        raise ExportError(f"unknown pooling mode(s) {modes}")
    tokenizer = transformer.tokenizer
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise ExportError("the model has no fast tokenizer (tokenizer.json); the export needs one")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise ExportError("the model pads on the left; the export pads on the right (use the torch backend)")
    return ExportInfo(
        backend=backend,
        onnx_file=ONNX_FILES[backend],
        source_model=source,
        source_hash=source_hash,
        exporter_version=EXPORTER_VERSION,
        max_seq_length=int(st.max_seq_length),
        dimension=int(st.get_embedding_dimension()),
        pooling_mode=modes,
        pad_token_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        normalize=True,
        versions=_versions(),
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime", "tokenizers"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _torch_export(st: SentenceTransformer, path: Path) -> None:
    import torch

    hf = st[0].auto_model
    hf.eval()
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")

    class _Hidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    pad = st[0].tokenizer.pad_token_id or 0
    real = 5 if pad != 5 else 6
    input_ids = torch.tensor([[real] * 6, [real] * 3 + [pad] * 3])  # one padded row: the traced mask path is general
    attention_mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings: transformers' padding-mask helper compares kv_length with the mask's own length (equal for
        # an encoder), a branch that is the same for every input shape.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(hf),
            (input_ids, attention_mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _is_large(st: SentenceTransformer) -> bool:
    """fp32 weights near protobuf's 2 GB limit go to an external data file (``<model file>.data``) beside the model."""
    return sum(p.numel() * 4 for p in st.parameters()) > _LARGE_BYTES


def _release_memory() -> None:
    """Hand freed memory back to the OS between steps (each step holds one or two copies of the weights)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _fuse(raw: Path, out: Path, config: Any, large: bool) -> dict[str, Any]:
    """onnxruntime's transformer fusions (Attention, SkipLayerNorm, BiasGelu) for BERT-family models; other
    architectures are copied as exported (onnxruntime still applies its generic optimizations at load time).
    Returns the fused operator counts."""
    if getattr(config, "model_type", "") in _BERT_FAMILY:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0)),
            hidden_size=int(getattr(config, "hidden_size", 0)),
            opt_level=0,  # the Python fusions only: same fusions as level 1 here, ~0.7 GB less peak memory
        )
        model.save_model_to_file(str(out), use_external_data_format=large)
        stats = model.get_fused_operator_statistics()
        return {"optimizer": "onnxruntime.transformers (bert)", "fused": {k: v for k, v in stats.items() if v}}
    import onnx

    onnx.save_model(onnx.load(str(raw)), str(out), save_as_external_data=large)
    return {"optimizer": None, "fused": {}}


def _quantize(fp32: Path, out: Path, large: bool) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings: dict[str, Any] = {"method": "dynamic", "weight_type": "QInt8", "per_channel": True}
    root = logging.getLogger()
    root.addFilter(_no_preprocess_hint)
    try:
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=large,
            # fused com.microsoft ops have no ONNX shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(_no_preprocess_hint)
    return settings


def _no_preprocess_hint(record: logging.LogRecord) -> bool:
    """Drop the quantizer's root-logger advice to run its pre-processing (static-quantization shape inference)."""
    return not str(record.msg).startswith("Please consider to run pre-processing")


def _verify(reference: np.ndarray, folder: Path, info: ExportInfo) -> None:
    """The staged export must run and reproduce the torch model's ``reference`` vectors of the probe texts (one
    batch: padding included)."""
    candidate = OnnxEncoder(folder, threads=1, info=info).encode_passages(list(_PROBES), batch_size=len(_PROBES))
    if candidate.shape != reference.shape or not np.isfinite(candidate).all():
        raise ExportError(f"the export gives {candidate.shape} vectors (finite: {np.isfinite(candidate).all()})")
    if info.backend == "onnx":
        diff = float(np.abs(candidate - reference).max())
        if diff > _FP32_TOLERANCE:
            raise ExportError(f"the fp32 export differs from the torch model by {diff:.2e} (> {_FP32_TOLERANCE})")
    else:
        cosine = float((candidate * reference).sum(axis=1).min())
        if cosine < _INT8_MIN_COSINE:
            raise ExportError(f"the int8 export is far from the torch model (min cosine {cosine:.3f})")
