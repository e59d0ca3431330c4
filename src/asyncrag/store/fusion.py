"""Hybrid search's fusion: a dense list and a BM25 list of hits become one ranking, client-side.

Milvus's own rankers were measured and set aside (docs/architecture.md, "Hybrid search"): its
WeightedRanker squashes each side through a fixed curve (cosine → (1 + s) / 2, BM25 → 2·atan(s)/π),
so with MiniLM's cosines near 0.5 every dense-only hit outranked the best BM25-only hit, and a
sentence quoted word for word vanished from hybrid's top 10 while BM25 ranked it first. The rules
here normalise each list against itself, so that neither side's scale decides; and `lead` puts each
side's best hit first, so a passage that only BM25 finds (a quoted sentence, an error code) is
always in the top 2, whatever MiniLM thinks of it. All are pure functions of the two lists,
measured side by side in benchmarks/retrieval.py.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Hit = dict[str, Any]
LEAD_BONUS = 1.0  # pymilvus's hit: {"id", "distance" (the score, higher is better), "entity"}
Rule = Literal["relative", "dbsf", "rrf", "milvus"]
RULES: tuple[Rule, ...] = ("relative", "dbsf", "rrf", "milvus")


@dataclass(frozen=True)
class Fusion:
    """How the two lists are fused, and how many candidates each side brings.

    - "relative": each side's scores min-max scaled to [0, 1] within its own list, then weighed
      (Weaviate's relativeScoreFusion);
    - "dbsf": each side scaled by its own mean ± 3 standard deviations (Qdrant's distribution-based
      score fusion);
    - "rrf": reciprocal rank fusion, weight / (k + rank);
    - "milvus": Milvus's WeightedRanker curves, for comparison only.
    `dense_weight` weighs the dense side, 1 - dense_weight the BM25 side.
    """

    rule: Rule = "relative"
    dense_weight: float = 0.5
    candidates: int = 20
    rrf_k: int = 60
    lead: bool = False  # each side's best hit leads the list (its score + LEAD_BONUS), whatever the others' scores

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"fusion rule must be one of {', '.join(RULES)}, not {self.rule!r}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be in [0, 1], not {self.dense_weight}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, not {self.candidates}")

    def label(self) -> str:
        extra = (f", k={self.rrf_k}" if self.rule == "rrf" else "") + (", each side's best first" if self.lead else "")
        return f"{self.rule} {self.dense_weight:.2f}/{1 - self.dense_weight:.2f}, {self.candidates} a side{extra}"


# Chosen by benchmarks/retrieval.py on the tuning halves of two corpora (the tutorial's data,
# Python's docs), among the fusions that keep an exact match in the top 3 for every question
# (dbsf with the same weights was 0.002 behind): docs/architecture.md, "Hybrid search".
DEFAULT_FUSION = Fusion("relative", 0.7, 40, lead=True)


def _min_max(scores: Sequence[float]) -> list[float]:
    low, high = min(scores), max(scores)
    if high - low < 1e-12:  # one hit, or all tied: each is this side's best
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _dbsf(scores: Sequence[float]) -> list[float]:
    if len(scores) < 2:
        return [1.0] * len(scores)
    mean, spread = statistics.fmean(scores), 3 * statistics.pstdev(scores)
    if spread < 1e-12:
        return [1.0] * len(scores)
    return [min(1.0, max(0.0, (s - (mean - spread)) / (2 * spread))) for s in scores]


def _ranks(scores: Sequence[float], k: int) -> list[float]:
    return [1.0 / (k + rank) for rank in range(1, len(scores) + 1)]


def _milvus_dense(scores: Sequence[float]) -> list[float]:
    return [(1 + s) / 2 for s in scores]  # COSINE


def _milvus_bm25(scores: Sequence[float]) -> list[float]:
    return [2 * math.atan(s) / math.pi for s in scores]


def _normalisers(fusion: Fusion) -> tuple[Callable[[Sequence[float]], list[float]], ...]:
    if fusion.rule == "relative":
        return _min_max, _min_max
    if fusion.rule == "dbsf":
        return _dbsf, _dbsf
    if fusion.rule == "rrf":
        return (lambda s: _ranks(s, fusion.rrf_k),) * 2
    return _milvus_dense, _milvus_bm25


def fuse(dense: Sequence[Hit], sparse: Sequence[Hit], fusion: Fusion, limit: int) -> list[Hit]:
    """The best `limit` hits of both lists, each side's scores normalised and weighed; a hit in both
    lists gets the sum. Lists are best first; ties keep dense's order, then BM25's."""
    fused: dict[Any, float] = {}
    rows: dict[Any, Hit] = {}
    weights = (fusion.dense_weight, 1.0 - fusion.dense_weight)
    for hits, weight, normalise in zip((dense, sparse), weights, _normalisers(fusion), strict=True):
        if not hits:
            continue
        for hit, score in zip(hits, normalise([float(h["distance"]) for h in hits]), strict=True):
            fused[hit["id"]] = fused.get(hit["id"], 0.0) + weight * score
            rows.setdefault(hit["id"], hit)
    if fusion.lead:  # a weighed score is at most 1: the bonus puts the leaders above every other hit
        for leader in {hits[0]["id"] for hits in (dense, sparse) if hits}:
            fused[leader] += LEAD_BONUS
    best = sorted(fused, key=fused.__getitem__, reverse=True)[:limit]  # stable: ties keep first-seen order
    return [{**rows[key], "distance": fused[key]} for key in best]
