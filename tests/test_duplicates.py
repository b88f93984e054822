"""Exact duplicate cells: one diffusion state per distinct cell, carrying its multiplicity."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData
from conftest import branching

import scfim
from scfim.geometry import diffusion as gd
from scfim.geometry.diffusion import affinity_kernel, knn_graph, markov_operator
from scfim.tl._store import read_operator as operator_from_adata

REFERENCE = Path(__file__).parent / "data" / "no_duplicates_reference.npz"


def _with_copies(n_per_branch: int = 50, seed: int = 1) -> tuple[AnnData, np.ndarray]:
    """Branching cloud plus 1–4 extra copies of 25 of its cells, interleaved; also the
    index of the distinct cell each row is a copy of."""
    X = branching(n_per_branch, 6, seed=seed)
    rng = np.random.default_rng(seed)
    src = rng.choice(len(X), 25, replace=False)
    extra = np.repeat(src, rng.integers(1, 5, size=25))
    origin = np.concatenate([np.arange(len(X)), extra])
    order = rng.permutation(len(origin))
    origin = origin[order]
    a = AnnData(X[origin].astype(np.float32))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    return a, origin


def _groups(origin: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(origin == o) for o in np.unique(origin) if (origin == o).sum() > 1]


def test_distinct_states_finds_the_copies():
    a, origin = _with_copies()
    states = gd.distinct_states(np.asarray(a.X, dtype=np.float64))
    assert states is not None
    labels, first, counts = states.labels, states.first, states.counts
    # the same state exactly when the same origin
    assert np.array_equal(labels[:, None] == labels[None], origin[:, None] == origin[None])
    assert counts.sum() == a.n_obs and len(first) == len(np.unique(origin))
    np.testing.assert_array_equal(labels[first], np.arange(len(first)))
    assert gd.distinct_states(branching(20, 3)) is None  # no duplicates: nothing to collapse


def test_weighted_markov_operator_equals_the_chain_on_the_expanded_kernel():
    """The collapsed chain with multiplicities is the exact lumping of the chain on all cells
    whose kernel between two cells is the kernel of their distinct states."""
    rng = np.random.default_rng(0)
    Xu = branching(30, 4, seed=2)
    m = rng.integers(1, 4, size=len(Xu)).astype(np.float64)
    Ku = affinity_kernel(knn_graph(Xu, 20), n_neighbors=6)
    labels = np.repeat(np.arange(len(Xu)), m.astype(int))
    S = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))))
    K_full = (S.T @ Ku @ S).tocsr()
    for alpha in (0.0, 0.5, 1.0):
        P_full, d_full = markov_operator(K_full, alpha)
        P_u, d_u = markov_operator(Ku, alpha, weights=m)
        # lumped transitions: P_u[I, J] = sum over the copies b of J of P_full[a, b]
        np.testing.assert_allclose(
            P_u.toarray(), (P_full @ S.T).toarray()[np.cumsum(m).astype(int) - 1], atol=1e-13
        )
        np.testing.assert_allclose(d_u[labels], d_full, rtol=1e-12)
    P1, d1 = markov_operator(Ku, 1.0)
    P2, d2 = markov_operator(Ku, 1.0, weights=np.ones(len(Xu)))
    np.testing.assert_allclose(P1.toarray(), P2.toarray(), rtol=1e-14)


@pytest.mark.parametrize("n_landmarks", [None, 60])
def test_diffusion_copies_share_every_result(n_landmarks):
    a, origin = _with_copies()
    scfim.tl.diffusion(a, n_neighbors=8, t=6, n_landmarks=n_landmarks)
    info = a.uns["diffusion"]
    n_distinct = len(np.unique(origin))
    assert info["n_distinct"] == n_distinct
    if n_landmarks is None:
        assert info["n_states"] == n_distinct
    P = a.obsp["diffusion_transitions"].toarray()
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    op = operator_from_adata(a)
    R = op.rows(np.arange(a.n_obs))
    for g in _groups(origin):
        for c in g[1:]:
            np.testing.assert_array_equal(P[c], P[g[0]])
            np.testing.assert_array_equal(R[c], R[g[0]])
            np.testing.assert_array_equal(P[:, c], P[:, g[0]])
    scfim.tl.jsd_phate(a)
    Y = a.obsm["X_jsd_phate"]
    for g in _groups(origin):
        np.testing.assert_array_equal(Y[g], np.broadcast_to(Y[g[0]], Y[g].shape))


def test_collapsed_chain_equals_the_chain_on_all_cells():
    """Ground truth: P on all cells from the expanded kernel of the distinct cells."""
    a, origin = _with_copies()
    scfim.tl.diffusion(a, n_neighbors=8, t=4, n_landmarks=None, alpha=1.0)
    Xu, inv = np.unique(np.asarray(a.X, dtype=np.float64), axis=0, return_inverse=True)
    k_search = min(len(Xu) - 1, 3 * 8)
    Ku = affinity_kernel(knn_graph(Xu, k_search), n_neighbors=8)
    S = sp.csr_matrix((np.ones(a.n_obs), (inv.ravel(), np.arange(a.n_obs))))
    P_ref, d_ref = markov_operator((S.T @ Ku @ S).tocsr(), 1.0)
    np.testing.assert_allclose(
        a.obsp["diffusion_transitions"].toarray(), P_ref.toarray(), atol=1e-12
    )
    np.testing.assert_allclose(a.uns["diffusion"]["degrees"], d_ref, rtol=1e-12)


def test_neural_fim_copies_get_identical_fields_and_runs_are_deterministic():
    runs = []
    for _ in range(2):
        a, origin = _with_copies()
        scfim.tl.diffusion(a, n_neighbors=8, t=6)
        scfim.tl.jsd_phate(a)
        scfim.tl.neural_fim(a, n_components=8, hidden=(16,), epochs=3, progress=False)
        runs.append(a)
    a, b = runs
    for k in ("fim_log_volume", "fim_trace"):
        v = a.obs[k].to_numpy()
        for g in _groups(origin):
            np.testing.assert_allclose(v[g], v[g[0]], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(v, b.obs[k].to_numpy())
    np.testing.assert_array_equal(a.obsm["X_jsd_phate"], b.obsm["X_jsd_phate"])
    np.testing.assert_array_equal(
        a.obsp["diffusion_transitions"].toarray(), b.obsp["diffusion_transitions"].toarray()
    )


@pytest.mark.parametrize(
    "mode, kwargs", [("exact", {"t": 6}), ("landmark", {"t": 6, "n_landmarks": 40})]
)
def test_no_duplicates_gives_exactly_the_previous_results(mode, kwargs):
    """Values computed by the code before duplicate handling existed (commit b0cf740)."""
    ref = np.load(REFERENCE)
    a = AnnData(branching(40, 6, seed=3).astype(np.float32))
    scfim.tl.diffusion(a, n_neighbors=8, **kwargs)
    scfim.tl.jsd_phate(a)
    P = a.obsp["diffusion_transitions"].tocsr()
    P.sort_indices()
    np.testing.assert_array_equal(P.indptr, ref[f"{mode}_P_indptr"])
    np.testing.assert_array_equal(P.indices, ref[f"{mode}_P_indices"])
    np.testing.assert_array_equal(P.data, ref[f"{mode}_P_data"])
    np.testing.assert_array_equal(a.uns["diffusion"]["degrees"], ref[f"{mode}_degrees"])
    np.testing.assert_allclose(
        a.obsm["X_jsd_phate"], ref[f"{mode}_jsd_phate"], rtol=1e-6, atol=1e-6
    )
