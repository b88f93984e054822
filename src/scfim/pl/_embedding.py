"""Embedding plots (thin wrappers over scanpy)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

__all__ = ["embedding", "diffusion_entropy"]


def embedding(
    adata: AnnData,
    basis: str = "X_jsd_phate",
    *,
    color: str | list[str] | None = None,
    ax: Axes | None = None,
    **kwargs,
) -> Axes | list[Axes]:
    """Scatter plot of a 2-D embedding coloured by an obs column or a gene.

    Thin wrapper over :func:`scanpy.pl.embedding` that never calls ``plt.show`` and
    returns the Axes. Continuous geometric quantities (``fim_volume``, ``fim_trace`` …)
    default to the ``viridis`` colour map and to plotting high values on top.

    Parameters
    ----------
    adata
        Annotated data.
    basis
        ``obsm`` key of the embedding (with or without the ``X_`` prefix).
    color
        ``obs`` column(s) or gene name(s).
    ax
        Axes to draw into (single ``color`` only).
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    Axes or list of Axes
        The Axes (a list when several colours were requested).
    """
    import scanpy as sc

    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        raise KeyError(f"basis {basis!r} not in adata.obsm (available: {list(adata.obsm.keys())})")
    if (
        isinstance(color, str)
        and color in adata.obs
        and pd.api.types.is_numeric_dtype(adata.obs[color])
    ):
        kwargs.setdefault("color_map", "viridis")
        kwargs.setdefault("sort_order", True)
    kwargs.setdefault("frameon", False)
    return sc.pl.embedding(adata, basis=key, color=color, ax=ax, show=False, **kwargs)


def diffusion_entropy(adata: AnnData, key: str = "diffusion", *, ax: Axes | None = None) -> Axes:
    """Von Neumann entropy of Pᵗ against t, with the automatically chosen t marked."""
    if key not in adata.uns or "entropy" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}]['entropy'] not found; run scfim.tl.diffusion(t='auto')")
    h = np.asarray(adata.uns[key]["entropy"])
    t = int(adata.uns[key]["t"])
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    ts = np.arange(1, h.size + 1)
    ax.plot(ts, h, color="0.2")
    ax.axvline(t, color="tab:red", ls="--", label=f"t = {t}")
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("von Neumann entropy")
    ax.legend(frameon=False)
    return ax
