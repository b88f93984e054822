import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData, read_h5ad
from conftest import assert_unchanged, branching, snapshot

import scfim
from scfim.tl._store import read_operator as operator_from_adata


def test_diffusion_writes_the_contract(small_adata):
    scfim.tl.diffusion(small_adata, n_neighbors=10)
    P = small_adata.obsp["diffusion_transitions"]
    assert sp.issparse(P)
    np.testing.assert_allclose(np.asarray(P.sum(1)).ravel(), 1.0, atol=1e-12)
    info = small_adata.uns["diffusion"]
    assert info["t"] >= 1 and info["params"]["use_rep"] == "X"
    assert info["entropy"].shape == (100,)
    assert info["n_states"] == small_adata.n_obs  # 450 cells < n_landmarks: exact
    op = operator_from_adata(small_adata)
    np.testing.assert_allclose(op.rows([0, 5]).sum(1), 1.0)


def test_landmark_mode_and_copy(small_adata):
    out = scfim.tl.diffusion(small_adata, n_landmarks=100, t=5, copy=True)
    assert "diffusion" not in small_adata.uns
    assert out.uns["diffusion"]["n_states"] <= 100
    assert out.uns["diffusion"]["landmark_labels"].shape == (small_adata.n_obs,)
    assert out.uns["diffusion"]["t"] == 5


def test_sparse_and_integer_input_work():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(200, 30)).astype(np.int64)
    counts[:, :3] += np.arange(200)[:, None] // 10  # structure, no duplicates
    a = AnnData(counts)
    scfim.tl.diffusion(a, n_neighbors=5)
    b = AnnData(sp.csr_matrix(counts.astype(np.float32)))
    scfim.tl.diffusion(b, n_neighbors=5)
    np.testing.assert_allclose(
        a.obsp["diffusion_transitions"].toarray(),
        b.obsp["diffusion_transitions"].toarray(),
        atol=1e-6,
    )


def test_reuses_scanpy_neighbors(small_adata):
    import scanpy as sc

    sc.pp.neighbors(small_adata, n_neighbors=11, use_rep="X", key_added="nb")
    scfim.tl.diffusion(small_adata, n_neighbors=10, neighbors_key="nb", t=3)
    P = small_adata.obsp["diffusion_transitions"]
    D = small_adata.obsp["nb_distances"]
    # transitions only along scanpy's edges (symmetrised) and self-loops
    allowed = ((D + D.T + sp.identity(P.shape[0])) > 0).toarray()
    assert np.all(allowed[P.toarray() > 0])
    assert small_adata.uns["diffusion"]["params"]["neighbors_key"] == "nb"


@pytest.mark.parametrize(
    "mutate, kwargs, exc, match",
    [
        (lambda a: a.X.__setitem__((3, 2), np.nan), {}, ValueError, "NaN or infinite"),
        (lambda a: a.X.__setitem__((4, 1), np.inf), {}, ValueError, "NaN or infinite"),
        (lambda a: None, {"n_neighbors": 500}, ValueError, "n_neighbors"),
        (
            lambda a: a.X.__setitem__(slice(None), np.tile(a.X[:10], (45, 1))),
            {"n_neighbors": 15},
            ValueError,
            "distinct",
        ),
        (lambda a: a.X.__setitem__(slice(None), 1.0), {}, ValueError, "constant"),
        (lambda a: None, {"use_rep": "X_missing"}, KeyError, "X_missing"),
        (lambda a: None, {"neighbors_key": "nope"}, KeyError, "nope"),
        (lambda a: None, {"kernel": "cosine"}, ValueError, "kernel"),
        (lambda a: None, {"kernel": "gaussian"}, ValueError, "sigma"),
        (lambda a: None, {"alpha": 2.0}, ValueError, "alpha"),
        (lambda a: None, {"t": 0}, ValueError, "t must"),
        (lambda a: None, {"t": "later"}, ValueError, "auto"),
        (lambda a: None, {"n_neighbors": 2.5}, TypeError, "integer"),
        (lambda a: None, {"n_neighbors": 1}, ValueError, "n_neighbors must be ≥ 2"),
    ],
)
def test_bad_input_raises_and_leaves_adata_unchanged(small_adata, mutate, kwargs, exc, match):
    mutate(small_adata)
    snap = snapshot(small_adata)
    with pytest.raises(exc, match=match):
        scfim.tl.diffusion(small_adata, **kwargs)
    assert_unchanged(small_adata, snap)


