"""LAND geometry: the locally adaptive metric, batched Exp and Log maps (pure torch, no AnnData).

The LAND metric (Arvanitidis, Hansen & Hauberg 2016) is the inverse of a local diagonal
covariance of the data,

``M(x) = diag(Σ_n w_n(x) (x_nd − x_d)² + ρ)⁻¹``,  ``w_n(x) = exp(−‖x_n − x‖² / 2σ²)``.

Geodesics solve ``c'' = −Γ(c)[c', c']``. :func:`exp_map` integrates this initial-value
problem with :func:`torchdiffeq.odeint` (fixed-step RK4, one batch for all tangent
vectors); the Christoffel term is in closed form for :class:`LANDMetric` and by automatic
differentiation of the quadratic form ``vᵀG(x)v`` for any other
:class:`~scfim.geometry.metric.Metric`. :func:`log_map` solves the boundary-value problem
``Exp_μ(v) = x`` by damped Newton shooting (Jacobian of Exp by batched finite differences),
restarts the unconverged ones from the minimum-energy curve of
:func:`~scfim.geometry.geodesic.energy_geodesic`, and *reports* what still fails (mask and
residuals); a failure is never replaced by a straight line.

Manifolds used by the maximum-likelihood fit (:mod:`scfim.models.land`) expose
``tangent_dim``, ``exp(mu, V)``, ``log(mu, X, init=None) -> LogResult`` and
``log_volume(Y)`` (``log √det M`` in the tangent coordinates): :class:`MetricManifold`
wraps any metric on ``R^d`` (tangent coordinates = ambient coordinates), and
:class:`SphereManifold` has the closed-form maps of the unit sphere (tangent coordinates in
an orthonormal frame), so the same estimator can be checked on a known manifold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .graph import resample_polyline
from .metric import Metric

__all__ = [
    "LANDMetric",
    "exp_map",
    "log_map",
    "LogResult",
    "MetricManifold",
    "SphereManifold",
    "sphere_frame",
]

_DT = torch.float64


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=_DT)


# ------------------------------------------------------------------------------- metrics
class LANDMetric(Metric):
    """Diagonal locally adaptive metric of LAND.

    ``M(x) = diag(S(x) + ρ)⁻¹`` with ``S_d(x) = Σ_n w_n(x) (x_nd − x_d)²`` and
    ``w_n(x) = exp(−‖x_n − x‖² / 2σ²)``.

    Parameters
    ----------
    data
        ``(N, d)`` reference points.
    sigma
        Kernel width; default the median distance of the points to their
        ``k_sigma``-th nearest neighbour (the local covariance then pools about
        ``k_sigma`` points, enough to see the tangent directions through the noise).
    rho
        Regulariser; default ``rho_rel`` times the median (over points and dimensions) of
        ``S`` at the reference points, so that the metric far from the data is about
        ``1 / rho_rel`` times the metric on the data, whatever the number of points.
    rho_rel
        See ``rho``.
    k_sigma
        Neighbour rank of the default ``sigma``; default ``N / 20`` clipped to [10, 100].
    max_points
        Subsample the reference points to this many (each evaluation costs ``B × N``).
    chunk_size
        Points per block of ``B × N`` kernel evaluations.
    random_state
        Seed of the subsampling.
    """

    def __init__(
        self,
        data: np.ndarray,
        sigma: float | None = None,
        rho: float | None = None,
        *,
        rho_rel: float = 0.1,
        k_sigma: int | None = None,
        max_points: int = 2000,
        chunk_size: int = 2048,
        random_state: int | None = 0,
    ) -> None:
        X = np.asarray(data, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError("data must be a (N ≥ 2, d) array")
        if not np.isfinite(X).all():
            raise ValueError("data contain NaN or infinite values")
        if len(X) > max_points:
            rng = np.random.default_rng(random_state)
            X = X[rng.choice(len(X), max_points, replace=False)]
        if sigma is None:
            from scipy.spatial import cKDTree

            k = int(np.clip(len(X) // 20, 10, 100)) if k_sigma is None else int(k_sigma)
            k = min(k, len(X) - 1)
            d, _ = cKDTree(X).query(X, k=k + 1)
            sigma = float(np.median(d[:, k]))
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.dim = X.shape[1]
        self.sigma = float(sigma)
        self.chunk_size = int(chunk_size)
        # centred reference points (the metric is translation-equivariant)
        self.center = X.mean(0)
        self._center_t = _t(self.center)
        P = _t(X - self.center)
        self.points = P
        self._sqnorm = (P * P).sum(1)
        N, d = P.shape
        P2 = (P[:, :, None] * P[:, None, :]).reshape(N, d * d)
        P3 = (P[:, :, None] * (P * P)[:, None, :]).reshape(N, d * d)
        self._features = torch.cat([torch.ones(N, 1, dtype=_DT), P, P2, P3], 1)
        self.rho = 0.0
        if rho is None:
            S = self._moments(_t(X), derivatives=False)[0]
            rho = float(rho_rel) * float(np.median(S.numpy()))
        if not (np.isfinite(rho) and rho > 0):
            raise ValueError(f"rho must be > 0, got {rho}")
        self.rho = float(rho)

    def _moments(self, x: torch.Tensor, derivatives: bool = True):
        """``S(x)`` (B, d) and, if asked, ``∂S_d/∂x_k`` (B, d, d), in blocks over x.

        The kernel sums are moments ``Σ_n w_n f(x_n)`` of a few monomials of the (centred)
        reference points, obtained by one matrix product per block; only the ``B × N``
        kernel matrix is formed. With ``Δ_n = x_n − x``:
        ``S_d = Σ w Δ_d²`` and ``∂S_d/∂x_k = Σ w Δ_k Δ_d² / σ² − 2 δ_dk Σ w Δ_d``.
        """
        xc = x.to(_DT) - self._center_t
        P, F, P2 = self.points, self._features, self._sqnorm
        d = self.dim
        S_out, dS_out = [], []
        for i in range(0, xc.shape[0], self.chunk_size):
            xb = xc[i : i + self.chunk_size]
            b = xb.shape[0]
            K = torch.addmm(P2[None, :], xb, P.T, alpha=-2.0)  # ‖x_n‖² − 2 x·x_n
            K.add_((xb * xb).sum(1, keepdim=True)).clamp_(min=0.0)
            K.mul_(-0.5 / self.sigma**2).exp_()
            Mo = K @ F  # (b, 1 + d + d² [+ d²])
            m0 = Mo[:, :1]
            m1 = Mo[:, 1 : 1 + d]
            m2 = Mo[:, 1 + d : 1 + d + d * d].reshape(b, d, d)  # [k, j] = Σ w X_k X_j
            m2d = torch.diagonal(m2, dim1=1, dim2=2)
            S = m2d - 2.0 * xb * m1 + xb * xb * m0
            S_out.append(S.clamp_min(0.0))
            if derivatives:
                m3 = Mo[:, 1 + d + d * d :].reshape(b, d, d)  # [k, j] = Σ w X_k X_j²
                T1 = (
                    m3.transpose(1, 2)
                    - 2.0 * xb[:, :, None] * m2.transpose(1, 2)
                    + (xb * xb)[:, :, None] * m1[:, None, :]
                    - S[:, :, None] * xb[:, None, :]
                )  # [d, k] = Σ w Δ_k Δ_d²
                T2 = m1 - xb * m0  # Σ w Δ_d
                dS_out.append(T1 / self.sigma**2 - 2.0 * torch.diag_embed(T2))
        S = torch.cat(S_out) if S_out else xc.new_zeros((0, d))
        dS = torch.cat(dS_out) if derivatives and dS_out else None
        return S, dS

    def diagonal(self, x: torch.Tensor) -> torch.Tensor:
        """Diagonal of ``M(x)``, shape ``(B, d)``."""
        S, _ = self._moments(x, derivatives=False)
        return (1.0 / (S + self.rho)).to(x.dtype)

    def metric(self, x: torch.Tensor) -> torch.Tensor:
        """Metric tensors ``(B, D, D)``: the diagonal ``M(x)`` as a matrix."""
        return torch.diag_embed(self.diagonal(x))

    def inner(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Squared norms ``vᵀ M(x) v`` ``(B,)`` from the diagonal."""
        return (self.diagonal(x) * v * v).sum(-1)

    def log_volume(self, x: torch.Tensor) -> torch.Tensor:
        """``log √det M(x) = −½ Σ_d log(S_d + ρ)``, shape ``(B,)``."""
        S, _ = self._moments(x, derivatives=False)
        return -0.5 * torch.log(S + self.rho).sum(-1)

    def acceleration(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Closed-form geodesic acceleration ``−Γ(x)[v, v]`` of the diagonal metric.

        With ``J_ik = ∂M_i/∂x_k``:
        ``c''_i = −(2 v_i (J v)_i − (Jᵀ v²)_i) / (2 M_i)``.
        """
        S, dS = self._moments(x, derivatives=True)
        M = 1.0 / (S + self.rho)
        J = -(M * M)[..., None] * dS  # (B, d, d)
        Jv = torch.einsum("bik,bk->bi", J, v)
        Jtv2 = torch.einsum("bki,bk->bi", J, v * v)
        return -(2.0 * v * Jv - Jtv2) / (2.0 * M)


# ----------------------------------------------------------------------------- Exp map
def exp_map(
    metric: Metric,
    start,
    velocity,
    *,
    n_steps: int = 16,
    return_path: bool = False,
):
    """Riemannian exponential map, batched: ``Exp_{start[i]}(velocity[i])``.

    Integrates ``(c, c')' = (c', −Γ(c)[c', c'])`` from ``t = 0`` to ``1`` with
    :func:`torchdiffeq.odeint` (fixed-step RK4, ``n_steps`` steps; smooth in the initial
    velocity, which the finite-difference Jacobians of :func:`log_map` need).

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric`.
    start
        ``(d,)`` (broadcast) or ``(B, d)`` base points.
    velocity
        ``(B, d)`` initial velocities.
    n_steps
        RK4 steps on ``[0, 1]``.
    return_path
        Also return the ``(n_steps + 1, B, d)`` curve.

    Returns
    -------
    ``(B, d)`` end points (numpy), and the path when ``return_path``.
    """
    from torchdiffeq import odeint

    v0 = _t(np.atleast_2d(velocity))
    x0 = _t(np.atleast_2d(start))
    if x0.shape[0] == 1 and v0.shape[0] > 1:
        x0 = x0.expand_as(v0)
    if x0.shape != v0.shape:
        raise ValueError(f"start {tuple(x0.shape)} and velocity {tuple(v0.shape)} mismatch")
    d = x0.shape[1]
    n_steps = int(n_steps)

    def f(t, y):
        x, v = y[:, :d], y[:, d:]
        return torch.cat([v, metric.acceleration(x, v)], dim=1)

    ts = torch.linspace(0.0, 1.0, n_steps + 1, dtype=_DT) if return_path else None
    with torch.no_grad():
        y0 = torch.cat([x0, v0], 1)
        if return_path:
            ys = odeint(f, y0, ts, method="rk4")
        else:
            ys = odeint(
                f,
                y0,
                torch.tensor([0.0, 1.0], dtype=_DT),
                method="rk4",
                options={"step_size": 1.0 / n_steps},
            )
    end = ys[-1, :, :d].numpy()
    if return_path:
        return end, ys[:, :, :d].numpy()
    return end


# ----------------------------------------------------------------------------- Log map
@dataclass
class LogResult:
    """Output of a Log map.

    Attributes
    ----------
    v
        ``(B, k)`` tangent vectors (best estimate, also where ``converged`` is False).
    converged
        ``(B,)`` True where ``Exp(v)`` reproduces the target within tolerance.
    residual
        ``(B,)`` ``‖Exp(v) − x‖`` (Euclidean, in the ambient coordinates).
    n_energy
        Number of targets that were restarted from the energy solver.
    """

    v: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    n_energy: int = 0

    @property
    def n_failed(self) -> int:
        """Number of Log maps that did not converge."""
        return int((~self.converged).sum())


def _newton_shoot(metric, mu, X, V, *, n_steps, max_iter, tol, fd_eps, max_halvings=3):
    """Damped Newton shooting on ``Exp_μ(v) − x = 0``; returns ``(V, converged, residual)``.

    The Jacobian of Exp comes from forward finite differences evaluated in the same batch
    as the trial point (``(d + 1) B`` geodesics per iteration). Steps are halved until the
    residual drops; targets without any decrease are given up (and reported).
    """
    B, d = X.shape
    eye = np.eye(d)

    def exp_and_jac(Vb):
        h = fd_eps * np.maximum(1.0, np.linalg.norm(Vb, axis=1))[:, None]  # (b, 1)
        batch = np.concatenate([Vb] + [Vb + h * eye[j] for j in range(d)], 0)
        E = exp_map(metric, mu, batch, n_steps=n_steps).reshape(d + 1, len(Vb), d)
        return E[0], (E[1:] - E[0][None]).transpose(1, 2, 0) / h[:, :, None]

    thr = tol * np.maximum(np.linalg.norm(X - mu, axis=1), 1.0)
    Y, J = exp_and_jac(V)
    F = Y - X
    res = np.linalg.norm(F, axis=1)
    res[~np.isfinite(res)] = np.inf
    active = res > thr
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Ji = J[idx]
        good = np.isfinite(Ji).all((1, 2)) & (np.abs(np.linalg.det(Ji)) > 1e-300)
        step = np.zeros((idx.size, d))
        if good.any():
            step[good] = -np.linalg.solve(Ji[good], F[idx][good][..., None])[..., 0]
        step[~np.isfinite(step)] = 0.0
        lam = np.ones(idx.size)
        todo = np.flatnonzero(good)
        for _h in range(max_halvings + 1):
            if todo.size == 0:
                break
            sub = idx[todo]
            Vt = V[sub] + lam[todo, None] * step[todo]
            Yt, Jt = exp_and_jac(Vt)
            rt = np.linalg.norm(Yt - X[sub], axis=1)
            rt[~np.isfinite(rt)] = np.inf
            ok = rt < res[sub]
            acc = sub[ok]
            V[acc], F[acc], J[acc], res[acc] = Vt[ok], (Yt - X[sub])[ok], Jt[ok], rt[ok]
            todo = todo[~ok]
            lam[todo] *= 0.5
        active[idx[todo]] = False  # no decrease even with a small step: give up on these
        active[idx[~good]] = False
        active &= res > thr
    return V, res <= thr, res


def log_map(
    metric: Metric,
    mu,
    X,
    *,
    init: np.ndarray | None = None,
    n_steps: int = 16,
    max_iter: int = 10,
    tol: float = 1e-5,
    fd_eps: float = 1e-6,
    energy_fallback: bool = True,
    energy_points: int = 12,
    energy_max_iter: int = 60,
    init_paths: list | None = None,
    warn: bool = True,
) -> LogResult:
    """Riemannian logarithm ``Log_μ(x_i)`` for a batch of targets, by shooting.

    Damped Newton iterations on ``Exp_μ(v) = x`` (all targets at once; the Jacobian of Exp
    by forward finite differences in one batch of ``(d + 1) B`` geodesics). Targets that do
    not converge are restarted from the initial velocity of the minimum-energy curve
    (:func:`~scfim.geometry.geodesic.energy_geodesic`); those that still fail keep the best
    estimate found and are flagged in ``converged`` (and a warning is issued).

    Parameters
    ----------
    metric
        A :class:`~scfim.geometry.metric.Metric` on ``R^d``.
    mu
        ``(d,)`` base point.
    X
        ``(B, d)`` targets.
    init
        ``(B, d)`` initial velocities (e.g. the Logs of a previous, nearby base point);
        default ``x − μ``, a starting guess that Newton then corrects.
    n_steps
        RK4 steps of each Exp.
    max_iter
        Newton iterations.
    tol
        Convergence when ``‖Exp_μ(v) − x‖ ≤ tol · max(‖x − μ‖, 1)``.
    fd_eps
        Relative finite-difference step.
    energy_fallback
        Restart unconverged targets from the energy solver.
    energy_points, energy_max_iter
        Discretisation and iteration limit of that solver.
    init_paths
        Optional list (one per target, or None entries) of ``(m, d)`` polylines from ``μ``
        to the target (e.g. graph shortest paths) used as starting curves of the energy
        solver; straight lines otherwise.
    warn
        Warn when some targets fail.

    Returns
    -------
    :class:`LogResult`.
    """
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.shape[1] != mu.size:
        raise ValueError(f"targets have {X.shape[1]} coordinates, mu has {mu.size}")
    V = (X - mu).copy() if init is None else np.array(init, dtype=np.float64, copy=True)
    if V.shape != X.shape:
        raise ValueError(f"init must have shape {X.shape}")
    V[~np.isfinite(V)] = 0.0
    kw = {"n_steps": n_steps, "tol": tol, "fd_eps": fd_eps}
    V, ok, res = _newton_shoot(metric, mu, X, V, max_iter=max_iter, **kw)
    n_energy = 0
    if energy_fallback and not ok.all():
        from .geodesic import energy_geodesic

        bad = np.flatnonzero(~ok)
        n_energy = bad.size
        curves = None
        if init_paths is not None:
            curves = np.empty((bad.size, energy_points, mu.size))
            for j, i in enumerate(bad):
                P = init_paths[i]
                P = np.vstack([mu, X[i]]) if P is None else np.asarray(P, dtype=np.float64)
                curves[j] = resample_polyline(P, energy_points)
        g = energy_geodesic(
            metric,
            np.repeat(mu[None], bad.size, 0),
            X[bad],
            n_points=energy_points,
            init=curves,
            max_iter=energy_max_iter,
        )
        V0 = (energy_points - 1) * (g.paths[:, 1] - g.paths[:, 0])
        V1, ok1, res1 = _newton_shoot(metric, mu, X[bad], V0.copy(), max_iter=max_iter, **kw)
        better = res1 < res[bad]
        V[bad[better]], res[bad[better]] = V1[better], res1[better]
        ok[bad] = ok1 | ok[bad]
    if warn and not ok.all():
        warnings.warn(
            f"log_map: {int((~ok).sum())} of {len(ok)} boundary-value problems did not "
            "converge; their best estimates are flagged in LogResult.converged",
            RuntimeWarning,
            stacklevel=2,
        )
    return LogResult(V, ok, res, n_energy)


# --------------------------------------------------------------------------- manifolds
class MetricManifold:
    """``R^d`` with a :class:`~scfim.geometry.metric.Metric`; tangent coordinates = ``R^d``.

    Parameters
    ----------
    metric
        The metric (:class:`LANDMetric`, a neural-FIM metric, a
        :class:`~scfim.geometry.metric.SumMetric` ...).
    graph_data
        Optional ``(N, d)`` points (usually the data) on which a kNN graph with
        metric edge lengths is built; Log maps without an ``init`` then start from the
        graph shortest path (direction of its first hops, length of the path), which
        shooting converges from far more often than from the straight line, and the
        energy-solver restarts start from the path itself.
    n_neighbors
        Neighbours of the graph.
    n_steps
        RK4 steps of each Exp.
    warm_max_iter
        Newton iterations of warm-started Log maps (``init`` given, as in the EM loop);
        these skip the energy-solver restart, so a target that fails stays flagged.
    log_kwargs
        Passed to :func:`log_map`.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        graph_data: np.ndarray | None = None,
        n_neighbors: int = 10,
        n_steps: int = 16,
        warm_max_iter: int = 6,
        **log_kwargs,
    ) -> None:
        self.metric = metric
        self.tangent_dim = metric.dim
        self.ambient_dim = metric.dim
        self.n_steps = int(n_steps)
        self.log_kwargs = {"warn": False, **log_kwargs}
        self.warm_max_iter = int(warm_max_iter)
        self._graph = None
        if graph_data is not None:
            self._build_graph(np.asarray(graph_data, dtype=np.float64), int(n_neighbors))

    def _build_graph(self, Z: np.ndarray, k: int) -> None:
        import scipy.sparse as sp
        from scipy.spatial import cKDTree

        tree = cKDTree(Z)
        k = min(k, len(Z) - 1)
        _, nb = tree.query(Z, k=k + 1)
        rows = np.repeat(np.arange(len(Z)), k)
        cols = nb[:, 1:].reshape(-1)
        with torch.no_grad():
            L = self._seg_lengths(Z[rows], Z[cols])
        # join disconnected pieces by their closest pairs, so every target has a path
        from scipy.sparse.csgraph import connected_components

        G0 = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(Z), len(Z)))
        n_comp, comp = connected_components(G0, directed=False)
        extra_r, extra_c = [], []
        main = comp == comp[0]
        while n_comp > 1 and not main.all():
            rest = np.flatnonzero(~main)
            d, j = cKDTree(Z[rest]).query(Z[main])
            a = int(np.argmin(d))
            u, v = int(np.flatnonzero(main)[a]), int(rest[j[a]])
            extra_r.append(u)
            extra_c.append(v)
            main |= comp == comp[v]
        if extra_r:
            rows = np.concatenate([rows, extra_r])
            cols = np.concatenate([cols, extra_c])
            L = np.concatenate([L, self._seg_lengths(Z[extra_r], Z[extra_c])])
        G = sp.csr_matrix((L + 1e-12, (rows, cols)), shape=(len(Z), len(Z)))
        self._graph = (Z, tree, G.maximum(G.T).tocsr())

    def _seg_lengths(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Metric length of straight segments (midpoint rule)."""
        with torch.no_grad():
            q = self.metric.inner(_t(0.5 * (A + B)), _t(B - A))
        return np.sqrt(np.clip(q.double().numpy(), 0.0, None))

    def graph_paths(self, mu, X, hops: int = 3, full: bool = False):
        """Graph shortest paths from ``mu`` to ``X``: (initial velocities, polylines).

        The velocity points to the ``hops``-th vertex of the path and its length is the
        metric length of the path (straight ``x − μ`` where the graph gives nothing).
        """
        import scipy.sparse.csgraph as csgraph

        Z, tree, G = self._graph
        s = int(tree.query(mu)[1])
        dist, pred = csgraph.dijkstra(G, indices=s, return_predecessors=True)
        _, tgt = tree.query(X)
        V = X - mu
        paths: list = [None] * len(X)
        heads, lengths, rows = [], [], []
        for i, t in enumerate(tgt):
            if not np.isfinite(dist[t]):
                continue
            nodes = [int(t)]
            while nodes[-1] != s and pred[nodes[-1]] >= 0:
                nodes.append(int(pred[nodes[-1]]))
            if nodes[-1] != s or len(nodes) < 3:
                continue
            P = np.vstack([mu, Z[nodes[::-1][1:-1]], X[i]])
            paths[i] = P
            heads.append(P[min(hops, len(P) - 1)] - mu)
            lengths.append(P)
            rows.append(i)
        if rows:
            U = np.asarray(heads)
            Lu = self._seg_lengths(np.repeat(mu[None], len(U), 0), mu + U)
            seg_a = np.concatenate([P[:-1] for P in lengths])
            seg_b = np.concatenate([P[1:] for P in lengths])
            seg = self._seg_lengths(seg_a, seg_b)
            owner = np.repeat(np.arange(len(lengths)), [len(P) - 1 for P in lengths])
            Lp = np.bincount(owner, weights=seg, minlength=len(lengths))
            okL = Lu > 0
            r = np.asarray(rows)
            V[r[okL]] = U[okL] * (Lp[okL] / Lu[okL])[:, None]
        if full:
            return V, paths, dist, pred, tgt, s
        return V, paths

    def exp(self, mu, V) -> np.ndarray:
        """``Exp_μ(V)``, ``(B, d)``."""
        return exp_map(self.metric, mu, V, n_steps=self.n_steps)

    def log(self, mu, X, init=None) -> LogResult:
        """``Log_μ(X)`` with failures flagged."""
        mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if init is None and self._graph is not None:
            return self._log_waves(mu, X)
        kw = dict(self.log_kwargs)
        if init is not None:  # warm start (e.g. the previous EM iteration): cheap solves only
            kw.setdefault("energy_fallback", False)
            kw["max_iter"] = min(int(kw.get("max_iter", 10)), self.warm_max_iter)
        return log_map(self.metric, mu, X, init=init, n_steps=self.n_steps, **kw)

    def _log_waves(self, mu, X, n_waves: int = 4) -> LogResult:
        """Cold Log maps by continuation along the graph's shortest-path tree.

        Targets are solved in waves of increasing graph distance from ``mu``; the first
        wave starts from the direction of the first hops of its path, later ones from the
        solved Log of their nearest solved ancestor on the path, rescaled by the ratio of
        path lengths.
        """
        V0, paths, dist, pred, tgt, s = self.graph_paths(mu, X, full=True)
        dt = dist[tgt]
        finite = np.isfinite(dt)
        wave = np.full(len(X), n_waves - 1)
        if finite.any():
            qs = np.quantile(dt[finite], np.linspace(0, 1, n_waves + 1)[1:-1])
            wave[finite] = np.searchsorted(qs, dt[finite], side="left")
        node_sol: dict[int, int] = {}
        V = V0.copy()
        ok = np.zeros(len(X), dtype=bool)
        res = np.full(len(X), np.inf)
        n_energy = 0
        for w in range(n_waves):
            idx = np.flatnonzero(wave == w)
            if idx.size == 0:
                continue
            init = V0[idx].copy()
            if w > 0:
                for j, i in enumerate(idx):
                    node = int(tgt[i])
                    while node != s and node >= 0 and node not in node_sol:
                        node = int(pred[node])
                    if node in node_sol and dist[node] > 0:
                        init[j] = V[node_sol[node]] * (dt[i] / dist[node])
            r = log_map(
                self.metric,
                mu,
                X[idx],
                init=init,
                n_steps=self.n_steps,
                init_paths=[paths[i] for i in idx],
                **self.log_kwargs,
            )
            V[idx], ok[idx], res[idx] = r.v, r.converged, r.residual
            n_energy += r.n_energy
            for i in idx[r.converged]:
                node_sol.setdefault(int(tgt[i]), int(i))
        return LogResult(V, ok, res, n_energy)

    def log_volume(self, Y) -> np.ndarray:
        """``log √det M(y)``, ``(B,)``."""
        with torch.no_grad():
            return self.metric.log_volume(_t(np.atleast_2d(Y))).double().numpy()


def sphere_frame(mu) -> np.ndarray:
    """Orthonormal frame ``(D, D − 1)`` of the tangent space of the unit sphere at ``mu``.

    The rotation in the plane of ``e_D`` and ``mu`` that takes ``e_D`` to ``mu``, applied
    to ``e_1 … e_{D−1}``: smooth in ``mu`` except at ``−e_D``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    mu = mu / np.linalg.norm(mu)
    D = mu.size
    e = np.zeros(D)
    e[-1] = 1.0
    c = float(mu @ e)
    w = mu - c * e
    s = float(np.linalg.norm(w))
    w = w / s if s > 1e-15 else np.zeros(D)
    R = (
        np.eye(D)
        + (c - 1.0) * (np.outer(e, e) + np.outer(w, w))
        + s * (np.outer(w, e) - np.outer(e, w))
    )
    return R[:, :-1]


class SphereManifold:
    """The unit sphere ``S^{D−1} ⊂ R^D`` with closed-form Exp/Log (a known manifold).

    Tangent coordinates at ``mu`` are taken in :func:`sphere_frame`; the metric in these
    coordinates is the identity, so ``log √det M = 0``.
    """

    def __init__(self, ambient_dim: int = 3) -> None:
        self.ambient_dim = int(ambient_dim)
        self.tangent_dim = self.ambient_dim - 1

    @staticmethod
    def project(x) -> np.ndarray:
        """Radial projection onto the sphere."""
        x = np.asarray(x, dtype=np.float64)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def exp(self, mu, V) -> np.ndarray:
        """Exponential map at ``mu`` of tangent coordinates ``V`` (great circles)."""
        mu = self.project(mu)
        U = np.atleast_2d(V) @ sphere_frame(mu).T
        n = np.linalg.norm(U, axis=1, keepdims=True)
        sinc = np.where(n > 1e-12, np.sin(n) / np.where(n > 1e-12, n, 1.0), 1.0)
        return np.cos(n) * mu + sinc * U

    def log(self, mu, X, init=None) -> LogResult:
        """Logarithm map at ``mu`` of the points ``X`` (closed form; ``init`` unused)."""
        mu = self.project(mu)
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        c = np.clip(X @ mu, -1.0, 1.0)
        th = np.arccos(c)
        P = X - c[:, None] * mu
        f = np.where(th > 1e-12, th / np.where(np.sin(th) > 1e-300, np.sin(th), 1.0), 1.0)
        U = f[:, None] * P
        ok = th < math.pi - 1e-6  # antipodal points have no unique Log
        V = U @ sphere_frame(mu)
        res = np.linalg.norm(self.exp(mu, V) - X, axis=1)
        return LogResult(V, ok & (res < 1e-6), res, 0)

    def log_volume(self, Y) -> np.ndarray:
        """Log-volume of the metric in tangent coordinates (0: the sphere is isometric)."""
        return np.zeros(len(np.atleast_2d(Y)))
