"""Memory of the diffusion operator and JSD-PHATE: the same results with fewer temporaries.

Each in-place or blockwise rewrite is checked bit for bit against the expression it
replaces, and the dense ``L × L`` float64 intermediates are checked to be released (and
their peak bounded, with NumPy's allocations traced by :mod:`tracemalloc`).
"""

import importlib
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import branching

from scfim.geometry import diffusion as dm
from scfim.geometry import graph as gm
from scfim.geometry import mds


@pytest.fixture(scope="module")
def X():
    return branching(700, 10, 0)  # 2100 cells


@pytest.fixture(scope="module")
def op(X):
    op, _ = dm.build_operator(X, t=8, n_landmarks=600)
    return op


def _fresh(op):
    """The same operator without any cached matrix."""
    return dm.DiffusionOperator(op.transitions, op.degrees, op.t, op.landmark_labels)


def _dense_keys(op):
    return sorted(
        str(k)
        for k, v in op._cache.items()
        if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype == np.float64
    )


def _traced(fn):
    """``(result, peak, retained)`` bytes traced while ``fn()`` runs, above the start."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak - base, cur - base


@pytest.mark.parametrize("n", [1, 5, 255, 256, 257, 600])
def test_symmetrize_inplace_is_the_expression_bit_for_bit(n):
    A = np.random.default_rng(n).normal(size=(n, n))
    ref = 0.5 * (A + A.T)
    got = dm.symmetrize_inplace(A.copy())
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, got.T)
    with pytest.raises(ValueError, match="square"):
        dm.symmetrize_inplace(np.zeros((3, 4)))


def test_matrix_power_is_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    A = rng.random((60, 60))
    A /= A.sum(1, keepdims=True)
    for n in [*range(0, 40), 63, 64, 65, 127]:
        ref = np.linalg.matrix_power(A, n)
        kept = A.copy()
        np.testing.assert_array_equal(dm.matrix_power(kept, n), ref)
        np.testing.assert_array_equal(kept, A)  # not overwritten unless allowed
        np.testing.assert_array_equal(dm.matrix_power(A.copy(), n, overwrite_a=True), ref)
    with pytest.raises(ValueError, match="non-negative"):
        dm.matrix_power(A, -1)


def test_matrix_power_holds_at_most_three_buffers():
    A = np.random.default_rng(1).random((200, 200))
    unit = A.nbytes
    _, peak, _ = _traced(lambda: dm.matrix_power(A, 41))
    assert peak <= 3 * unit + 2**16  # NumPy's: four
    _, peak, _ = _traced(lambda: dm.matrix_power(A.copy(), 41, overwrite_a=True))
    assert peak <= 3 * unit + 2**16  # the copy of A included


def _old_affinity_kernel(
    distances, *, kernel="alpha_decay", n_neighbors=15, decay=40.0, sigma=None
):
    """The kernel as it was written before the in-place rewrite."""
    D = sp.csr_matrix(distances, dtype=np.float64, copy=True)
    D.sort_indices()
    n = D.shape[0]
    data = D.data
    if kernel == "alpha_decay":
        row_ids = np.repeat(np.arange(n), np.diff(D.indptr))
        sig = dm.kernel_bandwidths(D, n_neighbors)
        vals = np.exp(-np.power(data / sig[row_ids], decay))
    else:
        vals = np.exp(-(data**2) / float(sigma))
    K0 = sp.csr_matrix((vals, D.indices.copy(), D.indptr.copy()), shape=(n, n))
    K0.data[K0.data < 1e-4] = 0.0
    K0.eliminate_zeros()
    K = ((K0 + K0.T) * 0.5).tocsr()
    K.setdiag(1.0)
    K.eliminate_zeros()
    K.sort_indices()
    return K


def _assert_same_csr(A, B):
    A, B = sp.csr_matrix(A), sp.csr_matrix(B)
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data, B.data)


def test_affinity_kernel_is_the_former_expression_bit_for_bit(X):
    D = gm.knn_graph(X, 45)
    _assert_same_csr(dm.affinity_kernel(D), _old_affinity_kernel(D))
    _assert_same_csr(
        dm.affinity_kernel(D, kernel="gaussian", sigma=0.3),
        _old_affinity_kernel(D, kernel="gaussian", sigma=0.3),
    )
    # a scanpy-like graph: columns unsorted within rows, one stored self-distance
    coo = D.tocoo()
    rng = np.random.default_rng(0)
    perm = rng.permutation(coo.nnz)
    U = sp.csr_matrix(
        (
            np.r_[coo.data[perm], 0.05],
            (np.r_[coo.row[perm], 3], np.r_[coo.col[perm], 3]),
        ),
        shape=D.shape,
    )
    U.has_sorted_indices = False
    _assert_same_csr(dm.affinity_kernel(U, n_neighbors=10), _old_affinity_kernel(U, n_neighbors=10))
    assert dm.affinity_kernel(U)[3, 3] == 1.0


def _sorted(A):
    A = sp.csr_matrix(A, copy=True)
    A.sort_indices()
    return A


def test_affinity_kernel_taking_over_the_graph_is_the_same_kernel(X):
    for kw in ({}, {"kernel": "gaussian", "sigma": 0.3}):
        D = gm.knn_graph(X, 45)
        expected = dm.affinity_kernel(D, **kw)
        bw = dm.kernel_bandwidths(D, 15) if not kw else None
        _assert_same_csr(dm.affinity_kernel(D, bandwidths=bw, overwrite=True, **kw), expected)


def _old_markov_operator(K, alpha, weights=None):
    """The Markov operator as it was written before the in-place rewrite (sparse products)."""
    K = sp.csr_matrix(K, dtype=np.float64)
    m = None if weights is None else np.asarray(weights, dtype=np.float64)
    q = np.asarray(K.sum(1)).ravel() if m is None else K @ m
    Ka = sp.csr_matrix(sp.diags(q**-alpha) @ K @ sp.diags(q**-alpha)) if alpha > 0 else K
    d = np.asarray(Ka.sum(1)).ravel() if m is None else Ka @ m
    P = sp.diags(1.0 / d) @ Ka if m is None else sp.diags(1.0 / d) @ Ka @ sp.diags(m)
    return sp.csr_matrix(P), d


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_markov_operator_in_place_has_the_same_entries(X, alpha, weighted):
    K = dm.affinity_kernel(gm.knn_graph(X, 45))
    m = np.random.default_rng(0).integers(1, 4, K.shape[0]).astype(float) if weighted else None
    P_ref, d_ref = _old_markov_operator(K, alpha, weights=m)
    K2 = K.copy()
    P, d = dm.markov_operator(K2, alpha, weights=m, overwrite=True)
    assert P is K2  # the kernel's arrays became P's
    np.testing.assert_array_equal(d, d_ref)
    _assert_same_csr(_sorted(P), _sorted(P_ref))
    np.testing.assert_allclose(np.asarray(P.sum(1)).ravel(), 1.0, rtol=1e-12)
    K3 = K.copy()
    P_copy, d_copy = dm.markov_operator(K3, alpha, weights=m)  # without overwrite
    _assert_same_csr(P_copy, P)
    np.testing.assert_array_equal(d_copy, d)
    _assert_same_csr(K3, K)  # the caller's kernel is left as it was


def test_markov_operator_in_place_holds_no_copy_of_the_kernel(X):
    K = dm.affinity_kernel(gm.knn_graph(X, 45))
    size = K.data.nbytes + K.indices.nbytes
    _, peak_old, _ = _traced(lambda: _old_markov_operator(K, 1.0))
    _, peak_copy, _ = _traced(lambda: dm.markov_operator(K, 1.0))
    K2 = K.copy()
    _, peak, _ = _traced(lambda: dm.markov_operator(K2, 1.0, overwrite=True))
    assert peak_old >= 2 * size  # K_α and P
    assert peak_copy <= 1.25 * size + 2**16  # one copy of K, scaled in place
    assert peak <= 0.25 * size + 2**16  # row blocks of the scale factors


def test_build_operator_hands_its_own_graph_to_the_kernel(X, monkeypatch):
    seen = []
    kernel = dm.affinity_kernel

    def spy(distances, **kw):
        seen.append(kw["overwrite"])
        return kernel(distances, **kw)

    monkeypatch.setattr(dm, "affinity_kernel", spy)
    op, _ = dm.build_operator(X, t=4)
    D = gm.knn_graph(X, 45)
    given, _ = dm.build_operator(X, distances=D, t=4)
    assert seen == [True, False]
    _assert_same_csr(op.transitions, given.transitions)
    _assert_same_csr(D, gm.knn_graph(X, 45))  # the caller's graph is left as it was


def test_distinct_states_by_blocks_equals_one_block(monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 7)).astype(np.float32)
    X[500:520] = X[3]
    X[700] = -0.0
    X[701] = 0.0
    whole = dm.distinct_states(X)
    monkeypatch.setattr(dm, "_DISTINCT_BLOCK_ENTRIES", 50)  # blocks of 7 rows
    blocks = dm.distinct_states(X)
    for f in ("labels", "first", "counts"):
        np.testing.assert_array_equal(getattr(blocks, f), getattr(whole, f))
    assert blocks.labels[700] == blocks.labels[701]
    assert dm.distinct_states(rng.normal(size=(50, 3))) is None


def test_exact_knn_blocks_do_not_change_the_graph(X, monkeypatch):
    ref = gm.knn_graph(X, 30, method="exact")
    monkeypatch.setattr(gm, "_KNN_BLOCK_ENTRIES", 100 * X.shape[0] + 7)  # blocks of 100 rows
    _assert_same_csr(gm.knn_graph(X, 30, method="exact"), ref)


def test_select_t_frees_the_lumped_kernel_before_the_eigenvalues(op):
    fresh = _fresh(op)
    fresh.cell_to_landmark()  # sparse, kept: not what is measured
    F = (op.membership().T @ sp.diags(op.degrees) @ op.cell_to_landmark()).toarray()
    ref_S = 0.5 * (F + F.T)
    d = ref_S.sum(1)
    s = 1.0 / np.sqrt(d)
    t_ref, h_ref = dm.select_t(s[:, None] * ref_S * s[None, :])
    (t, h), peak, _ = _traced(lambda: fresh.select_t())
    assert t == t_ref
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-12)
    assert _dense_keys(fresh) == []
    unit = op.n_states**2 * 8
    # the kernel, its sparse form and the symmetric form, then the form and LAPACK's copy;
    # before: kernel, chain, form and copy (four)
    assert peak <= 2.9 * unit


def test_float32_rows_keep_only_the_float32_propagator(op):
    idx = np.arange(0, op.n_obs, 7)
    ref = _fresh(op)
    ref.landmark_operator()  # everything cached the former way
    want = ref.rows(idx, dtype=np.float32)
    fresh = _fresh(op)
    fresh.cell_to_landmark()
    got, peak, kept = _traced(lambda: fresh.rows(idx, dtype=np.float32))
    np.testing.assert_array_equal(got, want)
    assert _dense_keys(fresh) == []
    unit = op.n_states**2 * 8
    assert kept <= 0.5 * unit + got.nbytes + 2**20  # the float32 propagator and the rows
    assert peak <= 3.2 * unit + got.nbytes  # before: kernel, chain and three products
    np.testing.assert_allclose(fresh.rows(idx), want, rtol=0, atol=1e-6)


def test_landmark_rows_release_only_what_they_built(op):
    ref = _fresh(op)
    want = ref.landmark_operator() @ ref._propagator()
    np.clip(want, 0.0, None, out=want)
    want = want / want.sum(1, keepdims=True)
    fresh = _fresh(op)
    np.testing.assert_array_equal(fresh.landmark_rows(), want)
    assert _dense_keys(fresh) == []
    # cached before (as rows_from does for the transform): kept
    np.testing.assert_array_equal(ref.landmark_rows(), want)
    assert len(_dense_keys(ref)) == 3


def test_exact_operator_forms_unchanged(X):
    op, _ = dm.build_operator(X[:400], t=5, n_landmarks=None)
    F = np.asarray((sp.diags(op.degrees) @ op.transitions).todense())
    F = 0.5 * (F + F.T)
    s = 1.0 / np.sqrt(F.sum(1))
    np.testing.assert_array_equal(op.symmetric_form(), s[:, None] * F * s[None, :])
    P = op.transitions.toarray()
    want = P @ np.linalg.matrix_power(P, op.t - 1)
    got = op.landmark_rows()
    np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), rtol=0, atol=1e-14)
    assert _dense_keys(op) == []


def test_classical_mds_centring_in_place_is_the_expression():
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(1200, 4))
    D = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    D2 = D**2
    rm = D2.mean(1)
    B = -0.5 * (D2 - rm[:, None] - rm[None, :] + rm.mean())
    B = 0.5 * (B + B.T)
    w, V = np.linalg.eigh(B)
    ref = V[:, ::-1][:, :2] * np.sqrt(w[::-1][:2])
    got = mds.classical_mds(D, 2)
    np.testing.assert_allclose(np.abs(got), np.abs(ref), atol=1e-8)
    _, peak, _ = _traced(lambda: mds.classical_mds(D, 2))
    assert peak <= 1.5 * D.nbytes  # B (and a block of rows); before: D², B and B + Bᵀ


def test_tl_diffusion_uses_a_float32_representation_as_stored(X):
    import anndata as ad

    import scfim

    X32 = X.astype(np.float32)
    a32, a64 = ad.AnnData(X32), ad.AnnData(X32.astype(np.float64))
    for a in (a32, a64):
        scfim.tl.diffusion(a, use_rep="X", n_landmarks=500, random_state=0)
    _assert_same_csr(a32.obsp["diffusion_transitions"], a64.obsp["diffusion_transitions"])
    u32, u64 = a32.uns["diffusion"], a64.uns["diffusion"]
    assert u32["t"] == u64["t"]
    for k in ("degrees", "landmark_labels", "kernel_degrees", "radii", "bandwidths"):
        np.testing.assert_array_equal(u32[k], u64[k])
    # the float32 array is used as stored, not copied to float64 for the computation
    mod = importlib.import_module("scfim.tl.diffusion")  # the module, not the function
    assert mod._stored_float32(a32, "X", X32.astype(np.float64)) is a32.X
    view = a32[:100]
    assert np.shares_memory(mod._stored_float32(view, "X", np.zeros((100, X.shape[1]))), a32.X)
    assert mod._stored_float32(a64, "X", a64.X.copy()) is not a64.X
