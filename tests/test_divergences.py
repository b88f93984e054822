import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scfim.geometry import divergences as dv

LOG2 = math.log(2)


def _simplex(k):
    return (
        arrays(np.float64, k, elements=st.floats(0, 1, allow_nan=False))
        .filter(lambda a: a.sum() > 1e-6)
        .map(lambda a: a / a.sum())
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12).flatmap(lambda k: st.tuples(_simplex(k), _simplex(k))))
def test_js_properties(pq):
    p, q = pq
    a, b = dv.js(p, q), dv.js(q, p)
    assert abs(a - b) < 1e-12  # symmetric
    assert -1e-15 <= a <= LOG2 + 1e-12  # bounded by log 2
    assert dv.js(p, p) < 1e-12  # zero on the diagonal
    if np.abs(p - q).sum() > 1e-3:  # and only there
        assert a > 0


def test_js_extremes_and_known_value():
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert abs(dv.js(p, q) - LOG2) < 1e-12  # disjoint supports: the maximum
    p = np.array([0.5, 0.5])
    q = np.array([1.0, 0.0])
    m = np.array([0.75, 0.25])
    expected = 0.5 * (np.sum(p * np.log(p / m)) + np.log(1 / 0.75))
    assert abs(dv.js(p, q) - expected) < 1e-12


def test_kl_log0_safe_and_infinite_where_due():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    assert abs(dv.kl(p, q) - np.log(2)) < 1e-12
    assert np.isinf(dv.kl(q, p))
    assert dv.kl(p, p) == 0


def test_sqrt_js_gradient_is_finite_at_equal_rows():
    logits = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(logits, -1)
    p0 = torch.cat([p[:, :2], torch.zeros(8, 1, dtype=torch.float64), p[:, 3:]], -1)
    d = dv.sqrt_js(p0, p0.detach().clone()).sum() + dv.sqrt_js(p, p).sum()
    d.backward()
    assert torch.isfinite(logits.grad).all()


def test_batched_shapes_and_pairwise():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(30) * 0.3, size=12)
    Q = rng.dirichlet(np.ones(30) * 0.3, size=7)
    P[0, :10] = 0
    P[0] /= P[0].sum()
    M = dv.pairwise_js(P, Q)
    ref = dv.js(P[:, None, :], Q[None, :, :])
    assert M.shape == (12, 7)
    np.testing.assert_allclose(M, ref, atol=5e-6)
    S = dv.pairwise_js(P)
    np.testing.assert_array_equal(S, S.T)
    assert np.all(np.diag(S) == 0)
    np.testing.assert_allclose(S, dv.js(P[:, None], P[None]), atol=5e-6)


def test_fisher_rao_on_simplex():
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert abs(dv.fisher_rao(p, q) - np.pi) < 1e-6  # 2 arccos(0)
    assert dv.fisher_rao(p, p) < 1e-6
    # infinitesimally: FR² ≈ Σ dp²/p = 8 JS
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(6))
    dp = rng.normal(size=6)
    dp -= dp.mean()
    q = p + 1e-4 * dp
    fr2 = dv.fisher_rao(p, q) ** 2
    assert abs(fr2 / (8 * dv.js(p, q)) - 1) < 1e-3
    assert abs(fr2 / np.sum((q - p) ** 2 / p) - 1) < 1e-3
