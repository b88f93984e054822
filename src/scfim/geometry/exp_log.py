"""Exponential and logarithm maps under a learned metric on ``R^d`` (pure torch, no AnnData).

Geodesics solve ``c'' = −Γ(c)[c', c']``. :func:`exp_map` integrates this initial-value
problem by fixed-step RK4 on the metric's device (one batch for all tangent
vectors), with the acceleration of :meth:`~scfim.geometry.metric.Metric.acceleration`
(closed form for the LAND metric, automatic differentiation for any other metric).
:func:`log_map` solves the boundary-value problem ``Exp_μ(v) = x`` by damped Newton
shooting (Jacobian of Exp by batched finite differences; Broyden updates when a nearby
solution's Jacobian is given), restarts the unconverged ones from the minimum-energy
curve of :func:`~scfim.geometry.geodesic.energy_geodesic`, and *reports* what still
fails (mask and residuals); a failure is never replaced by a straight line.

Manifolds used by the maximum-likelihood fit of :mod:`scfim.models.land` expose
``tangent_dim``, ``exp(mu, V)``, ``log(mu, X, init=None, jacobian=None) -> LogResult``,
``log_volume(Y)`` (``log √det M`` in the tangent coordinates) and optionally
``metric_tensor(X)`` (``M`` in the tangent coordinates, where they are not orthonormal)
and ``project(x)`` (onto the data): :class:`MetricManifold` wraps any metric on ``R^d`` (tangent coordinates =
ambient coordinates), with cold Log maps started from shortest paths of a kNN graph
(:mod:`scfim.geometry.graph`). Manifolds with closed-form maps, which check the same
estimator against the truth, are in :mod:`scfim.geometry.known_manifolds`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .._threads import torch_threads
from .graph import (
    connect_components,
    metric_edge_lengths,
    path_nodes,
    resample_polyline,
    shortest_paths,
    symmetrize,
)
from .metric import Metric

__all__ = ["exp_map", "log_map", "LogResult", "MetricManifold"]

_DT = torch.float64


def _device(metric) -> torch.device:
    """The metric's torch device (the CPU for metrics that do not say)."""
    return torch.device(getattr(metric, "device", "cpu"))


def _t(a, device=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=_DT, device=device)


def _exp_tensor(metric: Metric, x0: torch.Tensor, v0: torch.Tensor, n_steps: int, path=False):
    """Exp of ``(B, d)`` tensors on the metric's device: end points, or the whole path.

    Fixed-step Runge–Kutta (the 3/8 rule, as ``torchdiffeq``'s ``"rk4"``) written out, so
    that no step waits for the host (``torchdiffeq`` reads its step count with ``.item()``
    at every call).
    """
    d = x0.shape[1]

    def f(y):
        x, v = y[:, :d], y[:, d:]
        return torch.cat([v, metric.acceleration(x, v)], dim=1)

    h = 1.0 / int(n_steps)
    with torch.no_grad():
        y = torch.cat([x0.expand_as(v0), v0], 1)
        out = [y[:, :d]] if path else None
        for _ in range(int(n_steps)):
            k1 = f(y)
            k2 = f(y + (h / 3.0) * k1)
            k3 = f(y + h * (k2 - k1 / 3.0))
            k4 = f(y + h * (k1 - k2 + k3))
            y = y + (k1 + 3.0 * (k2 + k3) + k4) * (h * 0.125)
            if path:
                out.append(y[:, :d])
    return torch.stack(out) if path else y[:, :d]


