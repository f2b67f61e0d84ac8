"""Evaluation helpers for the synthetic-findings classifier (training report and tests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from covidct_core.phantom import make_chest_phantom, random_phantom_options
from covidct_core.volume_io import Volume


def roc_auc(labels: Sequence[int | bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction).

    ``labels`` are 1/True for positives. Raises ValueError without both classes.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{y.shape[0]} labels but {s.shape[0]} scores")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one positive and one negative case")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_scores = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = float(ranks[y].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def phantom_lungs(seed: int) -> tuple[Volume, npt.NDArray[np.bool_]]:
    """A chest phantom with varied acquisition (flips, FOV, noise; 1.2-2 mm in-plane,
    2-5 mm slices) and its lung mask: the phantom population of training and evaluation."""
    rng = np.random.default_rng(seed)
    options = random_phantom_options(rng)
    inplane = float(rng.uniform(1.2, 2.0))
    spacing = (inplane, inplane, float(rng.choice([2.0, 2.5, 3.0, 5.0])))
    options = dataclasses.replace(options, spacing=spacing, arms=False)
    phantom = make_chest_phantom(seed, options)
    return phantom.volume, phantom.lung_mask > 0
