"""``scfim.tl.diffusion``: the diffusion operator on cells."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from ..geometry.diffusion import build_operator
from ._utils import check_int, clean_for_h5ad, get_rep

__all__ = ["diffusion"]

logger = logging.getLogger("scfim")


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
    use_rep
        ``obsm`` key of the input space; default ``"X_pca"`` when present, else ``X``.
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
    key_added
        Name of the result (see below).
    copy
        Return a modified copy instead of writing into ``adata``.

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
    if kernel not in ("alpha_decay", "gaussian"):
        raise ValueError(f"kernel must be 'alpha_decay' or 'gaussian', got {kernel!r}")
    if kernel == "gaussian" and (sigma is None or not np.isfinite(sigma) or sigma <= 0):
        raise ValueError("kernel='gaussian' needs a bandwidth sigma > 0")
    if not np.isfinite(decay) or decay <= 0:
        raise ValueError(f"decay must be > 0, got {decay}")
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if isinstance(t, str):
        if t != "auto":
            raise ValueError(f"t must be a positive integer or 'auto', got {t!r}")
    else:
        t = check_int("t", t)
    if n_landmarks is not None:
        n_landmarks = check_int("n_landmarks", n_landmarks, minimum=2)
    if knn_method not in ("auto", "exact", "ivf", "pynndescent"):
        raise ValueError(
            f"knn_method must be 'auto', 'exact', 'ivf' or 'pynndescent', got {knn_method!r}"
        )

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

    op, info = build_operator(
        X,
        distances=distances,
        n_neighbors=n_neighbors,
        kernel=kernel,
        decay=decay,
        sigma=sigma,
        alpha=float(alpha),
        t=t,
        n_landmarks=n_landmarks,
        knn_method=knn_method,
        random_state=random_state,
    )
    logger.info("diffusion: %d cells, %d states, t=%d", n, op.n_states, op.t)

    # ---------------- write
    adata = adata.copy() if copy else adata
    tkey = f"{key_added}_transitions"
    adata.obsp[tkey] = op.transitions.astype(np.float64)
    result = {
        "params": {
            "use_rep": rep,
            "n_neighbors": n_neighbors,
            "kernel": kernel,
            "decay": float(decay),
            "sigma": None if sigma is None else float(sigma),
            "alpha": float(alpha),
            "t": t if isinstance(t, str) else int(t),
            "n_landmarks": n_landmarks,
            "neighbors_key": neighbors_key,
            "knn_method": knn_method,
            "random_state": random_state,
        },
        "t": int(op.t),
        "degrees": op.degrees,
        "n_states": int(op.n_states),
        "transitions_key": tkey,
    }
    if "entropy" in info:
        result["entropy"] = info["entropy"]
    if op.landmark_labels is not None:
        result["landmark_labels"] = op.landmark_labels
    adata.uns[key_added] = clean_for_h5ad(result)
    return adata if copy else None
