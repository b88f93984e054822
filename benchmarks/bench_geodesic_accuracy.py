"""Fisher–Rao geodesic distances against ground truth, side by side with kNN-graph Dijkstra.

Data: the unit sphere (in R³, and rotated into R¹⁰ by a random orthogonal matrix) and the
swiss roll (``scfim.datasets.swiss_roll``, arc-length sampling), clean and with isotropic
Gaussian noise of 0.05 and 0.1 times the manifold's scale (the RMS distance of the clean
points from their centroid: 1 for the sphere), added in every ambient coordinate. Exact
geodesic distances: great circles of the clean points; Euclidean distances in the roll's
isometric coordinates.

For every data set a neural FIM is trained with defaults (``tl.diffusion``,
``tl.neural_fim``), and the distances among evenly spaced cells are computed by

- ours, graph: ``tl.fisher_rao_distances`` (default: shortest paths of the kNN graph, k =
  15, whose edges carry their Fisher–Rao lengths under the FIM + density metric, with the
  edges the metric stretches more than twice as much as their neighbours removed),
- ours, all edges: the same without removing stretched edges (``max_stretch=None``),
- ours, energy: the graph paths refined by the energy solver (``method="energy"``),
- peer: Dijkstra on the Euclidean kNN graph (k = 10 and 15),
- ceiling: the same k = 15 graph with every edge given its *true* length (the distance on
  the manifold between the clean points): what any edge-length model can reach on it,
- operator: the same graph with every edge given the exact Fisher–Rao distance between the
  two cells' rows of Pᵗ (the data's operator without landmarks, at its t): the geometry
  the neural FIM learns, with no network and no density term.

Fisher–Rao lengths are in information units, so every method's distances are compared
after one least-squares scale (α = Σ d·g / Σ d²): mean relative error |α d − g| / g, and
Spearman's ρ with the truth (pair by pair). The column "metric spread" diagnoses the
learned metric itself: the standard deviation, over the longer half of the edges of the
kNN graph (k = 10), of log(Fisher–Rao edge length / true edge length); 0 for a metric
proportional to the truth, about the coefficient of variation of the ratio when small.

Usage::

    python benchmarks/bench_geodesic_accuracy.py [--quick] [--no-refine] [--cache DIR]
        [--seed S] [--kernel gaussian] [--sigma-scale F] [--t T] [--exact-operator]

``--cache DIR`` keeps the trained AnnData of every data set there (pickled) and reuses it.
``--seed`` draws another, independent sample of every data set (and its rotation and
noise). ``--kernel gaussian`` trains the FIM on a diffusion operator with one fixed
Gaussian bandwidth (the median distance to the 15th neighbour) instead of PHATE's adaptive
alpha-decay kernel (``--sigma-scale F``: F times that bandwidth), ``--t T`` at a fixed
diffusion time instead of the automatic one, and ``--exact-operator`` without landmarks:
the choices of the diffusion step that the learned metric's distortion depends on
(``bench_operator_ceiling.py`` measures the operators themselves).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import fmt, gaussian_sigma, table


def make(kind: str, n: int, noise: float, dim: int, seed: int = 0):
    """Noisy points ``X``, clean points, and a function giving exact distances of pairs."""
    from scfim.datasets import swiss_roll

    rng = np.random.default_rng(seed)
    if kind == "sphere":
        U = rng.normal(size=(n, 3))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        clean, intrinsic = U, U
    else:
        a = swiss_roll(n_obs=n, sampling="arclength", random_state=seed)
        clean = np.asarray(a.X, dtype=np.float64)
        intrinsic = np.asarray(a.obsm["intrinsic"], dtype=np.float64)
    scale = float(np.sqrt(((clean - clean.mean(0)) ** 2).sum(1).mean()))
    X = clean
    if dim > clean.shape[1]:
        Q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        X = np.c_[clean, np.zeros((n, dim - clean.shape[1]))] @ Q.T
    X = X + noise * scale * rng.normal(size=X.shape)

    def truth(i, j):
        if kind == "sphere":
            return np.arccos(np.clip((intrinsic[i] * intrinsic[j]).sum(-1), -1, 1))
        return np.linalg.norm(intrinsic[i] - intrinsic[j], axis=-1)

    return X, truth


def scores(est: np.ndarray, tru: np.ndarray) -> tuple[float, float]:
    """Spearman and mean relative error (%) after one least-squares scale."""
    from scipy.stats import spearmanr

    alpha = float((est * tru).sum() / (est * est).sum())
    return float(spearmanr(est, tru).statistic), float(
        100 * np.mean(np.abs(alpha * est - tru) / tru)
    )


def trained(
    kind, n, noise, dim, cache, seed=0, kernel="alpha_decay", exact=False, t="auto", sigma_scale=1.0
):
    """A data set after ``tl.diffusion`` and ``tl.neural_fim`` (defaults unless asked).

    Returns the AnnData, the truth and the training time (None when read from ``cache``).
    """
    import pickle
    from pathlib import Path

    import anndata as ad

    import scfim

    X, truth = make(kind, n, noise, dim, seed)
    tag = "" if seed == 0 else f"_seed{seed}"
    tag += "" if kernel == "alpha_decay" else f"_{kernel}"
    tag += "_exact" if exact else ""
    tag += "" if t == "auto" else f"_t{t}"
    tag += "" if sigma_scale == 1.0 else f"_sigma{sigma_scale:g}"
    path = None if cache is None else Path(cache) / f"{kind}{dim}_{noise}_{n}{tag}.pkl"
    if path is not None and path.exists():
        with path.open("rb") as f:
            return pickle.load(f), truth, None
    a = ad.AnnData(X.astype(np.float32))
    t0 = time.perf_counter()
    op = {"n_landmarks": None} if exact else {}
    if kernel == "gaussian":
        op["sigma"] = sigma_scale * gaussian_sigma(X)
    scfim.tl.diffusion(a, use_rep="X", random_state=0, kernel=kernel, t=t, **op)
    scfim.tl.neural_fim(a, random_state=0, progress=False)
    train = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pickle.dump(a, f)
    return a, truth, train


def fisher_rao_edges(op, graph, chunk: int = 2048):
    """``graph`` with each edge's length the Fisher–Rao distance of its cells' rows of Pᵗ.

    ``op`` is a :class:`~scfim.geometry.diffusion.DiffusionOperator`; its landmarks, if
    any, are dropped, so the rows are those of the exact chain on the cells: the lengths
    are those of the statistical manifold the neural FIM approximates.
    """
    import dataclasses

    import scipy.sparse as sp

    from scfim.geometry.divergences import fisher_rao

    op = dataclasses.replace(op, landmark_labels=None, _cache={})
    R = op.rows(np.arange(op.n_obs))
    G = graph.tocoo()
    fr = np.concatenate(
        [
            fisher_rao(R[G.row[s : s + chunk]], R[G.col[s : s + chunk]])
            for s in range(0, G.nnz, chunk)
        ]
    )
    return sp.csr_matrix((np.maximum(fr, 1e-12), (G.row, G.col)), shape=G.shape)


def run(kind, n, noise, dim, n_cells, refine, rows, cache=None, **data) -> None:
    """Train on one data set, measure every method, append and print its rows."""
    import scipy.sparse as sp

    import scfim
    from scfim.geometry.distances import geodesic_distances, metric_graph
    from scfim.geometry.graph import knn_graph, metric_edge_lengths, shortest_paths, symmetrize
    from scfim.tl._store import read_operator
    from scfim.tl.geodesic import _fim_setup

    a, truth, train = trained(kind, n, noise, dim, cache, **data)
    Xd = np.asarray(a.X, dtype=np.float64)
    cells = np.linspace(0, n - 1, n_cells).astype(int)
    iu = np.triu_indices(n_cells, 1)
    tru = truth(cells[iu[0]], cells[iu[1]])
    res = {}
    t0 = time.perf_counter()
    scfim.tl.fisher_rao_distances(a, cells)
    res["ours graph"] = (a.uns["fisher_rao_distances"]["distances"][iu], time.perf_counter() - t0)
    _, _, metric, _ = _fim_setup(a, "neural_fim", 1e-3)
    t0 = time.perf_counter()
    H = metric_graph(Xd, metric, max_stretch=None)
    D = geodesic_distances(metric, Xd, cells, graph=H).distances
    res["ours, all edges"] = (D[iu], time.perf_counter() - t0)
    if refine:
        t0 = time.perf_counter()
        scfim.tl.fisher_rao_distances(a, cells, method="energy", key_added="e")
        res["ours energy"] = (a.uns["e"]["distances"][iu], time.perf_counter() - t0)
    for k in (10, 15):
        t0 = time.perf_counter()
        D = shortest_paths(symmetrize(knn_graph(Xd, k)), cells)[:, cells]
        res[f"Dijkstra k={k}"] = (D[iu], time.perf_counter() - t0)
    # ceiling: ours' graph (k = 15, all edges) with the true length on every edge
    t0 = time.perf_counter()
    T = H.tocoo()
    T = sp.csr_matrix((np.maximum(truth(T.row, T.col), 1e-12), (T.row, T.col)), shape=T.shape)
    D = shortest_paths(T, cells)[:, cells]
    res["ceiling: true edges"] = (np.minimum(D, D.T)[iu], time.perf_counter() - t0)
    t0 = time.perf_counter()
    D = shortest_paths(fisher_rao_edges(read_operator(a), T), cells)[:, cells]
    res["operator: exact FR edges"] = (np.minimum(D, D.T)[iu], time.perf_counter() - t0)
    # diagnosis of the learned metric: FR edge length / true edge length over the graph
    G = symmetrize(knn_graph(Xd, 10)).tocoo()
    H = metric_edge_lengths(G, Xd, metric, n_quad=2).tocoo()
    true_len = truth(H.row, H.col)
    long = true_len >= np.median(true_len)  # noisy neighbours can be ~0 apart on the manifold
    cv = float(np.std(np.log(H.data[long] / true_len[long])))
    label = f"{kind} R^{dim}, noise {noise:g}"
    base = {k: scores(*(v[0], tru)) for k, v in res.items()}
    peer = max(base["Dijkstra k=10"][0], base["Dijkstra k=15"][0])
    for name, (_est, sec) in res.items():
        rho, err = base[name]
        rows.append(
            [
                label,
                name,
                fmt(rho, ".4f"),
                fmt(rho - peer, "+.4f") if name.startswith("ours") else "",
                fmt(err, ".2f"),
                fmt(sec, ".1f"),
                fmt(cv, ".3f") if name == "ours graph" else "",
                fmt(train, ".0f") if name == "ours graph" and train is not None else "",
            ]
        )
        label = ""
    print(table(rows[-len(res) :], HEAD), flush=True)


HEAD = [
    "data",
    "method",
    "Spearman",
    "Δρ vs best graph",
    "rel. error % (1 scale)",
    "s",
    "metric spread",
    "train s",
]


def main() -> None:
    """Run all data sets and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells and pairs, no refinement")
    ap.add_argument("--cache", default=None, help="folder for the trained data sets")
    ap.add_argument("--no-refine", action="store_true", help="skip the energy refinement")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data sample")
    ap.add_argument("--kernel", default="alpha_decay", choices=("alpha_decay", "gaussian"))
    ap.add_argument("--sigma-scale", type=float, default=1.0, help="Gaussian bandwidth factor")
    ap.add_argument("--t", type=int, default=None, help="diffusion time (default: auto)")
    ap.add_argument("--exact-operator", action="store_true", help="no landmarks")
    ap.add_argument(
        "--only", nargs="*", default=None, help="data sets kind:dim:noise, e.g. sphere:3:0.05"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, n_cells = (800, 12) if args.quick else (1500, 20)
    print(
        f"{n} points per data set, {n_cells} evenly spaced cells "
        f"({n_cells * (n_cells - 1) // 2} pairs); data seed {args.seed}, diffusion kernel "
        f"{args.kernel}{', exact operator' if args.exact_operator else ''}"
        + ("" if args.sigma_scale == 1.0 else f", σ × {args.sigma_scale:g}")
        + ("" if args.t is None else f", t = {args.t}")
    )
    rows: list = []
    data = {
        "seed": args.seed,
        "kernel": args.kernel,
        "exact": args.exact_operator,
        "t": "auto" if args.t is None else args.t,
        "sigma_scale": args.sigma_scale,
    }
    for kind, dim in (("sphere", 3), ("sphere", 10), ("roll", 3)):
        for noise in (0.0, 0.05, 0.1):
            if args.only is not None and f"{kind}:{dim}:{noise:g}" not in args.only:
                continue
            refine = not (args.quick or args.no_refine)
            run(kind, n, noise, dim, n_cells, refine, rows, args.cache, **data)
    print("\nall rows")
    print(table(rows, HEAD))


if __name__ == "__main__":
    main()
