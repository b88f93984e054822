import numpy as np
import pytest

from scfim.geometry import mds


def test_classical_mds_recovers_a_planar_configuration():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(60, 2))
    D = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    Z = mds.classical_mds(D, 2)
    E = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    np.testing.assert_allclose(E, D, atol=1e-8)
    Z3, s = mds.metric_mds(D, 2)
    assert s < 1e-6


def test_metric_mds_lowers_stress_of_a_curved_configuration():
    rng = np.random.default_rng(1)
    th = rng.uniform(0, 1.5 * np.pi, 80)
    Y = np.column_stack([np.cos(th), np.sin(th), 0.3 * th])
    D = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    s_classical = mds.stress(D, mds.classical_mds(D, 2))
    Z, s_metric = mds.metric_mds(D, 2)
    assert abs(mds.stress(D, Z) - s_metric) < 1e-9
    assert s_metric < s_classical


def test_interpolate_is_a_weighted_average():
    import scipy.sparse as sp

    T = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    Yl = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    np.testing.assert_allclose(mds.interpolate(T, Yl), [[1.0, 0.0], [5.0, 5.0]])


def test_place_points_recovers_points_from_exact_distances():
    """Ground truth: distances measured from known positions are matched exactly there."""
    from scfim.geometry.mds import place_points

    rng = np.random.default_rng(0)
    Y_ref = rng.normal(size=(80, 2))
    Y_true = rng.normal(size=(15, 2))
    D = np.sqrt(((Y_true[:, None] - Y_ref[None]) ** 2).sum(-1))
    Y = place_points(D, Y_ref, init=Y_true + 0.3 * rng.normal(size=Y_true.shape), tol=1e-12)
    np.testing.assert_allclose(Y, Y_true, atol=1e-5)


def test_place_points_returns_a_converged_reference_point_to_its_place():
    from scfim.geometry.mds import metric_mds, place_points

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    Y, _ = metric_mds(D, 2, max_iter=5000, tol=1e-12)
    Y2 = place_points(D[:10], Y, init=Y[:10] + 0.05, tol=1e-12, max_iter=5000)
    np.testing.assert_allclose(Y2, Y[:10], atol=1e-4 * np.ptp(Y))
    with pytest.raises(ValueError, match="rows"):
        place_points(D[:3], Y[:10])
