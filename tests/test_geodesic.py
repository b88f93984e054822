import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from scfim.geometry.geodesic import (
    energy_geodesic,
    initial_curves,
    refinement_levels,
    solve_geodesics,
)
from scfim.geometry.graph import graph_paths, knn_graph, symmetrize
from scfim.geometry.metric import DensityMetric, EuclideanMetric, SphereMetric, SumMetric


def test_sphere_geodesic_over_the_pole_at_default_settings():
    """(π/4, 0) → (π/4, π) passes through the pole: length π/2 within 0.2 % by default.

    The chart is singular at the pole, so the discrete curve's error there decays only
    like 1/n (single level: 0.42 % with 33 points, 0.17 % with 65); the default solves
    17 → 33 → 49 → 97 points coarse to fine (measured 0.13 %).
    """
    m = SphereMetric()
    a, b = [np.pi / 4, 0.0], [np.pi / 4, np.pi]
    res = energy_geodesic(m, a, b)
    assert abs(res.lengths[0] - np.pi / 2) / (np.pi / 2) < 2e-3
    assert res.paths[0, :, 0].min() < 0.05  # it goes over the pole
    np.testing.assert_allclose(res.endpoint_error, 0.0)
    straight = torch.as_tensor(np.linspace(a, b, 64))[None]
    L_line = float(m.curve_length(straight)[0])
    assert L_line == pytest.approx(np.pi * np.sin(np.pi / 4), 1e-3)
    assert L_line > 1.3 * res.lengths[0]


def test_coarse_to_fine_beats_one_level_of_the_same_size():
    m = SphereMetric()
    a, b = [np.pi / 4, 0.0], [np.pi / 4, np.pi]
    assert refinement_levels(97) == [25, 49, 97]
    fine = energy_geodesic(m, a, b, n_points=97)
    coarse = energy_geodesic(m, a, b, n_points=33)
    assert fine.lengths[0] < coarse.lengths[0]  # the 1/n discretisation error shrinks
    assert coarse.lengths[0] > np.pi / 2


def test_sphere_seam_goes_the_short_way():
    """ψ = 6.0 and ψ = 0.3 are 0.58 rad apart across the seam ψ = 0 ≡ 2π."""
    m = SphereMetric()
    a, b = np.array([1.0, 6.0]), np.array([1.2, 0.3])
    res = energy_geodesic(m, a, b, n_points=33)
    assert res.lengths[0] == pytest.approx(float(m.distance(a, b)[0]), rel=1e-3)
    np.testing.assert_allclose(res.paths[0, -1], [1.2, 0.3 + 2 * np.pi])


def test_sphere_random_pairs_match_great_circles():
    rng = np.random.default_rng(0)
    n = 200
    A = np.column_stack([rng.uniform(0.4, 2.7, n), rng.uniform(0, np.pi, n)])
    B = np.column_stack([rng.uniform(0.4, 2.7, n), A[:, 1] + rng.uniform(-2.5, 2.5, n)])
    m = SphereMetric()
    res = energy_geodesic(m, A, B, n_points=32)
    rel = np.abs(res.lengths - m.distance(A, B)) / m.distance(A, B)
    assert np.median(rel) < 1e-3
    assert np.quantile(rel, 0.95) < 1e-2
    np.testing.assert_allclose(res.paths[:, 0], A)
    np.testing.assert_allclose(res.paths[:, -1], B)


def test_batched_equals_one_by_one_and_zero_length():
    m = SphereMetric()
    A = np.array([[0.5, 0.1], [1.0, 2.0], [1.2, 0.3]])
    B = np.array([[1.5, 1.1], [2.0, 0.5], [1.2, 0.3]])  # last pair: start == end
    batch = energy_geodesic(m, A, B, n_points=40)
    assert batch.lengths[2] < 1e-8
    np.testing.assert_allclose(batch.paths[2], np.repeat(A[2:], 40, 0), atol=1e-12)
    for i in range(2):
        one = energy_geodesic(m, A[i], B[i], n_points=40)
        assert one.lengths[0] == pytest.approx(batch.lengths[i], rel=1e-5)
        np.testing.assert_allclose(one.paths[0], batch.paths[i], atol=1e-4)


