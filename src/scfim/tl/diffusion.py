"""``scfim.tl.diffusion``: the diffusion operator on cells."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from ..geometry.diffusion import build_operator
from ._store import write_operator
from ._validate import check_choice, check_common, check_float, check_int, get_rep

__all__ = ["diffusion"]


def _neighbors_distances(adata: AnnData, neighbors_key: str) -> tuple[sp.csr_matrix, dict]:
    if neighbors_key not in adata.uns:
        raise KeyError(
            f"neighbors_key={neighbors_key!r} not in adata.uns; run `sc.pp.neighbors(adata, "
            f"key_added=...)` first or leave neighbors_key=None to compute the kNN graph"
        )
    nb = adata.uns[neighbors_key]
    dkey = nb.get("distances_key", "distances")
    if dkey not in adata.obsp:
        raise KeyError(f"adata.obsp[{dkey!r}] (from neighbors_key={neighbors_key!r}) is missing")
    D = sp.csr_matrix(adata.obsp[dkey], dtype=np.float64)
    D.eliminate_zeros()
    return D, dict(nb.get("params", {}))


@doc_params()
def diffusion(
    adata: AnnData,
    *,
    use_rep: str | None = None,
    n_neighbors: int = 15,
    kernel: str = "alpha_decay",
    decay: float = 40.0,
    sigma: float | None = None,
    alpha: float = 1.0,
    t: int | str = "auto",
    n_landmarks: int | None = 2000,
    neighbors_key: str | None = None,
    knn_method: str = "auto",
    random_state: int | None = 0,
    key_added: str = "diffusion",
    copy: bool = False,
) -> AnnData | None:
    """Diffusion operator P on the cells (neural-FIM Algorithm 1, PHATE's kernel).

    Builds a kNN graph (or reuses scanpy's from ``neighbors_key``), an affinity kernel
    (PHATE's alpha-decay kernel with σ = distance to the k-th neighbour, or a Gaussian
    ``exp(-d²/σ)``), the anisotropic kernel ``K_α = Q^{-α} K Q^{-α}``, the row-stochastic
    Markov matrix P and the diffusion time t (``"auto"``: knee of the von Neumann entropy of
    Pᵗ, as in PHATE). Above ``n_landmarks`` cells the cells are lumped into that many
    landmarks (mini-batch k-means on ``use_rep``), and rows of Pᵗ are distributions over the
    landmarks, computed on demand; no dense ``n × n`` matrix is built.

    Parameters
    ----------
    adata
        Annotated data matrix (cells × features).
    {use_rep}
    n_neighbors
        k of the kNN graph and of the adaptive bandwidth.
    kernel
        ``"alpha_decay"`` or ``"gaussian"``.
    decay
        Alpha-decay exponent.
    sigma
        Gaussian bandwidth (required for ``kernel="gaussian"``); scales squared distances.
    alpha
        Anisotropy in ``[0, 1]`` (1 removes the sampling density).
    t
        Diffusion time (integer ≥ 1) or ``"auto"``.
    n_landmarks
        Landmark count for large data; None forces the exact operator (≤ 10 000 cells).
    neighbors_key
        Reuse ``adata.uns[neighbors_key]`` / its ``obsp`` distances from ``sc.pp.neighbors``.
    knn_method
        ``"auto"`` (exact up to 50 000 cells, else ``"ivf"``), ``"exact"``, ``"ivf"`` or
        ``"pynndescent"``.
    random_state
        Seed of the approximate kNN search and of the landmark clustering.
    {key_added}
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes

        ``adata.obsp[f"{key_added}_transitions"]``
            sparse one-step Markov matrix P (cells × cells);
        ``adata.uns[key_added]``
            ``params``, the diffusion time ``t``, the von Neumann ``entropy`` curve (when
            ``t="auto"``), the stationary weights ``degrees``, ``landmark_labels`` (landmark
            mode), ``n_states`` (length of a row of Pᵗ) and ``transitions_key``.

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.
    """
    # ---------------- validate everything before touching adata
    n_neighbors = check_int("n_neighbors", n_neighbors)
    check_choice("kernel", kernel, ("alpha_decay", "gaussian"))
    sigma = check_float("sigma", sigma, minimum=0, exclusive_minimum=True, allow_none=True)
    if kernel == "gaussian" and sigma is None:
        raise ValueError("kernel='gaussian' needs a bandwidth sigma > 0")
    decay = check_float("decay", decay, minimum=0, exclusive_minimum=True)
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0)
    if isinstance(t, str):
        if t != "auto":
            raise ValueError(f"t must be a positive integer or 'auto', got {t!r}")
    else:
        t = check_int("t", t)
    if n_landmarks is not None:
        n_landmarks = check_int("n_landmarks", n_landmarks, minimum=2)
    if neighbors_key is not None and not isinstance(neighbors_key, str):
        raise TypeError(f"neighbors_key must be a string or None, got {neighbors_key!r}")
    check_choice("knn_method", knn_method, ("auto", "exact", "ivf", "pynndescent"))
    random_state = check_common(random_state, key_added, copy)

    X, rep = get_rep(adata, use_rep)
    n = X.shape[0]
    if n <= n_neighbors:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs more cells than that; got n_obs={n}. "
            "Lower n_neighbors."
        )
    if n_landmarks is None and n > 10_000:
        raise ValueError("the exact operator (n_landmarks=None) is limited to 10 000 cells")
    distances = None
    if neighbors_key is not None:
        distances, _ = _neighbors_distances(adata, neighbors_key)
        if distances.shape != (n, n):
            raise ValueError("the neighbour graph does not match adata's cells")

    start = logg.info(f"computing the diffusion operator of {n} cells (use_rep={rep!r})")
    op, info = build_operator(
        X,
        distances=distances,
        n_neighbors=n_neighbors,
        kernel=kernel,
        decay=decay,
        sigma=sigma,
        alpha=alpha,
        t=t,
        n_landmarks=n_landmarks,
        knn_method=knn_method,
        random_state=random_state,
    )

    # ---------------- write
    adata = adata.copy() if copy else adata
    params = {
        "use_rep": rep,
        "n_neighbors": n_neighbors,
        "kernel": kernel,
        "decay": decay,
        "sigma": sigma,
        "alpha": alpha,
        "t": t if isinstance(t, str) else int(t),
        "n_landmarks": n_landmarks,
        "neighbors_key": neighbors_key,
        "knn_method": knn_method,
        "random_state": random_state,
    }
    fields = write_operator(adata, op, key_added, params=params, entropy=info.get("entropy"))
    logg.info(
        f"    finished: {op.n_states} states, t = {op.t}",
        time=start,
        deep=logg.added(fields),
    )
    return adata if copy else None
