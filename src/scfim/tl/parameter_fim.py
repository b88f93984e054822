"""``scfim.tl.parameter_fim``: Fisher information over PHATE's (σ, t) (neural-FIM paper, 4.1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from ..geometry.parameter_fim import (
    default_sigma_values,
    jsd_phate_at,
    parameter_fim_grid,
    select_parameters,
    squared_distances,
)
from ._store import clean_for_h5ad
from ._validate import (
    check_bool,
    check_choice,
    check_common,
    check_float,
    check_int,
    check_key_added,
    get_rep,
    require_key,
)

__all__ = ["parameter_fim", "parameter_embeddings"]

DEFAULT_T_VALUES = tuple(float(t) for t in range(1, 16))  # the paper's t ∈ [1, 15]
MIN_CELLS = 10
MAX_CELLS = 5000


def _check_grid(name: str, values: Any) -> np.ndarray:
    """Validated, ascending float64 grid (raises before anything is written)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of positive numbers, got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a sequence of positive numbers, got {values!r}") from err
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; give at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got {arr[arr <= 0].tolist()}")
    out = np.sort(arr)
    if np.any(np.diff(out) == 0):
        dup = np.unique(out[1:][np.diff(out) == 0])
        raise ValueError(f"{name} contains duplicates {dup.tolist()}; pass distinct values")
    return out