def test_euclidean_geodesic_is_the_straight_line():
    res = energy_geodesic(EuclideanMetric(3), [0, 0, 0], [1, 2, 2], n_points=10)
    assert res.lengths[0] == pytest.approx(3.0, rel=1e-9)
    np.testing.assert_allclose(res.paths[0], np.linspace([0, 0, 0], [1, 2, 2], 10), atol=1e-6)


def test_density_metric_pulls_curves_onto_the_data():
    """Between two ends of a half circle, the density geodesic follows the arc."""
    th = np.linspace(0, np.pi, 400)
    data = np.column_stack([np.cos(th), np.sin(th)])
    m = DensityMetric(data, sigma=0.1)
    res = energy_geodesic(m, data[0], data[-1], n_points=40)

    def proximity(c):
        return np.sqrt(((c[:, None] - data[None]) ** 2).sum(-1)).min(1).max()

    assert proximity(res.paths[0]) < 0.15 < proximity(np.linspace(data[0], data[-1], 40))
    with pytest.raises(ValueError):
        DensityMetric(data[:1])


def _random_model(d: int = 4, m: int = 6, seed: int = 0):
    from scfim.models.neural_fim import NeuralFIM

    model = NeuralFIM(m, (8, 7), random_state=seed, verbose=False)
    model.net_ = model._init_net(d).eval()
    model.n_features_ = d
    return model


def test_neural_fim_metric_matches_the_model_fim():
    from scfim.geometry.metric import NeuralFIMMetric

    models = [_random_model(seed=0), _random_model(seed=1)]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 4))
    V = rng.normal(size=(10, 4))
    G = 0.5 * (models[0].fim(X) + models[1].fim(X))
    ref = np.einsum("bi,bij,bj->b", V, G, V)
    metric = NeuralFIMMetric(models)
    got = metric.inner(torch.as_tensor(X), torch.as_tensor(V)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(metric.metric(torch.as_tensor(X)).numpy(), G, atol=1e-10)


def test_geodesic_under_a_neural_fim_metric_is_no_longer_than_the_line():
    from scfim.geometry.metric import NeuralFIMMetric

    model = _random_model(seed=2)
    data = np.random.default_rng(1).normal(size=(200, 4))
    metric = SumMetric([NeuralFIMMetric(model), DensityMetric(data)], [1.0, 1e-3])
    a, b = data[0], data[1]
    res = energy_geodesic(metric, a, b, n_points=16)
    line = torch.as_tensor(np.linspace(a, b, 16))[None]
    assert np.isfinite(res.lengths).all()
    assert res.lengths[0] <= float(metric.curve_length(line)[0]) + 1e-9


def test_fisher_rao_kl_energy_converges_to_the_metric_energy():
    from scfim.geometry.metric import NeuralFIMMetric

    metric = NeuralFIMMetric([_random_model(seed=3), _random_model(seed=4)])
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=4), rng.normal(size=4)
    c = torch.as_tensor(np.linspace(a, b, 400))[None]
    kl = float(metric.divergence_energy(c)[0])
    quad = float(metric.curve_energy(c)[0])
    assert kl == pytest.approx(quad, rel=1e-2)
    single = NeuralFIMMetric(_random_model(seed=3))
    assert float(single.divergence_energy(c)[0]) == pytest.approx(
        float(single.curve_energy(c)[0]), rel=1e-2
    )
    res = energy_geodesic(single, a, b, n_points=12, energy=single.divergence_energy)
    line = torch.as_tensor(np.linspace(a, b, 12))[None]
    assert res.energies[0] <= float(single.divergence_energy(line)[0]) + 1e-9


