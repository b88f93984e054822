"""Geodesic paths drawn over a 2-D embedding."""

from __future__ import annotations

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.spatial import cKDTree

from ._utils import check_plot_args, contrasting_colour, embedding_key, finish

__all__ = ["geodesic"]


def _to_embedding(X: np.ndarray, Y: np.ndarray, pts: np.ndarray, k: int = 5) -> np.ndarray:
    """Map input-space points to the embedding by inverse-distance kNN interpolation."""
    d, i = cKDTree(X).query(pts, k=min(k, len(X)))
    d, i = d.reshape(len(pts), -1), i.reshape(len(pts), -1)
    w = 1.0 / np.maximum(d, 1e-12)
    w /= w.sum(1, keepdims=True)
    return np.einsum("pk,pkc->pc", w, Y[i])


def _underlying_colours(adata: AnnData, color: str | None, cmap) -> list:
    """Colours the cells are drawn in (categorical palette, colour map or scanpy's grey)."""
    if color is None or color not in adata.obs:
        return ["lightgray"]
    col = adata.obs[color]
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        stored = adata.uns.get(f"{color}_colors")
        return list(stored) if stored is not None else [plt.get_cmap("tab20")(k) for k in range(20)]
    cm = plt.get_cmap(cmap or "viridis")
    return [cm(v) for v in np.linspace(0, 1, 16)]


def geodesic(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "geodesic",
    color: str | None = None,
    path_color: str | None = None,
    legend: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Axes | Figure | None:
    """Draw the paths of :func:`scfim.tl.geodesic` over a 2-D embedding.

    Curve points live in the input space (``use_rep``); each is placed in the embedding at
    the inverse-distance-weighted average of its 5 nearest cells. Paths are drawn in a
    colour that contrasts with the colours of the cells underneath (the categorical
    palette or the colour map), with a white outline; the start cell is a circle, the end
    cell a square, both named in a legend.

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
    path_color
        Colour of the paths; default the candidate farthest from every colour of the
        cells.
    legend
        Add the start/end legend (next to the categorical legend, if any).
    ax, show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``"geodesic"``.
        The file is written after the paths are drawn.
    **kwargs
        Passed to :func:`scfim.pl.embedding`.

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    from .._keys import rep_array
    from ._embedding import embedding

    check_plot_args(show, save, return_fig)
    if key not in adata.uns or "paths" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] has no paths; run scfim.tl.geodesic first")
    res = adata.uns[key]
    emb = embedding_key(adata, basis)
    X = rep_array(adata, str(res["params"]["use_rep"]))
    Y = np.asarray(adata.obsm[emb])[:, :2].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    embedding(adata, emb, color=color, ax=ax, **kwargs)
    if path_color is None:
        path_color = contrasting_colour(_underlying_colours(adata, color, kwargs.get("color_map")))
    halo = [pe.Stroke(linewidth=4.5, foreground="white"), pe.Normal()]
    paths = np.asarray(res["paths"], dtype=float)
    for p in paths:
        q = _to_embedding(X, Y, p)
        ax.plot(q[:, 0], q[:, 1], "-", color=path_color, lw=2.2, zorder=5, path_effects=halo)
        marker = {"s": 70, "edgecolors": "white", "linewidths": 1.2, "zorder": 6}
        ax.scatter(q[0, 0], q[0, 1], marker="o", color=path_color, **marker)
        ax.scatter(q[-1, 0], q[-1, 1], marker="s", color=path_color, **marker)
    if legend:
        starts = [str(s) for s in np.ravel(res.get("start", []))]
        ends = [str(e) for e in np.ravel(res.get("end", []))]
        one = len(paths) == 1 and len(starts) == 1 and len(ends) == 1
        if one and color is not None and color in adata.obs:
            col = adata.obs[color]
            if not pd.api.types.is_numeric_dtype(col):  # name the cells' groups
                starts = [f"{starts[0]} ({col.loc[starts[0]]})"]
                ends = [f"{ends[0]} ({col.loc[ends[0]]})"]
        labels = [
            ("o", f"start: {starts[0]}" if one else "start"),
            ("s", f"end: {ends[0]}" if one else "end"),
        ]
        handles = [
            Line2D(
                [], [], color=path_color, lw=2.2, marker=m, ms=7, mec="white", ls="none", label=lab
            )
            for m, lab in labels
        ]
        # scanpy's categorical legend stays the Axes' legend (layout engines make room for
        # it); the start/end legend is an extra artist inside the Axes
        from matplotlib.legend import Legend

        ends_legend = Legend(
            ax,
            handles,
            [h.get_label() for h in handles],
            loc="best",
            frameon=True,
            framealpha=0.85,
            fontsize="small",
            handletextpad=0.3,
        )
        ax.add_artist(ends_legend)
    return finish(ax, writekey="geodesic", show=show, save=save, return_fig=return_fig)
