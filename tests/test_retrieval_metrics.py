"""Retrieval metrics: ranks, R@K / MdR / MnR, ties and the multi-sentence protocol of the reference."""

from __future__ import annotations

import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.metrics.retrieval import (
    TIES,
    best_caption_sim,
    metrics_from_ranks,
    multi_sentence_metrics,
    positive_ranks,
    retrieval_metrics,
)

# Plain 4x4: text ranks (rows) are 0, 1, 2, 3; video ranks (columns) are 1, 2, 1, 1.
SIM_4 = np.array([
    [0.90, 0.10, 0.20, 0.30],
    [0.80, 0.50, 0.10, 0.20],
    [0.10, 0.70, 0.30, 0.60],
    [0.95, 0.90, 0.85, 0.40],
], dtype=np.float32)

# Multi-sentence: 3 videos with 2 / 1 / 3 captions, interleaved.
VIDEO_OF_CAPTION = np.array([0, 2, 1, 0, 2, 2])
SIM_MS = np.array([
    [0.9, 0.2, 0.1],  # video 0, rank 0
    [0.3, 0.6, 0.5],  # video 2, rank 1
    [0.7, 0.4, 0.8],  # video 1, rank 2
    [0.1, 0.3, 0.2],  # video 0, rank 2
    [0.2, 0.1, 0.6],  # video 2, rank 0
    [0.4, 0.5, 0.3],  # video 2, rank 2
])


def naive_ranks(scores, positives):
    """Number of columns scoring strictly higher than the positive, by a double loop."""
    out = []
    for i, p in enumerate(positives):
        out.append(sum(1 for j in range(scores.shape[1]) if scores[i, j] > scores[i, p]))
    return np.array(out, dtype=np.float64)


def sort_and_match_ranks(scores, positives):
    """The reference's literal recipe: sort each row best-first, list every position equal to the positive."""
    out = []
    for i, p in enumerate(positives):
        row = np.sort(-scores[i])
        out.extend(np.flatnonzero(row - (-scores[i, p]) == 0).tolist())
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------- plain protocol

def test_plain_protocol_gives_hand_computed_t2v_and_v2t():
    m = retrieval_metrics(SIM_4)
    assert m["t2v"] == {"R@1": 25.0, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                        "MdR": 2.5, "MnR": 2.5, "count": 4}
    assert m["v2t"] == {"R@1": 0.0, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                        "MdR": 2.0, "MnR": 2.25, "count": 4}


def test_positive_ranks_of_known_matrix():
    assert positive_ranks(SIM_4, np.arange(4)).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert positive_ranks(SIM_4.T, np.arange(4)).tolist() == [1.0, 2.0, 1.0, 1.0]


def test_recall_counts_ranks_strictly_below_k():
    m = metrics_from_ranks(np.array([0, 1, 2, 5, 9]), ks=(1, 2, 5))
    assert (m["R@1"], m["R@2"], m["R@5"]) == (20.0, 40.0, 60.0)
    assert m["MdR"] == 3.0 and m["MnR"] == pytest.approx(17 / 5 + 1)


def test_numpy_median_averages_and_lower_median_takes_the_lower_middle():
    ranks = np.array([3, 0, 2, 1])  # 1-based: 1, 2, 3, 4
    assert metrics_from_ranks(ranks)["MdR"] == 2.5
    assert metrics_from_ranks(ranks, median="lower")["MdR"] == 2.0
    assert metrics_from_ranks(ranks[:3], median="lower")["MdR"] == 3.0  # odd count: same as NumPy


def test_non_square_sim_is_a_user_error():
    with pytest.raises(C4CError, match="square"):
        retrieval_metrics(np.zeros((3, 4)))


def test_unknown_policy_and_empty_ranks_are_user_errors():
    with pytest.raises(C4CError, match="tie policy"):
        positive_ranks(SIM_4, np.arange(4), ties="random")
    with pytest.raises(C4CError, match="median"):
        metrics_from_ranks(np.arange(3), median="upper")
    with pytest.raises(C4CError, match="no ranks"):
        metrics_from_ranks(np.zeros(0))


# --------------------------------------------------------------------------- ties

TIED = np.array([
    [0.5, 0.5, 0.1],  # positive (col 0) ties with col 1
    [0.2, 0.9, 0.3],
    [0.4, 0.1, 0.8],
])


def test_reference_ties_give_one_rank_per_tied_column():
    r = positive_ranks(TIED, np.arange(3))
    assert r.tolist() == [0.0, 1.0, 0.0, 0.0] and len(r) == 3 + 1
    m = retrieval_metrics(TIED)["t2v"]
    assert (m["R@1"], m["MdR"], m["MnR"], m["count"]) == (75.0, 1.0, 1.25, 4)


def test_other_tie_policies_give_one_rank_per_row():
    assert positive_ranks(TIED, np.arange(3), "optimistic").tolist() == [0.0, 0.0, 0.0]
    assert positive_ranks(TIED, np.arange(3), "pessimistic").tolist() == [1.0, 0.0, 0.0]
    assert positive_ranks(TIED, np.arange(3), "mean").tolist() == [0.5, 0.0, 0.0]
    assert retrieval_metrics(TIED, "optimistic")["t2v"]["R@1"] == 100.0
    assert retrieval_metrics(TIED, "pessimistic")["t2v"]["R@1"] == pytest.approx(200 / 3)
    assert retrieval_metrics(TIED, "mean")["t2v"]["MnR"] == pytest.approx(0.5 / 3 + 1)


