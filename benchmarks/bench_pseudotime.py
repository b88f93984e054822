"""Fisher–Rao pseudotime: agreement with scanpy's DPT, and error against exact geodesics.

(a) Real data bundled with scanpy: ``pbmc68k_reduced`` (700 cells, ``X_pca``; root the
first CD34+ progenitor) and ``krumsiek11`` (640 simulated myeloid cells, 11 genes; root
``uns["iroot"]``). ``tl.diffusion`` + ``tl.neural_fim`` with defaults, then
``tl.fisher_rao_pseudotime``; the peer is ``sc.pp.neighbors`` + ``sc.tl.diffmap`` +
``sc.tl.dpt`` on the same representation and root. Reported: Spearman between the two
pseudotimes over all cells (cell by cell) and both times.

(b) Ground truth: 2000 points on the unit sphere (exact: great-circle distance from the
root) and on the swiss roll (exact: Euclidean distance in its isometric coordinates).
Ours without and with 20 energy-refined landmarks, against Dijkstra on the Euclidean kNN
graph (k = 15) and DPT; Spearman and the mean relative error after one least-squares
scale, over the cells farther than 10 % of the largest distance from the root.

Usage::

    python benchmarks/bench_pseudotime.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import fmt, table


def _dpt(a, use_rep, root):
    import scanpy as sc

    b = a.copy()
    t0 = time.perf_counter()
    sc.pp.neighbors(b, use_rep=use_rep, random_state=0)
    sc.tl.diffmap(b)
    b.uns["iroot"] = int(root)
    sc.tl.dpt(b)
    return b.obs["dpt_pseudotime"].to_numpy(), time.perf_counter() - t0


def _ours(a, root, **kw):
    import scfim

    t0 = time.perf_counter()
    scfim.tl.fisher_rao_pseudotime(a, root=int(root), key_added="pt", **kw)
    return a.obs["pt"].to_numpy(), time.perf_counter() - t0


def _fit(a, use_rep):
    import scfim

    t0 = time.perf_counter()
    scfim.tl.diffusion(a, use_rep=use_rep, random_state=0)
    scfim.tl.neural_fim(a, random_state=0, progress=False)
    return time.perf_counter() - t0


def real_data() -> None:
    """(a) pbmc68k_reduced and krumsiek11 against DPT."""
    import scanpy as sc
    from scipy.stats import spearmanr

    rows = []
    for name in ("pbmc68k_reduced", "krumsiek11"):
        a = getattr(sc.datasets, name)()
        a.obs_names_make_unique()
        if name == "pbmc68k_reduced":
            use_rep = "X_pca"
            root = int(np.flatnonzero(a.obs["bulk_labels"].to_numpy() == "CD34+")[0])
        else:
            use_rep = "X"
            root = int(a.uns["iroot"])
        train = _fit(a, use_rep)
        ours, t_ours = _ours(a, root)
        dpt, t_dpt = _dpt(a, use_rep, root)
        ok = np.isfinite(dpt)
        rho = spearmanr(ours[ok], dpt[ok]).statistic
        rows.append(
            [
                f"{name} ({a.n_obs} cells, {use_rep})",
                fmt(rho, ".3f"),
                fmt(t_ours, ".2f"),
                fmt(t_dpt, ".2f"),
                fmt(t_ours / t_dpt, ".2f"),
                fmt(train, ".0f"),
            ]
        )
    print("(a) Fisher–Rao pseudotime vs scanpy DPT (same root, same representation)")
    print(
        table(
            rows,
            ["data", "Spearman(ours, dpt)", "ours s", "dpt s", "time ratio", "FIM train s"],
        )
    )


def _score(est, tru):
    from scipy.stats import spearmanr

    far = tru > 0.1 * tru.max()
    e, t = est[far], tru[far]
    alpha = float((e * t).sum() / (e * e).sum())
    return spearmanr(est, tru).statistic, 100 * np.mean(np.abs(alpha * e - t) / t)


def ground_truth() -> None:
    """(b) sphere and swiss roll against exact geodesic distances."""
    import anndata as ad
    from bench_geodesic_accuracy import make

    from scfim.geometry.graph import knn_graph, shortest_paths, symmetrize

    rows = []
    for kind in ("sphere", "roll"):
        for noise in (0.0, 0.1):
            X, truth = make(kind, 2000, noise, 3)
            a = ad.AnnData(X.astype(np.float32))
            _fit(a, "X")
            root = 0
            tru = truth(np.full(len(X), root), np.arange(len(X)))
            res = {
                "ours (graph)": _ours(a, root),
                "ours + 20 landmarks": _ours(a, root, n_landmarks=20),
            }
            t0 = time.perf_counter()
            dj = shortest_paths(symmetrize(knn_graph(X, 15)), root)[0]
            res["Euclidean kNN Dijkstra k=15"] = (dj, time.perf_counter() - t0)
            res["scanpy dpt"] = _dpt(a, "X", root)
            label = f"{kind}, noise {noise:g}"
            for name, (est, sec) in res.items():
                ok = np.isfinite(est)
                rho, err = _score(est[ok], tru[ok])
                rows.append([label, name, fmt(rho, ".4f"), fmt(err, ".2f"), fmt(sec, ".2f")])
                label = ""
    print("\n(b) pseudotime from one root against exact geodesic distances (2000 points)")
    print(table(rows, ["data", "method", "Spearman", "rel. error % (1 scale)", "s"]))


def main() -> None:
    """Run (a) and (b)."""
    torch.set_num_threads(1)
    real_data()
    ground_truth()


if __name__ == "__main__":
    main()
