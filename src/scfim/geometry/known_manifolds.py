"""Manifolds with closed-form Exp and Log maps (NumPy; no AnnData).

:class:`SphereManifold` is the unit sphere ``S^{D−1} ⊂ R^D`` with the great-circle maps,
tangent coordinates in the orthonormal frame of :func:`sphere_frame`. It follows the
manifold protocol of :mod:`scfim.geometry.exp_log` (``exp``, ``log``, ``log_volume``,
``project``, ``tangent_dim``), so the LAND estimator of :mod:`scfim.models.land` can be run
on the exact geometry and checked against the truth.
"""

from __future__ import annotations

import math

import numpy as np

from .exp_log import LogResult

__all__ = ["SphereManifold", "sphere_frame"]


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
    def project(x, **kwargs) -> np.ndarray:
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

    def log(self, mu, X, init=None, jacobian=None, progress=None) -> LogResult:
        """Logarithm map at ``mu`` of the points ``X`` (closed form).

        ``init`` and ``jacobian`` are unused; ``progress`` is called once with the number
        of points.
        """
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
        if progress is not None:
            progress(len(X))
        return LogResult(V, ok & (res < 1e-6), res, 0)

    def log_volume(self, Y) -> np.ndarray:
        """Log-volume of the metric in tangent coordinates (0: the sphere is isometric)."""
        return np.zeros(len(np.atleast_2d(Y)))