def exp_map(
    metric: Metric,
    start,
    velocity,
    *,
    n_steps: int = 16,
    return_path: bool = False,
):
    """Riemannian exponential map, batched: ``Exp_{start[i]}(velocity[i])``.

    Integrates ``(c, c')' = (c', −Γ(c)[c', c'])`` from ``t = 0`` to ``1`` by fixed-step
    RK4 (``n_steps`` steps of the 3/8 rule; smooth in the initial velocity, which the
    finite-difference Jacobians of :func:`log_map` need), on the
    metric's device (``metric.device``): the inputs are copied there once and the end
    points back once.

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
    dev = _device(metric)
    v0 = _t(np.atleast_2d(velocity), dev)
    x0 = _t(np.atleast_2d(start), dev)
    if x0.shape[0] == 1 and v0.shape[0] > 1:
        x0 = x0.expand_as(v0)
    if x0.shape != v0.shape:
        raise ValueError(f"start {tuple(x0.shape)} and velocity {tuple(v0.shape)} mismatch")
    n_steps = int(n_steps)
    if return_path:
        path = _exp_tensor(metric, x0, v0, n_steps, path=True).cpu().numpy()
        return path[-1], path
    return _exp_tensor(metric, x0, v0, n_steps).cpu().numpy()


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
    jacobian
        ``(B, k, k)`` (approximate) Jacobians of Exp at ``v``, to warm-start the next,
        nearby problem; None where the manifold has closed-form maps.
    """

    v: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    n_energy: int = 0
    jacobian: np.ndarray | None = None

    @property
    def n_failed(self) -> int:
        """Number of Log maps that did not converge."""
        return int((~self.converged).sum())


def _finite_or_inf(r: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(r), r, torch.full_like(r, float("inf")))


