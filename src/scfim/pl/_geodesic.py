"""Geodesic paths drawn over a 2-D embedding."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from scipy.spatial import cKDTree

__all__ = ["geodesic"]


def _to_embedding(X: np.ndarray, Y: np.ndarray, pts: np.ndarray, k: int = 5) -> np.ndarray:
    """Map input-space points to the embedding by inverse-distance kNN interpolation."""
    d, i = cKDTree(X).query(pts, k=min(k, len(X)))
    w = 1.0 / np.maximum(d, 1e-12)
    w /= w.sum(1, keepdims=True)
    return np.einsum("pk,pkc->pc", w, Y[i])


def geodesic(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "geodesic",
    color: str | None = None,
    ax: Axes | None = None,
    **kwargs,
) -> Axes:
    """Draw the paths of :func:`scfim.tl.geodesic` over a 2-D embedding.

    Curve points live in the input space (``use_rep``); each is placed in the embedding at
    the inverse-distance-weighted average of its 5 nearest cells.

    Parameters
    ----------
    adata
        Annotated data with ``uns[key]`` from :func:`scfim.tl.geodesic`.
    basis
        ``obsm`` key of a 2-D embedding.
    key
        ``key_added`` of :func:`scfim.tl.geodesic`.
    color
        ``obs`` column for the cells underneath (see :func:`scfim.pl.embedding`).
    ax
        Axes to draw into.
    **kwargs
        Passed to :func:`scfim.pl.embedding`.

    Returns
    -------
    Axes
        The Axes.
    """
    from .._keys import rep_array
    from ._embedding import embedding

    if key not in adata.uns or "paths" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] has no paths; run scfim.tl.geodesic first")
    res = adata.uns[key]
    emb = basis if basis in adata.obsm else f"X_{basis}"
    if emb not in adata.obsm or np.asarray(adata.obsm[emb]).shape[1] < 2:
        raise KeyError(f"basis {basis!r} is not a 2-D embedding in adata.obsm")
    X = rep_array(adata, str(res["params"]["use_rep"]))
    Y = np.asarray(adata.obsm[emb])[:, :2].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    embedding(adata, emb, color=color, ax=ax, **kwargs)
    paths = np.asarray(res["paths"], dtype=float)
    for p in paths:
        q = _to_embedding(X, Y, p)
        ax.plot(q[:, 0], q[:, 1], "-", color="crimson", lw=2, zorder=5)
        ax.scatter(q[[0, -1], 0], q[[0, -1], 1], c="k", s=30, zorder=6)
    return ax
