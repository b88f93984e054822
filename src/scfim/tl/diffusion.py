"""``scfim.tl.diffusion``: the diffusion operator on cells."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import rep_matrix
from ..geometry.diffusion import build_operator, distinct_states
from ._store import write_operator
from ._validate import check_choice, check_common, check_float, check_int, get_rep

__all__ = ["diffusion"]


_AUTO = "auto"
#: Above this many features, ``use_rep=None`` without ``obsm["X_pca"]`` warns (scanpy's
#: neighbours compute a PCA there instead of using ``X``).
MAX_UNREDUCED_FEATURES = 50
#: k of the kNN graph when ``n_neighbors=None``: the kernel scale at which the per-cell FIM
#: learned from the operator is reproducible between training seeds (see
#: :func:`scfim.tl.neural_fim`).
DEFAULT_N_NEIGHBORS = 30


def _stored_float32(adata: AnnData, rep: str, X: np.ndarray) -> np.ndarray:
    """The representation as stored when it is a dense float32 array, else ``X``.

    ``X`` is the validated float64 copy. The operator is the same from either (the
    clustering and the kNN search run in float32, the kNN distances are refined in float64
    from the float32 values, duplicates are compared in float64), so a float32
    representation is not held twice its size for the whole computation.
    """
    M = rep_matrix(adata, rep)
    if type(M) is not np.ndarray and isinstance(M, np.ndarray):
        M = np.asarray(M)  # an AnnData view of the array
    if isinstance(M, np.ndarray) and M.dtype == np.float32 and M.shape == X.shape:
        return M
    return X


def _graph_k(adata: AnnData, key: str) -> int | None:
    """The k that ``sc.pp.neighbors`` stored in ``uns[key]`` (None when absent)."""
    nb = adata.uns.get(key)
    params = nb.get("params", {}) if isinstance(nb, dict) else {}
    k = params.get("n_neighbors") if isinstance(params, dict) else None
    return None if k is None else int(np.asarray(k).ravel()[0])


def _scanpy_graph(
    adata: AnnData,
    neighbors_key: str | None,
    rep: str,
    n_neighbors: int,
    has_duplicates: bool,
    chosen: bool = True,
) -> tuple[sp.csr_matrix | None, str | None, str]:
    """The kNN distances to reuse (or None), the key they come from, and why (for the log).

    ``neighbors_key="auto"`` reuses ``uns["neighbors"]`` when it is compatible: Euclidean,
    computed on ``rep`` (scanpy's own default representation when it stored none), with at
    least ``n_neighbors`` neighbours, one row per cell, and no duplicate cells (which scfim
    collapses, while a precomputed graph keeps them apart). An explicit key is always used.
    ``chosen=False`` marks ``n_neighbors`` as scfim's default rather than the user's: a
    stored graph whose k is below it is then passed over with a note in the log instead of
    a warning.
    """
    if neighbors_key is None:
        return None, None, f"building a kNN graph on {rep!r} (neighbors_key=None)"
    explicit = neighbors_key != _AUTO
    key = neighbors_key if explicit else "neighbors"
    if key not in adata.uns:
        if explicit:
            raise KeyError(
                f"neighbors_key={key!r} not in adata.uns; run `sc.pp.neighbors(adata, "
                "key_added=...)` first, or leave neighbors_key='auto' / None to let scfim "
                "compute the kNN graph"
            )
        return None, None, f"building a kNN graph on {rep!r} (no sc.pp.neighbors graph)"
    nb = adata.uns[key]
    params = dict(nb.get("params", {})) if isinstance(nb, dict) else {}
    dkey = str(nb.get("distances_key", "distances")) if isinstance(nb, dict) else "distances"
    graph_rep = params.get("use_rep")
    if graph_rep is None:  # scanpy's default representation
        graph_rep = "X_pca" if adata.n_vars > 50 else "X"
    graph_rep = str(graph_rep)
    n_pcs = params.get("n_pcs")
    if n_pcs is not None and graph_rep == "X_pca" and "X_pca" in adata.obsm:
        if int(np.asarray(n_pcs)) < adata.obsm["X_pca"].shape[1]:
            graph_rep = f"the first {int(np.asarray(n_pcs))} columns of X_pca"
    metric = str(params.get("metric", "euclidean"))
    k = _graph_k(adata, key)
    where = f"uns[{key!r}]"
    problems = []
    if dkey not in adata.obsp:
        problems.append(f"adata.obsp[{dkey!r}] is missing")
    elif adata.obsp[dkey].shape != (adata.n_obs, adata.n_obs):
        problems.append("its graph does not match adata's cells")
    if explicit and problems:
        raise KeyError(f"neighbors_key={key!r}: {problems[0]}")
    if graph_rep != rep:
        problems.append(f"it was computed on {graph_rep!r}, not use_rep={rep!r}")
    if metric != "euclidean":
        problems.append(f"its metric is {metric!r}, not Euclidean")
    if has_duplicates:
        problems.append("the data have duplicate cells, which scfim collapses into one state")
    if k is not None and n_neighbors > k:
        if not chosen and not explicit:
            problems.append(
                f"its k={k} is below scfim's default n_neighbors={n_neighbors} (pass "
                f"n_neighbors={k} to reuse it)"
            )
        elif explicit:
            warnings.warn(
                f"n_neighbors={n_neighbors} exceeds the k={k} of the graph in {where}: the "
                f"bandwidth uses the farthest of its neighbours; rerun "
                f"`sc.pp.neighbors(adata, n_neighbors={n_neighbors})` for a larger graph",
                UserWarning,
                stacklevel=3,
            )
        else:
            warnings.warn(
                f"n_neighbors={n_neighbors} exceeds the k={k} of the graph in {where}, so "
                f"scfim builds its own {n_neighbors}-NN graph; pass neighbors_key={key!r} to "
                f"use the stored graph anyway, or rerun `sc.pp.neighbors(adata, "
                f"n_neighbors={n_neighbors})`",
                UserWarning,
                stacklevel=3,
            )
            problems.append(f"its k={k} is below n_neighbors={n_neighbors}")
    if explicit:
        for p in problems:
            warnings.warn(
                f"neighbors_key={key!r}: {p}; using it as requested",
                UserWarning,
                stacklevel=3,
            )
    elif problems:
        return (
            None,
            None,
            f"building a kNN graph on {rep!r}, not reusing {where}: " + "; ".join(problems),
        )
    D = sp.csr_matrix(adata.obsp[dkey], dtype=np.float64)
    D.eliminate_zeros()
    return (
        D,
        key,
        f"using the kNN graph of sc.pp.neighbors in {where} (k={k}, on {graph_rep!r})",
    )


def _results_from(adata: AnnData, key: str) -> list[str]:
    """The ``uns`` entries of tools that ran on the operator ``uns[key]``.

    They are those whose ``params["diffusion_key"]`` is ``key``.
    """
    found = []
    for name, entry in adata.uns.items():
        params = entry.get("params") if isinstance(entry, dict) else None
        if isinstance(params, dict) and str(params.get("diffusion_key", "")) == key:
            found.append(str(name))
    return found


def _states_meaning(op) -> str:
    """What the operator's states are, for the log."""
    if op.duplicates_collapsed:
        return "one per distinct cell"
    if op.is_landmark:
        return "landmarks: the chain runs between clusters of nearby cells"
    return "one per cell"


def _same_params(old: dict, new: dict) -> bool:
    try:
        return all(
            np.array_equal(np.asarray(old.get(k), dtype=object), np.asarray(v, dtype=object))
            for k, v in new.items()
        )
    except (TypeError, ValueError):
        return False


@doc_params()
def diffusion(
    adata: AnnData,
    *,
    use_rep: str | None = None,
    n_neighbors: int | None = None,
    kernel: str = "alpha_decay",
    decay: float = 40.0,
    sigma: float | None = None,
    alpha: float = 1.0,
    t: int | str = "auto",
    n_landmarks: int | str | None = "auto",
    neighbors_key: str | None = "auto",
    knn_method: str = "auto",
    random_state: int | None = 0,
    key_added: str = "diffusion",
    copy: bool = False,
) -> AnnData | None:
    """Diffusion operator P on the cells (neural-FIM Algorithm 1, PHATE's kernel).

    Builds a kNN graph (or reuses the one of ``sc.pp.neighbors``), an affinity kernel
    (PHATE's alpha-decay kernel with σ = distance to the k-th neighbour, or a Gaussian
    ``exp(-d²/σ)``), the anisotropic kernel ``K_α = Q^{-α} K Q^{-α}``, the row-stochastic
    Markov matrix P and the diffusion time t (``"auto"``: knee of the von Neumann entropy of
    Pᵗ, as in PHATE). Above ``n_landmarks`` cells the cells are lumped into that many
    landmarks (mini-batch k-means on ``use_rep``), and rows of Pᵗ are distributions over the
    landmarks, computed on demand; no dense ``n × n`` matrix is built.

    Exact duplicate cells are collapsed into one state carrying its multiplicity: the kNN
    graph and bandwidths are those of the distinct cells, and P is the chain on all cells
    whose kernel between two cells is the kernel of their states (two copies have affinity
    1). That chain is exactly lumpable onto the states, so every copy gets the same row of
    Pᵗ and the same results downstream; data without duplicates are unaffected.

    Replacing an operator with one of other parameters logs a warning that names the
    results computed from the previous one (e.g. ``uns["neural_fim"]``,
    ``uns["jsd_phate"]``), which are then out of date.

    Parameters
    ----------
    adata
        Annotated data matrix (cells × features).
    {use_rep}
    n_neighbors
        k of the kNN graph and of the adaptive bandwidth (at least 2): the kernel's scale.
        A larger k gives smoother rows of the operator (and of everything learned from
        it, such as the per-cell FIM of :func:`scfim.tl.neural_fim`) at a coarser
        resolution. None
        (default): 30, the scale at which the per-cell FIM is reproducible between
        training seeds, or the k of the graph named by ``neighbors_key`` (at most the
        number of distinct cells minus one). With ``neighbors_key="auto"``, a graph of
        ``sc.pp.neighbors`` with a smaller k (scanpy's default is 15) is then not reused:
        scfim builds its own 30-NN graph and says so in the log; pass ``n_neighbors``
        equal to that k to reuse it.
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
        Landmark count for large data: ``"auto"`` (one landmark per six cells, between 500
        and 2000; the exact operator up to 500 cells, see
        :func:`scfim.geometry.diffusion.landmark_count`), an integer (landmarks when
        ``n_obs`` exceeds it), or None to force the exact operator (≤ 10 000 cells).
    neighbors_key
        ``"auto"``: reuse the graph of ``sc.pp.neighbors`` (``uns["neighbors"]`` and its
        ``obsp`` distances) when it is there and compatible: computed on ``use_rep`` (for
        a graph that stored none, scanpy's own default, ``X_pca`` above 50 genes), Euclidean,
        ``n_neighbors`` at most its k (scanpy's k counts the cell itself), and no duplicate
        cells; otherwise build one, with a warning when only the k is too small for an
        ``n_neighbors`` that was given (for the default k, a note in the log). A key:
        use ``adata.uns[key]`` as given (warning about any incompatibility). None: always
        build scfim's own graph. The log says which graph was used.
    knn_method
        ``"auto"`` (exact up to 5000 distinct cells; beyond, an inverted-file search
        (``"ivf"``) over the landmark clusters, or, with the exact operator, exact up to
        50 000 cells), ``"exact"``, ``"ivf"`` or ``"pynndescent"``.
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
            mode, or with duplicates the state of each cell), ``duplicates_collapsed``,
            ``n_distinct`` (number of distinct cells), ``n_states`` (length of a row of Pᵗ),
            ``transitions_key``, and per cell what placing new cells needs
            (``kernel_degrees``, ``radii``, ``bandwidths``; see
            :func:`scfim.tl.jsd_phate_transform`). ``params`` keeps every argument,
            ``None`` included, except ``n_neighbors``, which is the k used (30 for None);
            ``neighbors_key`` is the key of the graph used (None: scfim's own).

    Raises
    ------
    ValueError, KeyError, TypeError
        On invalid input; ``adata`` is then left unchanged.

    Warns
    -----
    UserWarning
        When the graph of ``sc.pp.neighbors`` cannot be used as it is (see
        ``neighbors_key``), and when ``use_rep=None`` falls back to an ``X`` of more than 50
        features because there is no ``obsm["X_pca"]`` (scanpy would reduce such data to
        principal components first; ``use_rep="X"`` uses ``X`` as it is without a warning).
    """
    # ---------------- validate everything before touching adata
    chosen = n_neighbors is not None
    if chosen:
        n_neighbors = check_int("n_neighbors", n_neighbors, minimum=2)
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
    if n_landmarks is not None and not (isinstance(n_landmarks, str) and n_landmarks == "auto"):
        n_landmarks = check_int("n_landmarks", n_landmarks, minimum=2)
    if neighbors_key is not None and not isinstance(neighbors_key, str):
        raise TypeError(f"neighbors_key must be 'auto', a string or None, got {neighbors_key!r}")
    check_choice("knn_method", knn_method, ("auto", "exact", "ivf", "pynndescent"))
    random_state = check_common(random_state, key_added, copy)

    X, rep = get_rep(adata, use_rep)
    if use_rep is None and rep == "X" and X.shape[1] > MAX_UNREDUCED_FEATURES:
        warnings.warn(
            f"use_rep=None and adata.obsm has no 'X_pca': the kNN graph, the operator and "
            f"what is learned from it use adata.X with {X.shape[1]} features. scanpy reduces "
            f"data with more than {MAX_UNREDUCED_FEATURES} features to principal components "
            "first: run `sc.pp.pca(adata)` before, or pass use_rep='X' to use X as it is",
            UserWarning,
            stacklevel=2,
        )
    X = _stored_float32(adata, rep, X)
    n = X.shape[0]
    states = distinct_states(X)
    n_distinct = n if states is None else states.n_distinct
    if not chosen:
        if n_distinct < 3:
            raise ValueError(
                f"the diffusion operator needs at least 3 distinct cells; adata has {n_distinct}"
            )
        n_neighbors, k_note = DEFAULT_N_NEIGHBORS, "scfim's default"
        k_graph = _graph_k(adata, neighbors_key) if neighbors_key not in (None, _AUTO) else None
        if k_graph is not None:  # a graph asked for: its own k
            n_neighbors, k_note = k_graph, f"the k of uns[{neighbors_key!r}]"
        if n_neighbors > n_distinct - 1:
            k_note += f" {n_neighbors}, capped at the {n_distinct} distinct cells minus one"
            n_neighbors = n_distinct - 1
    if n <= n_neighbors:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs more cells than that; got n_obs={n}. "
            "Lower n_neighbors."
        )
    if n_distinct <= n_neighbors:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs more distinct cells than that; adata has "
            f"{n_distinct} distinct cells among {n} (the others are exact copies). Lower "
            "n_neighbors."
        )
    distances, graph_key, graph_note = _scanpy_graph(
        adata, neighbors_key, rep, n_neighbors, states is not None, chosen=chosen
    )
    if n_landmarks is None and (n if distances is not None else n_distinct) > 10_000:
        raise ValueError("the exact operator (n_landmarks=None) is limited to 10 000 cells")

    start = logg.info(f"computing the diffusion operator of {n} cells (use_rep={rep!r})")
    if not chosen:
        logg.info(f"    n_neighbors={n_neighbors} ({k_note})")
    logg.info(f"    {graph_note}")
    if states is not None and distances is None:
        logg.info(
            f"    {n - n_distinct} cells are exact copies of others: {n_distinct} distinct "
            "states, each weighted by its multiplicity"
        )
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
    previous = adata.uns.get(key_added)
    params = {
        "use_rep": rep,
        "n_neighbors": n_neighbors,
        "kernel": kernel,
        "decay": decay,
        "sigma": sigma,
        "alpha": alpha,
        "t": t if isinstance(t, str) else int(t),
        "n_landmarks": n_landmarks,
        "neighbors_key": graph_key,
        "knn_method": knn_method,
        "random_state": random_state,
    }
    extra = {
        k: info[k] for k in ("n_distinct", "kernel_degrees", "radii", "bandwidths") if k in info
    }
    stale = []
    if isinstance(previous, dict) and not _same_params(previous.get("params", {}), params):
        stale = _results_from(adata, key_added)
    fields = write_operator(
        adata, op, key_added, params=params, entropy=info.get("entropy"), extra=extra
    )
    if stale:
        logg.warning(
            f"tl.diffusion replaced uns[{key_added!r}] with another operator; "
            + ", ".join(f"uns[{k!r}]" for k in stale)
            + " and the fields written with them were computed from the previous one: "
            "run those tools again"
        )
    logg.info(
        f"    finished: {op.n_states} diffusion states ({_states_meaning(op)}), t = {op.t}",
        time=start,
        deep=logg.added(fields),
    )
    return adata if copy else None
