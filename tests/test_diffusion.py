import numpy as np
import pytest
import scipy.sparse as sp
from conftest import branching

from scfim.geometry import diffusion as dm
from scfim.geometry import divergences as dv


@pytest.fixture(scope="module")
def X():
    return branching(300, 10, 0)  # 900 cells, Y-shaped


def test_knn_graph_exact_matches_bruteforce(X):
    D = dm.knn_graph(X[:200], 7, method="exact")
    full = np.sqrt(((X[:200, None] - X[None, :200]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    ref = np.sort(full, 1)[:, :7]
    got = np.sort(D.toarray(), 1)[:, -7:]
    np.testing.assert_allclose(np.sort(got, 1), ref, rtol=1e-10)


def test_knn_graph_rejects_duplicates(X):
    Y = np.vstack([X[:50], X[:1]])
    with pytest.raises(ValueError, match="duplicate"):
        dm.knn_graph(Y, 5)


def test_kernel_symmetric_with_unit_diagonal(X):
    K = dm.affinity_kernel(dm.knn_graph(X, 30), n_neighbors=10)
    assert abs(K - K.T).max() < 1e-15
    np.testing.assert_array_equal(K.diagonal(), 1.0)
    assert K.data.min() >= 1e-4 / 2
    G = dm.affinity_kernel(dm.knn_graph(X, 30), kernel="gaussian", sigma=0.5)
    assert abs(G - G.T).max() < 1e-15


def test_alpha_decay_matches_formula(X):
    D = dm.knn_graph(X[:100], 20)
    K = dm.affinity_kernel(D, n_neighbors=5, decay=2.0, threshold=0.0).toarray()
    Dd = D.toarray()
    sig = np.sort(np.where(Dd > 0, Dd, np.inf), 1)[:, 4]
    K0 = np.where(Dd > 0, np.exp(-((Dd / sig[:, None]) ** 2)), 0.0)
    ref = 0.5 * (K0 + K0.T)
    np.fill_diagonal(ref, 1.0)
    np.testing.assert_allclose(K, ref, atol=1e-12)


def test_markov_rows_sum_to_one_and_anisotropy(X):
    K = dm.affinity_kernel(dm.knn_graph(X, 30), n_neighbors=10)
    for alpha in (0.0, 0.5, 1.0):
        P, d = dm.markov_operator(K, alpha)
        np.testing.assert_allclose(np.asarray(P.sum(1)).ravel(), 1.0, atol=1e-12)
        # reversibility: diag(d) P is symmetric (so d is stationary)
        F = sp.diags(d) @ P
        assert abs(F - F.T).max() < 1e-12
        np.testing.assert_allclose(d @ P, d, rtol=1e-10)
    # α = 1 is Algorithm 1: K₁ = Q⁻¹ K Q⁻¹
    q = np.asarray(K.sum(1)).ravel()
    P1, _ = dm.markov_operator(K, 1.0)
    K1 = K.toarray() / q[:, None] / q[None, :]
    np.testing.assert_allclose(P1.toarray(), K1 / K1.sum(1, keepdims=True), atol=1e-12)
    with pytest.raises(ValueError):
        dm.markov_operator(K, 1.5)


def test_rows_of_Pt_are_distributions_and_match_matrix_power(X):
    op, _ = dm.build_operator(X, n_landmarks=None, t=4)
    R = op.rows(np.arange(50))
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-12)
    ref = np.linalg.matrix_power(op.transitions.toarray(), 4)[:50]
    np.testing.assert_allclose(R, ref, atol=1e-12)


@pytest.mark.parametrize("n_landmarks", [None, 200])
def test_float32_rows_equal_the_float64_rows(X, n_landmarks):
    op, _ = dm.build_operator(X, n_landmarks=n_landmarks, t=8, random_state=0)
    idx = np.arange(0, op.n_obs, 3)
    R32 = op.rows(idx, dtype=np.float32)
    assert R32.dtype == np.float32
    np.testing.assert_allclose(R32.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(R32, op.rows(idx), rtol=1e-4, atol=1e-7)


def test_landmark_operator_is_exact_when_every_cell_is_a_landmark(X):
    op, _ = dm.build_operator(X, n_landmarks=None, t=6)
    lm = dm.DiffusionOperator(op.transitions, op.degrees, 6, np.arange(op.n_obs))
    # tolerance: float64 round-off of 6 dense products
    np.testing.assert_allclose(
        lm.rows(np.arange(op.n_obs)), op.rows(np.arange(op.n_obs)), atol=1e-12
    )
    np.testing.assert_allclose(lm.landmark_rows(), op.landmark_rows(), atol=1e-12)


def test_landmark_and_dense_operators_agree(X):
    """200 landmarks for 900 cells vs the exact operator aggregated onto the same clusters.

    Tolerances (measured: TV ≈ 0.08, distance error ≈ 1.2 %): mean total-variation distance
    of the rows below 0.15 and mean relative error of the JS distances below 5 %.
    """
    t = 10
    exact, _ = dm.build_operator(X, n_landmarks=None, t=t)
    lm, _ = dm.build_operator(X, n_landmarks=200, t=t, random_state=0)
    W = lm.membership().toarray()
    idx = np.arange(0, 900, 5)
    agg = exact.rows(idx) @ W
    got = lm.rows(idx)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    tv = 0.5 * np.abs(agg - got).sum(1)
    assert tv.mean() < 0.15
    Dd = np.sqrt(dv.pairwise_js(agg))
    Dl = np.sqrt(dv.pairwise_js(got))
    iu = np.triu_indices(len(idx), 1)
    rel = np.abs(Dd - Dl)[iu].mean() / Dd[iu].mean()
    assert rel < 0.05


def test_knee_point_finds_the_break():
    x = np.arange(40.0)
    y = np.where(x < 12, 10 - 0.8 * x, 10 - 0.8 * 12 - 0.05 * (x - 12))
    assert abs(dm.knee_point(y) - 12) <= 1


def test_von_neumann_entropy_decreases():
    lam = np.linspace(1, 0.01, 50)
    h = dm.von_neumann_entropy(lam, 30)
    assert np.all(np.diff(h) < 0)
    assert h[0] <= np.log(50)


def test_auto_t_is_stable():
    """The knee moves by at most 3 steps across landmark counts, clustering seeds and data seeds."""
    ts = []
    for seed in range(2):
        Xs = branching(300, 10, seed)
        for n_landmarks, rs in [(None, 0), (300, 0), (300, 1), (150, 2)]:
            op, info = dm.build_operator(Xs, n_landmarks=n_landmarks, random_state=rs)
            assert info["entropy"].shape == (100,)
            ts.append(op.t)
    assert max(ts) - min(ts) <= 3, ts
    assert 2 <= min(ts) and max(ts) <= 50


def test_ivf_knn_recall_against_exact():
    """The inverted-file search finds (nearly) the exact neighbours (measured 0.999 at 20k)."""
    Xs = branching(1000, 20, 3)
    exact = dm.knn_graph(Xs, 10, method="exact")
    for clusters in (None, dm.assign_landmarks(Xs, 150)):
        ivf = dm.knn_graph(Xs, 10, method="ivf", clusters=clusters)
        hits = [np.intersect1d(ivf[i].indices, exact[i].indices).size for i in range(0, 3000, 3)]
        assert np.mean(hits) / 10 >= 0.97
    with pytest.raises(ValueError, match="unknown kNN method"):
        dm.knn_graph(Xs, 10, method="annoy")


# ---------------------------------------------------------------- new points
@pytest.mark.parametrize(
    "kernel, kw, n_landmarks, copies",
    [
        ("alpha_decay", {}, None, False),
        ("alpha_decay", {}, 60, False),
        ("gaussian", {"sigma": 0.5}, None, False),
        ("alpha_decay", {}, None, True),
        ("alpha_decay", {}, 60, True),
    ],
)
def test_extend_transitions_reproduce_the_rows_of_the_fitted_cells(kernel, kw, n_landmarks, copies):
    X = branching(60, 6, seed=1)
    if copies:
        X = X[np.concatenate([np.arange(len(X)), np.arange(0, len(X), 7)])]
    op, info = dm.build_operator(
        X, n_neighbors=8, t=5, n_landmarks=n_landmarks, kernel=kernel, alpha=0.7, **kw
    )
    T = dm.extend_transitions(
        X,
        X,
        n_neighbors=8,
        kernel=kernel,
        alpha=0.7,
        kernel_degrees=info["kernel_degrees"],
        radii=info["radii"],
        bandwidths=info.get("bandwidths"),
        **kw,
    )
    np.testing.assert_allclose(T.toarray(), op.transitions.toarray(), atol=2e-5)
    np.testing.assert_allclose(op.rows_from(T), op.rows(np.arange(len(X))), atol=2e-5)


def test_extend_transitions_of_a_new_point_follow_its_neighbours():
    X = branching(60, 6, seed=1)
    op, info = dm.build_operator(X[1:], n_neighbors=8, t=5)
    kw = {k: info[k] for k in ("kernel_degrees", "radii", "bandwidths")}
    T = dm.extend_transitions(X[1:], X[:1], n_neighbors=8, **kw).toarray()[0]
    np.testing.assert_allclose(T.sum(), 1.0)
    d = np.linalg.norm(X[1:] - X[0], axis=1)
    assert set(np.flatnonzero(T > 0)) <= set(np.argsort(d)[: 3 * 8])
    assert T[np.argsort(d)[:8]].sum() > 0.5
    with pytest.raises(ValueError, match="columns"):
        dm.extend_transitions(X, X[:2, :3], n_neighbors=8, **kw)


def test_auto_knn_reuses_the_landmark_clusters_as_ivf_index(monkeypatch):
    """Beyond EXACT_KNN_CELLS distinct cells with landmarks, "auto" searches by IVF over them."""
    Xs = branching(900, 20, 3)
    seen = {}
    original = dm.knn_graph

    def spy(X, k, *, method="auto", clusters=None, random_state=0):
        seen.update(method=method, clusters=clusters)
        return original(X, k, method=method, clusters=clusters, random_state=random_state)

    monkeypatch.setattr(dm, "knn_graph", spy)
    monkeypatch.setattr(dm, "EXACT_KNN_CELLS", 500)
    op, _ = dm.build_operator(Xs, n_landmarks=150, t=5)
    assert seen["method"] == "ivf"
    np.testing.assert_array_equal(seen["clusters"], op.landmark_labels)
    exact, _ = dm.build_operator(Xs, n_landmarks=150, t=5, knn_method="exact")
    assert seen["method"] == "exact"
    idx = np.arange(0, 900, 7)
    tv = 0.5 * np.abs(op.rows(idx) - exact.rows(idx)).sum(1)
    assert np.median(tv) < 1e-3 and tv.max() < 0.05  # (nearly) the same neighbours
    monkeypatch.setattr(dm, "EXACT_KNN_CELLS", 5000)
    dm.build_operator(Xs, n_landmarks=150, t=5)
    assert seen["method"] == "auto"  # below the threshold: knn_graph's own rule (exact)
