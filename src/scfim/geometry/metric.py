"""Riemannian metrics on coordinate spaces (pure torch; no AnnData).

A metric maps a batch of points ``x`` of shape ``(B, d)`` to metric tensors ``(B, d, d)``.
Solvers only need the quadratic form ``vᵀ G(x) v``, so every metric also exposes
:meth:`Metric.inner`, which implementations override when they have a cheaper path than
forming ``G``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Metric", "SphereMetric", "DensityMetric", "EuclideanMetric", "NeuralFIMMetric"]


class Metric:
    """Base class: a smooth field of symmetric positive (semi-)definite matrices."""

    dim: int

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


class EuclideanMetric(Metric):
    """The identity metric (straight lines are geodesics)."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        return torch.eye(self.dim, dtype=x.dtype).expand(x.shape[0], self.dim, self.dim)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (v * v).sum(-1)


class SphereMetric(Metric):
    """Round metric of the sphere of radius ``r`` in spherical coordinates (θ polar, ψ azimuth).

    ``ds² = r² (dθ² + sin²θ dψ²)``. Geodesic distance between two points is
    ``r · arccos(⟨u, w⟩)`` for their unit vectors u, w (:meth:`distance`).
    """

    dim = 2

    def __init__(self, radius: float = 1.0) -> None:
        self.radius = float(radius)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        s2 = torch.sin(x[:, 0]) ** 2
        G = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
        G[:, 0, 0] = 1.0
        G[:, 1, 1] = s2
        return self.radius**2 * G

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
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

    ``p(x) = (1/N) Σ_n N(x | x_n, σ² I)`` (Hauberg; seed 002, Part C). Curves pay for
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
    """

    def __init__(
        self,
        data: np.ndarray,
        sigma: float | None = None,
        eps: float = 1e-4,
        max_points: int = 5000,
        random_state: int | None = 0,
        normalize: bool = False,
    ) -> None:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError("data must be a (N ≥ 2, d) array")
        if len(X) > max_points:
            X = X[np.random.default_rng(random_state).choice(len(X), max_points, replace=False)]
        if sigma is None:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(X).query(X, k=2)
            sigma = float(np.median(d[:, 1]))
        if not sigma > 0:
            raise ValueError("sigma must be > 0")
        self.dim = X.shape[1]
        self.sigma = float(sigma)
        self.eps = float(eps)
        self.points = torch.as_tensor(X)
        self._log_norm = -0.5 * self.dim * math.log(2 * math.pi * self.sigma**2)
        self.normalize = bool(normalize)
        if self.normalize:  # log of the median density on the data, in chunks
            logp = torch.cat([self._log_density(c) for c in self.points.split(2048)])
            self._log_norm -= float(logp.median())

    def _log_density(self, x: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x.to(self.points.dtype), self.points) ** 2
        logp = torch.logsumexp(-0.5 * d2 / self.sigma**2, dim=1) - math.log(len(self.points))
        return logp + self._log_norm

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture density ``p(x)`` (over its median on the data if ``normalize``), ``(B,)``."""
        return torch.exp(self._log_density(x)).to(x.dtype)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (v * v).sum(-1) / (self.density(x) + self.eps)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        w = 1.0 / (self.density(x) + self.eps)
        return w[:, None, None] * torch.eye(self.dim, dtype=x.dtype)


class NeuralFIMMetric(Metric):
    """Pull-back Fisher metric of a trained :class:`~scfim.models.neural_fim.NeuralFIM`.

    ``vᵀ g(x) v = Σ_k φ_k(x) (u_k − Σ_j φ_j u_j)²`` with ``u = J_logits(x) v`` obtained by
    one forward-mode Jacobian–vector product: the variance of ``u`` under ``φ(x)``. No
    Jacobian or ``d × d`` matrix is formed. With several models (an ensemble) the quadratic
    forms are averaged. A ``density`` metric with weight ``density_weight`` can be added to
    keep geodesics of this low-rank metric near the data.

    Parameters
    ----------
    models
        One fitted NeuralFIM or a sequence of them (same input dimension).
    density
        Optional :class:`DensityMetric` on the training inputs.
    density_weight
        Weight of the density term.
    """

    def __init__(self, models, density: DensityMetric | None = None, density_weight: float = 0.0):
        import copy

        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("need at least one fitted NeuralFIM")
        self.nets = []
        for m in models:
            net = m._check_fitted()
            self.nets.append(copy.deepcopy(net).double().eval().requires_grad_(False))
        self.dim = int(models[0].n_features_)
        if density is not None and density.dim != self.dim:
            raise ValueError("the density metric lives in another dimension")
        self.density = density
        self.density_weight = float(density_weight)

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x64, v64 = x.double(), v.double()
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for net in self.nets:
            logits, u = torch.func.jvp(net, (x64,), (v64,))
            p = torch.softmax(logits, -1)
            mean_u = (p * u).sum(-1, keepdim=True)
            total = total + (p * (u - mean_u) ** 2).sum(-1)
        out = total / len(self.nets)
        if self.density is not None and self.density_weight > 0:
            out = out + self.density_weight * self.density.inner(x64, v64)
        return out.to(x.dtype)

    def mean_eigenvalue(self, x: torch.Tensor) -> torch.Tensor:
        """``tr g(x) / d`` of the (ensemble) Fisher metric alone, shape ``(B,)``.

        A scale of the metric in the input units (d Jacobian–vector products), used to make
        the weight of the density term dimensionless.
        """
        eye = torch.eye(self.dim, dtype=x.dtype)
        density, self.density = self.density, None
        try:
            tr = sum(self.inner(x, eye[j].expand_as(x)) for j in range(self.dim))
        finally:
            self.density = density
        return tr / self.dim

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.dim, dtype=x.dtype)
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
