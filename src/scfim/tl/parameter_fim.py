"""``scfim.tl.parameter_fim``: Fisher information over PHATE's (σ, t) (neural-FIM paper, 4.1)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from anndata import AnnData

from ..geometry.parameter_fim import (
    default_sigma_values,
    parameter_fim_grid,
    select_parameters,
    squared_distances,
)
from ._utils import check_common, check_int, clean_for_h5ad, get_rep

__all__ = ["parameter_fim"]

logger = logging.getLogger("scfim")

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
    use_rep
        ``obsm`` key of the input space; default ``"X_pca"`` when present, else ``X``.
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
    copy
        Return a modified copy instead of writing into ``adata``.

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
    if coordinates not in ("sigma", "log_sigma"):
        raise ValueError(f"coordinates must be 'sigma' or 'log_sigma', got {coordinates!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    random_state = check_common(random_state, key_added, copy)
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
    grid = parameter_fim_grid(
        Xs, t_grid, s_grid, alpha=float(alpha), coordinates=coordinates, progress=progress
    )
    t_best, s_best, i, j = select_parameters(grid)
    on_boundary = bool(
        (i in (0, t_grid.size - 1) and t_grid.size > 1)
        or (j in (0, s_grid.size - 1) and s_grid.size > 1)
    )
    logger.info(
        "parameter_fim: %d cells, %d × %d grid, largest volume at t=%g, sigma=%g%s",
        sub.size,
        t_grid.size,
        s_grid.size,
        t_best,
        s_best,
        " (on the edge of the grid)" if on_boundary else "",
    )

    # ---------------- write
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = clean_for_h5ad(
        {
            "t_values": t_grid,
            "sigma_values": np.asarray(s_grid, dtype=np.float64),
            "fim": grid.fim,
            "volume": grid.volume,
            "log_volume": grid.log_volume,
            "best": {
                "t": t_best,
                "sigma": s_best,
                "t_index": i,
                "sigma_index": j,
                "volume": float(grid.volume[i, j]),
                "on_boundary": on_boundary,
            },
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
        }
    )
    return adata if copy else None