def test_jsd_phate_requires_diffusion(small_adata):
    snap = snapshot(small_adata)
    with pytest.raises(KeyError, match="tl.diffusion"):
        scfim.tl.jsd_phate(small_adata)
    scfim.tl.diffusion(small_adata, t=5, n_landmarks=60)
    snap = snapshot(small_adata)
    with pytest.raises(ValueError, match="n_components"):
        scfim.tl.jsd_phate(small_adata, n_components=500)
    assert_unchanged(small_adata, snap)


def test_jsd_phate_preserves_js_distances(small_adata):
    """Embedding distances follow the sqrt-JS distances (measured Pearson 0.78 in 3-D; JS
    saturates at log 2 between far arms, which no low-dimensional embedding reproduces)."""
    from scfim.geometry.divergences import pairwise_js

    scfim.tl.diffusion(small_adata, t=8)
    scfim.tl.jsd_phate(small_adata, n_components=2)
    stress2 = small_adata.uns["jsd_phate"]["stress"]
    scfim.tl.jsd_phate(small_adata, n_components=3)
    Y = small_adata.obsm["X_jsd_phate"]
    assert Y.shape == (small_adata.n_obs, 3)
    D = np.sqrt(pairwise_js(operator_from_adata(small_adata).landmark_rows()))
    E = np.sqrt(((Y[:, None].astype(float) - Y[None]) ** 2).sum(-1))
    iu = np.triu_indices(len(D), 1)
    assert np.corrcoef(D[iu], E[iu])[0, 1] > 0.7
    assert small_adata.uns["jsd_phate"]["stress"] < stress2


def test_results_survive_h5ad(tmp_path, small_adata):
    scfim.tl.diffusion(small_adata, n_landmarks=100, t=6)
    scfim.tl.jsd_phate(small_adata)
    path = tmp_path / "a.h5ad"
    small_adata.write_h5ad(path)
    back = read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_jsd_phate"], small_adata.obsm["X_jsd_phate"])
    np.testing.assert_allclose(
        operator_from_adata(back).rows(np.arange(20)),
        operator_from_adata(small_adata).rows(np.arange(20)),
        atol=1e-14,
    )
    again = scfim.tl.jsd_phate(back, copy=True)
    np.testing.assert_allclose(
        again.obsm["X_jsd_phate"], small_adata.obsm["X_jsd_phate"], atol=1e-5
    )


def test_jsd_phate_rank_correlates_with_phate():
    """JSD-PHATE and PHATE agree on the geometry of a tree (same kNN, decay, t, no anisotropy).

    Spearman correlation over 300 random cells of a 6-branch DLA tree (measured: 0.85 between
    our sqrt-JS distances and PHATE's potential distances; 0.62 between the two 2-D
    embeddings, lower because JS saturates at log 2 for distant cells, which leaves MDS
    freedom in placing far branches). Thresholds leave a margin below the measurements.
    """
    phate = pytest.importorskip("phate")
    from scipy.stats import spearmanr

    from scfim.geometry.divergences import pairwise_js

    X, _ = phate.tree.gen_dla(n_dim=50, n_branch=6, branch_length=200, seed=7)
    a = AnnData(X.astype(np.float32))
    scfim.tl.diffusion(a, n_neighbors=5, alpha=0.0, t=20)
    scfim.tl.jsd_phate(a)
    op = phate.PHATE(knn=5, t=20, verbose=0, random_state=0)
    Yp = op.fit_transform(X)
    Yj = a.obsm["X_jsd_phate"].astype(float)
    idx = np.random.default_rng(0).choice(len(X), 300, replace=False)
    iu = np.triu_indices(300, 1)

    def dist(Y):
        Z = Y[idx]
        return np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))[iu]

    d_js = np.sqrt(pairwise_js(operator_from_adata(a).rows(idx)))[iu]
    assert spearmanr(d_js, dist(op.diff_potential))[0] > 0.75
    assert spearmanr(dist(Yj), dist(Yp))[0] > 0.5


