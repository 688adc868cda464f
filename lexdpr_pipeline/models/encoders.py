"""The one encoder factory: torch (:class:`BiEncoder`) or an ONNX export (:class:`OnnxEncoder`), same encode API.

Vectors of different backends are close but not identical, so everything that stores or compares vectors keys them
by :func:`encoder_version` (the model version plus the backend): the per-model embedding cache, the embedding sets,
the FAISS index and the index pointer. ``torch`` keeps the plain model version, so caches written before the ONNX
backends existed stay valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lexdpr_pipeline.models.biencoder import BiEncoder
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder

TORCH = "torch"
ONNX_BACKENDS = ("onnx-int8", "onnx")  # auto's order of preference: int8 is the fastest on CPUs (DEVELOPERS.md)
BACKENDS = (TORCH, "onnx", "onnx-int8")


def encoder_version(model_version: str, backend: str = TORCH) -> str:
    """The version that keys vectors: ``model_version`` for torch, ``model_version|backend`` for an export."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}: use one of {list(BACKENDS)}")
    return model_version if backend == TORCH else f"{model_version}|{backend}"


def load_encoder(
    model_path: str | Path,
    backend: str = TORCH,
    export_path: str | Path | None = None,
    *,
    threads: int | None = None,
) -> BiEncoder | OnnxEncoder:
    """The encoder of ``model_path`` on ``backend``: torch loads the model folder (``threads``: torch intra-op
    threads, unchanged when None); an ONNX backend loads ``export_path`` (an ``encoder_export`` folder of that model,
    whose ``export.json`` must name the same backend)."""
    if backend == TORCH:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from lexdpr_pipeline.models.biencoder import BiEncoder

        return BiEncoder.load(model_path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}: use one of {list(BACKENDS)}")
    if export_path is None:
        raise ValueError(f"backend {backend!r} needs the export folder of {model_path} (run encoder_export)")
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(Path(export_path), threads=threads)
    if encoder.backend != backend:
        raise ValueError(f"{export_path} holds a {encoder.backend!r} export, not {backend!r}")
    return encoder