@doc_params()
def parameter_fim(
    adata: AnnData,
    *,
    t_values=DEFAULT_T_VALUES,
    sigma_values=None,
    n_cells: int = 500,
    use_rep: str | None = None,
    alpha: float = 1.0,
    n_neighbors: int = 15,
    coordinates: str = "sigma",
    random_state: int | None = 0,
    key_added: str = "parameter_fim",
    progress: bool = True,
    embeddings_at: str | Sequence[tuple[float, float]] | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Fisher information of the diffusion operator over its parameters (σ, t).

    Sec. 4.1 of the neural-FIM paper: the diffusion operator built with Gaussian kernel
    bandwidth σ and diffusion time t is a point of a 2-D statistical manifold. At every
    point of a (t, σ) grid this computes the 2 × 2 Fisher information matrix g(σ, t) and
    its volume element ``√det g`` (paper Fig. 2B).

    **Works on a random subsample** of ``n_cells`` cells (all cells when there are fewer):
    the operator is dense (``n_cells × n_cells``, all pairs), which is what makes every
    probability a smooth function of σ; the cost is one ``n³`` eigendecomposition per σ
    and a few ``n³`` matrix products per grid point (the 15 × 9 default grid takes about
    2 minutes at n = 1000 on one busy CPU core, ~8× less at the default n = 500).

    Construction (see :mod:`scfim.geometry.parameter_fim`): Gaussian kernel
    ``exp(−‖x − y‖²/σ)`` on all pairs of the subsample (σ scales *squared* distances),
    anisotropy ``Q^{-α} K Q^{-α}``, Markov ``P = D⁻¹K_α``, continuous t through the
    eigendecomposition of ``A = D^{-1/2} K_α D^{-1/2}`` (eigenvalues clamped at their
    round-off level ``10·n·ε``), rows ``p_x = Pᵗ(x, ·)``. Derivatives by forward-mode
    automatic differentiation in float64. ``g = mean_x Σ_j ∂p_xj ∂p_xjᵀ / p_xj`` (the mean
    over cells, entries ``p ≤ 1e-10`` left out), coordinates ordered (σ, t).

    Selection rule: the grid point of **largest volume** ``√det g`` — the combination
    under which the diffusion probabilities change most (the paper reads the bright
    region of Fig. 2B this way). When it lies on the edge of the grid, the grid probably
    does not contain the maximum (``best["on_boundary"]``; logged).

    Parameters
    ----------
    adata
        Annotated data matrix (cells × features).
    t_values
        Diffusion times, real and > 0 (default 1, 2, …, 15 as in the paper). Any order
        (stored ascending); duplicates, non-finite or non-positive values are an error.
        Values t < 1 are allowed but less accurate (modes at round-off level are
        magnified).
    sigma_values
        Kernel bandwidths (> 0, same rules). Default: 9 geometric steps from σ₀/16 to
        4σ₀, σ₀ the median squared distance to the ``n_neighbors``-th neighbour within
        the subsample (on the toy tree the volume peaks near σ₀/4 at t = 1).
    n_cells
        Size of the random subsample (10 ≤ n_cells ≤ 5000).
    {use_rep}
    alpha
        Anisotropy in [0, 1] (1, the default, is the paper's Algorithm 1).
    n_neighbors
        k of the default σ grid's scale σ₀ (ignored when ``sigma_values`` is given).
    coordinates
        ``"sigma"`` (the paper): g, the volume and the selection in coordinates (σ, t);
        ``"log_sigma"``: in (log σ, t), ``g' = diag(σ, 1) g diag(σ, 1)`` and volume
        ``σ √det g`` — independent of the unit of σ, and it moves the maximum to larger σ.
    random_state
        Seed of the subsample.
    key_added
        ``uns`` key of the result.
    progress
        Show a progress bar over σ.
    embeddings_at
        Also compute JSD-PHATE embeddings of the subsample at these points (see
        :func:`parameter_embeddings`): None, ``"best"`` or a sequence of ``(t, sigma)``.
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes ``adata.uns[key_added]``:

        ``t_values`` ``(T,)``, ``sigma_values`` ``(S,)``
            The grid, ascending.
        ``fim`` ``(T, S, 2, 2)``
            ``fim[i, j]`` = g at ``(t_values[i], sigma_values[j])``, coordinates (σ, t)
            (or (log σ, t) with ``coordinates="log_sigma"``).
        ``volume``, ``log_volume`` ``(T, S)``
            ``√det g`` and ``½ log det g`` (``-inf`` where g is singular).
        ``best``
            ``{"t", "sigma", "t_index", "sigma_index", "volume", "on_boundary"}``: the
            selected point.
        ``subsample``
            Integer positions (into ``adata.obs``) of the cells used.
        ``params``
            The arguments (resolved ``use_rep``; ``sigma0`` when the default σ grid was used).
        ``embeddings``
            Only with ``embeddings_at``: see :func:`parameter_embeddings`.

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input (bad grids, too few cells, missing ``use_rep``, …); ``adata`` is
        then left unchanged.
    """
    # ---------------- validate everything before touching adata
    t_grid = _check_grid("t_values", t_values)
    s_grid = None if sigma_values is None else _check_grid("sigma_values", sigma_values)
    n_cells = check_int("n_cells", n_cells, minimum=MIN_CELLS)
    if n_cells > MAX_CELLS:
        raise ValueError(
            f"n_cells={n_cells} is too large: the operator is dense (n_cells²); "
            f"use at most {MAX_CELLS}"
        )
    n_neighbors = check_int("n_neighbors", n_neighbors)
    check_choice("coordinates", coordinates, ("sigma", "log_sigma"))
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0)
    progress = check_bool("progress", progress)
    random_state = check_common(random_state, key_added, copy)
    if embeddings_at is not None:
        _check_points(embeddings_at)
    X, rep = get_rep(adata, use_rep)
    n_obs = X.shape[0]
    if n_obs < MIN_CELLS:
        raise ValueError(f"need at least {MIN_CELLS} cells, got {n_obs}")

    # ---------------- compute
    if n_obs > n_cells:
        rng = np.random.default_rng(random_state)
        sub = np.sort(rng.choice(n_obs, size=n_cells, replace=False))
    else:
        sub = np.arange(n_obs)
    Xs = X[sub]
    if np.all(np.ptp(Xs, axis=0) == 0):
        raise ValueError("all subsampled cells are identical; the kernel is degenerate")
    sigma0 = None
    if s_grid is None:
        s_grid, sigma0 = default_sigma_values(squared_distances(Xs), n_neighbors=n_neighbors)
    start = logg.info(
        f"computing the parameter FIM of {Xs.shape[0]} cells on a {t_grid.size} × "
        f"{s_grid.size} (t, sigma) grid"
    )
    grid = parameter_fim_grid(
        Xs, t_grid, s_grid, alpha=float(alpha), coordinates=coordinates, progress=progress
    )
    t_best, s_best, i, j = select_parameters(grid)
    on_boundary = bool(
        (i in (0, t_grid.size - 1) and t_grid.size > 1)
        or (j in (0, s_grid.size - 1) and s_grid.size > 1)
    )
    best = {
        "t": t_best,
        "sigma": s_best,
        "t_index": i,
        "sigma_index": j,
        "volume": float(grid.volume[i, j]),
        "on_boundary": on_boundary,
    }
    embeddings = None
    if embeddings_at is not None:
        points = _check_points(embeddings_at, best)
        embeddings = _embeddings(Xs, points, float(alpha), 2, 300)

    # ---------------- write
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = clean_for_h5ad(
        {
            "t_values": t_grid,
            "sigma_values": np.asarray(s_grid, dtype=np.float64),
            "fim": grid.fim,
            "volume": grid.volume,
            "log_volume": grid.log_volume,
            "best": best,
            "subsample": sub.astype(np.int64),
            "params": {
                "n_cells": n_cells,
                "use_rep": rep,
                "alpha": float(alpha),
                "n_neighbors": n_neighbors,
                "coordinates": coordinates,
                "random_state": random_state,
                "sigma0": sigma0,
            },
            "embeddings": embeddings,
        }
    )
    logg.info(
        f"    finished: {sub.size} cells, largest volume at t = {t_best:g}, σ = {s_best:g}"
        + (
            " (on the edge of the grid: widen t_values / sigma_values to find the maximum)"
            if on_boundary
            else ""
        ),
        time=start,
        deep=logg.added(("uns", key_added)),
    )
    return adata if copy else None


def _check_points(embeddings_at: Any, best: dict | None = None) -> list[tuple[float, float]]:
    """``"best"`` or positive ``(t, sigma)`` pairs; ``"best"`` resolved when ``best`` is given."""
    if isinstance(embeddings_at, str):
        if embeddings_at != "best":
            raise ValueError("embeddings_at must be None, 'best' or a list of (t, sigma)")
        return [] if best is None else [(float(best["t"]), float(best["sigma"]))]
    points = []
    for pt in embeddings_at:
        if isinstance(pt, str) or len(pt) != 2:
            raise ValueError(f"embeddings_at needs (t, sigma) pairs, got {pt!r}")
        t = check_float("t of embeddings_at", pt[0], minimum=0, exclusive_minimum=True)
        s = check_float("sigma of embeddings_at", pt[1], minimum=0, exclusive_minimum=True)
        points.append((t, s))
    if not points:
        raise ValueError("embeddings_at is empty")
    return points


def _embeddings(Xs, points, alpha: float, n_components: int, max_iter: int) -> dict:
    Y = np.stack(
        [
            jsd_phate_at(Xs, t, s, alpha=alpha, n_components=n_components, max_iter=max_iter)
            for t, s in points
        ]
    )
    return {"points": np.asarray(points, dtype=np.float64), "coordinates": Y}


@doc_params()
def parameter_embeddings(
    adata: AnnData,
    embeddings_at: str | Sequence[tuple[float, float]] = "best",
    *,
    key: str = "parameter_fim",
    n_components: int = 2,
    max_iter: int = 300,
    copy: bool = False,
) -> AnnData | None:
    """JSD-PHATE embeddings of the parameter-FIM subsample at chosen points (t, σ).

    As in Fig. 2A of Fasina et al. (2023). For each point, the subsample of :func:`parameter_fim` is embedded with the dense
    Gaussian operator of bandwidth σ and diffusion time t
    (:func:`scfim.geometry.parameter_fim.jsd_phate_at`): rows of Pᵗ, Jensen–Shannon
    distances, metric MDS. :func:`scfim.pl.parameter_landscape` draws them.

    Parameters
    ----------
    adata
        Annotated data on which :func:`parameter_fim` ran.
    embeddings_at
        ``"best"`` (the selected point) or a sequence of ``(t, sigma)`` pairs (any
        positive values, on the grid or not). Seconds per point for 500 cells.
    key
        ``key_added`` of :func:`parameter_fim`.
    n_components
        Embedding dimension.
    max_iter
        SMACOF iteration limit.
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes
        ``adata.uns[key]["embeddings"]``: ``points`` ``(m, 2)`` (t, σ) and ``coordinates``
        ``(m, n_subsample, n_components)``; points computed before are kept (a point given
        again is recomputed).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    check_key_added(key, "key")
    n_components = check_int("n_components", n_components)
    max_iter = check_int("max_iter", max_iter)
    check_bool("copy", copy)
    _check_points(embeddings_at)
    res = require_key(adata, key, "parameter_fim")
    if "subsample" not in res or "best" not in res:
        raise KeyError(f"adata.uns[{key!r}] holds no parameter FIM grid")
    points = _check_points(embeddings_at, res["best"])
    X, _ = get_rep(adata, str(res["params"]["use_rep"]))
    Xs = X[np.asarray(res["subsample"], dtype=np.int64)]
    alpha = float(res["params"].get("alpha", 1.0))
    start = logg.info(f"computing {len(points)} JSD-PHATE embeddings of {len(Xs)} cells")
    new = _embeddings(Xs, points, alpha, n_components, max_iter)
    old = res.get("embeddings")
    if old is not None and np.asarray(old["coordinates"]).shape[2] == n_components:
        keep = [
            k
            for k, p in enumerate(np.asarray(old["points"]))
            if not any(np.allclose(p, q) for q in points)
        ]
        new = {
            "points": np.concatenate([np.asarray(old["points"])[keep], new["points"]]),
            "coordinates": np.concatenate(
                [np.asarray(old["coordinates"])[keep], new["coordinates"]]
            ),
        }
    adata = adata.copy() if copy else adata
    adata.uns[key]["embeddings"] = new
    logg.info("    finished", time=start, deep=logg.added(("uns", f"{key}/embeddings")))
    return adata if copy else None