def test_branching_helper_is_y_shaped():
    X = branching(50, 4, 1)
    assert X.shape == (150, 4)


# ---------------------------------------------------------------- scanpy's neighbour graph
def test_default_reuses_the_scanpy_graph_and_says_so(small_adata, capsys):
    import scanpy as sc

    sc.pp.neighbors(small_adata, n_neighbors=30, use_rep="X")
    capsys.readouterr()
    scfim.tl.diffusion(small_adata, t=4)
    assert "graph of sc.pp.neighbors in uns['neighbors']" in capsys.readouterr().out
    P_default = small_adata.obsp["diffusion_transitions"].toarray()
    assert small_adata.uns["diffusion"]["params"]["neighbors_key"] == "neighbors"
    explicit = scfim.tl.diffusion(small_adata, t=4, neighbors_key="neighbors", copy=True)
    np.testing.assert_array_equal(P_default, explicit.obsp["diffusion_transitions"].toarray())
    # transitions only along scanpy's edges (symmetrised) and self-loops
    D = small_adata.obsp["distances"]
    allowed = ((D + D.T + sp.identity(D.shape[0])) > 0).toarray()
    assert np.all(allowed[P_default > 0])
    own = scfim.tl.diffusion(small_adata, t=4, neighbors_key=None, copy=True)
    assert "neighbors_key" in own.uns["diffusion"]["params"]
    assert own.uns["diffusion"]["params"]["neighbors_key"] is None
    assert not np.array_equal(P_default, own.obsp["diffusion_transitions"].toarray())


def test_scanpy_graph_on_another_representation_is_not_reused(small_adata, capsys):
    import scanpy as sc

    small_adata.obsm["X_other"] = np.asarray(small_adata.X)[:, :3] * 10.0
    sc.pp.neighbors(small_adata, n_neighbors=15, use_rep="X_other")
    capsys.readouterr()
    scfim.tl.diffusion(small_adata, t=4, use_rep="X")
    assert small_adata.uns["diffusion"]["params"]["neighbors_key"] is None
    assert "not reusing uns['neighbors']: it was computed on 'X_other'" in capsys.readouterr().out
    ref = AnnData(small_adata.X.copy())
    scfim.tl.diffusion(ref, t=4)
    np.testing.assert_array_equal(
        small_adata.obsp["diffusion_transitions"].toarray(),
        ref.obsp["diffusion_transitions"].toarray(),
    )


