from __future__ import annotations

import numpy as np
import pytest

from covidct_classify.evaluation import roc_auc


def test_auc_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # one of four positive/negative pairs is ordered wrongly
    assert roc_auc([0, 0, 1, 1], [0.1, 0.6, 0.5, 0.9]) == 0.75


def test_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(labels.tolist(), scores.tolist()) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError):
        roc_auc([1, 1], [0.2, 0.3])