def test_reference_policy_equals_sort_and_match_on_tie_heavy_scores():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(20, 9)).astype(np.float32)
    positives = rng.integers(0, 9, size=20)
    np.testing.assert_array_equal(positive_ranks(scores, positives),
                                  sort_and_match_ranks(scores, positives))


def test_reference_policy_drops_rows_whose_positive_is_not_finite():
    scores = np.array([[np.nan, 0.1], [0.3, np.inf], [0.2, np.nan]])
    assert positive_ranks(scores, np.array([0, 1, 0])).tolist() == [0.0]  # NaN elsewhere never wins
    assert positive_ranks(scores, np.array([0, 1, 0]), "pessimistic").tolist() == [1.0, 0.0, 0.0]


# --------------------------------------------------------------------------- chunking, brute force

@pytest.mark.parametrize("ties", TIES)
def test_row_chunks_concatenate_to_the_full_ranks(ties):
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((37, 23)), 1)  # rounding makes ties
    positives = rng.integers(0, 23, size=37)
    full = positive_ranks(scores, positives, ties)
    bounds = [0, 5, 6, 20, 37]
    chunks = [positive_ranks(scores[a:b], positives[a:b], ties) for a, b in zip(bounds, bounds[1:])]
    np.testing.assert_array_equal(np.concatenate(chunks), full)


@pytest.mark.parametrize("ties", TIES)
def test_continuous_scores_match_a_double_loop(ties):
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((15, 11))
    positives = rng.integers(0, 11, size=15)
    np.testing.assert_array_equal(positive_ranks(scores, positives, ties),
                                  naive_ranks(scores, positives))


# --------------------------------------------------------------------------- multi-sentence

def test_multi_sentence_gives_hand_computed_t2v_and_v2t():
    m = multi_sentence_metrics(SIM_MS, VIDEO_OF_CAPTION)
    # t2v ranks 0,1,2,2,0,2 -> 1-based 1,1,2,3,3,3: lower median 2 (NumPy would say 2.5)
    assert m["t2v"] == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                                      "MdR": 2.0, "MnR": 13 / 6, "count": 6})
    # v2t rows (video j vs group k, best caption): [.9 .7 .4], [.3 .4 .6], [.2 .8 .6] -> ranks 0, 1, 1
    assert m["v2t"] == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                                      "MdR": 2.0, "MnR": 5 / 3, "count": 3})


def test_best_caption_sim_takes_the_max_over_each_video_captions():
    expected = [[0.9, 0.7, 0.4], [0.3, 0.4, 0.6], [0.2, 0.8, 0.6]]
    np.testing.assert_array_equal(best_caption_sim(SIM_MS, VIDEO_OF_CAPTION), expected)


def test_multi_sentence_ignores_caption_order():
    perm = np.array([3, 5, 0, 2, 4, 1])
    assert multi_sentence_metrics(SIM_MS[perm], VIDEO_OF_CAPTION[perm]) == \
        multi_sentence_metrics(SIM_MS, VIDEO_OF_CAPTION)


def test_one_caption_per_video_matches_the_plain_protocol_for_odd_counts():
    sim = np.random.default_rng(3).standard_normal((5, 5))
    assert multi_sentence_metrics(sim, np.arange(5)) == retrieval_metrics(sim)


def test_multi_sentence_nan_elsewhere_counts_as_minus_inf():
    sim = SIM_MS.copy()
    sim[5, 1] = np.nan  # caption 5 (video 2) no longer loses to video 1: rank 2 -> 1
    m = multi_sentence_metrics(sim, VIDEO_OF_CAPTION)
    assert m["t2v"]["MnR"] == pytest.approx(6 / 6 + 1) and m["t2v"]["MdR"] == 2.0
    assert m["v2t"] == multi_sentence_metrics(SIM_MS, VIDEO_OF_CAPTION)["v2t"]


def test_multi_sentence_drops_captions_whose_own_score_is_nan():
    sim = SIM_MS.copy()
    sim[4, 2] = np.nan  # caption 4 dropped from t2v; its group's best for video 2 becomes 0.5
    m = multi_sentence_metrics(sim, VIDEO_OF_CAPTION)
    # t2v ranks 0,1,2,2,2 -> 1-based 1,2,3,3,3
    assert m["t2v"] == pytest.approx({"R@1": 20.0, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0,
                                      "MdR": 3.0, "MnR": 12 / 5, "count": 5})
    assert best_caption_sim(sim, VIDEO_OF_CAPTION)[2].tolist() == [0.2, 0.8, 0.5]
    assert m["v2t"]["MnR"] == pytest.approx(5 / 3)


def test_multi_sentence_reference_ties_break_by_column_index():
    sim = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])
    m = multi_sentence_metrics(sim, np.array([0, 1, 1]))
    assert m["t2v"]["count"] == 3 and m["t2v"]["R@1"] == pytest.approx(200 / 3)  # ranks 0, 1, 0


def test_multi_sentence_bad_caption_map_is_a_user_error():
    with pytest.raises(C4CError, match="no caption"):
        multi_sentence_metrics(SIM_MS, np.array([0, 0, 1, 0, 1, 1]))
    with pytest.raises(C4CError, match="one entry per sim row"):
        multi_sentence_metrics(SIM_MS, np.array([0, 1, 2]))
    with pytest.raises(C4CError, match="outside"):
        multi_sentence_metrics(SIM_MS, np.array([0, 1, 2, 3, 0, 1]))
