"""Parameter landscape of the diffusion operator (neural-FIM paper, Fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import SCANPY_MARKER, check_plot_args, finish, marker_size, style_panel

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["parameter_landscape"]


def _grid_position(value: float, grid: np.ndarray, log: bool) -> float | None:
    """Fractional index of ``value`` on an ascending grid (None outside it)."""
    if value < grid[0] or value > grid[-1]:
        return None
    if grid.size == 1:
        return 0.0
    f = np.log if log else (lambda v: v)
    return float(np.interp(f(value), f(grid), np.arange(grid.size)))


def _stored_index(points: np.ndarray, pt: tuple[float, float], key: str) -> int:
    hit = np.flatnonzero(np.all(np.isclose(points, np.asarray(pt)[None]), axis=1))
    if not hit.size:
        raise KeyError(
            f"no embedding at (t, sigma) = {pt} in adata.uns[{key!r}]['embeddings']; run "
            f"`scfim.tl.parameter_embeddings(adata, [{pt}], key={key!r})` first"
        )
    return int(hit[-1])


def _ticks(ax: Axes, axis: str, values: np.ndarray, max_ticks: int = 9) -> None:
    step = max(1, int(np.ceil(values.size / max_ticks)))
    pos = np.arange(0, values.size, step)
    labels = [f"{v:.3g}" for v in values[pos]]
    if axis == "x":
        ax.set_xticks(pos, labels, rotation=45)
    else:
        ax.set_yticks(pos, labels)


def parameter_landscape(
    adata: AnnData,
    key: str = "parameter_fim",
    *,
    log: bool = True,
    embeddings_at: str | Sequence[tuple[float, float]] | None = None,
    color: str | None = None,
    cmap: str = "magma",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Heat map of the FIM volume of the diffusion operator over its (σ, t) grid.

    The parameter landscape of Fasina et al. (2023), their Fig. 2B. Reads
    ``adata.uns[key]`` written by :func:`scfim.tl.parameter_fim`. The selected point
    (largest volume) is marked with a star. Optionally a row of JSD-PHATE embeddings of
    the subsample at chosen (t, σ) (paper Fig. 2A) is drawn to the right; the points
    are numbered on the heat map.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.parameter_fim` ran.
    key
        ``key_added`` of :func:`scfim.tl.parameter_fim`.
    log
        Colour by ``log10 √det g`` (volumes span many orders of magnitude) instead of
        ``√det g``.
    embeddings_at
        None (heat map only), ``"best"`` (the selected point) or a sequence of
        ``(t, sigma)`` pairs. The embeddings are computed by
        :func:`scfim.tl.parameter_embeddings` (or ``tl.parameter_fim(embeddings_at=...)``)
        and read here.
    color
        ``obs`` column used to colour the embeddings (categorical or numeric).
    cmap
        Colour map of the heat map.
    title
        Title of the heat map (default "FIM volume over (σ, t)").
    ax
        Axes for the heat map (only without ``embeddings_at``).
    show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key ``key``.

    Returns
    -------
    Axes, Figure or None
        The heat map's Axes without embeddings, else the Figure (always the Figure with
        ``return_fig=True``); None with ``show=True``.
    """
    import matplotlib.pyplot as plt

    check_plot_args(show, save, return_fig)
    if key not in adata.uns or "volume" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] not found; run `scfim.tl.parameter_fim(adata)` first")
    res = adata.uns[key]
    t_grid = np.asarray(res["t_values"], dtype=np.float64)
    s_grid = np.asarray(res["sigma_values"], dtype=np.float64)
    vol = np.asarray(res["volume"], dtype=np.float64)
    if log:
        with np.errstate(divide="ignore"):
            Z = np.where(vol > 0, np.log10(np.where(vol > 0, vol, 1.0)), np.nan)
        label = r"$\log_{10}\sqrt{\det g}$"
    else:
        Z, label = vol, r"$\sqrt{\det g}$"

    points: list[tuple[float, float]] = []
    if embeddings_at is not None:
        if isinstance(embeddings_at, str):
            if embeddings_at != "best":
                raise ValueError("embeddings_at must be None, 'best' or a list of (t, sigma)")
            points = [(float(res["best"]["t"]), float(res["best"]["sigma"]))]
        else:
            for pt in embeddings_at:
                if len(pt) != 2 or not all(np.isfinite(pt)) or min(pt) <= 0:
                    raise ValueError(f"embeddings_at needs positive (t, sigma) pairs, got {pt!r}")
                points.append((float(pt[0]), float(pt[1])))
        if ax is not None:
            raise ValueError("ax can only be given without embeddings_at")
        if color is not None and color not in adata.obs:
            raise KeyError(f"color={color!r} is not a column of adata.obs")
        stored = res.get("embeddings")
        if stored is None:
            raise KeyError(
                f"adata.uns[{key!r}] has no embeddings; run "
                f"`scfim.tl.parameter_embeddings(adata, embeddings_at, key={key!r})` first"
            )
        stored_points = np.asarray(stored["points"], dtype=np.float64)
        index = [_stored_index(stored_points, pt, key) for pt in points]

    if points:
        fig, axes = plt.subplots(
            1,
            1 + len(points),
            figsize=(4.2 + 3.2 * len(points), 3.6),
            gridspec_kw={"width_ratios": [1.3] + [1.0] * len(points)},
        )
        hax = axes[0]
    else:
        if ax is None:
            _, ax = plt.subplots(figsize=(4.6, 3.8))
        hax = ax

    im = hax.imshow(Z, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
    hax.figure.colorbar(im, ax=hax, label=label)
    _ticks(hax, "x", s_grid)
    _ticks(hax, "y", t_grid)
    hax.set_xlabel("kernel bandwidth σ")
    hax.set_ylabel("diffusion time t")
    bi, bj = int(res["best"]["t_index"]), int(res["best"]["sigma_index"])
    edge = bool(res["best"].get("on_boundary", False))
    star = "largest volume" + (" (edge of the grid:\nextend the grid)" if edge else "")
    hax.plot(bj, bi, marker="*", ms=14, mec="k", mfc="cyan", ls="none", label=star)
    hax.legend(loc="upper right", fontsize=7, frameon=True)
    coords = res["params"].get("coordinates", "sigma") if "params" in res else "sigma"
    if title is None:
        title = "FIM volume over " + ("(log σ, t)" if coords == "log_sigma" else "(σ, t)")
    hax.set_title(title)
    if not points:
        return finish(hax, writekey=key, show=show, save=save, return_fig=return_fig)

    sub = np.asarray(res["subsample"], dtype=np.int64)
    c = None
    if color is not None:
        col = adata.obs[color].iloc[sub]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
            from matplotlib.colors import to_rgba

            cats = pd.Categorical(adata.obs[color])
            n_cats = len(cats.categories)
            stored_colours = adata.uns.get(f"{color}_colors")  # those of the other panels
            palette = (
                list(stored_colours)
                if stored_colours is not None and len(stored_colours) == n_cats
                else [plt.get_cmap("tab20")(k % 20) for k in range(n_cats)]
            )
            rgba = np.array([to_rgba(p) for p in palette] + [to_rgba("lightgray")])
            c = rgba[cats.codes[sub]]  # code -1 (missing): scanpy's na_color
            c_kw = {}
        else:
            c = col.to_numpy(dtype=np.float64)
            c_kw = {"cmap": "viridis"}
    for k, (t, s) in enumerate(points, start=1):
        y, x = _grid_position(t, t_grid, False), _grid_position(s, s_grid, True)
        if x is not None and y is not None:
            hax.annotate(
                str(k),
                (x, y),
                color="w",
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold",
                bbox={"boxstyle": "circle,pad=0.15", "fc": "k", "alpha": 0.6},
            )
        Y = np.asarray(stored["coordinates"][index[k - 1]])
        eax = axes[k]
        kw = {"s": marker_size(len(Y)), "marker": SCANPY_MARKER}
        if c is not None:
            eax.scatter(Y[:, 0], Y[:, 1], c=c, **kw, **c_kw)
        else:
            eax.scatter(Y[:, 0], Y[:, 1], color="0.3", **kw)
        # the look of every scfim embedding panel (scanpy's frameon=False)
        style_panel(eax, title=f"{k}: JSD-PHATE at t = {t:.3g}, σ = {s:.3g}")
        eax.title.set_fontsize(9)
    fig.tight_layout()
    return finish(fig, writekey=key, show=show, save=save, return_fig=return_fig)
