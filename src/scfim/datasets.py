"""Offline toy and real data sets, returned as :class:`anndata.AnnData`.

Every generator is deterministic given ``random_state`` (an ``int`` seed, or ``None`` for
fresh entropy; it is passed to :func:`numpy.random.default_rng`), stores its points in a
``float32`` ``X`` and names observations ``"cell_0"``, ``"cell_1"``, ... and variables
``"dim_0"``, ``"dim_1"``, ...  Ground truth (branch labels, angles, intrinsic coordinates,
...) is stored in ``obs`` / ``obsm`` / ``uns`` so that tests can compare learned geometry
with the truth.

Data sets
---------
:func:`tree`
    Branching random-walk tree (our own generator in the spirit of
    ``phate.tree.gen_dla``; :mod:`phate` is *not* required).
:func:`sphere`
    Uniform points on a round sphere of any dimension.
:func:`swiss_roll`
    The Swiss roll, with its exact arc length (:func:`swiss_roll_arclength`).
:func:`plane`, :func:`saddle`, :func:`torus`
    Patches of surfaces of zero, negative and positive curvature at a known centre point,
    which is always observation 0.
:func:`pbmc68k_reduced`
    The small PBMC data set that ships with scanpy (offline).
:func:`ipsc`
    iPSC reprogramming mass cytometry (Zunder et al. 2015), downloaded once and cached
    (needs the optional dependency pooch).
"""

from __future__ import annotations

import math
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

__all__ = [
    "tree",
    "sphere",
    "swiss_roll",
    "swiss_roll_arclength",
    "plane",
    "saddle",
    "torus",
    "pbmc68k_reduced",
    "ipsc",
]

