"""``scfim.tl.fisher_rao_pseudotime``: Fisher–Rao geodesic distance of every cell from a root."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _logging as logg
from .._docs import doc_params
from .._keys import pseudotime_keys
from ..geometry.distances import geodesic_pseudotime
from ..models.neural_fim import check_device
from ._validate import check_bool, check_common, check_float, check_int, check_key_added
from .geodesic import _fim_setup, resolve_cells

__all__ = ["fisher_rao_pseudotime"]


def _resolve_roots(adata: AnnData, root) -> np.ndarray:
    """Root cells: obs names / positions, ``{obs_column: group(s)}``, or ``uns["iroot"]``."""
    if root is None:
        if "iroot" not in adata.uns:
            raise KeyError(
                "root=None needs adata.uns['iroot'] (as for sc.tl.dpt); pass root= cells "
                "or a group, e.g. root={'leiden': '0'}"
            )
        return resolve_cells(adata, int(adata.uns["iroot"]))
    if isinstance(root, dict):
        if len(root) != 1:
            raise ValueError(f"a group root is one {{obs_column: group(s)}}, got {root!r}")
        ((col, groups),) = root.items()
        if col not in adata.obs:
            raise KeyError(f"{col!r} is not a column of adata.obs")
        groups = [groups] if np.ndim(groups) == 0 else list(groups)
        values = adata.obs[col].astype(str)
        mask = values.isin([str(g) for g in groups]).to_numpy()
        if not mask.any():
            raise ValueError(f"no cell of adata.obs[{col!r}] is in {groups!r}")
        return np.flatnonzero(mask)
    if isinstance(root, str) and root not in adata.obs_names:
        groups = [
            c
            for c in adata.obs.columns
            if isinstance(adata.obs[c].dtype, pd.CategoricalDtype)
            and root in adata.obs[c].cat.categories
        ]
        if groups:  # a group's name given as if it were a cell's
            raise KeyError(
                f"{root!r} is not a cell of adata.obs_names but a group of "
                f"adata.obs[{groups[0]!r}]; for its cells as roots pass "
                f"root={{{groups[0]!r}: {root!r}}}"
            )
    return resolve_cells(adata, root)


@doc_params()
def fisher_rao_pseudotime(
    adata: AnnData,
    root=None,
    *,
    fim_key: str = "neural_fim",
    density_weight: float = 1e-3,
    n_neighbors: int = 15,
    n_landmarks: int = 0,
    random_state: int | None = 0,
    progress: bool = True,
    device: str = "cpu",
    key_added: str = "fisher_rao_pseudotime",
    copy: bool = False,
) -> AnnData | None:
    """Fisher–Rao geodesic distance of every cell from the nearest root cell.

    Cells are the vertices of a kNN graph (``n_neighbors``, in the input space of
    :func:`scfim.tl.neural_fim`) whose edges carry their Riemannian lengths under the
    learned Fisher information metric (Fasina et al., ICML 2023; an ensemble's metrics
    are averaged) plus ``density_weight`` times the density metric ``I / (p(x) + ε)``
    (Hauberg's density metric, on the kNN-restricted Gaussian mixture of the cells). Short
    edges are nearly straight, so the length of the straight segment (midpoint rule, two
    pieces) is nearly the geodesic distance, and shortest paths of the graph (one
    multi-source Dijkstra run) approximate Fisher–Rao geodesic distances, as Isomap does
    for Euclidean ones (Tenenbaum et al., 2000). With ``n_landmarks`` that many
    farthest-point landmark cells are connected to their root by the energy solver
    (:func:`scfim.geometry.geodesic.energy_geodesic`) and every cell's distance is
    ``min(d_graph(root, c), min_ℓ d_geodesic(root, ℓ) + d_graph(ℓ, c))``.

    Unlike ``sc.tl.dpt``, the distance is a length in information units (it adds up
    along the trajectory) rather than a diffusion-map distance.

    Parameters
    ----------
    adata
        Annotated data on which :func:`scfim.tl.neural_fim` ran.
    root
        Root cell(s): obs names or integer positions (scalar or list), a boolean mask over
        the cells, or a group
        ``{obs_column: category}`` (or a list of categories) whose cells are all roots;
        None uses ``adata.uns["iroot"]`` as ``sc.tl.dpt`` does.
    fim_key
        ``key_added`` of :func:`scfim.tl.neural_fim`.
    density_weight
        Weight of the density metric relative to the median ``tr g / d`` of the Fisher
        metric on the cells (as in :func:`scfim.tl.geodesic`); 0 disables it.
    n_neighbors
        Neighbours per cell of the graph.
    n_landmarks
        Landmarks refined by the energy solver (0: graph distances only).
    random_state
        Seed of the approximate kNN search on large data.
    {progress}
    device
        Torch device of the metric, the edge lengths and the landmark geodesics
        (``"cpu"``, ``"cuda"``…; an unavailable device is an error); Dijkstra runs on the
        host.
    key_added
        Name of the ``obs`` columns and the ``uns`` entry.
    {copy}

    Returns
    -------
    AnnData or None
        None, or the modified copy when ``copy=True``. Writes
        ``adata.obs[key_added]`` (float, Fisher–Rao distance from the nearest root; 0 at the
        roots), ``adata.obs[f"{key_added}_root"]`` (categorical, obs name of that root) and
        ``adata.uns[key_added]`` with ``roots`` (obs names) and ``params``.
    """
    random_state = check_common(random_state, key_added, copy)
    check_key_added(fim_key, "fim_key")
    density_weight = check_float("density_weight", density_weight, minimum=0.0)
    n_neighbors = check_int("n_neighbors", n_neighbors)
    n_landmarks = check_int("n_landmarks", n_landmarks, minimum=0)
    progress = check_bool("progress", progress)
    dev = check_device(device)
    roots = _resolve_roots(adata, root)
    X, use_rep, metric, _ = _fim_setup(adata, fim_key, density_weight, dev)

    start = logg.info(f"computing Fisher–Rao pseudotime from {np.unique(roots).size} root(s)")

    dist, nearest = geodesic_pseudotime(
        metric,
        X,
        roots,
        n_landmarks=n_landmarks,
        n_neighbors=n_neighbors,
        random_state=random_state,
        progress=progress,
    )
    roots = np.unique(roots)
    names = np.asarray(adata.obs_names[roots]).astype(str)

    keys = pseudotime_keys(key_added)
    adata = adata.copy() if copy else adata
    adata.obs[keys["pseudotime"][1]] = dist
    adata.obs[keys["root"][1]] = pd.Categorical(names[nearest], categories=np.unique(names))
    adata.uns[keys["uns"][1]] = {
        "roots": names,
        "params": {
            "fim_key": fim_key,
            "density_weight": float(density_weight),
            "n_neighbors": n_neighbors,
            "n_landmarks": n_landmarks,
            "use_rep": use_rep,
            "device": str(dev),
        },
    }
    logg.info(
        "    finished",
        time=start,
        deep=logg.added(*(keys[k] for k in ("pseudotime", "root", "uns"))),
    )
    return adata if copy else None