def test_many_unreduced_features_warn_unless_x_is_asked_for():
    import warnings

    rng = np.random.default_rng(0)
    a = AnnData(rng.normal(size=(120, 60)).astype(np.float32))
    with pytest.warns(UserWarning, match=r"60 features.*sc\.pp\.pca"):
        scfim.tl.diffusion(a, n_neighbors=5, t=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scfim.tl.diffusion(a, use_rep="X", n_neighbors=5, t=4)  # asked for: no warning
        scfim.tl.diffusion(a[:, :50].copy(), n_neighbors=5, t=4)  # few features: none


def test_warns_when_n_neighbors_exceeds_the_stored_k(small_adata):
    import scanpy as sc

    sc.pp.neighbors(small_adata, n_neighbors=6, use_rep="X")
    with pytest.warns(UserWarning, match="n_neighbors=15.*k=6"):
        scfim.tl.diffusion(small_adata, t=4, n_neighbors=15)
    with pytest.warns(UserWarning, match="n_neighbors=15.*k=6"):
        scfim.tl.diffusion(small_adata, t=4, n_neighbors=15, neighbors_key="neighbors")
    assert small_adata.uns["diffusion"]["params"]["neighbors_key"] == "neighbors"


def test_default_k_builds_its_own_graph_over_scanpys_smaller_one(small_adata, capsys):
    """scanpy's default 15-NN graph is passed over, without a warning, for the default k."""
    import warnings

    import scanpy as sc

    sc.pp.neighbors(small_adata, use_rep="X")  # scanpy's default k = 15
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scfim.tl.diffusion(small_adata, t=4)
    out = capsys.readouterr().out
    assert "n_neighbors=30 (scfim's default)" in out
    assert "not reusing uns['neighbors']: its k=15 is below scfim's default" in out
    params = small_adata.uns["diffusion"]["params"]
    assert params["n_neighbors"] == 30 and params["neighbors_key"] is None
    own = scfim.tl.diffusion(small_adata, t=4, n_neighbors=30, neighbors_key=None, copy=True)
    np.testing.assert_array_equal(
        small_adata.obsp["diffusion_transitions"].toarray(),
        own.obsp["diffusion_transitions"].toarray(),
    )
    # the stored k given explicitly, or the stored graph named: reused at its own k
    for kw in ({"n_neighbors": 15}, {"neighbors_key": "neighbors"}):
        a = scfim.tl.diffusion(small_adata, t=4, copy=True, **kw)
        assert a.uns["diffusion"]["params"]["neighbors_key"] == "neighbors", kw
        assert a.uns["diffusion"]["params"]["n_neighbors"] == 15, kw


def test_default_k_is_capped_by_the_distinct_cells(small_adata):
    """Ten distinct cells (each 45 times): the default k is 9, and every copy agrees."""
    small_adata.X[:] = np.tile(small_adata.X[:10], (45, 1))
    scfim.tl.diffusion(small_adata, t=4)
    assert small_adata.uns["diffusion"]["params"]["n_neighbors"] == 9
    ref = scfim.tl.diffusion(small_adata, t=4, n_neighbors=9, copy=True)
    np.testing.assert_array_equal(
        small_adata.obsp["diffusion_transitions"].toarray(),
        ref.obsp["diffusion_transitions"].toarray(),
    )
    two = AnnData(np.array([[0.0, 0.0], [1.0, 0.0]] * 3))
    with pytest.raises(ValueError, match="at least 3 distinct cells"):
        scfim.tl.diffusion(two)


def test_explicit_nones_are_kept_in_the_params(tmp_path, small_adata):
    scfim.tl.diffusion(small_adata, t=4, sigma=None, n_landmarks=None, random_state=None)
    params = small_adata.uns["diffusion"]["params"]
    for k in ("sigma", "n_landmarks", "random_state", "neighbors_key"):
        assert k in params and params[k] is None, k
    small_adata.write_h5ad(tmp_path / "a.h5ad")
    back = read_h5ad(tmp_path / "a.h5ad")
    assert set(back.uns["diffusion"]["params"]) == set(params)


def test_replacing_the_operator_names_the_results_of_the_old_one(small_adata, capsys):
    scfim.tl.diffusion(small_adata, t=4)
    scfim.tl.jsd_phate(small_adata)
    capsys.readouterr()
    scfim.tl.diffusion(small_adata, t=4)  # the same operator again: nothing to say
    assert "replaced" not in "".join(capsys.readouterr())
    scfim.tl.diffusion(small_adata, t=6)
    out = "".join(capsys.readouterr())
    assert "replaced uns['diffusion'] with another operator; uns['jsd_phate']" in out
    scfim.tl.diffusion(small_adata, t=6, key_added="other")  # another key: no dependants
    assert "replaced" not in "".join(capsys.readouterr())


def test_the_log_says_where_the_default_k_comes_from(small_adata, capsys):
    import scanpy as sc

    few = AnnData(np.asarray(small_adata.X)[:20].copy())
    scfim.tl.diffusion(few, t=4)
    assert "n_neighbors=19 (scfim's default 30, capped at the 20 distinct cells minus one)" in (
        capsys.readouterr().out
    )
    sc.pp.neighbors(small_adata, use_rep="X")
    capsys.readouterr()
    scfim.tl.diffusion(small_adata, t=4, neighbors_key="neighbors")
    assert "n_neighbors=15 (the k of uns['neighbors'])" in capsys.readouterr().out
