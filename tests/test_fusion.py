"""Hybrid search's fusion (store/fusion.py): a passage only BM25 finds must surface."""

from __future__ import annotations

import pytest

from asyncrag.store.fusion import DEFAULT_FUSION, RULES, Fusion, fuse


def hits(prefix: str, scores: list[float]) -> list[dict]:
    return [{"id": f"{prefix}{i}", "distance": s, "entity": {"text": f"{prefix}{i}"}} for i, s in enumerate(scores)]


# What issue 17 saw: MiniLM's cosines bunch near 0.5; a sentence quoted word for word scores 14.8 in BM25.
DENSE_ONLY = hits("d", [0.52, 0.51, 0.50, 0.49, 0.48, 0.47, 0.47, 0.46, 0.45, 0.44])
MARKER = hits("bm25-", [14.8, 3.1, 2.9, 2.5, 2.2])


def rank_of(found: list[dict], key: str) -> int | None:
    return next((i for i, h in enumerate(found, 1) if h["id"] == key), None)


@pytest.mark.parametrize("rule", [r for r in RULES if r != "milvus"])
def test_a_passage_only_bm25_finds_is_in_the_top_3(rule: str) -> None:
    found = fuse(DENSE_ONLY, MARKER, Fusion(rule, 0.5, 20), 10)  # type: ignore[arg-type]
    assert (rank_of(found, "bm25-0") or 99) <= 3, [h["id"] for h in found]


def test_the_default_keeps_the_exact_match_first_or_second() -> None:
    found = fuse(DENSE_ONLY, MARKER, DEFAULT_FUSION, 10)
    assert (rank_of(found, "bm25-0") or 99) <= 2


def test_milvus_s_weighted_ranker_hid_it() -> None:
    """The rule hybrid search had: every dense-only hit outranks the best BM25-only one."""
    found = fuse(DENSE_ONLY, MARKER, Fusion("milvus", 0.7, 10), 10)
    assert rank_of(found, "bm25-0") is None


def test_a_hit_in_both_lists_sums_and_keeps_its_row() -> None:
    dense = hits("x", [0.9, 0.8, 0.1])
    sparse = [{"id": "x1", "distance": 5.0, "entity": {"text": "x1"}}, *hits("s", [1.0])]
    found = fuse(dense, sparse, Fusion("relative", 0.5, 10), 3)
    assert [h["id"] for h in found] == ["x1", "x0", "x2"]  # x2 and s0 tie at 0: dense's came first
    assert found[0]["distance"] == pytest.approx(0.5 * 0.875 + 0.5) and found[0]["entity"] == {"text": "x1"}


def test_limit_empty_sides_and_ties() -> None:
    assert fuse([], [], DEFAULT_FUSION, 5) == []
    only_dense = fuse(hits("d", [0.3, 0.3, 0.3]), [], DEFAULT_FUSION, 2)
    assert [h["id"] for h in only_dense] == ["d0", "d1"]  # ties keep the side's order
    assert [h["id"] for h in fuse([], hits("s", [4.0, 1.0]), DEFAULT_FUSION, 5)] == ["s0", "s1"]


def test_rrf_counts_ranks_not_scores() -> None:
    found = fuse(hits("d", [0.9, 0.1]), hits("s", [100.0, 99.0]), Fusion("rrf", 0.5, 10, rrf_k=60), 4)
    assert found[0]["distance"] == pytest.approx(0.5 / 61)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rule": "sum"}, "fusion rule"), ({"dense_weight": 1.5}, "dense_weight"), ({"candidates": 0}, "candidates")],
)
def test_a_bad_fusion_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fusion(**kwargs)


def test_lead_puts_each_side_s_best_first_whatever_the_scores() -> None:
    weak = hits("bm25-", [1.2, 1.1, 1.0])  # BM25's best is barely better than the rest: still second
    found = fuse(DENSE_ONLY, weak, Fusion("dbsf", 0.7, 40, lead=True), 5)
    assert [h["id"] for h in found[:2]] == ["d0", "bm25-0"] and len(found) == 5
    scores = [h["distance"] for h in found]
    assert scores == sorted(scores, reverse=True) and scores[1] > 1.0 >= scores[2]  # scores still rank the list
    same = fuse(hits("x", [0.9, 0.2]), hits("x", [5.0, 1.0]), Fusion("relative", 0.5, 10, lead=True), 5)
    assert [h["id"] for h in same] == ["x0", "x1"]  # one hit leads both sides: it appears once