def test_normalized_density_is_one_at_the_median_cell_in_any_dimension():
    rng = np.random.default_rng(0)
    for d in (2, 20):
        data = rng.normal(size=(300, d)) * 3.0
        raw = DensityMetric(data)
        m = DensityMetric(data, normalize=True)
        x = torch.as_tensor(data)
        p, q = m.density(x).numpy(), raw.density(x).numpy()
        assert np.median(p) == pytest.approx(1.0, rel=5e-2)  # torch takes the lower median
        np.testing.assert_allclose(p / q, p[0] / q[0], rtol=1e-8)  # only a constant factor
        far = torch.full((1, d), 100.0, dtype=torch.float64)
        assert float(m.density(far)[0]) < 1e-6
    # in 20-D the unnormalised density is far below eps: a constant metric
    assert np.median(q) < 1e-4


def test_density_on_nearest_components_is_a_truncated_sum():
    """kNN-restricted mixture: never above the full sum; equal where far components vanish."""
    rng = np.random.default_rng(0)
    for d in (3, 20):  # 20-D: candidates searched in the leading principal subspace
        data = rng.normal(size=(400, d))
        full = DensityMetric(data)
        near = DensityMetric(data, n_nearest=32)
        x = torch.as_tensor(data[:50] + 0.01)
        p, q = full.density(x).numpy(), near.density(x).numpy()
        assert np.all(q <= p * (1 + 1e-12)) and np.all(q > 0)
    small = DensityMetric(data[:, :3], sigma=0.05, n_nearest=8)  # kernels vanish beyond 8
    ref = DensityMetric(data[:, :3], sigma=0.05)
    np.testing.assert_allclose(small.density(x[:, :3]).numpy(), ref.density(x[:, :3]).numpy())
    with pytest.raises(ValueError):
        DensityMetric(data, n_nearest=0)


# chart points of the sphere away from the poles and the seam of the azimuth
_CHART = np.c_[
    np.random.default_rng(0).uniform(0.5, 2.6, 400), np.random.default_rng(1).uniform(0.3, 3.0, 400)
]
_S, _E = np.array([0, 1, 2]), np.array([3, 4, 5])


def test_solve_geodesics_energy_and_ode_agree_on_the_sphere():
    """Both solvers behind one entry point find the great circles between data points: the
    energy solver from the graph path, the ODE from the straight line (from the jagged
    graph path in the chart its 120 Adam steps leave it up to 2 % long)."""
    m = SphereMetric()
    exact = m.distance(_CHART[_S], _CHART[_E])
    en = solve_geodesics(m, _CHART, _S, _E, n_points=33)
    ode = solve_geodesics(
        m, _CHART, _S, _E, method="ode", hot_start="none", n_points=13, n_steps=120
    )
    assert en.method == "energy" and ode.method == "ode"
    np.testing.assert_allclose(en.lengths, exact, rtol=2e-3)
    np.testing.assert_allclose(ode.lengths, en.lengths, rtol=5e-3)
    np.testing.assert_allclose(en.paths[:, -1], _CHART[_E])
    assert np.all(ode.endpoint_error < 1e-2 * np.linalg.norm(_CHART[_E] - _CHART[_S], axis=1))
    # proximity: the largest distance of a curve point to the nearest data point
    for res in (en, ode):
        d = cKDTree(_CHART).query(res.paths.reshape(-1, 2))[0].reshape(3, -1).max(1)
        np.testing.assert_allclose(res.proximity, d)


@pytest.mark.parametrize("method", ["energy", "ode"])
def test_solve_geodesics_batched_equals_one_by_one(method):
    m = SphereMetric()
    kw = {"n_points": 9, "n_steps": 10} if method == "ode" else {"n_points": 25}
    batch = solve_geodesics(m, _CHART, _S, _E, method=method, **kw)
    for i in range(3):
        one = solve_geodesics(m, _CHART, _S[i], _E[i], method=method, **kw)
        assert one.lengths[0] == pytest.approx(batch.lengths[i], rel=1e-5)
        np.testing.assert_allclose(one.paths[0], batch.paths[i], atol=1e-4)
        assert one.proximity[0] == pytest.approx(batch.proximity[i], abs=1e-4)


