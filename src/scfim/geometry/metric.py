"""Riemannian metrics on coordinate spaces (pure torch; no AnnData).

One base class, :class:`Metric`, in the spirit of stochman's ``Manifold``: a subclass
implements :meth:`Metric.metric` (``(B, d)`` points → ``(B, d, d)`` tensors) and, where it
has a cheaper path than forming ``G``, the quadratic form :meth:`Metric.inner`. Everything
else is inherited: discrete curve energy and length, the log-volume ``log √det G``, the
geodesic acceleration ``−Γ(x)[v, v]`` (automatic differentiation of the quadratic form),
the chart's :meth:`Metric.canonical_end`, and the connecting geodesic, Exp and Log maps
through the solvers (:func:`~scfim.geometry.geodesic.energy_geodesic`,
:func:`~scfim.geometry.exp_log.exp_map`, :func:`~scfim.geometry.exp_log.log_map`). Subclasses
override a method only where they have a closed form (e.g. the LAND metric's Christoffel
symbols). Metrics compose with one mechanism, :class:`SumMetric`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

__all__ = [
    "Metric",
    "SumMetric",
    "SphereMetric",
    "DensityMetric",
    "EuclideanMetric",
    "NeuralFIMMetric",
    "with_density",
]

_DT = torch.float64
_SEARCH_DIM = 10  # dimension of the candidate search of DensityMetric(n_nearest=...)


class Metric:
    """Base class: a smooth field of symmetric positive (semi-)definite matrices on ``R^d``.

    Subclasses set ``dim`` and implement :meth:`metric`; they may override :meth:`inner`
    (cheaper quadratic form), :meth:`log_volume`, :meth:`acceleration` (closed-form
    Christoffel symbols), :meth:`canonical_end` (periodic charts) and
    :meth:`divergence_energy` (a Jacobian-free discrete energy).
    """

    dim: int
    #: Torch dtype in which many short segments are measured (graph edge lengths): float64,
    #: or float32 where that is much faster and accurate enough (the neural Fisher metric).
    edge_dtype: torch.dtype = torch.float64
    #: Torch device on which the metric is evaluated (where its parameters and data live);
    #: the solvers build their curves there and copy results to the host once, at the end.
    device: torch.device = torch.device("cpu")

    # ------------------------------------------------------------------ to implement
    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Metric tensors ``G(x)``, shape ``(B, d, d)``."""
        raise NotImplementedError

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Quadratic form ``vᵀ G(x) v`` for points ``x`` and vectors ``v`` of shape ``(B, d)``."""
        G = self.metric(x)
        return torch.einsum("bi,bij,bj->b", v, G, v)

    def canonical_end(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Coordinates of the end points to connect ``start`` to, shape ``(B, d)``.

        Charts with periodic coordinates return the copy of ``end`` nearest to ``start``
        (e.g. the sphere's azimuth); the default returns ``end`` unchanged.
        """
        return end

    # ------------------------------------------------------------------ curves
    def segment_norms2(self, c: torch.Tensor) -> torch.Tensor:
        """``Δc_iᵀ G(m_i) Δc_i`` of curves ``(B, n, d)`` at segment midpoints → ``(B, n − 1)``."""
        B, n, d = c.shape
        dc = (c[:, 1:] - c[:, :-1]).reshape(-1, d)
        mid = (0.5 * (c[:, 1:] + c[:, :-1])).reshape(-1, d)
        return self.inner(mid, dc).reshape(B, n - 1)

    def curve_length(self, c: torch.Tensor) -> torch.Tensor:
        """Riemannian length ``Σ sqrt(Δcᵀ G Δc)`` of discrete curves ``(B, n, d)`` → ``(B,)``."""
        return torch.sqrt(self.segment_norms2(c).clamp_min(0.0)).sum(1)

    def curve_energy(self, c: torch.Tensor) -> torch.Tensor:
        """Discrete energy ``(n − 1) Σ Δcᵀ G Δc`` of curves ``(B, n, d)`` → ``(B,)``.

        By Cauchy–Schwarz ``L² ≤ E`` with equality for constant speed, so minimising the
        energy yields a constant-speed shortest curve.
        """
        return (c.shape[1] - 1) * self.segment_norms2(c).sum(1)

    def divergence_energy(self, c: torch.Tensor) -> torch.Tensor:
        """An energy of curves ``(B, n, d)`` that converges to :meth:`curve_energy`.

        The default is :meth:`curve_energy`; metrics that are pull-backs of a divergence
        (the neural Fisher metric) return the Jacobian-free divergence form.
        """
        return self.curve_energy(c)

    def mean_eigenvalue(self, x: torch.Tensor, *, block_rows: int = 65536) -> torch.Tensor:
        """``tr G(x) / d``, shape ``(B,)``: a scale of the metric.

        The ``d`` quadratic forms ``e_jᵀ G(x) e_j`` of every point are evaluated as one batch
        of ``B·d`` rows (in blocks of ``block_rows``), not as ``d`` separate calls.
        """
        B, d = x.shape
        if B == 0:
            return x.new_zeros(0)
        xr = x.repeat_interleave(d, 0)
        vr = torch.eye(d, dtype=x.dtype, device=x.device).repeat(B, 1)
        n = max(1, int(block_rows))
        q = torch.cat([self.inner(xr[i : i + n], vr[i : i + n]) for i in range(0, B * d, n)])
        return q.reshape(B, d).sum(1) / d

    # ------------------------------------------------------------------ volume, Christoffel
    def log_volume(self, x: torch.Tensor) -> torch.Tensor:
        """``log √det G(x)`` (float64 ``slogdet``; non-positive determinants give ``-inf``)."""
        G = self.metric(x.to(_DT)).to(_DT)
        G = 0.5 * (G + G.transpose(-1, -2))
        sign, logdet = torch.linalg.slogdet(G)
        return torch.where(sign > 0, 0.5 * logdet, torch.full_like(logdet, -math.inf))

    def acceleration(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Geodesic acceleration ``c'' = −Γ(x)[v, v]`` for positions and velocities ``(B, d)``.

        From the Euler–Lagrange equation of ``L = ½ vᵀG(x)v``:
        ``G a = ½ ∇_x(vᵀGv) − (D_v G) v`` with ``(D_v G) v = ½ ∇_v[∇_x(vᵀGv) · u]|_{u=v}``,
        both by automatic differentiation of :meth:`inner`, and ``G`` from :meth:`metric`.
        """
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            vr = v.detach().clone().requires_grad_(True)
            q = self.inner(xr, vr).sum()
            (gx,) = torch.autograd.grad(q, xr, create_graph=True)
            h = (gx * v.detach()).sum()
            (gv,) = torch.autograd.grad(h, vr, allow_unused=True)
            if gv is None:
                gv = torch.zeros_like(v)
        G = self.metric(x.detach()).to(_DT)
        G = 0.5 * (G + G.transpose(-1, -2))
        rhs = (0.5 * gx.detach() - 0.5 * gv).to(_DT)
        return torch.linalg.solve(G, rhs.unsqueeze(-1)).squeeze(-1).to(x.dtype)

    # ------------------------------------------------------------------ solvers
    def geodesic(self, start, end, **kwargs):
        """Minimum-energy curves from ``start[i]`` to ``end[i]``.

        See :func:`~scfim.geometry.geodesic.energy_geodesic` (keyword arguments passed on).
        """
        from .geodesic import energy_geodesic

        return energy_geodesic(self, start, end, **kwargs)

    def exp(self, start, velocity, **kwargs):
        """Exponential map ``Exp_{start}(velocity)`` (:func:`~scfim.geometry.exp_log.exp_map`)."""
        from .exp_log import exp_map

        return exp_map(self, start, velocity, **kwargs)

    def log(self, base, targets, **kwargs):
        """Logarithm ``Log_{base}(targets)`` by shooting.

        See :func:`~scfim.geometry.exp_log.log_map` (keyword arguments passed on).
        """
        from .exp_log import log_map

        return log_map(self, base, targets, **kwargs)


class SumMetric(Metric):
    """Weighted sum ``Σ_i c_i G_i(x)`` of metrics: the one way to compose metrics.

    For example a neural Fisher metric plus a small density or LAND term that keeps its
    geodesics near the data. Energies and divergence energies add with the same weights.

    Parameters
    ----------
    metrics
        Metrics of the same dimension.
    weights
        Non-negative weights, one per metric (default all 1).
    """

    def __init__(self, metrics, weights=None) -> None:
        self.metrics = list(metrics)
        if not self.metrics:
            raise ValueError("need at least one metric")
        self.weights = [1.0] * len(self.metrics) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.metrics) or any(
            not (np.isfinite(w) and w >= 0) for w in self.weights
        ):
            raise ValueError("weights must be one finite non-negative number per metric")
        self.dim = self.metrics[0].dim
        if any(m.dim != self.dim for m in self.metrics):
            raise ValueError("metrics of different dimensions")
        self.device = torch.device(self.metrics[0].device)
        if any(torch.device(m.device) != self.device for m in self.metrics):
            raise ValueError(
                "metrics on different devices: " + ", ".join(str(m.device) for m in self.metrics)
            )

    def _terms(self):
        return [(w, m) for w, m in zip(self.weights, self.metrics, strict=True) if w > 0]

    @property
    def edge_dtype(self) -> torch.dtype:
        """float32 if any term measures its edges in float32, else float64."""
        single = any(m.edge_dtype == torch.float32 for _, m in self._terms())
        return torch.float32 if single else torch.float64

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the terms' metric tensors ``(B, d, d)``."""
        return sum(w * m.metric(x) for w, m in self._terms())

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the terms' squared norms ``(B,)``."""
        return sum(w * m.inner(x, v) for w, m in self._terms())

    def divergence_energy(self, c: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the terms' divergence energies of the curves ``c``."""
        return sum(w * m.divergence_energy(c) for w, m in self._terms())

    def canonical_end(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The first term's choice of end point (see :meth:`Metric.canonical_end`)."""
        return self.metrics[0].canonical_end(start, end)


class EuclideanMetric(Metric):
    """The identity metric (straight lines are geodesics)."""

    def __init__(self, dim: int, device: str | torch.device = "cpu") -> None:
        self.dim = int(dim)
        self.device = torch.device(device)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Identity matrices ``(B, d, d)``."""
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return eye.expand(x.shape[0], self.dim, self.dim)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean norms ``(B,)``."""
        return (v * v).sum(-1)


class SphereMetric(Metric):
    """Round metric of the sphere of radius ``r`` in spherical coordinates (θ polar, ψ azimuth).

    ``ds² = r² (dθ² + sin²θ dψ²)``. Geodesic distance between two points is
    ``r · arccos(⟨u, w⟩)`` for their unit vectors u, w (:meth:`distance`).
    """

    dim = 2

    def __init__(self, radius: float = 1.0, device: str | torch.device = "cpu") -> None:
        self.radius = float(radius)
        self.device = torch.device(device)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Round metric ``r² diag(1, sin²θ)`` in (θ, φ) ``(B, 2, 2)``."""
        s2 = torch.sin(x[:, 0]) ** 2
        G = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype, device=x.device)
        G[:, 0, 0] = 1.0
        G[:, 1, 1] = s2
        return self.radius**2 * G

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``r² (v_θ² + sin²θ v_φ²)`` ``(B,)``."""
        return self.radius**2 * (v[:, 0] ** 2 + torch.sin(x[:, 0]) ** 2 * v[:, 1] ** 2)

    def canonical_end(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Shift the azimuth ψ of ``end`` by a multiple of 2π to within π of ``start``'s.

        Curves then cross the seam ψ = 0 ≡ 2π instead of going the long way round.
        """
        k = torch.round((end[:, 1] - start[:, 1]) / (2 * math.pi))
        return torch.stack([end[:, 0], end[:, 1] - 2 * math.pi * k], 1)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact great-circle distances between coordinate arrays of shape ``(B, 2)``."""

        def unit(p):
            p = np.atleast_2d(np.asarray(p, dtype=np.float64))
            th, ps = p[:, 0], p[:, 1]
            return np.column_stack([np.sin(th) * np.cos(ps), np.sin(th) * np.sin(ps), np.cos(th)])

        c = np.clip((unit(a) * unit(b)).sum(1), -1.0, 1.0)
        return self.radius * np.arccos(c)


class DensityMetric(Metric):
    """Density metric ``G(x) = I / (p(x) + ε)`` with p an isotropic Gaussian mixture on the data.

    ``p(x) = (1/N) Σ_n N(x | x_n, σ² I)`` (Hauberg's density metric). Curves pay for
    leaving the data, so energy minimisers under this metric follow dense regions; it
    serves as a hot start and as a small additive term that keeps geodesics of degenerate
    metrics on the manifold.

    Parameters
    ----------
    data
        ``(N, d)`` points.
    sigma
        Kernel width; default the median nearest-neighbour distance.
    eps
        Floor that keeps the metric finite far from the data.
    max_points
        Subsample the data to this many points (the density is evaluated on every call).
    random_state
        Seed of the subsampling.
    normalize
        Divide ``p`` by its median over the data points, so that ``p ≈ 1`` on the data
        whatever the dimension and scale, and ``eps`` is relative to the data's density.
        Without it, in more than a few dimensions ``p`` is far below ``eps`` everywhere
        (measured: median 5e-11 on a 20-D toy tree) and the metric is the constant
        ``I/eps``, which no longer pulls curves onto the data.
    n_nearest
        Sum the mixture over ``n_nearest`` components near each evaluation point only: the
        ``n_nearest`` components nearest to the component nearest to the point (a table of
        each component's nearest components, built once; the point's nearest component is
        found by one blocked matrix product against all components). Everything stays on
        ``device`` in torch: no host round trip per evaluation. The choice of components is
        not differentiated, the kernel values are. A point costs one float32 distance per
        component (in at most 10 dimensions) and ``n_nearest`` kernels; the neglected
        components add little (with σ the nearest-neighbour distance, a component at distance ``r``
        contributes ``exp(−r²/2σ²)``). In more than 10 dimensions the nearest component is
        searched among the projections on the 10 leading principal axes; the table and the
        kernels use full distances. None sums over all.
    device
        Torch device of the components and of the evaluation.
    """

    def __init__(
        self,
        data: np.ndarray,
        sigma: float | None = None,
        eps: float = 1e-4,
        max_points: int = 5000,
        random_state: int | None = 0,
        normalize: bool = False,
        n_nearest: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        from scipy.spatial import cKDTree

        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError("data must be a (N ≥ 2, d) array")
        if len(X) > max_points:
            X = X[np.random.default_rng(random_state).choice(len(X), max_points, replace=False)]
        if sigma is None:
            d, _ = cKDTree(X).query(X, k=2)
            sigma = float(np.median(d[:, 1]))
        if not sigma > 0:
            raise ValueError("sigma must be > 0")
        if n_nearest is not None and int(n_nearest) < 1:
            raise ValueError(f"n_nearest must be ≥ 1, got {n_nearest}")
        self.device = torch.device(device)
        self.n_nearest = None if n_nearest is None or n_nearest >= len(X) else int(n_nearest)
        self.dim = X.shape[1]
        self.sigma = float(sigma)
        self.eps = float(eps)
        self.points = torch.as_tensor(X, device=self.device)
        self._points32 = self.points.float()  # float32 queries (graph edges) stay float32
        if self.n_nearest is not None:
            self._build_search(X)
        self._log_norm = -0.5 * self.dim * math.log(2 * math.pi * self.sigma**2)
        self.normalize = bool(normalize)
        if self.normalize:  # log of the median density on the data, in chunks
            logp = torch.cat([self._log_density(c) for c in self.points.split(2048)])
            self._log_norm -= float(logp.median())

    # rows of a query block × components held at once in the nearest-component search
    _SEARCH_ELEMENTS = 2**24

    def _build_search(self, X: np.ndarray) -> None:
        """Search space (float32, ≤ 10 principal axes) and the table of nearest components."""
        Z = X - X.mean(0)
        self._centre = torch.as_tensor(X.mean(0), device=self.device)
        self._basis = None
        if X.shape[1] > _SEARCH_DIM:
            _, _, Vt = np.linalg.svd(Z, full_matrices=False)
            self._basis = torch.as_tensor(Vt[:_SEARCH_DIM].T.copy(), device=self.device)
            Z = Z @ Vt[:_SEARCH_DIM].T
        self._search = torch.as_tensor(Z, dtype=torch.float32, device=self.device)
        self._search_sq = (self._search * self._search).sum(1)
        # each component's n_nearest nearest components (itself first), full distances
        P = self.points
        sq = (P * P).sum(1)
        k = self.n_nearest
        block = max(1, self._SEARCH_ELEMENTS // P.shape[0])
        rows = []
        with torch.no_grad():
            for i in range(0, P.shape[0], block):
                d2 = torch.addmm(sq[None, :], P[i : i + block], P.T, alpha=-2.0)
                d2 += sq[i : i + block, None]
                r = torch.arange(d2.shape[0], device=self.device)
                d2[r, r + i] = -math.inf  # the component itself first
                rows.append(torch.topk(d2, k, dim=1, largest=False).indices)
        self._table = torch.cat(rows)

    def nearest_components(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_nearest)`` indices of the mixture components summed at the points ``x``.

        The table row of the component nearest to each point (searched in float32, in the
        principal subspace above 10 dimensions), in blocks of bounded memory, on the
        metric's device.
        """
        with torch.no_grad():
            z = x.detach().to(self._centre.dtype) - self._centre
            if self._basis is not None:
                z = z @ self._basis
            z = z.to(torch.float32)
            block = max(1, self._SEARCH_ELEMENTS // self._search.shape[0])
            near = [
                torch.addmm(self._search_sq[None, :], zb, self._search.T, alpha=-2.0).argmin(1)
                for zb in z.split(block)
            ]
            nearest = torch.cat(near) if near else z.new_zeros(0, dtype=torch.long)
        return self._table[nearest]

    def _log_density(self, x: torch.Tensor) -> torch.Tensor:
        points = self._points32 if x.dtype == torch.float32 else self.points
        x = x.to(points.dtype)
        # blocks of rows: at most _SEARCH_ELEMENTS distances or gathered coordinates at once
        per_row = points.shape[0] if self.n_nearest is None else self.n_nearest * self.dim
        block = max(1, self._SEARCH_ELEMENTS // per_row)
        out = []
        for xb in x.split(block):
            if self.n_nearest is None:
                d2 = torch.cdist(xb, points) ** 2
            else:
                diff = xb[:, None, :] - points[self.nearest_components(xb)]
                d2 = (diff * diff).sum(-1)
            out.append(torch.logsumexp(-0.5 * d2 / self.sigma**2, dim=1))
        logp = torch.cat(out) if out else x.new_zeros(0)
        return logp - math.log(len(self.points)) + self._log_norm

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture density ``p(x)`` (over its median on the data if ``normalize``), ``(B,)``.

        Evaluated in float32 for float32 points (e.g. graph edges), else in float64.
        """
        return torch.exp(self._log_density(x)).to(x.dtype)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``‖v‖² / (p(x) + ε)`` ``(B,)``."""
        return (v * v).sum(-1) / (self.density(x) + self.eps)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """``I / (p(x) + ε)`` ``(B, d, d)``."""
        w = 1.0 / (self.density(x) + self.eps)
        return w[:, None, None] * torch.eye(self.dim, dtype=x.dtype, device=x.device)


class NeuralFIMMetric(Metric):
    """Pull-back Fisher metric of a trained :class:`~scfim.models.neural_fim.NeuralFIM`.

    ``vᵀ g(x) v = Σ_k φ_k(x) (u_k − Σ_j φ_j u_j)²`` with ``u = J_logits(x) v`` obtained by
    one forward-mode Jacobian–vector product: the variance of ``u`` under ``φ(x)``. No
    Jacobian or ``d × d`` matrix is formed. With several models (an ensemble) the quadratic
    forms are averaged. The metric is low rank; add a density term with :class:`SumMetric`
    to keep its geodesics near the data.

    Parameters
    ----------
    models
        One fitted NeuralFIM or a sequence of them (same input dimension).
    device
        Torch device of the metric's copies of the networks; default the device of the
        first model's network.
    """

    edge_dtype = torch.float32

    def __init__(self, models, device: str | torch.device | None = None):
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("need at least one fitted NeuralFIM")
        if device is None:
            device = next(models[0].network.parameters()).device
        self.device = torch.device(device)
        self.nets = []
        for m in models:
            net = copy.deepcopy(m.network).to(self.device)
            self.nets.append(net.double().eval().requires_grad_(False))
        self.dim = int(models[0].n_features_)
        self._nets32 = None

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``vᵀ g(x) v`` ``(B,)`` by Jacobian-vector products (ensemble mean).

        Evaluated in float64, or in float32 when ``x`` is float32 (about 6× faster on a
        CPU; on 40 000 edges of a 100-D data set the squared norms differ by < 1e-5
        relative), e.g. for the edge lengths of a graph; the curve solvers use float64.
        """
        if x.dtype == torch.float32:
            if self._nets32 is None:
                self._nets32 = [copy.deepcopy(n).float() for n in self.nets]
            nets, dt = self._nets32, torch.float32
        else:
            nets, dt = self.nets, torch.float64
        xx, vv = x.to(dt), v.to(dt)
        total = torch.zeros(x.shape[0], dtype=dt, device=x.device)
        for net in nets:
            logits, u = torch.func.jvp(net, (xx,), (vv,))
            p = torch.softmax(logits, -1)
            mean_u = (p * u).sum(-1, keepdim=True)
            total = total + (p * (u - mean_u) ** 2).sum(-1)
        return (total / len(nets)).to(x.dtype)

    def divergence_energy(self, c: torch.Tensor) -> torch.Tensor:
        """Fisher–Rao discrete energy ``2(n − 1) Σ_i KL(φ(c_i) ‖ φ(c_{i+1}))`` of curves.

        Needs no Jacobian: since ``KL(φ(x) ‖ φ(x + dx)) ≈ ½ dxᵀ g dx`` it converges to the
        metric energy as the curve is refined. With several networks (an ensemble) the KL
        is averaged over the members, each member with itself: unlike the decoders of an
        ensemble VAE, independently trained neural-FIM networks do not share output
        coordinates, so a cross-member KL would not vanish along the curve.
        """
        B, n, d = c.shape
        flat = c.reshape(-1, d).double()
        total = torch.zeros(B, dtype=torch.float64, device=c.device)
        for net in self.nets:
            lp = torch.log_softmax(net(flat), -1).reshape(B, n, -1)
            total = total + (lp[:, :-1].exp() * (lp[:, :-1] - lp[:, 1:])).sum((-1, -2))
        return 2.0 * (n - 1) * total / len(self.nets)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Pull-back Fisher metric ``(B, d, d)``, averaged over the ensemble."""
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        cols = []
        for j in range(self.dim):  # polarisation: G_ij = (q(e_i + e_j) − q(e_i) − q(e_j)) / 2
            cols.append(self.inner(x, eye[j].expand_as(x)))
        diag = torch.stack(cols, -1)
        G = torch.diag_embed(diag)
        for i in range(self.dim):
            for j in range(i + 1, self.dim):
                q = self.inner(x, (eye[i] + eye[j]).expand_as(x))
                G[:, i, j] = G[:, j, i] = 0.5 * (q - diag[:, i] - diag[:, j])
        return G


def with_density(
    metric: Metric,
    data: np.ndarray,
    weight: float,
    *,
    n_scale: int = 500,
    traces: np.ndarray | None = None,
    **density_kwargs,
) -> tuple[Metric, DensityMetric | None]:
    """``metric + w · DensityMetric(data, normalize=True)`` with a dimensionless weight.

    ``w = weight · median tr G / d`` over (up to ``n_scale``, evenly spaced) data points, so
    that the density term is about ``weight`` of ``metric`` on the data and
    ``weight / ε`` of it far from the data (the density metric is ``I / (p/p_med + ε)``).
    A low-rank metric such as the pull-back Fisher metric then has geodesics that stay
    near the data.

    Parameters
    ----------
    metric
        The metric to complete.
    data
        ``(N, d)`` points of the density.
    weight
        Relative weight; 0 returns ``metric`` unchanged.
    n_scale
        Points at which the scale of ``metric`` is measured.
    traces
        Optional ``(N,)`` precomputed ``tr G`` at the data points (e.g. the per-cell FIM
        traces that :func:`scfim.tl.neural_fim` stores); the scale is then read from them
        at the same points instead of being evaluated.
    **density_kwargs
        Passed to :class:`DensityMetric` (its ``device`` defaults to ``metric``'s).

    Returns
    -------
    metric, density
        A :class:`SumMetric` of both and the density term (``metric`` and None if
        ``weight == 0``).
    """
    weight = float(weight)
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a finite number ≥ 0, got {weight}")
    if weight == 0:
        return metric, None
    X = np.asarray(data, dtype=np.float64)
    idx = np.linspace(0, len(X) - 1, min(int(n_scale), len(X))).astype(int)
    if traces is not None:
        traces = np.asarray(traces, dtype=np.float64)
        if traces.shape != (len(X),) or not np.all(np.isfinite(traces[idx])):
            raise ValueError(f"traces must be {len(X)} finite numbers, one per data point")
        scale = float(np.median(traces[idx])) / X.shape[1]
    else:
        with torch.no_grad():  # a scale: the metric's edge dtype is precise enough
            x = torch.as_tensor(X[idx], dtype=metric.edge_dtype, device=metric.device)
            scale = float(np.median(metric.mean_eigenvalue(x).double().cpu().numpy()))
    density_kwargs.setdefault("device", metric.device)
    density = DensityMetric(X, normalize=True, **density_kwargs)
    return SumMetric([metric, density], [1.0, weight * max(scale, 1e-300)]), density
