"""The one encoder factory: torch (:class:`BiEncoder`, fp32 or bf16) or an ONNX export (:class:`OnnxEncoder`), same
encode API.

Vectors of different backends are close but not identical, so everything that stores or compares vectors keys them
by :func:`encoder_version` (the model version plus the backend): the per-model embedding cache, the embedding sets,
the FAISS index and the index pointer. ``torch`` keeps the plain model version, so caches written before the other
backends existed stay valid.

Backends:

- ``torch``: sentence-transformers in fp32, the reference every other backend is gated against;
- ``torch-bf16``: the same model cast to bfloat16 (vectors renormalized in fp32). Fast only where the hardware
  multiplies bf16 natively — CPUs with AMX or AVX-512 BF16 (Intel Sapphire
  Rapids and later, AMD Zen 4 and later) and CUDA GPUs — and needs no export;
- ``onnx`` / ``onnx-int8``: an ``encoder_export`` folder run by onnxruntime (fp32 / dynamic int8; int8 is the fast
  one on CPUs with AVX-512 VNNI but no bf16).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lexdpr_pipeline.models.biencoder import BiEncoder
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder

TORCH = "torch"
TORCH_BF16 = "torch-bf16"
ONNX_BACKENDS = ("onnx-int8", "onnx")  # the backends that run an export, int8 (the faster) first
BACKENDS = (TORCH, TORCH_BF16, *ONNX_BACKENDS)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matrix products


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}: use one of {list(BACKENDS)}")
    return backend


def needs_export(backend: str) -> bool:
    """Whether ``backend`` runs an ``encoder_export`` folder (the torch backends run the model folder itself)."""
    return check_backend(backend) in ONNX_BACKENDS


@cache
def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16): only then is ``torch-bf16`` fast on a CPU
    (elsewhere torch emulates it, slower than fp32). False where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def encoder_version(model_version: str, backend: str = TORCH) -> str:
    """The version that keys vectors: ``model_version`` for torch, ``model_version|backend`` for the others."""
    return model_version if check_backend(backend) == TORCH else f"{model_version}|{backend}"


def load_encoder(
    model_path: str | Path,
    backend: str = TORCH,
    export_path: str | Path | None = None,
    *,
    threads: int | None = None,
) -> BiEncoder | OnnxEncoder:
    """The encoder of ``model_path`` on ``backend``: the torch backends load the model folder (``threads``: torch
    intra-op threads, unchanged when None; ``export_path`` is not used); an ONNX backend loads ``export_path`` (an
    ``encoder_export`` folder of that model, whose ``export.json`` must name the same backend)."""
    if not needs_export(backend):
        if threads:
            import torch

            torch.set_num_threads(threads)
        from lexdpr_pipeline.models.biencoder import BiEncoder

        return BiEncoder.load(model_path, precision="bf16" if backend == TORCH_BF16 else "fp32")
    if export_path is None:
        raise ValueError(f"backend {backend!r} needs the export folder of {model_path} (run encoder_export)")
    from lexdpr_pipeline.models.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(Path(export_path), threads=threads)
    if encoder.backend != backend:
        raise ValueError(f"{export_path} holds a {encoder.backend!r} export, not {backend!r}")
    return encoder
