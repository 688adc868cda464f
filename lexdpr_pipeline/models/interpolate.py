"""Weight-space interpolation of a fine-tuned model with its base (WiSE-FT, Wortsman et al. 2022).

``weights := base + alpha · (fine-tuned − base)`` for every floating-point tensor. ``alpha = 1`` keeps the fine-tuned
model, ``0`` gives the base back exactly; in between the model keeps more of what the base knew where the training
data says nothing (issue 14 §4: the fine-tuned model forgets how to find precedents).

- :func:`interpolate_state_dicts`: the pure form, on two state dicts (shapes must match; integer buffers such as
  ``position_ids`` are taken from the fine-tuned side, they never differ).
- :func:`interpolate_` / :func:`interpolated`: in place on a live model, permanently or for the length of a
  ``with`` block (validation of the mixed model during training). A model carrying an unmerged LoRA adapter is
  interpolated by scaling its ``lora_B`` weights: ``W + s·(alpha·B)·A`` is exactly ``W + alpha·(W' − W)``.
- :func:`interpolate_folder`: re-mix one trained model folder with its base without retraining.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

_log = logging.getLogger(__name__)
LORA_B_MARKERS = (".lora_B.", ".lora_embedding_B.")


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolate must be within 0..1, not {alpha}")
    return alpha


def check_compatible(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> None:
    """Raise ``ValueError`` unless both state dicts hold the same tensor names with the same shapes."""
    missing, extra = sorted(set(tuned) - set(base)), sorted(set(base) - set(tuned))
    if missing or extra:
        raise ValueError(
            "cannot interpolate models with different parameters: "
            f"only in the fine-tuned model {missing[:5]}{' …' if len(missing) > 5 else ''}, "
            f"only in the base {extra[:5]}{' …' if len(extra) > 5 else ''} (is it the same base model? an unmerged "
            "LoRA adapter is interpolated by scaling it, see interpolate_)"
        )
    differ = [
        f"{k}: base {tuple(base[k].shape)} vs fine-tuned {tuple(v.shape)}"
        for k, v in tuned.items()
        if base[k].shape != v.shape
    ]
    if differ:
        raise ValueError(f"cannot interpolate: {len(differ)} tensors differ in shape, e.g. {'; '.join(differ[:3])}")


def mix(base: Tensor, tuned: Tensor, alpha: float) -> Tensor:
    """``base + alpha·(tuned − base)`` in float32, in ``tuned``'s dtype; exact at 0 and 1 (``torch.lerp``)."""
    if not tuned.is_floating_point():
        return tuned.clone()
    out = torch.lerp(base.detach().to(tuned.device, torch.float32), tuned.detach().float(), alpha)
    return out.to(tuned.dtype)


def interpolate_state_dicts(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """A new state dict ``base + alpha·(tuned − base)`` (floating-point tensors; the rest copied from ``tuned``)."""
    alpha = _check_alpha(alpha)
    check_compatible(base, tuned)
    return {name: mix(base[name], value, alpha) for name, value in tuned.items()}


def lora_b_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The ``lora_B`` weights of an unmerged LoRA adapter (empty for a plain model)."""
    return {n: p for n, p in model.named_parameters() if any(m in f".{n}." for m in LORA_B_MARKERS)}


def _targets(model: nn.Module, base_state: Mapping[str, Tensor] | None) -> tuple[str, dict[str, Tensor]]:
    """("lora", lora_B tensors) or ("full", every state-dict tensor), checked against ``base_state``."""
    lora = lora_b_parameters(model)
    if lora:
        return "lora", lora
    if base_state is None:
        raise ValueError("interpolating a fully fine-tuned model needs the base model's weights (base_state)")
    state = model.state_dict()
    check_compatible(base_state, state)
    return "full", state


@torch.no_grad()
def _apply(kind: str, targets: Mapping[str, Tensor], base_state: Mapping[str, Tensor] | None, alpha: float) -> None:
    for name, value in targets.items():
        if kind == "lora":
            value.mul_(alpha)
        elif value.is_floating_point():
            assert base_state is not None
            value.copy_(mix(base_state[name], value, alpha))


def interpolate_(model: nn.Module, base_state: Mapping[str, Tensor] | None, alpha: float) -> str:
    """Interpolate ``model`` in place towards its base; returns how (``"full"``, ``"lora"`` or ``"none"`` at 1).

    A model with an unmerged LoRA adapter needs no ``base_state``: its frozen weights are the base's, and scaling
    the adapter's ``lora_B`` by ``alpha`` is the interpolation. A fully fine-tuned model needs the base's state dict
    (same names and shapes, else ``ValueError``)."""
    alpha = _check_alpha(alpha)
    if alpha == 1.0:
        return "none"
    kind, targets = _targets(model, base_state)
    _apply(kind, targets, base_state, alpha)
    return kind


@contextmanager
def interpolated(model: nn.Module, base_state: Mapping[str, Tensor] | None, alpha: float) -> Iterator[nn.Module]:
    """``model`` interpolated for the ``with`` block, its own weights restored afterwards (even on an error)."""
    alpha = _check_alpha(alpha)
    if alpha == 1.0:
        yield model
        return
    kind, targets = _targets(model, base_state)
    saved = {n: t.detach().clone() for n, t in targets.items() if t.is_floating_point()}
    try:
        _apply(kind, targets, base_state, alpha)
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                targets[name].copy_(value)


def base_state_dict(base: str | Path, device: str = "cpu") -> dict[str, Tensor]:
    """The state dict of the base sentence-transformers model at ``base`` (a folder or hub id)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(base), device=device).state_dict()


