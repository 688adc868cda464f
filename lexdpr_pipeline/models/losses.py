"""Ranking losses that know about in-batch duplicates.

In LexDPR one statute article is the positive of many queries (민법 제750조 is cited by hundreds of decisions), and
a cross-reference query has several positives. With plain in-batch negatives, the positive of row *j* is then also a
correct answer for row *i* and gets pushed away — a false negative. These losses mask such candidates out of the
softmax: every row carries integer keys (``label`` column, see :func:`row_keys`) for its query, its positive, its
hard negatives and (up to a cap) all passages relevant to its query; a candidate is masked for an anchor when its key
is relevant to that anchor (and it is not the anchor's own positive column).

The mask is applied inside the similarity function, so the same code serves sentence-transformers'
MultipleNegativesRankingLoss and its cached (GradCache) variant, whose score matrix is computed in row chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import cos_sim
from torch import Tensor

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

    def start(self, labels: Tensor | None, n_doc_columns: int) -> None:
        self.row = 0
        if labels is None or labels.dim() != 2:
            self.mask = None
            return
        self.mask = duplicate_mask(labels, n_doc_columns)
        self.masked_total += int(self.mask.sum())


def _doc_columns(labels: Tensor) -> int:
    return labels.size(1) - 1 - RELEVANT_CAP


class MaskedMNRL(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss with in-batch duplicates masked (see module doc)."""

    def __init__(self, model, scale: float = 20.0) -> None:
        self.masked_similarity = _MaskedSimilarity()
        super().__init__(model, scale=scale, similarity_fct=self.masked_similarity)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        self.masked_similarity.start(labels, _doc_columns(labels) if labels is not None else 0)
        return super().forward(sentence_features, labels)

    @property
    def masked_total(self) -> int:
        return self.masked_similarity.masked_total


class MaskedCachedMNRL(CachedMultipleNegativesRankingLoss):
    """The cached (GradCache) variant with the same masking: large effective batches on small memory."""

    def __init__(self, model, scale: float = 20.0, mini_batch_size: int = 16) -> None:
        masked = _MaskedSimilarity()
        super().__init__(model, scale=scale, similarity_fct=masked, mini_batch_size=mini_batch_size)
        self.__dict__["masked_similarity"] = masked

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        self.masked_similarity.start(labels, _doc_columns(labels) if labels is not None else 0)
        return super().calculate_loss(reps, labels, with_backward=with_backward)

    @property
    def masked_total(self) -> int:
        return self.masked_similarity.masked_total


def build_loss(model, *, kind: str, temperature: float, mask_duplicates: bool, mini_batch_size: int):
    """``kind`` mnrl | cached_mnrl; ``scale = 1 / temperature``."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    scale = 1.0 / temperature
    if kind == "mnrl":
        return MaskedMNRL(model, scale=scale) if mask_duplicates else MultipleNegativesRankingLoss(model, scale=scale)
    if kind == "cached_mnrl":
        if mask_duplicates:
            return MaskedCachedMNRL(model, scale=scale, mini_batch_size=mini_batch_size)
        return CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch_size)
    raise ValueError(f"unknown loss {kind!r}: use mnrl or cached_mnrl")