def _newton_shoot(
    metric,
    mu,
    X,
    V,
    *,
    n_steps,
    max_iter,
    tol,
    fd_eps,
    max_halvings=3,
    jacobian=None,
    broyden=False,
):
    """Damped (quasi-)Newton shooting on ``Exp_μ(v) − x = 0``, in torch on one device.

    ``mu`` ``(d,)``, ``X`` and ``V`` ``(B, d)`` and ``jacobian`` ``(B, d, d)`` are float64
    tensors on the metric's device; so are the returned ``(V, converged, residual, J)``:
    nothing is copied to the host inside the iterations. Newton: the Jacobian of Exp from
    forward finite differences evaluated in the same batch as each trial point
    (``(d + 1) B`` geodesics). Broyden (``broyden=True``, or a starting ``jacobian``,
    e.g. from the previous, nearby problem): the Jacobian (finite differences at the
    start unless given) is updated by a rank-one formula after each accepted step, so a
    trial costs one geodesic per target; a target whose step fails with such an
    approximate Jacobian gets a finite-difference one. Steps are halved until the
    residual drops; a target without any decrease even with a finite-difference Jacobian
    is given up (and reported).
    """
    B, d = X.shape
    dev = X.device
    eye = torch.eye(d, dtype=_DT, device=dev)

    def exp(Vb):
        return _exp_tensor(metric, mu[None], Vb, n_steps)

    def exp_and_jac(Vb):
        h = fd_eps * torch.linalg.vector_norm(Vb, dim=1).clamp(min=1.0)[:, None]  # (b, 1)
        batch = torch.cat([Vb[None], Vb[None] + h[None] * eye[:, None, :]]).reshape(-1, d)
        E = exp(batch).reshape(d + 1, Vb.shape[0], d)
        return E[0], (E[1:] - E[0][None]).permute(1, 2, 0) / h[:, :, None]

    thr = tol * torch.linalg.vector_norm(X - mu, dim=1).clamp(min=1.0)
    quasi = broyden or jacobian is not None
    if jacobian is None:
        Y, J = exp_and_jac(V)
        fresh = torch.ones(B, dtype=torch.bool, device=dev)
    else:
        Y = exp(V)
        J = jacobian.clone()
        fresh = torch.zeros(B, dtype=torch.bool, device=dev)
    F = Y - X
    res = _finite_or_inf(torch.linalg.vector_norm(F, dim=1))
    active = res > thr
    for _ in range(max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        Ji = J[idx]
        good = torch.isfinite(Ji).all(2).all(1)
        Jz = torch.where(good[:, None, None], Ji, eye)
        good &= torch.linalg.det(Jz).abs() > 1e-300
        Jz = torch.where(good[:, None, None], Jz, eye)
        step = -torch.linalg.solve(Jz, F[idx].unsqueeze(-1)).squeeze(-1)
        step = torch.where(good[:, None] & torch.isfinite(step), step, torch.zeros_like(step))
        lam = torch.ones(idx.numel(), dtype=_DT, device=dev)
        todo = torch.nonzero(good).flatten()
        for _h in range(max_halvings + 1):
            if todo.numel() == 0:
                break
            sub = idx[todo]
            Vt = V[sub] + lam[todo, None] * step[todo]
            if quasi:
                Yt = exp(Vt)
            else:
                Yt, Jt = exp_and_jac(Vt)
            Ft = Yt - X[sub]
            rt = _finite_or_inf(torch.linalg.vector_norm(Ft, dim=1))
            ok = rt < res[sub]
            acc = sub[ok]
            if quasi:
                dv = Vt[ok] - V[acc]
                corr = Ft[ok] - F[acc] - torch.einsum("bij,bj->bi", J[acc], dv)
                J[acc] += corr[:, :, None] * dv[:, None, :] / (dv * dv).sum(1)[:, None, None]
                fresh[acc] = False
            else:
                J[acc] = Jt[ok]
            V[acc], F[acc], res[acc] = Vt[ok], Ft[ok], rt[ok]
            todo = todo[~ok]
            lam[todo] *= 0.5
        failed = torch.cat([idx[todo], idx[~good]])
        stale = failed[~fresh[failed]]
        if stale.numel():  # approximate Jacobian: retry from a finite-difference one
            Y_s, J_s = exp_and_jac(V[stale])
            J[stale], F[stale], fresh[stale] = J_s, Y_s - X[stale], True
            res[stale] = torch.linalg.vector_norm(F[stale], dim=1)
        give_up = failed[fresh[failed] & ~torch.isin(failed, stale)]  # no decrease
        active[give_up] = False
        active &= res > thr
    return V, res <= thr, res, J


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
    jacobian: np.ndarray | None = None,
    broyden: bool = False,
    warn: bool = True,
) -> LogResult:
    """Riemannian logarithm ``Log_μ(x_i)`` for a batch of targets, by shooting.

    Damped Newton iterations on ``Exp_μ(v) = x`` (all targets at once; the Jacobian of Exp
    by forward finite differences in one batch of ``(d + 1) B`` geodesics). Targets that do
    not converge are restarted from the initial velocity of the minimum-energy curve
    (:func:`~scfim.geometry.geodesic.energy_geodesic`); those that still fail keep the best
    estimate found and are flagged in ``converged`` (and a warning is issued). The
    shooting runs on the metric's device (``metric.device``): the inputs are copied there
    once, the results back once.

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
    jacobian
        Optional ``(B, d, d)`` starting Jacobians of Exp (e.g. ``LogResult.jacobian`` of a
        nearby problem); they are updated by Broyden steps instead of being recomputed.
    broyden
        Broyden's method from a finite-difference Jacobian at the start (cheaper trials
        than Newton's; with a starting ``jacobian`` it is always used).
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
    if jacobian is not None and np.shape(jacobian) != (len(X), mu.size, mu.size):
        raise ValueError(f"jacobian must have shape {(len(X), mu.size, mu.size)}")
    dev = _device(metric)
    mu_t, X_t, V_t = _t(mu, dev), _t(X, dev), _t(V, dev)
    J0 = None if jacobian is None else _t(jacobian, dev)
    kw = {"n_steps": n_steps, "tol": tol, "fd_eps": fd_eps}
    V_t, ok, res, J = _newton_shoot(
        metric, mu_t, X_t, V_t, max_iter=max_iter, jacobian=J0, broyden=broyden, **kw
    )
    n_energy = 0
    if energy_fallback and not bool(ok.all()):
        from .geodesic import energy_geodesic

        bad_t = torch.nonzero(~ok).flatten()
        bad = bad_t.cpu().numpy()
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
        V0 = _t((energy_points - 1) * (g.paths[:, 1] - g.paths[:, 0]), dev)
        V1, ok1, res1, J1 = _newton_shoot(metric, mu_t, X_t[bad_t], V0, max_iter=max_iter, **kw)
        better = res1 < res[bad_t]
        nb = bad_t[better]
        V_t[nb], res[nb], J[nb] = V1[better], res1[better], J1[better]
        ok[bad_t] = ok1 | ok[bad_t]
    ok = ok.cpu().numpy()
    if warn and not ok.all():
        warnings.warn(
            f"log_map: {int((~ok).sum())} of {len(ok)} boundary-value problems did not "
            "converge; their best estimates are flagged in LogResult.converged",
            RuntimeWarning,
            stacklevel=2,
        )
    return LogResult(V_t.cpu().numpy(), ok, res.cpu().numpy(), n_energy, J.cpu().numpy())


# --------------------------------------------------------------------------- manifolds
class MetricManifold:
    """``R^d`` with a :class:`~scfim.geometry.metric.Metric`; tangent coordinates = ``R^d``.

    The maps run on the metric's device (``metric.device``; e.g. a
    :class:`~scfim.geometry.land.LocalCovarianceMetric` built with ``device="cuda"``):
    each call copies its inputs there once and its results back once.

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
        Broyden iterations of warm-started Log maps (``init`` given, as in the EM loop);
        these skip the energy-solver restart; a target they miss is solved again as a
        cold one (graph path start, energy restart), and flagged if that fails too.
    num_threads
        Torch intra-op threads while the maps run (None leaves torch's setting). The
        default 1: each operation is small (a batch of targets against at most a few
        thousand reference points), and with two threads the kernel-width pilot of a
        640-cell data set took 10× the CPU time and 7–12× the wall time on a busy 2-core
        machine (87 s instead of 7–12 s).
    log_kwargs
        Passed to :func:`log_map`; by default cold solves use Broyden's method
        (``broyden=True``, ``max_iter=30``: a trial costs one geodesic per target instead
        of ``d + 1``).
    """

    def __init__(
        self,
        metric: Metric,
        *,
        graph_data: np.ndarray | None = None,
        n_neighbors: int = 10,
        n_steps: int = 16,
        warm_max_iter: int = 12,
        num_threads: int | None = 1,
        **log_kwargs,
    ) -> None:
        self.metric = metric
        self.num_threads = num_threads
        self.tangent_dim = metric.dim
        self.ambient_dim = metric.dim
        self.n_steps = int(n_steps)
        self.log_kwargs = {"warn": False, "broyden": True, "max_iter": 30, **log_kwargs}
        self.warm_max_iter = int(warm_max_iter)
        self._graph = None
        if graph_data is not None:
            with torch_threads(self.num_threads):
                self._build_graph(np.asarray(graph_data, dtype=np.float64), int(n_neighbors))

    def _build_graph(self, Z: np.ndarray, k: int) -> None:
        from scipy.spatial import cKDTree

        tree = cKDTree(Z)
        k = min(k, len(Z) - 1)
        _, nb = tree.query(Z, k=k + 1)
        rows = np.repeat(np.arange(len(Z)), k)
        pattern = sp.csr_matrix(
            (np.ones(rows.size), (rows, nb[:, 1:].reshape(-1))), shape=(len(Z), len(Z))
        )
        G = metric_edge_lengths(symmetrize(pattern), Z, self.metric)
        # join disconnected pieces by their closest pairs, so every target has a path
        G = connect_components(G, Z, weight=self._seg_lengths)
        self._graph = (Z, tree, G)

    def _seg_lengths(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Metric length of straight segments (midpoint rule)."""
        with torch.no_grad():
            dev = _device(self.metric)
            q = self.metric.inner(_t(0.5 * (A + B), dev), _t(B - A, dev))
        return np.sqrt(np.clip(q.double().cpu().numpy(), 0.0, None))

    def graph_paths(self, mu, X, hops: int = 3, full: bool = False):
        """Graph shortest paths from ``mu`` to ``X``: (initial velocities, polylines).

        The velocity points to the ``hops``-th vertex of the path and its length is the
        metric length of the path (straight ``x − μ`` where the graph gives nothing).
        """
        Z, tree, G = self._graph
        s = int(tree.query(mu)[1])
        dist, pred = shortest_paths(G, s, return_predecessors=True)
        dist, pred = dist[0], pred[0]
        _, tgt = tree.query(X)
        V = X - mu
        paths: list = [None] * len(X)
        heads, lengths, rows = [], [], []
        for i, t in enumerate(tgt):
            if not np.isfinite(dist[t]):
                continue
            nodes = path_nodes(pred, s, int(t))
            if nodes is None or len(nodes) < 3:
                continue
            P = np.vstack([mu, Z[nodes[1:-1]], X[i]])
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
        with torch_threads(self.num_threads):
            return exp_map(self.metric, mu, V, n_steps=self.n_steps)

    def metric_tensor(self, X) -> np.ndarray:
        """Metric tensors ``M(x)`` at points ``X`` (B, d), shape ``(B, d, d)``."""
        with torch_threads(self.num_threads), torch.no_grad():
            G = self.metric.metric(_t(np.atleast_2d(X), _device(self.metric)))
            return G.double().cpu().numpy()

    def project(self, x, *, n_neighbors: int | None = None, var_frac: float = 0.95):
        """Project points onto the data: the local principal subspace of their neighbours.

        For each point, the affine span of the leading principal directions (those
        explaining ``var_frac`` of the variance) of its ``n_neighbors`` nearest data
        points (default ``max(15, 2d + 2)``), recentred twice. Without ``graph_data``
        the points are returned unchanged.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64)).copy()
        if self._graph is None:
            return x
        Z, tree, _ = self._graph
        d = Z.shape[1]
        k = min(len(Z), max(15, 2 * d + 2) if n_neighbors is None else int(n_neighbors))
        for _ in range(2):
            _, nb = tree.query(x, k=k)
            for i in range(len(x)):
                P = Z[nb[i]]
                m = P.mean(0)
                w, U = np.linalg.eigh((P - m).T @ (P - m))
                w, U = w[::-1], U[:, ::-1]
                r = int(np.searchsorted(np.cumsum(w) / max(w.sum(), 1e-300), var_frac) + 1)
                Ur = U[:, : min(r, d)]
                x[i] = m + Ur @ (Ur.T @ (x[i] - m))
        return x

    def log(self, mu, X, init=None, jacobian=None, progress=None) -> LogResult:
        """``Log_μ(X)`` with failures flagged.

        ``init`` and ``jacobian`` warm-start the shooting (e.g. from the previous EM
        iteration); warm solves are cheap quasi-Newton ones without energy restarts, and
        the targets they miss are solved again from the graph paths. ``progress``, if given, is called with the number of targets solved (or given up)
        after each batch: cold solves proceed in waves (:meth:`_log_waves`).
        """
        mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        with torch_threads(self.num_threads):
            if init is None and self._graph is not None:
                return self._log_waves(mu, X, progress=progress)
            kw = dict(self.log_kwargs)
            if init is not None:  # warm start (the previous EM iteration): cheap solves only
                kw.setdefault("energy_fallback", False)
                kw["max_iter"] = min(int(kw["max_iter"]), self.warm_max_iter)
            r = log_map(
                self.metric, mu, X, init=init, jacobian=jacobian, n_steps=self.n_steps, **kw
            )
            if init is not None and self._graph is not None and not r.converged.all():
                r = self._retry_cold(mu, X, r)
        if progress is not None:
            progress(len(X))
        return r

    def _retry_cold(self, mu, X, r: LogResult) -> LogResult:
        """Solve the targets a warm start missed again from the graph (:meth:`_log_waves`).

        A warm start from the previous base point can be far off for a target on the
        other side of a bend; its unsolved Log would then enter a likelihood with an
        arbitrary value. The better residual of the two solves is kept.
        """
        bad = np.flatnonzero(~r.converged)
        r2 = self._log_waves(mu, X[bad])
        better = r2.residual < r.residual[bad]
        V, ok, res = r.v.copy(), r.converged.copy(), r.residual.copy()
        J = None if r.jacobian is None else r.jacobian.copy()
        idx = bad[better]
        V[idx], ok[idx], res[idx] = r2.v[better], r2.converged[better], r2.residual[better]
        if J is not None:
            J[idx] = r2.jacobian[better]
        return LogResult(V, ok, res, r.n_energy + r2.n_energy, J)

    def _log_waves(self, mu, X, n_waves: int = 4, progress=None) -> LogResult:
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
        J = np.full((len(X), X.shape[1], X.shape[1]), np.nan)
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
            V[idx], ok[idx], res[idx], J[idx] = r.v, r.converged, r.residual, r.jacobian
            n_energy += r.n_energy
            for i in idx[r.converged]:
                node_sol.setdefault(int(tgt[i]), int(i))
            if progress is not None:
                progress(idx.size)
        return LogResult(V, ok, res, n_energy, J)

    def log_volume(self, Y) -> np.ndarray:
        """``log √det M(y)``, ``(B,)``."""
        with torch_threads(self.num_threads), torch.no_grad():
            lv = self.metric.log_volume(_t(np.atleast_2d(Y), _device(self.metric)))
            return lv.double().cpu().numpy()
