"""Geodesics, distances and pseudotime on a torch device: no host copies in inner loops.

The CPU cases pin where tensors live and when they are copied (the density's component
search and the ODE's base velocity are tensor operations without host synchronisation;
the solvers copy their results to the host once, at the end). The CUDA cases compare a
GPU run with the CPU run and skip where CUDA is not available.
"""

import numpy as np
import pytest
import torch
from anndata import AnnData
from conftest import assert_unchanged, branching, snapshot
from scipy.spatial import cKDTree

import scfim
from scfim.geometry.geodesic import energy_geodesic
from scfim.geometry.geodesic_ode import BatchedMLPField, ode_geodesic
from scfim.geometry.graph import segment_lengths
from scfim.geometry.metric import DensityMetric, EuclideanMetric, SumMetric

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")


@pytest.fixture(scope="module")
def fitted():
    a = AnnData(branching(60, 5, 4).astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    scfim.tl.diffusion(a, t=5)
    scfim.tl.neural_fim(a, epochs=15, hidden=(16, 16), n_components=6, progress=False)
    return a


class _NoHostCopies:
    """Counts ``Tensor.cpu``/``Tensor.numpy`` calls; with ``forbid`` they raise."""

    def __init__(self, monkeypatch, forbid: bool = False):
        self.calls = []
        for name in ("cpu", "numpy"):
            original = getattr(torch.Tensor, name)

            def wrapped(t, *args, _name=name, _original=original, **kwargs):
                if self.forbid:
                    raise AssertionError(f"host copy: Tensor.{_name}()")
                self.calls.append(_name)
                return _original(t, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, wrapped)
        self.forbid = forbid


def test_nearest_components_are_the_exact_neighbours_at_the_data():
    """At a component, the summed components are exactly its n_nearest nearest ones."""
    rng = np.random.default_rng(0)
    for d in (3, 8):
        data = rng.normal(size=(300, d))
        m = DensityMetric(data, n_nearest=12)
        got = m.nearest_components(torch.as_tensor(data)).numpy()
        want = cKDTree(data).query(data, k=12)[1]
        np.testing.assert_array_equal(np.sort(got, 1), np.sort(want, 1))


def test_density_evaluation_makes_no_host_copy(monkeypatch):
    rng = np.random.default_rng(1)
    for d in (3, 20):  # 20-D: the nearest component is searched in 10 principal axes
        m = DensityMetric(rng.normal(size=(400, d)), n_nearest=16, normalize=True)
        x = torch.tensor(rng.normal(size=(50, d)), requires_grad=True)
        guard = _NoHostCopies(monkeypatch, forbid=True)
        q = m.inner(x, torch.ones_like(x)).sum()
        (g,) = torch.autograd.grad(q, x)  # the kernel values are differentiated
        guard.forbid = False
        assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
        monkeypatch.undo()


def test_ode_base_velocity_needs_no_host_synchronisation(monkeypatch):
    """The base velocity along a hot-start curve: tensor operations only (was float/int)."""
    rng = np.random.default_rng(2)
    init = torch.as_tensor(rng.normal(size=(3, 7, 2)))
    field = BatchedMLPField(init[:, 0], init[:, -1], init=init)
    ref = [field(torch.tensor(t, dtype=torch.float64), init[:, 0]) for t in (0.0, 0.3, 1.0)]

    def sync(*args, **kwargs):
        raise AssertionError("host synchronisation")

    for name in ("item", "__float__", "__int__", "__index__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    got = [field(torch.tensor(t, dtype=torch.float64), init[:, 0]) for t in (0.0, 0.3, 1.0)]
    monkeypatch.undo()
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    # piecewise-linear between the interval midpoints: at τ = ½/(m−1) the first velocity
    v = field._base(torch.tensor(0.5 / 6, dtype=torch.float64))
    torch.testing.assert_close(v, 6 * (init[:, 1] - init[:, 0]))


def test_solvers_copy_results_to_the_host_once(monkeypatch):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 3))
    metric = SumMetric(
        [EuclideanMetric(3), DensityMetric(data, n_nearest=16, normalize=True)], [1.0, 0.1]
    )
    a, b = data[:4], data[4:8]
    guard = _NoHostCopies(monkeypatch)
    energy_geodesic(metric, a, b, n_points=17)
    assert guard.calls.count("cpu") == 3  # paths, lengths, energies at the end
    guard.calls.clear()
    ode_geodesic(metric, a, b, n_points=9, n_steps=5)
    assert guard.calls.count("cpu") == 4  # paths, lengths, energies, end-point errors
    guard.calls.clear()
    segment_lengths(metric, data[:100], data[1:101], n_quad=2, batch_size=16)
    assert guard.calls.count("cpu") == 1  # gathered on the device, one copy


def test_sum_of_metrics_on_different_devices_is_an_error():
    with pytest.raises(ValueError, match="different devices"):
        SumMetric([EuclideanMetric(2), EuclideanMetric(2, device="meta")])


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
@pytest.mark.parametrize(
    "tool, args",
    [
        ("geodesic", ("c0", "c70")),
        ("fisher_rao_distances", (["c0", "c70"],)),
        ("fisher_rao_pseudotime", ("c0",)),
    ],
)
def test_cuda_without_cuda_is_an_error_not_a_fallback(fitted, tool, args):
    a = fitted.copy()
    snap = snapshot(a)
    with pytest.raises(ValueError, match="CUDA is not available"):
        getattr(scfim.tl, tool)(a, *args, device="cuda")
    assert_unchanged(a, snap)


