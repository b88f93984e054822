"""``scfim.tl.diffusion_curvature``: pointwise diffusion curvature of the cells."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import curvature_keys
from ..geometry.curvature import diffusion_curvature as _diffusion_curvature
from ._store import clean_for_h5ad
from ._validate import check_bool, check_common, check_int, get_rep
from .geodesic import resolve_cells

__all__ = ["diffusion_curvature"]


@doc_params()
def diffusion_curvature(
    adata: AnnData,
    *,
    t: int = 8,
    n_neighbors: int = 15,
    ball_neighbors: int = 30,
    patch_size: int = 128,
    bandwidth: float = 0.25,
    smooth: int = 0,
    cells=None,
    use_rep: str | None = None,
    flat_reference: bool = True,
    noise_aware: bool = True,
    dim: int | None = None,
    random_state: int | None = 0,
    progress: bool = False,
    key_added: str = "diffusion_curvature",
    copy: bool = False,
) -> AnnData | None:
    """Pointwise diffusion curvature (Bhaskar et al., NeurIPS 2022).

    ``C(x) = Σ_{y ∈ B(x)} Pᵗ(x, y) / |B(x)|`` is the average probability that a t-step
    random walk from cell x ends in the ball ``B(x)`` of x and its ``ball_neighbors``
    nearest neighbours (in ``use_rep``). The walk runs on x's *patch* (x and its
    ``patch_size − 1`` nearest neighbours) with a Gaussian kernel whose bandwidth is tied
    to the patch (``σ_x = bandwidth · R_x²``, ``R_x`` the distance from x to the farthest
    cell of its patch; anisotropy α = 1), so that the walk reaches the same fraction of
    its patch in every dimension and at every sampling density. The
    flat reference ``C_flat(x)`` is the same walk on the same cells after flattening the
    patch onto x's tangent space (local PCA, ``dim`` components; each cell keeps its
    distance from x): sampling noise, density and boundary are shared by both walks and
    cancel in ``C − C_flat``, which is positive for positive and negative for negative
    (scalar) curvature, and exactly 0 on flat data. See :mod:`scfim.geometry.curvature`
    for the choices and their measurements. Exact duplicate cells are collapsed into one
    cell carrying its multiplicity (the walk is the exact lumping of the walk with every
    copy present), and copies get identical values.

    Parameters
    ----------
    adata
        Annotated data matrix (cells × features).
    t
        Number of diffusion steps (integer ≥ 1).
    n_neighbors
        Neighbours per cell of the kNN graph whose two-step neighbourhoods give the
        patches of data sets with more than 50 000 distinct cells (integer ≥ 1).
    ball_neighbors
        Size of the ball: the cell and its ``ball_neighbors`` nearest neighbours (also
        the cells the tangent space is fitted to).
    patch_size
        Cells in each walk's patch; larger patches measure a larger scale at quadratic
        cost per cell.
    bandwidth
        Kernel bandwidth relative to the patch: ``σ_x = bandwidth · R_x²`` (a positive
        number).
    smooth
        Average C and C_flat over the cell and its ``smooth`` nearest neighbours (0: none).
    cells
        Evaluate only these cells (obs names, integer positions or a boolean mask); the
        others get NaN.
        Their values equal those of a run on all cells.
    {use_rep}
    flat_reference
        Subtract the flat reference (recommended; the raw value depends on dimension,
        density and kernel).
    noise_aware
        Keep each cell's scatter off a quadratic surface fitted to its patch (its noise)
        in the flat reference, so that noise does not read as negative curvature.
    dim
        Intrinsic dimension of the flattening; estimated by maximum likelihood from the
        neighbour distances (Levina & Bickel) when None.
    {random_state}
    {progress}
    {key_added}
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obs[key_added]``
            ``C(x) − C_flat(x)`` with the flat reference, else ``C(x)`` (float64; NaN for
            cells not evaluated);
        ``adata.obs[f"{{key_added}}_raw"]``
            ``C(x)`` (only with the flat reference);
        ``adata.uns[key_added]``
            ``params`` (the arguments, with the resolved ``use_rep``), the median kernel
            bandwidth ``sigma`` of the evaluated cells' patches, the dimension ``dim``
            used and ``n_cells`` (cells evaluated).

    Raises
    ------
    ValueError, KeyError, TypeError, IndexError
        On invalid input; ``adata`` is then left unchanged.
    """
    # ---------------- validate everything before touching adata
    t = check_int("t", t)
    n_neighbors = check_int("n_neighbors", n_neighbors)
    ball_neighbors = check_int("ball_neighbors", ball_neighbors)
    patch_size = check_int("patch_size", patch_size, minimum=2)
    smooth = check_int("smooth", smooth, minimum=0)
    flat_reference = check_bool("flat_reference", flat_reference)
    noise_aware = check_bool("noise_aware", noise_aware)
    progress = check_bool("progress", progress)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float, np.number)):
        raise TypeError(f"bandwidth must be a number, got {bandwidth!r}")
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    bandwidth = float(bandwidth)
    if dim is not None:
        dim = check_int("dim", dim)
    random_state = check_common(random_state, key_added, copy)
    X, rep = get_rep(adata, use_rep)
    n = X.shape[0]
    need = max(n_neighbors, ball_neighbors, smooth) + 2
    if n < need:
        raise ValueError(
            f"need at least max(n_neighbors, ball_neighbors, smooth) + 2 = {need} cells, "
            f"got {n}; lower n_neighbors, ball_neighbors or smooth"
        )
    if patch_size < need - 1:
        raise ValueError(
            f"patch_size must exceed max(n_neighbors, ball_neighbors, smooth) = {need - 2}, "
            f"got {patch_size}"
        )
    if dim is not None and dim > X.shape[1]:
        raise ValueError(f"dim={dim} exceeds the {X.shape[1]} features of use_rep={rep!r}")
    idx = None if cells is None else resolve_cells(adata, cells)

    start = logg.info(
        f"computing diffusion curvature of {n if idx is None else idx.size} cells (use_rep={rep!r})"
    )
    res = _diffusion_curvature(
        X,
        t=t,
        n_neighbors=n_neighbors,
        ball_neighbors=ball_neighbors,
        patch_size=patch_size,
        bandwidth=bandwidth,
        cells=idx,
        smooth=smooth,
        dim=dim,
        noise_aware=noise_aware,
        progress=progress,
        random_state=random_state,
    )

    # ---------------- write
    keys = curvature_keys(key_added)
    curv = np.full(n, np.nan)
    raw = np.full(n, np.nan)
    curv[res.idx] = res.curvature if flat_reference else res.raw
    raw[res.idx] = res.raw
    adata = adata.copy() if copy else adata
    adata.obs[keys["curvature"][1]] = curv
    if flat_reference:
        adata.obs[keys["raw"][1]] = raw
    result = {
        "params": {
            "t": t,
            "n_neighbors": n_neighbors,
            "ball_neighbors": ball_neighbors,
            "patch_size": patch_size,
            "bandwidth": bandwidth,
            "smooth": smooth,
            "use_rep": rep,
            "flat_reference": bool(flat_reference),
            "noise_aware": bool(noise_aware),
            "dim": dim,
            "random_state": random_state,
        },
        "sigma": float(np.median(res.sigma)),
        "dim": int(res.dim),
        "n_cells": int(np.unique(res.idx).size),
    }
    adata.uns[key_added] = clean_for_h5ad(result)
    fields = [keys["curvature"], *([keys["raw"]] if flat_reference else []), keys["uns"]]
    logg.info(
        f"    finished: median kernel bandwidth sigma = {np.median(res.sigma):.3g}, "
        f"dimension {res.dim}",
        time=start,
        deep=logg.added(fields),
    )
    return adata if copy else None
