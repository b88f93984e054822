"""Landmark count of the diffusion operator: about one landmark per six cells, 500 to 2000."""

import numpy as np
import pytest

from scfim.geometry.diffusion import build_operator, landmark_count


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (400, None),
        (500, None),
        (501, 500),
        (3000, 500),
        (6000, 1000),
        (12_000, 2000),
        (1_000_000, 2000),
    ],
)
def test_auto_count(n, expected):
    assert landmark_count(n) == expected
    assert landmark_count(n, "auto") == expected


def test_integer_and_none_are_used_as_given():
    assert landmark_count(3000, 2000) == 2000
    assert landmark_count(3000, 3000) is None  # n does not exceed it: exact
    assert landmark_count(10**6, None) is None
    with pytest.raises(ValueError, match="auto"):
        landmark_count(3000, "many")


def test_build_operator_uses_the_auto_count():
    X = np.random.default_rng(0).normal(size=(3000, 5))
    op, _ = build_operator(X, t=3)
    assert op.is_landmark and 0.9 * 500 <= op.n_states <= 500  # k-means may leave a few empty
    small, _ = build_operator(X[:400], t=3)
    assert not small.is_landmark and small.n_states == 400