def test_initial_curves_graph_density_none():
    """The graph start runs through data points, the density start is a curve between the
    two points, "none" is the solvers' straight line; init overrides the hot start."""
    G = symmetrize(knn_graph(_CHART, 10))
    paths, _ = graph_paths(G, _CHART, _S, _E, 12)
    np.testing.assert_allclose(initial_curves(_CHART, _S, _E, 12, graph=G), paths)
    np.testing.assert_allclose(initial_curves(_CHART, _S, _E, 12, n_neighbors=10), paths)
    dens = initial_curves(_CHART, _S, _E, 12, "density")
    assert dens.shape == (3, 12, 2)
    np.testing.assert_allclose(dens[:, 0], _CHART[_S], atol=1e-12)
    np.testing.assert_allclose(dens[:, -1], _CHART[_E], atol=1e-12)
    assert initial_curves(_CHART, _S, _E, 12, "none") is None
    line = np.linspace(_CHART[_S], _CHART[_E], 9).transpose(1, 0, 2)
    r = solve_geodesics(
        SphereMetric(), _CHART, _S, _E, method="ode", init=line, n_points=9, n_steps=0
    )
    np.testing.assert_allclose(r.paths, line, atol=1e-12)  # not the graph path
    with pytest.raises(ValueError, match="hot_start"):
        initial_curves(_CHART, _S, _E, 12, "straight")
    with pytest.raises(ValueError, match="method"):
        solve_geodesics(SphereMetric(), _CHART, _S, _E, method="shooting")
    with pytest.raises(ValueError, match="start points"):
        solve_geodesics(SphereMetric(), _CHART, _S, _E[:2])


def test_solve_geodesics_graph_is_the_metric_graph_path():
    """``"graph"``: the metric graph's shortest paths and distances, never shorter than the
    great circle (a path on the data is a curve between the two points)."""
    from scfim.geometry.distances import geodesic_distances, metric_graph

    m = SphereMetric()
    res = solve_geodesics(m, _CHART, _S, _E, method="graph", n_points=20)
    G = metric_graph(_CHART, m)
    want = geodesic_distances(m, _CHART, _S, _E, graph=G).distances[np.arange(3), np.arange(3)]
    np.testing.assert_allclose(res.lengths, want)
    np.testing.assert_allclose(res.energies, want**2)
    paths, _ = graph_paths(G, _CHART, _S, _E, 20)
    np.testing.assert_allclose(res.paths, paths)
    assert res.method == "graph" and res.n_iter == 0
    assert np.all(res.lengths >= m.distance(_CHART[_S], _CHART[_E]))
    np.testing.assert_allclose(res.endpoint_error, 0.0)


def test_neural_fim_metric_in_float32_matches_float64():
    """The float32 path (graph edge lengths) agrees with float64 to ~1e-5 relative."""
    from scfim.geometry.metric import NeuralFIMMetric

    metric = NeuralFIMMetric([_random_model(seed=0), _random_model(seed=1)])
    rng = np.random.default_rng(0)
    x, v = torch.as_tensor(rng.normal(size=(50, 4))), torch.as_tensor(rng.normal(size=(50, 4)))
    q64 = metric.inner(x, v)
    q32 = metric.inner(x.float(), v.float())
    assert q32.dtype == torch.float32 and q64.dtype == torch.float64
    np.testing.assert_allclose(q32.double().numpy(), q64.numpy(), rtol=1e-4)


def test_mean_eigenvalue_is_the_trace_of_the_metric_over_d():
    from scfim.geometry.land import LocalCovarianceMetric

    rng = np.random.default_rng(0)
    m = LocalCovarianceMetric(rng.normal(size=(200, 3)))
    x = torch.as_tensor(rng.normal(size=(7, 3)))
    expected = torch.diagonal(m.metric(x), dim1=1, dim2=2).sum(1) / 3
    torch.testing.assert_close(m.mean_eigenvalue(x), expected, rtol=1e-10, atol=0)
    torch.testing.assert_close(m.mean_eigenvalue(x, block_rows=5), expected, rtol=1e-10, atol=0)
    assert m.mean_eigenvalue(x[:0]).shape == (0,)
