import numpy as np

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
