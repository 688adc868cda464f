"""Ranking losses that know about in-batch duplicates.

In LexDPR one statute article is the positive of many queries (민법 제750조 is cited by hundreds of decisions), and
a cross-reference query has several positives. With plain in-batch negatives, the positive of row *j* is then also a
correct answer for row *i* and gets pushed away — a false negative. These losses mask such candidates out of the
softmax: every row carries integer keys (``label`` column, see :func:`row_keys`) for its query, its positive, its
hard negatives and (up to a cap) all passages relevant to its query; a candidate is masked for an anchor when its key
is relevant to that anchor (and it is not the anchor's own positive column).

The mask is applied inside the similarity function, so the same code serves sentence-transformers'
MultipleNegativesRankingLoss and its cached (GradCache) variant, whose score matrix is computed in row chunks.

Under DDP (``train.nproc_per_node`` > 1) :func:`build_loss` is called with ``gather_across_devices``: the losses
all-gather every rank's candidates, so an anchor is scored against the whole global batch. The masks follow: the
labels are all-gathered too and each rank keeps its own rows of the global mask (:meth:`_MaskedSimilarity.start`).

:class:`DistillToBase` adds a term that keeps the student's embeddings of the batch's texts (queries, positives and
negatives alike) near those of the frozen base model (issue 14 §4, forgetting): the ranking loss only says how the
training query types should be ranked; the term anchors everything else where the base had it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import all_gather, cos_sim, get_rank, get_world_size
from torch import Tensor, nn

RELEVANT_CAP = 8  # relevant passage keys carried per row (a query with more positives is rare: 3.5 on average)
PAD = -1


def text_key(value: str) -> int:
    """A stable 62-bit integer for an id (fits int64 tensors; never equals PAD)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little") & ((1 << 62) - 1)


def row_keys(query_id: str, positive_id: str, negative_ids: Sequence[str], relevant_ids: Iterable[str]) -> list[int]:
    """``[query, positive, negative_1..n, relevant_1..RELEVANT_CAP]`` keys (relevant padded with :data:`PAD`)."""
    relevant = [text_key(r) for r in list(dict.fromkeys(relevant_ids))[:RELEVANT_CAP]]
    relevant += [PAD] * (RELEVANT_CAP - len(relevant))
    return [text_key(query_id), text_key(positive_id), *(text_key(n) for n in negative_ids), *relevant]


def duplicate_mask(labels: Tensor, n_doc_columns: int) -> Tensor:
    """``(batch, batch * n_doc_columns)`` bool: True where a candidate is relevant to the anchor but is not its own
    positive. Candidates are ordered as the losses concatenate them: all positives, then all negative_1, …"""
    batch = labels.size(0)
    query = labels[:, 0]
    candidates = labels[:, 1 : 1 + n_doc_columns].T.reshape(-1)  # column-major: positives first
    relevant = torch.cat([labels[:, 1:2], labels[:, 1 + n_doc_columns :]], dim=1)  # own positive + relevant keys
    mask = (candidates[None, :, None] == relevant[:, None, :]).any(-1)
    # Positives of other rows of the same query are relevant too (a multi-positive query split over rows).
    same_query = query[:, None] == query[None, :]
    mask[:, :batch] |= same_query
    own = torch.arange(batch, device=labels.device)
    mask[own, own] = False
    return mask


class _MaskedSimilarity:
    """cos_sim that hides masked candidates; walks down the rows when the loss scores them in chunks."""

    def __init__(self) -> None:
        self.mask: Tensor | None = None
        self.row = 0
        self.masked_total = 0

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        scores = cos_sim(a, b)
        if self.mask is None or scores.size(1) != self.mask.size(1):
            return scores
        rows = self.mask[self.row : self.row + scores.size(0)].to(scores.device)
        self.row = (self.row + scores.size(0)) % self.mask.size(0)
        return scores.masked_fill(rows, float("-inf"))

    def start(self, labels: Tensor | None, n_doc_columns: int, gather: bool = False) -> None:
        """Build this batch's mask. With ``gather`` (the loss all-gathers candidates across DDP ranks) the mask is
        built over the gathered labels (candidates ordered as the loss gathers them: every rank's positives, then
        every rank's negative_1, …) and this rank keeps its own anchors' rows. A collective: every rank calls it."""
        self.row = 0
        if labels is None or labels.dim() != 2:
            self.mask = None
            return
        if gather and get_world_size() > 1:
            batch = labels.size(0)
            offset = get_rank() * batch
            self.mask = duplicate_mask(all_gather(labels), n_doc_columns)[offset : offset + batch]
        else:
            self.mask = duplicate_mask(labels, n_doc_columns)
        self.masked_total += int(self.mask.sum())


