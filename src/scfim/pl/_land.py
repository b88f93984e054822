"""LAND densities and components drawn over a 2-D embedding."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._utils import check_plot_args, finish, quantity_label, robust_limits

__all__ = ["land"]


def land(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "land",
    color: str = "density",
    show_means: bool = True,
    ax: Axes | None = None,
    s: float | None = None,
    cmap: str = "viridis",
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Draw the fit of :func:`scfim.tl.land` over a 2-D embedding.

    Cells are coloured by the fitted log-likelihood (``color="density"``), by their most
    responsible component (``color="component"``), or by any obs column; cells whose Log
    map failed are outlined in red. Component means are marked (when they can be placed:
    directly if ``basis`` is the input representation, else at the inverse-distance
    average of the embedding positions of their 5 nearest cells).

    Parameters
    ----------
    adata
        Annotated data with the results of :func:`scfim.tl.land`.
    basis
        ``obsm`` key of a 2-D embedding (with or without ``X_``), or ``"X"``.
    key
        ``key_added`` of :func:`scfim.tl.land`.
    color
        ``"density"``, ``"component"`` or an obs column.
    show_means
        Mark the component means.
    ax
        Axes to draw into.
    s
        Marker size.
    cmap
        Colour map of continuous values.
    show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``key``.

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    check_plot_args(show, save, return_fig)
    from scipy.spatial import cKDTree

    from .._keys import rep_array

    if key not in adata.uns or "means" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] has no LAND fit; run scfim.tl.land first")
    col = {"density": f"{key}_log_likelihood", "component": f"{key}_component"}.get(color, color)
    if col not in adata.obs:
        raise KeyError(f"adata.obs[{col!r}] not found")
    if basis == "X":
        Y = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X)
    else:
        emb = basis if basis in adata.obsm else f"X_{basis}"
        if emb not in adata.obsm:
            raise KeyError(f"basis {basis!r} is not in adata.obsm")
        Y = np.asarray(adata.obsm[emb])
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"basis {basis!r} is not a 2-D embedding")
    Y = Y[:, :2].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    size = s if s is not None else max(4.0, 12000.0 / max(adata.n_obs, 1) ** 0.9)
    vals = adata.obs[col]
    if hasattr(vals, "cat"):
        cats = list(vals.cat.categories)
        cmap_c = plt.get_cmap("tab10")
        for i, c in enumerate(cats):
            m = (vals == c).to_numpy()
            ax.scatter(Y[m, 0], Y[m, 1], s=size, color=cmap_c(i % 10), label=str(c), lw=0)
        ax.legend(title=color, frameon=False, markerscale=2, fontsize="small")
    else:
        v = np.asarray(vals, dtype=float)
        order = np.argsort(v)
        # log-likelihoods have a long lower tail (a few far or failed cells): clip the
        # colour range at the 2nd percentile so that the variation among most cells shows
        lo, hi = robust_limits(v, 2.0, 100.0)
        sc = ax.scatter(
            Y[order, 0], Y[order, 1], c=v[order], s=size, cmap=cmap, lw=0, vmin=lo, vmax=hi
        )
        ax.figure.colorbar(sc, ax=ax, label=quantity_label(col), shrink=0.8, extend="min")
    fail_col = f"{key}_log_failed"
    if fail_col in adata.obs and adata.obs[fail_col].to_numpy().any():
        f = adata.obs[fail_col].to_numpy().astype(bool)
        ax.scatter(Y[f, 0], Y[f, 1], s=size * 2, facecolors="none", edgecolors="red", lw=0.8)
    if show_means:
        res = adata.uns[key]
        means = np.asarray(res["means"], dtype=float)
        use_rep = str(res["params"]["use_rep"])
        same = basis == use_rep or (basis != "X" and f"X_{basis}" == use_rep)
        if same:
            P = means[:, :2]
        else:
            X = rep_array(adata, use_rep)
            n_pcs = res["params"].get("n_pcs")  # tl.land fitted on the leading columns
            if n_pcs is not None:
                X = X[:, : int(n_pcs)]
            d, i = cKDTree(X).query(means, k=min(5, len(X)))
            d, i = np.atleast_2d(d), np.atleast_2d(i)
            w = 1.0 / np.maximum(d, 1e-12)
            w /= w.sum(1, keepdims=True)
            P = np.einsum("pk,pkc->pc", w, Y[i])
        ax.scatter(P[:, 0], P[:, 1], marker="X", s=120, c="k", edgecolors="w", zorder=6)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"LAND ({color})")
    return finish(ax, writekey=key, show=show, save=save, return_fig=return_fig)
