"""LAND densities and components drawn over a 2-D embedding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._utils import (
    SCANPY_MARKER,
    check_plot_args,
    finish,
    legend_off,
    marker_size,
    place_in_embedding,
    quantity_label,
    robust_limits,
    style_panel,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["land"]


def land(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "land",
    color: str = "density",
    show_means: bool = True,
    ax: Axes | None = None,
    size: float | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    frameon: bool = False,
    legend_loc: str | None = "right margin",
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
    s: float | None = None,
) -> Axes | Figure | None:
    """Draw the fit of :func:`scfim.tl.land` over a 2-D embedding.

    Cells are coloured by the fitted log-likelihood (``color="density"``), by their most
    responsible component (``color="component"``), or by any obs column; cells whose Log
    map failed are outlined in red. Component means are marked with black crosses (when
    they can be placed: directly if ``basis`` is the input representation, else at the
    inverse-distance average of the embedding positions of their 5 nearest cells). A
    legend names the crosses and the outlines (with the components' legend in the right
    margin, else under the plot).

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
    size
        Marker size of the cells; default ``120000 / n_obs`` as in
        :func:`scanpy.pl.embedding`.
    cmap
        Colour map of continuous values.
    title
        Axes title; default "LAND (density)" (or the ``color`` shown), ``""`` for none.
    frameon
        Draw a frame with axis labels (scanpy's ``frameon``); default no frame, like
        :func:`scfim.pl.embedding`.
    legend_loc
        ``"right margin"`` (default; under the plot when a colour bar takes the margin),
        a matplotlib legend location (``"best"``, ``"upper right"`` …), or ``None`` /
        ``"none"`` for no legend (as in scanpy).
    show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``key``.
    s
        Alias of ``size`` (matplotlib's name; earlier versions of this function took
        only ``s``).

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .._keys import rep_array

    check_plot_args(show, save, return_fig)
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
    size = marker_size(adata.n_obs, size, s)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    vals = adata.obs[col]
    categorical = hasattr(vals, "cat")
    handles: list = []  # legend entries: components (categorical), failed cells, means
    if categorical:
        cats = list(vals.cat.categories)
        cmap_c = plt.get_cmap("tab10")
        for i, c in enumerate(cats):
            m = (vals == c).to_numpy()
            ax.scatter(Y[m, 0], Y[m, 1], s=size, color=cmap_c(i % 10), marker=SCANPY_MARKER)
            handles.append(
                Line2D([], [], ls="none", marker="o", color=cmap_c(i % 10), label=str(c))
            )
    else:
        v = np.asarray(vals, dtype=float)
        order = np.argsort(v)
        # log-likelihoods have a long lower tail (a few far or failed cells): clip the
        # colour range at the 2nd percentile so that the variation among most cells shows
        lo, hi = robust_limits(v, 2.0, 100.0)
        sc = ax.scatter(
            Y[order, 0],
            Y[order, 1],
            c=v[order],
            s=size,
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            marker=SCANPY_MARKER,
        )
        ax.figure.colorbar(sc, ax=ax, label=quantity_label(col), shrink=0.8, extend="min")
    fail_col = f"{key}_log_failed"
    if fail_col in adata.obs and adata.obs[fail_col].to_numpy().any():
        f = adata.obs[fail_col].to_numpy().astype(bool)
        # a ring about 1.4 times as wide as the dot (scanpy's "." is half as wide as "o")
        ring = 0.5 * size
        ax.scatter(Y[f, 0], Y[f, 1], s=ring, facecolors="none", edgecolors="red", lw=0.8)
        handles.append(
            Line2D([], [], ls="none", marker="o", mfc="none", mec="red", label="Log map failed")
        )
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
            P = place_in_embedding(X, Y, means)
        ax.scatter(P[:, 0], P[:, 1], marker="X", s=120, c="k", edgecolors="w", zorder=6)
        label = "component mean" + ("s" if len(P) > 1 else "") + f" ({len(P)})"
        handles.append(Line2D([], [], ls="none", marker="X", ms=10, color="k", label=label))
    if handles and not legend_off(legend_loc):
        kw = {"frameon": False, "fontsize": "small"}
        if legend_loc != "right margin":
            kw["loc"] = legend_loc
        elif categorical:  # one legend in the right margin, as scanpy places it
            kw.update(loc="center left", bbox_to_anchor=(1.0, 0.5), title=color)
        else:  # the colour bar takes the right margin: under the plot
            kw.update(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=len(handles))
        ax.legend(handles=handles, **kw)
    style_panel(
        ax,
        title=f"LAND ({color})" if title is None else title,
        frameon=frameon,
        basis=None if basis == "X" else emb,
    )
    return finish(ax, writekey=key, show=show, save=save, return_fig=return_fig)
