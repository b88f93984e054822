"""Geodesic paths drawn over a 2-D embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import (
    check_plot_args,
    contrasting_colour,
    embedding_key,
    finish,
    place_in_embedding,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["geodesic"]


def _underlying_colours(adata: AnnData, color: str | None, cmap) -> list:
    """Colours the cells are drawn in (categorical palette, colour map or scanpy's grey)."""
    import matplotlib.pyplot as plt

    if color is None or color not in adata.obs:
        return ["lightgray"]
    col = adata.obs[color]
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        stored = adata.uns.get(f"{color}_colors")
        return list(stored) if stored is not None else [plt.get_cmap("tab20")(k) for k in range(20)]
    cm = plt.get_cmap(cmap or "viridis")
    return [cm(v) for v in np.linspace(0, 1, 16)]


# path points farther than this many median cell spacings from every cell are "off the cells"
OFF_CELLS = 2.0


def _draw_path(ax: Axes, q: np.ndarray, off: np.ndarray, colour, halo) -> None:
    """One path: solid along the cells, dashed on segments with an end off the cells."""
    seg_off = off[:-1] | off[1:]
    start = 0
    for k in range(1, len(seg_off) + 1):  # runs of segments with the same flag
        if k == len(seg_off) or seg_off[k] != seg_off[start]:
            ls = "--" if seg_off[start] else "-"
            part = q[start : k + 1]
            ax.plot(part[:, 0], part[:, 1], ls, color=colour, lw=2.2, zorder=5, path_effects=halo)
            start = k
    marker = {"s": 70, "edgecolors": "white", "linewidths": 1.2, "zorder": 6}
    ax.scatter(q[0, 0], q[0, 1], marker="o", color=colour, **marker)
    ax.scatter(q[-1, 0], q[-1, 1], marker="s", color=colour, **marker)


def _ends_legend(
    ax: Axes, adata: AnnData, res, color: str | None, path_color, n_paths: int, dashed: bool
):
    """The start/end legend, below the Axes (outside the data, clear of scanpy's legend)."""
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D

    starts = [str(s) for s in np.ravel(res.get("start", []))]
    ends = [str(e) for e in np.ravel(res.get("end", []))]
    one = n_paths == 1 and len(starts) == 1 and len(ends) == 1
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
        Line2D([], [], color=path_color, lw=2.2, marker=m, ms=7, mec="white", ls="none")
        for m, _ in labels
    ]
    if dashed:
        handles.append(Line2D([], [], color=path_color, lw=2.2, ls="--"))
        labels.append(("", f"off the cells (> {OFF_CELLS:g}× their spacing)"))
    # scanpy's categorical legend stays the Axes' legend (in the right margin); this one is
    # an extra artist centred under the Axes, where frameon=False leaves empty space (tight
    # and constrained layouts make room for it)
    legend = Legend(
        ax,
        handles,
        [lab for _, lab in labels],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=1,
        frameon=False,
        fontsize="small",
        handletextpad=0.3,
        borderaxespad=0.2,
    )
    ax.add_artist(legend)
    legend.set_clip_on(False)  # add_artist clips to the Axes: it would be invisible there


def geodesic(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    key: str = "geodesic",
    color: str | Sequence[str] | None = None,
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
    cell a square, both named in a legend under the plot. Segments with a point farther
    than twice the cells' spacing (``uns[key]["nn_distance"]``, the median distance
    between neighbouring cells) from every cell are dashed: there the curve leaves the
    data, and its place in the embedding is an average of distant cells. Several
    ``color`` keys give one panel each, as in :func:`scanpy.pl.embedding`.

    Parameters
    ----------
    adata
        Annotated data with ``uns[key]`` from :func:`scfim.tl.geodesic`.
    basis
        ``obsm`` key of a 2-D embedding.
    key
        ``key_added`` of :func:`scfim.tl.geodesic`.
    color
        ``obs`` column or gene for the cells underneath (see :func:`scfim.pl.embedding`);
        a list draws one panel per key, each with the paths.
    path_color
        Colour of the paths; default the candidate farthest from every colour of the
        cells.
    legend
        Add the start/end legend (under the plot; the categorical legend of the cells
        stays in the right margin).
    ax
        Axes to draw into (a single ``color`` only).
    show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``"geodesic"``.
        The file is written after the paths are drawn.
    **kwargs
        Passed to :func:`scfim.pl.embedding`.

    Returns
    -------
    Axes, list of Axes, Figure or None
        The Axes (a list with several colours); the Figure with ``return_fig=True``; None
        with ``show=True``.
    """
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    from .._keys import rep_array
    from ._embedding import embedding

    check_plot_args(show, save, return_fig)
    if key not in adata.uns or "paths" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] has no paths; run scfim.tl.geodesic first")
    res = adata.uns[key]
    emb = embedding_key(adata, basis)
    X = rep_array(adata, str(res["params"]["use_rep"]))
    Y = np.asarray(adata.obsm[emb])[:, :2].astype(float)
    colours = [color] if color is None or isinstance(color, str) else list(color)
    if not colours:
        colours = [None]
    several = len(colours) > 1
    if several and ax is not None:
        raise ValueError(
            f"ax draws one panel, but color has {len(colours)} keys (one panel each); "
            "pass a single color with ax, or no ax"
        )
    if several:  # scanpy lays out one panel per key in a new figure
        axes = list(np.atleast_1d(embedding(adata, emb, color=colours, **kwargs)))
    else:
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4.5))
        embedding(adata, emb, color=colours[0], ax=ax, **kwargs)
        axes = [ax]
    halo = [pe.Stroke(linewidth=4.5, foreground="white"), pe.Normal()]
    paths = np.asarray(res["paths"], dtype=float)
    placed = [place_in_embedding(X, Y, p, return_distance=True) for p in paths]
    spacing = float(np.ravel(res.get("nn_distance", np.nan))[0])
    offs = [
        d > OFF_CELLS * spacing if np.isfinite(spacing) else np.zeros(len(d), bool)
        for _, d in placed
    ]
    dashed = any(o.any() for o in offs)
    for a, c in zip(axes, colours, strict=True):
        colour = path_color
        if colour is None:
            cmap = kwargs.get("color_map", kwargs.get("cmap"))  # scanpy takes both
            colour = contrasting_colour(_underlying_colours(adata, c, cmap))
        for (q, _), off in zip(placed, offs, strict=True):
            _draw_path(a, q, off, colour, halo)
        if legend:
            _ends_legend(a, adata, res, c, colour, len(paths), dashed)
    out = axes if several else axes[0]
    return finish(out, writekey="geodesic", show=show, save=save, return_fig=return_fig)
