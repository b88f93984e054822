"""Embedding plots (thin wrappers over scanpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._utils import check_plot_args, embedding_key, finish, label_colorbar, quantity_label

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["embedding", "diffusion_entropy"]


def embedding(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    color: str | list[str] | None = None,
    vmin: float | str | None = "p1",
    vmax: float | str | None = "p99",
    colorbar_label: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Axes | list[Axes] | Figure | None:
    """Scatter plot of a 2-D embedding coloured by an obs column or a gene.

    Thin wrapper over :func:`scanpy.pl.embedding` that returns the Axes. Continuous
    values get outlier-robust colour limits (the 1st and 99th percentiles, so that one
    extreme cell does not leave all others in one colour) and a colour bar labelled with
    the quantity (``fim_trace`` reads "FIM trace (tr g)"). Continuous
    geometric quantities (``fim_volume``, ``fim_trace`` …) default to the ``viridis``
    colour map and to plotting high values on top.

    Parameters
    ----------
    adata
        Annotated data.
    basis
        ``obsm`` key of the embedding (with or without the ``X_`` prefix).
    color
        ``obs`` column(s) or gene name(s).
    vmin, vmax
        Colour limits of continuous values, as in scanpy: a number, a percentile string
        (``"p1"``: the 1st percentile) or None (the minimum / maximum).
    colorbar_label
        Label of the colour bar (single ``color``); default the quantity's name.
    ax
        Axes to draw into (single ``color`` only).
    show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. The write key of ``save``
        is the basis name (``"jsd_phate"``).
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    Axes, list of Axes, Figure or None
        The Axes (a list when several colours were requested), the Figure with
        ``return_fig=True``, None with ``show=True``.
    """
    import scanpy as sc

    check_plot_args(show, save, return_fig)
    key = embedding_key(adata, basis)
    genes = set(adata.var_names) | (set(adata.raw.var_names) if adata.raw is not None else set())
    check = "gene_symbols" not in kwargs  # genes are then looked up in a var column
    for c in [color] if isinstance(color, str) else list(color or []):
        if check and c not in adata.obs and c not in genes:
            raise KeyError(
                f"color={c!r} is neither an obs column nor a gene of adata (obs columns: "
                f"{', '.join(map(str, adata.obs.columns[:12])) or 'none'}"
                f"{', …' if adata.obs.shape[1] > 12 else ''})"
            )
    if (
        isinstance(color, str)
        and color in adata.obs
        and pd.api.types.is_numeric_dtype(adata.obs[color])
    ):
        kwargs.setdefault("color_map", "viridis")
        kwargs.setdefault("sort_order", True)
    kwargs.setdefault("frameon", False)
    axes = sc.pl.embedding(
        adata, basis=key, color=color, ax=ax, vmin=vmin, vmax=vmax, show=False, **kwargs
    )
    colours = [color] if isinstance(color, str) or color is None else list(color)
    for a, c in zip(np.atleast_1d(axes), colours, strict=False):
        if c is not None:
            label_colorbar(
                a,
                colorbar_label if colorbar_label and len(colours) == 1 else quantity_label(str(c)),
            )
    name = key[2:] if key.startswith("X_") else key
    return finish(axes, writekey=name, show=show, save=save, return_fig=return_fig)


def diffusion_entropy(
    adata: AnnData,
    key: str = "diffusion",
    *,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    return_fig: bool = False,
) -> Axes | Figure | None:
    """Von Neumann entropy of Pᵗ against t, with the automatically chosen t marked.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.diffusion` ran with ``t="auto"``.
    key
        ``key_added`` of :func:`scfim.tl.diffusion`.
    title
        Axes title (default "choice of the diffusion time"; ``""`` for none).
    ax, show, save, return_fig
        As in :func:`scanpy.pl.embedding`; see :mod:`scfim.pl`. Write key
        ``"diffusion_entropy"``.

    Returns
    -------
    Axes, Figure or None
        The Axes; the Figure with ``return_fig=True``; None with ``show=True``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    check_plot_args(show, save, return_fig)
    if key not in adata.uns or "entropy" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}]['entropy'] not found; run scfim.tl.diffusion(t='auto')")
    h = np.asarray(adata.uns[key]["entropy"])
    t = int(adata.uns[key]["t"])
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    ts = np.arange(1, h.size + 1)
    ax.plot(ts, h, color="0.2")
    ax.axvline(t, color="tab:red", ls="--", label=f"chosen t = {t}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("von Neumann entropy of Pᵗ")
    ax.set_title("choice of the diffusion time" if title is None else title)
    ax.legend(frameon=False)
    return finish(ax, writekey="diffusion_entropy", show=show, save=save, return_fig=return_fig)
