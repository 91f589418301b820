"""What c4c does with multi-sentence ties, said where the reference leaves it undefined."""

from __future__ import annotations

import numpy as np
import pytest

from c4c.metrics import retrieval
from c4c.metrics.retrieval import matrix_metrics, multi_sentence_metrics

def test_the_docstring_does_not_call_the_references_argsort_stable():
    doc = multi_sentence_metrics.__doc__
    assert "stable argsort" not in doc
    assert "not a stable sort" in doc and "column index" in doc


def test_reference_ties_break_by_column_index_and_so_follow_the_gallery_order():
    sim = np.array([[0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])  # caption 0 (video 0) ties with video 1
    groups = np.array([0, 1, 1])
    assert multi_sentence_metrics(sim, groups)["t2v"]["R@1"] == pytest.approx(100.0)   # tie won: column 0
    swapped = multi_sentence_metrics(sim[:, ::-1], 1 - groups)["t2v"]                    # video 0 now column 1
    assert swapped["R@1"] == pytest.approx(200 / 3)                                       # tie lost: ranks 1, 0, 0


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic", "mean"])
def test_other_tie_policies_do_not_depend_on_the_gallery_order(ties):
    rng = np.random.default_rng(0)
    sim = np.round(rng.random((9, 4)), 1)
    groups = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3])
    perm = rng.permutation(4)
    a = multi_sentence_metrics(sim, groups, ties=ties)
    b = multi_sentence_metrics(sim[:, perm], np.argsort(perm)[groups], ties=ties)
    assert a == b


def test_blockwise_multi_sentence_breaks_ties_as_the_full_matrix():
    rng = np.random.default_rng(1)
    sim = np.round(rng.random((40, 7)), 1)
    groups = rng.permutation(np.arange(40) % 7)
    full = multi_sentence_metrics(sim, groups)
    blocks = matrix_metrics(sim, groups, chunk=3)
    assert blocks["t2v"] == full["t2v"] and blocks["v2t"] == full["v2t"]


def test_the_unused_table_formatter_is_gone():
    assert not hasattr(retrieval, "format_table_rows")