def interpolate_folder(base_dir: str | Path, tuned_dir: str | Path, alpha: float, out_dir: str | Path) -> Path:
    """Write ``base + alpha·(tuned − base)`` of two model folders into ``out_dir`` (atomically) and return it.

    ``tuned_dir`` is a model saved by training (a plain folder, or an unmerged LoRA adapter, which is merged first:
    the output is always a plain, self-contained model folder); ``base_dir`` the base model it was trained from.
    The template and the training metadata are carried over; the metadata records the mix (``interpolate``: the
    effective factor relative to the original fine-tuned weights, when ``tuned_dir`` was itself a mix) and drops
    the fine-tuned model's validation scores, which no longer describe the weights.
    """
    from lexdpr_pipeline.artifacts import staged_folder
    from lexdpr_pipeline.models.biencoder import ADAPTER_FILE, BiEncoder
    from lexdpr_pipeline.models.training import TRAINING_FILE, _is_saved_model, _merge_lora, read_training_metadata
    from lexdpr_pipeline.storage import atomic_write_text

    alpha = _check_alpha(alpha)
    tuned_dir, out_dir = Path(tuned_dir), Path(out_dir)
    if not Path(base_dir).exists():
        raise FileNotFoundError(f"base model {base_dir} does not exist")
    if out_dir.resolve() in (tuned_dir.resolve(), Path(base_dir).resolve()):
        raise ValueError("out_dir must be a new folder, not the base or the fine-tuned model")
    from sentence_transformers import SentenceTransformer

    tuned = BiEncoder.load(tuned_dir)
    was_lora = (tuned_dir / ADAPTER_FILE).exists()
    if was_lora:
        _merge_lora(tuned.model)
    # The mix goes into a fresh copy of the base (a model that once carried an adapter saves its weights under
    # PEFT's names even after the merge); same architecture and tokenizer, the fine-tuned model's sequence length.
    carrier = SentenceTransformer(str(base_dir), device="cpu")
    carrier.load_state_dict(interpolate_state_dicts(carrier.state_dict(), tuned.model.state_dict(), alpha))
    carrier.max_seq_length = tuned.model.max_seq_length
    mixed = BiEncoder(carrier, tuned.template)
    meta: dict[str, Any] = read_training_metadata(tuned_dir) or {}
    before = float(meta.get("interpolate", 1.0))
    meta.update(
        interpolate=alpha * before,
        interpolation={"base": str(base_dir), "tuned": str(tuned_dir), "alpha": alpha, "tuned_interpolate": before},
        final_validation={},
    )
    if was_lora:
        meta["lora"] = {**meta.get("lora", {}), "merged": True, "adapter": None}
    with staged_folder(out_dir, on_exists="replace", replaceable=_is_saved_model) as tmp:
        mixed.save(tmp)
        atomic_write_text(tmp / TRAINING_FILE, json.dumps(meta, ensure_ascii=False, indent=2, default=str))
    _log.info("interpolated %s with %s at %.3f into %s", tuned_dir, base_dir, alpha, out_dir)
    return out_dir
