import numpy as np
import pytest
import torch

from scfim.geometry.geodesic import energy_geodesic
from scfim.geometry.geodesic_ode import BatchedMLPField, ode_geodesic
from scfim.geometry.metric import EuclideanMetric, SphereMetric

# two generic pairs on the sphere, neither through a pole: the straight-in-coordinates
# paths are 5.3 % and 0.8 % longer than the great circles
A = np.array([[0.6, 0.2], [2.2, 1.0]])
B = np.array([[1.8, 2.0], [0.9, 2.8]])


def test_ode_and_energy_solvers_agree_with_great_circles():
    m = SphereMetric()
    exact = m.distance(A, B)
    ode = ode_geodesic(m, A, B, n_points=13, n_steps=120)
    energy = energy_geodesic(m, A, B, n_points=33)
    assert ode.method == "ode" and energy.method == "energy"
    np.testing.assert_allclose(ode.lengths, exact, rtol=5e-3)
    np.testing.assert_allclose(ode.lengths, energy.lengths, rtol=5e-3)
    assert np.all(ode.endpoint_error < 1e-2 * np.linalg.norm(B - A, axis=1))
    # the metric matters: the curve is much shorter than the straight line of the chart
    line = torch.as_tensor(np.stack([np.linspace(A[i], B[i], 13) for i in range(2)]))
    assert ode.lengths[0] < 0.97 * float(m.curve_length(line)[0])
    np.testing.assert_allclose(ode.paths[:, 0], A)
    np.testing.assert_allclose(ode.paths[:, -1], B, atol=1e-2)


def test_start_equal_to_end_gives_length_zero():
    p = np.array([[1.0, 0.4], [0.3, 2.0]])
    res = ode_geodesic(SphereMetric(), p, p, n_points=9, n_steps=10)
    np.testing.assert_allclose(res.lengths, 0.0, atol=1e-10)
    np.testing.assert_allclose(res.endpoint_error, 0.0, atol=1e-10)
    np.testing.assert_allclose(res.paths, np.repeat(p[:, None], 9, 1), atol=1e-10)


def test_batched_equals_one_by_one():
    m = SphereMetric()
    batch = ode_geodesic(m, A, B, n_points=9, n_steps=30)
    for i in range(2):
        one = ode_geodesic(m, A[i], B[i], n_points=9, n_steps=30)
        np.testing.assert_allclose(one.paths[0], batch.paths[i], rtol=1e-6, atol=1e-8)
        assert one.lengths[0] == pytest.approx(batch.lengths[i], rel=1e-6)


def test_euclidean_metric_keeps_the_straight_line():
    """In flat space the initial straight line is optimal; the curve stays near it.

    The penalty first lets the end point slip (the curve shortens by missing it), the
    multiplier updates then pull it back onto ``b``.
    """
    a, b = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 2.0])
    res = ode_geodesic(EuclideanMetric(3), a, b, n_points=9, n_steps=160)
    # no curve is shorter than the chord to where it ends
    assert res.lengths[0] >= np.linalg.norm(res.paths[0, -1] - a) - 1e-9
    assert res.lengths[0] == pytest.approx(3.0, rel=5e-3)
    assert res.endpoint_error[0] < 1e-2
    # on the line (the length does not fix the speed along it, so compare the image only)
    u = (b - a) / 3.0
    off = res.paths[0] - a - ((res.paths[0] - a) @ u)[:, None] * u
    assert np.abs(off).max() < 2e-2


def test_field_starts_as_the_line_and_is_reproducible():
    a = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    f = BatchedMLPField(a, b, (8, 8), generator=torch.Generator().manual_seed(0))
    v = f(torch.tensor(0.3), torch.tensor([[5.0, -1.0]], dtype=torch.float64))
    np.testing.assert_allclose(v.detach().numpy(), (b - a).numpy())
    r1 = ode_geodesic(SphereMetric(), A[0], B[0], n_points=7, n_steps=5, random_state=3)
    r2 = ode_geodesic(SphereMetric(), A[0], B[0], n_points=7, n_steps=5, random_state=3)
    np.testing.assert_array_equal(r1.paths, r2.paths)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_points": 2}, {"lr": 0.0}, {"lam": -1.0}, {"n_steps": -1}, {"multiplier_every": -2}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ode_geodesic(SphereMetric(), A, B, **kwargs)
    with pytest.raises(ValueError):
        ode_geodesic(SphereMetric(), A, B[:1])


def test_hot_start_follows_the_initial_curve():
    """The field starts along a given curve (n_steps=0): a half circle in the plane, and
    the energy solver's great circles on the sphere."""
    tt = np.linspace(0, 1, 33)
    arc = np.column_stack([np.cos(np.pi * tt), np.sin(np.pi * tt)])[None]  # half circle
    r0 = ode_geodesic(EuclideanMetric(2), arc[0, 0], arc[0, -1], init=arc, n_steps=0)
    want = np.column_stack(
        [np.cos(np.pi * np.linspace(0, 1, 17)), np.sin(np.pi * np.linspace(0, 1, 17))]
    )
    np.testing.assert_allclose(r0.paths[0], want, atol=5e-3)
    assert r0.lengths[0] == pytest.approx(np.pi, rel=5e-3)
    m = SphereMetric()
    init = energy_geodesic(m, A, B, n_points=33).paths
    r = ode_geodesic(m, A, B, n_points=17, init=init, n_steps=0)
    np.testing.assert_allclose(r.lengths, m.distance(A, B), rtol=2e-3)
    assert np.all(r.endpoint_error < 1e-3)
    with pytest.raises(ValueError):
        ode_geodesic(m, A, B, init=init[:, :2])
