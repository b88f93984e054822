"""Point clouds with known curvature sign for the curvature benchmarks.

Every generator returns ``(n, d + c)`` points whose observation 0 is the reference point
(the pole of a cap, the centre of a saddle or disc, the origin of a random surface), so
that the sign of the curvature there is known. Sampling schemes of a chart ``u`` (the
d-ball of the given radius):

* ``"surface"``: uniform with respect to the surface measure (rejection on the area
  element);
* ``"chart"``: uniform in the chart;
* ``"gauss"``: Gaussian in the chart (sd half the chart radius), truncated to it;
* ``"density"``: uniform in the chart times a linear gradient ``1 + 0.8 u_0 / r``.
"""

from __future__ import annotations

import numpy as np

SCHEMES = ("surface", "chart", "gauss", "density")


def _ball(m: int, d: int, rng: np.random.Generator, r: float) -> np.ndarray:
    v = rng.normal(size=(m, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * r * rng.uniform(size=(m, 1)) ** (1.0 / d)


def chart_sample(n, d, rng, scheme, r=1.0, area=None) -> np.ndarray:
    """``n`` chart points (the first is the origin) in the d-ball of radius ``r``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown sampling scheme {scheme!r}")
    out, have = [], 0
    while have < n - 1:
        m = 4 * n
        if scheme == "gauss":
            u = rng.normal(scale=0.5 * r, size=(m, d))
            u = u[np.linalg.norm(u, axis=1) < r]
        else:
            u = _ball(m, d, rng, r)
        if scheme == "surface" and area is not None:
            a = area(u)
            u = u[rng.uniform(size=len(u)) < a / a.max()]
        if scheme == "density":
            u = u[rng.uniform(size=len(u)) < (1 + 0.8 * u[:, 0] / r) / 1.8]
        out.append(u)
        have += len(u)
    return np.vstack([np.zeros((1, d)), np.concatenate(out)[: n - 1]])


def saddle(n, d, rng, scheme="chart", scale=1.0) -> np.ndarray:
    """``z = scale Σ_j (−1)^j u_j²`` over the unit d-ball: scalar curvature < 0 at u = 0."""
    sgn = np.array([(-1.0) ** j for j in range(d)])

    def area(u):
        return np.sqrt(1 + ((2 * scale * u * sgn) ** 2).sum(1))

    u = chart_sample(n, d, rng, scheme, 1.0, area)
    return np.column_stack([u, scale * (u**2 * sgn).sum(1)])


def plane(n, d, rng, scheme="chart") -> np.ndarray:
    """Flat unit d-disc (curvature 0; ``"surface"`` is ``"chart"``)."""
    u = chart_sample(n, d, rng, "chart" if scheme == "surface" else scheme, 1.0)
    return np.column_stack([u, np.zeros(n)])


def cap(n, d, rng, scheme="surface", theta=np.pi / 3) -> np.ndarray:
    """Cap of the unit d-sphere within angle ``theta`` of the pole, chart = tangent plane."""
    r = np.sin(theta)

    def area(u):
        return 1.0 / np.sqrt(np.clip(1 - (u**2).sum(1), 1e-12, None))

    u = chart_sample(n, d, rng, scheme, r, area)
    return np.column_stack([u, np.sqrt(1 - (u**2).sum(1))])


def full_sphere(n, d, rng, scheme="surface") -> np.ndarray:
    """The whole unit d-sphere: uniform (``"surface"``) or with density ∝ 1 + 0.8 x₀."""
    out, have = [], 0
    while have < n:
        v = rng.normal(size=(4 * n, d + 1))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        if scheme == "density":
            v = v[rng.uniform(size=len(v)) < (1 + 0.8 * v[:, 0]) / 1.8]
        out.append(v)
        have += len(v)
    return np.concatenate(out)[:n]


def random_surface(n, d, codim, rng, noise=0.0) -> tuple[np.ndarray, float]:
    """Random quadratic graph over ``[-1, 1]^d`` and its scalar curvature at the origin.

    Each of the ``codim`` normal coordinates is ``f_a(u) = Σ_{i≤j} c_ij u_i u_j`` with
    ``c_ij ~ N(0, 1)``; points are uniform with respect to the surface measure (rejection
    on ``sqrt det(I + JᵀJ)``), observation 0 is the origin, and isotropic Gaussian noise
    of sd ``noise`` is added to every coordinate of every point. The scalar curvature at
    the origin follows from Gauss's equation with the Hessians ``H_a`` (the second
    fundamental form there): ``S = Σ_a (tr H_a)² − ‖H_a‖²`` (twice the Gaussian
    curvature when d = 2).
    """
    iu = np.triu_indices(d)
    H = np.zeros((codim, d, d))
    for a in range(codim):
        c = np.zeros((d, d))
        c[iu] = rng.normal(size=len(iu[0]))
        H[a] = c + c.T  # Hessian of Σ_{i≤j} c_ij u_i u_j
    S = float(sum(np.trace(h) ** 2 - np.sum(h * h) for h in H))

    def area(u):
        J = np.einsum("aij,mj->mai", H, u)  # ∂f_a/∂u_i = (H_a u)_i
        G = np.eye(d) + np.einsum("mai,maj->mij", J, J)
        return np.sqrt(np.linalg.det(G))

    out, have = [], 0
    while have < n - 1:
        u = rng.uniform(-1, 1, size=(4 * n, d))
        a = area(u)
        u = u[rng.uniform(size=len(u)) < a / a.max()]
        out.append(u)
        have += len(u)
    u = np.vstack([np.zeros((1, d)), np.concatenate(out)[: n - 1]])
    f = 0.5 * np.einsum("mi,aij,mj->ma", u, H, u)
    X = np.column_stack([u, f])
    if noise > 0:
        X = X + rng.normal(scale=noise, size=X.shape)
    return X, S