def _doc_columns(labels: Tensor) -> int:
    return labels.size(1) - 1 - RELEVANT_CAP


class MaskedMNRL(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss with in-batch duplicates masked (see module doc)."""

    def __init__(self, model, scale: float = 20.0, gather_across_devices: bool = False) -> None:
        self.masked_similarity = _MaskedSimilarity()
        super().__init__(
            model, scale=scale, similarity_fct=self.masked_similarity, gather_across_devices=gather_across_devices
        )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        # (MultipleNegativesRankingLoss.forward embeds and calls this; DistillToBase calls it with its embeddings.)
        self.masked_similarity.start(
            labels, _doc_columns(labels) if labels is not None else 0, gather=self.gather_across_devices
        )
        return super().compute_loss_from_embeddings(embeddings, labels)

    @property
    def masked_total(self) -> int:
        return self.masked_similarity.masked_total


class _CachedDistillHook:
    """For the cached losses: while :class:`DistillToBase` has set ``_distill`` (base embeddings, weight, metric),
    :meth:`calculate_loss` also back-propagates ``weight · distill`` into the cached embedding gradients (so the
    GradCache replay carries both terms) and keeps the term's value in ``_distill_value``."""

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        loss = super().calculate_loss(reps, labels, with_backward=with_backward)  # type: ignore[misc]
        spec = self.__dict__.get("_distill")
        if spec is not None:
            targets, weight, metric = spec
            term = weight * distill_term([torch.cat(r) for r in reps], targets, metric)
            if with_backward:
                term.backward()
                term = term.detach()
            self.__dict__["_distill_value"] = term
        return loss


class CachedMNRL(_CachedDistillHook, CachedMultipleNegativesRankingLoss):
    """sentence-transformers' cached MNRL, able to carry a distillation term (:class:`DistillToBase`)."""


class MaskedCachedMNRL(_CachedDistillHook, CachedMultipleNegativesRankingLoss):
    """The cached (GradCache) variant with the same masking: large effective batches on small memory."""

    def __init__(
        self, model, scale: float = 20.0, mini_batch_size: int = 16, gather_across_devices: bool = False
    ) -> None:
        masked = _MaskedSimilarity()
        super().__init__(
            model,
            scale=scale,
            similarity_fct=masked,
            mini_batch_size=mini_batch_size,
            gather_across_devices=gather_across_devices,
        )
        self.__dict__["masked_similarity"] = masked

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        self.masked_similarity.start(
            labels, _doc_columns(labels) if labels is not None else 0, gather=self.gather_across_devices
        )
        return super().calculate_loss(reps, labels, with_backward=with_backward)

    @property
    def masked_total(self) -> int:
        return self.masked_similarity.masked_total


def distill_term(student: Sequence[Tensor], base: Sequence[Tensor], metric: str = "cosine") -> Tensor:
    """Mean distance of the student's embeddings to the base's embeddings of the same texts (per column, any row
    order as long as both sides match): ``cosine`` = mean (1 − cos), ``mse`` = mean squared error. In float32."""
    s = torch.cat([t.float() for t in student])
    b = torch.cat([t.float() for t in base]).to(s.device)
    if s.shape != b.shape:
        raise ValueError(f"student embeddings {tuple(s.shape)} and base embeddings {tuple(b.shape)} differ")
    if metric == "cosine":
        return (1.0 - F.cosine_similarity(s, b, dim=-1)).mean()
    if metric == "mse":
        return F.mse_loss(s, b)
    raise ValueError(f"unknown distill metric {metric!r}: use cosine or mse")


def _batch_rows(features: dict[str, Any]) -> int:
    for key in ("input_ids", "attention_mask"):
        value = features.get(key)
        if isinstance(value, Tensor) and value.dim() >= 1:
            return value.size(0)
    raise ValueError("cannot tell the batch size of these features (no input_ids / attention_mask)")


def _rows(features: dict[str, Any], begin: int, end: int, n: int) -> dict[str, Any]:
    """A shallow copy with rows ``begin:end`` of every per-row tensor (the model fills the copy, not the caller's)."""
    return {
        k: v[begin:end] if isinstance(v, Tensor) and v.dim() >= 1 and v.size(0) == n else v for k, v in features.items()
    }


def frozen_base(base: Any, device: str | None = None) -> nn.Module:
    """The base model for distillation: loaded once (from a folder / hub id, or a given model), frozen, eval mode."""
    if isinstance(base, str | Path):
        from sentence_transformers import SentenceTransformer

        base = SentenceTransformer(str(base), device=device)
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


class DistillToBase(nn.Module):
    """``ranking + weight · distill``: the ranking loss, plus the distance of the student's embeddings of every text
    column of the batch to the frozen base model's embeddings of the same (already tokenized) texts.

    Returns ``{"ranking": …, "distill": …}``: the trainer sums the parts and logs each per logging step. With
    ``mnrl`` the student embeds once and both terms use those embeddings; with ``cached_mnrl`` the term joins the
    cached gradients (:class:`_CachedDistillHook`). The base is kept outside the module tree (no optimizer state, not
    swapped by the trainer, not saved) and moved to the batch's device on first use; it embeds in chunks of
    ``chunk_size`` rows (the cached loss's mini-batch size) without gradients.
    """

    def __init__(
        self, ranking: nn.Module, base: nn.Module, weight: float, metric: str = "cosine", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError("distill weight must be positive (0 means: no DistillToBase)")
        if metric not in ("cosine", "mse"):
            raise ValueError(f"unknown distill metric {metric!r}: use cosine or mse")
        if not isinstance(ranking, _CachedDistillHook) and not hasattr(ranking, "compute_loss_from_embeddings"):
            raise TypeError(f"{type(ranking).__name__} cannot carry a distillation term")
        self.ranking = ranking
        self.model = ranking.model
        self.__dict__["base"] = base
        self.weight = float(weight)
        self.metric = metric
        self.chunk_size = chunk_size

    @property
    def masked_total(self) -> int | None:
        return getattr(self.ranking, "masked_total", None)

    @torch.no_grad()
    def base_embeddings(self, features: Sequence[dict[str, Any]]) -> list[Tensor]:
        """The frozen base's embeddings of each column (its own copies of the features)."""
        base: nn.Module = self.__dict__["base"]
        device = next(v.device for v in features[0].values() if isinstance(v, Tensor))
        if next(base.parameters()).device != device:
            base.to(device)
        out = []
        for column in features:
            n = _batch_rows(column)
            step = self.chunk_size or n
            parts = [base(_rows(column, i, min(i + step, n), n))["sentence_embedding"] for i in range(0, n, step)]
            out.append(torch.cat(parts).float())
        return out

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> dict[str, Tensor]:
        features = list(sentence_features)
        targets = self.base_embeddings(features)
        if isinstance(self.ranking, _CachedDistillHook):
            self.ranking.__dict__["_distill"] = (targets, self.weight, self.metric)
            try:
                ranking = self.ranking(features, labels)
                distill = self.ranking.__dict__.pop("_distill_value")
            finally:
                self.ranking.__dict__["_distill"] = None
        else:
            embeddings = embed_columns(self.model, features)
            ranking = self.ranking.compute_loss_from_embeddings(embeddings, labels)
            distill = self.weight * distill_term(embeddings, targets, self.metric)
        return {"ranking": ranking, "distill": distill.to(ranking.dtype)}


def build_loss(
    model,
    *,
    kind: str,
    temperature: float,
    mask_duplicates: bool,
    mini_batch_size: int,
    distill_weight: float = 0.0,
    distill_base: Any = None,
    distill_metric: str = "cosine",
    device: str | None = None,
    gather_across_devices: bool = False,
):
    """``kind`` mnrl | cached_mnrl; ``scale = 1 / temperature``. With ``distill_weight > 0`` the ranking loss is
    wrapped in :class:`DistillToBase` against ``distill_base`` (a model, or a folder / hub id loaded here once).
    ``gather_across_devices`` (set under DDP, world size > 1): in-batch negatives come from every rank's share of the
    batch, not only this rank's; duplicate masks are built over the gathered batch."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    if distill_weight < 0:
        raise ValueError("distill_weight must be ≥ 0")
    scale = 1.0 / temperature
    gather = {"gather_across_devices": gather_across_devices}
    if kind == "mnrl":
        cls = MaskedMNRL if mask_duplicates else MultipleNegativesRankingLoss
        ranking = cls(model, scale=scale, **gather)
    elif kind == "cached_mnrl":
        cls = MaskedCachedMNRL if mask_duplicates else CachedMNRL
        ranking = cls(model, scale=scale, mini_batch_size=mini_batch_size, **gather)
    else:
        raise ValueError(f"unknown loss {kind!r}: use mnrl or cached_mnrl")
    if distill_weight == 0:
        return ranking
    if distill_base is None:
        raise ValueError("distill_weight > 0 needs the base model (distill_base)")
    chunk = mini_batch_size if kind == "cached_mnrl" else None
    return DistillToBase(ranking, frozen_base(distill_base, device), distill_weight, distill_metric, chunk_size=chunk)