# Parents are attached in the middle of their branch only, so that no branch point lies
# near a free end of a branch (branch points and tips never overlap).
_ATTACH_RANGE = (0.2, 0.8)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _to_anndata(
    X: np.ndarray,
    obs: dict[str, np.ndarray] | None = None,
    obsm: dict[str, np.ndarray] | None = None,
    uns: dict | None = None,
) -> ad.AnnData:
    X = np.ascontiguousarray(X, dtype=np.float32)
    n_obs, n_vars = X.shape
    obs_names = pd.Index([f"cell_{i}" for i in range(n_obs)])
    var_names = pd.Index([f"dim_{j}" for j in range(n_vars)])
    obs_df = pd.DataFrame(obs if obs is not None else {}, index=obs_names)
    adata = ad.AnnData(X=X, obs=obs_df, var=pd.DataFrame(index=var_names))
    for key, value in (obsm or {}).items():
        adata.obsm[key] = np.asarray(value)
    if uns:
        adata.uns.update(uns)
    return adata


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _add_noise(X: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    noise = _check_nonnegative("noise", noise)
    if noise > 0:
        X = X + rng.normal(0.0, noise, size=X.shape)
    return X


def _ball_with_centre(
    n_obs: int, n_dim: int, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """``n_obs`` points of the closed ``n_dim``-ball of ``radius``; row 0 is the centre.

    Rows 1.. are uniform in the ball (w.r.t. Lebesgue measure of the coordinates).
    """
    u = np.zeros((n_obs, n_dim))
    if n_obs > 1:
        direction = rng.normal(size=(n_obs - 1, n_dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        r = radius * rng.uniform(size=(n_obs - 1, 1)) ** (1.0 / n_dim)
        u[1:] = r * direction
    return u


# --------------------------------------------------------------------------------------
# tree
# --------------------------------------------------------------------------------------


def tree(
    n_obs: int = 3000,
    n_dim: int = 100,
    n_branches: int = 5,
    branch_length: float | None = None,
    noise: float = 0.2,
    random_state: int | None = 0,
    *,
    branch_point_window: float = 0.02,
    tip_window: float = 0.05,
) -> ad.AnnData:
    """Branching random-walk tree, in the spirit of ``phate.tree.gen_dla``.

    Each branch is a Gaussian random walk (a cumulative sum of i.i.d. isotropic Gaussian
    steps) in ``n_dim`` dimensions, i.e. a continuous 1-D curve.  Branch 0 starts at the
    origin; branch ``b > 0`` picks a parent uniformly among the branches ``0..b-1`` and
    starts at a random cell of it, drawn uniformly among the parent cells whose
    ``branch_position`` lies in ``[0.2, 0.8]`` (so branch points are never near the end of
    a branch).  Each cell is one step of its walk; finally isotropic Gaussian noise of
    standard deviation ``noise`` (per coordinate) is added to every cell.

    Parameters
    ----------
    n_obs
        Number of cells.  They are split as evenly as possible between the branches (the
        first ``n_obs % n_branches`` branches get one cell more); every branch needs at
        least 3 cells.
    n_dim
        Ambient dimension.
    n_branches
        Number of branches (``n_branches - 1`` branch points).
    branch_length
        Root-mean-square Euclidean distance between the first and the last point of a
        (noise-free) branch; the step standard deviation per coordinate is
        ``branch_length / sqrt(n_cells_in_branch * n_dim)``, so the geometry does not
        depend on ``n_obs`` (which only sets the sampling density).  ``None`` means
        ``sqrt(n_dim)``: every coordinate moves by about 1 along a branch, so the ratio of
        noise to branch length is ``noise`` whatever ``n_dim`` is.
    noise
        Standard deviation of the isotropic Gaussian noise added to each coordinate.  The
        default 0.2 keeps branches well separated (noise norm ``0.2 sqrt(n_dim)`` against a
        branch length ``sqrt(n_dim)``) while giving k-NN graphs enough width that PHATE
        draws a clean tree; much smaller noise makes the k-NN graph a thin chain.
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.
    branch_point_window
        Width, as a fraction of a branch, of the window of cells marked as branch points
        around each attachment; see Notes.  Must satisfy
        ``branch_point_window / 2 + tip_window < 0.2``.
    tip_window
        Fraction of a branch marked as tip at each free end; see Notes.

    Returns
    -------
    AnnData
        ``n_obs x n_dim`` with

        ``obs["branch"]``
            Categorical branch label ``"0"``, ``"1"``, ...; cells are ordered by branch
            and, within a branch, along the walk.
        ``obs["branch_position"]``
            Position along its own branch, ``i / (m - 1)`` for the ``i``-th of the ``m``
            cells of the branch (0 at its start, 1 at its free end).
        ``obs["is_branch_point"]``
            Boolean, cells near a point where a branch attaches to its parent.
        ``obs["is_branch_tip"]``
            Boolean, cells near a free end (leaf) of the tree.
        ``uns["tree"]``
            ``{"parent": int array (-1 for branch 0), "attach_position": float array
            (branch_position on the parent where each branch starts; NaN for branch 0)}``.

    Notes
    -----
    Branch points.  Suppose branch ``c`` attaches to its parent ``p`` at the parent cell
    with ``branch_position == a``; the first cell of ``c`` is that parent cell plus one
    random-walk step.  With ``h = branch_point_window / 2`` the cells marked
    ``is_branch_point`` for this junction are

    * the cells of ``p`` with ``|branch_position - a| <= h`` (a window of about
      ``branch_point_window`` of the parent's cells, centred on the junction; it always
      contains the attachment cell itself), and
    * the cells of ``c`` with ``branch_position <= h`` (its first ``h`` fraction; always
      contains its first cell).

    So each of the three arms meeting at the junction contributes the cells within a
    fraction ``h`` of a branch of the junction.

    Tips.  The free ends of the tree are the end of every branch (no branch attaches
    beyond ``branch_position`` 0.8) and the start of branch 0 (no branch attaches before
    0.2).  ``is_branch_tip`` marks the cells with ``branch_position >= 1 - tip_window``
    on every branch, and the cells of branch 0 with ``branch_position <= tip_window``.
    Tips and branch points never overlap.

    In high dimension the branches are nearly orthogonal random walks, so in 2-D
    embeddings (PHATE included, exactly as for ``phate.tree.gen_dla``) branches may be
    drawn curled, with tips towards the middle and junctions on the outside; the topology
    (every branch a continuous curve meeting its parent at one point) is preserved.

    Examples
    --------
    >>> adata = tree(n_obs=600, n_dim=20, n_branches=3)
    >>> adata.shape
    (600, 20)
    >>> adata.obs["branch"].cat.categories.tolist()
    ['0', '1', '2']
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    n_dim = _check_positive_int("n_dim", n_dim)
    n_branches = _check_positive_int("n_branches", n_branches)
    if n_obs < 3 * n_branches:
        raise ValueError(
            f"n_obs={n_obs} is too small for {n_branches} branches (need >= 3 per branch)"
        )
    length = math.sqrt(n_dim) if branch_length is None else float(branch_length)
    if not np.isfinite(length) or length <= 0:
        raise ValueError(f"branch_length must be > 0, got {branch_length!r}")
    noise = _check_nonnegative("noise", noise)
    h = _check_nonnegative("branch_point_window", branch_point_window) / 2
    tip_window = _check_nonnegative("tip_window", tip_window)
    if h + tip_window >= _ATTACH_RANGE[0]:
        raise ValueError(
            "branch_point_window / 2 + tip_window must be < 0.2 so that branch points "
            "and tips do not overlap"
        )

    rng = np.random.default_rng(random_state)
    sizes = np.full(n_branches, n_obs // n_branches)
    sizes[: n_obs % n_branches] += 1

    paths: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    parent = np.full(n_branches, -1, dtype=np.int64)
    attach_position = np.full(n_branches, np.nan)
    for b, m in enumerate(sizes):
        steps = rng.normal(0.0, length / math.sqrt(m * n_dim), size=(m, n_dim))
        if b == 0:
            start = np.zeros(n_dim)
        else:
            p = int(rng.integers(b))
            m_p = sizes[p]
            lo = math.ceil(_ATTACH_RANGE[0] * (m_p - 1))
            hi = math.floor(_ATTACH_RANGE[1] * (m_p - 1))
            idx = int(rng.integers(lo, hi + 1))  # lo <= hi as every branch has >= 3 cells
            parent[b] = p
            attach_position[b] = idx / (m_p - 1)
            start = paths[p][idx]
        paths.append(start + np.cumsum(steps, axis=0))
        positions.append(np.arange(m) / (m - 1))

    X = _add_noise(np.concatenate(paths), noise, rng)
    branch = np.repeat(np.arange(n_branches), sizes)
    position = np.concatenate(positions)

    # tolerance for floating point in the window comparisons
    eps = 1e-9
    is_branch_point = np.zeros(n_obs, dtype=bool)
    for c in range(1, n_branches):
        on_parent = (branch == parent[c]) & (np.abs(position - attach_position[c]) <= h + eps)
        on_child = (branch == c) & (position <= h + eps)
        is_branch_point |= on_parent | on_child
    is_branch_tip = position >= 1 - tip_window - eps
    is_branch_tip |= (branch == 0) & (position <= tip_window + eps)

    labels = pd.Categorical(branch.astype(str), categories=[str(b) for b in range(n_branches)])
    return _to_anndata(
        X,
        obs={
            "branch": labels,
            "branch_position": position.astype(np.float64),
            "is_branch_point": is_branch_point,
            "is_branch_tip": is_branch_tip,
        },
        uns={"tree": {"parent": parent, "attach_position": attach_position}},
    )


# --------------------------------------------------------------------------------------
# sphere
# --------------------------------------------------------------------------------------


def sphere(
    n_obs: int = 2000,
    n_dim: int = 2,
    radius: float = 1.0,
    noise: float = 0.0,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Points uniform on the round ``n_dim``-sphere of ``radius`` in ``R^(n_dim + 1)``.

    Points are normalised standard Gaussian vectors (uniform w.r.t. surface measure),
    scaled by ``radius``; then isotropic Gaussian noise is added.

    Parameters
    ----------
    n_obs
        Number of points.
    n_dim
        Intrinsic dimension of the sphere (2 is the ordinary sphere in ``R^3``, 1 a
        circle).
    radius
        Radius; the Gaussian curvature of the 2-sphere is ``1 / radius**2``.
    noise
        Standard deviation of the isotropic Gaussian noise added to every coordinate.
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.

    Returns
    -------
    AnnData
        ``n_obs x (n_dim + 1)``.  For ``n_dim == 2`` also ``obs["theta"]`` (polar angle
        from the ``+z`` axis, in ``[0, pi]``) and ``obs["psi"]`` (azimuth in the ``x-y``
        plane from ``+x``, in ``[0, 2 pi)``), computed from the noise-free points, so that
        ``x = r sin(theta) cos(psi)``, ``y = r sin(theta) sin(psi)``,
        ``z = r cos(theta)``.

    Examples
    --------
    >>> sphere(n_obs=100).shape
    (100, 3)
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    n_dim = _check_positive_int("n_dim", n_dim)
    radius = float(radius)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    rng = np.random.default_rng(random_state)
    Z = rng.normal(size=(n_obs, n_dim + 1))
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    while np.any(norms == 0):  # probability zero, but never divide by 0
        bad = norms[:, 0] == 0
        Z[bad] = rng.normal(size=(int(bad.sum()), n_dim + 1))
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
    U = Z / norms
    obs = {}
    if n_dim == 2:
        obs["theta"] = np.arccos(np.clip(U[:, 2], -1.0, 1.0))
        obs["psi"] = np.mod(np.arctan2(U[:, 1], U[:, 0]), 2 * np.pi)
    X = _add_noise(radius * U, noise, rng)
    return _to_anndata(X, obs=obs)


# --------------------------------------------------------------------------------------
# swiss roll
# --------------------------------------------------------------------------------------


def swiss_roll_arclength(t):
    """Exact arc length of the planar spiral ``(t cos t, t sin t)`` from 0 to ``t``.

    The spiral has speed ``sqrt(1 + t**2)``, so

    ``s(t) = (t sqrt(t**2 + 1) + asinh(t)) / 2``.

    Parameters
    ----------
    t
        Scalar or array of curve parameters.  For ``t < 0`` the result is the signed
        (negative) arc length, since ``s`` is odd.

    Returns
    -------
    float or numpy.ndarray
        Arc length(s), same shape as ``t``.

    Examples
    --------
    >>> round(float(swiss_roll_arclength(0.0)), 6)
    0.0
    """
    t = np.asarray(t, dtype=np.float64)
    s = 0.5 * (t * np.sqrt(t * t + 1.0) + np.arcsinh(t))
    return s if s.ndim else float(s)


def _swiss_roll_inverse_arclength(s: np.ndarray, t_lo: float, t_hi: float) -> np.ndarray:
    """Invert :func:`swiss_roll_arclength` on ``[t_lo, t_hi]`` (monotone)."""
    grid = np.linspace(t_lo, t_hi, 4097)
    t = np.interp(s, swiss_roll_arclength(grid), grid)
    for _ in range(3):  # Newton steps; s'(t) = sqrt(1 + t^2) >= 1
        t = t - (swiss_roll_arclength(t) - s) / np.sqrt(1.0 + t * t)
    return np.clip(t, t_lo, t_hi)


def swiss_roll(
    n_obs: int = 2000,
    noise: float = 0.0,
    t_range: tuple[float, float] = (1.5 * np.pi, 4.5 * np.pi),
    height: float = 21.0,
    sampling: Literal["t", "arclength"] = "t",
    random_state: int | None = 0,
) -> ad.AnnData:
    """The Swiss roll ``(t cos t, h, t sin t)``.

    Parameters
    ----------
    n_obs
        Number of points.
    noise
        Standard deviation of the isotropic Gaussian noise added to every coordinate.
    t_range
        Range of the spiral parameter ``t``.  The default matches
        :func:`sklearn.datasets.make_swiss_roll`.
    height
        ``h`` is uniform in ``[0, height]`` (as in scikit-learn).
    sampling
        ``"t"``: ``t`` uniform in ``t_range`` (scikit-learn's convention; points are
        denser on the inner turns).  ``"arclength"``: arc length uniform, i.e. points
        uniform w.r.t. the area of the (flat) roll.
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.

    Returns
    -------
    AnnData
        ``n_obs x 3`` (columns ``x, y, z`` = ``t cos t, h, t sin t``) with ``obs["t"]``,
        ``obs["height"]``, ``obs["arclength"]`` (:func:`swiss_roll_arclength` of ``t``)
        and ``obsm["intrinsic"] = [arclength, height]``: the roll is flat and these are
        isometric coordinates, so geodesic distances on the roll are Euclidean distances
        in ``obsm["intrinsic"]``.

    Examples
    --------
    >>> swiss_roll(n_obs=50).shape
    (50, 3)
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    t_lo, t_hi = (float(v) for v in t_range)
    if not t_lo < t_hi:
        raise ValueError(f"t_range must be increasing, got {t_range!r}")
    height = _check_nonnegative("height", height)
    rng = np.random.default_rng(random_state)
    if sampling == "t":
        t = rng.uniform(t_lo, t_hi, size=n_obs)
    elif sampling == "arclength":
        s = rng.uniform(swiss_roll_arclength(t_lo), swiss_roll_arclength(t_hi), n_obs)
        t = _swiss_roll_inverse_arclength(s, t_lo, t_hi)
    else:
        raise ValueError(f"sampling must be 't' or 'arclength', got {sampling!r}")
    h = rng.uniform(0.0, height, size=n_obs)
    X = np.column_stack([t * np.cos(t), h, t * np.sin(t)])
    X = _add_noise(X, noise, rng)
    s = swiss_roll_arclength(t)
    return _to_anndata(
        X,
        obs={"t": t, "height": h, "arclength": s},
        obsm={"intrinsic": np.column_stack([s, h])},
    )


# --------------------------------------------------------------------------------------
# surface patches with a centre point: plane, saddle, torus
# --------------------------------------------------------------------------------------


def _check_radius(radius: float) -> float:
    radius = float(radius)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius!r}")
    return radius


def plane(
    n_obs: int = 1000,
    n_dim: int = 2,
    radius: float = 1.0,
    noise: float = 0.0,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Flat ``n_dim``-disc embedded as ``z = 0`` in ``R^(n_dim + 1)``.

    The zero-curvature control for :func:`saddle`.  Intrinsic coordinates ``u`` are
    uniform in the ``n_dim``-ball of ``radius`` around the origin, and **observation 0 is
    the centre** ``u = 0`` (tests evaluate curvature there); the point is ``(u, 0)``.

    Parameters
    ----------
    n_obs
        Number of points, including the centre.
    n_dim
        Intrinsic dimension.
    radius
        Radius of the disc in intrinsic coordinates.
    noise
        Standard deviation of the isotropic Gaussian noise added to every coordinate of
        every point (the centre included).
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.

    Returns
    -------
    AnnData
        ``n_obs x (n_dim + 1)`` with ``obsm["intrinsic"]`` (``u``, ``n_obs x n_dim``) and
        ``obs["r"] = |u|``.

    Examples
    --------
    >>> adata = plane(n_obs=10)
    >>> adata.shape, float(abs(adata.X[0]).max())
    ((10, 3), 0.0)
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    n_dim = _check_positive_int("n_dim", n_dim)
    radius = _check_radius(radius)
    rng = np.random.default_rng(random_state)
    u = _ball_with_centre(n_obs, n_dim, radius, rng)
    X = np.column_stack([u, np.zeros(n_obs)])
    X = _add_noise(X, noise, rng)
    return _to_anndata(X, obs={"r": np.linalg.norm(u, axis=1)}, obsm={"intrinsic": u})


def saddle(
    n_obs: int = 1000,
    n_dim: int = 2,
    radius: float = 1.0,
    scale: float = 1.0,
    noise: float = 0.0,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Saddle graph ``z = scale * sum_j (-1)**j u_j**2`` in ``R^(n_dim + 1)``.

    Intrinsic coordinates ``u = (u_0, ..., u_{n_dim-1})`` are uniform in the
    ``n_dim``-ball of ``radius`` around the origin (uniform in ``u``, not exactly w.r.t.
    surface area), and **observation 0 is the centre** ``u = 0`` (tests evaluate
    curvature there); the point is ``(u, z(u))``.  For ``n_dim = 2`` this is
    ``z = scale (u_0**2 - u_1**2)``, whose Gaussian curvature at the centre is
    ``-4 scale**2`` (the tangent plane there is ``z = 0`` and ``u`` are normal
    coordinates to first order).

    Parameters
    ----------
    n_obs
        Number of points, including the centre.
    n_dim
        Intrinsic dimension.
    radius
        Radius of the ball of intrinsic coordinates.
    scale
        Amplitude of the quadratic form.
    noise
        Standard deviation of the isotropic Gaussian noise added to every coordinate of
        every point (the centre included).
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.

    Returns
    -------
    AnnData
        ``n_obs x (n_dim + 1)`` with ``obsm["intrinsic"]`` (``u``) and ``obs["r"] = |u|``.

    Examples
    --------
    >>> adata = saddle(n_obs=10)
    >>> adata.shape, float(abs(adata.X[0]).max())
    ((10, 3), 0.0)
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    n_dim = _check_positive_int("n_dim", n_dim)
    radius = _check_radius(radius)
    rng = np.random.default_rng(random_state)
    u = _ball_with_centre(n_obs, n_dim, radius, rng)
    signs = (-1.0) ** np.arange(n_dim)
    z = float(scale) * (u**2 @ signs)
    X = _add_noise(np.column_stack([u, z]), noise, rng)
    return _to_anndata(X, obs={"r": np.linalg.norm(u, axis=1)}, obsm={"intrinsic": u})


def torus(
    n_obs: int = 1000,
    R: float = 2.0,
    r: float = 1.0,
    radius: float | None = 1.0,
    noise: float = 0.0,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Patch of (or the whole) torus of revolution in ``R^3``.

    ``(phi, theta) -> ((R + r cos theta) cos phi, (R + r cos theta) sin phi,
    r sin theta)``.  The centre ``phi = theta = 0`` is the outermost point ``(R + r, 0,
    0)``, where the Gaussian curvature is ``1 / (r (R + r))`` (positive; it is
    ``cos theta / (r (R + r cos theta))`` in general).

    The intrinsic coordinates are ``u = ((R + r) phi, r theta)``, which are arc lengths
    along the two principal directions through the centre (the metric is the identity
    there).  With a finite ``radius``, ``u`` is uniform in the disc of that radius around
    the origin (uniform in ``u``, not exactly w.r.t. surface area); with
    ``radius=None``, points are uniform w.r.t. the area of the whole torus.  In both
    cases **observation 0 is the centre** ``u = 0`` (tests evaluate curvature there).

    Parameters
    ----------
    n_obs
        Number of points, including the centre.
    R
        Distance from the centre of the tube to the axis of revolution.
    r
        Radius of the tube, ``0 < r < R``.
    radius
        Radius of the disc of intrinsic coordinates; at most ``pi * r`` so that the disc
        does not wrap around the tube.  ``None`` for the whole torus.
    noise
        Standard deviation of the isotropic Gaussian noise added to every coordinate of
        every point (the centre included).
    random_state
        Seed for :func:`numpy.random.default_rng`; ``None`` for fresh entropy.

    Returns
    -------
    AnnData
        ``n_obs x 3`` with ``obs["phi"]`` and ``obs["theta"]`` (angles in
        ``[-pi, pi]``), ``obs["r"] = |u|`` (for ``radius=None`` this is ``|u|`` of the
        angles taken in ``[-pi, pi)``) and ``obsm["intrinsic"]`` (``u``).

    Examples
    --------
    >>> adata = torus(n_obs=10)
    >>> adata.shape, adata.X[0].tolist()
    ((10, 3), [3.0, 0.0, 0.0])
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    R, r = float(R), float(r)
    if not (np.isfinite(R) and np.isfinite(r) and 0 < r < R):
        raise ValueError(f"need 0 < r < R, got R={R!r}, r={r!r}")
    rng = np.random.default_rng(random_state)
    if radius is None:
        phi = np.zeros(n_obs)
        theta = np.zeros(n_obs)
        phi[1:] = rng.uniform(-np.pi, np.pi, size=n_obs - 1)
        # area element is proportional to R + r cos(theta): rejection sampling
        filled = 1
        while filled < n_obs:
            cand = rng.uniform(-np.pi, np.pi, size=2 * (n_obs - filled))
            keep = rng.uniform(size=cand.size) * (R + r) <= R + r * np.cos(cand)
            cand = cand[keep][: n_obs - filled]
            theta[filled : filled + cand.size] = cand
            filled += cand.size
        u = np.column_stack([(R + r) * phi, r * theta])
    else:
        radius = _check_radius(radius)
        if radius > np.pi * r:
            raise ValueError(f"radius must be <= pi * r = {np.pi * r}, got {radius}")
        u = _ball_with_centre(n_obs, 2, radius, rng)
        phi = u[:, 0] / (R + r)
        theta = u[:, 1] / r
    ring = R + r * np.cos(theta)
    X = np.column_stack([ring * np.cos(phi), ring * np.sin(phi), r * np.sin(theta)])
    X = _add_noise(X, noise, rng)
    return _to_anndata(
        X,
        obs={"phi": phi, "theta": theta, "r": np.linalg.norm(u, axis=1)},
        obsm={"intrinsic": u},
    )


# --------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------


def pbmc68k_reduced() -> ad.AnnData:
    """Small subset of the 10x PBMC 68k data set that ships with scanpy (no download).

    A thin wrapper over :func:`scanpy.datasets.pbmc68k_reduced` returning a copy, so the
    caller may modify it freely.  It has 700 cells x 765 genes (scaled log expression),
    ``obs["bulk_labels"]`` / ``obs["louvain"]`` cell-type labels, ``obsm["X_pca"]`` and
    ``obsm["X_umap"]``, and a precomputed neighbour graph.

    Returns
    -------
    AnnData
        The data set (observation names are scanpy's cell barcodes).
    """
    import scanpy as sc  # imported lazily: scanpy is slow to import

    return sc.datasets.pbmc68k_reduced().copy()


IPSC_URL = "https://github.com/guillaumehu/phate_fim/raw/main/src/data/ipscData.mat"
IPSC_BLOB_ID = "ddf2353ca2e0ba9685269d5a4b2b91b82382810e"
IPSC_FILE = "ipscData.mat"


def _read_mat(path) -> dict[str, np.ndarray]:
    """Variables of a MATLAB file (v5 with scipy, v7.3/HDF5 with h5py)."""
    from scipy.io import loadmat

    try:
        return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 files are HDF5 (column-major: transpose)
        import h5py

        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]).T for k in f if isinstance(f[k], h5py.Dataset)}


def ipsc(
    *,
    url: str = IPSC_URL,
    cache_dir: str | None = None,
    progress: bool = False,
) -> ad.AnnData:
    """Mass cytometry of fibroblasts reprogrammed into iPSCs (Zunder et al., 2015), preprocessed.

    Zunder et al. (2015, *Cell Stem Cell* 16:323–337) followed mouse embryonic
    fibroblasts being reprogrammed into induced pluripotent stem cells by mass cytometry.
    This is the preprocessed cells × markers matrix that Fasina et al. (2023) used with
    the neural FIM, from their MIT-licensed repository (``ipscData.mat``, the matrix under
    the MATLAB variable ``data``). It is downloaded once with pooch (optional dependency:
    ``pip install pooch``) into the cache folder and verified by its git blob id (the
    SHA-1 that git records for the file), so later calls work offline.

    Parameters
    ----------
    url
        Where to download the file from: the authors' repository by default; any other
        ``http(s)://`` mirror or a ``file://`` path to a local copy (verified the same way).
    cache_dir
        Cache folder; default ``$SCFIM_DATA_DIR`` if set, else the user cache folder of
        pooch (``pooch.os_cache("scfim")``).
    progress
        Show a download progress bar.

    Returns
    -------
    AnnData
        ``X`` the ``data`` matrix (``float32``; cells as ``"cell_0"``, …, markers as
        ``"marker_0"``, …). Other variables of the file with one value per cell (for
        example a sampling time) are stored in ``obs`` under their MATLAB names;
        ``uns["ipsc"]`` records the source URL and blob id.

    Raises
    ------
    ImportError
        pooch is not installed and the file is not cached yet.
    ConnectionError
        The file is not cached and could not be downloaded (for example offline).
    ValueError
        The downloaded file does not match the expected blob id (it is deleted).
    """
    from ._download import fetch_verified

    path = fetch_verified(url, IPSC_BLOB_ID, IPSC_FILE, folder=cache_dir, progress=progress)
    variables = _read_mat(path)
    if "data" not in variables:
        raise ValueError(f"{path} has no MATLAB variable 'data' (found {sorted(variables)})")
    X = np.asarray(variables.pop("data"), dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"'data' in {path} must be a matrix, got shape {X.shape}")
    adata = ad.AnnData(X)
    adata.obs_names = [f"cell_{i}" for i in range(X.shape[0])]
    adata.var_names = [f"marker_{j}" for j in range(X.shape[1])]
    for name, value in variables.items():
        v = np.asarray(value)
        if v.size == X.shape[0] and np.issubdtype(v.dtype, np.number):
            adata.obs[name] = v.reshape(-1)
    adata.uns["ipsc"] = {"url": url, "git_blob_id": IPSC_BLOB_ID, "file": IPSC_FILE}
    return adata


# --------------------------------------------------------------------------------------
# LAND test data: tangent Gaussians on the sphere, curved two-cluster mixtures
# --------------------------------------------------------------------------------------


def land_sphere(
    n_obs: int = 1000,
    cov=(0.1**2, 0.1**2),
    mean=None,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Points ``Exp_μ(v)`` on the unit 2-sphere with tangent vectors ``v ~ N(0, Σ)``.

    As in the sphere experiments of Arvanitidis et al. (2016): a mean on the sphere
    (uniform at random unless given), an orthonormal tangent frame at it by
    Gram–Schmidt, tangent vectors drawn from ``N(0, Σ)`` in that frame (redrawn when
    ``‖v‖ ≥ π``, where Exp stops being injective), mapped to the sphere by the exponential map.

    Parameters
    ----------
    n_obs
        Number of points.
    cov
        Tangent covariance: a ``(2, 2)`` matrix or its diagonal.
    mean
        Mean on the sphere (normalised); random by default.
    random_state
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    AnnData
        ``n_obs x 3`` with ``obsm["tangent"]`` (the drawn ``v`` in the frame) and
        ``uns["land_truth"]``: ``mean`` (3,), ``frame`` (3, 2), ``cov`` (2, 2) and
        ``cov_ambient = F Σ Fᵀ`` (3, 3; independent of the choice of frame).
    """
    n_obs = _check_positive_int("n_obs", n_obs)
    S = np.asarray(cov, dtype=np.float64)
    S = np.diag(S) if S.ndim == 1 else S
    if S.shape != (2, 2) or not np.allclose(S, S.T) or np.linalg.eigvalsh(S).min() <= 0:
        raise ValueError("cov must be a symmetric positive definite 2 x 2 matrix or its diagonal")
    rng = np.random.default_rng(random_state)
    if mean is None:
        mu = rng.normal(size=3)
    else:
        mu = np.asarray(mean, dtype=np.float64).reshape(3)
    if not np.linalg.norm(mu) > 0:
        raise ValueError("mean must be non-zero")
    mu = mu / np.linalg.norm(mu)
    # Gram–Schmidt on random vectors gives the tangent frame
    F = np.empty((3, 2))
    for j in range(2):
        a = rng.normal(size=3)
        a -= (a @ mu) * mu
        for i in range(j):
            a -= (a @ F[:, i]) * F[:, i]
        F[:, j] = a / np.linalg.norm(a)
    Lc = np.linalg.cholesky(S)
    V = rng.normal(size=(n_obs, 2)) @ Lc.T
    bad = np.linalg.norm(V, axis=1) >= np.pi
    while bad.any():
        V[bad] = rng.normal(size=(int(bad.sum()), 2)) @ Lc.T
        bad = np.linalg.norm(V, axis=1) >= np.pi
    U = V @ F.T
    n = np.linalg.norm(U, axis=1, keepdims=True)
    sinc = np.where(n > 0, np.sin(n) / np.where(n > 0, n, 1.0), 1.0)
    X = np.cos(n) * mu + sinc * U
    return _to_anndata(
        X,
        obsm={"tangent": V},
        uns={"land_truth": {"mean": mu, "frame": F, "cov": S, "cov_ambient": F @ S @ F.T}},
    )


def two_moons(
    n_obs: int = 1000,
    noise: float = 0.08,
    random_state: int | None = 0,
) -> ad.AnnData:
    """Two interleaved half circles ("moons"): a two-cluster mixture on curved 1-manifolds.

    Cluster 0 is ``(cos t, sin t)``, cluster 1 ``(1 − cos t, 0.5 − sin t)``, ``t`` uniform
    in ``[0, π]`` (own generator, same layout as scikit-learn's ``make_moons``), plus
    isotropic Gaussian ``noise``. Each cluster is a banana that reaches into the hollow of
    the other, which a Euclidean Gaussian mixture separates poorly.

    Parameters
    ----------
    n_obs
        Number of points (split as evenly as possible).
    noise
        Standard deviation of the 2-D noise.
    random_state
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    AnnData
        ``n_obs x 2`` with ``obs["cluster"]`` (0/1, categorical) and ``obs["t"]``.
    """
    n_obs = _check_positive_int("n_obs", n_obs, minimum=2)
    rng = np.random.default_rng(random_state)
    lab = np.arange(n_obs) % 2
    t = rng.uniform(0.0, np.pi, n_obs)
    X = np.where(
        lab[:, None] == 0,
        np.column_stack([np.cos(t), np.sin(t)]),
        np.column_stack([1.0 - np.cos(t), 0.5 - np.sin(t)]),
    )
    X = _add_noise(X, noise, rng)
    return _to_anndata(X, obs={"cluster": pd.Categorical(lab), "t": t})


__all__ += ["land_sphere", "two_moons"]