def test_device_is_recorded(fitted):
    a = fitted.copy()
    scfim.tl.geodesic(a, "c0", "c70", device="cpu")
    scfim.tl.fisher_rao_distances(a, ["c0", "c70"], device=torch.device("cpu"))
    scfim.tl.fisher_rao_pseudotime(a, "c0")
    for key in ("geodesic", "fisher_rao_distances", "fisher_rao_pseudotime"):
        assert a.uns[key]["params"]["device"] == "cpu"


# ------------------------------------------------------------------ CUDA (skip without)
@needs_cuda
def test_density_and_solvers_on_cuda_equal_cpu():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, 12))
    x = torch.as_tensor(rng.normal(size=(64, 12)))
    cpu = DensityMetric(data, n_nearest=16, normalize=True)
    gpu = DensityMetric(data, n_nearest=16, normalize=True, device="cuda")
    torch.testing.assert_close(gpu.density(x.cuda()).cpu(), cpu.density(x), rtol=1e-6, atol=0)
    mc = SumMetric([EuclideanMetric(12), cpu], [1.0, 0.1])
    mg = SumMetric([EuclideanMetric(12, device="cuda"), gpu], [1.0, 0.1])
    rc = energy_geodesic(mc, data[:3], data[3:6], n_points=17)
    rg = energy_geodesic(mg, data[:3], data[3:6], n_points=17)
    np.testing.assert_allclose(rg.lengths, rc.lengths, rtol=1e-5)
    oc = ode_geodesic(mc, data[:2], data[2:4], n_points=9, n_steps=20)
    og = ode_geodesic(mg, data[:2], data[2:4], n_points=9, n_steps=20)
    np.testing.assert_allclose(og.lengths, oc.lengths, rtol=1e-4)


@needs_cuda
def test_tools_on_cuda_equal_cpu(fitted):
    a = fitted.copy()
    cells = ["c0", "c40", "c100", "c170"]
    for dev in ("cpu", "cuda"):
        scfim.tl.fisher_rao_distances(a, cells, device=dev, key_added=f"d_{dev}")
        scfim.tl.fisher_rao_distances(
            a, cells[:2], method="energy", n_points=10, device=dev, key_added=f"e_{dev}"
        )
        scfim.tl.fisher_rao_pseudotime(a, "c0", n_landmarks=2, device=dev, key_added=f"p_{dev}")
        scfim.tl.geodesic(a, "c0", "c70", method="energy", device=dev, key_added=f"g_{dev}")
    for key in ("d", "e"):
        np.testing.assert_allclose(
            a.uns[f"{key}_cuda"]["distances"], a.uns[f"{key}_cpu"]["distances"], rtol=1e-4
        )
    np.testing.assert_allclose(
        a.obs["p_cuda"].to_numpy(), a.obs["p_cpu"].to_numpy(), rtol=1e-4, atol=1e-8
    )
    np.testing.assert_allclose(a.uns["g_cuda"]["lengths"], a.uns["g_cpu"]["lengths"], rtol=1e-4)


def test_density_scale_from_stored_traces_equals_the_evaluated_one():
    """The tools read the density's scale from the per-cell traces tl.neural_fim wrote."""
    from scfim.geometry.metric import with_density

    rng = np.random.default_rng(5)
    data = rng.normal(size=(120, 4))
    A = rng.normal(size=(4, 4))

    class Linear(EuclideanMetric):
        def inner(self, x, v):
            u = v @ torch.as_tensor(A, dtype=v.dtype)
            return (u * u).sum(-1) * (1 + x[:, 0] ** 2)

    base = Linear(4)
    traces = (A * A).sum() * (1 + data[:, 0] ** 2)
    m1, _ = with_density(base, data, 1e-2)
    m2, _ = with_density(base, data, 1e-2, traces=traces)
    assert m2.weights[1] == pytest.approx(m1.weights[1], rel=1e-9)
    with pytest.raises(ValueError, match="traces"):
        with_density(base, data, 1e-2, traces=traces[:10])


def test_float32_density_equals_float64():
    rng = np.random.default_rng(6)
    data = rng.normal(size=(300, 6))
    m = DensityMetric(data, n_nearest=16, normalize=True)
    x = torch.as_tensor(data[:40] + 0.1)
    p64 = m.density(x)
    p32 = m.density(x.float())
    assert p32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p64, rtol=1e-5, atol=0)


def test_density_in_blocks_equals_one_block(monkeypatch):
    """Memory-bounded blocks of rows give the same densities and gradients."""
    rng = np.random.default_rng(7)
    data = rng.normal(size=(200, 5))
    x = torch.tensor(rng.normal(size=(97, 5)), requires_grad=True)
    for n_nearest in (None, 8):
        m = DensityMetric(data, n_nearest=n_nearest, normalize=True)
        p1 = m.density(x)
        (g1,) = torch.autograd.grad(p1.sum(), x)
        monkeypatch.setattr(DensityMetric, "_SEARCH_ELEMENTS", 300)  # many small blocks
        p2 = m.density(x)
        (g2,) = torch.autograd.grad(p2.sum(), x)
        monkeypatch.undo()
        torch.testing.assert_close(p2, p1, rtol=1e-12, atol=0)
        torch.testing.assert_close(g2, g1, rtol=1e-12, atol=0)
