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

__all__ = ["diffusion_curvature"]


@doc_params()
def diffusion_curvature(
    adata: AnnData,
    *,
    t: int = 16,
    n_neighbors: int = 15,
    ball_neighbors: int = 30,
    smooth: int = 15,
    use_rep: str | None = None,
    flat_reference: bool = True,
    dim: int | None = None,
    random_state: int | None = 0,
    key_added: str = "diffusion_curvature",
    copy: bool = False,
) -> AnnData | None:
    """Pointwise diffusion curvature (Bhaskar et al., NeurIPS 2022).

    ``C(x) = Σ_{y ∈ B(x)} Pᵗ(x, y) / |B(x)|`` is the average probability that a t-step
    random walk from cell x ends in the ball ``B(x)`` of x and its ``ball_neighbors``
    nearest neighbours (in ``use_rep``). P is a Markov matrix of a fixed-bandwidth
    Gaussian kernel (σ = squared median distance to the ``n_neighbors``-th neighbour,
    anisotropy α = 1) on a ``4 · n_neighbors``-NN graph; rows of Pᵗ are computed by sparse
    products, batch by batch. With ``flat_reference=True`` the same quantity at the centre
    of a uniformly sampled flat ball of dimension ``dim``, with the cells' local density
    and the same kernel, is subtracted: positive values mean positive curvature (walks
    stay close), negative values negative curvature. See
    :mod:`scfim.geometry.curvature` for the choices and their reasons.

    Parameters
    ----------
    adata
        Annotated data matrix (cells × features).
    t
        Number of diffusion steps (integer ≥ 1). The default 16 scored 0.955 sign accuracy
        on the sign-prediction benchmark (t = 8: 0.920).
    n_neighbors
        k of the kernel bandwidth (integer ≥ 1).
    ball_neighbors
        Size of the ball: the cell and its ``ball_neighbors`` nearest neighbours.
    smooth
        Average C over the cell and its ``smooth`` nearest neighbours (0: none), and the
        flat reference likewise; a variance reduction (single-cell values vary by ~13 %
        between samples of a 2000-point disc).
    {use_rep}
    flat_reference
        Subtract the flat reference (recommended; the raw value depends on dimension and
        density).
    dim
        Intrinsic dimension of the flat reference; estimated by local PCA (median over
        200 cells of the number of components explaining 90 % of the variance of a
        neighbourhood) when None.
    random_state
        Seed of the flat samples and of the dimension estimate.
    {key_added}
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obs[key_added]``
            ``C(x) − C_flat(x)`` with the flat reference, else ``C(x)`` (float64);
        ``adata.obs[f"{key_added}_raw"]``
            ``C(x)`` (only with the flat reference);
        ``adata.uns[key_added]``
            ``params`` (the arguments, with the resolved ``use_rep``), the kernel bandwidth
            ``sigma`` and, with the flat reference, the dimension ``dim`` used.

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    # ---------------- validate everything before touching adata
    t = check_int("t", t)
    n_neighbors = check_int("n_neighbors", n_neighbors)
    ball_neighbors = check_int("ball_neighbors", ball_neighbors)
    smooth = check_int("smooth", smooth, minimum=0)
    flat_reference = check_bool("flat_reference", flat_reference)
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
    if dim is not None and dim > X.shape[1]:
        raise ValueError(f"dim={dim} exceeds the {X.shape[1]} features of use_rep={rep!r}")

    start = logg.info(f"computing diffusion curvature of {n} cells (use_rep={rep!r})")
    res = _diffusion_curvature(
        X,
        t=t,
        n_neighbors=n_neighbors,
        ball_neighbors=ball_neighbors,
        smooth=smooth,
        flat_reference=bool(flat_reference),
        dim=dim,
        random_state=random_state,
    )

    # ---------------- write
    keys = curvature_keys(key_added)
    adata = adata.copy() if copy else adata
    adata.obs[keys["curvature"][1]] = np.asarray(res.curvature, dtype=np.float64)
    if flat_reference:
        adata.obs[keys["raw"][1]] = np.asarray(res.raw, dtype=np.float64)
    result = {
        "params": {
            "t": t,
            "n_neighbors": n_neighbors,
            "ball_neighbors": ball_neighbors,
            "smooth": smooth,
            "use_rep": rep,
            "flat_reference": bool(flat_reference),
            "dim": dim,
            "random_state": random_state,
        },
        "sigma": float(res.sigma),
    }
    if flat_reference:
        result["dim"] = int(res.dim[0])
    adata.uns[key_added] = clean_for_h5ad(result)
    fields = [keys["curvature"], *([keys["raw"]] if flat_reference else []), keys["uns"]]
    logg.info(
        f"    finished: kernel bandwidth sigma = {res.sigma:.3g}",
        time=start,
        deep=logg.added(fields),
    )
    return adata if copy else None
